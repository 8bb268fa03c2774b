// What layer_norm and rms_norm share, besides the float32 forward template (token_norm.hpp): the
// double reference, the four raw kernels of kernels_api.hpp (each the shared template, or the
// shared backward of token_backward.cpp, at the layer's centring) and the implementation fields
// of their registry entries (token_norm_entry, registry.hpp). The layer files hold what differs:
// the formula, the parameters and the expected profile.
#include <cmath>

#include "norms/kernels.hpp"
#include "norms/kernels_api.hpp"
#include "norms/registry.hpp"
#include "norms/token_norm.hpp"

namespace normcheck {
namespace {

// ---------------------------------------------------------------------------------------------
// reference: double, two passes, obviously right. Per token μ = mean(x) (center; else 0),
// rstd = 1/√(mean((x − μ)²) + ε), y = γ·(x − μ)·rstd + β. Not centred, x − 0 is x exactly in
// double: the mean square and γ·x·rrms + β.

void token_norm_reference(bool center, const Batch& in, const Params& p, Output& out) {
  validate_affine_norm(in, p);
  const int D = in.D;
  out.assign(in.x.size(), 0.0);
  for (std::size_t r = 0; r < in.rows(); ++r) {
    const float* x = &in.x[r * D];  // [D]
    double mean = 0;
    if (center) {
      for (int d = 0; d < D; ++d) mean += x[d];
      mean /= D;
    }
    double var = 0;
    for (int d = 0; d < D; ++d) var += (x[d] - mean) * (x[d] - mean);
    var /= D;
    const double rstd = 1.0 / std::sqrt(var + p.eps);
    for (int d = 0; d < D; ++d) {
      const double g = p.gamma.empty() ? 1.0 : p.gamma[d];
      const double b = p.beta.empty() ? 0.0 : p.beta[d];
      out[r * D + d] = g * (x[d] - mean) * rstd + b;
    }
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// optimized: the raw kernels (kernels_api.hpp). The forward is token_norm.hpp's template; the
// backward is token_groups_backward with one group (token_backward.cpp: the AVX-512 form, or the
// AVX2/baseline one, which computes each token's statistics as the forward's baseline path does),
// dγ/dβ over fixed row segments.

void layer_norm_kernel(float* out, const float* x, const float* gamma, const float* beta,
                       std::size_t rows, int D, float eps) {
  kernels::token_norm_forward<true>("layer_norm_kernel", out, x, gamma, beta, rows, D, eps);
}

void rms_norm_kernel(float* out, const float* x, const float* gamma, const float* beta,
                     std::size_t rows, int D, float eps) {
  kernels::token_norm_forward<false>("rms_norm_kernel", out, x, gamma, beta, rows, D, eps);
}

void layer_norm_backward_kernel(float* dx, float* dgamma, float* dbeta, const float* dy,
                                const float* x, const float* gamma, std::size_t rows, int D,
                                float eps) {
  kernels::token_groups_backward("layer_norm_backward_kernel", true, dx, dgamma, dbeta, dy, x,
                                 gamma, rows, D, 1, eps);
}

void rms_norm_backward_kernel(float* dx, float* dgamma, float* dbeta, const float* dy,
                              const float* x, const float* gamma, std::size_t rows, int D,
                              float eps) {
  kernels::token_groups_backward("rms_norm_backward_kernel", false, dx, dgamma, dbeta, dy, x,
                                 gamma, rows, D, 1, eps);
}

// ---------------------------------------------------------------------------------------------
// the registry entry's implementations

LayerEntry token_norm_entry(bool center, AffineKernelFn kernel, const char* backward_kernel,
                            LayerEntry e) {
  e.reference = [center](const Batch& in, const Params& p, Mode, State*, Output& out) {
    token_norm_reference(center, in, p, out);
  };
  e.optimized = affine_kernel_forward(kernel);
  e.conditioning = token_conditioning(center);
  e.backward_reference =
      token_groups_backward(Impl::reference, backward_kernel, center, validate_affine_norm);
  e.backward_optimized =
      token_groups_backward(Impl::optimized, backward_kernel, center, validate_affine_norm);
  return e;
}

}  // namespace normcheck
