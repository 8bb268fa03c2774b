// The backward passes of every registry layer that has one, under the gradient tolerance rule
// (gradient_tolerance, gradient_scale: properties/compare.hpp), both implementations where it
// applies (one gtest test per row, run as a cell of its own: inherited.hpp; RC_PARAMS sets the
// budget and replays a failure, which prints as a matrix cell's section):
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
#include <functional>
#include <tuple>

#include "norms/tests/gradient_util.hpp"
#include "properties/compare.hpp"
#include "properties/norm_scenarios.hpp"
#include "properties/tests/inherited.hpp"

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

// Gradient values as JSON (NaN and ±inf as strings, as the engine stores them).
nlohmann::json number_list(const std::vector<double>& v) {
  nlohmann::json j = nlohmann::json::array();
  for (double e : v) j.push_back(number_json(e));
  return j;
}

// One side of a gradient comparison: the call's input, its upstream gradient and what the
// backward gave.
struct GradSide {
  Impl impl;
  const Batch& x;
  const std::vector<float>& dy;
  const Grads& g;
};

nlohmann::json grad_side_json(const GradSide& side, Mode mode) {
  const Batch& x = side.x;
  const std::vector<std::string> dims = {"B", "T", "D"};
  const std::vector<int> shape = {x.B, x.T, x.D};
  nlohmann::json attributes = {{"lengths", x.lengths}};
  if (mode != Mode::none) attributes["mode"] = to_string(mode);
  return side_json(to_string(side.impl),
                   nlohmann::json::array({call_json({{"B", x.B}, {"T", x.T}, {"D", x.D}},
                                                    {{"x", tensor_json(x.x, dims, shape)},
                                                     {"dy", tensor_json(side.dy, dims, shape)},
                                                     {"dx", tensor_json(side.g.dx, dims, shape)}},
                                                    attributes)}));
}

// Side a's gradients against side b's (the expected side), as a matrix cell compares them: dx
// token by token at every position under `dx_tol`, dγ and dβ feature by feature under
// `affine_tol` (features where `skip_affine` says so are not compared), into the evidence the
// reports print. A gradient of the wrong size is a failure of its own.
CaseOutcome compare_grads(const LayerRow& row, const Params& p, const State& s, const GradSide& a,
                          const GradSide& b, const GradTolerance& dx_tol,
                          const GradTolerance& affine_tol, const std::string& note,
                          const std::function<bool(double)>& skip_affine = {}) {
  Diff d(Labels{{"b", "t"}, "d", "x", "dx"});
  const Batch& x = b.x;
  if (a.g.dx.size() != x.x.size() || b.g.dx.size() != x.x.size())
    d.fail("dx size (B·T·D = " + std::to_string(x.x.size()) + ")", double(a.g.dx.size()),
           double(b.g.dx.size()));
  else
    for (int bb = 0; bb < x.B; ++bb)
      for (int t = 0; t < x.T; ++t) {
        const std::size_t i = x.index(bb, t, 0);
        d.rows({0, {bb, t}}, {0, {bb, t}}, RowView(&a.g.dx[i], x.D), RowView(&b.g.dx[i], x.D),
               [&](int k) { return dx_tol.bound(b.g.dx[i + k]); }, RowView(&a.x.x[i], x.D),
               RowView(&x.x[i], x.D));
      }
  for (auto [name, ga, gb] : {std::tuple{"dgamma", &a.g.dgamma, &b.g.dgamma},
                              std::tuple{"dbeta", &a.g.dbeta, &b.g.dbeta}}) {
    if (ga->size() != gb->size()) {
      d.fail(std::string(name) + " size", double(ga->size()), double(gb->size()));
      continue;
    }
    for (std::size_t f = 0; f < gb->size(); ++f)
      if (!skip_affine || !skip_affine((*gb)[f]))
        d.value(std::string(name) + "[" + std::to_string(f) + "]", (*ga)[f], (*gb)[f],
                affine_tol.bound((*gb)[f]));
  }
  return outcome(d, note, [&] {
    CaseRecord r{.input = grad_side_json(a, row.mode()), .related = grad_side_json(b, row.mode())};
    norm_scenario::Scenario sc;
    sc.params = p;
    sc.state = s;
    r.params = norm_scenario::params_json(sc);
    for (auto [name, ga, gb] : {std::tuple{"dgamma", &a.g.dgamma, &b.g.dgamma},
                                std::tuple{"dbeta", &a.g.dbeta, &b.g.dbeta}})
      if (!ga->empty()) r.params[name] = {{"input", number_list(*ga)}, {"related", number_list(*gb)}};
    return r;
  });
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

const PropertyInfo kGradReferenceAgreement{
    "grad_reference_agreement_hard", "g_ref_hard",
    "the optimized gradients agree with the reference's under the gradient tolerance rule",
    "the same input and dy through the reference backward (ordinary values, 1e3 ± 0.1, variance "
    "far below ε, constant tokens)",
    "dx at every position, dγ and dβ",
    "the fast backward computes the same gradients"};

TEST_P(ReferenceAgreement, OptimizedGradientsAgreeWithTheReference) {
  EXPECT_INHERITED_HOLDS(test::run_inherited(
      test::matrix_row(GetParam(), Family::gradient), Impl::optimized, kGradReferenceAgreement,
      [](const Row& r, Impl) {
        const LayerRow& row = r.norm;
        const int D = *element(1, 2, 4, 7, 31, 33, 100);
        Batch x = draw_batch(D, min_len(row));
        const Hard h = *element(Hard::ordinary, Hard::offset, Hard::tiny_variance, Hard::constant_tokens);
        make_hard(x, h);
        const Params p = draw_params(*row.layer, D);
        const State s = test::state_for(D);
        const auto dy = draw_dy(x.x.size());
        const Grads ref = backward(row, Impl::reference, x, p, s, dy);
        const Grads opt = backward(row, Impl::optimized, x, p, s, dy);
        const GradTolerance tol = tolerance_for(row, x, p, s, ref, dy);
        return compare_grads(row, p, s, {Impl::optimized, x, dy, opt}, {Impl::reference, x, dy, ref},
                             tol, tol, std::string("inputs: ") + to_string(h) + "; the same x and dy through the reference");
      }));
}

INSTANTIATE_TEST_SUITE_P(Gradient, ReferenceAgreement,
                         ::testing::ValuesIn(rows_where(has_gradient)), row_name);

// Finite inputs whose float32 statistics overflow (±1e30, and up to ±FLT_MAX in token-wise rows,
// as numerics_test.cpp's ExtremeInput asks of the forward): optimized gradients stay finite and
// agree with the reference. dx scales as 1/σ while dγ, dβ do not, so here each is compared
// with the rule applied to its own largest value (the rule's one max|grad| over all three would
// not look at a dx of 1e-30).
class ExtremeInputGradients : public ::testing::TestWithParam<LayerRow> {};

const PropertyInfo kExtremeInputGradients{
    "grad_extreme_inputs", "g_extreme",
    "on finite inputs whose float32 statistics overflow, the optimized gradients are finite and "
    "agree with the reference's",
    "the same input (k·1e30/64, token-wise rows also k·FLT_MAX/64, |k| ≤ 64) and dy through the "
    "reference backward",
    "dx at every position under the rule at dx's own scale; dγ and dβ at theirs (a value beyond "
    "float32 in the reference is not compared: inf is the right float answer)",
    "a kernel must not turn a finite activation into NaN or inf in the backward pass"};

CaseOutcome extreme_input_case(const Row& r, Impl);

TEST_P(ExtremeInputGradients, FiniteAndAgreeWithTheReference) {
  EXPECT_INHERITED_HOLDS(test::run_inherited(
      test::matrix_row(GetParam(), Family::gradient), Impl::optimized, kExtremeInputGradients,
      extreme_input_case));
}

CaseOutcome extreme_input_case(const Row& r, Impl) {
  const LayerRow& row = r.norm;
  const int D = width();
  Batch x = draw_batch(D, min_len(row));
  // up to ±FLT_MAX only for token-wise rows: batch statistics of ±3e38 put x − μ out of
  // float range in BatchNorm's float step, as in its forward (README, Defined numerics)
  const float scale = token_wise(row) ? *element(1e30f / 64, FLT_MAX / 64) : 1e30f / 64;
  for (auto& v : x.x) v *= 16.0f * scale;  // k·scale, |k| ≤ 64
  const Params p = draw_params(*row.layer, D);
  const State s = test::state_for(D);
  const auto dy = draw_dy(x.x.size());
  const Grads ref = backward(row, Impl::reference, x, p, s, dy);
  const Grads opt = backward(row, Impl::optimized, x, p, s, dy);
  // an optimized value NaN or inf where the double reference (which does not overflow
  // here) is finite is a counterexample of its own (Diff: non-finite on one side).
  // dx scales as 1/σ while dγ, dβ do not: each under the rule at its own largest value
  // (the rule's one max|grad| over all three would not look at a dx of 1e-30)
  Grads ref_dx, ref_affine = ref;
  ref_dx.dx = ref.dx;
  ref_affine.dx.clear();
  // a dγ beyond float32 (batch_norm eval: Σ dy·x̂ of values near FLT_MAX) is inf in float:
  // the right float answer, so such values are neither compared nor part of the scale
  const auto beyond_float = [](double v) { return std::abs(v) > double(FLT_MAX) * (1 - 1e-5); };
  for (auto* v : {&ref_affine.dgamma, &ref_affine.dbeta})
    for (auto& e : *v)
      if (beyond_float(e)) e = 0;
  return compare_grads(row, p, s, {Impl::optimized, x, dy, opt}, {Impl::reference, x, dy, ref},
                       tolerance_for(row, x, p, s, ref_dx, dy),
                       tolerance_for(row, x, p, s, ref_affine, dy),
                       "every value times " + format_number(16.0 * scale) +
                           " (extreme finite inputs); the same x and dy through the reference",
                       beyond_float);
}

INSTANTIATE_TEST_SUITE_P(Gradient, ExtremeInputGradients,
                         ::testing::ValuesIn(rows_where(has_gradient)), row_name);

// The failure a new layer sees: a backward that takes the variance as E[x²] − μ² in float, whose
// sum of squares overflows beyond about 1e19 (inf − inf = NaN: dx is NaN there), fails this test
// with the matrix's section: the row, the shapes, the extreme x, the NaN against the reference's
// finite dx, the replay command of this test.
void layer_norm_backward_float_variance(const Batch& x, const Params& p, Mode mode, const State* s,
                                        const std::vector<float>& dy, Grads& g) {
  layer("layer_norm").backward_optimized(x, p, mode, s, dy, g);
  for (std::size_t r = 0; r < x.rows(); ++r) {
    float sum = 0, sum2 = 0;
    for (int d = 0; d < x.D; ++d) sum += x.x[r * x.D + d], sum2 += x.x[r * x.D + d] * x.x[r * x.D + d];
    const float mean = sum / x.D, var = sum2 / x.D - mean * mean;
    for (int d = 0; d < x.D; ++d) g.dx[r * x.D + d] += var - var;  // 0, or NaN once var is not finite
  }
}

TEST(Gradient, AnOverflowingBackwardFailsWithTheMatrixCounterexample) {
  LayerEntry broken = layer("layer_norm");
  broken.name = "layer_norm_float_variance";
  broken.backward_optimized = layer_norm_backward_float_variance;
  const CellResult r = test::run_inherited(
      test::matrix_row(rows_of(broken).at(0), Family::gradient), Impl::optimized,
      kExtremeInputGradients, extreme_input_case);
  ASSERT_FALSE(r.as_expected()) << "the overflowing backward passed:\n" << section_text(r);
  const std::string text = section_text(r);
  const std::vector<std::string> want = {
      "layer_norm_float_variance [gradient] / optimized / grad_extreme_inputs — SURPRISE: "
      "expected holds, observed violated",
      "a (input) = optimized, one call on dx, dy, x [B=", "b (related input) = reference, one call on dx, dy, x [B=",
      "NaN on one side only", "RC_PARAMS=\"reproduce=", "--gtest_filter='" + test::current_test_filter() + "'"};
  for (const auto& part : want)
    EXPECT_NE(text.find(part), std::string::npos) << "no \"" << part << "\" in\n" << text;
  EXPECT_TRUE(std::isnan(value_of(r.counterexample.at("worst").at("a")))) << text;
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

const PropertyInfo kScaleCovariance{
    "grad_scale_covariance_eps", "g_scale_eps",
    "dx(αx) = dx(x)/α and dγ, dβ unchanged, with ε scaled by α²",
    "the input times α = 2^k (-8 ≤ k ≤ 8), ε times α², the same dy; a = α·(gradients at αx)",
    "dx at every position, dγ and dβ, under the gradient tolerance rule at x",
    "a scale-invariant forward has a gradient that scales as 1/α"};

TEST_P(ScaleCovariance, DxScalesAsOneOverAlpha) {
  EXPECT_INHERITED_HOLDS(test::run_inherited(
      test::matrix_row(GetParam().row, Family::gradient), GetParam().impl, kScaleCovariance,
      [](const Row& r, Impl impl) {
        const LayerRow& row = r.norm;
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
        const Grads g = backward(row, impl, x, p, s, dy);
        Grads ga = backward(row, impl, xa, pa, s, dy);
        for (auto& v : ga.dx) v *= alpha;
        const GradTolerance tol = tolerance_for(row, x, p, s, g, dy, impl);
        return compare_grads(row, p, s, {impl, xa, dy, ga}, {impl, x, dy, g}, tol, tol,
                             "a: x times α = 2^" + std::to_string(k) +
                                 " and ε times α², its dx shown times α; b: x");
      }));
}

INSTANTIATE_TEST_SUITE_P(GradientGeometry, ScaleCovariance,
                         ::testing::ValuesIn(row_impls_where(scale_invariant)), row_impl_name);

}  // namespace
}  // namespace normcheck
