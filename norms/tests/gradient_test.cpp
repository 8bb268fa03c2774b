// Backward passes of every registry layer that has one (LayerEntry::backward_reference and
// backward_optimized), driven by the registry: RapidCheck properties inside one gtest test per
// row, as in numerics_test.cpp (RC_PARAMS sets the budget and replays a failure).
// - the reference against central finite differences of the double forward, along random
//   directions (directional derivatives);
// - the optimized kernel against the reference under the gradient tolerance rule
//   (gradient_tolerance, norms/registry.hpp), on hard inputs;
// - thread determinism (1–4 threads, and a repeat: bitwise) and batch invariance of dx (bitwise)
//   for token-wise rows;
// - validation: dy of the wrong size and every bad input the forward rejects;
// - the geometry of normalization on both implementations: layer_norm Σ_d dx = 0 and dx·x̂ = 0,
//   rms_norm dx·x = 0, dx(αx) = dx(x)/α for scale-invariant rows.
#include <gtest/gtest.h>
#include <omp.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>

#include "norms/kernels.hpp"
#include "norms/kernels_api.hpp"
#include "norms/tests/bad_inputs.hpp"
#include "norms/tests/test_util.hpp"

namespace normcheck {
namespace {

using rc::gen::element;
using rc::gen::inRange;

struct RowImpl {
  LayerRow row;
  Impl impl;
};

void PrintTo(const RowImpl& p, std::ostream* os) { *os << p.row.id() << "/" << to_string(p.impl); }

bool has_gradient(const LayerRow& r) { return r.layer->has_backward(); }
// A token's outputs depend on that token alone (the same rule as numerics_test.cpp).
bool token_wise(const LayerRow& r) {
  return has_gradient(r) && !r.profile->violated.count("token_independence");
}
// Rows whose forward is invariant under x → αx (with ε scaled by α², see ScaleCovariance).
bool scale_invariant(const LayerRow& r) {
  return has_gradient(r) && !r.profile->violated.count("global_scale_invariance");
}

std::vector<LayerRow> rows_where(bool (*keep)(const LayerRow&)) {
  std::vector<LayerRow> out;
  for (const auto& r : layer_rows())
    if (keep(r)) out.push_back(r);
  return out;
}

std::vector<RowImpl> row_impls_where(bool (*keep)(const LayerRow&)) {
  std::vector<RowImpl> out;
  for (const auto& r : rows_where(keep))
    for (Impl impl : {Impl::reference, Impl::optimized}) out.push_back({r, impl});
  return out;
}

std::string row_name(const ::testing::TestParamInfo<LayerRow>& info) {
  return test::test_name(info.param.id());
}
std::string row_impl_name(const ::testing::TestParamInfo<RowImpl>& info) {
  return test::test_name(info.param.row.id() + "_" + to_string(info.param.impl));
}

// Sets the OpenMP thread count for a scope.
struct Threads {
  int previous;
  explicit Threads(int n) : previous(omp_get_max_threads()) { omp_set_num_threads(n); }
  ~Threads() { omp_set_num_threads(previous); }
};

Grads backward(const LayerRow& row, Impl impl, const Batch& x, const Params& p, const State& s,
               const std::vector<float>& dy) {
  Grads g;
  row.layer->backward(impl)(x, p, row.mode(), &s, dy, g);
  return g;
}

// ---------------------------------------------------------------------------------------------
// Generators

int width() { return *element(1, 2, 3, 4, 7, 8, 16, 17, 31, 33, 64, 100); }
// BatchNorm train rejects one value per channel: train rows draw at least two tokens per
// sequence (as numerics_test.cpp does), so no case is discarded.
int min_len(const LayerRow& r) { return r.mode() == Mode::train ? 2 : 1; }

// A padded batch of values k/16, |k| ≤ 64, padding included: token-wise rows compute padding
// like any token and sum its dγ, dβ terms, so it must hold ordinary values too.
Batch draw_batch(int D, int min_length, int max_b = 5, int max_t = 7) {
  const int B = *inRange(1, max_b + 1), T = *inRange(min_length, max_t + 1);
  std::vector<int> lengths(B);
  for (auto& l : lengths) l = *inRange(min_length, T + 1);
  const auto k = *rc::gen::container<std::vector<int>>(std::size_t(B) * T * D, inRange(-64, 65));
  Batch x(B, T, D);
  x.lengths = lengths;
  for (std::size_t i = 0; i < x.x.size(); ++i) x.x[i] = float(k[i]) / 16.0f;
  return x;
}

// The layer's parameters at width D (which of γ, β it takes; groups), with γ = m/64 in
// [0.5, 1.5] and β = m/64 in [-1, 1] on grids (finite differences stay exact, see below), or
// (in some cases) no γ, β at all.
Params draw_params(const LayerEntry& l, int D) {
  std::mt19937 rng(0);
  Params p = test::params_for(l, D, rng);
  if (*inRange(0, 4) == 0) {
    p.gamma.clear();
    p.beta.clear();
    return p;
  }
  for (auto& g : p.gamma) g = float(*inRange(32, 97)) / 64.0f;
  for (auto& b : p.beta) b = float(*inRange(-64, 65)) / 64.0f;
  return p;
}

// dy = j/8 in [-2, 2] at every position (padding included: where the forward ignores it, the
// gradient must too).
std::vector<float> draw_dy(std::size_t n) {
  const auto j = *rc::gen::container<std::vector<int>>(n, inRange(-16, 17));
  std::vector<float> dy(n);
  for (std::size_t i = 0; i < n; ++i) dy[i] = float(j[i]) / 8.0f;
  return dy;
}

Batch all_valid(Batch x) {
  for (auto& l : x.lengths) l = x.T;
  return x;
}

// The tolerance rule for a call (gradient_tolerance with gradient_scale, norms/registry.hpp):
// the largest conditioning of a statistics set the gradients read, and the scale of the
// gradients and of their terms. The conditioning function describes the sets of the forward's
// valid outputs; a token-wise row's gradients also cover padding tokens (dx there is computed
// like any token's, and dγ, dβ sum over them), so for those rows it is taken on the batch with
// every position valid too.
GradTolerance tolerance_for(const LayerRow& row, const Batch& x, const Params& p, const State& s,
                            const Grads& ref, const std::vector<float>& dy,
                            Impl impl = Impl::optimized) {
  std::vector<Batch> sets = {x};
  if (token_wise(row)) sets.push_back(all_valid(x));
  double cond = 0, scale = 0;
  for (const Batch& b : sets) {
    const Conditioning c = row.layer->conditioning(b, p, row.mode(), &s);
    for (double v : c.cond) cond = std::max(cond, v);
    scale = std::max(scale, gradient_scale(ref, c, p, dy, x.D));
  }
  return gradient_tolerance(cond, scale, impl);
}

// Compares every value of `got` with `want` under `tol`; the first difference as a message.
std::string first_difference(const Grads& got, const Grads& want, const GradTolerance& tol,
                             const Batch& x) {
  if (got.dgamma.size() != want.dgamma.size() || got.dbeta.size() != want.dbeta.size() ||
      got.dx.size() != want.dx.size())
    return "sizes differ";
  for (std::size_t i = 0; i < want.dx.size(); ++i)
    if (!tol.agree(got.dx[i], want.dx[i]))
      return "dx" + test::position(int(i / x.D / x.T), int(i / x.D % x.T), int(i % x.D)) + " = " +
             format_value(got.dx[i]) + ", expected " + format_value(want.dx[i]) + " (bound " +
             format_value(tol.bound(want.dx[i])) + ")";
  for (auto [name, a, b] : {std::tuple{"dgamma", &got.dgamma, &want.dgamma},
                            std::tuple{"dbeta", &got.dbeta, &want.dbeta}})
    for (std::size_t d = 0; d < b->size(); ++d)
      if (!tol.agree((*a)[d], (*b)[d]))
        return std::string(name) + "[" + std::to_string(d) + "] = " + format_value((*a)[d]) +
               ", expected " + format_value((*b)[d]) + " (bound " +
               format_value(tol.bound((*b)[d])) + ")";
  return "";
}

bool same_bits(const std::vector<double>& a, const std::vector<double>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0;
}
bool same_bits(const Grads& a, const Grads& b) {
  return same_bits(a.dx, b.dx) && same_bits(a.dgamma, b.dgamma) && same_bits(a.dbeta, b.dbeta);
}

// ---------------------------------------------------------------------------------------------
// The reference against finite differences of the double forward.
//
// F(t) = Σ_i dy_i·y_i(x + t·v, γ + t·u, β + t·w) for random integer directions v, u, w in
// [-8, 8]; its derivative at 0 is Σ dx·v + Σ dγ·u + Σ dβ·w, which the reference's gradients
// must give. The forward takes float32 inputs, so the steps keep every perturbed input exact:
// x = k/16 (|k| ≤ 64), γ, β = m/64 and t ∈ {±2^-19, ±2^-20} put x + t·v, γ + t·u, β + t·w on a
// grid of 2^-20 with fewer than 24 significant bits (checked below). The difference quotient is
// Richardson-extrapolated, R = (4·D(h/2) − D(h))/3 with D(h) = (F(h) − F(−h))/2h, whose
// truncation error is O((step/σ)⁴): the steps are at most 8·2^-19 = 1.5e-5 and every statistics
// set has σ ≥ √ε = 3.2e-3 (ε = 1e-5), so (step/σ)⁴ < 5e-10. What remains is rounding: F is a
// double sum of B·T·D ≤ 3500 terms each accurate to ~1e-15·(1 + |dy·y|), and dividing by 2h
// and extrapolating turns that into about 3e-15·Σ(1 + |dy·y|)/h; the tolerance allows 100
// times that, plus 1e-7 of
// S = Σ|dx·v| + Σ|dγ·u| + Σ|dβ·w|, the size of the terms the derivative adds up: the bugs this
// catches are relative changes of 1/n or more (n − 1 for n in a variance, a dropped term).

class FiniteDifferences : public ::testing::TestWithParam<LayerRow> {};

TEST_P(FiniteDifferences, ReferenceGradientIsTheDerivativeOfTheForward) {
  const LayerRow& row = GetParam();
  const bool ok = rc::check(row.id() + ": reference gradient vs finite differences", [&] {
    const int D = width();
    const Batch x = draw_batch(D, min_len(row));
    const Params p = draw_params(*row.layer, D);
    const State s = test::state_for(D);
    const auto dy = draw_dy(x.x.size());
    const auto dir = [](std::size_t n) {
      return *rc::gen::container<std::vector<int>>(n, inRange(-8, 9));
    };
    const auto v = dir(x.x.size()), u = dir(p.gamma.size()), w = dir(p.beta.size());

    const Grads g = backward(row, Impl::reference, x, p, s, dy);
    double analytic = 0, S = 0;
    for (std::size_t i = 0; i < v.size(); ++i) analytic += g.dx[i] * v[i], S += std::abs(g.dx[i] * v[i]);
    for (std::size_t d = 0; d < u.size(); ++d) analytic += g.dgamma[d] * u[d], S += std::abs(g.dgamma[d] * u[d]);
    for (std::size_t d = 0; d < w.size(); ++d) analytic += g.dbeta[d] * w[d], S += std::abs(g.dbeta[d] * w[d]);

    double rounding = 0;  // Σ (1 + |dy·y|) at t = 0
    const auto F = [&](double t) {
      Batch xt = x;
      Params pt = p;
      for (std::size_t i = 0; i < v.size(); ++i) xt.x[i] = float(x.x[i] + t * v[i]);
      for (std::size_t d = 0; d < u.size(); ++d) pt.gamma[d] = float(p.gamma[d] + t * u[d]);
      for (std::size_t d = 0; d < w.size(); ++d) pt.beta[d] = float(p.beta[d] + t * w[d]);
      for (std::size_t i = 0; i < v.size(); ++i) RC_ASSERT(double(xt.x[i]) == x.x[i] + t * v[i]);
      for (std::size_t d = 0; d < u.size(); ++d) RC_ASSERT(double(pt.gamma[d]) == p.gamma[d] + t * u[d]);
      for (std::size_t d = 0; d < w.size(); ++d) RC_ASSERT(double(pt.beta[d]) == p.beta[d] + t * w[d]);
      const Output y = test::run(row, Impl::reference, xt, pt, s);
      double f = 0;
      for (std::size_t i = 0; i < y.size(); ++i) f += double(dy[i]) * y[i];
      return f;
    };
    {
      const Output y0 = test::run(row, Impl::reference, x, p, s);
      for (std::size_t i = 0; i < y0.size(); ++i) rounding += 1 + std::abs(dy[i] * y0[i]);
    }
    const double h = std::ldexp(1.0, -19);
    const double d1 = (F(h) - F(-h)) / (2 * h), d2 = (F(h / 2) - F(-h / 2)) / h;
    const double richardson = (4 * d2 - d1) / 3;
    const double tol = 1e-7 * S + 3e-13 * rounding / h;
    RC_LOG() << "directional derivative: analytic " << analytic << ", finite differences "
             << richardson << " (central " << d2 << "), tolerance " << tol << "\n";
    RC_ASSERT(std::abs(richardson - analytic) <= tol);
  });
  EXPECT_TRUE(ok) << "the counterexample and its RC_PARAMS=\"reproduce=...\" are printed above";
}

INSTANTIATE_TEST_SUITE_P(Gradient, FiniteDifferences,
                         ::testing::ValuesIn(rows_where(has_gradient)), row_name);

// ---------------------------------------------------------------------------------------------
// The optimized kernel against the reference, on hard inputs (those of reference_agreement):
// ordinary values, offsets of 1e3 ± 0.1, variance far below ε, constant tokens.

enum class Hard { ordinary, offset, tiny_variance, constant_tokens };

const char* to_string(Hard h) {
  switch (h) {
    case Hard::ordinary: return "ordinary";
    case Hard::offset: return "1e3 ± 0.1";
    case Hard::tiny_variance: return "variance far below eps";
    case Hard::constant_tokens: return "constant tokens";
  }
  return "?";
}

void make_hard(Batch& x, Hard h) {
  const float c = x.x[0];  // a per-batch centre for the tiny-variance case
  for (std::size_t r = 0; r < x.rows(); ++r)
    for (int d = 0; d < x.D; ++d) {
      float& v = x.x[r * x.D + d];
      const float k = v * 16.0f;  // the drawn integer in [-64, 64]
      switch (h) {
        case Hard::ordinary: break;
        case Hard::offset: v = 1000.0f + k / 640.0f; break;
        case Hard::tiny_variance: v = c + k * 1e-6f; break;
        case Hard::constant_tokens: v = x.x[r * x.D]; break;
      }
    }
}

class ReferenceAgreement : public ::testing::TestWithParam<LayerRow> {};

TEST_P(ReferenceAgreement, OptimizedGradientsAgreeWithTheReference) {
  const LayerRow& row = GetParam();
  const bool ok = rc::check(row.id() + ": optimized vs reference gradients", [&] {
    const int D = *element(1, 2, 4, 7, 31, 33, 100);
    Batch x = draw_batch(D, min_len(row));
    const Hard h = *element(Hard::ordinary, Hard::offset, Hard::tiny_variance, Hard::constant_tokens);
    make_hard(x, h);
    RC_TAG(to_string(h));
    RC_LOG() << "inputs: " << to_string(h) << "\n";
    const Params p = draw_params(*row.layer, D);
    const State s = test::state_for(D);
    const auto dy = draw_dy(x.x.size());
    const Grads ref = backward(row, Impl::reference, x, p, s, dy);
    const Grads opt = backward(row, Impl::optimized, x, p, s, dy);
    const std::string diff = first_difference(opt, ref, tolerance_for(row, x, p, s, ref, dy), x);
    if (!diff.empty()) RC_FAIL(std::string("optimized ") + diff);
  });
  EXPECT_TRUE(ok) << "the counterexample and its RC_PARAMS=\"reproduce=...\" are printed above";
}

INSTANTIATE_TEST_SUITE_P(Gradient, ReferenceAgreement,
                         ::testing::ValuesIn(rows_where(has_gradient)), row_name);

// Finite inputs whose float32 statistics overflow (±1e30, and up to ±FLT_MAX in token-wise rows,
// as numerics_test.cpp's ExtremeInput asks of the forward): optimized gradients stay finite and
// agree with the reference. dx scales as 1/σ while dγ, dβ do not, so here each is compared
// with the rule applied to its own largest value (the rule's one max|grad| over all three would
// not look at a dx of 1e-30).
class ExtremeInputGradients : public ::testing::TestWithParam<LayerRow> {};

TEST_P(ExtremeInputGradients, FiniteAndAgreeWithTheReference) {
  const LayerRow& row = GetParam();
  const bool ok = rc::check(row.id() + ": extreme finite inputs, gradients", [&] {
    const int D = width();
    Batch x = draw_batch(D, min_len(row));
    // up to ±FLT_MAX only for token-wise rows: batch statistics of ±3e38 put x − μ out of float
    // range in BatchNorm's float step, as in its forward (README, Defined numerics)
    const float scale = token_wise(row) ? *element(1e30f / 64, FLT_MAX / 64) : 1e30f / 64;
    for (auto& v : x.x) v *= 16.0f * scale;  // k·scale, |k| ≤ 64
    RC_TAG(scale);
    const Params p = draw_params(*row.layer, D);
    const State s = test::state_for(D);
    const auto dy = draw_dy(x.x.size());
    const Grads ref = backward(row, Impl::reference, x, p, s, dy);
    const Grads opt = backward(row, Impl::optimized, x, p, s, dy);
    for (double v : opt.dx) RC_ASSERT(std::isfinite(v));
    // a dγ beyond float32 (batch_norm eval: Σ dy·x̂ of values near FLT_MAX) is inf in float:
    // the right float answer, so such values are not compared
    Grads ref_affine = ref, opt_affine = opt;
    ref_affine.dx.clear();
    opt_affine.dx.clear();
    for (auto [r, o] : {std::pair{&ref_affine.dgamma, &opt_affine.dgamma},
                        std::pair{&ref_affine.dbeta, &opt_affine.dbeta}})
      for (std::size_t d = 0; d < r->size(); ++d)
        if (std::abs((*r)[d]) > double(FLT_MAX) * (1 - 1e-5)) (*o)[d] = (*r)[d] = 0;
    Grads ref_dx, opt_dx;
    ref_dx.dx = ref.dx;
    opt_dx.dx = opt.dx;
    for (const auto& [a, b] : {std::pair{&opt_dx, &ref_dx}, std::pair{&opt_affine, &ref_affine}}) {
      const std::string diff = first_difference(*a, *b, tolerance_for(row, x, p, s, *b, dy), x);
      if (!diff.empty()) RC_FAIL(std::string("optimized ") + diff);
    }
  });
  EXPECT_TRUE(ok) << "the counterexample and its RC_PARAMS=\"reproduce=...\" are printed above";
}

INSTANTIATE_TEST_SUITE_P(Gradient, ExtremeInputGradients,
                         ::testing::ValuesIn(rows_where(has_gradient)), row_name);

// ---------------------------------------------------------------------------------------------
// Determinism of the optimized kernel: bitwise the same dx, dγ, dβ at 1, 2, 3 and 4 threads and
// on a repeat. The batches are large enough for the OpenMP paths (kernels::kParallelMinValues)
// and span several row segments.

class ThreadDeterminism : public ::testing::TestWithParam<LayerRow> {};

TEST_P(ThreadDeterminism, BitwiseAtAnyThreadCount) {
  const LayerRow& row = GetParam();
  const bool ok = rc::check(row.id() + ": gradients at 1-4 threads", [&] {
    const int D = *element(1, 7, 17, 33, 100, 256);
    const int B = *inRange(1, 9);
    const int T = *inRange(std::max(2, 4096 / (B * D) + 1), std::max(3, 8192 / (B * D) + 2));
    std::vector<int> lengths(B);
    for (auto& l : lengths) l = *inRange(min_len(row), T + 1);
    const auto k = *rc::gen::container<std::vector<int>>(std::size_t(B) * T * D, inRange(-64, 65));
    Batch x(B, T, D);
    x.lengths = lengths;
    for (std::size_t i = 0; i < x.x.size(); ++i) x.x[i] = float(k[i]) / 16.0f;
    const Params p = draw_params(*row.layer, D);
    const State s = test::state_for(D);
    auto dy = draw_dy(x.x.size());
    // dγ, dβ are summed in double, and sums of grid values are exact in any order, so a
    // reduction whose order followed the threads would go unseen. In some cases every third
    // row r (r % 3 = 1) gets dy·2^60 and the next row the same x and −dy·2^60: the pair cancels
    // exactly but wipes out the small sum accumulated before it ((s + 2^60) − 2^60 = 0 in
    // double), so what survives depends on where the segments of rows begin and end.
    if (*inRange(0, 2)) {
      for (std::size_t r = 1; r + 1 < x.rows(); r += 3)
        for (int d = 0; d < D; ++d) {
          dy[r * D + d] = std::ldexp(dy[r * D + d], 60);
          dy[(r + 1) * D + d] = -dy[r * D + d];
          x.x[(r + 1) * D + d] = x.x[r * D + d];
        }
      RC_TAG("cancelling rows of 2^60");
    }
    Grads first;
    {
      Threads one(1);
      first = backward(row, Impl::optimized, x, p, s, dy);
    }
    for (int threads : {1, 2, 3, 4}) {
      Threads n(threads);
      const Grads g = backward(row, Impl::optimized, x, p, s, dy);
      if (!same_bits(g, first))
        RC_FAIL("gradients at " + std::to_string(threads) + " threads differ from 1 thread");
    }
  });
  EXPECT_TRUE(ok) << "the counterexample and its RC_PARAMS=\"reproduce=...\" are printed above";
}

INSTANTIATE_TEST_SUITE_P(Gradient, ThreadDeterminism,
                         ::testing::ValuesIn(rows_where(has_gradient)), row_name);

// The reduction itself: a sum whose value depends on its order (s, 2^60, −2^60 repeated: each
// pair wipes out the small sum before it, so the result depends on where segments begin) comes
// out bitwise the same at 1-4 threads, for row counts around the segment count.
TEST(GradientDeterminism, RowSegmentSumsDoNotDependOnTheThreadCount) {
  for (std::size_t n : {std::size_t(1), std::size_t(5), std::size_t(23), std::size_t(24),
                        std::size_t(25), std::size_t(97), std::size_t(1000), std::size_t(4099)}) {
    const auto value = [](std::size_t r) {  // s, +2^60, −2^60, s, …
      return r % 3 == 0 ? double(r % 7) + 0.25 : std::ldexp(r % 3 == 1 ? 1.0 : -1.0, 60);
    };
    std::vector<double> first;
    for (int threads : {1, 2, 3, 4}) {
      Threads t(threads);
      std::vector<double> total(2);
      // width 4096: above kParallelMinValues, so the OpenMP path runs
      kernels::reduce_row_segments(n, 4096, 2, total.data(), [&](std::size_t r0, std::size_t r1, double* acc) {
        for (std::size_t r = r0; r < r1; ++r) acc[0] += value(r), acc[1] += 1;
      });
      EXPECT_EQ(total[1], double(n)) << "every row once";
      if (threads == 1) first = total;
      EXPECT_TRUE(same_bits(total, first)) << n << " rows at " << threads << " threads: " << total[0] << " vs " << first[0];
    }
  }
}

// Batch invariance: a sequence's dx is bitwise the same alone (a batch of one, T = its length)
// and inside a batch of other sequences at any index, with more padding, at 1-4 threads.
class BatchInvariance : public ::testing::TestWithParam<LayerRow> {};

TEST_P(BatchInvariance, SequenceDxIsBitwiseTheSameAloneAndInAnyBatch) {
  const LayerRow& row = GetParam();
  const bool ok = rc::check(row.id() + ": dx alone vs in a batch", [&] {
    const int D = *element(1, 7, 17, 33, 100);
    Batch batch = draw_batch(D, 1, 8, 40);
    const int b = *inRange(0, batch.B);
    const int len = std::max(1, batch.lengths[b]);
    batch.lengths[b] = len;
    const Params p = draw_params(*row.layer, D);
    const State s = test::state_for(D);
    const auto dy = draw_dy(batch.x.size());
    Batch alone(1, len, D);
    std::vector<float> dy_alone(std::size_t(len) * D);
    for (int t = 0; t < len; ++t)
      for (int d = 0; d < D; ++d) {
        alone.at(0, t, d) = batch.at(b, t, d);
        dy_alone[alone.index(0, t, d)] = dy[batch.index(b, t, d)];
      }
    const Grads a = backward(row, Impl::optimized, alone, p, s, dy_alone);
    Threads n(*inRange(1, 5));
    const Grads g = backward(row, Impl::optimized, batch, p, s, dy);
    for (int t = 0; t < len; ++t)
      for (int d = 0; d < D; ++d)
        if (!test::same_bits(a.dx[alone.index(0, t, d)], g.dx[batch.index(b, t, d)]))
          RC_FAIL("dx" + test::position(b, t, d) + " in the batch: " +
                  format_value(g.dx[batch.index(b, t, d)]) + ", alone: " +
                  format_value(a.dx[alone.index(0, t, d)]));
  });
  EXPECT_TRUE(ok) << "the counterexample and its RC_PARAMS=\"reproduce=...\" are printed above";
}

INSTANTIATE_TEST_SUITE_P(Gradient, BatchInvariance, ::testing::ValuesIn(rows_where(token_wise)),
                         row_name);

// ---------------------------------------------------------------------------------------------
// Validation: the backward rejects everything the forward rejects (bad_inputs.hpp), and a dy of
// the wrong size, with InvalidInput naming the parameter, before writing anything.

using test::bad_input::BadCase;
using test::bad_input::Input;

struct ValidationParam {
  LayerRow row;
  Impl impl;
  BadCase bad;
};

void PrintTo(const ValidationParam& v, std::ostream* os) {
  *os << v.row.id() << "/" << to_string(v.impl) << "/" << v.bad.name;
}

std::vector<BadCase> backward_bad_cases() {
  using namespace test::bad_input;
  auto c = bad_cases();
  c.push_back({"dy_too_short", always, [](Input&) {}, {"dy has 23 values", "24"}});
  c.push_back({"dy_too_long", always, [](Input&) {}, {"dy has 25 values", "24"}});
  c.push_back({"dy_empty", always, [](Input&) {}, {"dy has 0 values", "24"}});
  return c;
}

std::vector<ValidationParam> validation_params() {
  std::vector<ValidationParam> out;
  for (const auto& row : rows_where(has_gradient))
    for (Impl impl : {Impl::reference, Impl::optimized})
      for (const auto& c : backward_bad_cases())
        if (c.applies(row)) out.push_back({row, impl, c});
  return out;
}

class BackwardRejects : public ::testing::TestWithParam<ValidationParam> {};

TEST_P(BackwardRejects, WithAMessageNamingTheParameterAndNothingWritten) {
  const auto& [row, impl, bad] = GetParam();
  Input in = test::bad_input::valid_input(row);
  std::vector<float> dy(in.x.x.size(), 0.5f);  // the valid input's size
  bad.mutate(in);
  if (bad.name == "dy_too_short") dy.pop_back();
  if (bad.name == "dy_too_long") dy.push_back(0);
  if (bad.name == "dy_empty") dy.clear();
  const State before = in.s;
  Grads out{.dx = {42.0}, .dgamma = {-7.0}, .dbeta = {3.0}};
  const Grads out_before = out;
  try {
    row.layer->backward(impl)(in.x, in.p, in.mode, in.with_state ? &in.s : nullptr, dy, out);
    FAIL() << row.id() << " (" << to_string(impl) << ") accepted " << bad.name;
  } catch (const InvalidInput& e) {
    const std::string msg = e.what();
    for (const auto& part : bad.message_has)
      EXPECT_NE(msg.find(part), std::string::npos) << "message \"" << msg << "\" lacks \"" << part << "\"";
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "one line: " << msg;
  } catch (const std::exception& e) {
    FAIL() << bad.name << ": expected InvalidInput, got another exception: " << e.what();
  }
  EXPECT_EQ(in.s.running_mean, before.running_mean);
  EXPECT_EQ(in.s.running_var, before.running_var);
  EXPECT_TRUE(same_bits(out, out_before)) << "the gradients were written by a rejected call";
}

INSTANTIATE_TEST_SUITE_P(Gradient, BackwardRejects, ::testing::ValuesIn(validation_params()),
                         [](const auto& info) {
                           return test::test_name(info.param.row.id() + "_" +
                                                  to_string(info.param.impl) + "_" +
                                                  info.param.bad.name);
                         });

// Without this the cases above would prove nothing: the input they start from is accepted.
TEST(GradientValidation, TheValidInputIsAcceptedByEveryBackward) {
  for (const auto& row : rows_where(has_gradient))
    for (Impl impl : {Impl::reference, Impl::optimized}) {
      Input in = test::bad_input::valid_input(row);
      const std::vector<float> dy(in.x.x.size(), 0.5f);
      Grads out;
      EXPECT_NO_THROW(row.layer->backward(impl)(in.x, in.p, in.mode, &in.s, dy, out))
          << row.id() << " " << to_string(impl);
      EXPECT_EQ(out.dx.size(), in.x.x.size()) << row.id();
      EXPECT_EQ(out.dgamma.size(), in.p.gamma.size()) << row.id();
      EXPECT_EQ(out.dbeta.size(), in.p.beta.size()) << row.id();
    }
}

// The raw kernels check their arguments before touching memory, naming the parameter.
TEST(GradientValidation, RawKernelsRejectBadArgumentsNamingThem) {
  std::vector<float> dx(8, 42.0f), dy(8, 1.0f), x(8, 1.0f), dg(4, 42.0f), db(4, 42.0f);
  const std::vector<double> mean(4, 0.0), var(4, 1.0);
  const auto expect_rejects = [&](const std::function<void()>& call, const std::string& part) {
    try {
      call();
      ADD_FAILURE() << "accepted; expected a message naming " << part;
    } catch (const InvalidInput& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
    for (float v : dx) EXPECT_EQ(v, 42.0f) << "dx written by a rejected call";
    for (float v : dg) EXPECT_EQ(v, 42.0f) << "dgamma written by a rejected call";
  };
  for (auto kernel : {layer_norm_backward_kernel, rms_norm_backward_kernel}) {
    expect_rejects([&] { kernel(dx.data(), dg.data(), db.data(), nullptr, x.data(), nullptr, 2, 4, 1e-5f); }, "dy is null");
    expect_rejects([&] { kernel(nullptr, dg.data(), db.data(), dy.data(), x.data(), nullptr, 2, 4, 1e-5f); }, "dx is null");
    expect_rejects([&] { kernel(dx.data(), dg.data(), db.data(), dy.data(), nullptr, nullptr, 2, 4, 1e-5f); }, "x is null");
    expect_rejects([&] { kernel(dx.data(), dg.data(), db.data(), dy.data(), x.data(), nullptr, 2, 0, 1e-5f); }, "D = 0");
    expect_rejects([&] { kernel(dx.data(), dg.data(), db.data(), dy.data(), x.data(), nullptr, 2, 4, 0.0f); }, "eps = 0");
  }
  expect_rejects([&] { group_norm_backward_kernel(dx.data(), dg.data(), db.data(), dy.data(), x.data(), nullptr, 2, 4, 3, 1e-5f); }, "groups = 3");
  expect_rejects([&] { batch_norm_backward_kernel(dx.data(), dg.data(), db.data(), nullptr, x.data(), nullptr, 1, 2, 4, nullptr, mean.data(), var.data(), 1e-5, true); }, "dy is null");
  expect_rejects([&] { batch_norm_backward_kernel(dx.data(), dg.data(), db.data(), dy.data(), x.data(), nullptr, 1, 2, 4, nullptr, nullptr, var.data(), 1e-5, true); }, "mean is null");
  const int one[1] = {1};
  expect_rejects([&] { batch_norm_backward_kernel(dx.data(), dg.data(), db.data(), dy.data(), x.data(), nullptr, 1, 2, 4, one, mean.data(), var.data(), 1e-5, true); }, "got 1");
  const int bad[1] = {3};
  expect_rejects([&] { batch_norm_backward_kernel(dx.data(), dg.data(), db.data(), dy.data(), x.data(), nullptr, 1, 2, 4, bad, mean.data(), var.data(), 1e-5, false); }, "lengths[0] = 3");
}

// The raw kernels may write dx over dy or over x (kernels_api.hpp): the same bits as into a
// buffer of its own, on the serial and the OpenMP path, with and without γ.
TEST(GradientKernels, InPlaceGivesTheSameBits) {
  using Kernel = std::function<void(float* dx, const float* dy, const float* x, const float* g,
                                    float* dg, float* db, std::size_t rows, int D)>;
  const std::vector<std::pair<const char*, Kernel>> kernels = {
      {"layer_norm", [](float* dx, const float* dy, const float* x, const float* g, float* dg,
                        float* db, std::size_t rows, int D) {
         layer_norm_backward_kernel(dx, dg, db, dy, x, g, rows, D, 1e-5f);
       }},
      {"rms_norm", [](float* dx, const float* dy, const float* x, const float* g, float* dg,
                      float* db, std::size_t rows, int D) {
         rms_norm_backward_kernel(dx, dg, db, dy, x, g, rows, D, 1e-5f);
       }},
      {"group_norm", [](float* dx, const float* dy, const float* x, const float* g, float* dg,
                        float* db, std::size_t rows, int D) {
         group_norm_backward_kernel(dx, dg, db, dy, x, g, rows, D, D % 3 == 0 ? 3 : 1, 1e-5f);
       }},
      {"batch_norm", [](float* dx, const float* dy, const float* x, const float* g, float* dg,
                        float* db, std::size_t rows, int D) {
         std::vector<double> mean(D), var(D);
         batch_norm_statistics_kernel(mean.data(), var.data(), x, 1, int(rows), D, nullptr);
         batch_norm_backward_kernel(dx, dg, db, dy, x, g, 1, int(rows), D, nullptr, mean.data(),
                                    var.data(), 1e-5, true);
       }},
  };
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  for (const auto& [name, kernel] : kernels)
    for (int D : {7, 33, 96})
      for (std::size_t rows : {std::size_t(3), kernels::kParallelMinValues / std::size_t(D) + 5})
        for (bool affine : {false, true}) {
          SCOPED_TRACE(std::string(name) + " D " + std::to_string(D) + " rows " + std::to_string(rows));
          std::vector<float> x(rows * D), dy(rows * D), g(D);
          for (auto& v : x) v = u(rng);
          for (auto& v : dy) v = u(rng);
          for (auto& v : g) v = u(rng);
          const float* gp = affine ? g.data() : nullptr;
          std::vector<float> want(rows * D), dg(D), db(D);
          kernel(want.data(), dy.data(), x.data(), gp, dg.data(), db.data(), rows, D);
          for (bool over_dy : {true, false}) {
            std::vector<float> dy2 = dy, x2 = x, dg2(D), db2(D);
            float* dx = over_dy ? dy2.data() : x2.data();
            kernel(dx, dy2.data(), x2.data(), gp, dg2.data(), db2.data(), rows, D);
            const char* where = over_dy ? "dx over dy" : "dx over x";
            EXPECT_EQ(0, std::memcmp(dx, want.data(), want.size() * sizeof(float))) << where;
            EXPECT_EQ(0, std::memcmp(dg2.data(), dg.data(), D * sizeof(float))) << where;
            EXPECT_EQ(0, std::memcmp(db2.data(), db.data(), D * sizeof(float))) << where;
          }
        }
}

// ---------------------------------------------------------------------------------------------
// The geometry of normalization, on both implementations. Each identity holds for the exact
// gradient; a computed one may miss it by the error the tolerance rule allows each value, so
// the bound on a sum Σ_d c_d·dx_d is Σ_d |c_d|·bound(dx_d) with the rule at the token's
// conditioning and scale (a token's dx errors scale with its own rstd·|γ·dy|).

Grads run_token_layer(const char* name, Impl impl, const Batch& x, const Params& p,
                      const std::vector<float>& dy) {
  const LayerEntry& l = layer(name);
  Grads g;
  l.backward(impl)(x, p, Mode::none, nullptr, dy, g);
  return g;
}

// ε tiny: dx·x̂ = rstd·(ε/(σ²+ε))·Σ dx̂·x̂ is zero only as ε → 0 (and dx·x likewise for RMSNorm).
// With ε = 1e-30 the term is below 1e-23 relative for every token on the k/16 grid that is not
// constant (σ² ≥ 2^-8/D² there), and exactly 0 for a constant token (x̂ = 0).
constexpr double kTinyEps = 1e-30;

void check_token_sums(const char* layer_name, bool centered, Impl impl) {
  const int D = *element(2, 3, 7, 16, 33, 100);
  const Batch x = draw_batch(D, 1);
  Params p;
  p.eps = kTinyEps;
  if (*inRange(0, 2)) {  // γ = 1 as the issue states it, or any γ (it only rescales dy)
    std::mt19937 rng(0);
    p = test::params_for(layer(layer_name), D, rng);
    p.eps = kTinyEps;
  }
  const auto dy = draw_dy(x.x.size());
  const Grads g = run_token_layer(layer_name, impl, x, p, dy);
  const Conditioning c = token_group_conditioning(all_valid(x), p.eps, 1, centered);
  for (std::size_t r = 0; r < x.rows(); ++r) {
    const float* xr = &x.x[r * D];
    const double* dx = &g.dx[r * D];
    double mean = 0, var = 0, scale = 0;  // the token's gradient scale, as gradient_scale's
    for (int d = 0; d < D; ++d) {
      const double g = p.gamma.empty() ? 1.0 : p.gamma[d];
      mean += xr[d];
      scale = std::max({scale, std::abs(dx[d]), c.inv_std[r * D + d] * std::abs(g * dy[r * D + d])});
    }
    mean = centered ? mean / D : 0.0;
    for (int d = 0; d < D; ++d) var += (xr[d] - mean) * (xr[d] - mean);
    var /= D;
    const GradTolerance tol = gradient_tolerance(c.cond[r * D], scale, impl);
    double sum = 0, sum_bound = 0, dot = 0, dot_bound = 0;
    for (int d = 0; d < D; ++d) {
      const double xhat = (xr[d] - mean) / std::sqrt(var + p.eps);  // rms: x·rrms
      sum += dx[d], sum_bound += tol.bound(dx[d]);
      dot += dx[d] * xhat, dot_bound += std::abs(xhat) * tol.bound(dx[d]);
    }
    RC_LOG() << "token " << r << ": Σ dx = " << sum << " (bound " << sum_bound << "), dx·x̂ = "
             << dot << " (bound " << dot_bound << ")\n";
    if (centered) RC_ASSERT(std::abs(sum) <= sum_bound);
    RC_ASSERT(std::abs(dot) <= dot_bound);
  }
}

// Σ_d dx = 0 (dx ⟂ the constant direction: LayerNorm ignores a shift) and dx·x̂ = 0 (dx ⟂ x̂:
// it ignores a scale). Both hold for any dy and any γ, γ = 1 included.
RC_GTEST_PROP(GradientGeometry, LayerNormDxIsOrthogonalToOnesAndToXhat, ()) {
  for (Impl impl : {Impl::reference, Impl::optimized}) check_token_sums("layer_norm", true, impl);
}

// dx·x = 0 (dx·x̂ = 0 with x̂ = x·rrms): RMSNorm ignores the scale of a token.
RC_GTEST_PROP(GradientGeometry, RmsNormDxIsOrthogonalToX, ()) {
  for (Impl impl : {Impl::reference, Impl::optimized}) check_token_sums("rms_norm", false, impl);
}

// dx(αx) = dx(x)/α, dγ and dβ unchanged, for every row whose forward is globally scale
// invariant. The forward's invariance is exact when ε scales with α² (y(αx; α²ε) = y(x; ε)), so
// the gradients are compared there: no ε allowance is needed, and α = 2^k keeps αx and α²ε
// exact in float32.
class ScaleCovariance : public ::testing::TestWithParam<RowImpl> {};

TEST_P(ScaleCovariance, DxScalesAsOneOverAlpha) {
  const LayerRow& row = GetParam().row;
  const Impl impl = GetParam().impl;
  const bool ok = rc::check(row.id() + " " + to_string(impl) + ": dx(αx) = dx(x)/α", [&] {
    const int D = width();
    const Batch x = draw_batch(D, min_len(row));
    const Params p = draw_params(*row.layer, D);
    const State s = test::state_for(D);
    const auto dy = draw_dy(x.x.size());
    const int k = *inRange(-8, 9);
    const double alpha = std::ldexp(1.0, k);
    Batch xa = x;
    for (auto& v : xa.x) v = float(v * alpha);
    Params pa = p;
    pa.eps = p.eps * alpha * alpha;
    RC_LOG() << "alpha = 2^" << k << "\n";
    const Grads g = backward(row, impl, x, p, s, dy);
    Grads ga = backward(row, impl, xa, pa, s, dy);
    for (auto& v : ga.dx) v *= alpha;
    const std::string diff = first_difference(ga, g, tolerance_for(row, x, p, s, g, dy, impl), x);
    if (!diff.empty()) RC_FAIL("α·(gradients at αx) vs gradients at x: " + diff);
  });
  EXPECT_TRUE(ok) << "the counterexample and its RC_PARAMS=\"reproduce=...\" are printed above";
}

INSTANTIATE_TEST_SUITE_P(GradientGeometry, ScaleCovariance,
                         ::testing::ValuesIn(row_impls_where(scale_invariant)), row_impl_name);

}  // namespace
}  // namespace normcheck
