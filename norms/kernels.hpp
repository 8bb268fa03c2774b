// Building blocks shared by the optimized (float32) kernels: fixed-shape reductions whose order
// depends only on the row length (never on the thread count or the batch) — an 8-lane form in
// GCC vector code (the AVX2 and baseline paths, and the layers that have no AVX-512 path) and a
// 16-lane AVX-512 form with FMA (namespace avx512 below) — and the OpenMP loop over independent
// rows. Which path runs: kernel_path() (kernels_api.hpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include <immintrin.h>
#include <omp.h>

#include "norms/kernels_api.hpp"

namespace normcheck::kernels {

constexpr int kLanes = 8;
// Rows of at least kWideLanes values first run 32 interleaved partial sums (four independent
// 8-lane chains: one chain is bound by the add latency, not by loads), folded into the 8 lanes
// in a fixed tree before the 8-lane loop and the tail. The order depends on n only; short rows
// (n < 32) take exactly the 8-lane path.
constexpr int kWideLanes = 32;

// Eight floats as one GCC vector. Its operators are lane-wise IEEE operations: one ymm op in an
// AVX2 function, two xmm ops in a baseline one. In a function compiled with FMA (the AVX2 path)
// GCC contracts each a·b + c into one FMA; the helpers' expressions are the same in every
// inlined copy, so a path still computes each value the same way wherever it is called.
typedef float v8f __attribute__((vector_size(32)));
// The helpers and the lane-wise lambdas passed to them inline, so the baseline path never
// passes a v8f by value across a call: GCC's note that this would change the ABI without AVX
// does not apply (-Wno-psabi, CMakeLists.txt).

[[gnu::always_inline]] inline v8f load8(const float* p) {
  v8f v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}
[[gnu::always_inline]] inline v8f splat8(float a) { return v8f{a, a, a, a, a, a, a, a}; }

// Σ_i term(i), i in [0, n), in the fixed order above: fv(i) gives the terms i..i+7 as one v8f,
// fs(i) the term i alone, and fv must act lane-wise like fs (the same IEEE operations in the
// same order), so the AVX2 and baseline clones give the same bits. The 32 partial sums are four
// v8f, the 8 lanes one, and every fold below keeps the scalar operand order, so the bits are
// those of the plain loops over wide[32] / acc[8] (which GCC folded with ~60 scalar shuffles and
// adds per call).
template <class FV, class FS>
[[gnu::always_inline]] inline float fixed_order_sum_at(int n, FV fv, FS fs) {
  v8f acc = splat8(0.0f);
  int i = 0;
  if (n >= kWideLanes) {
    v8f w0 = acc, w1 = acc, w2 = acc, w3 = acc;  // wide[0..7], [8..15], [16..23], [24..31]
    for (; i + kWideLanes <= n; i += kWideLanes) {
      w0 += fv(i);
      w1 += fv(i + 8);
      w2 += fv(i + 16);
      w3 += fv(i + 24);
    }
    acc = (w0 + w2) + (w1 + w3);  // (wide[l] + wide[l+16]) + (wide[l+8] + wide[l+24])
  }
  for (; i + kLanes <= n; i += kLanes) acc += fv(i);
  float tail = 0;
  for (; i < n; ++i) tail += fs(i);
  // ((a0 + a4) + (a1 + a5)) + ((a2 + a6) + (a3 + a7)) + tail
  typedef float v4f __attribute__((vector_size(16)));
  const v4f h = __builtin_shufflevector(acc, acc, 0, 1, 2, 3) +
                __builtin_shufflevector(acc, acc, 4, 5, 6, 7);  // a_l + a_{l+4}
  const v4f p = h + __builtin_shufflevector(h, h, 1, 0, 3, 2);  // lane 0: h0 + h1, lane 2: h2 + h3
  return (p[0] + p[2]) + tail;
}

// Σ f(x[i]) in the fixed order above; f must accept a float and a v8f and act lane-wise.
template <class F>
[[gnu::always_inline]] inline float fixed_order_sum(const float* x, int n, F f) {
  return fixed_order_sum_at(
      n, [x, &f](int i) { return f(load8(x + i)); }, [x, &f](int i) { return f(x[i]); });
}

// Σ (x[i] - center)²
[[gnu::always_inline]] inline float sum_sq_dev(const float* x, int n, float center) {
  return fixed_order_sum(x, n, [center](auto v) {
    const auto d = v - center;
    return d * d;
  });
}

// Mean and biased variance of the row f(x[0]), …, f(x[n−1]) (f: the identity, or the exact
// scaling of the overflow path) by the corrected two-pass algorithm (Chan, Golub & LeVeque, 1983).
// A first mean μ₀ = x₀ + Σ(x − x₀)/n: shifting by x₀ keeps it exact for a constant row and
// accurate at a large offset (1e3 ± 0.1: x − x₀ is exact there). Then two more fixed-order sums
// over x − μ₀ give its mean c and its mean square q: μ = μ₀ + c, σ² = q − c². c is what μ₀
// missed (the AVX-512 path takes both in one pass: token_norm.hpp, second_pass): when x₀
// lies far out in its row (an outlier feature in the first channel), every term of the first sum
// is of the outlier's size and μ₀ is off by many of its ulps, while c sums terms of the row's own
// spread and restores μ, and σ² (the plain two-pass form was off by 1.03× the tolerance rule on
// a 2245-value GroupNorm group whose first value was −15001). A constant row: c = q = 0, σ² = 0,
// μ = x₀. σ² ≥ 0 always (q ≥ c² but for rounding); NaN and ±inf stay non-finite.
// These are always inlined: a caller's instruction set (FMA or not) decides their bits, never
// the translation unit GCC compiled them in (bench/ANALYSIS.md, "One forward template").
template <class F>
[[gnu::always_inline]] inline void mean_var_of(const float* x, int n, F f, float& mean,
                                               float& var) {
  const float shift = f(x[0]);
  const float m0 = shift + fixed_order_sum(x, n, [&](auto v) { return f(v) - shift; }) / float(n);
  const float c = fixed_order_sum(x, n, [&](auto v) { return f(v) - m0; }) / float(n);
  const float q = fixed_order_sum(x, n, [&](auto v) {
                    const auto d = f(v) - m0;
                    return d * d;
                  }) / float(n);
  mean = m0 + c;
  var = std::max(q - c * c, 0.0f);
}

[[gnu::always_inline]] inline void mean_var(const float* x, int n, float& mean, float& var) {
  mean_var_of(x, n, [](auto v) { return v; }, mean, var);
}

// ---------------------------------------------------------------------------------------------
// Rows whose float32 statistics overflow. Squaring deviations beyond about 1e19 gives inf, and a
// finite token would come out as β (1/√inf = 0) or NaN although its normalized values are
// bounded by √D. Such a row is recomputed on x·2^-k, with k chosen so that the largest |x| lands
// in [1, 4): scaling by a power of two is exact, the squares stay in range, and normalization
// does not depend on the scale (ε shrinks with it: ε·2^-2k). Kernels take this path only when
// their statistic is not finite and the row is, so every other row keeps its bits.

// True when no value of the row is NaN or ±inf.
inline bool all_finite(const float* x, int n) {
  for (int i = 0; i < n; ++i)
    if (!std::isfinite(x[i])) return false;
  return true;
}

// 2^-k such that max|x|·2^-k < 4, for a finite row with max|x| ≥ 1; a normal float.
inline float overflow_scale(const float* x, int n) {
  float m = 0;
  for (int i = 0; i < n; ++i) m = std::max(m, std::abs(x[i]));
  const int k = std::clamp(std::ilogb(m), 0, 126);
  return std::ldexp(1.0f, -k);
}

// Below this many values a kernel runs on the calling thread: waking a team costs more than
// the work. Results never depend on it (every row is computed the same way either way).
constexpr std::size_t kParallelMinValues = 2048;

// Outputs at least this large are written with non-temporal stores: they do not fit in cache,
// so a normal store would first read every output line in (read-for-ownership), a third
// stream of memory traffic beside reading x and writing y. The values are the same either way.
constexpr std::size_t kStreamMinBytes = std::size_t(8) << 20;

// y[d] = f(d) for d in [0, n); through non-temporal stores when `stream` (the caller fences,
// see for_each_row). f is computed in blocks of 16 into a buffer GCC vectorizes.
template <class F>
inline void write_row(float* y, int n, bool stream, F&& f) {
  int d = 0;
  if (stream) {
    for (; d < n && (reinterpret_cast<std::uintptr_t>(y + d) & 15) != 0; ++d) y[d] = f(d);
    alignas(16) float buf[16];
    for (; d + 16 <= n; d += 16) {
      for (int l = 0; l < 16; ++l) buf[l] = f(d + l);
      for (int l = 0; l < 16; l += 4) _mm_stream_ps(y + d + l, _mm_load_ps(buf + l));
    }
  }
  for (; d < n; ++d) y[d] = f(d);
}

// Like write_row, with fv(d) = {f(d), ..., f(d + 7)} as one v8f: written straight from the
// registers (two 128-bit non-temporal stores per 8 values when `stream`) instead of through a
// stack buffer. f handles the unaligned head and the tail; fv must give exactly f's values.
template <class F, class FV>
[[gnu::always_inline]] inline void write_row8(float* y, int n, bool stream, F&& f, FV&& fv) {
  int d = 0;
  if (stream) {
    for (; d < n && (reinterpret_cast<std::uintptr_t>(y + d) & 15) != 0; ++d) y[d] = f(d);
    for (; d + kLanes <= n; d += kLanes) {
      const v8f v = fv(d);
      _mm_stream_ps(y + d, __builtin_shufflevector(v, v, 0, 1, 2, 3));
      _mm_stream_ps(y + d + 4, __builtin_shufflevector(v, v, 4, 5, 6, 7));
    }
  } else {
    for (; d + kLanes <= n; d += kLanes) {
      const v8f v = fv(d);
      __builtin_memcpy(y + d, &v, sizeof v);
    }
  }
  for (; d < n; ++d) y[d] = f(d);
}

// The output pass of a token norm: y[d] = (x[d] − center)·scale·γ[d] + β[d] (kCenter) or
// x[d]·scale·γ[d] + β[d], in that order, through write_row8. γ = nullptr reads 1 from a constant
// block and β = nullptr reads 0 (index masked to 0), so the loop has no branch and every case
// does the same operations (·1 and +0, as the scalar form does).
template <bool kCenter>
[[gnu::always_inline]] inline void write_normalized(float* yr, const float* xr, const float* gamma,
                                                    const float* beta, int D, bool stream,
                                                    float center, float scale) {
  static constexpr float kOnes[kLanes] = {1, 1, 1, 1, 1, 1, 1, 1};
  static constexpr float kZeros[kLanes] = {};
  const float* gp = gamma ? gamma : kOnes;
  const float* bp = beta ? beta : kZeros;
  const int gm = gamma ? -1 : 0, bm = beta ? -1 : 0;
  const v8f vcenter = splat8(center), vscale = splat8(scale);
  write_row8(
      yr, D, stream,
      [&](int d) {
        const float g = gamma ? gamma[d] : 1.0f;
        const float b = beta ? beta[d] : 0.0f;
        if constexpr (kCenter)
          return (xr[d] - center) * scale * g + b;
        else
          return xr[d] * scale * g + b;
      },
      [&](int d) {
        if constexpr (kCenter)
          return (load8(xr + d) - vcenter) * vscale * load8(gp + (d & gm)) + load8(bp + (d & bm));
        else
          return load8(xr + d) * vscale * load8(gp + (d & gm)) + load8(bp + (d & bm));
      });
}

// Runs body(i) for i in [0, n) on independent rows of `width` values, statically scheduled.
// Each thread fences its non-temporal stores before the team joins, so the caller sees them.
template <class F>
inline void for_each_row(std::size_t n, std::size_t width, F&& body) {
#pragma omp parallel if (n * width >= kParallelMinValues)
  {
#pragma omp for schedule(static)
    for (long long i = 0; i < (long long)n; ++i) body(std::size_t(i));
    _mm_sfence();
  }
}

// Runs body(r0, r1) once per thread on a contiguous range of the rows [0, n) (the same split as
// schedule(static)), so a kernel can dispatch once per range and overlap neighbouring rows.
// The body must compute each row independently of the range it falls in: then the split,
// and so the thread count, changes nothing. Fences like for_each_row.
template <class F>
inline void for_each_row_range(std::size_t n, std::size_t width, F&& body) {
#pragma omp parallel if (n * width >= kParallelMinValues)
  {
    const std::size_t t = std::size_t(omp_get_thread_num()), nt = std::size_t(omp_get_num_threads());
    const std::size_t r0 = n * t / nt, r1 = n * (t + 1) / nt;
    if (r1 > r0) body(r0, r1);
    _mm_sfence();
  }
}

// The instruction-set paths of a token-wise kernel y = f(x; γ, β):
// rows(y, x, gamma, beta, r0, r1, D, eps, stream) computes the rows [r0, r1).
using AffineRowsFn = void (*)(float* y, const float* x, const float* gamma, const float* beta,
                              std::size_t r0, std::size_t r1, int D, float eps, bool stream);
struct AffineRowPaths {
  AffineRowsFn avx512, avx2, baseline;
};

// Runs the path kernel_path() chose over contiguous ranges of the rows (for_each_row_range),
// with streaming stores when the output is kStreamMinBytes or more. The caller validates.
inline void run_affine_rows(const AffineRowPaths& paths, float* out, const float* x,
                            const float* gamma, const float* beta, std::size_t rows, int D,
                            float eps) {
  const bool stream = rows * D * sizeof(float) >= kStreamMinBytes;
  const KernelPath path = kernel_path();
  const AffineRowsFn f = path == KernelPath::avx512 ? paths.avx512
                         : path == KernelPath::avx2 ? paths.avx2
                                                    : paths.baseline;
  for_each_row_range(rows, std::size_t(D), [&](std::size_t r0, std::size_t r1) {
    f(out, x, gamma, beta, r0, r1, D, eps, stream);
  });
}

// Rows of at most this many values are normalized kRowGroup at a time: each phase (Σ, Σ(x−μ)²,
// write) runs for the whole group before the next, so the group's independent reductions
// overlap instead of each row's three dependent passes running alone. Longer rows go one by one
// (a group of them would no longer fit in L1 between the passes). Each row's operations and
// their order are the same either way.
constexpr int kRowGroupMaxD = 512;
constexpr int kRowGroup = 4;

// BatchNorm's statistics (batch_norm_statistics_kernel): blocks of whole rows of at most this
// many bytes (at least kStatMinBlockRows, at most kStatMaxBlockRows rows) stay in L2 between
// their two passes; kStatFeatures features are summed at once (the accumulators stay in L1);
// consecutive blocks are merged into kStatSegments partials, merged in order at the end.
// Fixed, so the thread count only decides who computes a segment, never what it computes.
constexpr std::size_t kStatBlockBytes = std::size_t(256) << 10;
constexpr int kStatMinBlockRows = 16;
constexpr int kStatMaxBlockRows = 4096;
constexpr int kStatFeatures = 512;
constexpr int kStatSegments = 16;

// Rows of D features in one statistics block.
inline int stat_block_rows(int D) {
  return int(std::clamp<std::size_t>(kStatBlockBytes / (std::size_t(D) * sizeof(float)),
                                     kStatMinBlockRows, kStatMaxBlockRows));
}

// n zeroed doubles in `buf`, a buffer the caller keeps per thread (thread_local) and reuses on
// its next call: grown, never shrunk, so a kernel's per-call partials come from pages already
// mapped. BatchNorm's per-segment moments (1 MB at D = 4096) freshly allocated came back from
// the kernel as fresh pages, one fault each: on the AMD EPYC Zen 5 VM 256 faults per
// batch_norm train call at 4096×4096, and the kernel at 0.34–0.53 of its ceiling instead of
// 0.76–0.78. (reduce_row_segments below was tried the same way: no gain in four alternating
// runs, its faults not counted, so it allocates as before.)
inline double* reused_zeroed(std::vector<double>& buf, std::size_t n) {
  buf.assign(n, 0.0);  // within the capacity: no allocation
  return buf.data();
}

// ---------------------------------------------------------------------------------------------
// Backward passes

// Reductions over rows (dγ, dβ of the backward passes, BatchNorm's per-feature sums of dy):
// the rows [0, n) are cut into S = min(n, kRowSegments) segments [n·s/S, n·(s+1)/S), each
// summed by one thread, in row order, into its own zeroed accumulators; the segments' sums are
// then added in segment order. S and the cuts depend on n only and a segment is computed the
// same way whichever thread takes it, so the total is bitwise the same at any thread count (no
// atomics, no per-thread partials folded in arrival order). 24 divides evenly among 1, 2, 3, 4,
// 6 and 8 threads.
constexpr int kRowSegments = 24;

// Runs body(r0, r1, acc) on every segment, acc = m zeroed doubles of its own, and writes the
// segments' acc, added in segment order, to total[0, m). body must add its rows in order into
// acc. OpenMP over segments.
template <class F>
inline void reduce_row_segments(std::size_t n, std::size_t width, std::size_t m, double* total,
                                F&& body) {
  const std::size_t S = std::min<std::size_t>(n, kRowSegments);
  std::vector<double> part(S * m, 0.0);  // [S, m]
#pragma omp parallel if (n * width >= kParallelMinValues)
  {
#pragma omp for schedule(static)
    for (long long s = 0; s < (long long)S; ++s)
      body(n * std::size_t(s) / S, n * std::size_t(s + 1) / S, part.data() + std::size_t(s) * m);
  }
  std::fill(total, total + m, 0.0);
  for (std::size_t s = 0; s < S; ++s)
    for (std::size_t k = 0; k < m; ++k) total[k] += part[s * m + k];
}

// The backward pass of one span of n values normalized together (a LayerNorm or RMSNorm token,
// a GroupNorm group), given dy: with x̂ = (x − μ)·rstd and dx̂ = γ·dy,
//   dx = rstd·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂))      (kCenter: μ, σ² of the span)
//   dx = rstd·(dx̂ − x̂·mean(dx̂·x̂))                  (!kCenter: μ = 0, rstd = 1/√(mean(x²)+ε))
// and adds dy·x̂ to acc_g[0, n) and dy to acc_b[0, n) (double, for dγ and dβ). gamma: [n] or
// nullptr (1). dx may be dy or x (in place): every value is read before it is written.
// This is the AVX2 and baseline form (token_backward.cpp has the AVX-512 one, which falls back
// to this for a span whose σ² is not finite). The statistics are computed as the forward's
// baseline path computes them (kernels::mean_var, or the mean square), with its overflow path: a finite span whose variance overflows float is normalized on x·2^-k, which
// gives the same x̂ and the rstd of x·2^-k; dx is then rstd·2^-k·(…) (the chain rule through the
// exact scaling). Each mean is a fixed-order sum; the dx and accumulator loops are lane-wise.
// Limit: dx̂·x̂ summed in float, so |dy·γ| beyond about FLT_MAX/n^1.5 overflows (the gradient
// itself is then of that size).
template <bool kCenter>
[[gnu::always_inline]] inline void normalize_backward_span(float* dx, const float* dy,
                                                           const float* x, const float* gamma,
                                                           int n, float eps, double* acc_g,
                                                           double* acc_b) {
  float s = 1.0f, mean = 0.0f, var;
  if constexpr (kCenter)
    mean_var(x, n, mean, var);
  else
    var = sum_sq_dev(x, n, 0.0f) / float(n);
  if (!std::isfinite(var) && all_finite(x, n)) {
    s = overflow_scale(x, n);  // the same values the forward's overflow path normalizes
    if constexpr (kCenter) {
      mean_var_of(x, n, [s](auto v) { return v * s; }, mean, var);
    } else {
      var = fixed_order_sum(x, n, [s](auto v) {
              const auto d = v * s;
              return d * d;
            }) / float(n);
    }
  }
  const float rstd = 1.0f / std::sqrt(var + eps * s * s);
  const float rs = rstd * s;  // s = 1 unless the overflow path was taken
  // γ = nullptr reads 1 from a constant block (index masked to 0), as write_normalized does
  static constexpr float kOnes[kLanes] = {1, 1, 1, 1, 1, 1, 1, 1};
  const float* gp = gamma ? gamma : kOnes;
  const int gm = gamma ? -1 : 0;
  const auto xhat = [x, s, mean, rstd](int i) { return (x[i] * s - mean) * rstd; };
  const auto xhat8 = [x, s, mean, rstd](int i) { return (load8(x + i) * s - mean) * rstd; };
  const auto dxhat = [gp, gm, dy](int i) { return gp[i & gm] * dy[i]; };
  const auto dxhat8 = [gp, gm, dy](int i) { return load8(gp + (i & gm)) * load8(dy + i); };
  float m1 = 0.0f;  // mean(dx̂): the gradient through μ
  if constexpr (kCenter) m1 = fixed_order_sum_at(n, dxhat8, dxhat) / float(n);
  // mean(dx̂·x̂), the gradient through σ² (or the mean square), as mean((dx̂ − m1)·x̂): the same
  // in exact arithmetic (Σ x̂ = 0), but the float x̂ share one rounding error of μ (u·|μ|·rstd
  // each), which would add m1 times that bias; (dx̂ − m1) sums to ~0, so it adds nothing.
  const float m2 = fixed_order_sum_at(
                       n, [&](int i) { return (dxhat8(i) - m1) * xhat8(i); },
                       [&](int i) { return (dxhat(i) - m1) * xhat(i); }) /
                   float(n);
  // The output pass, 8 values at a time (the same operations as the scalar tail, lane by lane:
  // float for dx, double for the accumulators), all of a block's dy and x read before its dx is
  // written.
  typedef double v4d __attribute__((vector_size(32)));
  const auto add4d = [](double* p, v4d v) {
    v4d a;
    __builtin_memcpy(&a, p, sizeof a);
    a += v;
    __builtin_memcpy(p, &a, sizeof a);
  };
  const v8f vs = splat8(s), vmean = splat8(mean), vrstd = splat8(rstd), vrs = splat8(rs),
            vm1 = splat8(m1), vm2 = splat8(m2);
  int i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    const v8f dyv = load8(dy + i), xh = (load8(x + i) * vs - vmean) * vrstd;
    const v8f dxv = vrs * ((load8(gp + (i & gm)) * dyv - vm1) - xh * vm2);
    const v4d dlo = __builtin_convertvector(__builtin_shufflevector(dyv, dyv, 0, 1, 2, 3), v4d);
    const v4d dhi = __builtin_convertvector(__builtin_shufflevector(dyv, dyv, 4, 5, 6, 7), v4d);
    const v4d xlo = __builtin_convertvector(__builtin_shufflevector(xh, xh, 0, 1, 2, 3), v4d);
    const v4d xhi = __builtin_convertvector(__builtin_shufflevector(xh, xh, 4, 5, 6, 7), v4d);
    add4d(acc_b + i, dlo);
    add4d(acc_b + i + 4, dhi);
    add4d(acc_g + i, dlo * xlo);
    add4d(acc_g + i + 4, dhi * xhi);
    __builtin_memcpy(dx + i, &dxv, sizeof dxv);
  }
  for (; i < n; ++i) {
    const float dyi = dy[i], xh = xhat(i);
    acc_b[i] += double(dyi);
    acc_g[i] += double(dyi) * double(xh);
    dx[i] = rs * ((gp[i & gm] * dyi - m1) - xh * m2);
  }
}

// The backward pass of a per-token normalization over G contiguous groups of D/G features
// (LayerNorm: G = 1; GroupNorm; RMSNorm: G = 1, !center), every group by
// normalize_backward_span, dγ = Σ dy·x̂ and dβ = Σ dy over all rows in fixed segments
// (reduce_row_segments: bitwise the same at any thread count). dgamma, dbeta: [D] or nullptr.
// kernel names the caller in its InvalidInput messages. Defined in token_backward.cpp.
void token_groups_backward(const char* kernel, bool center, float* dx, float* dgamma,
                           float* dbeta, const float* dy, const float* x, const float* gamma,
                           std::size_t rows, int D, int G, float eps);

}  // namespace normcheck::kernels

// ---------------------------------------------------------------------------------------------
// AVX-512 building blocks (with FMA). Everything in this region is compiled for that target and
// only ever called from functions of the same target, after kernel_path() chose it.
// NORMCHECK_AVX512_BEGIN … NORMCHECK_AVX512_END: everything defined in between (templates and
// lambdas included) is compiled for AVX-512 with FMA — GCC's target pragma, Clang's attribute
// push (Clang ignores the GCC one; the tsan preset builds with Clang). GCC 12 warns about the
// deliberately undefined pass-through operand inside its own AVX-512 intrinsics
// (_mm512_undefined_ps in shuffles, sqrt, permutexvar, reduce_max): a false positive, silenced
// in the region only.
#if defined(__clang__)
#define NORMCHECK_AVX512_BEGIN                                                                  \
  _Pragma("clang attribute push(__attribute__((target(\"avx512f,avx512dq,avx512bw,avx512vl,fma\"))), apply_to = function)")
#define NORMCHECK_AVX512_END _Pragma("clang attribute pop")
#else
#define NORMCHECK_AVX512_BEGIN                                                                  \
  _Pragma("GCC push_options") _Pragma("GCC target(\"avx512f,avx512dq,avx512bw,avx512vl,fma\")") \
      _Pragma("GCC diagnostic push") _Pragma("GCC diagnostic ignored \"-Wmaybe-uninitialized\"") \
          _Pragma("GCC diagnostic ignored \"-Wuninitialized\"")
#define NORMCHECK_AVX512_END _Pragma("GCC diagnostic pop") _Pragma("GCC pop_options")
#endif

NORMCHECK_AVX512_BEGIN

namespace normcheck::kernels::avx512 {

constexpr int W = 16;

// Token norms with rows of at most this many values go 16 rows at a time, phase by phase, and
// fold their 16 row sums together (hsum16x16); 16 such rows still fit in L1 between the passes.
constexpr int kGroupMaxD = 256;

// Lanes [0, n) set, n in [0, 16].
[[gnu::always_inline]] inline __mmask16 head_mask(int n) {
  return __mmask16((1u << n) - 1u);
}

// The sum of the 16 lanes by the fixed tree h_l = a_l + a_{l+8}, q_l = h_l + h_{l+4},
// (q_0 + q_2) + (q_1 + q_3): the one every row reduction of this path uses (hsum16x16 below
// performs the same tree for 16 rows at once).
[[gnu::always_inline]] inline float hsum(__m512 a) {
  const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1));
  __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  q = _mm_add_ps(q, _mm_movehl_ps(q, q));        // lane 0: q0 + q2, lane 1: q1 + q3
  q = _mm_add_ss(q, _mm_movehdup_ps(q));          // lane 0: (q0 + q2) + (q1 + q3)
  return _mm_cvtss_f32(q);
}

// Lane r of the result = hsum(v[r]), for 16 vectors at once: the same pairs are added in the
// same order (a + b and b + a are the same IEEE value), transposed as they go, ~3 operations a
// row instead of 8.
[[gnu::always_inline]] inline __m512 hsum16x16(const __m512* v) {
  __m512 s1[8], s2[4], s3[2];
  for (int k = 0; k < 8; ++k)  // rows 2k, 2k+1: lanes 0-7 = h of row 2k, 8-15 = h of row 2k+1
    s1[k] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * k], v[2 * k + 1], 0x44),
                          _mm512_shuffle_f32x4(v[2 * k], v[2 * k + 1], 0xEE));
  for (int k = 0; k < 4; ++k)  // quads: q of rows 4k, 4k+1, 4k+2, 4k+3
    s2[k] = _mm512_add_ps(_mm512_shuffle_f32x4(s1[2 * k], s1[2 * k + 1], 0x88),
                          _mm512_shuffle_f32x4(s1[2 * k], s1[2 * k + 1], 0xDD));
  for (int k = 0; k < 2; ++k)  // per quad: q0 + q2, q1 + q3 of two rows
    s3[k] = _mm512_add_ps(_mm512_shuffle_ps(s2[2 * k], s2[2 * k + 1], 0x44),
                          _mm512_shuffle_ps(s2[2 * k], s2[2 * k + 1], 0xEE));
  const __m512 s4 = _mm512_add_ps(_mm512_shuffle_ps(s3[0], s3[1], 0x88),
                                  _mm512_shuffle_ps(s3[0], s3[1], 0xDD));
  // s4 lane 4j + m holds row j + 4m; put row r in lane r
  const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  return _mm512_permutexvar_ps(order, s4);
}

// Σ over a row of n values as 16 lane partial sums (lane l: the i ≡ l mod 16 terms), for the
// caller to fold with hsum or hsum16x16: f(i, mask) gives the terms of the 16 values at
// [i, i + 16) and must return 0 in the lanes outside mask. Blocks k = 0, 1, … of the row; four
// chains (k mod 4) when there are at least 4, added as (c0 + c1) + (c2 + c3), then the blocks
// left over in order; the last block masked. The order depends on n only.
template <class F>
[[gnu::always_inline]] inline __m512 row_partial(int n, F f) {
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

// Half-rate prefetch into L2 for a loop over 4 vectors at a time, at vector k of its row: the
// lines at half_pf + 32·k and the next, so a pass over a row fetches half a row's bytes from
// half_pf on (the long-row pairs, token_norm.hpp). An address, not a pointer: it may lie past the
// end of x (a prefetch never faults). 0: none.
[[gnu::always_inline]] inline void prefetch_half(std::uintptr_t half_pf, int k) {
  if (half_pf) {
    const std::uintptr_t a = half_pf + std::uintptr_t(k) * (W * sizeof(float) / 2);
    _mm_prefetch(reinterpret_cast<const char*>(a), _MM_HINT_T1);
    _mm_prefetch(reinterpret_cast<const char*>(a + 64), _MM_HINT_T1);
  }
}

// The same for a sum of squares g(v)², accumulated with FMA (acc = g·g + acc); half_pf as in
// prefetch_half (a prefetch never changes a value).
template <class G>
[[gnu::always_inline]] inline __m512 row_partial_sq(const float* x, int n, G g,
                                                    std::uintptr_t half_pf = 0) {
  const int full = n / W, rem = n % W;
  __m512 acc;
  int k = 0;
  auto sq = [&](const float* p, __m512 a) {
    const __m512 d = g(_mm512_loadu_ps(p), 0xFFFF);
    return _mm512_fmadd_ps(d, d, a);
  };
  if (full >= 4) {
    const __m512 z = _mm512_setzero_ps();
    __m512 c0 = sq(x, z), c1 = sq(x + W, z), c2 = sq(x + 2 * W, z), c3 = sq(x + 3 * W, z);
    for (k = 4; k + 4 <= full; k += 4) {
      prefetch_half(half_pf, k);
      c0 = sq(x + k * W, c0);
      c1 = sq(x + (k + 1) * W, c1);
      c2 = sq(x + (k + 2) * W, c2);
      c3 = sq(x + (k + 3) * W, c3);
    }
    acc = _mm512_add_ps(_mm512_add_ps(c0, c1), _mm512_add_ps(c2, c3));
  } else {
    acc = _mm512_setzero_ps();
  }
  for (; k < full; ++k) acc = sq(x + k * W, acc);
  if (rem) {
    const __mmask16 m = head_mask(rem);
    const __m512 d = g(_mm512_maskz_loadu_ps(m, x + full * W), m);
    acc = _mm512_fmadd_ps(d, d, acc);
  }
  return acc;
}

// y[d, d + 16) = f(d, mask) for d = 0, 16, … < n, where f returns the 16 values at [d, d + 16)
// (lanes outside mask are not stored; f loads with _mm512_maskz_loadu_ps(mask, …), which reads
// nothing outside the mask). Through non-temporal stores when `stream` and y is 4-byte
// aligned: a masked head up to the next 64-byte boundary, aligned streamed vectors, a masked
// tail; f is then called at offsets shifted by the head. The values must be elementwise (lane
// d depends only on position d), so they do not depend on where y's boundaries fall.
template <class F>
[[gnu::always_inline]] inline void write_row(float* y, int n, bool stream, F f) {
  int d = 0;
  const std::uintptr_t a = reinterpret_cast<std::uintptr_t>(y);
  if (stream && (a & 3) == 0) {
    const int head = std::min(n, int(((64 - (a & 63)) & 63) / 4));
    if (head) _mm512_mask_storeu_ps(y, head_mask(head), f(0, head_mask(head)));
    for (d = head; d + W <= n; d += W) _mm512_stream_ps(y + d, f(d, __mmask16(0xFFFF)));
  } else {
    for (; d + W <= n; d += W) _mm512_storeu_ps(y + d, f(d, __mmask16(0xFFFF)));
  }
  if (d < n) {
    const __mmask16 m = head_mask(n - d);
    _mm512_mask_storeu_ps(y + d, m, f(d, m));
  }
}

// A write pass calls this once per 64-byte line of x it reads, for the line kPrefetchBytes
// further on, into L2. The statistics passes before it run on a row already in L1, so without
// the prefetch the memory stream idles while they run (bench/ANALYSIS.md, step 2, has the
// measurements). A prefetch never faults, so running past the end of x is harmless (the
// address is computed as an integer, not as a pointer past the array).
constexpr std::uintptr_t kPrefetchBytes = 16384;
[[gnu::always_inline]] inline void prefetch_ahead(const float* p,
                                                  std::uintptr_t ahead = kPrefetchBytes) {
  _mm_prefetch(reinterpret_cast<const char*>(reinterpret_cast<std::uintptr_t>(p) + ahead),
               _MM_HINT_T1);
}

// The distance for the output pass of rows processed one at a time (D > kGroupMaxD): the next
// row, so its statistics pass reads from L2, at least 4 KB (enough bytes in flight to cover a
// memory latency) and at most kPrefetchBytes. On the AMD host (1 thread, alternating pairs)
// rms_norm went from 0.76–0.85 of the streaming copy to 0.88–0.98 at D = 1000 and from
// 0.75–0.81 to 0.79–0.83 at D = 2048, layer_norm within the noise; at D = 1024 one set of pairs
// favoured it and a later one showed no difference. The Intel host measured 8–64 KB alike
// (bench/ANALYSIS.md).
constexpr std::uintptr_t row_prefetch_bytes(int D) {
  return std::clamp<std::uintptr_t>(std::uintptr_t(D) * sizeof(float), 4096, kPrefetchBytes);
}

}  // namespace normcheck::kernels::avx512

NORMCHECK_AVX512_END
