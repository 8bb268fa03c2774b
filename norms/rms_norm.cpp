// rms_norm: y = γ·x/√(mean(x²) + ε), statistics over the D features of one token, no re-centring.
// x² overflows float32 beyond |x| ≈ 1.8e19 although |y| ≤ √D·|γ| + |β|: such tokens take the
// mean square of x·2^-k instead (kernels.hpp), so the optimized kernel stays finite and agrees with
// the double reference up to ±FLT_MAX rather than returning β (1/√inf = 0).
//
// Backward (below the forward): with rrms = 1/√(mean(x²)+ε), x̂ = x·rrms, dx̂ = γ·dy:
// dx = rrms·(dx̂ − x̂·mean(dx̂·x̂)), dγ = Σ dy·x̂ (and dβ = Σ dy when a β is given). Every
// position is a token, padding included, as in layer_norm.cpp (PyTorch's autograd: dγ sums over
// all B·T positions).
#include <cmath>

#include "norms/kernels.hpp"
#include "norms/kernels_api.hpp"
#include "norms/registry.hpp"
#include "norms/token_norm.hpp"

namespace normcheck {
namespace {


// ---------------------------------------------------------------------------------------------
// reference: double

void rms_norm_reference(const Batch& in, const Params& p, Mode, State*, Output& out) {
  validate_affine_norm(in, p);
  const int D = in.D;
  out.assign(in.x.size(), 0.0);
  for (std::size_t r = 0; r < in.rows(); ++r) {
    const float* x = &in.x[r * D];  // [D]
    double ms = 0;
    for (int d = 0; d < D; ++d) ms += double(x[d]) * x[d];
    ms /= D;
    const double rrms = 1.0 / std::sqrt(ms + p.eps);
    for (int d = 0; d < D; ++d) {
      const double g = p.gamma.empty() ? 1.0 : p.gamma[d];
      const double b = p.beta.empty() ? 0.0 : p.beta[d];
      out[r * D + d] = g * x[d] * rrms + b;
    }
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// optimized: float32, the mean square, no re-centring; the row loop, the overflow path, the
// output pass and the three instruction-set paths are token_norm.hpp's, shared with layer_norm
// (kCenter = false)

void rms_norm_kernel(float* out, const float* x, const float* gamma, const float* beta,
                     std::size_t rows, int D, float eps) {
  validate_rows("rms_norm_kernel", out, x, rows, D);
  validate_eps(eps);
  kernels::token_norm_forward<false>(out, x, gamma, beta, rows, D, eps);
}

// ---------------------------------------------------------------------------------------------
// backward: the registry's reference and optimized passes and the raw kernel below all from
// token_backward.cpp (token_groups_backward, one group, not centred)

void rms_norm_backward_kernel(float* dx, float* dgamma, float* dbeta, const float* dy,
                              const float* x, const float* gamma, std::size_t rows, int D,
                              float eps) {
  kernels::token_groups_backward("rms_norm_backward_kernel", false, dx, dgamma, dbeta, dy, x,
                                 gamma, rows, D, 1, eps);
}

LayerEntry rms_norm_entry() {
  return {.name = "rms_norm", .formula = "γ·x/√(mean(x²)+ε)", .statistics_over = "one token",
          .params = {.bias = false},
          .rows = {{Mode::none,
                    {"token_shift_invariance", "feature_shift_invariance", "feature_scale_invariance"},
                    "no re-centring: a shift changes the root mean square; per-token statistics"}},
          .reference = rms_norm_reference, .optimized = affine_kernel_forward(rms_norm_kernel),
          .conditioning = token_conditioning(false),
          .backward_reference = token_groups_backward(Impl::reference, "rms_norm_backward_kernel",
                                                      false, validate_affine_norm),
          .backward_optimized = token_groups_backward(Impl::optimized, "rms_norm_backward_kernel",
                                                      false, validate_affine_norm)};
}

}  // namespace normcheck
