// The masks: fully masked rows give zeros, poison behind a mask stays out, a decode query sees
// the whole cache (bottom-right causal alignment), and the weights the kernel exposes are its own.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "attention/tests/test_util.hpp"

namespace normcheck {
namespace {

using namespace test;

NORMCHECK_BOTH_IMPLS(Masks);

// Regression: a fully masked query row (softmax over nothing) gave NaN, and NaN in masked
// keys/values leaked into the other rows through 0·NaN.
TEST_P(Masks, FullyMaskedRowGivesZerosAndPoisonStaysOut) {
  Qkv x = random_qkv({2, 2, 3, 3, 4, 5, 0}, 1);
  SdpaMask m;
  m.key_lengths = {0, 2};  // sequence 0: every key is padding; sequence 1: key 2 is
  for (int h = 0; h < 2; ++h)
    for (int b = 0; b < 2; ++b)
      for (int t = m.key_lengths[b]; t < 3; ++t) {
        const std::size_t row = (std::size_t(b) * 2 + h) * 3 + t;
        std::fill_n(&x.k[row * 4], 4, kNaN);
        std::fill_n(&x.v[row * 5], 5, kNaN);
      }
  const auto out = sdpa(GetParam(), x, m);
  for (std::size_t i = 0; i < out.size(); ++i) {
    ASSERT_TRUE(std::isfinite(out[i])) << "out element " << i;
    if (i < out.size() / 2) {
      EXPECT_EQ(out[i], 0.0) << "fully masked row, element " << i;
    }
  }
}

// Causal with more queries than keys: the first queries see no key at all (bottom-right).
TEST_P(Masks, CausalQueriesBeforeEveryKeyGiveZeros) {
  const Qkv x = random_qkv({1, 1, 4, 2, 3, 3, 0}, 2);
  SdpaMask m;
  m.causal = true;
  const auto out = sdpa(GetParam(), x, m);
  for (int i = 0; i < 4; ++i)
    for (int c = 0; c < 3; ++c) {
      ASSERT_TRUE(std::isfinite(out[i * 3 + c]));
      if (i < 2) {
        EXPECT_EQ(out[i * 3 + c], 0.0) << "query " << i << " is before every key";
      }
    }
  EXPECT_NE(out[2 * 3], 0.0);
}

// Regression: a single decode query against a cache of L keys must see all L keys, not only
// key 0 (a causal mask aligned top-left).
TEST_P(Masks, SingleDecodeQuerySeesTheWholeCache) {
  const int L = 6;
  const Qkv all = random_qkv({1, 2, L, L, 4, 4, 0}, 3);
  KvCache<float> cache(1, 2, 4, 4, L);
  cache.append(all.k, all.v, L);
  Qkv step;
  step.s = cache.shape_for(1);
  step.q = random_values(step.s.q_size(), 9);
  step.k = cache.keys();
  step.v = cache.values();
  SdpaMask causal;
  causal.causal = true;
  std::vector<double> w;
  const auto out = sdpa(GetParam(), step, causal, &w);
  ASSERT_EQ(w.size(), std::size_t(2 * L));
  for (int h = 0; h < 2; ++h)
    for (int j = 0; j < L; ++j) EXPECT_GT(w[h * L + j], 0.0) << "head " << h << " key " << j;
  // and it is exactly attention over every key without a causal mask
  const auto open = sdpa(GetParam(), step, SdpaMask{});
  for (std::size_t i = 0; i < out.size(); ++i) EXPECT_EQ(out[i], open[i]) << i;
}

// The weights the optimized kernel exposes are the ones it used: with V = identity the output
// rows are the weight rows.
TEST(Attention, ExposedWeightsAreTheKernelsOwn) {
  const int Tk = 7;
  Qkv x = random_qkv({2, 2, 5, Tk, 3, Tk, 0}, 5);
  std::fill(x.v.begin(), x.v.end(), 0.0f);
  for (int bh = 0; bh < 4; ++bh)
    for (int j = 0; j < Tk; ++j) x.v[(std::size_t(bh) * Tk + j) * Tk + j] = 1.0f;
  SdpaMask m;
  m.key_lengths = {7, 4};
  m.causal = true;
  std::vector<double> w;
  const auto out = sdpa(Impl::optimized, x, m, &w);
  ASSERT_EQ(out.size(), w.size());
  for (std::size_t i = 0; i < out.size(); ++i) EXPECT_NEAR(out[i], w[i], 1e-6) << i;
}


}  // namespace
}  // namespace normcheck
