// rms_norm: y = γ·x/√(mean(x²) + ε), statistics over the D features of one token, no re-centring.
// x² overflows float32 beyond |x| ≈ 1.8e19 although |y| ≤ √D·|γ| + |β|: such tokens take the
// mean square of x·2^-k instead (kernels.hpp), so the optimized kernel stays finite and agrees with
// the double reference up to ±FLT_MAX rather than returning β (1/√inf = 0).
//
// Backward: with rrms = 1/√(mean(x²)+ε), x̂ = x·rrms, dx̂ = γ·dy: dx = rrms·(dx̂ − x̂·mean(dx̂·x̂)),
// dγ = Σ dy·x̂ (and dβ = Σ dy when a β is given). Every position is a token, padding included,
// as in layer_norm.cpp (PyTorch's autograd: dγ sums over all B·T positions).
//
// The implementations — the double reference, the float32 forward (the mean square over a row
// that stays in L1 between the statistic and the output pass), the raw kernels and the backward
// — are shared with layer_norm, not centred (token_norm.cpp, token_norm.hpp, token_backward.cpp).
#include "norms/kernels_api.hpp"
#include "norms/registry.hpp"

namespace normcheck {

LayerEntry rms_norm_entry() {
  return token_norm_entry(
      false, rms_norm_kernel, "rms_norm_backward_kernel",
      {.name = "rms_norm", .formula = "γ·x/√(mean(x²)+ε)", .statistics_over = "one token",
       .params = {.bias = false},
       .rows = {{Mode::none,
                 {"token_shift_invariance", "feature_shift_invariance", "feature_scale_invariance"},
                 "no re-centring: a shift changes the root mean square; per-token statistics"}}});
}

}  // namespace normcheck
