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

// "avx512", "avx2" or "baseline": the names NORMCHECK_KERNEL_PATH takes and the reports give.
inline const char* to_string(KernelPath p) {
  return p == KernelPath::avx512 ? "avx512" : p == KernelPath::avx2 ? "avx2" : "baseline";
}

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
// x is read once from memory: the rows are cut into at most 16 fixed segments (runs of blocks
// of whole rows, ≤ 256 KB each), each of which gets a mean and M2 per feature — two passes over
// each L2-resident block on the AVX2 and baseline paths, one pass of direct and shifted sums
// over the whole segment on AVX-512 (batch_norm.cpp) — merged in a fixed order with Chan's
// formula. The blocks, the segments a thread takes and every merge order depend on (B·T, D)
// only, so on one instruction-set path the result is bitwise the same at any thread count.
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

// ---------------------------------------------------------------------------------------------
// Backward passes. dγ and dβ are reductions over rows: each kernel sums them in double over
// fixed segments of rows added in a fixed order (kernels::reduce_row_segments), so every output
// is bitwise the same at any thread count; dx of a row depends on that row alone (token-wise
// layers) and is the same bits alone or inside any batch. Every kernel validates before touching
// memory (InvalidInput naming the parameter).

// layer_norm's backward over `rows` independent tokens, given the upstream gradient dy.
// dx: [rows, D] written (may equal dy or x); dgamma, dbeta: [D] written (Σ over all rows of
// dy·x̂ and of dy), or nullptr (not computed); dy, x: [rows, D] read; gamma: [D] read or nullptr (1).
void layer_norm_backward_kernel(float* dx, float* dgamma, float* dbeta, const float* dy,
                                const float* x, const float* gamma, std::size_t rows, int D,
                                float eps);

// rms_norm's backward; same buffers as layer_norm_backward_kernel (dbeta: Σ dy, for a β).
void rms_norm_backward_kernel(float* dx, float* dgamma, float* dbeta, const float* dy,
                              const float* x, const float* gamma, std::size_t rows, int D,
                              float eps);

// group_norm's backward: LayerNorm's within each of G contiguous groups of D/G features (G must
// divide D); same buffers as layer_norm_backward_kernel.
void group_norm_backward_kernel(float* dx, float* dgamma, float* dbeta, const float* dy,
                                const float* x, const float* gamma, std::size_t rows, int D, int G,
                                float eps);

// BatchNorm's backward at the selected positions (every B·T position when `lengths` is nullptr,
// else t < lengths[b]), given the statistics the forward normalized with — mean, var: [D] read;
// `train`: the batch's (batch_norm_statistics_kernel over the same selection), and the gradient
// flows through them too; otherwise the running statistics (eval: elementwise).
// dx: [B, T, D] written, 0 at positions not selected; dgamma, dbeta: [D] written (Σ over the
// selected positions of dy·x̂ and of dy), or nullptr; dy, x: [B, T, D] read; gamma: [D] read or
// nullptr (1). Train needs more than 1 selected position.
void batch_norm_backward_kernel(float* dx, float* dgamma, float* dbeta, const float* dy,
                                const float* x, const float* gamma, int B, int T, int D,
                                const int* lengths, const double* mean, const double* var,
                                double eps, bool train);

}  // namespace normcheck
