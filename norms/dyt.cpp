// dyt (Dynamic Tanh): y = γ·tanh(α·x) + β, elementwise, no statistics at all.
#include <cmath>

#include "norms/kernels.hpp"
#include "norms/registry.hpp"

namespace normcheck {
namespace {

void check_dyt_inputs(const Batch& in, const Params& p) {
  validate_batch(in);
  validate_affine(p, in.D);
  validate_finite(p, "dyt", "alpha");
}

void dyt_reference(const Batch& in, const Params& p, Mode, State*, Output& out) {
  check_dyt_inputs(in, p);
  out.assign(in.x.size(), 0.0);
  for (std::size_t r = 0; r < in.rows(); ++r)
    for (int d = 0; d < in.D; ++d) {
      const double g = p.gamma.empty() ? 1.0 : p.gamma[d];
      const double b = p.beta.empty() ? 0.0 : p.beta[d];
      out[r * in.D + d] = g * std::tanh(p.get("alpha") * in.x[r * in.D + d]) + b;
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
  check_dyt_inputs(in, p);
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
  return {.name = "dyt", .formula = "γ·tanh(αx) + β", .statistics_over = "none (elementwise)",
          .params = {.named = {grid_param("alpha", 0.125, 2.0, "α, the slope of tanh at 0", 16)}},
          .rows = {{Mode::none, scale_and_shift_invariances(),
                    "elementwise squashing: nothing is normalized, so no scale or shift is forgotten"}},
          .reference = dyt_reference, .optimized = dyt_optimized, .conditioning = no_statistics};
}

}  // namespace normcheck
