// The pieces of sync_batch_norm (norms/sync_batch_norm.cpp) that a distributed engine runs on
// each of its workers (the optional MPI row, mpi/): a shard's moments, Chan's merge, the
// normalization with the merged statistics and the running-statistics update. The in-process
// row runs the same functions, so a worker computes what the in-process shard computes.
#pragma once

#include <vector>

#include "norms/registry.hpp"

namespace normcheck {

// What a worker all-gathers: its count and, per feature, its mean and M2 (Σ (x − μ)²).
struct Moments {
  long long n = 0;
  std::vector<double> mean, m2;  // [D] each
};

// Validates a sync_batch_norm call (as batch_norm: shapes, γ/β, ε, momentum, mode, state, more
// than one position in train mode); returns the number of positions B·T. Nothing is written.
long long check_sync_batch_norm_inputs(const Batch& in, const Params& p, Mode mode,
                                       const State* state);
// A worker's moments over sequences [first, first + count) of `in`, every position: reference
// (two passes in double) or optimized (the BatchNorm statistics kernel: fixed blocking, so its
// bits do not depend on the thread count).
Moments shard_moments(Impl impl, const Batch& in, int first, int count);
// Chan's parallel update of `a` with `b` (count-weighted); a.n == 0: a = b. Merging the shards in
// one fixed order gives the same bits wherever it runs.
void merge_moments(Moments& a, const Moments& b);
// γ·(x − mean)/√(var + ε) + β at every position of `in` (reference: double; optimized: the
// float32 apply kernel, elementwise, so a shard alone gives the bits of the whole batch).
void sync_normalize(Impl impl, const Batch& in, const Params& p, const std::vector<double>& mean,
                    const std::vector<double>& var, Output& out);
// PyTorch's update of the running statistics with the merged mean and biased variance over n
// positions (the unbiased n/(n − 1) in the variance).
void sync_update_running(const Params& p, long long n, const std::vector<double>& mean,
                         const std::vector<double>& var, State& state);

}  // namespace normcheck
