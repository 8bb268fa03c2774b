#include "mutants/mutants.hpp"

#include <omp.h>

#include <cmath>
#include <deque>
#include <utility>

#include "norms/batch_norm.hpp"
#include "norms/kernels.hpp"
#include "norms/kernels_api.hpp"
#include "properties/catalog.hpp"
#include "properties/golden_grad.hpp"

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

// y = (x − μ)/√(σ² + ε·eps_scale)·γ + β (eps_scale: s² for a row rescaled by s)
void ln_row(const float* x, float* y, const Params& p, int D, float mean, float var,
            float eps_scale = 1.0f) {
  const float rstd = 1.0f / std::sqrt(var + float(p.eps) * eps_scale);
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

// The shifted-data one pass with the row's first value as the shift: Σ(x − x₀) and Σ(x − x₀)²
// in float32, σ² = q − m1². Exact enough while x₀ lies near the row's mean; when x₀ is an outlier
// of its row (an outlier feature in channel 0), q − m1² cancels about log2(q/σ²) bits. It keeps
// the real kernels' overflow path (x·2^-k when σ² is not finite), so that only the cancellation
// can give it away, not the range.
void shift_first_moments(const float* x, int D, float& mean, float& var) {
  const float shift = x[0];
  float s1 = 0, s2 = 0;
  for (int d = 0; d < D; ++d) {
    const float v = x[d] - shift;
    s1 += v;
    s2 += v * v;
  }
  const float m1 = s1 / D;
  mean = shift + m1;
  var = s2 / D - m1 * m1;
}

void ln_shift_first(const float* x, float* y, const Params& p, int D, std::size_t, std::size_t) {
  float mean, var;
  shift_first_moments(x, D, mean, var);
  if (std::isfinite(var) || !kernels::all_finite(x, D)) return ln_row(x, y, p, D, mean, var);
  const float s = kernels::overflow_scale(x, D);
  std::vector<float> xs(x, x + D);
  for (auto& v : xs) v *= s;
  shift_first_moments(xs.data(), D, mean, var);
  ln_row(xs.data(), y, p, D, mean, var, s * s);
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

// float32 two-pass statistics, as the real kernel has them but without its overflow guard: for
// |x| ≈ 1e30, (x − μ)² overflows, σ² becomes inf and the token comes out as β (PyTorch #162489);
// a correct row for every input below that
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

// GroupNorm with the group's features at index(g, i, gs, G) and its float32 μ, 1/√(σ²+ε) from
// stats(values, gs, eps): the two GroupNorm mutants below differ only there. The caller validates.
template <class Index, class Stats>
void group_norm_variant(const Batch& in, const Params& p, Output& out, Index index, Stats stats) {
  const int D = in.D, G = int(p.get("groups"));
  if (G <= 0 || D % G) throw InvalidInput("group_norm: groups must divide D");
  const int gs = D / G;
  std::vector<float> y(in.x.size());
  kernels::for_each_row(in.rows(), std::size_t(D), [&](std::size_t r) {
    const float* x = &in.x[r * D];
    std::vector<float> v(gs);
    for (int g = 0; g < G; ++g) {
      for (int i = 0; i < gs; ++i) v[i] = x[index(g, i, gs, G)];
      const auto [mean, rstd] = stats(v.data(), gs, float(p.eps));
      for (int i = 0; i < gs; ++i) {
        const int d = index(g, i, gs, G);
        y[r * D + d] = (x[d] - mean) * rstd * g_at(p, d) + b_at(p, d);
      }
    }
  });
  out.assign(y.begin(), y.end());
}

// GroupNorm with a one-pass E[x²] − E[x]² variance per group in float32: at a large offset the
// two terms cancel, σ² is 0 or negative and the output NaN (TVM #19592 / ONNX Runtime #28463:
// LayerNormalization of [40000, 40001, 40002, 40003] returned NaN)
void gn_one_pass(const Batch& in, const Params& p, Mode, State*, Output& out) {
  validate_affine_norm(in, p);
  group_norm_variant(
      in, p, out, [](int g, int i, int gs, int) { return g * gs + i; },
      [](const float* v, int n, float eps) {
        float s1 = 0, s2 = 0;
        for (int i = 0; i < n; ++i) {
          s1 += v[i];
          s2 += v[i] * v[i];
        }
        const float mean = s1 / float(n), var = s2 / float(n) - mean * mean;
        return std::pair{mean, 1.0f / std::sqrt(var + eps)};
      });
}

// GroupNorm with interleaved (strided) groups instead of contiguous ones
void gn_strided(const Batch& in, const Params& p, Mode, State*, Output& out) {
  validate_batch(in);
  group_norm_variant(
      in, p, out, [](int g, int i, int, int G) { return g + i * G; },
      [](const float* v, int n, float eps) {
        float mean = 0, var = 0;
        for (int i = 0; i < n; ++i) mean += v[i];
        mean /= n;
        for (int i = 0; i < n; ++i) var += (v[i] - mean) * (v[i] - mean);
        return std::pair{mean, 1.0f / std::sqrt(var / n + eps)};
      });
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

// ---------------------------------------------------------------------------------------------
// broken backward passes (the forward is the real one): each gives a layer the real forward and
// a gradient with a real bug, in double (the bug is in the maths, not the precision)

Grads empty_grads(const Batch& in, const Params& p) {
  Grads g;
  g.dx.assign(in.x.size(), 0.0);
  g.dgamma.assign(p.gamma.size(), 0.0);
  g.dbeta.assign(p.beta.size(), 0.0);
  return g;
}

// LayerNorm's backward without the gradient through the mean:
// dx = rstd·(dx̂ − x̂·mean(dx̂·x̂)), the mean(dx̂) term dropped. Every position, as the real one.
void ln_backward_no_mean_term(const Batch& in, const Params& p, Mode, const State*,
                              const std::vector<float>& dy, Grads& out) {
  validate_affine_norm(in, p);
  validate_dy(in, dy);
  const int D = in.D;
  Grads g = empty_grads(in, p);
  for (std::size_t r = 0; r < in.rows(); ++r) {
    const float* x = &in.x[r * D];
    double mean = 0, var = 0;
    for (int d = 0; d < D; ++d) mean += x[d];
    mean /= D;
    for (int d = 0; d < D; ++d) var += (x[d] - mean) * (x[d] - mean);
    const double rstd = 1.0 / std::sqrt(var / D + p.eps);
    double m2 = 0;  // mean(dx̂·x̂)
    for (int d = 0; d < D; ++d) m2 += double(g_at(p, d)) * dy[r * D + d] * (x[d] - mean) * rstd;
    m2 /= D;
    for (int d = 0; d < D; ++d) {
      const double xhat = (x[d] - mean) * rstd, dyv = dy[r * D + d];
      g.dx[r * D + d] = rstd * (g_at(p, d) * dyv - xhat * m2);
      if (!g.dgamma.empty()) g.dgamma[d] += dyv * xhat;
      if (!g.dbeta.empty()) g.dbeta[d] += dyv;
    }
  }
  out = std::move(g);
}

// BatchNorm's backward (train) in the textbook form dx = dx̂·rstd + dσ²·2(x − μ)/n + dμ/n, with
// the variance term's 2(x − μ)/(n − 1): the unbiased variance's derivative, though the forward
// normalizes with the biased one. Eval (elementwise) is the real backward.
void bn_backward_unbiased_variance_term(const Batch& in, const Params& p, Mode mode,
                                        const State* s, const std::vector<float>& dy, Grads& out) {
  if (mode != Mode::train)
    return layer("batch_norm").backward(Impl::reference)(in, p, mode, s, dy, out);
  const long long n = check_batch_norm_inputs(in, p, mode, s, TokenSet::all_positions, "mutant");
  validate_dy(in, dy);
  const int D = in.D;
  std::vector<double> mean(D), var(D);
  batch_feature_stats(in, TokenSet::all_positions, n, mean, var);
  std::vector<double> dvar(D, 0.0), dmean(D, 0.0);
  Grads g = empty_grads(in, p);
  for (std::size_t i = 0; i < in.x.size(); ++i) {
    const int d = int(i % D);
    const double rstd = 1.0 / std::sqrt(var[d] + p.eps), dxhat = g_at(p, d) * double(dy[i]);
    dvar[d] += dxhat * (in.x[i] - mean[d]) * -0.5 * rstd * rstd * rstd;
    dmean[d] -= dxhat * rstd;
    if (!g.dgamma.empty()) g.dgamma[d] += dy[i] * (in.x[i] - mean[d]) * rstd;
    if (!g.dbeta.empty()) g.dbeta[d] += dy[i];
  }
  for (std::size_t i = 0; i < in.x.size(); ++i) {
    const int d = int(i % D);
    const double rstd = 1.0 / std::sqrt(var[d] + p.eps);
    g.dx[i] = g_at(p, d) * double(dy[i]) * rstd + dvar[d] * 2 * (in.x[i] - mean[d]) / double(n - 1) +
              dmean[d] / double(n);
  }
  out = std::move(g);
}

// masked_batch_norm's backward with dβ summed over every position, padding included (the
// reduction of dy run over the whole [B, T] grid); dx and dγ are the real ones.
BackwardFn masked_bn_dbeta_over_padding(Impl impl) {
  return [impl](const Batch& in, const Params& p, Mode mode, const State* s,
                const std::vector<float>& dy, Grads& out) {
    layer("masked_batch_norm").backward(impl)(in, p, mode, s, dy, out);
    if (out.dbeta.empty()) return;
    std::fill(out.dbeta.begin(), out.dbeta.end(), 0.0);
    for (std::size_t i = 0; i < dy.size(); ++i) out.dbeta[i % in.D] += dy[i];
  };
}

// RMSNorm's optimized backward with dγ = Σ dy·x̂ summed over rows in one partial sum per OpenMP
// thread (contiguous chunks, added in thread order): exact enough, but its rounding follows the
// thread count. dx, dβ are the real kernel's.
void rms_backward_thread_partials(const Batch& in, const Params& p, Mode mode, const State* s,
                                  const std::vector<float>& dy, Grads& out) {
  layer("rms_norm").backward(Impl::optimized)(in, p, mode, s, dy, out);
  if (out.dgamma.empty()) return;
  const int D = in.D, parts = std::max(1, omp_get_max_threads());
  const std::size_t rows = in.rows();
  std::fill(out.dgamma.begin(), out.dgamma.end(), 0.0);
  for (int k = 0; k < parts; ++k) {
    std::vector<double> part(D, 0.0);
    for (std::size_t r = rows * k / parts; r < rows * (k + 1) / parts; ++r) {
      const float* x = &in.x[r * D];
      double ms = 0;
      for (int d = 0; d < D; ++d) ms += double(x[d]) * x[d];
      const double rstd = 1.0 / std::sqrt(ms / D + p.eps);
      for (int d = 0; d < D; ++d) part[d] += double(dy[r * D + d]) * x[d] * rstd;
    }
    for (int d = 0; d < D; ++d) out.dgamma[d] += part[d];
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

// sync_batch_norm's data-parallel backward whose workers average their per-shard means of dy
// and dy·(x − μ) with equal weights, (1/k)·Σ_i Σ_{shard i}/n_i, where the gradient through the
// statistics needs the all-reduced sums over the total count, Σ_i Σ_{shard i}/n (the bug
// PyTorch's SyncBatchNorm had with uneven batch sizes across ranks before it all-gathered the
// counts for the backward too). Right for one worker or an even cut; dγ, dβ (each worker's own
// sums, added by DDP) stay right. Train only: eval has no gradient through statistics.
void sync_backward_unweighted_mean(const Batch& in, const ShardCut& cut, const Params& p,
                                   Mode mode, const State* s, const std::vector<float>& dy,
                                   Grads& out) {
  const LayerEntry& real = layer("sync_batch_norm");
  real.sharded_backward_optimized(in, cut, p, mode, s, dy, out);  // validates; dγ, dβ, eval
  if (mode != Mode::train) return;
  const int D = in.D, k = int(cut.size());
  std::vector<double> mean(D), var(D);
  const long long n =
      batch_norm_statistics_kernel(mean.data(), var.data(), in.x.data(), in.B, in.T, D, nullptr);
  std::vector<double> sums(2 * std::size_t(D), 0.0), local(2 * std::size_t(D));  // [2, D]
  const std::size_t per = std::size_t(in.T) * D;
  int first = 0;
  for (int size : cut) {
    batch_norm_backward_sums(local.data(), dy.data() + first * per, in.x.data() + first * per,
                             size, in.T, D, nullptr, mean.data());
    const double n_i = double(size) * in.T;
    for (std::size_t j = 0; j < sums.size(); ++j) sums[j] += local[j] / n_i / k * double(n);
    first += size;
  }
  std::vector<float> dx(in.x.size());
  batch_norm_backward_apply(dx.data(), nullptr, nullptr, sums.data(), n, dy.data(), in.x.data(),
                            p.gamma.empty() ? nullptr : p.gamma.data(), in.B, in.T, D, nullptr,
                            mean.data(), var.data(), p.eps, true);
  out.dx.assign(dx.begin(), dx.end());
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
      {"ln_shift_by_first_value", "layer_norm", "one-pass variance of the data shifted by the row's first value (the shifted-data algorithm, K = x₀): cancels when x₀ is an outlier of its row", {}, rows(ln_shift_first)},
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
      {"ln_variance_overflow", "layer_norm", "float32 variance without an overflow guard: tokens near ±1e30 come out as β (PyTorch #162489)", {}, rows(ln_correct)},
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

// A gradient mutant: the real layer's forward with a broken backward (empty: the real one).
struct GradSpec {
  std::string id, imitates, bug;
  BackwardFn reference;
  BackwardFn optimized;
  ShardedBackwardFn sharded = {};  // the optimized backward on shards; empty: the real one
};

std::vector<GradSpec> grad_specs() {
  return {
      {"ln_grad_mean_term_dropped", "layer_norm", "LayerNorm's backward without the gradient through the mean (mean(γ·dy) not subtracted), both implementations", ln_backward_no_mean_term, ln_backward_no_mean_term},
      {"bn_grad_variance_term_n_minus_1", "batch_norm", "BatchNorm's backward (train) with the variance term's 2(x−μ)/(n−1) where the forward's biased variance needs 2(x−μ)/n, both implementations", bn_backward_unbiased_variance_term, bn_backward_unbiased_variance_term},
      {"masked_bn_grad_dbeta_over_padding", "masked_batch_norm", "masked BatchNorm's dβ summed over every position, padding included, both implementations", masked_bn_dbeta_over_padding(Impl::reference), masked_bn_dbeta_over_padding(Impl::optimized)},
      {"rms_grad_thread_partials", "rms_norm", "RMSNorm's dγ summed in one partial per OpenMP thread, added in thread order", {}, rms_backward_thread_partials},
      {"sync_bn_grad_unweighted_shard_mean", "sync_batch_norm", "the data-parallel backward averages the shards' mean dy and mean dy·(x−μ) with equal weights instead of all-reducing the sums over the total count: wrong for an uneven cut", {}, {}, sync_backward_unweighted_mean},
  };
}

}  // namespace

const std::vector<Mutant>& mutants() {
  static std::deque<LayerEntry> layers;          // stable addresses: rows point into them
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
    for (auto& m : attention_mutants()) out.push_back(std::move(m));  // attention_mutants.cpp
    // gradient mutants: the real forward, so only their gradient rows can tell
    for (auto& s : grad_specs()) {
      const LayerEntry& real = layer(s.imitates);
      LayerEntry e = implementation_of(real, "mutant_" + s.id, real.formula, real.optimized, "mutant");
      e.backward_reference = s.reference ? s.reference : real.backward_reference;
      e.backward_optimized = s.optimized ? s.optimized : real.backward_optimized;
      // the real sharded backward goes with the real backward (implementation_of drops it)
      if (!s.reference) e.sharded_backward_reference = real.sharded_backward_reference;
      e.sharded_backward_optimized =
          s.sharded ? s.sharded : s.optimized ? ShardedBackwardFn{} : real.sharded_backward_optimized;
      layers.push_back(std::move(e));
      out.push_back({s.id, s.imitates, s.bug, gradient_rows(layers.back())});
    }
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
  // then the golden vectors of the imitated op, through the mutant's rows (a block row: the
  // block cases of its norm and placement; a gradient row: the golden gradients)
  for (const auto& row : m.rows) {
    const Family family = row.info.family;
    const auto file = family == Family::gradient
                          ? load_grad_golden(default_grad_golden_path())
                          : load_golden(family == Family::block ? default_block_golden_path() : default_golden_path());
    for (const auto& c : file["cases"]) {
      const std::string op = family == Family::norm || family == Family::gradient ? golden_op(row.norm)
                             : family == Family::attention                        ? row.attention->golden_op()
                                                                                  : "block";
      if (c.value("op", "") != op) continue;
      if (family == Family::block &&
          (c.value("norm", "") != row.norm.layer->op() || c.value("placement", "") != row.info.placement))
        continue;
      for (Impl impl : {Impl::reference, Impl::optimized}) {
        const auto g = family == Family::gradient ? check_grad_golden_case(c, impl, row.norm)
                       : family == Family::norm   ? check_norm_golden_case(c, impl, row.norm)
                       : family == Family::block  ? check_block_golden_case(c, impl, *row.block)
                       : row.attention->op == AttentionOp::sdpa ? check_sdpa_golden_case(c, impl, *row.attention)
                                                                : check_mha_golden_case(c, impl, *row.attention);
        if (!g.passed) {
          r.killed = true;
          r.killed_by = "golden " + g.id + " (" + to_string(impl) + ")";
          r.evidence = g.error;
          return r;
        }
      }
    }
  }
  return r;
}

}  // namespace normcheck
