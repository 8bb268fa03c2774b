// The raw float32 kernels behind the registry's `optimized` entries, for callers that do not
// want the double-widening Output adapters (bench/, an inference engine). Same arithmetic, same
// bits as what the properties verify: the registry entries call these.
//   x, out: [rows, D] row-major; gamma, beta: [D] or nullptr (γ = 1, β = 0).
// Every reduction runs in an order fixed by D alone (never by the thread count or by `rows`).
#pragma once

#include <cstddef>

namespace normcheck {

void layer_norm_kernel(float* out, const float* x, const float* gamma, const float* beta,
                       std::size_t rows, int D, float eps);
void rms_norm_kernel(float* out, const float* x, const float* gamma, const float* beta,
                     std::size_t rows, int D, float eps);

// BatchNorm training forward over every row (no padding mask): per-feature batch mean and
// biased variance accumulated in double, rows in index order; out = γ·(x−μ)/√(σ²+ε) + β; then
// running_mean/var [D] (double) ← (1−momentum)·running + momentum·(μ, σ²·rows/(rows−1)).
// rows must be > 1.
void batch_norm_train_kernel(float* out, double* running_mean, double* running_var,
                             const float* x, const float* gamma, const float* beta,
                             std::size_t rows, int D, double eps, double momentum);

}  // namespace normcheck
