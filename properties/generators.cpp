#include "properties/generators.hpp"

#include <cmath>
#include <limits>

namespace normcheck::gen {

using rc::gen::element;
using rc::gen::inRange;
using rc::gen::weightedElement;

const char* to_string(Regime r) {
  static constexpr const char* names[] = {"normal", "large_offset", "tiny_variance", "constant_rows",
                                          "dense"};
  return names[int(r)];
}

const char* to_string(Poison p) {
  static constexpr const char* names[] = {"0", "1e30", "-inf", "NaN"};
  return names[int(p)];
}

float poison_value(Poison p) {
  switch (p) {
    case Poison::zero: return 0.0f;
    case Poison::huge: return 1e30f;
    case Poison::neg_inf: return -std::numeric_limits<float>::infinity();
    case Poison::nan: return std::numeric_limits<float>::quiet_NaN();
  }
  return 0.0f;
}

int features() {
  // the small size is drawn first and kept, so a shrink from an awkward size lands on it
  const int small = *inRange(1, 9);
  switch (*weightedElement<int>({{6, 0}, {3, 1}, {1, 2}})) {
    case 1: return *element(7, 15, 17, 31, 33);
    case 2: return *element(63, 65, 100);
    default: return small;
  }
}

Shape shape(int min_T) {
  const int B = *inRange(1, 5);
  const int T = *inRange(min_T, 7);
  return {B, T, features()};
}

Regime regime() {
  return *weightedElement<Regime>({{12, Regime::normal},
                                   {1, Regime::large_offset},
                                   {1, Regime::tiny_variance},
                                   {1, Regime::constant_rows}});
}

Regime hard_regime() {
  return *weightedElement<Regime>({{3, Regime::normal},
                                   {2, Regime::large_offset},
                                   {2, Regime::tiny_variance},
                                   {2, Regime::constant_rows}});
}

Poison poison() { return *element(Poison::zero, Poison::huge, Poison::neg_inf, Poison::nan); }

namespace {

// Integers in [-m, m] that shrink towards 0 (inRange would shrink towards -m).
rc::Gen<int> centered(int m) {
  return rc::gen::map(inRange(0, 2 * m + 1), [](int k) { return k % 2 ? (k + 1) / 2 : -(k / 2); });
}

// D integers in one pick, so a token's values keep their place when D shrinks.
std::vector<int> ints(int D, int m) {
  return *rc::gen::container<std::vector<int>>(std::size_t(D), centered(m));
}

}  // namespace

std::vector<float> token(Regime r, int D) {
  std::vector<float> v(D);
  switch (r) {
    case Regime::normal: {  // k/16 in [-4, 4]
      const auto k = ints(D, 64);
      for (int d = 0; d < D; ++d) v[d] = float(k[d]) / 16.0f;
      break;
    }
    case Regime::large_offset: {  // 1e3 ± 0.1 on a 2^-10 grid
      const auto k = ints(D, 102);
      for (int d = 0; d < D; ++d) v[d] = 1000.0f + float(k[d]) / 1024.0f;
      break;
    }
    case Regime::tiny_variance: {  // c ± 2·2^-14 around one centre per token
      const float c = float(*centered(64)) / 16.0f;
      const auto k = ints(D, 2);
      for (int d = 0; d < D; ++d) v[d] = c + float(k[d]) / 16384.0f;
      break;
    }
    case Regime::constant_rows: {
      const float c = float(*centered(64)) / 16.0f;
      for (auto& e : v) e = c;
      break;
    }
    case Regime::dense: {  // k·2^-18 in [-4, 4]
      const auto k = ints(D, 1 << 20);
      for (int d = 0; d < D; ++d) v[d] = float(k[d]) / 262144.0f;
      break;
    }
  }
  return v;
}

void replace_after(Batch& x, int b, int s) {
  for (int t = s + 1; t < x.lengths[b]; ++t) {
    const auto v = token(Regime::normal, x.D);
    std::copy(v.begin(), v.end(), &x.at(b, t, 0));
  }
}

void fill_padding(Batch& x, Poison p) {
  const float v = poison_value(p);
  for (int b = 0; b < x.B; ++b)
    for (int t = x.lengths[b]; t < x.T; ++t)
      for (int d = 0; d < x.D; ++d) x.at(b, t, d) = v;
}

Batch batch(const Shape& s, Regime r, Poison p, const std::vector<int>& lengths) {
  Batch x(s.B, s.T, s.D);
  x.lengths = lengths;
  for (int b = 0; b < s.B; ++b)
    for (int t = 0; t < x.lengths[b]; ++t) {
      const auto v = token(r, s.D);
      std::copy(v.begin(), v.end(), &x.at(b, t, 0));
    }
  fill_padding(x, p);
  return x;
}

Batch batch(const Shape& s, Regime r, Poison p, int min_len) {
  std::vector<int> lengths(s.B);
  for (auto& l : lengths) l = *inRange(std::min(min_len, s.T), s.T + 1);
  return batch(s, r, p, lengths);
}

Params params(const LayerEntry& layer, int D) {
  Params p;
  const auto& spec = layer.params;
  if (spec.affine) {
    for (int k : ints(D, 4)) p.gamma.push_back(float(8 + k) / 8.0f);  // [0.5, 1.5], shrinks to 1
    if (spec.bias)
      for (int k : ints(D, 8)) p.beta.push_back(float(k) / 8.0f);  // [-1, 1], shrinks to 0
  }
  p.eps = *element(1e-5, 1e-6);
  if (spec.momentum) p.momentum = *element(0.1, 0.5, 1.0);
  const PickInt pick = [](int lo, int hi) { return *inRange(lo, hi + 1); };
  for (const auto& def : spec.named) p.named[def.name] = def.draw(D, pick);
  return p;
}

State state(int D) {
  State s;
  for (int k : ints(D, 8)) s.running_mean.push_back(double(k) / 8.0);
  for (int k : ints(D, 4)) s.running_var.push_back(double(8 + k) / 8.0);
  return s;
}

float scale_factor() { return float(*inRange(1, 17)) / 4.0f; }
float shift_amount() { return float(*centered(16)) / 4.0f; }

}  // namespace normcheck::gen
