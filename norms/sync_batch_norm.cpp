// sync_batch_norm: BatchNorm whose data-parallel workers share their statistics. Each worker
// (a shard of the batch, cut along B) computes its count n_i, per-feature mean μ_i and M2_i
// (Σ (x − μ_i)²) over its B_i·T positions (padding included, as batch_norm); the workers
// all-gather them and merge them in shard order with Chan's parallel formula,
//   n = n_a + n_b,  δ = μ_b − μ_a,  μ = μ_a + δ·n_b/n,  M2 = M2_a + M2_b + δ²·n_a·n_b/n,
// count-weighted as PyTorch's SyncBatchNorm (batch_norm_gather_stats_with_counts), then
// normalize with the merged mean and biased variance M2/n and update the running statistics with
// the unbiased M2/(n − 1). Eval: the running statistics, no communication.
// Called on a batch as a whole (the plain forward) it is one worker holding the whole batch:
// batch_norm, whose golden cases it passes. The backward (below, sync_backward) all-reduces the
// per-feature sums the gradient through the statistics needs, as PyTorch's SyncBatchNorm does.
// The optimized forward: each shard's statistics through batch_norm_statistics_kernel (double,
// fixed blocking, OpenMP), merged feature by feature in shard order (OpenMP over features: no
// feature depends on another), normalized in float32 by batch_norm_apply_kernel; so for a fixed
// cut its bits do not depend on the thread count.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "norms/sync_batch_norm.hpp"

#include "norms/batch_norm.hpp"
#include "norms/kernels_api.hpp"

namespace normcheck {

namespace {
constexpr const char* kName = "sync_batch_norm";
}  // namespace

// Chan's parallel update of `a` with `b`, feature by feature. A part holding ±inf: the mean is
// that infinity (or NaN for both signs), as a plain sum gives it.
void merge_moments(Moments& a, const Moments& b) {
  if (a.n == 0) {
    a = b;
    return;
  }
  const double n = double(a.n) + double(b.n);
  const double wb = double(b.n) / n, wab = double(a.n) * double(b.n) / n;
  const int D = int(a.mean.size());
#pragma omp parallel for schedule(static) if (D >= 4096)
  for (int d = 0; d < D; ++d) {
    const double delta = b.mean[d] - a.mean[d];
    a.mean[d] = std::isfinite(a.mean[d]) && std::isfinite(b.mean[d]) ? a.mean[d] + delta * wb
                                                                     : a.mean[d] + b.mean[d];
    a.m2[d] = (a.m2[d] + b.m2[d]) + delta * delta * wab;
  }
  a.n += b.n;
}

Moments shard_moments(Impl impl, const Batch& in, int first, int count) {
  const int D = in.D;
  Moments m;
  m.mean.assign(D, 0.0);
  m.m2.assign(D, 0.0);
  const std::size_t begin = std::size_t(first) * in.T, end = std::size_t(first + count) * in.T;
  if (impl == Impl::optimized) {
    std::vector<double> var(D);
    m.n = batch_norm_statistics_kernel(m.mean.data(), var.data(),
                                       in.x.data() + begin * std::size_t(D), count, in.T, D, nullptr);
    for (int d = 0; d < D; ++d) m.m2[d] = var[d] * double(m.n);
    return m;
  }
  m.n = (long long)(end - begin);
  for (std::size_t r = begin; r < end; ++r)
    for (int d = 0; d < D; ++d) m.mean[d] += in.x[r * D + d];
  for (int d = 0; d < D; ++d) m.mean[d] /= double(m.n);
  for (std::size_t r = begin; r < end; ++r)
    for (int d = 0; d < D; ++d) {
      const double e = in.x[r * D + d] - m.mean[d];
      m.m2[d] += e * e;
    }
  return m;
}

long long check_sync_batch_norm_inputs(const Batch& in, const Params& p, Mode mode,
                                       const State* state) {
  return check_batch_norm_inputs(in, p, mode, state, TokenSet::all_positions, kName);
}

void sync_normalize(Impl impl, const Batch& in, const Params& p, const std::vector<double>& mean,
                    const std::vector<double>& var, Output& out) {
  const int D = in.D;
  if (impl == Impl::reference) {
    out.assign(in.x.size(), 0.0);
    for (std::size_t i = 0; i < in.x.size(); ++i) {
      const int d = int(i % D);
      const double g = p.gamma.empty() ? 1.0 : p.gamma[d];
      const double be = p.beta.empty() ? 0.0 : p.beta[d];
      out[i] = g * (in.x[i] - mean[d]) / std::sqrt(var[d] + p.eps) + be;
    }
  } else {
    std::vector<float> mu(D), a(D), be(D), y(in.x.size());
    for (int d = 0; d < D; ++d) {
      mu[d] = float(mean[d]);
      a[d] = float((p.gamma.empty() ? 1.0 : p.gamma[d]) / std::sqrt(var[d] + p.eps));
      be[d] = p.beta.empty() ? 0.0f : p.beta[d];
    }
    batch_norm_apply_kernel(y.data(), in.x.data(), in.B, in.T, D, nullptr, mu.data(), a.data(),
                            be.data());
    out.assign(y.begin(), y.end());
  }
}

void sync_update_running(const Params& p, long long n, const std::vector<double>& mean,
                         const std::vector<double>& var, State& state) {
  const double unbiased = double(n) / double(n - 1);
  for (std::size_t d = 0; d < mean.size(); ++d) {
    state.running_mean[d] = (1 - p.momentum) * state.running_mean[d] + p.momentum * mean[d];
    state.running_var[d] = (1 - p.momentum) * state.running_var[d] + p.momentum * var[d] * unbiased;
  }
}

namespace {

// The statistics every worker normalizes with, [D] each: train: the workers' moments,
// all-gathered and merged in shard order (the same on every worker), mean and biased variance
// M2/n; eval: the running statistics.
void sync_statistics(Impl impl, const Batch& in, const ShardCut& cut, long long n, Mode mode,
                const State* state, std::vector<double>& mean, std::vector<double>& var) {
  const int D = in.D;
  if (mode != Mode::train) {
    mean = state->running_mean;
    var = state->running_var;
    return;
  }
  Moments all;
  int first = 0;
  for (int size : cut) {
    merge_moments(all, shard_moments(impl, in, first, size));
    first += size;
  }
  mean = std::move(all.mean);
  var.assign(D, 0.0);
  for (int d = 0; d < D; ++d) var[d] = all.m2[d] / double(n);
}

void sync_forward(Impl impl, const Batch& in, const ShardCut& cut, const Params& p, Mode mode,
                  State* state, Output& out) {
  const long long n = check_sync_batch_norm_inputs(in, p, mode, state);
  validate_shard_cut(in, cut);
  std::vector<double> mean, var;
  sync_statistics(impl, in, cut, n, mode, state, mean, var);
  // each worker normalizes its own shard with the shared statistics: elementwise, so the whole
  // batch at once is the same
  sync_normalize(impl, in, p, mean, var, out);
  if (mode == Mode::train) sync_update_running(p, n, mean, var, *state);
}

// The backward of one data-parallel step, as PyTorch's SyncBatchNorm runs it
// (torch/nn/modules/_functions.py, SyncBatchNorm.backward): each worker reduces its own shard to
// Σ dy and Σ dy·(x − μ) per feature, with the merged statistics of the forward; the workers
// all-reduce the two sums (added in shard order, the same on every worker), and each computes its
// dx from the whole batch's sums and count,
//   dx = γ·rstd·(dy − Σdy/n − (x − μ)·rstd²·Σdy(x − μ)/n)   (train; eval: γ·rstd·dy),
// dγ = rstd·Σdy(x − μ), dβ = Σdy: the workers' own dγ, dβ added up (what DDP's all-reduce of the
// parameter gradients adds), computed here from the all-reduced sums, the same in exact
// arithmetic. Eval: the running statistics, nothing flows through them, and the sums are the
// parameter gradients only. One worker holding the whole batch is batch_norm's backward.
// Reference: double, the sums over each shard's positions in order. Optimized: each shard's
// sums through batch_norm_backward_sums (fixed row segments), dx through
// batch_norm_backward_apply over the whole batch (elementwise: each worker's shard the same);
// for a fixed cut its bits do not depend on the thread count.
void sync_backward(Impl impl, const Batch& in, const ShardCut& cut, const Params& p, Mode mode,
                   const State* state, const std::vector<float>& dy, Grads& out) {
  const long long n = check_sync_batch_norm_inputs(in, p, mode, state);
  validate_dy(in, dy);
  validate_shard_cut(in, cut);
  const int D = in.D;
  const bool train = mode == Mode::train;
  std::vector<double> mean, var;
  sync_statistics(impl, in, cut, n, mode, state, mean, var);
  const std::size_t per = std::size_t(in.T) * D;  // values per sequence
  std::vector<double> sums(2 * std::size_t(D), 0.0);  // [2, D]: Σ dy·(x − μ), Σ dy; all-reduced
  std::vector<double> local(2 * std::size_t(D));      // one worker's
  int first = 0;
  for (int size : cut) {
    const std::size_t begin = first * per, end = (first + size) * per;
    if (impl == Impl::optimized) {
      batch_norm_backward_sums(local.data(), dy.data() + begin, in.x.data() + begin, size, in.T,
                               D, nullptr, mean.data());
    } else {
      std::fill(local.begin(), local.end(), 0.0);
      for (std::size_t i = begin; i < end; ++i) {
        const int d = int(i % D);
        local[d] += double(dy[i]) * (double(in.x[i]) - mean[d]);
        local[D + d] += dy[i];
      }
    }
    for (std::size_t k = 0; k < sums.size(); ++k) sums[k] += local[k];  // the all-reduce
    first += size;
  }
  if (impl == Impl::optimized) {
    run_affine_backward(p, in.x.size(), out, [&](float* dx, float* dg, float* db, const float* g) {
      batch_norm_backward_apply(dx, dg, db, sums.data(), n, dy.data(), in.x.data(), g, in.B, in.T,
                                D, nullptr, mean.data(), var.data(), p.eps, train);
    });
    return;
  }
  Grads gr;
  gr.dx.assign(in.x.size(), 0.0);
  std::vector<double> rstd(D);
  for (int d = 0; d < D; ++d) rstd[d] = 1.0 / std::sqrt(var[d] + p.eps);
  for (std::size_t i = 0; i < in.x.size(); ++i) {
    const int d = int(i % D);
    const double scale = (p.gamma.empty() ? 1.0 : p.gamma[d]) * rstd[d];
    const double xmu = double(in.x[i]) - mean[d];
    gr.dx[i] = train ? scale * (dy[i] - sums[D + d] / double(n) -
                                xmu * rstd[d] * rstd[d] * sums[d] / double(n))
                     : scale * dy[i];
  }
  if (!p.gamma.empty()) {
    gr.dgamma.resize(D);
    for (int d = 0; d < D; ++d) gr.dgamma[d] = sums[d] * rstd[d];
  }
  if (!p.beta.empty()) gr.dbeta.assign(sums.begin() + D, sums.end());
  out = std::move(gr);
}

ShardedBackwardFn sharded_backward(Impl impl) {
  return [impl](const Batch& in, const ShardCut& cut, const Params& p, Mode m, const State* s,
                const std::vector<float>& dy, Grads& g) { sync_backward(impl, in, cut, p, m, s, dy, g); };
}

BackwardFn one_worker_backward(Impl impl) {
  return [impl](const Batch& in, const Params& p, Mode m, const State* s,
                const std::vector<float>& dy, Grads& g) {
    validate_batch(in);
    sync_backward(impl, in, {in.B}, p, m, s, dy, g);
  };
}

ShardedForwardFn sharded(Impl impl) {
  return [impl](const Batch& in, const ShardCut& cut, const Params& p, Mode m, State* s,
                Output& o) { sync_forward(impl, in, cut, p, m, s, o); };
}

ForwardFn one_worker(Impl impl) {
  return [impl](const Batch& in, const Params& p, Mode m, State* s, Output& o) {
    validate_batch(in);
    sync_forward(impl, in, {in.B}, p, m, s, o);
  };
}

}  // namespace

LayerEntry sync_batch_norm_entry() {
  // batch_norm's profile but shard invariance: the workers' statistics are the whole batch's
  LayerEntry e = batch_norm_family(
      kName,
      "γ·(x−μ_d)/√(σ_d²+ε) + β; train: μ, σ² of the whole batch, merged from the shards' "
      "(count, mean, M2) by Chan's formula; eval: running stats",
      "all B·T tokens of every shard, padding included (all-gathered)", TokenSet::all_positions,
      {"batch_independence", "padding_invariance", "token_independence", "causality",
       "train_inference_equivalence", "streaming_equivalence", "token_scale_invariance",
       "token_shift_invariance", "nan_containment"},
      "batch statistics synchronized across the shards of one step: that cut no longer matters, "
      "the neighbours and the padding still do, and so do micro-batches (separate steps, each with "
      "its own statistics)");
  e.reference = one_worker(Impl::reference);
  e.optimized = one_worker(Impl::optimized);
  e.sharded_reference = sharded(Impl::reference);
  e.sharded_optimized = sharded(Impl::optimized);
  e.backward_reference = one_worker_backward(Impl::reference);
  e.backward_optimized = one_worker_backward(Impl::optimized);
  e.sharded_backward_reference = sharded_backward(Impl::reference);
  e.sharded_backward_optimized = sharded_backward(Impl::optimized);
  e.computes = "batch_norm";  // one worker is batch_norm: its golden cases, forward and backward
  return e;
}

}  // namespace normcheck
