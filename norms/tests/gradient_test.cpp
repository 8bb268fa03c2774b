// Backward passes of every registry layer that has one (LayerEntry::backward_reference and
// backward_optimized), driven by the registry: RapidCheck properties inside one gtest test per
// row, as in numerics_test.cpp (RC_PARAMS sets the budget and replays a failure). What needs no
// tolerance rule is here; the comparisons under the gradient tolerance rule (optimized against
// reference, the geometry of normalization) are in properties/tests/gradient_numerics_test.cpp.
// - the reference against central finite differences of the double forward, along random
//   directions (directional derivatives);
// - thread determinism (1–4 threads, and a repeat: bitwise), of the row-segment reduction too,
//   and batch invariance of dx (bitwise) for token-wise rows;
// - validation: dy of the wrong size and every bad input the forward rejects; the raw kernels'
//   arguments; dx written over dy or x.
#include <gtest/gtest.h>
#include <omp.h>
#include <rapidcheck.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <functional>

#include "norms/kernels.hpp"
#include "norms/kernels_api.hpp"
#include "norms/tests/bad_inputs.hpp"
#include "norms/tests/gradient_util.hpp"

namespace normcheck {
namespace {

using namespace test::grad;

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
using test::bad_input::ValidationParam;

std::vector<BadCase> backward_bad_cases() {
  using namespace test::bad_input;
  auto c = bad_cases();
  c.push_back({"dy_too_short", always, [](Input&) {}, {"dy has 23 values", "24"}});
  c.push_back({"dy_too_long", always, [](Input&) {}, {"dy has 25 values", "24"}});
  c.push_back({"dy_empty", always, [](Input&) {}, {"dy has 0 values", "24"}});
  return c;
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
  test::bad_input::expect_rejected(GetParam(), [&] {
    row.layer->backward(impl)(in.x, in.p, in.mode, in.with_state ? &in.s : nullptr, dy, out);
  });
  EXPECT_EQ(in.s.running_mean, before.running_mean);
  EXPECT_EQ(in.s.running_var, before.running_var);
  EXPECT_TRUE(same_bits(out, out_before)) << "the gradients were written by a rejected call";
}

INSTANTIATE_TEST_SUITE_P(Gradient, BackwardRejects,
                         ::testing::ValuesIn(test::bad_input::validation_params(
                             rows_where(has_gradient), backward_bad_cases())),
                         test::bad_input::validation_test_name);

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

}  // namespace
}  // namespace normcheck
