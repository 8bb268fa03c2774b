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

// Σ f(i, mask) over the 16-value blocks of [0, n), as 16 lane partial sums: four chains of
// blocks (k mod 4) added as (c0 + c1) + (c2 + c3) when there are at least four, then the rest
// in order, the last block masked. f must return 0 in the lanes outside mask.
template <class F>
[[gnu::always_inline]] inline __m512 span_partial(int n, F f) {
  const int full = n / W, rem = n % W;
  __m512 acc = _mm512_setzero_ps();
  int k = 0;
  if (full >= 4) {
    __m512 c0 = f(0, __mmask16(0xFFFF)), c1 = f(W, __mmask16(0xFFFF)),
           c2 = f(2 * W, __mmask16(0xFFFF)), c3 = f(3 * W, __mmask16(0xFFFF));
    for (k = 4; k + 4 <= full; k += 4) {
      c0 = _mm512_add_ps(c0, f(k * W, __mmask16(0xFFFF)));
      c1 = _mm512_add_ps(c1, f((k + 1) * W, __mmask16(0xFFFF)));
      c2 = _mm512_add_ps(c2, f((k + 2) * W, __mmask16(0xFFFF)));
      c3 = _mm512_add_ps(c3, f((k + 3) * W, __mmask16(0xFFFF)));
    }
    acc = _mm512_add_ps(_mm512_add_ps(c0, c1), _mm512_add_ps(c2, c3));
  }
  for (; k < full; ++k) acc = _mm512_add_ps(acc, f(k * W, __mmask16(0xFFFF)));
  if (rem) acc = _mm512_add_ps(acc, f(full * W, head_mask(rem)));
  return acc;
}

// acc[0, 16) += the 16 lanes of v (as doubles) in the lanes of m; with xh: += v·xh (FMA).
[[gnu::always_inline]] inline void add_to_doubles(double* acc, __m512 v, __mmask16 m) {
  const __mmask8 lo = __mmask8(m), hi = __mmask8(m >> 8);
  const __m512d v0 = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
  const __m512d v1 = _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1));
  _mm512_mask_storeu_pd(acc, lo, _mm512_add_pd(_mm512_maskz_loadu_pd(lo, acc), v0));
  _mm512_mask_storeu_pd(acc + 8, hi, _mm512_add_pd(_mm512_maskz_loadu_pd(hi, acc + 8), v1));
}
[[gnu::always_inline]] inline void add_products_to_doubles(double* acc, __m512 v, __m512 xh,
                                                           __mmask16 m) {
  const __mmask8 lo = __mmask8(m), hi = __mmask8(m >> 8);
  const __m512d v0 = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
  const __m512d v1 = _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1));
  const __m512d x0 = _mm512_cvtps_pd(_mm512_castps512_ps256(xh));
  const __m512d x1 = _mm512_cvtps_pd(_mm512_extractf32x8_ps(xh, 1));
  _mm512_mask_storeu_pd(acc, lo, _mm512_fmadd_pd(v0, x0, _mm512_maskz_loadu_pd(lo, acc)));
  _mm512_mask_storeu_pd(acc + 8, hi, _mm512_fmadd_pd(v1, x1, _mm512_maskz_loadu_pd(hi, acc + 8)));
}

// normalize_backward_span's formulas (kernels.hpp) over one span of n values, 16 lanes at a
// time: μ = x₀ + Σ(x − x₀)/n and σ² = Σ(x − μ)²/n (kCenter; else the mean square), m1 =
// mean(γ·dy) (kCenter), m2 = mean((γ·dy − m1)·x̂), then dx = rstd·((γ·dy − m1) − x̂·m2) and the
// dγ, dβ terms added to acc_g, acc_b in double. Returns false, before writing anything, when σ²
// is not finite (an overflowing or non-finite span): the caller takes the generic span, which
// rescales an overflowing one. dx may be dy or x: each block is read before it is written.
template <bool kCenter, bool kGamma>
[[gnu::always_inline]] inline bool backward_span(float* dx, const float* dy, const float* x,
                                                 const float* gamma, int n, float eps,
                                                 double* acc_g, double* acc_b) {
  const __m512 vn = _mm512_set1_ps(float(n));
  __m512 mu = _mm512_setzero_ps();
  if constexpr (kCenter) {
    const __m512 sh = _mm512_set1_ps(x[0]);
    const __m512 s = span_partial(n, [&](int i, __mmask16 m) {
      return _mm512_maskz_sub_ps(m, _mm512_maskz_loadu_ps(m, x + i), sh);
    });
    mu = _mm512_set1_ps(x[0] + hsum(s) / float(n));
  }
  const float var = hsum(span_partial(n, [&](int i, __mmask16 m) {
                      const __m512 d = _mm512_maskz_sub_ps(m, _mm512_maskz_loadu_ps(m, x + i), mu);
                      return _mm512_mul_ps(d, d);
                    })) /
                    float(n);
  if (!std::isfinite(var)) return false;
  const __m512 rstd = _mm512_set1_ps(1.0f / std::sqrt(var + eps));
  const auto dxhat = [&](int i, __mmask16 m) {
    const __m512 d = _mm512_maskz_loadu_ps(m, dy + i);
    return kGamma ? _mm512_mul_ps(_mm512_maskz_loadu_ps(m, gamma + i), d) : d;
  };
  const auto xhat = [&](int i, __mmask16 m) {
    return _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), mu), rstd);
  };
  __m512 m1 = _mm512_setzero_ps();
  if constexpr (kCenter) m1 = _mm512_set1_ps(hsum(span_partial(n, dxhat)) / float(n));
  const __m512 m2 = _mm512_div_ps(
      _mm512_set1_ps(hsum(span_partial(n, [&](int i, __mmask16 m) {
        return _mm512_maskz_mul_ps(m, _mm512_sub_ps(dxhat(i, m), m1), xhat(i, m));
      }))),
      vn);
  const auto block = [&](int i, __mmask16 m) {
    const __m512 d = _mm512_maskz_loadu_ps(m, dy + i), xh = xhat(i, m);
    const __m512 g = _mm512_sub_ps(kGamma ? _mm512_mul_ps(_mm512_maskz_loadu_ps(m, gamma + i), d) : d, m1);
    _mm512_mask_storeu_ps(dx + i, m, _mm512_mul_ps(rstd, _mm512_fnmadd_ps(xh, m2, g)));
    add_to_doubles(acc_b + i, d, m);
    add_products_to_doubles(acc_g + i, d, xh, m);
  };
  int i = 0;
  for (; i + W <= n; i += W) block(i, __mmask16(0xFFFF));
  if (i < n) block(i, head_mask(n - i));
  return true;
}

template <bool kCenter, bool kGamma>
void backward_rows(float* dx, const float* dy, const float* x, const float* gamma, std::size_t r0,
                   std::size_t r1, int D, int G, float eps, double* acc_g, double* acc_b) {
  const int gs = D / G;
  for (std::size_t r = r0; r < r1; ++r)
    for (int g = 0; g < G; ++g) {
      const std::size_t o = r * D + std::size_t(g) * gs;
      const float* gg = kGamma ? gamma + g * gs : nullptr;
      if (!backward_span<kCenter, kGamma>(dx + o, dy + o, x + o, gg, gs, eps, acc_g + g * gs,
                                          acc_b + g * gs))
        normalize_backward_span<kCenter>(dx + o, dy + o, x + o, gg, gs, eps, acc_g + g * gs,
                                         acc_b + g * gs);
    }
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
