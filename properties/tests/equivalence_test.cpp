// Cross-layer equivalences of the spec (each must hold, on both implementations), and the
// regression cases that would have caught real bugs.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include <omp.h>

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
        RC_ASSERT(std::abs(a[i] - b[i]) <= 1e-5 + 2e-6 * cond + 1e-5 * std::abs(b[i]));
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
  p.groups = 1;
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

// ---------------------------------------------------------------------------------------------
// regressions

bool same_bits(const Output& a, std::size_t ia, const Output& b, std::size_t ib, std::size_t n) {
  return std::memcmp(&a[ia], &b[ib], n * sizeof(double)) == 0;
}

// RMSNorm results changed when the batch grew past a reduction-width threshold: a sequence's
// optimized output must be bitwise the same alone and inside every batch size up to 320 tokens.
TEST(Regression, RmsNormBitwiseBatchInvarianceUpTo320Tokens) {
  const int D = 100, L = 3;
  Batch alone(1, L, D);
  for (std::size_t i = 0; i < alone.x.size(); ++i) alone.x[i] = float(int(i * 37 % 29) - 14) / 8.0f;
  Params p;
  p.gamma.assign(D, 1.25f);
  Output ref;
  layer("rms_norm").optimized(alone, p, Mode::none, nullptr, ref);
  for (int B = 1; B <= 320 / L; B += 7) {
    Batch big(B, L, D);
    for (std::size_t i = 0; i < big.x.size(); ++i) big.x[i] = float(int(i * 13 % 31) - 15) / 4.0f;
    const int j = B / 2;
    std::copy(alone.x.begin(), alone.x.end(), &big.at(j, 0, 0));
    Output out;
    layer("rms_norm").optimized(big, p, Mode::none, nullptr, out);
    EXPECT_TRUE(same_bits(out, big.index(j, 0, 0), ref, 0, std::size_t(L) * D)) << "B = " << B;
  }
}

// Results changed with the thread count: every optimized layer, bitwise, 1 to 4 threads.
TEST(Regression, EveryOptimizedLayerIsBitwiseTheSameForOneToFourThreads) {
  Batch x(6, 40, 130);
  for (std::size_t i = 0; i < x.x.size(); ++i) x.x[i] = float(int(i * 7919 % 257) - 128) / 32.0f;
  x.lengths = {40, 3, 17, 40, 1, 29};
  for (const auto& row : layer_rows()) {
    Params p;
    if (row.layer->params.affine) p.gamma.assign(x.D, 0.75f);
    if (row.layer->params.affine && row.layer->params.bias) p.beta.assign(x.D, 0.125f);
    if (row.layer->params.scalar_gain) p.gamma = {1.5f};
    if (row.layer->params.groups) p.groups = 5;
    Output first;
    State s0{std::vector<double>(x.D, 0.25), std::vector<double>(x.D, 2.0)};
    for (int threads = 1; threads <= 4; ++threads) {
      omp_set_num_threads(threads);
      State s = s0;
      Output out;
      row.layer->optimized(x, p, row.mode(), &s, out);
      if (threads == 1) first = out;
      EXPECT_TRUE(same_bits(out, 0, first, 0, out.size())) << row.name() << ", " << threads << " threads";
    }
  }
  omp_set_num_threads(2);
}

// Poison leaking through a mask: NaN, ±inf and 1e30 in padding must not reach masked
// statistics or token-wise outputs.
TEST(Regression, PoisonInPaddingDoesNotLeakIntoMaskedStatistics) {
  for (float poison : {std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::infinity(), 1e30f}) {
    Batch x(2, 4, 3);
    for (std::size_t i = 0; i < x.x.size(); ++i) x.x[i] = float(i % 5) - 2.0f;
    x.lengths = {2, 3};
    for (int b = 0; b < 2; ++b)
      for (int t = x.lengths[b]; t < 4; ++t)
        for (int d = 0; d < 3; ++d) x.at(b, t, d) = poison;
    for (const char* name : {"masked_batch_norm", "instance_norm", "layer_norm"})
      for (Impl impl : {Impl::reference, Impl::optimized}) {
        const auto& l = layer(name);
        State s{std::vector<double>(3, 0.0), std::vector<double>(3, 1.0)};
        Params p;
        Output out;
        l.forward(impl)(x, p, l.stateful() ? Mode::train : Mode::none, &s, out);
        for (int b = 0; b < 2; ++b)
          for (int t = 0; t < x.lengths[b]; ++t)
            for (int d = 0; d < 3; ++d)
              EXPECT_TRUE(std::isfinite(out[x.index(b, t, d)])) << name << " " << to_string(impl) << " poison " << poison;
        for (double v : s.running_mean) EXPECT_TRUE(std::isfinite(v)) << name;
        for (double v : s.running_var) EXPECT_TRUE(std::isfinite(v)) << name;
      }
  }
}

TEST(Validation, GroupNormRejectsGroupsThatDoNotDivideD) {
  Batch x(1, 2, 6);
  Params p;
  p.groups = 4;
  Output out;
  for (Impl impl : {Impl::reference, Impl::optimized}) {
    try {
      layer("group_norm").forward(impl)(x, p, Mode::none, nullptr, out);
      FAIL() << "G = 4 does not divide D = 6";
    } catch (const InvalidInput& e) {
      EXPECT_NE(std::string(e.what()).find("groups = 4"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("D = 6"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace normcheck
