// dyt (Dynamic Tanh): y = γ·tanh(α·x) + β, elementwise, no statistics at all.
#include <cmath>

#include "norms/kernels.hpp"
#include "norms/registry.hpp"

namespace normcheck {
namespace {

void check_inputs(const Batch& in, const Params& p) {
  validate_batch(in);
  validate_affine(p, in.D);
  if (!std::isfinite(p.get("alpha")))
    throw InvalidInput("dyt: alpha must be finite, got alpha = " + format_value(p.get("alpha")));
}

void dyt_reference(const Batch& in, const Params& p, Mode, State*, Output& out) {
  check_inputs(in, p);
  const int D = in.D;
  const double alpha = p.get("alpha");
  out.assign(in.x.size(), 0.0);
  for (std::size_t i = 0; i < in.x.size(); ++i) {
    const int d = int(i % D);
    const double g = p.gamma.empty() ? 1.0 : p.gamma[d];
    const double b = p.beta.empty() ? 0.0 : p.beta[d];
    out[i] = g * std::tanh(alpha * in.x[i]) + b;
  }
}

void dyt_kernel(float* out, const float* x, const float* gamma, const float* beta,
                std::size_t rows, int D, float alpha) {
  kernels::for_each_row(rows, std::size_t(D), [&](std::size_t r) {
    const float* xr = x + r * D;  // [D]
    float* yr = out + r * D;      // [D]
    for (int d = 0; d < D; ++d)
      yr[d] = (gamma ? gamma[d] : 1.0f) * std::tanh(alpha * xr[d]) + (beta ? beta[d] : 0.0f);
  });
}

void dyt_optimized(const Batch& in, const Params& p, Mode, State*, Output& out) {
  check_inputs(in, p);
  run_affine_kernel(in, p, out, [&](float* y, const float* x, const float* g, const float* b) {
    dyt_kernel(y, x, g, b, in.rows(), in.D, float(p.get("alpha")));
  });
}

}  // namespace

// No statistics: nothing is ill-conditioned and ε does not exist.
Conditioning no_statistics(const Batch& in, const Params&, Mode, const State*) {
  validate_batch(in);
  return {std::vector<double>(in.x.size(), 0.0), std::vector<double>(in.x.size(), 0.0)};
}

LayerEntry dyt_entry() {
  LayerEntry e;
  e.name = "dyt";
  e.formula = "γ·tanh(αx) + β";
  e.statistics_over = "none (elementwise)";
  e.params = {.named = {grid_param("alpha", 0.125, 2.0, "α, the slope of tanh at 0", 16)}};
  e.rows = {{Mode::none,
             {"token_scale_invariance", "global_scale_invariance", "token_shift_invariance",
              "feature_shift_invariance", "feature_scale_invariance"},
             "elementwise squashing: nothing is normalized, so no scale or shift is forgotten"}};
  e.reference = dyt_reference;
  e.optimized = dyt_optimized;
  e.conditioning = no_statistics;
  return e;
}

}  // namespace normcheck
