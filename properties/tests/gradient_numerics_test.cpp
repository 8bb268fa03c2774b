// The backward passes of every registry layer that has one, both implementations where it
// applies (one gtest test per row, run as a cell of its own: inherited.hpp; RC_PARAMS sets the
// budget and replays a failure, which prints as a matrix cell's section):
// - under the gradient tolerance rule (gradient_tolerance, gradient_scale: compare.hpp): the
//   optimized kernel against the reference, on hard inputs and on extreme finite inputs; the
//   geometry of normalization: layer_norm Σ_d dx = 0 and dx·x̂ = 0, rms_norm dx·x = 0,
//   dx(αx) = dx(x)/α for scale-invariant rows;
// - what needs no tolerance rule: the reference against finite differences, thread
//   determinism, batch invariance (validation and the raw kernels: norms/tests/gradient_test.cpp).
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

// One drawn case of a gradient row on the batch `x`: the layer's parameters at x's width, its
// running statistics and an upstream gradient dy.
struct GradCase {
  const LayerRow& row;
  Batch x;
  Params p;
  State s;
  std::vector<float> dy;

  Grads backward(Impl impl) const { return test::grad::backward(row, impl, x, p, s, dy); }
  GradSide side(Impl impl, const Grads& g) const { return {impl, x, dy, g}; }
};

GradCase draw_case(const LayerRow& row, Batch x) {
  const int D = x.D;
  Params p = draw_params(*row.layer, D);
  const auto dy = draw_dy(x.x.size());
  return {row, std::move(x), std::move(p), test::state_for(D), dy};
}

// A case at width D on a padded batch (at least two tokens a sequence in train rows).
GradCase draw_case(const LayerRow& row, int D) { return draw_case(row, draw_batch(D, min_len(row))); }

// The tolerance rule for the case's call (gradient_terms: compare.hpp) with `ref` its expected
// gradients, padding counted as tokens where the row computes it so: every position's dx is
// compared here.
GradTolerance tolerance_for(const GradCase& c, const Grads& ref, Impl impl = Impl::optimized) {
  return gradient_tolerance(gradient_terms(c.row, c.x, c.p, c.s, ref, c.dy, true), impl);
}
// dγ and dβ's: sums over positions, at the scale of their terms (param_gradient_tolerance)
GradTolerance affine_tolerance_for(const GradCase& c, const Grads& ref, Impl impl = Impl::optimized) {
  return param_gradient_tolerance(gradient_terms(c.row, c.x, c.p, c.s, ref, c.dy, true), impl);
}

// How two sides' gradients are compared.
struct Compared {
  GradTolerance dx_tol = {}, affine_tol = {};  // for Comparison::values
  Comparison how = Comparison::values;
  // the token pairs (a's position, b's) whose dx are compared; empty: every position of both
  std::vector<std::pair<norm_scenario::TokenPos, norm_scenario::TokenPos>> pairs = {};
  bool affine = true;                          // dγ and dβ too
  std::function<bool(double)> skip_affine = {};  // a feature whose expected value this says is not compared
};

// Side a's gradients against side b's (the expected side), as a matrix cell compares them: dx
// token by token (under `dx_tol` for values), dγ and dβ feature by feature (`affine_tol`), into
// the evidence the reports print. A gradient of the wrong size is a failure of its own.
CaseOutcome compare_grads(const LayerRow& row, const Params& p, const State& s, const GradSide& a,
                          const GradSide& b, const Compared& c, const std::string& note) {
  Diff d(Labels{{"b", "t"}, "d", "x", "dx"}, c.how);
  if (a.g.dx.size() != a.x.x.size() || b.g.dx.size() != b.x.x.size() ||
      (c.pairs.empty() && a.x.x.size() != b.x.x.size())) {
    d.fail("dx size (B·T·D = " + std::to_string(b.x.x.size()) + ")", double(a.g.dx.size()),
           double(b.g.dx.size()));
  } else {
    auto pairs = c.pairs;
    if (pairs.empty())
      for (int bb = 0; bb < b.x.B; ++bb)
        for (int t = 0; t < b.x.T; ++t) pairs.push_back({{0, bb, t}, {0, bb, t}});
    for (const auto& [pa, pb] : pairs) {
      const std::size_t i = a.x.index(pa.b, pa.t, 0), j = b.x.index(pb.b, pb.t, 0);
      d.rows({0, {pa.b, pa.t}}, {0, {pb.b, pb.t}}, RowView(&a.g.dx[i], a.x.D),
             RowView(&b.g.dx[j], b.x.D), [&](int k) { return c.dx_tol.bound(b.g.dx[j + k]); },
             RowView(&a.x.x[i], a.x.D), RowView(&b.x.x[j], b.x.D));
    }
  }
  for (auto [name, ga, gb] : {std::tuple{"dgamma", &a.g.dgamma, &b.g.dgamma},
                              std::tuple{"dbeta", &a.g.dbeta, &b.g.dbeta}}) {
    if (!c.affine) break;
    if (ga->size() != gb->size()) {
      d.fail(std::string(name) + " size", double(ga->size()), double(gb->size()));
      continue;
    }
    for (std::size_t f = 0; f < gb->size(); ++f)
      if (!c.skip_affine || !c.skip_affine((*gb)[f]))
        d.value(std::string(name) + "[" + std::to_string(f) + "]", (*ga)[f], (*gb)[f],
                c.affine_tol.bound((*gb)[f]));
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

// The test prefix/suite_.test_/<row>: one test per row `keep` accepts, each running `check` on
// the row's gradient row with `impl` as a cell that must hold (inherited.hpp).
#define GRADIENT_TEST(prefix, suite_, test_, keep, impl, info, check)                \
  NORMCHECK_INHERITED_TEST(prefix, suite_, test_, rows_with(keep, impl), row_name, \
                           Family::gradient, info, check)

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

const PropertyInfo kGradReferenceAgreement{
    "grad_reference_agreement_hard", "g_ref_hard",
    "the optimized gradients agree with the reference's under the gradient tolerance rule",
    "the same input and dy through the reference backward (ordinary values, 1e3 ± 0.1, variance "
    "far below ε, constant tokens)",
    "dx at every position, dγ and dβ",
    "the fast backward computes the same gradients"};

CaseOutcome reference_agreement_case(const Row& r, Impl) {
  GradCase c = draw_case(r.norm, *element(1, 2, 4, 7, 31, 33, 100));
  const Hard h = *element(Hard::ordinary, Hard::offset, Hard::tiny_variance, Hard::constant_tokens);
  make_hard(c.x, h);
  const Grads ref = c.backward(Impl::reference);
  const Grads opt = c.backward(Impl::optimized);
  return compare_grads(c.row, c.p, c.s, c.side(Impl::optimized, opt), c.side(Impl::reference, ref),
                       {.dx_tol = tolerance_for(c, ref), .affine_tol = affine_tolerance_for(c, ref)},
                       std::string("inputs: ") + to_string(h) + "; the same x and dy through the reference");
}

GRADIENT_TEST(Gradient, ReferenceAgreement, OptimizedGradientsAgreeWithTheReference, has_gradient,
              Impl::optimized, kGradReferenceAgreement, reference_agreement_case);

// Finite inputs whose float32 statistics overflow (±1e30, and up to ±FLT_MAX in token-wise rows,
// as numerics_test.cpp's ExtremeInput asks of the forward): optimized gradients stay finite and
// agree with the reference. dx scales as 1/σ while dγ, dβ do not, so here each is compared
// with the rule applied to its own largest value (the rule's one max|grad| over all three would
// not look at a dx of 1e-30).
const PropertyInfo kExtremeInputGradients{
    "grad_extreme_inputs", "g_extreme",
    "on finite inputs whose float32 statistics overflow, the optimized gradients are finite and "
    "agree with the reference's",
    "the same input (k·1e30/64, token-wise rows also k·FLT_MAX/64, |k| ≤ 64) and dy through the "
    "reference backward",
    "dx at every position under the rule at dx's own scale; dγ and dβ at the scale of their "
    "terms (a value beyond "
    "float32 in the reference is not compared: inf is the right float answer)",
    "a kernel must not turn a finite activation into NaN or inf in the backward pass"};

CaseOutcome extreme_input_case(const Row& r, Impl) {
  GradCase c = draw_case(r.norm, width());
  // up to ±FLT_MAX only for token-wise rows: batch statistics of ±3e38 put x − μ out of
  // float range in BatchNorm's float step, as in its forward (README, Defined numerics)
  const float scale = token_wise(c.row) ? *element(1e30f / 64, FLT_MAX / 64) : 1e30f / 64;
  for (auto& v : c.x.x) v *= 16.0f * scale;  // k·scale, |k| ≤ 64
  const Grads ref = c.backward(Impl::reference);
  const Grads opt = c.backward(Impl::optimized);
  // an optimized value NaN or inf where the double reference (which does not overflow
  // here) is finite is a counterexample of its own (Diff: non-finite on one side).
  // dx scales as 1/σ while dγ, dβ do not: dx under the rule at its own largest value (the
  // rule's one max|grad| over all three would not look at a dx of 1e-30), dγ and dβ at the scale
  // of their terms, as reference_agreement_case has them (affine_tolerance_for): a dγ whose terms
  // cancel to exactly 0 in the reference is a rounding error away from 0 in float32, which the
  // rule at the result's own scale failed (seed 60: rms_norm, three tokens of D = 1 at ±FLT_MAX·k/64,
  // dγ = −7.5e-8 against 0, tolerance 1.7e-43)
  Grads ref_dx, ref_affine = ref;
  ref_dx.dx = ref.dx;
  ref_affine.dx.clear();
  // a dγ beyond float32 (batch_norm eval: Σ dy·x̂ of values near FLT_MAX) is inf in float:
  // the right float answer, so such values are neither compared nor part of the scale
  const auto beyond_float = [](double v) { return std::abs(v) > double(FLT_MAX) * (1 - 1e-5); };
  for (auto* v : {&ref_affine.dgamma, &ref_affine.dbeta})
    for (auto& e : *v)
      if (beyond_float(e)) e = 0;
  return compare_grads(c.row, c.p, c.s, c.side(Impl::optimized, opt), c.side(Impl::reference, ref),
                       {.dx_tol = tolerance_for(c, ref_dx),
                        .affine_tol = affine_tolerance_for(c, ref_affine),
                        .skip_affine = beyond_float},
                       "every value times " + format_number(16.0 * scale) +
                           " (extreme finite inputs); the same x and dy through the reference");
}

GRADIENT_TEST(Gradient, ExtremeInputGradients, FiniteAndAgreeWithTheReference, has_gradient,
              Impl::optimized, kExtremeInputGradients, extreme_input_case);

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
const PropertyInfo kScaleCovariance{
    "grad_scale_covariance_eps", "g_scale_eps",
    "dx(αx) = dx(x)/α and dγ, dβ unchanged, with ε scaled by α²",
    "the input times α = 2^k (-8 ≤ k ≤ 8), ε times α², the same dy; a = α·(gradients at αx)",
    "dx at every position, dγ and dβ, under the gradient tolerance rule at x",
    "a scale-invariant forward has a gradient that scales as 1/α"};

CaseOutcome scale_covariance_case(const Row& r, Impl impl) {
  const GradCase c = draw_case(r.norm, width());
  const int k = *inRange(-8, 9);
  const double alpha = std::ldexp(1.0, k);
  GradCase scaled = c;
  for (auto& v : scaled.x.x) v = float(v * alpha);
  scaled.p.eps = c.p.eps * alpha * alpha;
  const Grads g = c.backward(impl);
  Grads ga = scaled.backward(impl);
  for (auto& v : ga.dx) v *= alpha;
  return compare_grads(c.row, c.p, c.s, scaled.side(impl, ga), c.side(impl, g),
                       {.dx_tol = tolerance_for(c, g, impl), .affine_tol = affine_tolerance_for(c, g, impl)},
                       "a: x times α = 2^" + std::to_string(k) +
                           " and ε times α², its dx shown times α; b: x");
}

NORMCHECK_INHERITED_TEST(GradientGeometry, ScaleCovariance, DxScalesAsOneOverAlpha,
                         row_impls_where(scale_invariant), row_impl_name, Family::gradient,
                         kScaleCovariance, scale_covariance_case);

// ---------------------------------------------------------------------------------------------
// What needs no tolerance rule, each a cell of its gradient row like the tests above (they were
// in norms/tests/gradient_test.cpp, whose binary cannot print the matrix's section).

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
// times that, plus 1e-7 of S = Σ|dx·v| + Σ|dγ·u| + Σ|dβ·w|, the size of the terms the
// derivative adds up: the bugs this catches are relative changes of 1/n or more (n − 1 for n
// in a variance, a dropped term).
const PropertyInfo kFiniteDifferences{
    "grad_finite_differences_2e-19", "g_fin_diff",
    "the reference gradient is the derivative of the double forward",
    "the forward at x + t·v, γ + t·u, β + t·w (integer directions in [-8, 8], t = ±2^-19, "
    "±2^-20), Richardson-extrapolated central differences of Σ dy·y",
    "Σ dx·v + Σ dγ·u + Σ dβ·w against the finite differences, within 1e-7·Σ|terms| + "
    "3e-13·Σ(1 + |dy·y|)/h",
    "the backward pass computes the gradient of the forward it belongs to"};

CaseOutcome finite_difference_case(const Row& r, Impl) {
  const GradCase c = draw_case(r.norm, width());
  const auto& [row, x, p, s, dy] = c;
  const auto dir = [](std::size_t n) {
    return *rc::gen::container<std::vector<int>>(n, inRange(-8, 9));
  };
  const auto v = dir(x.x.size()), u = dir(p.gamma.size()), w = dir(p.beta.size());

  const Grads g = c.backward(Impl::reference);
  double analytic = 0, S = 0;
  for (std::size_t i = 0; i < v.size(); ++i) analytic += g.dx[i] * v[i], S += std::abs(g.dx[i] * v[i]);
  for (std::size_t d = 0; d < u.size(); ++d) analytic += g.dgamma[d] * u[d], S += std::abs(g.dgamma[d] * u[d]);
  for (std::size_t d = 0; d < w.size(); ++d) analytic += g.dbeta[d] * w[d], S += std::abs(g.dbeta[d] * w[d]);

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
  double rounding = 0;  // Σ (1 + |dy·y|) at t = 0
  const Output y0 = test::run(row, Impl::reference, x, p, s);
  for (std::size_t i = 0; i < y0.size(); ++i) rounding += 1 + std::abs(dy[i] * y0[i]);
  const double h = std::ldexp(1.0, -19);
  const double d1 = (F(h) - F(-h)) / (2 * h), d2 = (F(h / 2) - F(-h / 2)) / h;
  const double richardson = (4 * d2 - d1) / 3;
  const double tol = 1e-7 * S + 3e-13 * rounding / h;
  Diff d(Labels{{"b", "t"}, "d", "x", "dx"});
  d.value("Σdx·v + Σdγ·u + Σdβ·w (a: the reference's gradients, b: finite differences)",
          analytic, richardson, tol);
  return outcome(d, "directional derivative along random integer directions v (of x), u (of γ), "
                    "w (of β); central differences " + format_number(d2) + " at h/2 = 2^-20",
                 [&] {
                   const std::vector<std::string> dims = {"B", "T", "D"};
                   const std::vector<int> shape = {x.B, x.T, x.D};
                   CaseRecord rec{.input = grad_side_json(c.side(Impl::reference, g), row.mode()),
                                  .related = side_json(
                                      "finite differences of the reference forward",
                                      nlohmann::json::array({call_json(
                                          {{"B", x.B}, {"T", x.T}, {"D", x.D}},
                                          {{"x", tensor_json(x.x, dims, shape)},
                                           {"v", tensor_json(std::vector<float>(v.begin(), v.end()),
                                                             dims, shape)}},
                                          {{"lengths", x.lengths}})}))};
                   norm_scenario::Scenario sc;
                   sc.params = p;
                   sc.state = s;
                   rec.params = norm_scenario::params_json(sc);
                   if (!u.empty()) rec.params["u (direction of gamma)"] = u;
                   if (!w.empty()) rec.params["w (direction of beta)"] = w;
                   rec.params["S = Σ|terms|"] = S;
                   rec.params["rounding = Σ(1 + |dy·y|)"] = rounding;
                   return rec;
                 });
}

GRADIENT_TEST(Gradient, FiniteDifferences, ReferenceGradientIsTheDerivativeOfTheForward,
              has_gradient, Impl::reference, kFiniteDifferences, finite_difference_case);

// Determinism of the optimized kernel: bitwise the same dx, dγ, dβ at 1, 2, 3 and 4 threads and
// on a repeat. The batches are large enough for the OpenMP paths (kernels::kParallelMinValues)
// and span several row segments.
const PropertyInfo kThreadDeterminism{
    "grad_threads_1_to_4", "g_threads",
    "the optimized gradients are bitwise the same at 1, 2, 3 and 4 OpenMP threads and on a repeat",
    "the same x and dy (batches past the parallel threshold; in half the cases rows of dy·2^60 "
    "followed by their negation) run with another thread count",
    "dx at every position, dγ and dβ, bitwise",
    "results never depend on the machine's parallelism"};

CaseOutcome thread_determinism_case(const Row& r, Impl) {
  const int D = *element(1, 7, 17, 33, 100, 256);
  const int B = *inRange(1, 9);
  const int T = *inRange(std::max(2, 4096 / (B * D) + 1), std::max(3, 8192 / (B * D) + 2));
  std::vector<int> lengths(B);
  for (auto& l : lengths) l = *inRange(min_len(r.norm), T + 1);
  const auto k = *rc::gen::container<std::vector<int>>(std::size_t(B) * T * D, inRange(-64, 65));
  Batch batch(B, T, D);
  batch.lengths = lengths;
  for (std::size_t i = 0; i < batch.x.size(); ++i) batch.x[i] = float(k[i]) / 16.0f;
  GradCase c = draw_case(r.norm, std::move(batch));
  auto& [row, x, p, s, dy] = c;
  // dγ, dβ are summed in double, and sums of grid values are exact in any order, so a
  // reduction whose order followed the threads would go unseen. In some cases every third
  // row r (r % 3 = 1) gets dy·2^60 and the next row the same x and −dy·2^60: the pair cancels
  // exactly but wipes out the small sum accumulated before it ((s + 2^60) − 2^60 = 0 in
  // double), so what survives depends on where the segments of rows begin and end.
  const bool cancelling = *inRange(0, 2);
  if (cancelling)
    for (std::size_t r2 = 1; r2 + 1 < x.rows(); r2 += 3)
      for (int d = 0; d < D; ++d) {
        dy[r2 * D + d] = std::ldexp(dy[r2 * D + d], 60);
        dy[(r2 + 1) * D + d] = -dy[r2 * D + d];
        x.x[(r2 + 1) * D + d] = x.x[r2 * D + d];
      }
  Grads first;
  {
    Threads one(1);
    first = c.backward(Impl::optimized);
  }
  CaseOutcome o;
  for (int threads : {1, 2, 3, 4}) {
    Grads g;
    {
      Threads n(threads);
      g = c.backward(Impl::optimized);
    }
    o = compare_grads(row, p, s, c.side(Impl::optimized, first), c.side(Impl::optimized, g),
                      {.how = Comparison::bitwise},
                      "1 thread (a) vs " + std::to_string(threads) + " threads (b)" +
                          (cancelling ? "; rows of dy·2^60 followed by their negation" : ""));
    if (o.any()) break;
  }
  return o;
}

GRADIENT_TEST(Gradient, ThreadDeterminism, BitwiseAtAnyThreadCount, has_gradient,
              Impl::optimized, kThreadDeterminism, thread_determinism_case);

// Batch invariance: a sequence's dx is bitwise the same alone (a batch of one, T = its length)
// and inside a batch of other sequences at any index, with more padding, at 1-4 threads.
const PropertyInfo kBatchInvariance{
    "grad_batch_invariance_alone", "g_batch_bits",
    "a sequence's optimized dx is bitwise the same alone and inside a batch at any index",
    "the sequence alone (a batch of one, T = its length) vs inside a batch of up to 8 sequences "
    "of up to 40 tokens, at 1 to 4 threads",
    "the sequence's valid tokens' dx, bitwise",
    "serving results do not change with the batch a request lands in"};

CaseOutcome batch_invariance_case(const Row& r, Impl) {
  const int D = *element(1, 7, 17, 33, 100);
  Batch drawn = draw_batch(D, 1, 8, 40);
  const int b = *inRange(0, drawn.B);
  const int len = std::max(1, drawn.lengths[b]);
  drawn.lengths[b] = len;
  const GradCase c = draw_case(r.norm, std::move(drawn));
  const auto& [row, batch, p, s, dy] = c;
  Batch alone(1, len, D);
  std::vector<float> dy_alone(std::size_t(len) * D);
  for (int t = 0; t < len; ++t)
    for (int d = 0; d < D; ++d) {
      alone.at(0, t, d) = batch.at(b, t, d);
      dy_alone[alone.index(0, t, d)] = dy[batch.index(b, t, d)];
    }
  const Grads a = backward(row, Impl::optimized, alone, p, s, dy_alone);
  const int threads = *inRange(1, 5);
  Grads g;
  {
    Threads n(threads);
    g = c.backward(Impl::optimized);
  }
  Compared how{.how = Comparison::bitwise, .affine = false};
  for (int t = 0; t < len; ++t) how.pairs.push_back({{0, 0, t}, {0, b, t}});
  return compare_grads(row, p, s, {Impl::optimized, alone, dy_alone, a}, c.side(Impl::optimized, g), how,
                       "sequence " + std::to_string(b) + " alone (a) and in the batch (b) at " +
                           std::to_string(threads) + " threads, with the same dy");
}

GRADIENT_TEST(Gradient, BatchInvariance, SequenceDxIsBitwiseTheSameAloneAndInAnyBatch, token_wise,
              Impl::optimized, kBatchInvariance, batch_invariance_case);

}  // namespace
}  // namespace normcheck
