// Building blocks shared by the optimized (float32) kernels: fixed-shape reductions whose order
// depends only on the row length (never on the thread count or the batch), written so that GCC
// vectorizes the 8-lane body, and the OpenMP loop over independent rows.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>

namespace normcheck::kernels {

constexpr int kLanes = 8;

// Σ (x[i] - shift), eight interleaved partial sums combined in a fixed tree.
inline float sum_shifted(const float* x, int n, float shift) {
  float acc[kLanes] = {0, 0, 0, 0, 0, 0, 0, 0};
  int i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] += x[i + l] - shift;
  float tail = 0;
  for (; i < n; ++i) tail += x[i] - shift;
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail;
}

// Σ (x[i] - center)², same fixed order.
inline float sum_sq_dev(const float* x, int n, float center) {
  float acc[kLanes] = {0, 0, 0, 0, 0, 0, 0, 0};
  int i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) {
      const float d = x[i + l] - center;
      acc[l] += d * d;
    }
  float tail = 0;
  for (; i < n; ++i) {
    const float d = x[i] - center;
    tail += d * d;
  }
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail;
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

// Runs body(i) for i in [0, n) on independent rows of `width` values, statically scheduled.
template <class F>
inline void for_each_row(std::size_t n, std::size_t width, F&& body) {
#pragma omp parallel for schedule(static) if (n * width >= kParallelMinValues)
  for (long long i = 0; i < (long long)n; ++i) body(std::size_t(i));
}

}  // namespace normcheck::kernels
