#include "properties/generators.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>

#include "norms/kernels.hpp"
#include "properties/coverage.hpp"

namespace normcheck::gen {

using rc::gen::inRange;
using rc::gen::weightedElement;
namespace k = normcheck::kernels;

const char* to_string(Regime r) {
  static constexpr const char* names[] = {"normal",        "decimal",
                                          "dense",         "large_offset",
                                          "tiny_variance", "offset_tiny_variance",
                                          "constant_rows", "outlier_features",
                                          "ulp_spread"};
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

namespace {

// The generators' reach: a case never holds more values than this, whatever the thresholds say
// (a threshold raised beyond it is a regime no run draws, and the coverage test says so).
constexpr std::size_t kMediumMaxValues = std::size_t(1) << 17;  // 512 KB of float32
constexpr std::size_t kLargeMaxValues = std::size_t(3) << 21;   // 24 MB of float32
// Above this many values a batch's values come from one drawn seed instead of value by value.
constexpr std::size_t kPickedValues = 2048;
// RapidCheck's sizes run 0…100 (kNominalSize) over a default run.
constexpr int kMediumFromSize = 50;
constexpr int kLargeAtSize = 100;
// Reach::long_reduction's long axis: kLongAxisMin to kLongAxisMax values along it, at most
// kLongAxisShort along the other (4 rows when the rows are the short axis).
constexpr int kLongAxisMin = 4096, kLongAxisMax = 65536, kLongAxisShort = 16;
// Reach::large's wide cases: a few rows of a large model's hidden size (LLaMA-7B 4096, 65B 8192,
// GPT-3 12288, LLaMA-3 405B 16384), where a float32 reduction over one token is longest.
constexpr int kWideMinD = 4096, kWideMaxD = 16384;
constexpr double kWideChance = 1.0 / 3;
constexpr int kWideFromSize = 25;

// splitmix64: the source of a distribution's draw and of the values of seeded batches.
struct Rng {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  double uniform() { return double(next() >> 11) * 0x1.0p-53; }  // [0, 1)
  int in(int lo, int hi) {                                        // [lo, hi]
    return hi <= lo ? lo : lo + int(next() % uint64_t(hi - lo + 1));
  }
  bool chance(double p) { return uniform() < p; }
  // log-uniform integer in [lo, hi]
  int log_in(int lo, int hi) {
    if (hi <= lo) return lo;
    return std::clamp(int(std::lround(std::exp(std::log(double(lo)) +
                                                uniform() * (std::log(double(hi)) - std::log(double(lo)))))),
                      lo, hi);
  }
};

// An integer drawn by `draw` (any distribution, given RapidCheck's size) that shrinks as
// `shrinks` says.
rc::Gen<int> drawn_int(std::function<int(Rng&, int size)> draw, std::function<rc::Seq<int>(int)> shrinks) {
  return rc::Gen<int>([draw, shrinks](const rc::Random& random, int size) {
    rc::Random r(random);
    Rng rng{r.next()};
    return rc::shrinkable::shrinkRecur(draw(rng, size), shrinks);
  });
}

// An integer drawn by `draw` that shrinks towards `lo` as an integer: from any draw the shrinker
// can reach the smallest value that still fails.
rc::Gen<int> shrinking_int(int lo, std::function<int(Rng&, int size)> draw) {
  return drawn_int([lo, draw](Rng& rng, int size) { return std::max(lo, draw(rng, size)); },
                   [lo](int x) { return rc::shrink::towards(x, lo); });
}

// A draw's upper end at RapidCheck size `size`, as RapidCheck's own ranges grow.
int sized(int lo, int hi, int size) {
  return lo + int((long long)(hi - lo) * std::clamp(size, 0, 100) / 100);
}
// The same, growing with the square of the size: the first fifth of a run stays at the
// smallest widths, so the first counterexample a search meets is already small (a shrink of D
// is tried once, before the values shrink: RapidCheck never returns to an earlier pick)
int sized_slowly(int lo, int hi, int size) {
  const long long s = std::clamp(size, 0, 100);
  return lo + int((long long)(hi - lo) * s * s / 10000);
}

enum class Scale { small, medium, large, long_axis, wide };

// D near a threshold (within a vector's width either side) or log-uniform below twice the
// largest D threshold.
int draw_medium_D(Rng& r) {
  const int thresholds[] = {k::kLanes, k::kWideLanes, k::kRowGroupMaxD, k::kStatFeatures};
  if (r.chance(1.0 / 6)) return r.in(1, 3);  // many rows of few features
  if (r.chance(0.5)) {
    const int t = thresholds[r.in(0, 3)];
    return std::max(1, t + r.in(-k::kLanes - 1, k::kLanes + 1));
  }
  return r.log_in(1, 2 * std::max(k::kRowGroupMaxD, k::kStatFeatures) + 2 * k::kLanes);
}

// Rows (B·T) of D features for a medium case: across a row group, a multiple of BatchNorm's
// smallest block, the parallel threshold, or BatchNorm's statistics block (two blocks or more).
long long draw_medium_rows(Rng& r, int D) {
  long long rows = 1;
  switch (r.in(0, 3)) {
    case 0: rows = r.in(k::kRowGroup, 4 * k::kRowGroup + k::kRowGroup - 1); break;
    case 1: rows = (long long)k::kStatMinBlockRows * r.in(1, 4); break;
    case 2: rows = (long long)(k::kParallelMinValues + D - 1) / D + r.in(-2, 2); break;
    case 3: rows = (long long)k::stat_block_rows(D) * r.in(1, 2) + r.in(1, k::kStatMinBlockRows); break;
  }
  return std::clamp<long long>(rows, 1, (long long)(kMediumMaxValues / std::size_t(D)));
}

// A large case: past the streaming threshold (and so past kStatSegments BatchNorm blocks), D
// from the row-group and feature-tile range so that the rows stay few enough to compare.
int draw_large_D(Rng& r) {
  if (r.chance(0.5)) {
    const int t = r.chance(0.5) ? k::kRowGroupMaxD : k::kStatFeatures;
    return std::max(1, t + r.in(-k::kLanes - 1, k::kLanes + 1));
  }
  return r.log_in(8 * k::kLanes, 8 * std::max(k::kRowGroupMaxD, k::kStatFeatures));
}

long long draw_large_rows(Rng& r, int D) {
  const long long need = (long long)((k::kStreamMinBytes / sizeof(float) + std::size_t(D) - 1) / std::size_t(D));
  return std::clamp<long long>(need + r.in(0, k::kStatMinBlockRows), 1,
                               (long long)(kLargeMaxValues / std::size_t(D)));
}

}  // namespace

int current_size() {
  return *rc::gen::withSize([](int size) { return rc::gen::just(size); });
}

int integer(int lo, int hi, int toward) {
  return *rc::Gen<int>([lo, hi, toward](const rc::Random& random, int) {
    rc::Random r(random);
    Rng rng{r.next()};
    return rc::shrinkable::shrinkRecur(rng.in(lo, hi),
                                       [toward](int x) { return rc::shrink::towards(x, toward); });
  });
}

std::vector<int> integers(int n, int lo, int hi, int toward) {
  std::vector<int> v(std::size_t(std::max(n, 0)));
  if (n <= kFewPicks) {
    for (auto& e : v) e = integer(lo, hi, toward);
  } else {
    Rng rng{*rc::gen::arbitrary<uint64_t>()};
    for (auto& e : v) e = rng.in(lo, hi);
  }
  return v;
}

Shape shape(int min_T, Reach reach) {
  // the scale is a pick of its own that shrinks towards small (then B, T and D are drawn
  // afresh), only ever to a cheaper scale: small, then medium (a long reduction shrunk to a
  // large case would rerun millions of values at every step of a shrink); B, T and D shrink as
  // integers whatever scale drew them
  const auto cheaper = [](int s) {
    return Scale(s) == Scale::small    ? rc::Seq<int>()
           : Scale(s) == Scale::medium ? rc::seq::just(int(Scale::small))
                                       : rc::seq::just(int(Scale::small), int(Scale::medium));
  };
  const Scale scale = Scale(*drawn_int([reach](Rng& r, int s) {
    if (reach == Reach::large && s >= kLargeAtSize) return int(Scale::large);
    if (reach == Reach::large && s >= kWideFromSize && r.chance(kWideChance)) return int(Scale::wide);
    if (reach == Reach::parallel && r.chance(2.0 / 3)) return int(Scale::medium);
    if (reach == Reach::long_reduction && s >= kMediumFromSize)
      return int(r.chance(0.75) ? Scale::long_axis : Scale::medium);
    if (reach != Reach::small && s >= kMediumFromSize && r.chance(reach == Reach::large ? 0.5 : 0.25))
      return int(Scale::medium);
    return int(Scale::small);
  }, cheaper));
  const int D = *shrinking_int(1, [scale](Rng& r, int s) {
    switch (scale) {
      case Scale::small: {
        const int hi = sized_slowly(1, k::kWideLanes + k::kLanes, s);
        return r.chance(0.6) ? r.in(1, std::min(hi, k::kLanes + 1)) : r.in(1, hi);
      }
      case Scale::medium: return draw_medium_D(r);
      case Scale::large: return draw_large_D(r);
      case Scale::long_axis: return r.chance(0.5) ? r.in(1, kLongAxisShort) : r.log_in(kLongAxisMin, kLongAxisMax);
      case Scale::wide: return r.log_in(kWideMinD, kWideMaxD);
    }
    return 1;
  });
  // the rows a scale aims at (a pick of its own), split into B sequences of T tokens; medium
  // cases are now and then B sequences of one token (a decode step)
  const long long rows = *shrinking_int(1, [scale, D](Rng& r, int) {
    if (scale == Scale::small) return 1;
    if (scale == Scale::long_axis)  // many short rows, or a few long ones
      return D <= kLongAxisShort ? r.log_in(kLongAxisMin, kLongAxisMax) : r.in(1, 4);
    if (scale == Scale::wide) return r.in(1, int(kMediumMaxValues / std::size_t(D)));
    return int(scale == Scale::medium ? draw_medium_rows(r, D) : draw_large_rows(r, D));
  });
  const int B = *shrinking_int(1, [scale, rows, min_T](Rng& r, int s) {
    if (scale == Scale::small) return r.in(1, sized(1, 4, s));
    if (scale == Scale::medium && min_T <= 1 && rows <= 1024 && r.chance(0.25)) return int(rows);
    return int(std::min<long long>(rows, r.in(1, 8)));
  });
  const int T = *shrinking_int(min_T, [scale, rows, B, min_T](Rng& r, int s) {
    if (scale == Scale::small) return r.in(min_T, std::max(min_T, sized(1, 6, s)));
    return int(std::max<long long>(min_T, (rows + B - 1) / B));
  });
  return {B, T, D};
}

namespace {

// How often a draw picks each of the eight regimes of regime() and hard_regime(), relative to each
// other; the pick walks them in this order, so the same seed draws the same regime.
struct RegimeWeights {
  std::size_t normal, decimal, large_offset, tiny_variance, offset_tiny_variance, constant_rows;
  // last, so that weights of 0 leave the others' draws as they were
  std::size_t outlier_features = 0, ulp_spread = 0;
};

Regime weighted_regime(const RegimeWeights& w) {
  return *weightedElement<Regime>({{w.normal, Regime::normal},
                                   {w.decimal, Regime::decimal},
                                   {w.large_offset, Regime::large_offset},
                                   {w.tiny_variance, Regime::tiny_variance},
                                   {w.offset_tiny_variance, Regime::offset_tiny_variance},
                                   {w.constant_rows, Regime::constant_rows},
                                   {w.outlier_features, Regime::outlier_features},
                                   {w.ulp_spread, Regime::ulp_spread}});
}

}  // namespace

Regime regime() {
  return weighted_regime({.normal = 10, .decimal = 3, .large_offset = 1, .tiny_variance = 1,
                          .offset_tiny_variance = 1, .constant_rows = 1});
}

// Outlier features in 6 draws of 23, and in 26 of 43 at a large model's hidden size
// (D ≥ kWideMinD): massive activations — a few channels at 10³–10⁴ times the others in every
// token — are what the LLMs of that size carry (Sun et al., "Massive Activations in Large
// Language Models", 2024), and a float32 statistic over thousands of features is where such a
// channel costs the most bits. Spreads of a few ulps at a large offset in 4: where a float32 mean
// rounds onto one of the values and a moment from it (Welford's, a one-pass variance) loses the
// spread entirely, so that an output reaches |x − μ|/√ε.
Regime hard_regime(int D) {
  return weighted_regime({.normal = 3, .decimal = 2, .large_offset = 2, .tiny_variance = 2,
                          .offset_tiny_variance = 2, .constant_rows = 2,
                          .outlier_features = std::size_t(D >= kWideMinD ? 26 : 6),
                          .ulp_spread = 4});
}

Regime bitwise_regime() {
  return *weightedElement<Regime>({{3, Regime::decimal},
                                   {2, Regime::dense},
                                   {1, Regime::offset_tiny_variance},
                                   {1, Regime::large_offset}});
}

Poison poison() { return *rc::gen::element(Poison::zero, Poison::huge, Poison::neg_inf, Poison::nan); }

namespace {

// Integers in [-m, m] that shrink towards 0 (inRange would shrink towards -m).
rc::Gen<int> centered(int m) {
  return rc::gen::map(inRange(0, 2 * m + 1), [](int v) { return v % 2 ? (v + 1) / 2 : -(v / 2); });
}

// D integers in one pick, so a token's values keep their place when D shrinks.
std::vector<int> ints(int D, int m) {
  return *rc::gen::container<std::vector<int>>(std::size_t(D), centered(m));
}

}  // namespace

float pow2_offset(int m, int j) { return std::ldexp(1.0f + float(j) / 8.0f, m); }
float ulp_of_pow2_offset(int m) { return std::ldexp(1.0f, m - 23); }

namespace {

// The offset of the offset_tiny_variance regime: 1e4, 1e5 or 1e6 times 1 + j/8.
float big_offset(int e, int j) { return float(std::pow(10.0, e) * (1.0 + j / 8.0)); }

// A ulp_spread token: ±2^m·(1 + j/8) (8192 ≤ |c| < 2^20) plus k(d) ulps of it, |k| ≤ 4 — each a
// float, so the spread is exactly k ulps.
template <class K>
void ulp_spread_token(float* v, int D, int m, int j, bool negative, K&& k) {
  const float c = negative ? -pow2_offset(m, j) : pow2_offset(m, j), ulp = ulp_of_pow2_offset(m);
  for (int d = 0; d < D; ++d) v[d] = c + float(k(d)) * ulp;
}

// A token's values from a seeded source, in the regime's ranges; any float there, so sums round.
void seeded_token(float* v, int D, Regime r, Rng& rng) {
  switch (r) {
    case Regime::normal:
    case Regime::dense:
    case Regime::outlier_features:  // the outlier channels are added to the batch (outlier_channels)
      for (int d = 0; d < D; ++d) v[d] = float(rng.uniform() * 8.0 - 4.0);
      break;
    case Regime::decimal:
      for (int d = 0; d < D; ++d) v[d] = float(rng.in(-400, 400)) / 10.0f;
      break;
    case Regime::large_offset:
      for (int d = 0; d < D; ++d) v[d] = 1000.0f + float(rng.uniform() * 0.2 - 0.1);
      break;
    case Regime::tiny_variance: {
      const float c = float(rng.in(-64, 64)) / 16.0f;
      for (int d = 0; d < D; ++d) v[d] = c + float(rng.in(-2, 2)) / 16384.0f;
      break;
    }
    case Regime::offset_tiny_variance: {
      const float c = big_offset(rng.in(4, 6), rng.in(0, 7));
      for (int d = 0; d < D; ++d) v[d] = c + float(rng.in(-32, 32)) / 16.0f;
      break;
    }
    case Regime::constant_rows: {
      const float c = float(rng.in(-64, 64)) / 16.0f;
      for (int d = 0; d < D; ++d) v[d] = c;
      break;
    }
    case Regime::ulp_spread: {
      const int m = rng.in(13, 19), j = rng.in(0, 7);
      ulp_spread_token(v, D, m, j, rng.in(0, 1) == 1, [&rng](int) { return rng.in(-4, 4); });
      break;
    }
  }
}

// Regime::outlier_features: the channels of a batch (positions and values) that carry its
// outlier features, 1 to 3 of them, each ±10^e·(1 + j/8) for e = 2…4 (up to 2·10⁴ against values
// of at most 4), added to every token, as a trained model's massive activations sit in the same
// few channels of every token. The first one is at the row's first feature in half of the batches
// (where a kernel takes its shift or pivot: the shifted-data variance with K = x₀, Welford started
// from x₀, a peeled first element), at its last in a quarter (a reverse loop, a peeled tail),
// within its first vector (16 features) or anywhere in an eighth each; the others anywhere.
// Each pick shrinks towards position 0 and towards 10².
struct OutlierChannel {
  int position;
  float value;
};

std::vector<OutlierChannel> outlier_channels(int D) {
  const int n = std::min(D, *shrinking_int(1, [](Rng& r, int) { return r.in(1, 3); }));
  std::vector<OutlierChannel> out;
  for (int c = 0; c < n; ++c) {
    const int position = *shrinking_int(0, [D, c](Rng& r, int) {
      if (c == 0) {
        const int where = r.in(0, 7);
        if (where < 4) return 0;
        if (where < 6) return D - 1;
        if (where == 6) return r.in(0, std::min(D, 16) - 1);
      }
      return r.in(0, D - 1);
    });
    const int e = *shrinking_int(2, [](Rng& r, int) { return r.in(2, 4); });
    const int j = *shrinking_int(0, [](Rng& r, int) { return r.in(0, 7); });
    const bool negative = *shrinking_int(0, [](Rng& r, int) { return r.in(0, 1); }) == 1;
    const float value = float(std::pow(10.0, e) * (1.0 + j / 8.0));
    out.push_back({position, negative ? -value : value});
    coverage::note(position == 0       ? "outlier feature: first"
                   : position == D - 1 ? "outlier feature: last"
                   : position < 16     ? "outlier feature: in the first vector"
                                       : "outlier feature: inside");
  }
  return out;
}

void add_outliers(float* v, const std::vector<OutlierChannel>& channels) {
  for (const auto& c : channels) v[c.position] += c.value;
}

}  // namespace

std::vector<float> token(Regime r, int D) {
  std::vector<float> v(D);
  switch (r) {
    case Regime::outlier_features:  // one token alone: its own channels (batch() shares them)
      v = token(Regime::normal, D);
      add_outliers(v.data(), outlier_channels(D));
      break;
    case Regime::normal: {  // k/16 in [-4, 4]
      const auto q = ints(D, 64);
      for (int d = 0; d < D; ++d) v[d] = float(q[d]) / 16.0f;
      break;
    }
    case Regime::decimal: {  // k/10 in [-40, 40]
      const auto q = ints(D, 400);
      for (int d = 0; d < D; ++d) v[d] = float(q[d]) / 10.0f;
      break;
    }
    case Regime::dense: {  // k·2^-18 in [-4, 4]
      const auto q = ints(D, 1 << 20);
      for (int d = 0; d < D; ++d) v[d] = float(q[d]) / 262144.0f;
      break;
    }
    case Regime::large_offset: {  // 1e3 ± 0.1 on a 2^-10 grid
      const auto q = ints(D, 102);
      for (int d = 0; d < D; ++d) v[d] = 1000.0f + float(q[d]) / 1024.0f;
      break;
    }
    case Regime::tiny_variance: {  // c ± 2·2^-14 around one centre per token
      const float c = float(*centered(64)) / 16.0f;
      const auto q = ints(D, 2);
      for (int d = 0; d < D; ++d) v[d] = c + float(q[d]) / 16384.0f;
      break;
    }
    case Regime::offset_tiny_variance: {  // 1e4…1e6 ± 2 on a 1/16 grid
      const int e = *inRange(4, 7), j = *inRange(0, 8);
      const auto q = ints(D, 32);
      for (int d = 0; d < D; ++d) v[d] = big_offset(e, j) + float(q[d]) / 16.0f;
      break;
    }
    case Regime::constant_rows: {
      const float c = float(*centered(64)) / 16.0f;
      for (auto& e : v) e = c;
      break;
    }
    case Regime::ulp_spread: {  // ±2^m·(1 + j/8) + k·ulp, |k| ≤ 4: a spread of a few ulps
      const int m = *inRange(13, 20), j = *inRange(0, 8);
      const bool negative = *inRange(0, 2) == 1;
      const auto q = ints(D, 4);
      ulp_spread_token(v.data(), D, m, j, negative, [&q](int d) { return q[d]; });
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
  const std::size_t valid_values = std::size_t(x.valid_tokens()) * std::size_t(s.D);
  // outlier features: normal tokens, then the batch's outlier channels added to each
  const Regime values = r == Regime::outlier_features ? Regime::normal : r;
  if (valid_values > kPickedValues) {
    // too many values to draw one by one: one seed (shrinking it draws other values)
    Rng rng{*rc::gen::arbitrary<uint64_t>()};
    for (int b = 0; b < s.B; ++b)
      for (int t = 0; t < x.lengths[b]; ++t) seeded_token(&x.at(b, t, 0), s.D, values, rng);
  } else {
    for (int b = 0; b < s.B; ++b)
      for (int t = 0; t < x.lengths[b]; ++t) {
        const auto v = token(values, s.D);
        std::copy(v.begin(), v.end(), &x.at(b, t, 0));
      }
  }
  if (r == Regime::outlier_features && x.valid_tokens() > 0) {
    const auto channels = outlier_channels(s.D);
    for (int b = 0; b < s.B; ++b)
      for (int t = 0; t < x.lengths[b]; ++t) add_outliers(&x.at(b, t, 0), channels);
  }
  fill_padding(x, p);
  classify(x);
  classify(r);
  bool padded = false;
  for (int b = 0; b < x.B; ++b) padded = padded || x.lengths[b] < x.T;
  if (padded) coverage::note(std::string("poison:") + to_string(p));
  return x;
}

Batch batch(const Shape& s, Regime r, Poison p, int min_len, bool allow_empty) {
  std::vector<int> lengths(s.B);
  const int lo = std::min(min_len, s.T);
  if (s.B > kFewPicks) {  // many sequences: their lengths from one seed
    Rng rng{*rc::gen::arbitrary<uint64_t>()};
    for (auto& l : lengths)
      l = allow_empty && rng.chance(0.1) ? 0 : rng.chance(0.5) ? s.T : rng.in(lo, s.T);
    return batch(s, r, p, lengths);
  }
  for (auto& l : lengths) {
    // a few empty sequences (fully masked), when there are others
    if (allow_empty && s.B >= 2 && *shrinking_int(0, [](Rng& g, int) { return g.chance(0.1) ? 1 : 0; }))
      l = 0;
    else
      l = *shrinking_int(lo, [lo, T = s.T](Rng& g, int) { return g.chance(0.5) ? T : g.in(lo, T); });
  }
  return batch(s, r, p, lengths);
}

void make_extreme(Batch& x) {
  constexpr int kMixed = 99;
  for (int b = 0; b < x.B; ++b)
    for (int t = 0; t < x.lengths[b]; ++t) {
      const int e = *weightedElement<int>(
          {{2, 0}, {1, -38}, {1, -30}, {1, -20}, {1, 20}, {1, 25}, {2, 30}, {2, kMixed}});
      float* v = &x.at(b, t, 0);
      if (e == kMixed) {
        for (int d = 0; d < x.D; ++d)
          if (std::abs(v[d]) >= 2.0f) v[d] = v[d] > 0 ? 1e30f : -1e30f;
        coverage::note("magnitude:mixed with ±1e30");
      } else {
        const double m = std::pow(10.0, e);
        for (int d = 0; d < x.D; ++d) v[d] = float(double(v[d]) * m);
        coverage::note("magnitude:1e" + std::to_string(e));
      }
    }
}

// ---------------------------------------------------------------------------------------------
// classification

namespace {

struct SizeClass {
  const char* name;
  bool (*holds)(long long rows, int D, long long values);
};

// Every regime a kernel threshold defines (norms/kernels.hpp), on both sides of it.
const std::vector<SizeClass>& size_classes() {
  static const std::vector<SizeClass> all = {
      {"D<kLanes", [](long long, int D, long long) { return D < k::kLanes; }},
      {"D>kLanes, D%kLanes!=0 (vector tail)",
       [](long long, int D, long long) { return D > k::kLanes && D % k::kLanes != 0; }},
      {"D>=kWideLanes", [](long long, int D, long long) { return D >= k::kWideLanes; }},
      {"D>=kWideLanes, D%kWideLanes!=0 (wide tail)",
       [](long long, int D, long long) { return D > k::kWideLanes && D % k::kWideLanes != 0; }},
      {"rows<kRowGroup", [](long long rows, int, long long) { return rows < k::kRowGroup; }},
      {"rows>=kRowGroup, D<=kRowGroupMaxD (row groups)",
       [](long long rows, int D, long long) { return rows >= k::kRowGroup && D <= k::kRowGroupMaxD; }},
      {"rows>kRowGroup, rows%kRowGroup!=0 (group tail)",
       [](long long rows, int, long long) { return rows > k::kRowGroup && rows % k::kRowGroup != 0; }},
      {"rows>=kRowGroup, D>kRowGroupMaxD (rows one by one)",
       [](long long rows, int D, long long) { return rows >= k::kRowGroup && D > k::kRowGroupMaxD; }},
      {"rows%kStatMinBlockRows==0 (multiple of 16 rows)",
       [](long long rows, int, long long) { return rows >= k::kStatMinBlockRows && rows % k::kStatMinBlockRows == 0; }},
      {"values<kParallelMinValues", [](long long, int, long long v) { return v < (long long)k::kParallelMinValues; }},
      {"values>=kParallelMinValues", [](long long, int, long long v) { return v >= (long long)k::kParallelMinValues; }},
      {"D>kStatFeatures (feature tiles)", [](long long, int D, long long) { return D > k::kStatFeatures; }},
      {"rows>stat_block_rows(D) (BatchNorm blocks merged)",
       [](long long rows, int D, long long) { return rows > k::stat_block_rows(D); }},
      {"blocks>kStatSegments (segments of several blocks)",
       [](long long rows, int D, long long) {
         return rows > (long long)k::kStatSegments * k::stat_block_rows(D);
       }},
      {"bytes<kStreamMinBytes", [](long long, int, long long v) {
         return std::size_t(v) * sizeof(float) < k::kStreamMinBytes;
       }},
      {"bytes>=kStreamMinBytes (non-temporal stores)", [](long long, int, long long v) {
         return std::size_t(v) * sizeof(float) >= k::kStreamMinBytes;
       }},
  };
  return all;
}

}  // namespace

void classify(const Batch& x) {
  const long long rows = (long long)x.B * x.T, values = rows * x.D;
  for (const auto& c : size_classes())
    if (c.holds(rows, x.D, values)) coverage::note(c.name);
  if (x.T == 1) coverage::note("T=1");
  if (rows >= kLongAxisMin && x.D <= kLongAxisShort) coverage::note("long reduction over rows");
  if (x.D >= kLongAxisMin) coverage::note("long reduction over features");
  for (int b = 0; b < x.B; ++b)
    if (x.lengths[b] == 0) coverage::note("empty sequence");
}

void classify(Regime r) { coverage::note(std::string("regime:") + to_string(r)); }

std::vector<std::string> threshold_classes() {
  std::vector<std::string> out;
  for (const auto& c : size_classes()) out.push_back(c.name);
  return out;
}

// ---------------------------------------------------------------------------------------------
// parameters

namespace {

// D integers in [-m, m] for per-feature parameters: one pick each (shrinking to 0) up to
// kPickedValues features, beyond it from one drawn seed, as a batch's values are: a wide case
// must not hold thousands of picks, each a shrink candidate that reruns the whole case.
std::vector<int> feature_ints(int D, int m) {
  return std::size_t(D) > kPickedValues ? integers(D, -m, m, 0) : ints(D, m);
}

}  // namespace

Params params(const LayerEntry& layer, int D) {
  Params p;
  const auto& spec = layer.params;
  if (spec.affine) {
    for (int q : feature_ints(D, 4)) p.gamma.push_back(float(8 + q) / 8.0f);  // [0.5, 1.5], shrinks to 1
    if (spec.bias)
      for (int q : feature_ints(D, 8)) p.beta.push_back(float(q) / 8.0f);  // [-1, 1], shrinks to 0
  }
  // parameters are drawn over their whole range at every size (they do not grow with a case)
  const PickInt pick = [](int lo, int hi) {
    return *shrinking_int(lo, [lo, hi](Rng& r, int) { return r.in(lo, hi); });
  };
  p.eps = eps_param().draw(D, pick);
  if (spec.momentum) p.momentum = *rc::gen::element(0.1, 0.5, 1.0);
  for (const auto& def : spec.named) p.named[def.name] = def.draw(D, pick);
  return p;
}

State state(int D) {
  State s;
  for (int q : feature_ints(D, 8)) s.running_mean.push_back(double(q) / 8.0);
  for (int q : feature_ints(D, 4)) s.running_var.push_back(double(8 + q) / 8.0);
  return s;
}

float scale_factor() { return float(*inRange(1, 17)) / 4.0f; }
float shift_amount() { return float(*centered(16)) / 4.0f; }

namespace {

// n multiples of 1/4, q/4 for q in [lo, hi]: for a few, a pick of `one` each (so each shrinks on
// its own); for many, integers(n, lo, hi, toward) from one seed.
std::vector<float> quarters(int n, float (*one)(), int lo, int hi, int toward) {
  std::vector<float> v;
  if (n <= kFewPicks) {
    v.resize(std::size_t(std::max(n, 0)));
    for (auto& e : v) e = one();
  } else {
    for (int q : integers(n, lo, hi, toward)) v.push_back(float(q) / 4.0f);
  }
  return v;
}

}  // namespace

std::vector<float> scale_factors(int n) { return quarters(n, scale_factor, 1, 16, 4); }
std::vector<float> shift_amounts(int n) { return quarters(n, shift_amount, -16, 16, 0); }

}  // namespace normcheck::gen
