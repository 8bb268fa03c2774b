// rms_norm: y = γ·x/√(mean(x²) + ε), statistics over the D features of one token, no re-centring.
// x² overflows float32 beyond |x| ≈ 1.8e19 although |y| ≤ √D·|γ| + |β|: such tokens take the
// mean square of x·2^-k instead (kernels.hpp), so the optimized kernel stays finite and agrees with
// the double reference up to ±FLT_MAX rather than returning β (1/√inf = 0).
//
// Backward (below the forward): with rrms = 1/√(mean(x²)+ε), x̂ = x·rrms, dx̂ = γ·dy:
// dx = rrms·(dx̂ − x̂·mean(dx̂·x̂)), dγ = Σ dy·x̂ (and dβ = Σ dy when a β is given). Every
// position is a token, padding included, as in layer_norm.cpp (PyTorch's autograd: dγ sums over
// all B·T positions).
#include <cmath>

#include "norms/kernels.hpp"
#include "norms/kernels_api.hpp"
#include "norms/registry.hpp"

namespace normcheck {
namespace {


// ---------------------------------------------------------------------------------------------
// reference: double

void rms_norm_reference(const Batch& in, const Params& p, Mode, State*, Output& out) {
  validate_affine_norm(in, p);
  const int D = in.D;
  out.assign(in.x.size(), 0.0);
  for (std::size_t r = 0; r < in.rows(); ++r) {
    const float* x = &in.x[r * D];  // [D]
    double ms = 0;
    for (int d = 0; d < D; ++d) ms += double(x[d]) * x[d];
    ms /= D;
    const double rrms = 1.0 / std::sqrt(ms + p.eps);
    for (int d = 0; d < D; ++d) {
      const double g = p.gamma.empty() ? 1.0 : p.gamma[d];
      const double b = p.beta.empty() ? 0.0 : p.beta[d];
      out[r * D + d] = g * x[d] * rrms + b;
    }
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// optimized: float32, one contiguous range of tokens per thread

namespace {

// One token whose mean square is already known; takes the overflow path when it is not finite
// (and the row is), else y = x·rrms·γ + β.
[[gnu::always_inline]] inline void rms_norm_finish(float* yr, const float* xr, const float* gamma,
                                                   const float* beta, int D, float eps,
                                                   bool stream, float ms) {
  if (!std::isfinite(ms) && kernels::all_finite(xr, D)) {
    // |x| beyond ~1e19: x² overflowed float, but x/rms(x) is bounded by √D. The mean square
    // of x·s instead (the reference's double has the range), written into yr.
    const float s = kernels::overflow_scale(xr, D);
    for (int d = 0; d < D; ++d) yr[d] = xr[d] * s;
    const float ms_s = kernels::sum_sq_dev(yr, D, 0.0f) / float(D);
    const float rrms = 1.0f / std::sqrt(ms_s + eps * s * s);
    for (int d = 0; d < D; ++d) {
      const float g = gamma ? gamma[d] : 1.0f;
      const float b = beta ? beta[d] : 0.0f;
      yr[d] = yr[d] * rrms * g + b;
    }
    return;
  }
  const float rrms = 1.0f / std::sqrt(ms + eps);
  kernels::write_normalized<false>(yr, xr, gamma, beta, D, stream, 0.0f, rrms);
}

// Tokens [r0, r1), dispatched once per range; AVX2 and baseline clones give the same bits (see
// layer_norm_rows). Short rows go in groups of kernels::kRowGroup: all mean squares, then all
// outputs; each row's operations are the same as alone.
__attribute__((target_clones("avx2", "default")))
void rms_norm_rows(float* y, const float* x, const float* gamma, const float* beta,
                   std::size_t r0, std::size_t r1, int D, float eps, bool stream) {
  constexpr int G = kernels::kRowGroup;
  std::size_t r = r0;
  if (D <= kernels::kRowGroupMaxD)
    for (; r + G <= r1; r += G) {
      const float* xr = x + r * D;  // [G, D]
      float ms[G];
      for (int k = 0; k < G; ++k) ms[k] = kernels::sum_sq_dev(xr + k * D, D, 0.0f) / float(D);
      for (int k = 0; k < G; ++k)
        rms_norm_finish(y + (r + k) * D, xr + k * D, gamma, beta, D, eps, stream, ms[k]);
    }
  for (; r < r1; ++r) {
    const float ms = kernels::sum_sq_dev(x + r * D, D, 0.0f) / float(D);
    rms_norm_finish(y + r * D, x + r * D, gamma, beta, D, eps, stream, ms);
  }
}

}  // namespace

void rms_norm_kernel(float* out, const float* x, const float* gamma, const float* beta,
                     std::size_t rows, int D, float eps) {
  validate_rows("rms_norm_kernel", out, x, rows, D);
  validate_eps(eps);
  const bool stream = rows * D * sizeof(float) >= kernels::kStreamMinBytes;
  kernels::for_each_row_range(rows, std::size_t(D), [&](std::size_t r0, std::size_t r1) {
    rms_norm_rows(out, x, gamma, beta, r0, r1, D, eps, stream);
  });
}

namespace {

void rms_norm_optimized(const Batch& in, const Params& p, Mode, State*, Output& out) {
  validate_affine_norm(in, p);
  run_affine_kernel(in, p, out, [&](float* y, const float* x, const float* g, const float* b) {
    rms_norm_kernel(y, x, g, b, in.rows(), in.D, float(p.eps));
  });
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// backward reference: double

namespace {

void rms_norm_backward_reference(const Batch& in, const Params& p, Mode, const State*,
                                 const std::vector<float>& dy, Grads& out) {
  validate_affine_norm(in, p);
  validate_dy(in, dy);
  const int D = in.D;
  Grads g;
  g.dx.assign(in.x.size(), 0.0);
  g.dgamma.assign(p.gamma.size(), 0.0);
  g.dbeta.assign(p.beta.size(), 0.0);
  for (std::size_t r = 0; r < in.rows(); ++r) {
    const float* x = &in.x[r * D];  // [D]
    const float* dyr = &dy[r * D];  // [D]
    double* dx = &g.dx[r * D];      // [D]
    double ms = 0;
    for (int d = 0; d < D; ++d) ms += double(x[d]) * x[d];
    ms /= D;
    const double rrms = 1.0 / std::sqrt(ms + p.eps);
    double mean_dxhat_xhat = 0;  // the gradient through the mean square
    for (int d = 0; d < D; ++d)
      mean_dxhat_xhat += (p.gamma.empty() ? 1.0 : p.gamma[d]) * dyr[d] * (x[d] * rrms);
    mean_dxhat_xhat /= D;
    for (int d = 0; d < D; ++d) {
      const double xhat = x[d] * rrms;
      const double dxhat = (p.gamma.empty() ? 1.0 : p.gamma[d]) * dyr[d];
      dx[d] = rrms * (dxhat - xhat * mean_dxhat_xhat);
      if (!g.dgamma.empty()) g.dgamma[d] += dyr[d] * xhat;
      if (!g.dbeta.empty()) g.dbeta[d] += dyr[d];
    }
  }
  out = std::move(g);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// backward optimized: float32, the forward's mean square per token, dγ over fixed row segments

namespace {

// Tokens [r0, r1) of one segment; AVX2 and baseline clones give the same bits.
__attribute__((target_clones("avx2", "default")))
void rms_norm_backward_rows(float* dx, const float* dy, const float* x, const float* gamma,
                            std::size_t r0, std::size_t r1, int D, float eps, double* acc_g,
                            double* acc_b) {
  for (std::size_t r = r0; r < r1; ++r)
    kernels::normalize_backward_span<false>(dx + r * D, dy + r * D, x + r * D, gamma, D, eps,
                                            acc_g, acc_b);
}

}  // namespace

void rms_norm_backward_kernel(float* dx, float* dgamma, float* dbeta, const float* dy,
                              const float* x, const float* gamma, std::size_t rows, int D,
                              float eps) {
  validate_backward_rows("rms_norm_backward_kernel", dx, dy, x, rows, D);
  validate_eps(eps);
  std::vector<double> sums(2 * std::size_t(D));  // [2, D]: Σ dy·x̂, Σ dy
  kernels::reduce_row_segments(rows, D, sums.size(), sums.data(),
                               [&](std::size_t r0, std::size_t r1, double* acc) {
                                 rms_norm_backward_rows(dx, dy, x, gamma, r0, r1, D, eps, acc,
                                                        acc + D);
                               });
  for (int d = 0; d < D; ++d) {
    if (dgamma) dgamma[d] = float(sums[d]);
    if (dbeta) dbeta[d] = float(sums[D + d]);
  }
}

namespace {

void rms_norm_backward_optimized(const Batch& in, const Params& p, Mode, const State*,
                                 const std::vector<float>& dy, Grads& out) {
  validate_affine_norm(in, p);
  validate_dy(in, dy);
  run_affine_backward(p, in.x.size(), out, [&](float* dx, float* dg, float* db, const float* g) {
    rms_norm_backward_kernel(dx, dg, db, dy.data(), in.x.data(), g, in.rows(), in.D,
                             float(p.eps));
  });
}

}  // namespace

LayerEntry rms_norm_entry() {
  return {.name = "rms_norm", .formula = "γ·x/√(mean(x²)+ε)", .statistics_over = "one token",
          .params = {.bias = false},
          .rows = {{Mode::none,
                    {"token_shift_invariance", "feature_shift_invariance", "feature_scale_invariance"},
                    "no re-centring: a shift changes the root mean square; per-token statistics"}},
          .reference = rms_norm_reference, .optimized = rms_norm_optimized,
          .conditioning = token_conditioning(false),
          .backward_reference = rms_norm_backward_reference,
          .backward_optimized = rms_norm_backward_optimized};
}

}  // namespace normcheck
