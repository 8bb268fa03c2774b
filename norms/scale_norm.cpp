// scale_norm: y = g·x/max(‖x‖₂, ε) with one scalar gain g (the named parameter "gain"), per
// token.
#include <cmath>
#include <string>

#include "norms/kernels.hpp"
#include "norms/registry.hpp"

namespace normcheck {
namespace {

void check_scale_norm_inputs(const Batch& in, const Params& p) {
  validate_batch(in);
  validate_eps(p.eps);
  if (!p.gamma.empty() || !p.beta.empty())
    throw InvalidInput("scale_norm has no per-feature gamma or beta (its scalar gain is the "
                       "parameter 'gain'); got " + std::to_string(p.gamma.size()) + " gamma and " +
                       std::to_string(p.beta.size()) + " beta values");
  validate_finite(p, "scale_norm", "gain");
}

// ---------------------------------------------------------------------------------------------
// reference: double

void scale_norm_reference(const Batch& in, const Params& p, Mode, State*, Output& out) {
  check_scale_norm_inputs(in, p);
  const int D = in.D;
  const double g = p.get("gain");
  out.assign(in.x.size(), 0.0);
  for (std::size_t r = 0; r < in.rows(); ++r) {
    const float* x = &in.x[r * D];  // [D]
    double sq = 0;
    for (int d = 0; d < D; ++d) sq += double(x[d]) * x[d];
    const double norm = std::max(std::sqrt(sq), p.eps);
    for (int d = 0; d < D; ++d) out[r * D + d] = g * x[d] / norm;
  }
}

// ---------------------------------------------------------------------------------------------
// optimized: float32, one OpenMP task per token

void scale_norm_kernel(float* out, const float* x, float g, std::size_t rows, int D, float eps) {
  kernels::for_each_row(rows, std::size_t(D), [&](std::size_t r) {
    const float* xr = x + r * D;  // [D]
    float* yr = out + r * D;      // [D]
    const float ss = kernels::sum_sq_dev(xr, D, 0.0f);
    if (!std::isfinite(ss) && kernels::all_finite(xr, D)) {
      // |x| beyond ~1e19: x² overflowed; ‖x‖ > ε surely, and g·x/‖x‖ = g·(x·s)/‖x·s‖
      const float sc = kernels::overflow_scale(xr, D);
      for (int d = 0; d < D; ++d) yr[d] = xr[d] * sc;
      const float inv = g / std::sqrt(kernels::sum_sq_dev(yr, D, 0.0f));
      for (int d = 0; d < D; ++d) yr[d] *= inv;
      return;
    }
    const float scale = g / std::max(std::sqrt(ss), eps);
    for (int d = 0; d < D; ++d) yr[d] = xr[d] * scale;
  });
}

void scale_norm_optimized(const Batch& in, const Params& p, Mode, State*, Output& out) {
  check_scale_norm_inputs(in, p);
  std::vector<float> y(in.x.size());
  scale_norm_kernel(y.data(), in.x.data(), float(p.get("gain")), in.rows(), in.D,
                    float(p.eps));
  out.assign(y.begin(), y.end());
}

// ε only matters when ‖x‖ ≤ ε; there the output moves by up to its whole size.
Conditioning scale_norm_conditioning(const Batch& in, const Params& p, Mode, const State*) {
  validate_batch(in);
  Conditioning c;
  c.cond.assign(in.x.size(), 0.0);
  c.eps_rel.assign(in.x.size(), 0.0);
  for (std::size_t r = 0; r < in.rows(); ++r) {
    double sq = 0;
    for (int d = 0; d < in.D; ++d) sq += double(in.x[r * in.D + d]) * in.x[r * in.D + d];
    if (std::sqrt(sq) <= p.eps)
      for (int d = 0; d < in.D; ++d) c.eps_rel[r * in.D + d] = 1.0;
  }
  return c;
}

}  // namespace

LayerEntry scale_norm_entry() {
  ParamDef gain = gain_param("gain", "the scalar gain g");
  gain.golden_field = "gamma[0]";  // the golden format stores g as a one-element gamma
  return {.name = "scale_norm", .formula = "g·x/max(‖x‖₂, ε), scalar g", .statistics_over = "one token",
          .params = {.affine = false, .bias = false, .named = {gain}},
          .rows = {{Mode::none,
                    {"token_shift_invariance", "feature_shift_invariance", "feature_scale_invariance"},
                    "projection on the sphere: no re-centring, one norm per token"}},
          .reference = scale_norm_reference, .optimized = scale_norm_optimized,
          .conditioning = scale_norm_conditioning};
}

}  // namespace normcheck
