// The regression cases of the spec (docs/PROPERTIES.md, "Regression cases from real bugs"), each
// pinned to the input that exposed the real bug.
#include <gtest/gtest.h>

#include <omp.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "norms/registry.hpp"
#include "norms/tests/test_util.hpp"
#include "properties/compare.hpp"

namespace normcheck {
namespace {

Batch from_rows(const std::vector<std::vector<float>>& rows) {
  Batch x(1, int(rows.size()), int(rows[0].size()));
  for (int t = 0; t < x.T; ++t)
    for (int d = 0; d < x.D; ++d) x.at(0, t, d) = rows[t][d];
  return x;
}

// Regression: a one-pass E[x²]−E[x]² variance loses everything on [40000..40003].
TEST(Regression, LayerNormOnLargeConsecutiveIntegers) {
  const Batch x = from_rows({{40000, 40001, 40002, 40003}});
  Params p;
  p.eps = 1e-5;
  Output ref, opt;
  layer("layer_norm").reference(x, p, Mode::none, nullptr, ref);
  layer("layer_norm").optimized(x, p, Mode::none, nullptr, opt);
  // exact: (x − 40001.5)/√(1.25 + 1e-5)
  for (int d = 0; d < 4; ++d)
    EXPECT_NEAR(ref[d], (d - 1.5) / std::sqrt(1.25 + 1e-5), 1e-12);
  const double cond = 40001.5 / std::sqrt(1.25);
  for (int d = 0; d < 4; ++d) EXPECT_LE(std::abs(opt[d] - ref[d]), tolerance(ref[d], cond)) << d;
}

TEST(Regression, LayerNormOnRandnPlus2000) {
  std::mt19937 rng(7);
  std::normal_distribution<float> n(0, 1);
  Batch x(2, 3, 257);
  for (auto& v : x.x) v = 2000.0f + n(rng);
  Params p;
  Output ref, opt;
  layer("layer_norm").reference(x, p, Mode::none, nullptr, ref);
  layer("layer_norm").optimized(x, p, Mode::none, nullptr, opt);
  const double cond = 2000.0 / 0.9;  // ≈ |mean|/σ with σ ≈ 1
  for (std::size_t i = 0; i < ref.size(); ++i) ASSERT_LE(std::abs(opt[i] - ref[i]), tolerance(ref[i], cond)) << i;
}

TEST(Regression, BatchNormTrainRejectsOneValuePerChannelAndKeepsState) {
  for (Impl impl : {Impl::reference, Impl::optimized}) {
    Batch x(1, 1, 3);
    x.x = {1, 2, 3};
    Params p;
    State s{{0.5, 0.5, 0.5}, {2, 2, 2}};
    const State before = s;
    Output out;
    try {
      layer("batch_norm").forward(impl)(x, p, Mode::train, &s, out);
      FAIL() << "batch_norm train on one token must throw";
    } catch (const InvalidInput& e) {
      EXPECT_NE(std::string(e.what()).find("expected more than 1 value per channel when training"),
                std::string::npos)
          << e.what();
    }
    EXPECT_EQ(s.running_mean, before.running_mean);
    EXPECT_EQ(s.running_var, before.running_var);
  }
}

// Regression: with momentum 1 the running variance is the unbiased batch variance, so eval on
// the same batch differs from train by exactly √(n/(n−1)) in the normalized values.
TEST(Regression, BatchNormTrainEvalRatioWithMomentumOne) {
  Batch x(2, 2, 1);
  x.x = {1, 2, 4, 7};
  Params p;
  p.momentum = 1.0;
  p.eps = 1e-12;
  for (Impl impl : {Impl::reference, Impl::optimized}) {
    State s{{0.0}, {1.0}};
    Output train, eval;
    layer("batch_norm").forward(impl)(x, p, Mode::train, &s, train);
    EXPECT_NEAR(s.running_mean[0], 3.5, 1e-12);
    EXPECT_NEAR(s.running_var[0], (6.25 + 2.25 + 0.25 + 12.25) / 3.0, 1e-12);
    layer("batch_norm").forward(impl)(x, p, Mode::eval, &s, eval);
    for (int i = 0; i < 4; ++i)
      EXPECT_NEAR(train[i] / eval[i], std::sqrt(4.0 / 3.0), 1e-5) << to_string(impl);
  }
}

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
    std::mt19937 rng(5);
    const Params p = test::params_for(*row.layer, x.D, rng);
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

}  // namespace
}  // namespace normcheck
