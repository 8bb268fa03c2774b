// layer_norm: y = γ·(x − μ)/√(σ² + ε) + β, statistics over the D features of one token.
// Tokens whose float32 variance overflows (|x| ≳ 1e19) are normalized on x·2^-k (kernels.hpp),
// so every finite token gives a finite output that agrees with the double reference.
// Computed at every position (padding included: the output there is unspecified, but a
// token-wise layer never lets it reach a valid token).
//
// Backward: dx = rstd·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂)), dx̂ = γ·dy, dγ = Σ dy·x̂, dβ = Σ dy.
// Like the forward, it treats every position as a token: dx at padding is computed like any
// token's, and dγ, dβ sum over all B·T positions, padding included, which is what PyTorch's
// autograd computes for the module (golden/pytorch_grad_golden.json: dy is not 0 at padding
// there, and its dγ/dβ include it). A caller that wants padding out zeroes dy there, as a
// masked loss does. A token's dx depends on that token alone.
//
// The implementations — the double reference, the float32 forward (shifted statistics over a row
// that stays in L1 between the passes: the corrected two-pass form, μ₀ = x₀ + Σ(x − x₀)/D, then
// Σ(x − μ₀) and Σ(x − μ₀)² correct μ and give σ², on the AVX2 and baseline paths; one pass of
// Σ(x − c), Σ(x − c)² on the AVX-512 path, with that second pass for a row whose shift c was far
// out in its spread; token_norm.hpp),
// the raw kernels and the backward — are shared with rms_norm, centred (token_norm.cpp,
// token_norm.hpp, token_backward.cpp).
#include "norms/kernels_api.hpp"
#include "norms/registry.hpp"

namespace normcheck {

LayerEntry layer_norm_entry() {
  return token_norm_entry(
      true, layer_norm_kernel, "layer_norm_backward_kernel",
      {.name = "layer_norm",
       .formula = "γ·(x−μ)/√(σ²+ε) + β",
       .statistics_over = "one token, all D features",
       .rows = {{Mode::none, {"feature_shift_invariance", "feature_scale_invariance"},
                 "per-token statistics: a per-feature shift or scale changes each token's μ "
                 "and σ differently"}}});
}

}  // namespace normcheck
