// layer_norm: y = γ·(x − μ)/√(σ² + ε) + β, statistics over the D features of one token.
// Tokens whose float32 variance overflows (|x| ≳ 1e19) are normalized on x·2^-k (kernels.hpp),
// so every finite token gives a finite output that agrees with the double reference.
// Computed at every position (padding included: the output there is unspecified, but a
// token-wise layer never lets it reach a valid token).
//
// Backward (below the forward): dx = rstd·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂)), dx̂ = γ·dy,
// dγ = Σ dy·x̂, dβ = Σ dy. Like the forward, it treats every position as a token: dx at padding
// is computed like any token's, and dγ, dβ sum over all B·T positions, padding included, which is
// what PyTorch's autograd computes for the module (golden/pytorch_grad_golden.json: dy is not 0 at
// padding there, and its dγ/dβ include it). A caller that wants padding out zeroes dy there, as a
// masked loss does. A token's dx depends on that token alone.
#include <cmath>
#include <utility>

#include "norms/kernels.hpp"
#include "norms/kernels_api.hpp"
#include "norms/registry.hpp"
#include "norms/token_norm.hpp"

namespace normcheck {
namespace {


// ---------------------------------------------------------------------------------------------
// reference: double, two passes, obviously right

// μ and 1/√(σ²+ε) of one token, in double
std::pair<double, double> layer_norm_reference_stats(const float* x, int D, double eps) {
  double mean = 0;
  for (int d = 0; d < D; ++d) mean += x[d];
  mean /= D;
  double var = 0;
  for (int d = 0; d < D; ++d) var += (x[d] - mean) * (x[d] - mean);
  var /= D;
  return {mean, 1.0 / std::sqrt(var + eps)};
}

void layer_norm_reference(const Batch& in, const Params& p, Mode, State*, Output& out) {
  validate_affine_norm(in, p);
  const int D = in.D;
  out.assign(in.x.size(), 0.0);
  for (std::size_t r = 0; r < in.rows(); ++r) {
    const float* x = &in.x[r * D];  // [D]
    const auto [mean, rstd] = layer_norm_reference_stats(x, D, p.eps);
    for (int d = 0; d < D; ++d) {
      const double g = p.gamma.empty() ? 1.0 : p.gamma[d];
      const double b = p.beta.empty() ? 0.0 : p.beta[d];
      out[r * D + d] = g * (x[d] - mean) * rstd + b;
    }
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// optimized: float32, shifted two-pass statistics (μ = x₀ + Σ(x − x₀)/D, then
// σ² = Σ(x − μ)²/D); the row loop, the overflow path, the output pass and the three
// instruction-set paths are token_norm.hpp's, shared with rms_norm (kCenter = true)

void layer_norm_kernel(float* out, const float* x, const float* gamma, const float* beta,
                       std::size_t rows, int D, float eps) {
  validate_rows("layer_norm_kernel", out, x, rows, D);
  validate_eps(eps);
  kernels::token_norm_forward<true>(out, x, gamma, beta, rows, D, eps);
}

// ---------------------------------------------------------------------------------------------
// backward: the registry's reference and optimized passes and the raw kernel below all from
// token_backward.cpp (token_groups_backward, one group): the optimized one computes each token's
// statistics as the forward's baseline path does, dγ/dβ over fixed row segments

void layer_norm_backward_kernel(float* dx, float* dgamma, float* dbeta, const float* dy,
                                const float* x, const float* gamma, std::size_t rows, int D,
                                float eps) {
  kernels::token_groups_backward("layer_norm_backward_kernel", true, dx, dgamma, dbeta, dy, x,
                                 gamma, rows, D, 1, eps);
}

LayerEntry layer_norm_entry() {
  return {.name = "layer_norm",
          .formula = "γ·(x−μ)/√(σ²+ε) + β",
          .statistics_over = "one token, all D features",
          .rows = {{Mode::none, {"feature_shift_invariance", "feature_scale_invariance"},
                    "per-token statistics: a per-feature shift or scale changes each token's μ "
                    "and σ differently"}},
          .reference = layer_norm_reference,
          .optimized = affine_kernel_forward(layer_norm_kernel),
          .conditioning = token_conditioning(true),
          .backward_reference = token_groups_backward(Impl::reference, "layer_norm_backward_kernel",
                                                      true, validate_affine_norm),
          .backward_optimized = token_groups_backward(Impl::optimized, "layer_norm_backward_kernel",
                                                      true, validate_affine_norm)};
}

}  // namespace normcheck
