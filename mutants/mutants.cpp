#include "mutants/mutants.hpp"

#include <omp.h>

#include <cmath>
#include <deque>

#include "norms/batch_norm.hpp"
#include "norms/kernels.hpp"
#include "norms/kernels_api.hpp"
#include "properties/catalog.hpp"

namespace normcheck {
namespace {

// ---------------------------------------------------------------------------------------------
// broken kernels (float32, in the style of the real ones)

using RowFn = void (*)(const float* x, float* y, const Params& p, int D, std::size_t row,
                       std::size_t rows);

void float_rows(const Batch& in, const Params& p, Output& out, RowFn fn, std::size_t skip_last = 0) {
  validate_batch(in);
  std::vector<float> y(in.x.size(), 0.0f);
  const std::size_t rows = in.rows() - std::min(in.rows(), skip_last);
  kernels::for_each_row(rows, std::size_t(in.D), [&](std::size_t r) {
    fn(&in.x[r * in.D], &y[r * in.D], p, in.D, r, in.rows());
  });
  out.assign(y.begin(), y.end());
}

float g_at(const Params& p, int d) { return p.gamma.empty() ? 1.0f : p.gamma[d]; }
float b_at(const Params& p, int d) { return p.beta.empty() ? 0.0f : p.beta[d]; }

void ln_row(const float* x, float* y, const Params& p, int D, float mean, float var) {
  const float rstd = 1.0f / std::sqrt(var + float(p.eps));
  for (int d = 0; d < D; ++d) y[d] = (x[d] - mean) * rstd * g_at(p, d) + b_at(p, d);
}

// one pass: var = E[x²] − E[x]², cancels catastrophically on large offsets
void ln_one_pass(const float* x, float* y, const Params& p, int D, std::size_t, std::size_t) {
  float s1 = 0, s2 = 0;
  for (int d = 0; d < D; ++d) {
    s1 += x[d];
    s2 += x[d] * x[d];
  }
  const float mean = s1 / D;
  ln_row(x, y, p, D, mean, s2 / D - mean * mean);
}

// ε added outside the square root: (x − μ)/(σ + ε)
void ln_eps_outside(const float* x, float* y, const Params& p, int D, std::size_t, std::size_t) {
  float mean, var;
  kernels::mean_var(x, D, mean, var);
  const float inv = 1.0f / (std::sqrt(var) + float(p.eps));
  for (int d = 0; d < D; ++d) y[d] = (x[d] - mean) * inv * g_at(p, d) + b_at(p, d);
}

// the mean summed in one partial sum per OpenMP thread: the rounding follows the thread count
void ln_thread_split(const float* x, float* y, const Params& p, int D, std::size_t, std::size_t) {
  const int parts = std::max(1, omp_get_max_threads());
  float mean = 0;
  for (int k = 0; k < parts; ++k) {
    float part = 0;
    for (int d = k * D / parts; d < (k + 1) * D / parts; ++d) part += x[d];
    mean += part;
  }
  mean /= D;
  float var = 0;
  for (int k = 0; k < parts; ++k) {
    float part = 0;
    for (int d = k * D / parts; d < (k + 1) * D / parts; ++d) part += (x[d] - mean) * (x[d] - mean);
    var += part;
  }
  ln_row(x, y, p, D, mean, var / D);
}

// γ and β indexed by the token instead of the feature
void ln_wrong_axis(const float* x, float* y, const Params& p, int D, std::size_t row, std::size_t) {
  float mean, var;
  kernels::mean_var(x, D, mean, var);
  const float rstd = 1.0f / std::sqrt(var + float(p.eps));
  const int k = int(row % D);
  for (int d = 0; d < D; ++d) y[d] = (x[d] - mean) * rstd * g_at(p, k) + b_at(p, k);
}

void ln_correct(const float* x, float* y, const Params& p, int D, std::size_t, std::size_t) {
  float mean, var;
  kernels::mean_var(x, D, mean, var);
  ln_row(x, y, p, D, mean, var);
}

// RMSNorm that re-centres: LayerNorm without β under RMSNorm's name
void rms_centered(const float* x, float* y, const Params& p, int D, std::size_t, std::size_t) {
  float mean, var;
  kernels::mean_var(x, D, mean, var);
  const float r = 1.0f / std::sqrt(var + float(p.eps));
  for (int d = 0; d < D; ++d) y[d] = (x[d] - mean) * r * g_at(p, d);
}

// a different rsqrt once the batch has more than 64 rows (a "large batch" code path)
void rms_batch_path(const float* x, float* y, const Params& p, int D, std::size_t, std::size_t rows) {
  const float ms = kernels::sum_sq_dev(x, D, 0.0f) / float(D);
  const float r = rows > 64 ? std::sqrt(1.0f / (ms + float(p.eps))) : 1.0f / std::sqrt(ms + float(p.eps));
  for (int d = 0; d < D; ++d) y[d] = x[d] * r * g_at(p, d);
}

// float32 two-pass statistics without the overflow guard: (x − μ)² of |x| ≈ 1e30 overflows, σ²
// becomes inf and the token comes out as β (PyTorch #162489: LayerNorm variance overflow on
// float32 inputs near 1e30)
void ln_unguarded(const float* x, float* y, const Params& p, int D, std::size_t, std::size_t) {
  float mean, var;
  kernels::mean_var(x, D, mean, var);
  ln_row(x, y, p, D, mean, var);
}

// a separate kernel for rows wider than the row-group limit that forgets ε: 1/√σ², so a
// constant (or nearly constant) wide token gives NaN or huge values
void ln_wide_no_eps(const float* x, float* y, const Params& p, int D, std::size_t, std::size_t) {
  float mean, var;
  kernels::mean_var(x, D, mean, var);
  if (D > kernels::kRowGroupMaxD) {
    const float rstd = 1.0f / std::sqrt(var);
    for (int d = 0; d < D; ++d) y[d] = (x[d] - mean) * rstd * g_at(p, d) + b_at(p, d);
    return;
  }
  ln_row(x, y, p, D, mean, var);
}

// a batch-size-selected kernel: when the row count is a multiple of 16 the statistics are
// summed back to front (another tiling), so a token's bits depend on the batch it lands in
void ln_multiple_of_16(const float* x, float* y, const Params& p, int D, std::size_t,
                       std::size_t rows) {
  if (rows % 16 != 0) return ln_correct(x, y, p, D, 0, rows);
  float s = 0;
  for (int d = D - 1; d >= 0; --d) s += x[d];
  const float mean = s / float(D);
  float v = 0;
  for (int d = D - 1; d >= 0; --d) v += (x[d] - mean) * (x[d] - mean);
  ln_row(x, y, p, D, mean, v / float(D));
}

// the reduction order follows the row's place in its row group: rows in a full group of
// kernels::kRowGroup sum front to back, the leftover rows back to front
void ln_position_order(const float* x, float* y, const Params& p, int D, std::size_t row,
                       std::size_t rows) {
  const std::size_t grouped = rows - rows % kernels::kRowGroup;
  if (row < grouped) return ln_correct(x, y, p, D, row, rows);
  return ln_multiple_of_16(x, y, p, D, row, 16);
}

// x² overflows float32 beyond |x| ≈ 1.8e19: the mean square is inf and every output 0
// (tt-metal #55159: rms_norm broke scale invariance beyond 1.84e19)
void rms_square_overflow(const float* x, float* y, const Params& p, int D, std::size_t, std::size_t) {
  const float ms = kernels::sum_sq_dev(x, D, 0.0f) / float(D);
  const float r = 1.0f / std::sqrt(ms + float(p.eps));
  for (int d = 0; d < D; ++d) y[d] = x[d] * r * g_at(p, d);
}

// LayerNorm whose vector loop runs over whole 8-lane vectors: the last vector of a row whose D
// is not a multiple of 8 reads the first features of the next row (or the buffer's padding),
// and they enter the row's sums
void ln_tail_overread(const Batch& in, const Params& p, Mode, State*, Output& out) {
  validate_affine_norm(in, p);
  const int D = in.D, lanes = kernels::kLanes;
  const int Dv = (D + lanes - 1) / lanes * lanes;
  std::vector<float> x(in.x);
  x.resize(in.x.size() + std::size_t(lanes), 0.0f);  // the allocator's slack after the buffer
  std::vector<float> y(in.x.size());
  kernels::for_each_row(in.rows(), std::size_t(D), [&](std::size_t r) {
    const float* xr = &x[r * D];
    float s = 0;
    for (int d = 0; d < Dv; ++d) s += xr[d];
    const float mean = s / float(D);
    float v = 0;
    for (int d = 0; d < Dv; ++d) v += (xr[d] - mean) * (xr[d] - mean);
    ln_row(xr, &y[r * D], p, D, mean, v / float(D));
  });
  out.assign(y.begin(), y.end());
}

// a fused kernel that asserts a minimum problem size: it throws on a batch of one token, which
// is a valid input (vendor kernels that reject small or odd shapes instead of falling back)
void ln_rejects_one_token(const Batch& in, const Params& p, Mode m, State* s, Output& out) {
  if (in.rows() == 1)
    throw InvalidInput("layer_norm kernel: needs at least 2 rows, got B = 1, T = 1");
  layer("layer_norm").optimized(in, p, m, s, out);
}

// GroupNorm with a one-pass E[x²] − E[x]² variance per group in float32: at a large offset the
// two terms cancel, σ² is 0 or negative and the output NaN (TVM #19592 / ONNX Runtime #28463:
// LayerNormalization of [40000, 40001, 40002, 40003] returned NaN)
void gn_one_pass(const Batch& in, const Params& p, Mode, State*, Output& out) {
  validate_affine_norm(in, p);
  const int D = in.D, G = int(p.get("groups"));
  if (G <= 0 || D % G) throw InvalidInput("group_norm: groups must divide D");
  const int gs = D / G;
  std::vector<float> y(in.x.size());
  kernels::for_each_row(in.rows(), std::size_t(D), [&](std::size_t r) {
    const float* x = &in.x[r * D];
    for (int g = 0; g < G; ++g) {
      float s1 = 0, s2 = 0;
      for (int i = 0; i < gs; ++i) {
        s1 += x[g * gs + i];
        s2 += x[g * gs + i] * x[g * gs + i];
      }
      const float mean = s1 / float(gs), var = s2 / float(gs) - mean * mean;
      const float rstd = 1.0f / std::sqrt(var + float(p.eps));
      for (int i = 0; i < gs; ++i) {
        const int d = g * gs + i;
        y[r * D + d] = (x[d] - mean) * rstd * g_at(p, d) + b_at(p, d);
      }
    }
  });
  out.assign(y.begin(), y.end());
}

// GroupNorm with interleaved (strided) groups instead of contiguous ones
void gn_strided(const Batch& in, const Params& p, Mode, State*, Output& out) {
  validate_batch(in);
  const int D = in.D, G = int(p.get("groups"));
  if (G <= 0 || D % G) throw InvalidInput("group_norm: groups must divide D");
  const int gs = D / G;
  std::vector<float> y(in.x.size());
  kernels::for_each_row(in.rows(), std::size_t(D), [&](std::size_t r) {
    const float* x = &in.x[r * D];
    for (int g = 0; g < G; ++g) {
      float mean = 0, var = 0;
      for (int i = 0; i < gs; ++i) mean += x[g + i * G];
      mean /= gs;
      for (int i = 0; i < gs; ++i) var += (x[g + i * G] - mean) * (x[g + i * G] - mean);
      const float rstd = 1.0f / std::sqrt(var / gs + float(p.eps));
      for (int i = 0; i < gs; ++i) {
        const int d = g + i * G;
        y[r * D + d] = (x[d] - mean) * rstd * g_at(p, d) + b_at(p, d);
      }
    }
  });
  out.assign(y.begin(), y.end());
}

// BatchNorm-family kernels with a twist, in double (the bug is in the maths, not the precision)
enum class BnBug {
  swapped_variances, momentum_reversed, eval_uses_batch, masked_counts_padding,
  block_merge_weight,  // blocks' partial statistics merged with the other part's weight
  float_statistics,    // statistics accumulated in float32
};

// Per-feature statistics of the selected rows in blocks of kernels::stat_block_rows(D) rows
// (two passes in double per block), merged block after block with Chan's formula — but with
// the running part's weight na/n where the new block's nb/n belongs: right while every block
// has the same count, wrong once the last block is partial (PyTorch/oneDNN-style parallel
// Welford merges with a swapped weight)
void blocked_stats_wrong_weight(const Batch& in, TokenSet tokens, std::vector<double>& mean,
                                std::vector<double>& var) {
  const int D = in.D, R = kernels::stat_block_rows(D);
  std::vector<const float*> sel;
  for (int b = 0; b < in.B; ++b)
    for (int t = 0; t < in.T; ++t)
      if (tokens == TokenSet::all_positions || in.valid(b, t)) sel.push_back(&in.x[in.index(b, t, 0)]);
  std::fill(mean.begin(), mean.end(), 0.0);
  std::vector<double> m2(D, 0.0), bm(D), b2(D);
  long long na = 0;
  for (std::size_t r0 = 0; r0 < sel.size(); r0 += std::size_t(R)) {
    const std::size_t r1 = std::min(sel.size(), r0 + std::size_t(R));
    const long long nb = (long long)(r1 - r0);
    std::fill(bm.begin(), bm.end(), 0.0);
    std::fill(b2.begin(), b2.end(), 0.0);
    for (std::size_t r = r0; r < r1; ++r)
      for (int d = 0; d < D; ++d) bm[d] += sel[r][d];
    for (int d = 0; d < D; ++d) bm[d] /= double(nb);
    for (std::size_t r = r0; r < r1; ++r)
      for (int d = 0; d < D; ++d) b2[d] += (sel[r][d] - bm[d]) * (sel[r][d] - bm[d]);
    const double n = double(na + nb);
    for (int d = 0; d < D; ++d) {
      const double delta = bm[d] - mean[d];
      mean[d] = na == 0 ? bm[d] : mean[d] + delta * (double(na) / n);
      m2[d] = na == 0 ? b2[d] : m2[d] + b2[d] + delta * delta * double(na) * double(nb) / n;
    }
    na += nb;
  }
  for (int d = 0; d < D; ++d) var[d] = na ? m2[d] / double(na) : 0.0;
}

// Per-feature statistics summed in float32 (two passes): the squares of 1e30 values overflow to
// inf and the batch comes out as β (oneDNN-style float accumulation; PyTorch #162489 for BN)
void float_stats(const Batch& in, TokenSet tokens, std::vector<double>& mean, std::vector<double>& var) {
  const int D = in.D;
  std::vector<float> s(D, 0.0f), q(D, 0.0f);
  long long n = 0;
  for (int b = 0; b < in.B; ++b)
    for (int t = 0; t < in.T; ++t)
      if (tokens == TokenSet::all_positions || in.valid(b, t)) {
        ++n;
        for (int d = 0; d < D; ++d) s[d] += in.at(b, t, d);
      }
  for (int d = 0; d < D; ++d) s[d] /= float(n);
  for (int b = 0; b < in.B; ++b)
    for (int t = 0; t < in.T; ++t)
      if (tokens == TokenSet::all_positions || in.valid(b, t))
        for (int d = 0; d < D; ++d) q[d] += (in.at(b, t, d) - s[d]) * (in.at(b, t, d) - s[d]);
  for (int d = 0; d < D; ++d) {
    mean[d] = s[d];
    var[d] = q[d] / float(n);
  }
}

void bn_buggy(const Batch& in, const Params& p, Mode mode, State* s, Output& out, TokenSet tokens,
              BnBug bug) {
  const TokenSet stats_tokens = bug == BnBug::masked_counts_padding ? TokenSet::all_positions : tokens;
  const long long n = check_batch_norm_inputs(in, p, bug == BnBug::eval_uses_batch ? Mode::train : mode,
                                              s, stats_tokens, "mutant");
  const int D = in.D;
  std::vector<double> mean(D), var(D);
  const bool batch_stats = mode == Mode::train || bug == BnBug::eval_uses_batch;
  if (batch_stats && bug == BnBug::block_merge_weight)
    blocked_stats_wrong_weight(in, stats_tokens, mean, var);
  else if (batch_stats && bug == BnBug::float_statistics)
    float_stats(in, stats_tokens, mean, var);
  else if (batch_stats)
    batch_feature_stats(in, stats_tokens, n, mean, var);
  else {
    mean = s->running_mean;
    var = s->running_var;
  }
  std::vector<double> norm_var = var;
  if (bug == BnBug::swapped_variances && mode == Mode::train)
    for (auto& v : norm_var) v *= double(n) / double(n - 1);  // normalizes with the unbiased one
  out.assign(in.x.size(), 0.0);
  for (std::size_t i = 0; i < in.x.size(); ++i) {
    const int d = int(i % D), b = int(i / D / in.T), t = int(i / D % in.T);
    if (tokens == TokenSet::valid_tokens && !in.valid(b, t)) continue;
    out[i] = float(g_at(p, d) * (in.x[i] - mean[d]) / std::sqrt(norm_var[d] + p.eps) + b_at(p, d));
  }
  if (mode != Mode::train) return;
  for (int d = 0; d < D; ++d) {
    const double m = bug == BnBug::momentum_reversed ? 1 - p.momentum : p.momentum;
    const double upd = bug == BnBug::swapped_variances ? var[d] : var[d] * n / double(n - 1);
    s->running_mean[d] = (1 - m) * s->running_mean[d] + m * mean[d];
    s->running_var[d] = (1 - m) * s->running_var[d] + m * upd;
  }
}

// InstanceNorm whose statistics run over all T positions, padding included
void in_over_padding(const Batch& in, const Params& p, Mode, State*, Output& out) {
  validate_batch(in);
  Batch full = in;
  for (auto& l : full.lengths) l = in.T;
  Output all;
  layer("instance_norm").reference(full, p, Mode::none, nullptr, all);
  out.assign(in.x.size(), 0.0);
  for (int b = 0; b < in.B; ++b)
    for (int t = 0; t < in.lengths[b]; ++t)
      for (int d = 0; d < in.D; ++d) out[in.index(b, t, d)] = all[in.index(b, t, d)];
}

// SDPA with the causal mask aligned top-left: query i of a block of Tq queries against Tk
// cached keys sees keys [0, i] instead of [0, Tk − Tq + i] — a single decode query sees only
// key 0. Identical to the real kernel when Tq = Tk (a full forward), wrong in decode.
void sdpa_top_left(Output& out, std::vector<double>* weights, const std::vector<float>& q,
                   const std::vector<float>& k, const std::vector<float>& v, const SdpaShape& s,
                   const SdpaMask& m, double scale) {
  const AttentionEntry real = sdpa_entry();
  if (!m.causal || s.Tq == s.Tk) return real.sdpa_optimized(out, weights, q, k, v, s, m, scale);
  out.assign(s.out_size(), 0.0);
  if (weights) weights->assign(s.weights_size(), 0.0);
  for (int b = 0; b < s.B; ++b)
    for (int h = 0; h < s.H; ++h)
      for (int i = 0; i < s.Tq; ++i) {
        int end = std::min(i + 1, s.Tk);
        if (!m.key_lengths.empty()) end = std::min(end, m.key_lengths[b]);
        if (end <= 0) continue;  // fully masked: zeros
        const std::size_t bh = std::size_t(b) * s.H + h;
        SdpaShape one{1, 1, 1, end, s.dh, s.dv, 0};
        const std::vector<float> qq(q.begin() + (bh * s.Tq + i) * s.dh, q.begin() + (bh * s.Tq + i + 1) * s.dh);
        const std::vector<float> kk(k.begin() + bh * s.kv_rows() * s.dh, k.begin() + (bh * s.kv_rows() + end) * s.dh);
        const std::vector<float> vv(v.begin() + bh * s.kv_rows() * s.dv, v.begin() + (bh * s.kv_rows() + end) * s.dv);
        Output o;
        std::vector<double> w;
        real.sdpa_optimized(o, weights ? &w : nullptr, qq, kk, vv, one, SdpaMask{}, scale);
        std::copy(o.begin(), o.end(), out.begin() + (bh * s.Tq + i) * s.dv);
        if (weights) std::copy(w.begin(), w.end(), weights->begin() + (bh * s.Tq + i) * s.Tk);
      }
}

// sync_batch_norm whose all-gathered shard statistics are merged with equal weights: the mean
// of the shards' means and the mean of their (variance + squared distance to that mean), as if
// every shard held as many positions. Right for an even cut; for an uneven one the small
// shards count too much (a merge that ignores the all-gathered counts).
void sync_unweighted_merge(const Batch& in, const ShardCut& cut, const Params& p, Mode mode,
                           State* s, Output& out) {
  const long long n = check_batch_norm_inputs(in, p, mode, s, TokenSet::all_positions, "sync_batch_norm");
  validate_shard_cut(in, cut);
  const int D = in.D, k = int(cut.size());
  std::vector<double> mean(D, 0.0), var(D, 0.0);
  if (mode == Mode::train) {
    std::vector<double> means(std::size_t(k) * D), vars(std::size_t(k) * D);  // [k, D]
    int first = 0;
    for (int i = 0; i < k; ++i) {
      batch_norm_statistics_kernel(&means[std::size_t(i) * D], &vars[std::size_t(i) * D],
                                   in.x.data() + std::size_t(first) * in.T * D, cut[i], in.T, D,
                                   nullptr);
      first += cut[i];
    }
    for (int i = 0; i < k; ++i)
      for (int d = 0; d < D; ++d) mean[d] += means[std::size_t(i) * D + d] / k;
    for (int i = 0; i < k; ++i)
      for (int d = 0; d < D; ++d) {
        const double delta = means[std::size_t(i) * D + d] - mean[d];
        var[d] += (vars[std::size_t(i) * D + d] + delta * delta) / k;
      }
  } else {
    mean = s->running_mean;
    var = s->running_var;
  }
  std::vector<float> mu(D), a(D), be(D), y(in.x.size());
  for (int d = 0; d < D; ++d) {
    mu[d] = float(mean[d]);
    a[d] = float(double(g_at(p, d)) / std::sqrt(var[d] + p.eps));
    be[d] = b_at(p, d);
  }
  batch_norm_apply_kernel(y.data(), in.x.data(), in.B, in.T, D, nullptr, mu.data(), a.data(), be.data());
  out.assign(y.begin(), y.end());
  if (mode == Mode::train)
    for (int d = 0; d < D; ++d) {
      s->running_mean[d] = (1 - p.momentum) * s->running_mean[d] + p.momentum * mean[d];
      s->running_var[d] = (1 - p.momentum) * s->running_var[d] + p.momentum * var[d] * double(n) / double(n - 1);
    }
}

// ---------------------------------------------------------------------------------------------

struct Spec {
  std::string id, imitates, bug;
  ForwardFn reference;  // empty: the real reference
  ForwardFn optimized;  // empty: the real optimized kernel
  ShardedForwardFn sharded = {};  // the optimized forward on shards; empty: the default
};

ForwardFn rows(RowFn fn, std::size_t skip_last = 0) {
  return [fn, skip_last](const Batch& in, const Params& p, Mode, State*, Output& out) {
    validate_eps(p.eps);
    float_rows(in, p, out, fn, skip_last);
  };
}

ForwardFn bn(TokenSet tokens, BnBug bug) {
  return [tokens, bug](const Batch& in, const Params& p, Mode m, State* s, Output& out) {
    bn_buggy(in, p, m, s, out, tokens, bug);
  };
}

std::vector<Spec> specs() {
  const auto all = TokenSet::all_positions, valid = TokenSet::valid_tokens;
  return {
      {"ln_one_pass_variance", "layer_norm", "one-pass E[x²]−E[x]² variance in float32", {}, rows(ln_one_pass)},
      {"ln_eps_outside_sqrt", "layer_norm", "ε added outside the square root: (x−μ)/(σ+ε)", {}, rows(ln_eps_outside)},
      {"ln_thread_dependent_reduction", "layer_norm", "the row reduction split into one partial sum per OpenMP thread", {}, rows(ln_thread_split)},
      {"ln_skips_last_token", "layer_norm", "the row loop stops one token early", {}, rows(ln_correct, 1)},
      {"ln_gamma_beta_wrong_axis", "layer_norm", "γ and β indexed by the token instead of the feature", {}, rows(ln_wrong_axis)},
      {"rms_recentres", "rms_norm", "RMSNorm that subtracts the mean (LayerNorm under RMSNorm's name), both implementations", rows(rms_centered), rows(rms_centered)},
      {"rms_batch_size_code_path", "rms_norm", "another rsqrt formula once the batch exceeds 64 rows", {}, rows(rms_batch_path)},
      {"bn_biased_unbiased_swapped", "batch_norm", "normalizes with the unbiased variance and updates running_var with the biased one, both implementations", bn(all, BnBug::swapped_variances), bn(all, BnBug::swapped_variances)},
      {"bn_momentum_reversed", "batch_norm", "running = momentum·old + (1−momentum)·batch in the optimized kernel", {}, bn(all, BnBug::momentum_reversed)},
      {"bn_eval_uses_batch_statistics", "batch_norm", "eval mode still normalizes with the batch's statistics, both implementations", bn(all, BnBug::eval_uses_batch), bn(all, BnBug::eval_uses_batch)},
      {"masked_bn_counts_padding", "masked_batch_norm", "the masked layer's statistics include the padding, both implementations", bn(valid, BnBug::masked_counts_padding), bn(valid, BnBug::masked_counts_padding)},
      {"instance_norm_counts_padding", "instance_norm", "instance statistics over all T positions, padding included, both implementations", in_over_padding, in_over_padding},
      {"group_norm_strided_groups", "group_norm", "groups interleaved (feature d in group d mod G) instead of contiguous", {}, gn_strided},
      // bug classes from public trackers, each in the optimized kernel where the generators must reach it
      {"ln_variance_overflow", "layer_norm", "float32 variance without an overflow guard: tokens near ±1e30 come out as β (PyTorch #162489)", {}, rows(ln_unguarded)},
      {"ln_wide_rows_drop_eps", "layer_norm", "the kernel for rows wider than the row-group limit drops ε: 1/√σ² (ε-handling bugs of specialized kernels)", {}, rows(ln_wide_no_eps)},
      {"ln_batch_multiple_of_16_path", "layer_norm", "a kernel chosen by batch size (rows a multiple of 16) reduces in another order: bits depend on the batch (batch-invariance bugs of inference servers)", {}, rows(ln_multiple_of_16)},
      {"ln_reduction_order_by_position", "layer_norm", "the reduction order depends on the row's place in its row group (grouped vs leftover rows)", {}, rows(ln_position_order)},
      {"ln_simd_tail_overread", "layer_norm", "the vector loop's last 8 lanes read past the row (next row or padding) into the sums: an unmasked SIMD tail", {}, ln_tail_overread},
      {"ln_rejects_valid_input", "layer_norm", "the optimized kernel throws InvalidInput on a valid one-token batch (a fused kernel asserting a minimum size)", {}, ln_rejects_one_token},
      {"rms_square_overflow", "rms_norm", "x² summed in float32 without rescaling: beyond |x| ≈ 1.8e19 every output is 0 (tt-metal #55159)", {}, rows(rms_square_overflow)},
      {"group_norm_one_pass_variance", "group_norm", "one-pass E[x²]−E[x]² per group in float32: NaN at a large offset (TVM #19592, ONNX Runtime #28463)", {}, gn_one_pass},
      {"bn_block_merge_wrong_weight", "batch_norm", "per-block statistics merged with the wrong weight (na/n for nb/n): wrong once the last block is partial (parallel Welford merge bugs)", {}, bn(all, BnBug::block_merge_weight)},
      {"bn_float32_statistics", "batch_norm", "batch statistics accumulated in float32: the variance of ±1e30 values overflows (oneDNN-style accumulation, PyTorch #162489)", {}, bn(all, BnBug::float_statistics)},
      {"sync_bn_unweighted_shard_merge", "sync_batch_norm", "the shards' all-gathered statistics merged with equal weights (mean of the shard means), ignoring their counts: wrong for an uneven cut", {}, {}, sync_unweighted_merge},
  };
}

}  // namespace

const std::vector<Mutant>& mutants() {
  static std::deque<LayerEntry> layers;          // stable addresses: rows point into them
  static std::deque<AttentionEntry> attention;
  static const std::vector<Mutant> all = [] {
    std::vector<Mutant> out;
    for (auto& s : specs()) {
      // the real layer's profile, parameters and conditioning
      const LayerEntry& real = layer(s.imitates);
      LayerEntry e = implementation_of(real, "mutant_" + s.id, real.formula,
                                       s.optimized ? s.optimized : real.optimized, "mutant");
      if (s.reference) e.reference = s.reference;
      // the real sharded forward goes with the real optimized one (implementation_of drops it)
      if (s.sharded)
        e.sharded_optimized = s.sharded;
      else if (!s.optimized)
        e.sharded_optimized = real.sharded_optimized;
      layers.push_back(std::move(e));
      out.push_back({s.id, s.imitates, s.bug, norm_rows(layers.back())});
    }
    // an attention variant: an entry with two implementations, like any attention row
    AttentionEntry sdpa = sdpa_entry();
    sdpa.name = "mutant_sdpa_top_left_causal";
    sdpa.origin = "mutant";
    sdpa.computes = "sdpa";
    sdpa.sdpa_optimized = sdpa_top_left;
    validate_attention_entry(sdpa);
    attention.push_back(std::move(sdpa));
    out.push_back({"sdpa_top_left_causal", "sdpa",
                   "causal mask aligned top-left: a decode query against a cache of L keys sees only key 0",
                   {attention_row(attention.back())}});
    return out;
  }();
  return all;
}

MutantResult run_mutant(const Mutant& m, const RunOptions& options) {
  MutantResult r{m.id, m.imitates, m.bug};
  for (const auto& cell : cells_of(m.rows)) {
    const CellResult c = run_cell(cell, options);
    if (!c.as_expected()) {
      r.killed = true;
      r.killed_by = c.cell.prop.id + " (" + to_string(c.cell.impl) + ", " + c.cell.row.name +
                    ": expected " + to_string(c.cell.expected) + ", observed " + c.observed + ")";
      r.evidence = c.message;
      return r;
    }
  }
  // then the golden vectors of the imitated op, through the mutant's rows
  const auto file = load_golden(default_golden_path());
  for (const auto& row : m.rows)
    for (const auto& c : file["cases"]) {
      const bool norm = row.info.family == Family::norm;
      if (c.value("op", "") != (norm ? golden_op(row.norm) : row.attention->golden_op())) continue;
      for (Impl impl : {Impl::reference, Impl::optimized}) {
        const auto g = norm ? check_norm_golden_case(c, impl, row.norm)
                            : check_sdpa_golden_case(c, impl, *row.attention);
        if (!g.passed) {
          r.killed = true;
          r.killed_by = "golden " + g.id + " (" + to_string(impl) + ")";
          r.evidence = g.error;
          return r;
        }
      }
    }
  return r;
}

}  // namespace normcheck
