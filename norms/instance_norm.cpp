// instance_norm: per sequence and feature, statistics over that sequence's valid tokens:
// y = γ·(x − μ_{b,d})/√(σ_{b,d}² + ε) + β. Stateless (PyTorch's InstanceNorm1d without running
// statistics). Padding outputs are 0.
#include <Eigen/Core>
#include <cmath>

#include "norms/kernels.hpp"
#include "norms/registry.hpp"

namespace normcheck {
namespace {


using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// ---------------------------------------------------------------------------------------------
// reference: double, each sequence's valid tokens as an L×D matrix, column statistics

void instance_norm_reference(const Batch& in, const Params& p, Mode, State*, Output& out) {
  validate_affine_norm(in, p);
  const int D = in.D;
  out.assign(in.x.size(), 0.0);
  for (int b = 0; b < in.B; ++b) {
    const int L = in.lengths[b];
    if (L == 0) continue;
    const Eigen::MatrixXd x =
        Eigen::Map<const RowMajor>(&in.x[in.index(b, 0, 0)], L, D).cast<double>();  // [L, D]
    const Eigen::RowVectorXd mean = x.colwise().mean();
    const Eigen::MatrixXd centered = x.rowwise() - mean;
    const Eigen::RowVectorXd var = centered.array().square().colwise().mean();
    for (int t = 0; t < L; ++t)
      for (int d = 0; d < D; ++d) {
        const double g = p.gamma.empty() ? 1.0 : p.gamma[d];
        const double be = p.beta.empty() ? 0.0 : p.beta[d];
        out[in.index(b, t, d)] = g * centered(t, d) / std::sqrt(var(d) + p.eps) + be;
      }
  }
}

// ---------------------------------------------------------------------------------------------
// optimized: float32, one OpenMP task per sequence; per-feature sums over its tokens in a
// fixed order (shifted by the first token), vectorized across features

void instance_norm_kernel(float* out, const float* x, const int* lengths, const float* gamma,
                          const float* beta, int B, int T, int D, float eps) {
#pragma omp parallel for schedule(static) if (std::size_t(B) * T * D >= kernels::kParallelMinValues)
  for (int b = 0; b < B; ++b) {
    const float* xb = x + std::size_t(b) * T * D;  // [T, D]
    float* yb = out + std::size_t(b) * T * D;      // [T, D]
    const int L = lengths[b];
    // per-feature sums in double (fixed order over the sequence's tokens): the squared
    // deviations of ±1e30 values overflow float
    std::vector<double> acc(D, 0.0), sq(D, 0.0);
    for (int t = 0; t < L; ++t)
      for (int d = 0; d < D; ++d) acc[d] += xb[t * D + d];
    std::vector<float> mean(D), var(D);
    for (int d = 0; d < D; ++d) mean[d] = L ? float(acc[d] / L) : 0.0f;
    for (int t = 0; t < L; ++t)
      for (int d = 0; d < D; ++d) {
        const double dev = double(xb[t * D + d]) - acc[d] / L;
        sq[d] += dev * dev;
      }
    // var holds the scale a = γ/√(σ²+ε), computed in double
    for (int d = 0; d < D; ++d)
      var[d] = float((gamma ? gamma[d] : 1.0f) / std::sqrt((L ? sq[d] / L : 0.0) + double(eps)));
    for (int t = 0; t < T; ++t)
      for (int d = 0; d < D; ++d)
        yb[t * D + d] = t < L ? (xb[t * D + d] - mean[d]) * var[d] + (beta ? beta[d] : 0.0f) : 0.0f;
  }
}

void instance_norm_optimized(const Batch& in, const Params& p, Mode, State*, Output& out) {
  validate_affine_norm(in, p);
  run_affine_kernel(in, p, out, [&](float* y, const float* x, const float* g, const float* b) {
    instance_norm_kernel(y, x, in.lengths.data(), g, b, in.B, in.T, in.D, float(p.eps));
  });
}

Conditioning instance_norm_conditioning(const Batch& in, const Params& p, Mode, const State*) {
  validate_batch(in);
  Conditioning c;
  c.cond.assign(in.x.size(), 0.0);
  c.eps_rel.assign(in.x.size(), 0.0);
  for (int b = 0; b < in.B; ++b) {
    const int L = in.lengths[b];
    for (int d = 0; d < in.D; ++d) {
      double mean = 0, var = 0;
      for (int t = 0; t < L; ++t) mean += in.at(b, t, d);
      mean /= std::max(L, 1);
      for (int t = 0; t < L; ++t) var += (in.at(b, t, d) - mean) * (in.at(b, t, d) - mean);
      var /= std::max(L, 1);
      for (int t = 0; t < L; ++t) {
        c.cond[in.index(b, t, d)] = std::abs(mean) / std::sqrt(var + p.eps);
        c.eps_rel[in.index(b, t, d)] = var > 0 ? std::min(1.0, p.eps / (2 * var)) : 1.0;
      }
    }
  }
  return c;
}

}  // namespace

LayerEntry instance_norm_entry() {
  return {.name = "instance_norm",
          .formula = "γ·(x−μ_t)/√(σ_t²+ε) + β, μ_t, σ_t² over one sequence's valid tokens per feature",
          .statistics_over = "one sequence's valid tokens, per feature",
          .rows = {{Mode::none,
                    {"token_independence", "causality", "streaming_equivalence",
                     "token_scale_invariance", "token_shift_invariance"},
                    "statistics over the sequence's own tokens: every token sees the whole "
                    "sequence, future included"}},
          .reference = instance_norm_reference, .optimized = instance_norm_optimized,
          .conditioning = instance_norm_conditioning};
}

}  // namespace normcheck
