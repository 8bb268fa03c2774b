// Building blocks shared by the optimized (float32) kernels: fixed-shape reductions whose order
// depends only on the row length (never on the thread count or the batch), written so that GCC
// vectorizes the 8-lane body, and the OpenMP loop over independent rows.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include <omp.h>
#include <xmmintrin.h>  // _mm_stream_ps, _mm_sfence (SSE: every x86-64)

namespace normcheck::kernels {

constexpr int kLanes = 8;
// Rows of at least kWideLanes values first run 32 interleaved partial sums (four independent
// 8-lane chains: one chain is bound by the add latency, not by loads), folded into the 8 lanes
// in a fixed tree before the 8-lane loop and the tail. The order depends on n only; short rows
// (n < 32) take exactly the 8-lane path.
constexpr int kWideLanes = 32;

// Eight floats as one GCC vector. Its operators are lane-wise IEEE operations, so a body
// written with them gives the same bits in the AVX2 clone (one ymm op) and the baseline clone
// (two xmm ops); GCC does not contract them into FMA without -mfma / fast-math.
typedef float v8f __attribute__((vector_size(32)));
// The helpers and the lane-wise lambdas passed to them inline, so the baseline clone never
// passes a v8f by value across a call: GCC's note (emitted at the end of every including file)
// that this would change the ABI without AVX does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"

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

// Σ (x[i] - shift)
inline float sum_shifted(const float* x, int n, float shift) {
  return fixed_order_sum(x, n, [shift](auto v) { return v - shift; });
}

// Σ (x[i] - center)²
inline float sum_sq_dev(const float* x, int n, float center) {
  return fixed_order_sum(x, n, [center](auto v) {
    const auto d = v - center;
    return d * d;
  });
}

// Two-pass mean and biased variance of one row. Shifting by x[0] first keeps the mean exact
// for constant rows and accurate for large offsets (1e3 ± 0.1).
inline void mean_var(const float* x, int n, float& mean, float& var) {
  const float shift = x[0];
  mean = shift + sum_shifted(x, n, shift) / float(n);
  var = sum_sq_dev(x, n, mean) / float(n);
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

// Rows of at most this many values are normalized kRowGroup at a time: each phase (Σ, Σ(x−μ)²,
// write) runs for the whole group before the next, so the group's independent reductions
// overlap instead of each row's three dependent passes running alone. Longer rows go one by one
// (a group of them would no longer fit in L1 between the passes). Each row's operations and
// their order are the same either way.
constexpr int kRowGroupMaxD = 512;
constexpr int kRowGroup = 4;

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
// The statistics are the forward's (kernels::mean_var, or the mean square), with its
// overflow path: a finite span whose variance overflows float is normalized on x·2^-k, which
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
      const float shift = x[0] * s;
      mean = shift + fixed_order_sum(x, n, [s, shift](auto v) { return v * s - shift; }) / float(n);
      var = fixed_order_sum(x, n, [s, mean](auto v) {
              const auto d = v * s - mean;
              return d * d;
            }) / float(n);
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
  for (int i = 0; i < n; ++i) {
    const float dyi = dy[i], xh = xhat(i);
    acc_b[i] += double(dyi);
    acc_g[i] += double(dyi) * double(xh);
    dx[i] = rs * ((gp[i & gm] * dyi - m1) - xh * m2);
  }
}

}  // namespace normcheck::kernels
