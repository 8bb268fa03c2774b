// group_norm: LayerNorm within each of G contiguous feature groups of one token; γ, β per
// feature. G must divide D.
//
// Backward (below the forward): LayerNorm's within each group (layer_norm.cpp), dγ, dβ per
// feature summed over every position, padding included (PyTorch's autograd for the module).
#include <cmath>
#include <string>

#include "norms/kernels.hpp"
#include "norms/kernels_api.hpp"
#include "norms/registry.hpp"

namespace normcheck {
namespace {

int group_count(const Params& p) { return int(p.get("groups")); }

void check_group_norm_inputs(const Batch& in, const Params& p) {
  validate_affine_norm(in, p);
  const double G = p.get("groups");
  if (!(G >= 1) || G != std::floor(G) || in.D % int(G) != 0)
    throw InvalidInput("group_norm: groups = " + format_value(G) +
                       " must be a positive whole number that divides D = " + std::to_string(in.D));
}

// ---------------------------------------------------------------------------------------------
// reference: double, two passes per group

void group_norm_reference(const Batch& in, const Params& p, Mode, State*, Output& out) {
  check_group_norm_inputs(in, p);
  const int D = in.D, G = int(p.get("groups")), gs = D / G;
  out.assign(in.x.size(), 0.0);
  for (std::size_t r = 0; r < in.rows(); ++r)
    for (int g = 0; g < G; ++g) {
      const float* x = &in.x[r * D + g * gs];  // [gs]
      double mean = 0, var = 0;
      for (int i = 0; i < gs; ++i) mean += x[i];
      mean /= gs;
      for (int i = 0; i < gs; ++i) var += (x[i] - mean) * (x[i] - mean);
      var /= gs;
      for (int i = 0; i < gs; ++i) {
        const int d = g * gs + i;
        const double ga = p.gamma.empty() ? 1.0 : p.gamma[d];
        const double be = p.beta.empty() ? 0.0 : p.beta[d];
        out[r * D + d] = ga * (x[i] - mean) / std::sqrt(var + p.eps) + be;
      }
    }
}

// ---------------------------------------------------------------------------------------------
// optimized: float32, one OpenMP task per token, the LayerNorm reduction per group

void group_norm_kernel(float* out, const float* x, const float* gamma, const float* beta,
                       std::size_t rows, int D, int G, float eps) {
  const int gs = D / G;
  kernels::for_each_row(rows, std::size_t(D), [&](std::size_t r) {
    for (int g = 0; g < G; ++g) {
      const float* xg = x + r * D + g * gs;  // [gs]
      float* yg = out + r * D + g * gs;      // [gs]
      float mean, var, e = eps;
      const float* src = xg;
      kernels::mean_var(xg, gs, mean, var);
      if (!std::isfinite(var) && kernels::all_finite(xg, gs)) {
        // |x| beyond ~1e19: the squares overflowed; the same passes on x·2^-k (kernels.hpp),
        // written into yg (xg is not read again)
        const float sc = kernels::overflow_scale(xg, gs);
        for (int i = 0; i < gs; ++i) yg[i] = xg[i] * sc;
        kernels::mean_var(yg, gs, mean, var);
        e = eps * sc * sc;
        src = yg;
      }
      const float rstd = 1.0f / std::sqrt(var + e);
      for (int i = 0; i < gs; ++i) {
        const int d = g * gs + i;
        yg[i] = (src[i] - mean) * rstd * (gamma ? gamma[d] : 1.0f) + (beta ? beta[d] : 0.0f);
      }
    }
  });
}

void group_norm_optimized(const Batch& in, const Params& p, Mode, State*, Output& out) {
  check_group_norm_inputs(in, p);
  run_affine_kernel(in, p, out, [&](float* y, const float* x, const float* g, const float* b) {
    group_norm_kernel(y, x, g, b, in.rows(), in.D, int(p.get("groups")), float(p.eps));
  });
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// backward: LayerNorm's within each group, the registry's reference and optimized passes and the
// raw kernel below all from token_backward.cpp (token_groups_backward)

void group_norm_backward_kernel(float* dx, float* dgamma, float* dbeta, const float* dy,
                                const float* x, const float* gamma, std::size_t rows, int D, int G,
                                float eps) {
  kernels::token_groups_backward("group_norm_backward_kernel", true, dx, dgamma, dbeta, dy, x,
                                 gamma, rows, D, G, eps);
}

LayerEntry group_norm_entry() {
  return {.name = "group_norm",
          .formula = "LN within each of G contiguous feature groups: γ·(x−μ_g)/√(σ_g²+ε) + β",
          .statistics_over = "one token, G contiguous feature groups",
          .params = {.named = {groups_param("groups", "G contiguous feature groups (G divides D)")}},
          .rows = {{Mode::none, {"feature_shift_invariance", "feature_scale_invariance"},
                    "per-token group statistics: a per-feature shift or scale moves each group's μ, σ"}},
          .reference = group_norm_reference, .optimized = group_norm_optimized,
          .conditioning = token_conditioning(true, "groups"),
          .backward_reference = token_groups_backward(Impl::reference, "group_norm_backward_kernel",
                                                      true, check_group_norm_inputs, group_count),
          .backward_optimized = token_groups_backward(Impl::optimized, "group_norm_backward_kernel",
                                                      true, check_group_norm_inputs, group_count)};
}

}  // namespace normcheck
