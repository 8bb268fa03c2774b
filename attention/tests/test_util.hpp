// What the attention tests share: random inputs, either implementation of sdpa through its
// registry entry, a small block, and a fixture over both implementations.
#pragma once

#include <gtest/gtest.h>

#include <limits>
#include <random>
#include <string>
#include <vector>

#include "attention/block.hpp"
#include "attention/registry.hpp"

namespace normcheck {

inline void PrintTo(Impl i, std::ostream* os) { *os << to_string(i); }

namespace test {

inline constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

inline std::vector<float> random_values(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = g(rng);
  return v;
}

struct Qkv {
  SdpaShape s;
  std::vector<float> q, k, v;
};

inline Qkv random_qkv(const SdpaShape& s, unsigned seed) {
  return {s, random_values(s.q_size(), seed), random_values(s.k_size(), seed + 1),
          random_values(s.v_size(), seed + 2)};
}

// Runs either implementation; outputs (and weights, if asked) widened to double.
inline std::vector<double> sdpa(Impl impl, const Qkv& x, const SdpaMask& m,
                         std::vector<double>* weights = nullptr) {
  static const AttentionEntry e = sdpa_entry();
  Output out;
  (impl == Impl::reference ? e.sdpa_reference : e.sdpa_optimized)(out, weights, x.q, x.k, x.v, x.s, m,
                                                                 default_scale(x.s.dh));
  return out;
}


// ---------------------------------------------------------------------------------------------
// the block

inline BlockWeights small_block(int E, int H, Placement p, unsigned seed) {
  BlockWeights w;
  w.placement = p;
  w.attn = {E, H, random_values(3 * E * E, seed), random_values(3 * E, seed + 1),
            random_values(E * E, seed + 2), random_values(E, seed + 3)};
  for (auto* v : {&w.attn.in_proj_weight, &w.attn.out_proj_weight})
    for (auto& x : *v) x *= 0.25f;
  w.F = 2 * E;
  w.w1 = random_values(w.F * E, seed + 4);
  w.b1 = random_values(w.F, seed + 5);
  w.w2 = random_values(E * w.F, seed + 6);
  w.b2 = random_values(E, seed + 7);
  for (auto* v : {&w.w1, &w.w2})
    for (auto& x : *v) x *= 0.25f;
  return w;
}

inline Batch random_batch(int B, int T, int E, std::vector<int> lengths, unsigned seed) {
  Batch x(B, T, E);
  x.lengths = std::move(lengths);
  x.x = random_values(x.x.size(), seed);
  return x;
}


}  // namespace test
}  // namespace normcheck

// A parameterized suite over both implementations: TEST_P(Suite, Name) with GetParam() the Impl.
#define NORMCHECK_BOTH_IMPLS(Suite)                                                       \
  class Suite : public ::testing::TestWithParam<::normcheck::Impl> {};                    \
  INSTANTIATE_TEST_SUITE_P(Attention, Suite,                                              \
                           ::testing::Values(::normcheck::Impl::reference,                \
                                             ::normcheck::Impl::optimized),               \
                           [](const auto& info) { return ::normcheck::to_string(info.param); })
