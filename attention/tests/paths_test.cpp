// The optimized kernel's instruction-set paths.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "attention/tests/test_util.hpp"

namespace normcheck {
namespace {

using namespace test;

// The kernel's AVX-512VL, AVX2 and baseline paths use different register blocks but the same
// operations per element: outputs and weights must be bitwise identical (paths this CPU lacks
// are skipped). Shapes cover full and partial blocks, tails of dh and dv, masks and decode.
TEST(SdpaPaths, EveryCompiledPathGivesTheSameBits) {
  std::mt19937 rng(12);
  int compared = 0;
  for (int t = 0; t < 60; ++t) {
    SdpaShape s;
    s.B = 1 + int(rng() % 2);
    s.H = 1 + int(rng() % 2);
    s.Tk = 1 + int(rng() % 90);
    s.Tq = t % 4 == 0 ? 1 : 1 + int(rng() % 40);
    s.dh = t % 3 == 0 ? 64 : 1 + int(rng() % 70);
    s.dv = t % 3 == 0 ? 64 : 1 + int(rng() % 70);
    SdpaMask m;
    m.causal = rng() % 2;
    if (rng() % 2)
      for (int b = 0; b < s.B; ++b) m.key_lengths.push_back(int(rng() % (s.Tk + 1)));
    const Qkv x = random_qkv(s, 100 + t);
    std::vector<float> base_out, base_w;
    ASSERT_TRUE(sdpa_use_path(SdpaPath::baseline));
    sdpa_optimized(base_out, &base_w, x.q, x.k, x.v, s, m, default_scale(s.dh));
    for (SdpaPath p : {SdpaPath::avx2, SdpaPath::avx512}) {
      if (!sdpa_use_path(p)) continue;
      std::vector<float> out, w;
      sdpa_optimized(out, &w, x.q, x.k, x.v, s, m, default_scale(s.dh));
      ASSERT_EQ(out.size(), base_out.size());
      EXPECT_EQ(std::memcmp(out.data(), base_out.data(), out.size() * sizeof(float)), 0)
          << "outputs, case " << t << ", path " << int(p);
      EXPECT_EQ(std::memcmp(w.data(), base_w.data(), w.size() * sizeof(float)), 0)
          << "weights, case " << t << ", path " << int(p);
      ++compared;
    }
  }
  sdpa_use_path(SdpaPath::best);
  if (compared == 0) GTEST_SKIP() << "this CPU runs only the baseline path";
}


}  // namespace
}  // namespace normcheck
