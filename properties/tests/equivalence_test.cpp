// Cross-layer equivalences of the spec (each must hold, on both implementations).
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include <omp.h>

#include "properties/compare.hpp"
#include "properties/generators.hpp"

namespace normcheck {
namespace {

// The tolerance rule between two implementations' outputs on valid positions.
void assert_close(const Batch& x, const Output& a, const Output& b, double cond, bool valid_only = true) {
  for (int bb = 0; bb < x.B; ++bb)
    for (int t = 0; t < x.T; ++t) {
      if (valid_only && !x.valid(bb, t)) continue;
      for (int d = 0; d < x.D; ++d) {
        const std::size_t i = x.index(bb, t, d);
        RC_ASSERT(std::abs(a[i] - b[i]) <= tolerance(b[i], cond));
      }
    }
}

double max_cond(const Conditioning& c) {
  double m = 0;
  for (double v : c.cond)
    if (std::isfinite(v)) m = std::max(m, v);
  return m;
}

Impl any_impl() { return *rc::gen::element(Impl::reference, Impl::optimized); }

RC_GTEST_PROP(Equivalence, GroupNormWithOneGroupIsLayerNorm, ()) {
  const auto shape = gen::shape();
  const Batch x = gen::batch(shape, gen::regime(), gen::Poison::zero);
  Params p = gen::params(layer("layer_norm"), shape.D);
  p.named["groups"] = 1;
  const Impl impl = any_impl();
  Output gn, ln;
  layer("group_norm").forward(impl)(x, p, Mode::none, nullptr, gn);
  layer("layer_norm").forward(impl)(x, p, Mode::none, nullptr, ln);
  assert_close(x, gn, ln, max_cond(layer("layer_norm").conditioning(x, p, Mode::none, nullptr)));
}

RC_GTEST_PROP(Equivalence, LayerNormOnZeroMeanTokensWithoutBetaIsRmsNorm, ()) {
  // tokens [v, −v]: the mean is exactly 0, so LN's variance is RMSNorm's mean square
  const int half = *rc::gen::inRange(1, 20);
  auto shape = gen::shape();
  shape.D = 2 * half;
  Batch x = gen::batch(shape, gen::Regime::normal, gen::Poison::zero);
  for (std::size_t r = 0; r < x.rows(); ++r)
    for (int d = 0; d < half; ++d) x.x[r * x.D + half + d] = -x.x[r * x.D + d];
  Params p = gen::params(layer("rms_norm"), shape.D);
  const Impl impl = any_impl();
  Output ln, rms;
  layer("layer_norm").forward(impl)(x, p, Mode::none, nullptr, ln);
  layer("rms_norm").forward(impl)(x, p, Mode::none, nullptr, rms);
  assert_close(x, ln, rms, 0.0);
}

RC_GTEST_PROP(Equivalence, MaskedBatchNormIsBatchNormOnAnUnpaddedBatch, ()) {
  auto shape = gen::shape(2);
  Batch x = gen::batch(shape, gen::regime(), gen::Poison::nan, shape.T);  // every length = T
  Params p = gen::params(layer("batch_norm"), shape.D);
  const State s0 = gen::state(shape.D);
  const Impl impl = any_impl();
  const Mode mode = *rc::gen::element(Mode::train, Mode::eval);
  State s1 = s0, s2 = s0;
  Output masked, naive;
  layer("masked_batch_norm").forward(impl)(x, p, mode, &s1, masked);
  layer("batch_norm").forward(impl)(x, p, mode, &s2, naive);
  assert_close(x, masked, naive, max_cond(layer("batch_norm").conditioning(x, p, mode, &s0)));
  for (int d = 0; d < shape.D; ++d) {
    RC_ASSERT(std::abs(s1.running_mean[d] - s2.running_mean[d]) <= 1e-12 * (1 + std::abs(s2.running_mean[d])));
    RC_ASSERT(std::abs(s1.running_var[d] - s2.running_var[d]) <= 1e-12 * (1 + std::abs(s2.running_var[d])));
  }
}

RC_GTEST_PROP(Equivalence, InstanceNormIsMaskedBatchNormOnEachSequenceAlone, ()) {
  auto shape = gen::shape(2);
  const Batch x = gen::batch(shape, gen::regime(), gen::poison(), 2);  // lengths ≥ 2
  Params p = gen::params(layer("instance_norm"), shape.D);
  const Impl impl = any_impl();
  Output in;
  layer("instance_norm").forward(impl)(x, p, Mode::none, nullptr, in);
  for (int b = 0; b < x.B; ++b) {
    Batch one(1, x.T, x.D);
    one.lengths = {x.lengths[b]};
    std::copy(&x.x[x.index(b, 0, 0)], &x.x[x.index(b, 0, 0)] + std::size_t(x.T) * x.D, one.x.begin());
    State s{std::vector<double>(x.D, 0.0), std::vector<double>(x.D, 1.0)};
    Output mbn;
    layer("masked_batch_norm").forward(impl)(one, p, Mode::train, &s, mbn);
    Output mine(in.begin() + x.index(b, 0, 0), in.begin() + x.index(b, 0, 0) + one.x.size());
    assert_close(one, mine, mbn,
                 max_cond(layer("instance_norm").conditioning(one, p, Mode::none, nullptr)));
  }
}

}  // namespace
}  // namespace normcheck
