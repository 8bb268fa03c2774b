// The project's own LayerNorm kernel (Welford's one-pass statistics), registered as an
// implementation of normcheck's layer_norm: its reference, parameters, conditioning, profile.
#include <normcheck/normcheck.hpp>

#include <cmath>

namespace {

// The statistics in double, so that inputs up to ±FLT_MAX neither overflow x² nor lose the
// variance of tiny ones (normcheck's finite_output and scale_range_invariance cells fail a
// float32 Welford near 1e19).
void welford_layer_norm(const normcheck::Batch& in, const normcheck::Params& p, normcheck::Mode,
                        normcheck::State*, normcheck::Output& out) {
  normcheck::validate_affine_norm(in, p);
  const int D = in.D;
  std::vector<float> y(in.x.size());
#pragma omp parallel for schedule(static)
  for (long long r = 0; r < (long long)in.rows(); ++r) {
    const float* x = &in.x[r * D];
    double mean = 0, m2 = 0;
    for (int d = 0; d < D; ++d) {  // Welford: stable in one pass
      const double delta = x[d] - mean;
      mean += delta / (d + 1);
      m2 += delta * (x[d] - mean);
    }
#ifdef MY_LAYER_NORM_PLANTED_BUG  // scripts/check-out-of-tree: the unbiased variance, by mistake
    const double var = m2 / (D - 1);
#else
    const double var = m2 / D;
#endif
    const double rstd = 1.0 / std::sqrt(var + p.eps);
    for (int d = 0; d < D; ++d)
      y[r * D + d] = float((x[d] - mean) * rstd * (p.gamma.empty() ? 1.0 : p.gamma[d]) +
                           (p.beta.empty() ? 0.0 : p.beta[d]));
  }
  out.assign(y.begin(), y.end());
}

}  // namespace

std::vector<const normcheck::LayerEntry*> my_layers() {
  static const normcheck::LayerEntry& mine = [] () -> const normcheck::LayerEntry& {
    normcheck::set_replay_programs({.cli = "my_normcheck", .tests = "my_kernels_tests"});  // replays name them
    return normcheck::register_layer(normcheck::implementation_of(
        normcheck::layer("layer_norm"), "my_layer_norm", "LayerNorm, Welford's statistics in double",
        welford_layer_norm));
  }();
  return {&mine};
}
