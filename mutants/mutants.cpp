#include "mutants/mutants.hpp"

#include <omp.h>

#include <cmath>
#include <deque>

#include "norms/batch_norm.hpp"
#include "norms/kernels.hpp"
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
enum class BnBug { swapped_variances, momentum_reversed, eval_uses_batch, masked_counts_padding };

void bn_buggy(const Batch& in, const Params& p, Mode mode, State* s, Output& out, TokenSet tokens,
              BnBug bug) {
  const TokenSet stats_tokens = bug == BnBug::masked_counts_padding ? TokenSet::all_positions : tokens;
  const long long n = check_batch_norm_inputs(in, p, bug == BnBug::eval_uses_batch ? Mode::train : mode,
                                              s, stats_tokens, "mutant");
  const int D = in.D;
  std::vector<double> mean(D), var(D);
  const bool batch_stats = mode == Mode::train || bug == BnBug::eval_uses_batch;
  if (batch_stats)
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

// ---------------------------------------------------------------------------------------------

struct Spec {
  std::string id, imitates, bug;
  ForwardFn reference;  // empty: the real reference
  ForwardFn optimized;  // empty: the real optimized kernel
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
