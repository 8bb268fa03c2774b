// Every attention entry point rejects what it cannot compute, naming the parameter.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "attention/tests/test_util.hpp"

namespace normcheck {
namespace {

using namespace test;

NORMCHECK_BOTH_IMPLS(Validation);

TEST_P(Validation, KvCacheOverflowIsAClearError) {
  KvCache<float> cache(1, 1, 2, 2, 3);
  cache.append(std::vector<float>(4, 1.0f), std::vector<float>(4, 1.0f), 2);
  try {
    cache.append(std::vector<float>(4, 1.0f), std::vector<float>(4, 1.0f), 2);
    FAIL() << "appending past the capacity must throw";
  } catch (const InvalidInput& e) {
    EXPECT_NE(std::string(e.what()).find("KV cache overflow: appending n = 2 tokens to a cache "
                                         "holding 2 of capacity 3"),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(cache.size(), 2) << "a rejected append must not change the cache";

  // through multi-head decoding as well
  MhaWeights w{4, 2, std::vector<float>(48, 0.1f), std::vector<float>(12, 0.0f),
               std::vector<float>(16, 0.1f), std::vector<float>(4, 0.0f)};
  const std::vector<float> x(4, 0.5f);
  if (GetParam() == Impl::optimized) {
    KvCache<float> c = mha_cache<float>(w, 1);
    std::vector<float> y;
    mha_decode_optimized(y, nullptr, w, x, 1, c);
    EXPECT_THROW(mha_decode_optimized(y, nullptr, w, x, 1, c), InvalidInput);
  } else {
    KvCache<double> c = mha_cache<double>(w, 1);
    std::vector<double> y, xd(x.begin(), x.end());
    mha_decode_reference(y, nullptr, w, xd, 1, c);
    EXPECT_THROW(mha_decode_reference(y, nullptr, w, xd, 1, c), InvalidInput);
  }
}

TEST_P(Validation, HeadsMustDivideTheEmbedDim) {
  MhaWeights w{16, 3, std::vector<float>(3 * 256, 0.1f), std::vector<float>(48, 0.0f),
               std::vector<float>(256, 0.1f), std::vector<float>(16, 0.0f)};
  const std::vector<float> x(2 * 16, 1.0f);
  try {
    if (GetParam() == Impl::optimized) {
      std::vector<float> y;
      mha_optimized(y, nullptr, w, x, x, 1, 2, 2, SdpaMask{});
    } else {
      std::vector<double> y, xd(x.begin(), x.end());
      mha_reference(y, nullptr, w, xd, xd, 1, 2, 2, SdpaMask{});
    }
    FAIL() << "heads = 3 with E = 16 must be rejected";
  } catch (const InvalidInput& e) {
    EXPECT_NE(std::string(e.what()).find("heads = 3 must divide E = 16"), std::string::npos)
        << e.what();
  }
}

TEST_P(Validation, InvalidShapesAndLengthsNameTheParameter) {
  const Qkv x = random_qkv({2, 1, 3, 3, 2, 2, 0}, 4);
  SdpaMask m;
  m.key_lengths = {3, 4};
  auto message = [&](const Qkv& in, const SdpaMask& mask) {
    try {
      sdpa(GetParam(), in, mask);
    } catch (const InvalidInput& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message(x, m).find("lengths[1] = 4 is outside [0, Tk = 3]"), std::string::npos);
  Qkv short_q = x;
  short_q.q.pop_back();
  EXPECT_NE(message(short_q, SdpaMask{}).find("q has 11 values, expected B*H*Tq*dh = 12"),
            std::string::npos);
  m.key_lengths = {3};
  EXPECT_NE(message(x, m).find("key lengths has 1 entries, expected B = 2"), std::string::npos);
}

TEST(Block, RejectsAnInputOfTheWrongWidth) {
  const BlockWeights w = small_block(8, 2, Placement::pre, 60);
  const Batch x = random_batch(1, 2, 6, {2}, 61);
  BlockState st;
  try {
    block_forward(layer("layer_norm"), Impl::optimized, Mode::none, w, st, x, false);
    FAIL();
  } catch (const InvalidInput& e) {
    EXPECT_NE(std::string(e.what()).find("D = 6"), std::string::npos) << e.what();
  }
}


}  // namespace
}  // namespace normcheck
