// The raw float32 kernels behind the optimized forward of each layer, for callers that own their
// buffers (the bounds tests place them between guard regions). Each reads and writes exactly the
// ranges its comment names, and nothing else. The Batch-level forward in each layer file
// validates its input and calls these; the reference stays beside it in the same file.
// Every kernel throws InvalidInput for sizes or pointers it cannot accept, before touching memory.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <cstring>

namespace normcheck {

// The instruction-set path of the optimized kernels (the norm kernels below and attention),
// chosen once per process: the widest this CPU has — AVX-512 with FMA, AVX2 with FMA, or the
// x86-64 baseline (SSE2) — unless the environment variable NORMCHECK_KERNEL_PATH names a
// narrower one (avx2 or baseline), which runs that path's code on a wider machine for testing.
// Each path computes every value by operations whose order is fixed by the shapes, so on one
// path the results are bitwise the same for any thread count, batch composition, alignment or
// tiling. Different paths round differently (FMA, lane counts): they agree with each other and
// with the reference within the tolerance rule, not bitwise.
enum class KernelPath { avx512, avx2, baseline };

inline KernelPath detect_kernel_path() {
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
                      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
                      __builtin_cpu_supports("fma");
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  KernelPath p = avx512 ? KernelPath::avx512 : avx2 ? KernelPath::avx2 : KernelPath::baseline;
  if (const char* e = std::getenv("NORMCHECK_KERNEL_PATH")) {
    if (std::strcmp(e, "avx2") == 0 && avx2) p = KernelPath::avx2;
    if (std::strcmp(e, "baseline") == 0) p = KernelPath::baseline;
  }
  return p;
}

inline KernelPath kernel_path() {
  static const KernelPath p = detect_kernel_path();
  return p;
}

// layer_norm over `rows` independent tokens of D features. `out` may equal `x` (in place).
// out: [rows, D] written; x: [rows, D] read; gamma, beta: [D] read, or nullptr (1 and 0).
void layer_norm_kernel(float* out, const float* x, const float* gamma, const float* beta,
                       std::size_t rows, int D, float eps);

// rms_norm over `rows` independent tokens of D features; same buffers as layer_norm_kernel.
void rms_norm_kernel(float* out, const float* x, const float* gamma, const float* beta,
                     std::size_t rows, int D, float eps);

// batch_norm statistics of a [B, T, D] batch, per feature, over the selected positions:
// every B·T position when `lengths` is nullptr, else t < lengths[b] (masked_batch_norm).
// x: [B, T, D] read; lengths: [B] read, each in [0, T]; mean, var: [D] written (biased variance,
// accumulated in double). Returns the number of selected positions (0: mean and var are 0).
// x is read once from memory: blocks of whole rows (≤ 256 KB) get a mean and M2 per feature —
// two passes over the L2-resident block on the AVX2 and baseline paths, one pass of direct and
// shifted sums on AVX-512 (batch_norm.cpp) — merged in a fixed order with Chan's formula. The
// blocks, the segments of blocks a thread takes and every merge order depend on (B·T, D) only,
// so on one instruction-set path the result is bitwise the same at any thread count.
long long batch_norm_statistics_kernel(double* mean, double* var, const float* x, int B, int T,
                                       int D, const int* lengths);

// batch_norm's normalization: y = (x − mu)·a + be per feature, at the selected positions (same
// selection rule as above); the others of `out` are left untouched. `out` may equal `x`.
// out: [B, T, D] written; x: [B, T, D] read; lengths: [B] or nullptr; mu, a, be: [D] read.
void batch_norm_apply_kernel(float* out, const float* x, int B, int T, int D, const int* lengths,
                             const float* mu, const float* a, const float* be);

// BatchNorm's training forward over every row (no padding mask), for the benchmarks: the
// statistics and apply kernels above (apply writes outputs ≥ 8 MB with non-temporal stores), then the running statistics (double) updated as PyTorch
// does: (1−momentum)·running + momentum·(μ, σ²·rows/(rows−1)). rows must be > 1.
void batch_norm_train_kernel(float* out, double* running_mean, double* running_var,
                             const float* x, const float* gamma, const float* beta,
                             std::size_t rows, int D, double eps, double momentum);

}  // namespace normcheck
