// batch_norm: y = γ·(x − μ_d)/√(σ_d² + ε) + β with μ_d, σ_d² over every B·T position of feature
// d (padding included: the naive use in a padded Transformer batch). State: running mean/var.
#include "norms/batch_norm.hpp"

#include <cmath>
#include <omp.h>
#include <algorithm>
#include <string>

#include "norms/kernels.hpp"
#include "norms/kernels_api.hpp"

namespace normcheck {
namespace {

bool selected(const Batch& in, int b, int t, TokenSet tokens) {
  return tokens == TokenSet::all_positions || in.valid(b, t);
}

long long count_selected(const Batch& in, TokenSet tokens) {
  return tokens == TokenSet::all_positions ? (long long)in.rows() : in.valid_tokens();
}

long long check_inputs(const Batch& in, const Params& p, Mode mode, const State* state,
                       TokenSet tokens) {
  return check_batch_norm_inputs(in, p, mode, state, tokens,
                                 tokens == TokenSet::all_positions ? "batch_norm" : "masked_batch_norm");
}

}  // namespace

// Every check happens before anything is written, so a rejected call leaves the state as it was.
long long check_batch_norm_inputs(const Batch& in, const Params& p, Mode mode, const State* state,
                                  TokenSet tokens, const char* name) {
  validate_batch(in);
  validate_affine(p, in.D);
  validate_eps(p.eps);
  validate_momentum(p.momentum);
  if (mode == Mode::none)
    throw InvalidInput(std::string(name) + " needs a mode: train or eval");
  if (!state) throw InvalidInput(std::string(name) + " needs running statistics (state)");
  validate_state(*state, in.D, name);
  const long long n = count_selected(in, tokens);
  if (mode == Mode::train && n <= 1)
    throw InvalidInput(std::string(name) + ": expected more than 1 value per channel when "
                       "training, got " + std::to_string(n) + " (B = " + std::to_string(in.B) +
                       ", T = " + std::to_string(in.T) + ")");
  return n;
}


namespace {

void update_running(double* running_mean, double* running_var, const double* mean,
                    const double* var, int D, long long n, double momentum) {
  const double unbiased = double(n) / double(n - 1);
  for (int d = 0; d < D; ++d) {
    running_mean[d] = (1 - momentum) * running_mean[d] + momentum * mean[d];
    running_var[d] = (1 - momentum) * running_var[d] + momentum * var[d] * unbiased;
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// reference: double, statistics in two passes over the selected tokens

void batch_norm_reference(const Batch& in, const Params& p, Mode mode, State* state, Output& out,
                          TokenSet tokens) {
  const long long n = check_inputs(in, p, mode, state, tokens);
  const int D = in.D;
  std::vector<double> mean(D, 0.0), var(D, 0.0);
  if (mode == Mode::train) {
    for (int b = 0; b < in.B; ++b)
      for (int t = 0; t < in.T; ++t)
        if (selected(in, b, t, tokens))
          for (int d = 0; d < D; ++d) mean[d] += in.at(b, t, d);
    for (int d = 0; d < D; ++d) mean[d] /= double(n);
    for (int b = 0; b < in.B; ++b)
      for (int t = 0; t < in.T; ++t)
        if (selected(in, b, t, tokens))
          for (int d = 0; d < D; ++d) var[d] += (in.at(b, t, d) - mean[d]) * (in.at(b, t, d) - mean[d]);
    for (int d = 0; d < D; ++d) var[d] /= double(n);
  } else {
    mean = state->running_mean;
    var = state->running_var;
  }
  out.assign(in.x.size(), 0.0);
  for (int b = 0; b < in.B; ++b)
    for (int t = 0; t < in.T; ++t) {
      if (tokens == TokenSet::valid_tokens && !in.valid(b, t)) continue;  // padding stays 0
      for (int d = 0; d < D; ++d) {
        const double g = p.gamma.empty() ? 1.0 : p.gamma[d];
        const double be = p.beta.empty() ? 0.0 : p.beta[d];
        out[in.index(b, t, d)] = g * (in.at(b, t, d) - mean[d]) / std::sqrt(var[d] + p.eps) + be;
      }
    }
  if (mode == Mode::train)
    update_running(state->running_mean.data(), state->running_var.data(), mean.data(), var.data(),
                   D, n, p.momentum);
}

// ---------------------------------------------------------------------------------------------
// optimized: float32 data, per-feature sums accumulated in double over rows in a fixed order
// (OpenMP over feature blocks, so the order never depends on the thread count), then one
// OpenMP pass over independent rows to normalize. The raw kernels are in kernels_api.hpp.

namespace {

constexpr int kFeatureBlock = 64;

// The raw kernels select positions by lengths (nullptr: every position).
const int* selection(const Batch& in, TokenSet tokens) {
  return tokens == TokenSet::valid_tokens ? in.lengths.data() : nullptr;
}

void check_kernel_batch(const char* kernel, const float* x, int B, int T, int D,
                        const int* lengths) {
  if (B <= 0 || T <= 0)
    throw InvalidInput(std::string(kernel) + ": B and T must be positive, got B = " +
                       std::to_string(B) + ", T = " + std::to_string(T));
  validate_rows(kernel, x, x, std::size_t(B) * T, D);
  if (lengths)
    for (int b = 0; b < B; ++b)
      if (lengths[b] < 0 || lengths[b] > T)
        throw InvalidInput(std::string(kernel) + ": lengths[" + std::to_string(b) + "] = " +
                           std::to_string(lengths[b]) + " is outside [0, T = " +
                           std::to_string(T) + "]");
}

}  // namespace

long long batch_norm_statistics_kernel(double* mean, double* var, const float* x, int B, int T,
                                       int D, const int* lengths) {
  check_kernel_batch("batch_norm_statistics_kernel", x, B, T, D, lengths);
  if (!mean || !var) throw InvalidInput("batch_norm_statistics_kernel: mean or var is null");
  const auto selected = [&](int b, int t) { return !lengths || t < lengths[b]; };
  long long n = 0;
  for (int b = 0; b < B; ++b) n += lengths ? lengths[b] : T;
  const int blocks = (D + kFeatureBlock - 1) / kFeatureBlock;
  const std::size_t values = std::size_t(B) * T * D;
#pragma omp parallel for schedule(static) if (values >= kernels::kParallelMinValues)
  for (int blk = 0; blk < blocks; ++blk) {
    const int d0 = blk * kFeatureBlock, d1 = std::min(D, d0 + kFeatureBlock);
    double acc[kFeatureBlock] = {};
    for (int b = 0; b < B; ++b)
      for (int t = 0; t < T; ++t) {
        if (!selected(b, t)) continue;
        const float* xr = x + (std::size_t(b) * T + t) * D;  // [D]
        for (int d = d0; d < d1; ++d) acc[d - d0] += xr[d];
      }
    for (int d = d0; d < d1; ++d) mean[d] = n > 0 ? acc[d - d0] / double(n) : 0.0;
    for (int d = d0; d < d1; ++d) acc[d - d0] = 0;
    for (int b = 0; b < B; ++b)
      for (int t = 0; t < T; ++t) {
        if (!selected(b, t)) continue;
        const float* xr = x + (std::size_t(b) * T + t) * D;
        for (int d = d0; d < d1; ++d) {
          const double dev = double(xr[d]) - mean[d];
          acc[d - d0] += dev * dev;
        }
      }
    for (int d = d0; d < d1; ++d) var[d] = n > 0 ? acc[d - d0] / double(n) : 0.0;
  }
  return n;
}

void batch_norm_apply_kernel(float* out, const float* x, int B, int T, int D, const int* lengths,
                             const float* mu, const float* a, const float* be) {
  check_kernel_batch("batch_norm_apply_kernel", x, B, T, D, lengths);
  if (!out || !mu || !a || !be)
    throw InvalidInput("batch_norm_apply_kernel: out, mu, a or be is null");
  kernels::for_each_row(std::size_t(B) * T, std::size_t(D), [&](std::size_t r) {
    const int b = int(r / T), t = int(r % T);
    if (lengths && t >= lengths[b]) return;
    const float* xr = x + r * D;  // [D]
    float* yr = out + r * D;      // [D]
    for (int d = 0; d < D; ++d) yr[d] = (xr[d] - mu[d]) * a[d] + be[d];
  });
}

void batch_feature_stats(const Batch& in, TokenSet tokens, long long, std::vector<double>& mean,
                         std::vector<double>& var) {
  batch_norm_statistics_kernel(mean.data(), var.data(), in.x.data(), in.B, in.T, in.D,
                               selection(in, tokens));
}

void batch_norm_train_kernel(float* out, double* running_mean, double* running_var,
                             const float* x, const float* gamma, const float* beta,
                             std::size_t rows, int D, double eps, double momentum) {
  // one sequence of `rows` tokens, none of them padding: the registry path's own kernels
  if (rows < 2) throw InvalidInput("batch_norm_train_kernel: expected more than 1 value per channel");
  std::vector<double> mean(D), var(D);
  const long long n = batch_norm_statistics_kernel(mean.data(), var.data(), x, 1, int(rows), D, nullptr);
  std::vector<float> mu(D), a(D), be(D);
  for (int d = 0; d < D; ++d) {
    mu[d] = float(mean[d]);
    a[d] = float((gamma ? gamma[d] : 1.0) / std::sqrt(var[d] + eps));
    be[d] = beta ? beta[d] : 0.0f;
  }
  batch_norm_apply_kernel(out, x, 1, int(rows), D, nullptr, mu.data(), a.data(), be.data());
  update_running(running_mean, running_var, mean.data(), var.data(), D, n, momentum);
}

void batch_norm_optimized(const Batch& in, const Params& p, Mode mode, State* state, Output& out,
                          TokenSet tokens) {
  const long long n = check_inputs(in, p, mode, state, tokens);
  const int D = in.D;
  std::vector<double> mean(D), var(D);
  if (mode == Mode::train)
    batch_norm_statistics_kernel(mean.data(), var.data(), in.x.data(), in.B, in.T, D,
                                 selection(in, tokens));
  else {
    mean = state->running_mean;
    var = state->running_var;
  }
  // y = (x − μ)·a + β with a = γ/√(σ²+ε), per feature, in float
  std::vector<float> mu(D), a(D), be(D);
  for (int d = 0; d < D; ++d) {
    mu[d] = float(mean[d]);
    // the scale in double: σ² of a batch holding 1e30 padding overflows float
    a[d] = float((p.gamma.empty() ? 1.0 : p.gamma[d]) / std::sqrt(var[d] + p.eps));
    be[d] = p.beta.empty() ? 0.0f : p.beta[d];
  }
  std::vector<float> y(in.x.size(), 0.0f);  // masked_batch_norm: padding stays 0
  batch_norm_apply_kernel(y.data(), in.x.data(), in.B, in.T, D, selection(in, tokens), mu.data(),
                          a.data(), be.data());
  out.assign(y.begin(), y.end());
  if (mode == Mode::train)
    update_running(state->running_mean.data(), state->running_var.data(), mean.data(), var.data(),
                   D, n, p.momentum);
}

Conditioning batch_norm_conditioning(const Batch& in, const Params& p, Mode mode,
                                     const State* state, TokenSet tokens) {
  validate_batch(in);
  const int D = in.D;
  std::vector<double> cond(D, 0.0), eps_rel(D, 0.0);
  if (mode == Mode::train) {
    const long long n = count_selected(in, tokens);
    std::vector<double> mean(D, 0.0), var(D, 0.0);
    if (n > 1)
      batch_norm_statistics_kernel(mean.data(), var.data(), in.x.data(), in.B, in.T, D,
                                   selection(in, tokens));
    for (int d = 0; d < D; ++d) {
      cond[d] = std::abs(mean[d]) / std::sqrt(var[d] + p.eps);
      eps_rel[d] = var[d] > 0 ? std::min(1.0, p.eps / (2 * var[d])) : 1.0;
    }
  } else if (state && state->running_mean.size() == std::size_t(D)) {
    for (int d = 0; d < D; ++d)  // running statistics do not move with the input: no ε term
      cond[d] = std::abs(state->running_mean[d]) / std::sqrt(state->running_var[d] + p.eps);
  }
  Conditioning c;
  c.cond.resize(in.x.size());
  c.eps_rel.resize(in.x.size());
  for (std::size_t i = 0; i < in.x.size(); ++i) {
    c.cond[i] = cond[i % D];
    c.eps_rel[i] = eps_rel[i % D];
  }
  return c;
}

LayerEntry batch_norm_entry() {
  LayerEntry e;
  e.name = "batch_norm";
  e.formula = "γ·(x−μ_d)/√(σ_d²+ε) + β; train: batch μ, σ² (biased); eval: running stats";
  e.statistics_over = "all B·T tokens, padding included (the naive use)";
  e.params = {.affine = true, .momentum = true};
  e.rows = {
      {Mode::train,
       {"batch_independence", "padding_invariance", "token_independence", "causality",
        "train_inference_equivalence", "streaming_equivalence", "token_scale_invariance",
        "token_shift_invariance", "nan_containment"},
       "batch statistics: every output depends on every position of the batch, padding included"},
      {Mode::eval,
       {"token_scale_invariance", "global_scale_invariance", "token_shift_invariance",
        "feature_shift_invariance", "feature_scale_invariance"},
       "a fixed per-feature affine map: nothing is re-normalized"},
  };
  e.reference = [](const Batch& in, const Params& p, Mode m, State* s, Output& o) {
    batch_norm_reference(in, p, m, s, o, TokenSet::all_positions);
  };
  e.optimized = [](const Batch& in, const Params& p, Mode m, State* s, Output& o) {
    batch_norm_optimized(in, p, m, s, o, TokenSet::all_positions);
  };
  e.conditioning = [](const Batch& in, const Params& p, Mode m, const State* s) {
    return batch_norm_conditioning(in, p, m, s, TokenSet::all_positions);
  };
  return e;
}

}  // namespace normcheck
