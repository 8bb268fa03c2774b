// The backward passes of every registry layer that has one, under the gradient tolerance rule
// (gradient_tolerance, gradient_scale: properties/compare.hpp), both implementations where it
// applies (RapidCheck properties inside one gtest test per row; RC_PARAMS replays a failure):
// - the optimized kernel against the reference, on hard inputs and on extreme finite inputs;
// - the geometry of normalization: layer_norm Σ_d dx = 0 and dx·x̂ = 0, rms_norm dx·x = 0,
//   dx(αx) = dx(x)/α for scale-invariant rows.
// What needs no tolerance (finite differences of the reference, thread determinism, batch
// invariance, validation) is in norms/tests/gradient_test.cpp.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>

#include "norms/tests/gradient_util.hpp"
#include "properties/compare.hpp"

namespace normcheck {
namespace {

using namespace test::grad;

// The tolerance rule for a call (gradient_terms: compare.hpp), padding counted as tokens where
// the row computes it so: every position's dx is compared here.
GradTolerance tolerance_for(const LayerRow& row, const Batch& x, const Params& p, const State& s,
                            const Grads& ref, const std::vector<float>& dy,
                            Impl impl = Impl::optimized) {
  return gradient_tolerance(gradient_terms(row, x, p, s, ref, dy, true), impl);
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
