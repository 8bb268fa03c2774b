// The backward passes shared by the token-wise norms (layer_norm, rms_norm, group_norm): the
// float32 kernel kernels::token_groups_backward (kernels.hpp), a double reference, and the
// registry's BackwardFn of both (token_groups_backward, registry.hpp).
#include <cmath>
#include <string>
#include <vector>

#include "norms/kernels.hpp"
#include "norms/registry.hpp"
#include "norms/tensor.hpp"

namespace normcheck::kernels {
namespace {

// Tokens [r0, r1) of one segment, adding their dγ, dβ terms to acc_g, acc_b [D] in row order.
// AVX2 and baseline clones give the same bits (lane-wise operations, no FMA).
__attribute__((target_clones("avx2", "default")))
void token_groups_backward_rows(bool center, float* dx, const float* dy, const float* x,
                                const float* gamma, std::size_t r0, std::size_t r1, int D, int G,
                                float eps, double* acc_g, double* acc_b) {
  const int gs = D / G;
  for (std::size_t r = r0; r < r1; ++r)
    for (int g = 0; g < G; ++g) {
      const std::size_t o = r * D + std::size_t(g) * gs;
      const float* gg = gamma ? gamma + g * gs : nullptr;
      if (center)
        normalize_backward_span<true>(dx + o, dy + o, x + o, gg, gs, eps, acc_g + g * gs,
                                      acc_b + g * gs);
      else
        normalize_backward_span<false>(dx + o, dy + o, x + o, gg, gs, eps, acc_g + g * gs,
                                       acc_b + g * gs);
    }
}

}  // namespace

void token_groups_backward(const char* kernel, bool center, float* dx, float* dgamma,
                           float* dbeta, const float* dy, const float* x, const float* gamma,
                           std::size_t rows, int D, int G, float eps) {
  validate_backward_rows(kernel, dx, dy, x, rows, D);
  if (G <= 0 || D % G != 0)
    throw InvalidInput(std::string(kernel) + ": groups = " + std::to_string(G) +
                       " must be positive and divide D = " + std::to_string(D));
  validate_eps(eps);
  std::vector<double> sums(2 * std::size_t(D));  // [2, D]: Σ dy·x̂, Σ dy
  reduce_row_segments(rows, D, sums.size(), sums.data(),
                      [&](std::size_t r0, std::size_t r1, double* acc) {
                        token_groups_backward_rows(center, dx, dy, x, gamma, r0, r1, D, G, eps,
                                                   acc, acc + D);
                      });
  for (int d = 0; d < D; ++d) {
    if (dgamma) dgamma[d] = float(sums[d]);
    if (dbeta) dbeta[d] = float(sums[D + d]);
  }
}

}  // namespace normcheck::kernels

namespace normcheck {
namespace {

Grads token_groups_backward_reference(const Batch& in, const Params& p,
                                      const std::vector<float>& dy, int G, bool center) {
  const int D = in.D, n = D / G;
  Grads g;
  g.dx.assign(in.x.size(), 0.0);
  g.dgamma.assign(p.gamma.size(), 0.0);
  g.dbeta.assign(p.beta.size(), 0.0);
  for (std::size_t r = 0; r < in.rows(); ++r)
    for (int k = 0; k < G; ++k) {
      const std::size_t o = r * D + std::size_t(k) * n;  // the span [o, o + n)
      const float* x = &in.x[o];
      const float* dys = &dy[o];
      const int d0 = k * n;  // the span's first feature: γ, dγ, dβ index
      double mean = 0, var = 0;
      if (center) {
        for (int i = 0; i < n; ++i) mean += x[i];
        mean /= n;
      }
      for (int i = 0; i < n; ++i) var += (x[i] - mean) * (x[i] - mean);
      var /= n;
      const double rstd = 1.0 / std::sqrt(var + p.eps);
      const auto dxhat = [&](int i) { return (p.gamma.empty() ? 1.0 : p.gamma[d0 + i]) * dys[i]; };
      // the gradient through μ (mean of dx̂) and through σ² (mean of dx̂·x̂)
      double mean_dxhat = 0, mean_dxhat_xhat = 0;
      for (int i = 0; i < n; ++i) {
        if (center) mean_dxhat += dxhat(i);
        mean_dxhat_xhat += dxhat(i) * (x[i] - mean) * rstd;
      }
      mean_dxhat /= n;
      mean_dxhat_xhat /= n;
      for (int i = 0; i < n; ++i) {
        const double xhat = (x[i] - mean) * rstd;
        g.dx[o + i] = rstd * (dxhat(i) - mean_dxhat - xhat * mean_dxhat_xhat);
        if (!g.dgamma.empty()) g.dgamma[d0 + i] += dys[i] * xhat;
        if (!g.dbeta.empty()) g.dbeta[d0 + i] += dys[i];
      }
    }
  return g;
}

}  // namespace

BackwardFn token_groups_backward(Impl impl, const char* kernel, bool center,
                                 void (*validate)(const Batch&, const Params&),
                                 int (*groups)(const Params&)) {
  return [=](const Batch& in, const Params& p, Mode, const State*, const std::vector<float>& dy,
             Grads& out) {
    validate(in, p);
    validate_dy(in, dy);
    const int G = groups ? groups(p) : 1;
    if (impl == Impl::reference) {
      out = token_groups_backward_reference(in, p, dy, G, center);
      return;
    }
    run_affine_backward(p, in.x.size(), out,
                        [&](float* dx, float* dg, float* db, const float* g) {
                          kernels::token_groups_backward(kernel, center, dx, dg, db, dy.data(),
                                                         in.x.data(), g, in.rows(), in.D, G,
                                                         float(p.eps));
                        });
  };
}

}  // namespace normcheck
