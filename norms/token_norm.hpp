// The optimized float32 forward of the per-token norms: layer_norm (kCenter: y = (x − μ)·rstd·γ + β,
// rstd = 1/√(σ² + ε)) and rms_norm (!kCenter: μ = 0, y = x·rrms·γ + β, rrms = 1/√(mean(x²) + ε)),
// statistics over the D features of one token. One template serves both: the row loop, the
// grouping of short rows, the overflow path, the output pass with its streaming stores and the
// instruction-set dispatch are the same code, and kCenter selects the statistic (the shifted
// mean before the sum of squares, or none) and the per-element transform (x − μ, or x); each
// `if constexpr` leaves exactly the operations the layer computes, so the compiler generates
// one layer's loops without the other's.
//
// One contiguous range of tokens per thread (run_affine_rows); each row stays in L1 between the
// statistics and the output pass, so x is read from memory once. Three instruction-set paths
// (kernels_api.hpp: KernelPath). On one path a row's operations and their order depend on D
// only — not on its neighbours, on where a range starts or on the thread count — so the results
// are bitwise the same at any thread count and batch composition.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>

#include "norms/kernels.hpp"
#include "norms/tensor.hpp"

namespace normcheck::kernels {

// The statistics of one token as the 8-lane path computes them: kCenter, the shifted two-pass
// μ and σ² (mean_var: μ = x₀ + Σ(x − x₀)/D, then σ² = Σ(x − μ)²/D); else μ = 0 and the mean
// square Σx²/D in var.
template <bool kCenter>
[[gnu::always_inline]] inline void token_stats(const float* x, int D, float& mean, float& var) {
  if constexpr (kCenter) {
    mean_var(x, D, mean, var);
  } else {
    mean = 0.0f;
    var = sum_sq_dev(x, D, 0.0f) / float(D);
  }
}

// The overflow path of one token: its statistic was not finite and the row is (|x| beyond ~1e19:
// the squares overflowed, although the normalized values are bounded by √D). The same
// statistics of x·s (overflow_scale), written into yr; x is not read again, so out == x works.
template <bool kCenter>
[[gnu::always_inline]] inline void token_norm_rescaled(float* yr, const float* xr,
                                                       const float* gamma, const float* beta,
                                                       int D, float eps) {
  const float s = overflow_scale(xr, D);
  for (int d = 0; d < D; ++d) yr[d] = xr[d] * s;
  float mean, var;
  token_stats<kCenter>(yr, D, mean, var);
  const float rstd = 1.0f / std::sqrt(var + eps * s * s);
  for (int d = 0; d < D; ++d) {
    const float g = gamma ? gamma[d] : 1.0f;
    const float b = beta ? beta[d] : 0.0f;
    if constexpr (kCenter)
      yr[d] = (yr[d] - mean) * rstd * g + b;
    else
      yr[d] = yr[d] * rstd * g + b;
  }
}

// AVX2 and baseline paths: one token whose statistics are known; the overflow path when var is
// not finite (and the row is), else the output pass (write_normalized).
template <bool kCenter>
[[gnu::always_inline]] inline void token_norm_finish(float* yr, const float* xr, const float* gamma,
                                                     const float* beta, int D, float eps,
                                                     bool stream, float mean, float var) {
  if (!std::isfinite(var) && all_finite(xr, D))
    return token_norm_rescaled<kCenter>(yr, xr, gamma, beta, D, eps);
  const float rstd = 1.0f / std::sqrt(var + eps);
  write_normalized<kCenter>(yr, xr, gamma, beta, D, stream, mean, rstd);
}

// Tokens [r0, r1), 8-lane GCC vector code (v8f). Short rows go in groups of kRowGroup, phase by
// phase (all shifted means, then all sums of squares, then the outputs); every row still runs
// exactly token_stats' operations, so its bits do not depend on its neighbours or on where a
// range starts. The AVX2 path is this code compiled with FMA: GCC contracts each a·b + c of it
// (the same expressions in every inlined copy).
template <bool kCenter>
[[gnu::always_inline]] inline void token_norm_rows_v8(float* y, const float* x, const float* gamma,
                                                      const float* beta, std::size_t r0,
                                                      std::size_t r1, int D, float eps,
                                                      bool stream) {
  constexpr int G = kRowGroup;
  std::size_t r = r0;
  if (D <= kRowGroupMaxD)
    for (; r + G <= r1; r += G) {
      const float* xr = x + r * D;  // [G, D]
      float mean[G] = {}, var[G];
      if constexpr (kCenter)
        for (int k = 0; k < G; ++k) {
          const float shift = xr[k * D];
          mean[k] = shift + sum_shifted(xr + k * D, D, shift) / float(D);
        }
      for (int k = 0; k < G; ++k) var[k] = sum_sq_dev(xr + k * D, D, mean[k]) / float(D);
      for (int k = 0; k < G; ++k)
        token_norm_finish<kCenter>(y + (r + k) * D, xr + k * D, gamma, beta, D, eps, stream,
                                   mean[k], var[k]);
    }
  for (; r < r1; ++r) {
    float mean, var;
    token_stats<kCenter>(x + r * D, D, mean, var);
    token_norm_finish<kCenter>(y + r * D, x + r * D, gamma, beta, D, eps, stream, mean, var);
  }
}

template <bool kCenter>
__attribute__((target("avx2,fma"))) void token_norm_rows_avx2(
    float* y, const float* x, const float* gamma, const float* beta, std::size_t r0,
    std::size_t r1, int D, float eps, bool stream) {
  token_norm_rows_v8<kCenter>(y, x, gamma, beta, r0, r1, D, eps, stream);
}

template <bool kCenter>
void token_norm_rows_baseline(float* y, const float* x, const float* gamma, const float* beta,
                              std::size_t r0, std::size_t r1, int D, float eps, bool stream) {
  token_norm_rows_v8<kCenter>(y, x, gamma, beta, r0, r1, D, eps, stream);
}

}  // namespace normcheck::kernels

NORMCHECK_AVX512_BEGIN

namespace normcheck::kernels::avx512 {

// AVX-512 path. Per row: (kCenter) Σ(x − x₀) as 16-lane partial sums in the order of
// row_partial, folded by hsum's tree, μ = x₀ + Σ/D; then Σ(x − μ)² (or Σx²) by FMA in the order
// of row_partial_sq, σ² = Σ/D, rstd = 1/√(σ² + ε), y = fma((x − μ)·rstd, γ, β) (or
// fma(x·rstd, γ, β)). Rows of D ≤ kGroupMaxD go 16 at a time, phase by phase (16 rows' sums in
// flight, folded together by hsum16x16, which performs the same tree for each); a last group of
// fewer rows repeats its last row in the free slots and writes only its own. Either way each
// row's operations are those above, so its bits do not depend on its neighbours, on where a
// range starts or on the thread count.

// Σ(x − mean)² of one row as 16 lane partial sums (kCenter), or Σx².
template <bool kCenter>
[[gnu::always_inline]] inline __m512 token_sum_sq(const float* xr, int D, float mean) {
  if constexpr (kCenter) {
    const __m512 mu = _mm512_set1_ps(mean);
    return row_partial_sq(xr, D, [&](__m512 v, __mmask16 mk) {
      return _mm512_maskz_sub_ps(mk, v, mu);
    });
  } else {
    return row_partial_sq(xr, D, [](__m512 v, __mmask16) { return v; });
  }
}

// Σ(x − x₀) of one row as 16 lane partial sums: the shifted sum behind μ.
[[gnu::always_inline]] inline __m512 token_sum_shifted(const float* xr, int D) {
  const __m512 sh = _mm512_set1_ps(xr[0]);
  return row_partial(xr, D, [&](__m512 v, __mmask16 mk) { return _mm512_maskz_sub_ps(mk, v, sh); });
}

template <bool kCenter>
[[gnu::always_inline]] inline void token_norm_write(float* yr, const float* xr, const float* gamma,
                                                    const float* beta, int D, bool stream,
                                                    float mean, float rstd) {
  const __m512 m = _mm512_set1_ps(mean), s = _mm512_set1_ps(rstd);
  write_row(yr, D, stream, [&](int d, __mmask16 k) {
    prefetch_ahead(xr + d);
    __m512 xv = _mm512_maskz_loadu_ps(k, xr + d);
    if constexpr (kCenter) xv = _mm512_sub_ps(xv, m);
    return _mm512_fmadd_ps(_mm512_mul_ps(xv, s), gamma_at(gamma, d, k), beta_at(beta, d, k));
  });
}

template <bool kCenter>
void token_norm_rows(float* y, const float* x, const float* gamma, const float* beta,
                     std::size_t r0, std::size_t r1, int D, float eps, bool stream) {
  if (D <= kGroupMaxD) {
    constexpr int G = W;
    const __m512 vD = _mm512_set1_ps(float(D)), veps = _mm512_set1_ps(eps);
    for (std::size_t r = r0; r < r1; r += G) {
      const int rows = int(std::min<std::size_t>(G, r1 - r));
      const float* xr[G];
      for (int k = 0; k < G; ++k) xr[k] = x + (r + std::size_t(std::min(k, rows - 1))) * D;
      alignas(64) float mean[G] = {}, rstd[G];
      __m512 part[G];
      if constexpr (kCenter) {
        alignas(64) float shift[G];
        for (int k = 0; k < G; ++k) {
          shift[k] = xr[k][0];
          part[k] = token_sum_shifted(xr[k], D);
        }
        _mm512_store_ps(mean, _mm512_add_ps(_mm512_load_ps(shift),
                                            _mm512_div_ps(hsum16x16(part), vD)));
      }
      for (int k = 0; k < G; ++k) part[k] = token_sum_sq<kCenter>(xr[k], D, mean[k]);
      const __m512 vvar = _mm512_div_ps(hsum16x16(part), vD);
      _mm512_store_ps(rstd, _mm512_div_ps(_mm512_set1_ps(1.0f),
                                          _mm512_sqrt_ps(_mm512_add_ps(vvar, veps))));
      const __mmask16 bad = _mm512_fpclass_ps_mask(vvar, 0x99);  // NaN or ±inf
      for (int k = 0; k < rows; ++k) {
        float* yr = y + (r + k) * D;
        if (((bad >> k) & 1) && all_finite(xr[k], D))
          token_norm_rescaled<kCenter>(yr, xr[k], gamma, beta, D, eps);
        else
          token_norm_write<kCenter>(yr, xr[k], gamma, beta, D, stream, mean[k], rstd[k]);
      }
    }
    return;
  }
  for (std::size_t r = r0; r < r1; ++r) {
    const float* xr = x + r * D;
    float* yr = y + r * D;
    float mean = 0.0f;
    if constexpr (kCenter) mean = xr[0] + hsum(token_sum_shifted(xr, D)) / float(D);
    const float var = hsum(token_sum_sq<kCenter>(xr, D, mean)) / float(D);
    if (!std::isfinite(var) && all_finite(xr, D)) {
      token_norm_rescaled<kCenter>(yr, xr, gamma, beta, D, eps);
      continue;
    }
    token_norm_write<kCenter>(yr, xr, gamma, beta, D, stream, mean, 1.0f / std::sqrt(var + eps));
  }
}

}  // namespace normcheck::kernels::avx512

NORMCHECK_AVX512_END

namespace normcheck::kernels {

// The raw kernel (kernels_api.hpp: layer_norm_kernel, rms_norm_kernel) over `rows` tokens:
// validates the buffers and ε (InvalidInput naming `kernel`), then runs the path kernel_path()
// chose, with streaming stores for large outputs (run_affine_rows).
template <bool kCenter>
void token_norm_forward(const char* kernel, float* out, const float* x, const float* gamma,
                        const float* beta, std::size_t rows, int D, float eps) {
  validate_rows(kernel, out, x, rows, D);
  validate_eps(eps);
  run_affine_rows({avx512::token_norm_rows<kCenter>, token_norm_rows_avx2<kCenter>,
                   token_norm_rows_baseline<kCenter>},
                  out, x, gamma, beta, rows, D, eps);
}

}  // namespace normcheck::kernels
