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
// optimized: float32, one contiguous range of tokens per thread; the row stays in L1 between
// the mean square and the output pass, so x is read from memory once. Three instruction-set
// paths (kernels_api.hpp: KernelPath).

namespace {

// The overflow path of one token: x² overflowed float, but x/rms(x) is bounded by √D. The mean
// square of x·s instead (the reference's double has the range), written into yr.
[[gnu::always_inline]] inline void rms_norm_rescaled(float* yr, const float* xr, const float* gamma,
                                                     const float* beta, int D, float eps) {
  const float s = kernels::overflow_scale(xr, D);
  for (int d = 0; d < D; ++d) yr[d] = xr[d] * s;
  const float ms_s = kernels::sum_sq_dev(yr, D, 0.0f) / float(D);
  const float rrms = 1.0f / std::sqrt(ms_s + eps * s * s);
  for (int d = 0; d < D; ++d) {
    const float g = gamma ? gamma[d] : 1.0f;
    const float b = beta ? beta[d] : 0.0f;
    yr[d] = yr[d] * rrms * g + b;
  }
}

// AVX2 and baseline paths: one token whose mean square is known; the overflow path when it is
// not finite (and the row is), else y = x·rrms·γ + β.
[[gnu::always_inline]] inline void rms_norm_finish(float* yr, const float* xr, const float* gamma,
                                                   const float* beta, int D, float eps,
                                                   bool stream, float ms) {
  if (!std::isfinite(ms) && kernels::all_finite(xr, D))
    return rms_norm_rescaled(yr, xr, gamma, beta, D, eps);
  const float rrms = 1.0f / std::sqrt(ms + eps);
  kernels::write_normalized<false>(yr, xr, gamma, beta, D, stream, 0.0f, rrms);
}

// Tokens [r0, r1), 8-lane GCC vector code, the AVX2 path with FMA by contraction (see
// layer_norm_rows_v8). Short rows go in groups of kernels::kRowGroup: all mean squares, then
// all outputs; each row's operations are the same as alone.
[[gnu::always_inline]] inline void rms_norm_rows_v8(float* y, const float* x, const float* gamma,
                                                    const float* beta, std::size_t r0,
                                                    std::size_t r1, int D, float eps, bool stream) {
  constexpr int G = kernels::kRowGroup;
  std::size_t r = r0;
  if (D <= kernels::kRowGroupMaxD)
    for (; r + G <= r1; r += G) {
      const float* xr = x + r * D;  // [G, D]
      float ms[G];
      for (int k = 0; k < G; ++k) ms[k] = kernels::sum_sq_dev(xr + k * D, D, 0.0f) / float(D);
      for (int k = 0; k < G; ++k)
        rms_norm_finish(y + (r + k) * D, xr + k * D, gamma, beta, D, eps, stream, ms[k]);
    }
  for (; r < r1; ++r) {
    const float ms = kernels::sum_sq_dev(x + r * D, D, 0.0f) / float(D);
    rms_norm_finish(y + r * D, x + r * D, gamma, beta, D, eps, stream, ms);
  }
}

__attribute__((target("avx2,fma"))) void rms_norm_rows_avx2(
    float* y, const float* x, const float* gamma, const float* beta, std::size_t r0,
    std::size_t r1, int D, float eps, bool stream) {
  rms_norm_rows_v8(y, x, gamma, beta, r0, r1, D, eps, stream);
}

void rms_norm_rows_baseline(float* y, const float* x, const float* gamma, const float* beta,
                            std::size_t r0, std::size_t r1, int D, float eps, bool stream) {
  rms_norm_rows_v8(y, x, gamma, beta, r0, r1, D, eps, stream);
}

}  // namespace

NORMCHECK_AVX512_BEGIN

namespace {

namespace v16 = kernels::avx512;

// AVX-512 path, tokens [r0, r1): Σx² by FMA as 16-lane partial sums (v16::row_partial_sq's
// order), folded by v16::hsum's tree, rrms = 1/√(Σ/D + ε), y = fma(x·rrms, γ, β). Rows of
// D ≤ v16::kGroupMaxD go 16 at a time (hsum16x16: the same tree per row; a short last group repeats
// its last row and writes only its own), so a row's bits never depend on its neighbours.

[[gnu::always_inline]] inline void rms_norm_write(float* yr, const float* xr, const float* gamma,
                                                  const float* beta, int D, bool stream,
                                                  float rrms) {
  const __m512 s = _mm512_set1_ps(rrms);
  v16::write_row(yr, D, stream, [&](int d, __mmask16 k) {
    v16::prefetch_ahead(xr + d);
    const __m512 xv = _mm512_maskz_loadu_ps(k, xr + d);
    return _mm512_fmadd_ps(_mm512_mul_ps(xv, s), v16::gamma_at(gamma, d, k), v16::beta_at(beta, d, k));
  });
}

[[gnu::always_inline]] inline __m512 rms_sum_sq(const float* xr, int D) {
  return v16::row_partial_sq(xr, D, [](__m512 v, __mmask16) { return v; });
}

void rms_norm_rows_avx512(float* y, const float* x, const float* gamma, const float* beta,
                          std::size_t r0, std::size_t r1, int D, float eps, bool stream) {
  if (D <= v16::kGroupMaxD) {
    constexpr int G = v16::W;
    const __m512 vD = _mm512_set1_ps(float(D)), veps = _mm512_set1_ps(eps);
    for (std::size_t r = r0; r < r1; r += G) {
      const int rows = int(std::min<std::size_t>(G, r1 - r));
      const float* xr[G];
      for (int k = 0; k < G; ++k) xr[k] = x + (r + std::size_t(std::min(k, rows - 1))) * D;
      alignas(64) float rrms[G];
      __m512 part[G];
      for (int k = 0; k < G; ++k) part[k] = rms_sum_sq(xr[k], D);
      const __m512 ms = _mm512_div_ps(v16::hsum16x16(part), vD);
      _mm512_store_ps(rrms, _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_sqrt_ps(_mm512_add_ps(ms, veps))));
      const __mmask16 bad = _mm512_fpclass_ps_mask(ms, 0x99);  // NaN or ±inf
      for (int k = 0; k < rows; ++k) {
        float* yr = y + (r + k) * D;
        if (((bad >> k) & 1) && kernels::all_finite(xr[k], D))
          rms_norm_rescaled(yr, xr[k], gamma, beta, D, eps);
        else
          rms_norm_write(yr, xr[k], gamma, beta, D, stream, rrms[k]);
      }
    }
    return;
  }
  for (std::size_t r = r0; r < r1; ++r) {
    const float* xr = x + r * D;
    float* yr = y + r * D;
    const float ms = v16::hsum(rms_sum_sq(xr, D)) / float(D);
    if (!std::isfinite(ms) && kernels::all_finite(xr, D)) {
      rms_norm_rescaled(yr, xr, gamma, beta, D, eps);
      continue;
    }
    rms_norm_write(yr, xr, gamma, beta, D, stream, 1.0f / std::sqrt(ms + eps));
  }
}

}  // namespace

NORMCHECK_AVX512_END

void rms_norm_kernel(float* out, const float* x, const float* gamma, const float* beta,
                     std::size_t rows, int D, float eps) {
  validate_rows("rms_norm_kernel", out, x, rows, D);
  validate_eps(eps);
  kernels::run_affine_rows({rms_norm_rows_avx512, rms_norm_rows_avx2, rms_norm_rows_baseline},
                           out, x, gamma, beta, rows, D, eps);
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
