// What the attention cells share (internal to attention/): generators of values on exact
// float grids, masks and shapes, small formatting helpers, and the check functions each family
// exports to the registry in attention_cells.cpp.
//
// Tolerance of every attention comparison: the rule of PROPERTIES.md,
// |a − b| ≤ 1e-5 + 2e-6·cond + 1e-5·|b|, with the attention's own conditioning in place of
// |mean|/std: the first-order effect of float32 logit rounding on the output (sdpa_cells.cpp and
// mha_cells.cpp derive it). u = 2^-24 and 2e-6 ≈ 33u. Two runs of one implementation are
// compared with the same rule and the larger of the two sides' cond.
#pragma once

#include <cmath>
#include <limits>
#include <map>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include <rapidcheck.h>

#include "properties/engine.hpp"

namespace normcheck::attn {

using rc::gen::inRange;

inline constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// ---------------------------------------------------------------------------------------------
// generators: values on exact float grids, drawn from integers that shrink towards 0

inline rc::Gen<int> centered(int m) {
  return rc::gen::map(inRange(0, 2 * m + 1), [](int k) { return k % 2 ? (k + 1) / 2 : -(k / 2); });
}

inline std::vector<int> ints(std::size_t n, int m) {
  return *rc::gen::container<std::vector<int>>(n, centered(m));
}

// n values k/16 in [-4, 4]
inline std::vector<float> values(std::size_t n) {
  std::vector<float> v;
  v.reserve(n);
  for (int k : ints(n, 64)) v.push_back(float(k) / 16.0f);
  return v;
}

// Pushes values off the dyadic grids (each times 1 + 0.37·sin(i)), so that float32 rounds
// at every step as it does on real activations: reference_agreement draws these half the time.
inline void roughen(std::vector<float>& v, int salt) {
  for (std::size_t i = 0; i < v.size(); ++i) v[i] *= float(1.0 + 0.37 * std::sin(double(i) + salt));
}

inline std::vector<int> permutation(int n) {
  std::vector<int> p(n);
  std::iota(p.begin(), p.end(), 0);
  for (int i = 0; i + 1 < n; ++i) std::swap(p[i], p[*inRange(i, n)]);
  return p;
}

inline std::vector<int> key_lengths(int B, int Tk) {
  std::vector<int> l(B);
  for (auto& x : l)
    x = *rc::gen::weightedOneOf<int>(
        {{1, rc::gen::just(0)}, {2, rc::gen::just(Tk)}, {5, inRange(1, Tk + 1)}});
  return l;
}

enum class Causal { never, maybe, always };
enum class Queries { any, self, at_most_keys };

inline bool draw_causal(Causal c) {
  return c == Causal::always || (c == Causal::maybe && *rc::gen::arbitrary<bool>());
}

inline std::string at(std::initializer_list<int> idx) {
  std::string s = "[";
  for (int i : idx) {
    if (s.size() > 1) s += ',';
    s += std::to_string(i);
  }
  return s + "]";
}

inline std::string list(const std::vector<int>& v) {
  std::string s = "[";
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

template <class T>
inline std::vector<double> widen(const std::vector<T>& v) {
  return {v.begin(), v.end()};
}

// ---------------------------------------------------------------------------------------------
// KV cache schedules

// Chunk schedules of a sequence of L tokens: chunks of 1, 2, 3 and L, and a prefill of P
// tokens followed by single-token decoding.
inline std::vector<std::pair<std::string, std::vector<int>>> schedules(int L, int P) {
  std::vector<std::pair<std::string, std::vector<int>>> all;
  for (int size : {1, 2, 3, L}) {
    std::vector<int> s;
    for (int t = 0; t < L; t += size) s.push_back(std::min(size, L - t));
    all.push_back({"chunks of " + std::to_string(size), s});
  }
  std::vector<int> s = {P};
  for (int t = P; t < L; ++t) s.push_back(1);
  all.push_back({"prefill " + std::to_string(P) + " + decode", s});
  return all;
}

// ---------------------------------------------------------------------------------------------
// the check functions of each family, by property id

using CheckFn = CaseOutcome (*)(Impl);
std::map<std::string, CheckFn> sdpa_checks();
std::map<std::string, CheckFn> mha_checks();

}  // namespace normcheck::attn
