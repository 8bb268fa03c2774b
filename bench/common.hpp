// What both benchmark programs share: the input data.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace normcheck::bench {

// n values uniform in [-2, 2) from a 64-bit LCG (filling 16M values must not dominate the run);
// the same seed gives the same values in every program.
inline std::vector<float> random_values(std::size_t n, unsigned seed = 1) {
  std::vector<float> v(n);
  std::uint64_t state = 0x9E3779B97F4A7C15ULL * (seed + 1);
  for (auto& x : v) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    x = float(state >> 40) * (4.0f / 16777216.0f) - 2.0f;
  }
  return v;
}

}  // namespace normcheck::bench
