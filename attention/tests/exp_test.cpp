// The optimized kernel's vectorized exp.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "attention/tests/test_util.hpp"

namespace normcheck {
namespace {

using namespace test;

// ---------------------------------------------------------------------------------------------
// The optimized kernel's vectorized exp against std::exp: ≤ 2 ulp over a sweep of every range
// (normal results, subnormal results, underflow to 0, overflow to +inf), the special values
// handled like std::exp, and the same bits whether a value sits in a full 8-lane group or in
// the scalar tail.

// distance in units in the last place, counting across zero and into the subnormals
long long ulps(float a, float b) {
  auto key = [](float x) {
    std::int32_t i;
    std::memcpy(&i, &x, sizeof i);
    return i < 0 ? -(long long)(i & 0x7fffffff) : (long long)i;
  };
  return std::llabs(key(a) - key(b));
}

TEST(SdpaExp, WithinTwoUlpOfStdExpAndExactAtTheEdges) {
  std::vector<float> x;
  for (float t = -110.0f; t < 95.0f; t += std::max(1e-5f, 3e-6f * std::abs(t)))
    x.push_back(t);
  for (float t = -1e-3f; t < 1e-3f; t += 1.37e-7f) x.push_back(t);
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> edges = {0.0f, -0.0f, 1e-30f, -1e-30f, 1e-45f, 88.0f, 88.72283f,
                                    88.722839f, 88.7229f, 89.0f, 100.0f, -87.33654f, -87.34f,
                                    -100.0f, -103.27893f, -103.97208f, -103.9721f, -104.0f,
                                    -150.0f, 1e30f, -1e30f, std::numeric_limits<float>::max(),
                                    std::numeric_limits<float>::lowest(), inf, -inf, kNaN};
  x.insert(x.end(), edges.begin(), edges.end());
  ASSERT_GT(x.size(), 100000u);
  std::vector<float> y(x.size());
  sdpa_exp(x.data(), y.data(), x.size());
  long long worst = 0;
  float worst_x = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const float want = std::exp(x[i]);
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(y[i])) << "exp(" << x[i] << ") = " << y[i];
      continue;
    }
    if (std::isinf(want) || want == 0.0f) {
      EXPECT_EQ(y[i], want) << "exp(" << x[i] << ")";
      continue;
    }
    const long long u = ulps(y[i], want);
    if (u > worst) worst = u, worst_x = x[i];
  }
  EXPECT_LE(worst, 2) << "worst at x = " << worst_x;
  EXPECT_EQ(y[x.size() - 3], inf);
  EXPECT_EQ(y[x.size() - 2], 0.0f);
  EXPECT_TRUE(std::isnan(y.back()));
  // the kernel skips the online-softmax correction when the max did not change: e^±0 is 1
  const float zeros[2] = {0.0f, -0.0f};
  float ones[2];
  sdpa_exp(zeros, ones, 2);
  EXPECT_EQ(ones[0], 1.0f);
  EXPECT_EQ(ones[1], 1.0f);
  // one value at a time (the scalar tail) gives the same bits as inside an 8-lane group
  for (std::size_t i = 0; i < x.size(); i += 97) {
    float one;
    sdpa_exp(&x[i], &one, 1);
    if (std::isnan(y[i])) {
      EXPECT_TRUE(std::isnan(one));
    } else {
      EXPECT_EQ(std::memcmp(&one, &y[i], sizeof one), 0) << "x = " << x[i];
    }
  }
}


}  // namespace
}  // namespace normcheck
