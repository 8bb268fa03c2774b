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
// optimized: float32, one contiguous range of tokens per thread, shifted two-pass statistics
// (μ = x₀ + Σ(x − x₀)/D, then σ² = Σ(x − μ)²/D) over a row that stays in L1 between the passes:
// x is read from memory once. Three instruction-set paths (kernels_api.hpp: KernelPath).

namespace {

// The overflow path of one token: its variance was not finite and the row is (|x| beyond
// ~1e19: the squares overflowed). The same two passes on x·s (kernels.hpp), written into yr;
// x is not read again, so out == x still works.
[[gnu::always_inline]] inline void layer_norm_rescaled(float* yr, const float* xr,
                                                       const float* gamma, const float* beta,
                                                       int D, float eps) {
  float mean, var;
  const float s = kernels::overflow_scale(xr, D);
  for (int d = 0; d < D; ++d) yr[d] = xr[d] * s;
  kernels::mean_var(yr, D, mean, var);
  const float rstd = 1.0f / std::sqrt(var + eps * s * s);
  for (int d = 0; d < D; ++d) {
    const float g = gamma ? gamma[d] : 1.0f;
    const float b = beta ? beta[d] : 0.0f;
    yr[d] = (yr[d] - mean) * rstd * g + b;
  }
}

// AVX2 and baseline paths: one token whose statistics are known; the overflow path when var is
// not finite (and the row is), else y = (x − μ)·rstd·γ + β.
[[gnu::always_inline]] inline void layer_norm_finish(float* yr, const float* xr, const float* gamma,
                                                     const float* beta, int D, float eps,
                                                     bool stream, float mean, float var) {
  if (!std::isfinite(var) && kernels::all_finite(xr, D))
    return layer_norm_rescaled(yr, xr, gamma, beta, D, eps);
  const float rstd = 1.0f / std::sqrt(var + eps);
  kernels::write_normalized<true>(yr, xr, gamma, beta, D, stream, mean, rstd);
}

// Tokens [r0, r1), 8-lane GCC vector code (kernels.hpp). Short rows go in groups of
// kernels::kRowGroup, phase by phase (all shifted means, then all variances, then the
// outputs); every row still runs exactly kernels::mean_var's operations, so its bits do not
// depend on its neighbours or on where a range starts. The AVX2 path is this code compiled with
// FMA: GCC contracts each a·b + c of it (the same expressions in every inlined copy).
[[gnu::always_inline]] inline void layer_norm_rows_v8(float* y, const float* x, const float* gamma,
                                                      const float* beta, std::size_t r0,
                                                      std::size_t r1, int D, float eps,
                                                      bool stream) {
  constexpr int G = kernels::kRowGroup;
  std::size_t r = r0;
  if (D <= kernels::kRowGroupMaxD)
    for (; r + G <= r1; r += G) {
      const float* xr = x + r * D;  // [G, D]
      float mean[G], var[G];
      for (int k = 0; k < G; ++k) {
        const float shift = xr[k * D];
        mean[k] = shift + kernels::sum_shifted(xr + k * D, D, shift) / float(D);
      }
      for (int k = 0; k < G; ++k) var[k] = kernels::sum_sq_dev(xr + k * D, D, mean[k]) / float(D);
      for (int k = 0; k < G; ++k)
        layer_norm_finish(y + (r + k) * D, xr + k * D, gamma, beta, D, eps, stream, mean[k],
                          var[k]);
    }
  for (; r < r1; ++r) {
    float mean, var;
    kernels::mean_var(x + r * D, D, mean, var);
    layer_norm_finish(y + r * D, x + r * D, gamma, beta, D, eps, stream, mean, var);
  }
}

__attribute__((target("avx2,fma"))) void layer_norm_rows_avx2(
    float* y, const float* x, const float* gamma, const float* beta, std::size_t r0,
    std::size_t r1, int D, float eps, bool stream) {
  layer_norm_rows_v8(y, x, gamma, beta, r0, r1, D, eps, stream);
}

void layer_norm_rows_baseline(float* y, const float* x, const float* gamma, const float* beta,
                              std::size_t r0, std::size_t r1, int D, float eps, bool stream) {
  layer_norm_rows_v8(y, x, gamma, beta, r0, r1, D, eps, stream);
}

}  // namespace

NORMCHECK_AVX512_BEGIN

namespace {

namespace v16 = kernels::avx512;

// AVX-512 path, tokens [r0, r1). Per row: Σ(x − x₀) and then Σ(x − μ)² (FMA) as 16-lane partial
// sums in the order of v16::row_partial, folded by v16::hsum's tree, μ = x₀ + Σ/D,
// σ² = Σ/D, rstd = 1/√(σ² + ε), y = fma((x − μ)·rstd, γ, β). Rows of D ≤ v16::kGroupMaxD go 16 at a
// time, phase by phase (16 rows' sums in flight, folded together by hsum16x16, which performs
// the same tree for each); a last group of fewer rows repeats its last row in the free slots
// and writes only its own. Either way each row's operations are those above, so its bits do
// not depend on its neighbours, on where a range starts or on the thread count.

[[gnu::always_inline]] inline void layer_norm_write(float* yr, const float* xr, const float* gamma,
                                                    const float* beta, int D, bool stream,
                                                    float mean, float rstd) {
  const __m512 m = _mm512_set1_ps(mean), s = _mm512_set1_ps(rstd);
  v16::write_row(yr, D, stream, [&](int d, __mmask16 k) {
    v16::prefetch_ahead(xr + d);
    const __m512 xv = _mm512_maskz_loadu_ps(k, xr + d);
    return _mm512_fmadd_ps(_mm512_mul_ps(_mm512_sub_ps(xv, m), s), v16::gamma_at(gamma, d, k),
                           v16::beta_at(beta, d, k));
  });
}

void layer_norm_rows_avx512(float* y, const float* x, const float* gamma, const float* beta,
                            std::size_t r0, std::size_t r1, int D, float eps, bool stream) {
  const __m512 vD = _mm512_set1_ps(float(D)), veps = _mm512_set1_ps(eps);
  if (D <= v16::kGroupMaxD) {
    constexpr int G = v16::W;
    for (std::size_t r = r0; r < r1; r += G) {
      const int rows = int(std::min<std::size_t>(G, r1 - r));
      const float* xr[G];
      for (int k = 0; k < G; ++k) xr[k] = x + (r + std::size_t(std::min(k, rows - 1))) * D;
      alignas(64) float shift[G], mean[G], var[G], rstd[G];
      __m512 part[G];
      for (int k = 0; k < G; ++k) {
        shift[k] = xr[k][0];
        const __m512 sh = _mm512_set1_ps(shift[k]);
        part[k] = v16::row_partial(xr[k], D, [&](__m512 v, __mmask16 mk) {
          return _mm512_maskz_sub_ps(mk, v, sh);
        });
      }
      const __m512 vmean = _mm512_add_ps(_mm512_load_ps(shift), _mm512_div_ps(v16::hsum16x16(part), vD));
      _mm512_store_ps(mean, vmean);
      for (int k = 0; k < G; ++k) {
        const __m512 mu = _mm512_set1_ps(mean[k]);
        part[k] = v16::row_partial_sq(xr[k], D, [&](__m512 v, __mmask16 mk) {
          return _mm512_maskz_sub_ps(mk, v, mu);
        });
      }
      const __m512 vvar = _mm512_div_ps(v16::hsum16x16(part), vD);
      _mm512_store_ps(var, vvar);
      _mm512_store_ps(rstd, _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_sqrt_ps(_mm512_add_ps(vvar, veps))));
      const __mmask16 bad = _mm512_fpclass_ps_mask(vvar, 0x99);  // NaN or ±inf
      for (int k = 0; k < rows; ++k) {
        float* yr = y + (r + k) * D;
        if (((bad >> k) & 1) && kernels::all_finite(xr[k], D))
          layer_norm_rescaled(yr, xr[k], gamma, beta, D, eps);
        else
          layer_norm_write(yr, xr[k], gamma, beta, D, stream, mean[k], rstd[k]);
      }
    }
    return;
  }
  for (std::size_t r = r0; r < r1; ++r) {
    const float* xr = x + r * D;
    float* yr = y + r * D;
    const __m512 sh = _mm512_set1_ps(xr[0]);
    const float s1 = v16::hsum(v16::row_partial(xr, D, [&](__m512 v, __mmask16 mk) {
      return _mm512_maskz_sub_ps(mk, v, sh);
    }));
    const float mean = xr[0] + s1 / float(D);
    const __m512 mu = _mm512_set1_ps(mean);
    const float s2 = v16::hsum(v16::row_partial_sq(xr, D, [&](__m512 v, __mmask16 mk) {
      return _mm512_maskz_sub_ps(mk, v, mu);
    }));
    const float var = s2 / float(D);
    if (!std::isfinite(var) && kernels::all_finite(xr, D)) {
      layer_norm_rescaled(yr, xr, gamma, beta, D, eps);
      continue;
    }
    layer_norm_write(yr, xr, gamma, beta, D, stream, mean, 1.0f / std::sqrt(var + eps));
  }
}

}  // namespace

NORMCHECK_AVX512_END

void layer_norm_kernel(float* out, const float* x, const float* gamma, const float* beta,
                       std::size_t rows, int D, float eps) {
  validate_rows("layer_norm_kernel", out, x, rows, D);
  validate_eps(eps);
  kernels::run_affine_rows({layer_norm_rows_avx512, layer_norm_rows_avx2, layer_norm_rows_baseline},
                           out, x, gamma, beta, rows, D, eps);
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
