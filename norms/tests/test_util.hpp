// Helpers shared by the tests of registry layers: valid inputs for any layer, built from its
// ParamSpec. (The tolerance rule is properties/compare.hpp's.)
#pragma once

#include <cmath>
#include <cstring>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "norms/registry.hpp"

namespace normcheck {

// How GoogleTest prints a LayerRow parameter (ctest's "GetParam() = …"): its id.
inline void PrintTo(const LayerRow& r, std::ostream* os) { *os << r.id(); }

}  // namespace normcheck

namespace normcheck::test {

// Parameters a layer accepts at width D: γ, β as its ParamSpec says, its named parameters drawn
// by their own ParamDef from `rng` (so group layers see G > 1 where D allows it).
inline Params params_for(const LayerEntry& l, int D, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(0.5f, 1.5f), v(-1.0f, 1.0f);
  Params p;
  if (l.params.affine) {
    for (int d = 0; d < D; ++d) p.gamma.push_back(u(rng));
    if (l.params.bias)
      for (int d = 0; d < D; ++d) p.beta.push_back(v(rng));
  }
  p.eps = 1e-5;
  p.momentum = 0.1;
  const PickInt pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  for (const auto& def : l.params.named) p.named[def.name] = def.draw(D, pick);
  return p;
}

inline State state_for(int D) {
  State s;
  for (int d = 0; d < D; ++d) {
    s.running_mean.push_back(0.25 * (d % 5) - 0.5);
    s.running_var.push_back(0.5 + 0.125 * (d % 7));
  }
  return s;
}

// Values k/16 in [-4, 4]; padding (t >= lengths[b]) holds `pad`.
inline Batch random_batch(int B, int T, int D, const std::vector<int>& lengths, std::mt19937& rng,
                          float pad = 0.0f) {
  std::uniform_int_distribution<int> k(-64, 64);
  Batch x(B, T, D);
  x.lengths = lengths;
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T; ++t)
      for (int d = 0; d < D; ++d) x.at(b, t, d) = t < lengths[b] ? float(k(rng)) / 16.0f : pad;
  return x;
}

// The row's mode for a call: stateless layers ignore it, stateful rows have their own.
inline Output run(const LayerRow& row, Impl impl, const Batch& x, const Params& p, State s) {
  Output out;
  row.layer->forward(impl)(x, p, row.mode(), &s, out);
  return out;
}

// "(b, t, d)" for messages (built with +=: GCC 12 warns falsely, -Wrestrict, on "(" + std::string).
inline std::string position(int b, int t, int d) {
  std::string s = "(";
  s += std::to_string(b);
  s += ", ";
  s += std::to_string(t);
  s += ", ";
  s += std::to_string(d);
  s += ")";
  return s;
}

inline bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

inline std::string test_name(std::string s) {
  for (auto& c : s)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return s;
}

}  // namespace normcheck::test
