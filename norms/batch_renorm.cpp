// batch_renorm (Batch Renormalization, Ioffe 2017): in train mode
//   y = γ·((x − μ_B)/σ_B · r + d) + β,  r = clip(σ_B/σ_R, 1/r_max, r_max),
//   d = clip((μ_B − μ_R)/σ_R, −d_max, d_max),
// with μ_B, σ_B over the valid tokens of the batch and μ_R, σ_R the running statistics (r and d
// are constants for the gradient). Eval mode is BatchNorm's eval. Running statistics update as
// BatchNorm's.
//
// Expected profile, derived: while r and d are inside their clips the train-mode forward is
// exactly (x − μ_R)/σ_R — the batch statistics cancel — so it behaves like eval mode; as soon as
// a clip binds (always, with r_max = 1 and d_max = 0, which is plain BatchNorm) the output
// depends on the batch. So the train row violates everything BatchNorm's masked train row does
// (batch, token, causality, train≡inference, streaming, token scale/shift, NaN containment) and,
// like an eval row, the global and per-feature scale and shift invariances (x → αx moves the
// output relative to the fixed running statistics). Padding invariance and batch permutation
// equivariance hold: the statistics count valid tokens only and are order-free.
#include <algorithm>
#include <cmath>

#include "norms/batch_norm.hpp"
#include "norms/kernels.hpp"

namespace normcheck {
namespace {

constexpr const char* kName = "batch_renorm";

void clip_factors(const std::vector<double>& mean, const std::vector<double>& var, const State& s,
                  const Params& p, std::vector<double>& r, std::vector<double>& d) {
  const double rmax = p.get("rmax"), dmax = p.get("dmax");
  for (std::size_t i = 0; i < mean.size(); ++i) {
    const double sigma_b = std::sqrt(var[i] + p.eps), sigma_r = std::sqrt(s.running_var[i] + p.eps);
    r[i] = std::clamp(sigma_b / sigma_r, 1.0 / rmax, rmax);
    d[i] = std::clamp((mean[i] - s.running_mean[i]) / sigma_r, -dmax, dmax);
  }
}

void update_running(State& s, const std::vector<double>& mean, const std::vector<double>& var,
                    long long n, double momentum) {
  for (std::size_t i = 0; i < mean.size(); ++i) {
    s.running_mean[i] = (1 - momentum) * s.running_mean[i] + momentum * mean[i];
    s.running_var[i] = (1 - momentum) * s.running_var[i] + momentum * var[i] * n / double(n - 1);
  }
}

void check_clips(const Params& p) {
  if (!(p.get("rmax") >= 1.0) || !(p.get("dmax") >= 0.0))
    throw InvalidInput("batch_renorm: rmax must be ≥ 1 and dmax ≥ 0, got rmax = " +
                       format_value(p.get("rmax")) + ", dmax = " + format_value(p.get("dmax")));
}

// ---------------------------------------------------------------------------------------------
// reference: double

void batch_renorm_reference(const Batch& in, const Params& p, Mode mode, State* s, Output& out) {
  check_clips(p);
  if (mode != Mode::train) return batch_norm_reference(in, p, mode, s, out, TokenSet::valid_tokens);
  const long long n = check_batch_norm_inputs(in, p, mode, s, TokenSet::valid_tokens, kName);
  const int D = in.D;
  std::vector<double> mean(D, 0.0), var(D, 0.0), r(D), d(D);
  for (int b = 0; b < in.B; ++b)
    for (int t = 0; t < in.lengths[b]; ++t)
      for (int f = 0; f < D; ++f) mean[f] += in.at(b, t, f);
  for (int f = 0; f < D; ++f) mean[f] /= double(n);
  for (int b = 0; b < in.B; ++b)
    for (int t = 0; t < in.lengths[b]; ++t)
      for (int f = 0; f < D; ++f) var[f] += (in.at(b, t, f) - mean[f]) * (in.at(b, t, f) - mean[f]);
  for (int f = 0; f < D; ++f) var[f] /= double(n);
  clip_factors(mean, var, *s, p, r, d);
  out.assign(in.x.size(), 0.0);
  for (int b = 0; b < in.B; ++b)
    for (int t = 0; t < in.lengths[b]; ++t)
      for (int f = 0; f < D; ++f) {
        const double g = p.gamma.empty() ? 1.0 : p.gamma[f];
        const double be = p.beta.empty() ? 0.0 : p.beta[f];
        const double xhat = (in.at(b, t, f) - mean[f]) / std::sqrt(var[f] + p.eps);
        out[in.index(b, t, f)] = g * (xhat * r[f] + d[f]) + be;
      }
  update_running(*s, mean, var, n, p.momentum);
}

// ---------------------------------------------------------------------------------------------
// optimized: the BatchNorm family's fixed-order statistics, then one float32 affine map per
// feature, y = (x − μ_B)·a + c with a = γ·r/σ_B and c = γ·d + β, OpenMP over rows

void batch_renorm_optimized(const Batch& in, const Params& p, Mode mode, State* s, Output& out) {
  check_clips(p);
  if (mode != Mode::train) return batch_norm_optimized(in, p, mode, s, out, TokenSet::valid_tokens);
  const long long n = check_batch_norm_inputs(in, p, mode, s, TokenSet::valid_tokens, kName);
  const int D = in.D;
  std::vector<double> mean(D), var(D), r(D), d(D);
  batch_feature_stats(in, TokenSet::valid_tokens, n, mean, var);
  clip_factors(mean, var, *s, p, r, d);
  std::vector<float> mu(D), a(D), c(D);
  for (int f = 0; f < D; ++f) {
    const double g = p.gamma.empty() ? 1.0 : p.gamma[f];
    mu[f] = float(mean[f]);
    a[f] = float(g * r[f] / std::sqrt(var[f] + p.eps));
    c[f] = float(g * d[f] + (p.beta.empty() ? 0.0 : p.beta[f]));
  }
  std::vector<float> y(in.x.size(), 0.0f);
  kernels::for_each_row(in.rows(), std::size_t(D), [&](std::size_t row) {
    if (!in.valid(int(row / in.T), int(row % in.T))) return;
    const float* xr = &in.x[row * D];  // [D]
    float* yr = &y[row * D];           // [D]
    for (int f = 0; f < D; ++f) yr[f] = (xr[f] - mu[f]) * a[f] + c[f];
  });
  out.assign(y.begin(), y.end());
  update_running(*s, mean, var, n, p.momentum);
}

}  // namespace

LayerEntry batch_renorm_entry() {
  return {
      .name = "batch_renorm",
      .formula = "train: γ·((x−μ_B)/σ_B·r + d) + β, r = clip(σ_B/σ_R, 1/r_max, r_max), d = clip((μ_B−μ_R)/σ_R, ±d_max); eval: running stats",
      .statistics_over = "valid tokens of the batch, per feature, corrected towards the running statistics",
      .params = {.momentum = true,
                 .named = {grid_param("rmax", 1.0, 3.0, "clip of r = σ_B/σ_R (1: plain BatchNorm)"),
                           grid_param("dmax", 0.0, 5.0, "clip of d = (μ_B−μ_R)/σ_R (0: plain BatchNorm)")}},
      // every scale and shift invariance, and all that batch statistics break but padding
      .rows = {{Mode::train,
                [] {
                  std::set<std::string> v = scale_and_shift_invariances();
                  v.insert({"batch_independence", "token_independence", "causality",
                            "train_inference_equivalence", "streaming_equivalence", "nan_containment",
                            "shard_invariance"});
                  return v;
                }(),
                "batch statistics cancel only while r and d are unclipped; the fixed running "
                "statistics make every scale and shift visible"},
               frozen_affine_eval_row()},
      .reference = batch_renorm_reference, .optimized = batch_renorm_optimized,
      .conditioning = batch_norm_conditioning(TokenSet::valid_tokens)};
}

}  // namespace normcheck
