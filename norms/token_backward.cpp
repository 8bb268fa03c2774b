// The backward passes shared by the token-wise norms (layer_norm, rms_norm, group_norm): the
// float32 kernel kernels::token_groups_backward (kernels.hpp) with its instruction-set paths (the
// AVX2 and baseline clones of normalize_backward_span, and an AVX-512 form below, chosen by
// kernel_path()), a double reference, and the registry's BackwardFn of both
// (token_groups_backward, registry.hpp).
#include <cmath>
#include <string>
#include <vector>

#include "norms/kernels.hpp"
#include "norms/registry.hpp"
#include "norms/tensor.hpp"
#include "norms/token_norm.hpp"

namespace normcheck::kernels {
namespace {

// Tokens [r0, r1) of one segment, adding their dγ, dβ terms to acc_g, acc_b [D] in row order.
// AVX2 and baseline clones give the same bits (lane-wise operations, no FMA).
__attribute__((target_clones("avx2", "default")))
void token_groups_backward_rows(bool center, float* dx, const float* dy, const float* x,
                                const float* gamma, std::size_t r0, std::size_t r1, int D, int G,
                                float eps, double* acc_g, double* acc_b) {
  const int gs = D / G;
  for (std::size_t r = r0; r < r1; ++r)
    for (int g = 0; g < G; ++g) {
      const std::size_t o = r * D + std::size_t(g) * gs;
      const float* gg = gamma ? gamma + g * gs : nullptr;
      if (center)
        normalize_backward_span<true>(dx + o, dy + o, x + o, gg, gs, eps, acc_g + g * gs,
                                      acc_b + g * gs);
      else
        normalize_backward_span<false>(dx + o, dy + o, x + o, gg, gs, eps, acc_g + g * gs,
                                       acc_b + g * gs);
    }
}

}  // namespace

}  // namespace normcheck::kernels

// ---------------------------------------------------------------------------------------------
// AVX-512 path (FMA): every span's passes 16 lanes at a time. Its bits differ from the AVX2 and
// baseline clones (FMA, another summation order), as the forward's paths do; on this path each
// span's operations depend on n only, and dγ, dβ are summed over the same fixed row segments, so
// the results are still bitwise the same at any thread count and batch composition.
NORMCHECK_AVX512_BEGIN

namespace normcheck::kernels::avx512 {
namespace {

// normalize_backward_span's formulas (kernels.hpp) over a span of n values, 16 lanes at a time:
// μ and σ² by the corrected two-pass algorithm (kCenter: μ₀ = x₀ + Σ(x − x₀)/n, then the mean c
// and mean square q of x − μ₀ in one pass, token_moments: μ = μ₀ + c, σ² = q − c²; else μ = 0
// and the mean square), m1 = mean(γ·dy)
// (kCenter), m2 = mean((γ·dy − m1)·x̂); then (span_output) dx = rstd·((γ·dy − m1) − x̂·m2) and
// the dγ, dβ terms added to acc_g, acc_b in double.
struct SpanTerms {
  __m512 mu, rstd, m1, m2;
};

// The statistics and means of one span; false when σ² is not finite (an overflowing or
// non-finite span: the caller takes the generic span, which rescales an overflowing one).
template <bool kCenter, bool kGamma>
[[gnu::always_inline]] inline bool span_terms(const float* dy, const float* x, const float* gamma,
                                              int n, float eps, SpanTerms& t) {
  t.mu = _mm512_setzero_ps();
  float var;
  if constexpr (kCenter) {
    const __m512 sh = _mm512_set1_ps(x[0]);
    const __m512 s = row_partial(n, [&](int i, __mmask16 m) {
      return _mm512_maskz_sub_ps(m, _mm512_maskz_loadu_ps(m, x + i), sh);
    });
    float mu = x[0] + hsum(s) / float(n);
    var = second_pass(x, n, mu);
    t.mu = _mm512_set1_ps(mu);
  } else {
    var = hsum(row_partial(n, [&](int i, __mmask16 m) {
            const __m512 d = _mm512_maskz_loadu_ps(m, x + i);
            return _mm512_mul_ps(d, d);
          })) /
          float(n);
  }
  if (!std::isfinite(var)) return false;
  t.rstd = _mm512_set1_ps(1.0f / std::sqrt(var + eps));
  const auto dxhat = [&](int i, __mmask16 m) {
    const __m512 d = _mm512_maskz_loadu_ps(m, dy + i);
    return kGamma ? _mm512_mul_ps(_mm512_maskz_loadu_ps(m, gamma + i), d) : d;
  };
  t.m1 = _mm512_setzero_ps();
  if constexpr (kCenter) t.m1 = _mm512_set1_ps(hsum(row_partial(n, dxhat)) / float(n));
  t.m2 = _mm512_set1_ps(hsum(row_partial(n, [&](int i, __mmask16 m) {
                          const __m512 xh = _mm512_mul_ps(
                              _mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), t.mu), t.rstd);
                          return _mm512_maskz_mul_ps(m, _mm512_sub_ps(dxhat(i, m), t.m1), xh);
                        })) /
                        float(n));
  return true;
}

// The output pass of R spans at once (the same n and γ; span r at offset off[r] of dx, dy, x),
// whose terms are t[0..R): dx of each, and the dγ, dβ terms added to acc_g, acc_b span after span
// (acc + a₀ + a₁ + …, in span order: the bits of R passes one after the other, with one
// read-modify-write of the double accumulators instead of R). dx may be dy or x: each block is
// read before it is written.
template <bool kGamma, int R>
[[gnu::always_inline]] inline void span_output(float* dx, const float* dy, const float* x,
                                               const std::size_t* off, const float* gamma, int n,
                                               const SpanTerms* t, double* acc_g, double* acc_b) {
  const auto block = [&](int i, __mmask16 m) {
    const __mmask8 lo = __mmask8(m), hi = __mmask8(m >> 8);
    __m512d b0 = _mm512_maskz_loadu_pd(lo, acc_b + i), b1 = _mm512_maskz_loadu_pd(hi, acc_b + i + 8);
    __m512d g0 = _mm512_maskz_loadu_pd(lo, acc_g + i), g1 = _mm512_maskz_loadu_pd(hi, acc_g + i + 8);
    const __m512 gv = kGamma ? _mm512_maskz_loadu_ps(m, gamma + i) : _mm512_set1_ps(1.0f);
    for (int r = 0; r < R; ++r) {
      const std::size_t o = off[r] + i;
      const __m512 d = _mm512_maskz_loadu_ps(m, dy + o);
      const __m512 xh = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + o), t[r].mu), t[r].rstd);
      const __m512 g = _mm512_sub_ps(kGamma ? _mm512_mul_ps(gv, d) : d, t[r].m1);
      _mm512_mask_storeu_ps(dx + o, m, _mm512_mul_ps(t[r].rstd, _mm512_fnmadd_ps(xh, t[r].m2, g)));
      const __m512d d0 = _mm512_cvtps_pd(_mm512_castps512_ps256(d));
      const __m512d d1 = _mm512_cvtps_pd(_mm512_extractf32x8_ps(d, 1));
      b0 = _mm512_add_pd(b0, d0);
      b1 = _mm512_add_pd(b1, d1);
      g0 = _mm512_fmadd_pd(d0, _mm512_cvtps_pd(_mm512_castps512_ps256(xh)), g0);
      g1 = _mm512_fmadd_pd(d1, _mm512_cvtps_pd(_mm512_extractf32x8_ps(xh, 1)), g1);
    }
    _mm512_mask_storeu_pd(acc_b + i, lo, b0);
    _mm512_mask_storeu_pd(acc_b + i + 8, hi, b1);
    _mm512_mask_storeu_pd(acc_g + i, lo, g0);
    _mm512_mask_storeu_pd(acc_g + i + 8, hi, g1);
  };
  int i = 0;
  for (; i + W <= n; i += W) block(i, __mmask16(0xFFFF));
  if (i < n) block(i, head_mask(n - i));
}

// Rows [r0, r1), each of G spans of D/G values. Four rows at a time share the output pass of
// each span (span_output<4>) when all four spans have finite terms; otherwise, and for the last
// rows, span after span, a non-finite one by the generic normalize_backward_span. Either way
// every span's values and the order of the accumulator additions are the same.
template <bool kCenter, bool kGamma>
void backward_rows(float* dx, const float* dy, const float* x, const float* gamma, std::size_t r0,
                   std::size_t r1, int D, int G, float eps, double* acc_g, double* acc_b) {
  constexpr int R = 4;
  const int gs = D / G;
  const auto one = [&](std::size_t r, int g) {
    const std::size_t o = r * D + std::size_t(g) * gs;
    const float* gg = kGamma ? gamma + g * gs : nullptr;
    SpanTerms t;
    if (span_terms<kCenter, kGamma>(dy + o, x + o, gg, gs, eps, t))
      span_output<kGamma, 1>(dx, dy, x, &o, gg, gs, &t, acc_g + g * gs, acc_b + g * gs);
    else
      normalize_backward_span<kCenter>(dx + o, dy + o, x + o, gg, gs, eps, acc_g + g * gs,
                                       acc_b + g * gs);
  };
  std::size_t r = r0;
  for (; r + R <= r1; r += R)
    for (int g = 0; g < G; ++g) {
      const float* gg = kGamma ? gamma + g * gs : nullptr;
      std::size_t off[R];
      SpanTerms t[R];
      bool ok = true;
      for (int k = 0; k < R; ++k) {
        off[k] = (r + k) * D + std::size_t(g) * gs;
        ok = span_terms<kCenter, kGamma>(dy + off[k], x + off[k], gg, gs, eps, t[k]) && ok;
      }
      if (ok)
        span_output<kGamma, R>(dx, dy, x, off, gg, gs, t, acc_g + g * gs, acc_b + g * gs);
      else
        for (int k = 0; k < R; ++k) one(r + k, g);
    }
  for (; r < r1; ++r)
    for (int g = 0; g < G; ++g) one(r, g);
}

}  // namespace

void token_groups_backward_rows(bool center, float* dx, const float* dy, const float* x,
                                const float* gamma, std::size_t r0, std::size_t r1, int D, int G,
                                float eps, double* acc_g, double* acc_b) {
  if (center)
    (gamma ? backward_rows<true, true> : backward_rows<true, false>)(dx, dy, x, gamma, r0, r1, D,
                                                                      G, eps, acc_g, acc_b);
  else
    (gamma ? backward_rows<false, true> : backward_rows<false, false>)(dx, dy, x, gamma, r0, r1,
                                                                        D, G, eps, acc_g, acc_b);
}

}  // namespace normcheck::kernels::avx512

NORMCHECK_AVX512_END

namespace normcheck::kernels {

void token_groups_backward(const char* kernel, bool center, float* dx, float* dgamma,
                           float* dbeta, const float* dy, const float* x, const float* gamma,
                           std::size_t rows, int D, int G, float eps) {
  validate_backward_rows(kernel, dx, dy, x, rows, D);
  if (G <= 0 || D % G != 0)
    throw InvalidInput(std::string(kernel) + ": groups = " + std::to_string(G) +
                       " must be positive and divide D = " + std::to_string(D));
  validate_eps(eps);
  std::vector<double> sums(2 * std::size_t(D));  // [2, D]: Σ dy·x̂, Σ dy
  reduce_row_segments(rows, D, sums.size(), sums.data(),
                      [&](std::size_t r0, std::size_t r1, double* acc) {
                        (kernel_path() == KernelPath::avx512 ? avx512::token_groups_backward_rows
                                                             : token_groups_backward_rows)(
                            center, dx, dy, x, gamma, r0, r1, D, G, eps, acc, acc + D);
                      });
  for (int d = 0; d < D; ++d) {
    if (dgamma) dgamma[d] = float(sums[d]);
    if (dbeta) dbeta[d] = float(sums[D + d]);
  }
}

}  // namespace normcheck::kernels

namespace normcheck {
namespace {

Grads token_groups_backward_reference(const Batch& in, const Params& p,
                                      const std::vector<float>& dy, int G, bool center) {
  const int D = in.D, n = D / G;
  Grads g;
  g.dx.assign(in.x.size(), 0.0);
  g.dgamma.assign(p.gamma.size(), 0.0);
  g.dbeta.assign(p.beta.size(), 0.0);
  for (std::size_t r = 0; r < in.rows(); ++r)
    for (int k = 0; k < G; ++k) {
      const std::size_t o = r * D + std::size_t(k) * n;  // the span [o, o + n)
      const float* x = &in.x[o];
      const float* dys = &dy[o];
      const int d0 = k * n;  // the span's first feature: γ, dγ, dβ index
      double mean = 0, var = 0;
      if (center) {
        for (int i = 0; i < n; ++i) mean += x[i];
        mean /= n;
      }
      for (int i = 0; i < n; ++i) var += (x[i] - mean) * (x[i] - mean);
      var /= n;
      const double rstd = 1.0 / std::sqrt(var + p.eps);
      const auto dxhat = [&](int i) { return (p.gamma.empty() ? 1.0 : p.gamma[d0 + i]) * dys[i]; };
      // the gradient through μ (mean of dx̂) and through σ² (mean of dx̂·x̂)
      double mean_dxhat = 0, mean_dxhat_xhat = 0;
      for (int i = 0; i < n; ++i) {
        if (center) mean_dxhat += dxhat(i);
        mean_dxhat_xhat += dxhat(i) * (x[i] - mean) * rstd;
      }
      mean_dxhat /= n;
      mean_dxhat_xhat /= n;
      for (int i = 0; i < n; ++i) {
        const double xhat = (x[i] - mean) * rstd;
        g.dx[o + i] = rstd * (dxhat(i) - mean_dxhat - xhat * mean_dxhat_xhat);
        if (!g.dgamma.empty()) g.dgamma[d0 + i] += dys[i] * xhat;
        if (!g.dbeta.empty()) g.dbeta[d0 + i] += dys[i];
      }
    }
  return g;
}

}  // namespace

BackwardFn token_groups_backward(Impl impl, const char* kernel, bool center,
                                 void (*validate)(const Batch&, const Params&),
                                 int (*groups)(const Params&)) {
  return [=](const Batch& in, const Params& p, Mode, const State*, const std::vector<float>& dy,
             Grads& out) {
    validate(in, p);
    validate_dy(in, dy);
    const int G = groups ? groups(p) : 1;
    if (impl == Impl::reference) {
      out = token_groups_backward_reference(in, p, dy, G, center);
      return;
    }
    run_affine_backward(p, in.x.size(), out,
                        [&](float* dx, float* dg, float* db, const float* g) {
                          kernels::token_groups_backward(kernel, center, dx, dg, db, dy.data(),
                                                         in.x.data(), g, in.rows(), in.D, G,
                                                         float(p.eps));
                        });
  };
}

}  // namespace normcheck
