// The optimized float32 forward of the per-token norms: layer_norm (kCenter: y = (x − μ)·rstd·γ + β,
// rstd = 1/√(σ² + ε)) and rms_norm (!kCenter: μ = 0, y = x·rrms·γ + β, rrms = 1/√(mean(x²) + ε)),
// statistics over the D features of one token. One template serves both: the row loop, the
// grouping of short rows, the overflow path, the output pass with its streaming stores and the
// instruction-set dispatch are the same code, and kCenter selects the statistic (shifted moments,
// or the mean square) and the per-element transform (x − μ, or x); each
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

// The statistics of one token as the 8-lane path computes them: kCenter, μ and σ² by the
// corrected two-pass algorithm (mean_var: μ₀ = x₀ + Σ(x − x₀)/D, then the mean c and mean square
// q of x − μ₀, μ = μ₀ + c, σ² = q − c²); else μ = 0 and the mean square Σx²/D in var.
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
// phase (all statistics, then the outputs); every row runs exactly token_stats' operations, so
// its bits do not depend on its neighbours or on where a range starts. The AVX2 path is this
// code compiled with FMA: GCC contracts each a·b + c of it (the same expressions in every
// inlined copy).
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
      float mean[G], var[G];
      for (int k = 0; k < G; ++k) token_stats<kCenter>(xr + k * D, D, mean[k], var[k]);
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

// AVX-512 path. Per row, layer_norm (kCenter): Σ(x − c) and Σ(x − c)² in one pass over the row
// (token_moments, 16-lane partial sums with FMA, folded by hsum's tree), m1 = Σ(x − c)/D,
// q = Σ(x − c)²/D, μ = c + m1 and σ² = q − m1² (one FMA); the shift c is x₀ for rows of
// D ≤ kGroupMaxD and the mean of the first 16 values for longer ones (moment_shift). A row whose
// shift lies far out in its spread (one_pass_kept: m1² > (7/8)·q; NaN) gets a second pass
// instead, the corrected two-pass form (second_pass): the same moments shifted by that μ, whose
// mean corrects μ and whose mean square gives σ² (an outlier in a row's first values leaves μ
// off by many of its ulps after the first pass). rms_norm (!kCenter): Σx² by FMA in the order of
// row_partial_sq, σ² = Σ/D. Then rstd = 1/√(σ² + ε), y = fma((x − μ)·rstd, γ, β) (or
// fma(x·rstd, γ, β)). Rows of D ≤ kGroupMaxD go 16 at a time, phase by phase (16 rows' sums in
// flight, folded together by hsum16x16, which performs the same tree for each); a last group of
// fewer rows repeats its last row in the free slots and writes only its own. Either way each
// row's operations are those above — which form a row takes depends on its own values only —
// so its bits do not depend on its neighbours, on where a range starts or on the thread count.
// A constant row gets exactly β: x − c = 0 (c is one of its values, or the mean of 16 equal
// ones, which the tree and ·1/16 compute exactly), so m1 = q = σ² = 0 and μ = c.

// Σx² of one row as 16 lane partial sums (rms_norm's statistic).
[[gnu::always_inline]] inline __m512 token_sum_sq(const float* xr, int D,
                                                  std::uintptr_t half_pf = 0) {
  return row_partial_sq(xr, D, [](__m512 v, __mmask16) { return v; }, half_pf);
}

// The shift of layer_norm's one-pass moments for one long row: the mean of its first 16 values
// (hsum's tree, then ·1/16: exact for equal values), or x₀ when D < 16. Near the row's mean, so
// few rows fall back to the second pass, and of the row's own scale, so x − c loses nothing for a
// row at a large offset (1e3 ± 0.1: x − c is exact there).
[[gnu::always_inline]] inline float moment_shift(const float* xr, int D) {
  return D >= W ? hsum(_mm512_loadu_ps(xr)) * (1.0f / W) : xr[0];
}

// Σ(x − shift) and Σ(x − shift)² of one row in one pass, as 16 lane partial sums each, in the
// orders of row_partial (s1) and row_partial_sq (s2): four chains of each, then the rest;
// half_pf as in prefetch_half.
[[gnu::always_inline]] inline void token_moments(const float* xr, int D, float shift, __m512& s1,
                                                 __m512& s2, std::uintptr_t half_pf = 0) {
  const int full = D / W, rem = D % W;
  const __m512 sh = _mm512_set1_ps(shift), z = _mm512_setzero_ps();
  __m512 a0 = z, a1 = z, a2 = z, a3 = z, q0 = z, q1 = z, q2 = z, q3 = z;
  int k = 0;
  auto step = [&](int k, __m512& a, __m512& q) {
    const __m512 d = _mm512_sub_ps(_mm512_loadu_ps(xr + k * W), sh);
    a = _mm512_add_ps(a, d);
    q = _mm512_fmadd_ps(d, d, q);
  };
  if (full >= 4) {
    for (; k + 4 <= full; k += 4) {
      prefetch_half(half_pf, k);
      step(k, a0, q0);
      step(k + 1, a1, q1);
      step(k + 2, a2, q2);
      step(k + 3, a3, q3);
    }
    a0 = _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3));
    q0 = _mm512_add_ps(_mm512_add_ps(q0, q1), _mm512_add_ps(q2, q3));
  }
  for (; k < full; ++k) step(k, a0, q0);
  if (rem) {
    const __mmask16 m = head_mask(rem);
    const __m512 d = _mm512_maskz_sub_ps(m, _mm512_maskz_loadu_ps(m, xr + full * W), sh);
    a0 = _mm512_add_ps(a0, d);
    q0 = _mm512_fmadd_ps(d, d, q0);
  }
  s1 = a0;
  s2 = q0;
}

// Which rows keep the one-pass variance q − m1² (m1 = Σ(x − c)/D, q = Σ(x − c)²/D): those with
// m1² ≤ (7/8)·q, i.e. σ² ≥ q/8, so the subtraction cancels at most 3 bits and σ²'s relative
// error stays within 8 times q's (q is a sum of squares: no cancellation of its own). For an iid
// row shifted by x₀, m1² = (x₀ − μ)² exceeds 7σ² in under 1 % of rows; a shift of 16 values'
// mean almost never. The others (a shift far out in the spread: an outlier x₀, a sorted row;
// NaN) take the corrected two-pass form's second pass (second_pass).
[[gnu::always_inline]] inline __mmask16 one_pass_kept(__m512 m1, __m512 q) {
  return _mm512_cmp_ps_mask(_mm512_mul_ps(m1, m1), _mm512_mul_ps(q, _mm512_set1_ps(7.0f / 8)),
                            _CMP_LE_OQ);
}

// The corrected two-pass form's second pass for a row whose first-pass mean is `mean`: the mean
// c and mean square q of x − mean (token_moments), then mean += c and σ² = q − c² (≥ 0 but for
// rounding; NaN stays NaN). Returns σ².
[[gnu::always_inline]] inline float second_pass(const float* xr, int D, float& mean) {
  __m512 s1, s2;
  token_moments(xr, D, mean, s1, s2);
  const float c = hsum(s1) / float(D), q = hsum(s2) / float(D);
  mean += c;
  return std::max(std::fma(-c, c, q), 0.0f);
}

// The output pass of one row: y = fma((x − μ)·rstd, γ, β) (kCenter) or fma(x·rstd, γ, β), with
// x prefetched l2_ahead bytes ahead into L2 (a group of short rows: kPrefetchBytes; a long row:
// the next row, row_prefetch_bytes) and (kL1) l1_ahead bytes ahead into L1 as well: a
// group of short rows passes G·D·4, the same row of the next group, whose statistics pass then
// reads from L1 (1–6 % faster at D = 64 and 128 in same-run A/B). A long row of a pair
// (token_norm_pairs) passes half_pf instead of l2_ahead: the address of the half row it fetches at
// half rate (a line every other line it writes). Without γ (!kGamma) it multiplies by 1, without
// β it adds 0: the same operations as with them. The γ, β and L1 cases are template parameters
// so the loop has no test in it (a fifth of its instructions at D = 64).
template <bool kCenter, bool kGamma, bool kBeta, bool kL1>
[[gnu::always_inline]] inline void token_norm_write(float* yr, const float* xr, const float* gamma,
                                                    const float* beta, int D, bool stream,
                                                    float mean, float rstd,
                                                    std::uintptr_t l2_ahead,
                                                    std::uintptr_t l1_ahead = 0,
                                                    std::uintptr_t half_pf = 0) {
  const __m512 m = _mm512_set1_ps(mean), s = _mm512_set1_ps(rstd);
  write_row(yr, D, stream, [&](int d, __mmask16 k) {
    if (half_pf)
      _mm_prefetch(reinterpret_cast<const char*>(half_pf + std::uintptr_t(d) * (sizeof(float) / 2)),
                   _MM_HINT_T1);
    else
      prefetch_ahead(xr + d, l2_ahead);
    if constexpr (kL1)
      _mm_prefetch(reinterpret_cast<const char*>(reinterpret_cast<std::uintptr_t>(xr + d) + l1_ahead),
                   _MM_HINT_T0);
    __m512 xv = _mm512_maskz_loadu_ps(k, xr + d);
    if constexpr (kCenter) xv = _mm512_sub_ps(xv, m);
    const __m512 g = kGamma ? _mm512_maskz_loadu_ps(k, gamma + d) : _mm512_set1_ps(1.0f);
    const __m512 b = kBeta ? _mm512_maskz_loadu_ps(k, beta + d) : _mm512_setzero_ps();
    return _mm512_fmadd_ps(_mm512_mul_ps(xv, s), g, b);
  });
}

// The statistics of one long row (D > kGroupMaxD): layer_norm's one-pass moments shifted by
// moment_shift, or the second pass when one_pass_kept says so; rms_norm's Σx²/D. half_pf as in
// prefetch_half. Returns σ²; mean is set (0 for rms_norm).
template <bool kCenter>
[[gnu::always_inline]] inline float long_row_stats(const float* xr, int D, float& mean,
                                                   std::uintptr_t half_pf = 0) {
  mean = 0.0f;
  if constexpr (kCenter) {
    const float shift = moment_shift(xr, D);
    __m512 s1, s2;
    token_moments(xr, D, shift, s1, s2, half_pf);
    const float m1 = hsum(s1) / float(D), q = hsum(s2) / float(D);
    mean = shift + m1;
    if (one_pass_kept(_mm512_set1_ps(m1), _mm512_set1_ps(q)) & 1) return std::fma(-m1, m1, q);
    return second_pass(xr, D, mean);
  } else {
    return hsum(token_sum_sq(xr, D, half_pf)) / float(D);
  }
}

// Rows whose output pass cannot keep its row of x, γ and β in L1 together (3·D·4 bytes above
// kPairL1Bytes, the smallest L1 data cache of the AVX-512 CPUs: Zen 4's 32 KB) go in pairs:
// both rows' statistics (long_row_stats), then the output pass a chunk of kPairChunk columns at
// a time, both rows per chunk, so γ's and β's chunk is read from L1 by the second row instead of
// from L2. Each row's operations are long_row_stats' and token_norm_write's, as one at a time:
// the same bits. The x bytes of the pair two rows on are prefetched at half rate through both
// passes (a row's statistics pass fetches the first half of the row two on, its output pass the
// second half), so memory stays busy while a statistics pass runs from L2. On the AMD EPYC host
// (4096×4096, 1 thread, twelve alternating runs of both binaries) layer_norm went from 0.60–0.67
// of the streaming copy to 0.68–0.75 (faster in 12 of 12) and rms_norm from 0.71–0.77 to
// 0.78–0.86 (12 of 12); at 2 threads no change (eight runs). In shorter trials pairs without
// the half-rate prefetch, or the prefetch without pairs, gained half of that or nothing, and
// pairs at D = 1024 (12 KB, which stays one row at a time) were 0.1–0.2 slower.
constexpr std::size_t kPairL1Bytes = 32768;
constexpr int kPairChunk = 1024;
constexpr bool pairs_rows(int D) { return 3 * std::size_t(D) * sizeof(float) > kPairL1Bytes; }

template <bool kCenter, bool kGamma, bool kBeta>
void token_norm_pairs(float* y, const float* x, const float* gamma, const float* beta,
                      std::size_t r0, std::size_t r1, int D, float eps, bool stream) {
  const std::uintptr_t row_bytes = std::uintptr_t(D) * sizeof(float);
  for (std::size_t r = r0; r < r1; r += 2) {
    const int rows = int(std::min<std::size_t>(2, r1 - r));
    float mean[2], rstd[2];
    bool rescale[2];
    for (int k = 0; k < rows; ++k) {
      const float* xr = x + (r + k) * D;
      const std::uintptr_t two_on = reinterpret_cast<std::uintptr_t>(xr) + 2 * row_bytes;
      const float var = long_row_stats<kCenter>(xr, D, mean[k], two_on);
      rescale[k] = !std::isfinite(var) && all_finite(xr, D);
      rstd[k] = 1.0f / std::sqrt(var + eps);
    }
    for (int c = 0; c < D; c += kPairChunk) {
      const int n = std::min(kPairChunk, D - c);
      const float* gc = kGamma ? gamma + c : gamma;
      const float* bc = kBeta ? beta + c : beta;
      for (int k = 0; k < rows; ++k) {
        if (rescale[k]) continue;
        const float* xr = x + (r + k) * D;
        const std::uintptr_t half_pf = reinterpret_cast<std::uintptr_t>(xr) + 2 * row_bytes +
                                       row_bytes / 2 + std::uintptr_t(c) * (sizeof(float) / 2);
        token_norm_write<kCenter, kGamma, kBeta, false>(y + (r + k) * D + c, xr + c, gc, bc, n,
                                                        stream, mean[k], rstd[k], 0, 0, half_pf);
      }
    }
    for (int k = 0; k < rows; ++k)
      if (rescale[k])
        token_norm_rescaled<kCenter>(y + (r + k) * D, x + (r + k) * D, gamma, beta, D, eps);
  }
}

template <bool kCenter, bool kGamma, bool kBeta>
void token_norm_rows_affine(float* y, const float* x, const float* gamma, const float* beta,
                            std::size_t r0, std::size_t r1, int D, float eps, bool stream) {
  if (D <= kGroupMaxD) {
    constexpr int G = W;
    const __m512 vD = _mm512_set1_ps(float(D)), veps = _mm512_set1_ps(eps);
    for (std::size_t r = r0; r < r1; r += G) {
      const int rows = int(std::min<std::size_t>(G, r1 - r));
      const float* xr[G];
      for (int k = 0; k < G; ++k) xr[k] = x + (r + std::size_t(std::min(k, rows - 1))) * D;
      alignas(64) float mean[G] = {}, rstd[G];
      __m512 part[G], vvar;
      if constexpr (kCenter) {
        // one pass shifted by x₀: μ = x₀ + m1, σ² = q − m1² (token_moments); a row whose x₀
        // lies far out in its spread gets the second pass instead (one_pass_kept, second_pass)
        alignas(64) float shift[G];
        __m512 part2[G];
        for (int k = 0; k < G; ++k) shift[k] = xr[k][0];
        for (int k = 0; k < G; ++k) token_moments(xr[k], D, shift[k], part[k], part2[k]);
        const __m512 m1 = _mm512_div_ps(hsum16x16(part), vD);
        const __m512 q = _mm512_div_ps(hsum16x16(part2), vD);
        _mm512_store_ps(mean, _mm512_add_ps(_mm512_load_ps(shift), m1));
        vvar = _mm512_fnmadd_ps(m1, m1, q);
        const __mmask16 redo = __mmask16(~one_pass_kept(m1, q) & head_mask(rows));
        if (redo) {
          alignas(64) float var[G];
          _mm512_store_ps(var, vvar);
          for (int k = 0; k < rows; ++k)
            if ((redo >> k) & 1) var[k] = second_pass(xr[k], D, mean[k]);
          vvar = _mm512_load_ps(var);
        }
      } else {
        for (int k = 0; k < G; ++k) part[k] = token_sum_sq(xr[k], D);
        vvar = _mm512_div_ps(hsum16x16(part), vD);
      }
      _mm512_store_ps(rstd, _mm512_div_ps(_mm512_set1_ps(1.0f),
                                          _mm512_sqrt_ps(_mm512_add_ps(vvar, veps))));
      const __mmask16 bad = _mm512_fpclass_ps_mask(vvar, 0x99);  // NaN or ±inf
      for (int k = 0; k < rows; ++k) {
        float* yr = y + (r + k) * D;
        if (((bad >> k) & 1) && all_finite(xr[k], D))
          token_norm_rescaled<kCenter>(yr, xr[k], gamma, beta, D, eps);
        else
          token_norm_write<kCenter, kGamma, kBeta, true>(yr, xr[k], gamma, beta, D, stream,
                                                         mean[k], rstd[k], kPrefetchBytes,
                                                         std::uintptr_t(G) * D * sizeof(float));
      }
    }
    return;
  }
  if (pairs_rows(D))
    return token_norm_pairs<kCenter, kGamma, kBeta>(y, x, gamma, beta, r0, r1, D, eps, stream);
  for (std::size_t r = r0; r < r1; ++r) {
    const float* xr = x + r * D;
    float* yr = y + r * D;
    float mean;
    const float var = long_row_stats<kCenter>(xr, D, mean);
    if (!std::isfinite(var) && all_finite(xr, D)) {
      token_norm_rescaled<kCenter>(yr, xr, gamma, beta, D, eps);
      continue;
    }
    token_norm_write<kCenter, kGamma, kBeta, false>(yr, xr, gamma, beta, D, stream, mean,
                                                    1.0f / std::sqrt(var + eps),
                                                    row_prefetch_bytes(D));
  }
}

// The rows [r0, r1) by the instance of token_norm_rows_affine for the γ and β given.
template <bool kCenter>
void token_norm_rows(float* y, const float* x, const float* gamma, const float* beta,
                     std::size_t r0, std::size_t r1, int D, float eps, bool stream) {
  if (gamma && beta)
    token_norm_rows_affine<kCenter, true, true>(y, x, gamma, beta, r0, r1, D, eps, stream);
  else if (gamma)
    token_norm_rows_affine<kCenter, true, false>(y, x, gamma, beta, r0, r1, D, eps, stream);
  else if (beta)
    token_norm_rows_affine<kCenter, false, true>(y, x, gamma, beta, r0, r1, D, eps, stream);
  else
    token_norm_rows_affine<kCenter, false, false>(y, x, gamma, beta, r0, r1, D, eps, stream);
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
