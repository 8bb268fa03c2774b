// The norm family (../docs/PROPERTIES.md, "Norm properties"). Each property is a metamorphic
// relation written as a scenario: two sides, each a sequence of layer calls (an input and a
// related input), and the pairs of token positions whose outputs must agree. One function runs
// any scenario, compares it with the comparison module and records the evidence.
#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <stdexcept>
#include <utility>

#include "properties/coverage.hpp"
#include "properties/families.hpp"
#include "properties/generators.hpp"
#include "properties/rejection.hpp"
#include "properties/norm_scenarios.hpp"
#include "properties/texts.hpp"
#include "properties/threads.hpp"

namespace normcheck {
// not an anonymous namespace: the gradient family reuses the scenarios (norm_scenarios.hpp)
namespace norm_scenario {

using nlohmann::json;
using rc::gen::inRange;

// A norm property as code declares it: its id, the scenario that draws one case, and how the two
// sides compare (its words are in catalogue.json).
using ScenarioFn = Scenario (*)(const LayerRow&);

struct NormProperty {
  std::string id;
  ScenarioFn scenario;
  Comparison comparison = Comparison::values;
  bool eps_sensitive = false;
  Applicability applies = {};
};

std::vector<std::pair<TokenPos, TokenPos>> valid_pairs(const Batch& x, int ca, int cb) {
  std::vector<std::pair<TokenPos, TokenPos>> pairs;
  for (int b = 0; b < x.B; ++b)
    for (int t = 0; t < x.lengths[b]; ++t) pairs.push_back({{ca, b, t}, {cb, b, t}});
  return pairs;
}

int min_len(const LayerRow& row) { return row.mode() == Mode::train ? 2 : 1; }

// A base case: its shape within `reach`, parameters, running statistics and a padded batch
// (with empty sequences now and then when `allow_empty`: properties that pick a valid token of
// a sequence do not allow them).
Base draw_base(const LayerRow& row, gen::Reach reach, int min_B, bool allow_empty,
               gen::Regime regime, bool draw_regime, bool external_medium) {
  // Medium cases aim at normcheck's own kernels' thresholds. An external kernel is held over
  // many rows by reference_agreement, thread_determinism and the numerical-range properties;
  // in the metamorphic ones its float32 sums over thousands of rows (oneDNN's batch
  // normalization) drift to about the tolerance rule's bound, so a medium case would make each
  // such cell a coin toss rather than a finding.
  if (reach == gen::Reach::medium && row.layer->origin == "external" && !external_medium)
    reach = gen::Reach::small;
  Base base;
  base.min_len = min_len(row);
  base.shape = gen::shape(base.min_len, reach);
  base.shape.B = std::max(base.shape.B, min_B);
  base.params = gen::params(*row.layer, base.shape.D);
  base.state = gen::state(base.shape.D);
  base.x = gen::batch(base.shape, draw_regime ? gen::regime() : regime, gen::poison(),
                      base.min_len, allow_empty);
  return base;
}

// Same input on both sides, one call each in the row's mode.
Scenario same_input(const Base& base, Mode mode) {
  Scenario s;
  s.params = base.params;
  s.state = base.state;
  s.a.calls = {{base.x, mode}};
  s.b.calls = {{base.x, mode}};
  s.pairs = valid_pairs(base.x);
  return s;
}

// The input, and `related` as side b (one call in the same mode); every valid token compared.
Scenario related(const Base& base, Mode mode, Batch related) {
  Scenario s = same_input(base, mode);
  s.b.calls = {{std::move(related), mode}};
  return s;
}

std::string fmt_list(const std::vector<float>& v) {
  std::string s = "[";
  const std::size_t shown = std::min<std::size_t>(v.size(), 16);
  for (std::size_t i = 0; i < shown; ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  if (shown < v.size()) s += ", … (" + std::to_string(v.size()) + " values)";
  return s + "]";
}

// ---------------------------------------------------------------------------------------------
// scenario builders

Scenario batch_independence(const LayerRow& row) {
  Base base = draw_base(row, gen::Reach::medium);
  const int b = *inRange(0, base.shape.B);
  const int B2 = *inRange(1, 5);
  const int j = *inRange(0, B2);
  Batch y = gen::batch({B2, base.shape.T, base.shape.D}, gen::regime(), gen::poison(), base.min_len);
  y.lengths[j] = base.x.lengths[b];
  for (int t = 0; t < base.shape.T; ++t)
    for (int d = 0; d < base.shape.D; ++d) y.at(j, t, d) = base.x.at(b, t, d);
  Scenario s = related(base, row.mode(), y);
  s.pairs.clear();
  for (int t = 0; t < base.x.lengths[b]; ++t) s.pairs.push_back({{0, b, t}, {0, j, t}});
  s.note = "sequence " + std::to_string(b) + " moved to index " + std::to_string(j) +
           " of a batch of " + std::to_string(B2);
  return s;
}

Scenario padding_invariance(const LayerRow& row) {
  Base base = draw_base(row, gen::Reach::medium, 1, true);
  const int extra = *inRange(0, 4);
  const auto p = gen::poison();
  Batch y(base.shape.B, base.shape.T + extra, base.shape.D);
  y.lengths = base.x.lengths;
  for (int b = 0; b < y.B; ++b)
    for (int t = 0; t < base.shape.T; ++t)
      for (int d = 0; d < y.D; ++d) y.at(b, t, d) = base.x.at(b, t, d);
  gen::fill_padding(y, p);
  Scenario s = related(base, row.mode(), y);
  s.note = std::to_string(extra) + " padding positions appended, all padding set to " +
           gen::to_string(p);
  return s;
}

// One sequence b of the input with fresh valid tokens in place of its own: token t alone
// (token_independence: every other token compared) or every token after t (causality: b's
// tokens up to t compared).
enum class Replace { one_token, the_future };

Scenario replaced(const LayerRow& row, Replace what) {
  Base base = draw_base(row, gen::Reach::medium);
  const int b = *inRange(0, base.shape.B);
  const int t = *inRange(0, base.x.lengths[b]);
  Batch y = base.x;
  if (what == Replace::the_future) {
    gen::replace_after(y, b, t);
    Scenario s = related(base, row.mode(), y);
    s.pairs.clear();
    for (int k = 0; k <= t; ++k) s.pairs.push_back({{0, b, k}, {0, b, k}});
    s.note = "tokens after position " + std::to_string(t) + " of sequence " + std::to_string(b) +
             " replaced";
    return s;
  }
  const auto v = gen::token(gen::Regime::normal, base.shape.D);
  std::copy(v.begin(), v.end(), &y.at(b, t, 0));
  Scenario s = related(base, row.mode(), y);
  std::erase_if(s.pairs, [&](const auto& pr) { return pr.first.b == b && pr.first.t == t; });
  s.note = "token (" + std::to_string(b) + ", " + std::to_string(t) + ") replaced by " + fmt_list(v);
  return s;
}

Scenario token_independence(const LayerRow& row) { return replaced(row, Replace::one_token); }
Scenario causality(const LayerRow& row) { return replaced(row, Replace::the_future); }

// Training batches from the same distribution (same shape and regime), run in train mode.
std::vector<Batch> training_batches(const Base& base) {
  std::vector<Batch> w;
  const int k = *inRange(1, 4);
  for (int i = 0; i < k; ++i) w.push_back(gen::batch(base.shape, gen::Regime::normal, gen::Poison::zero, base.min_len));
  return w;
}

// The input in train mode on both sides, after the same training batches: the mode-comparing
// properties then change side b.
Scenario after_training(const LayerRow& row, Base& base) {
  base = draw_base(row, gen::Reach::small);
  base.x = gen::batch(base.shape, gen::Regime::normal, gen::poison(), base.min_len);
  Scenario s = same_input(base, Mode::train);
  s.a.warmup = s.b.warmup = training_batches(base);
  return s;
}

Scenario train_inference_equivalence(const LayerRow& row) {
  Base base;
  Scenario s = after_training(row, base);
  s.b.calls = {{base.x, Mode::eval}};
  s.note = "train-mode output vs eval-mode output after " + std::to_string(s.a.warmup.size()) +
           " training batches";
  return s;
}

Scenario streaming_equivalence(const LayerRow& row) {
  Base base;
  Scenario s = after_training(row, base);
  s.b.calls.clear();
  s.pairs.clear();
  for (int b = 0; b < base.x.B; ++b)
    for (int t = 0; t < base.x.lengths[b]; ++t) {
      Batch one(1, 1, base.shape.D);
      std::copy(&base.x.at(b, t, 0), &base.x.at(b, t, 0) + base.shape.D, one.x.begin());
      s.pairs.push_back({{0, b, t}, {int(s.b.calls.size()), 0, 0}});
      s.b.calls.push_back({one, Mode::eval});
    }
  s.note = "full batch in train mode vs every token alone in eval mode";
  return s;
}

// The input and a related input that is the input with `op` applied: per valid token (each its
// own drawn value) or per feature (each its own value, at every position).
enum class Each { token, feature };

template <class Op>
Scenario transformed(const LayerRow& row, Each each, std::vector<float> (*draw)(int), Op op,
                     const std::string& what) {
  Base base = draw_base(row, gen::Reach::medium, 1, true);
  Batch y = base.x;
  std::vector<float> drawn;
  if (each == Each::feature) {
    drawn = draw(y.D);
    for (std::size_t i = 0; i < y.x.size(); ++i) op(y.x[i], drawn[i % y.D]);
  } else {
    drawn = draw(int(y.valid_tokens()));
    std::size_t k = 0;
    for (int b = 0; b < y.B; ++b)
      for (int t = 0; t < y.lengths[b]; ++t, ++k)
        for (int d = 0; d < y.D; ++d) op(y.at(b, t, d), drawn[k]);
  }
  Scenario s = related(base, row.mode(), y);
  s.note = (each == Each::token ? "valid tokens " : "features ") + what + " " + fmt_list(drawn) +
           (each == Each::feature ? " at every position" : "");
  return s;
}

void scale(float& v, float a) { v *= a; }
void shift(float& v, float c) { v += c; }

Scenario token_scale_invariance(const LayerRow& row) {
  return transformed(row, Each::token, gen::scale_factors, scale, "scaled by");
}

Scenario token_shift_invariance(const LayerRow& row) {
  return transformed(row, Each::token, gen::shift_amounts, shift, "shifted by");
}

Scenario feature_scale_invariance(const LayerRow& row) {
  return transformed(row, Each::feature, gen::scale_factors, scale, "scaled by");
}

Scenario feature_shift_invariance(const LayerRow& row) {
  return transformed(row, Each::feature, gen::shift_amounts, shift, "shifted by");
}

Scenario global_scale_invariance(const LayerRow& row) {
  Base base = draw_base(row, gen::Reach::medium, 1, true);
  Batch y = base.x;
  const float a = gen::scale_factor();
  for (auto& v : y.x) v *= a;
  Scenario s = related(base, row.mode(), y);
  s.note = "every position scaled by " + std::to_string(a);
  return s;
}

Scenario batch_permutation_equivariance(const LayerRow& row) {
  Base base = draw_base(row, gen::Reach::medium, 1, true);
  const int B = base.shape.B;
  std::vector<int> perm(B);
  for (int i = 0; i < B; ++i) perm[i] = i;
  // Fisher–Yates: swap i with i + u_i, u_i in [0, B − 1 − i] (each shrinking towards no swap)
  const auto u = gen::integers(std::max(B - 1, 0), 0, B, 0);
  for (int i = 0; i + 1 < B; ++i) std::swap(perm[i], perm[i + u[i] % (B - i)]);
  Batch y = base.x;
  for (int i = 0; i < B; ++i) {
    y.lengths[i] = base.x.lengths[perm[i]];
    for (int t = 0; t < y.T; ++t)
      for (int d = 0; d < y.D; ++d) y.at(i, t, d) = base.x.at(perm[i], t, d);
  }
  Scenario s = related(base, row.mode(), y);
  s.pairs.clear();
  for (int i = 0; i < B; ++i)
    for (int t = 0; t < y.lengths[i]; ++t) s.pairs.push_back({{0, perm[i], t}, {0, i, t}});
  std::string p = "[";
  for (int i = 0; i < B; ++i) p += (i ? ", " : "") + std::to_string(perm[i]);
  s.note = "sequences permuted: new order " + p + "]";
  return s;
}

Scenario nan_containment(const LayerRow& row) {
  Base base = draw_base(row, gen::Reach::medium, 2);
  base.x = gen::batch(base.shape, gen::regime(), gen::Poison::zero, base.min_len);
  const int b = *inRange(0, base.shape.B);
  const int t = *inRange(0, base.x.lengths[b]);
  const int d = *inRange(0, base.shape.D);
  Batch y = base.x;
  y.at(b, t, d) = std::numeric_limits<float>::quiet_NaN();
  Scenario s = related(base, row.mode(), y);
  s.pairs.erase(std::remove_if(s.pairs.begin(), s.pairs.end(),
                               [&](const auto& pr) { return pr.first.b == b; }),
                s.pairs.end());
  s.note = "NaN written at (" + std::to_string(b) + ", " + std::to_string(t) + ", " +
           std::to_string(d) + ")";
  return s;
}

// The batch cut along B into k consecutive shards, 2 ≤ k ≤ min(B, 4), of uneven sizes: the first
// k − 1 sizes drawn (shrinking towards one sequence each), the last shard the rest.
ShardCut draw_cut(int B) {
  const int k = gen::integer(2, std::min(B, 4), 2);
  ShardCut cut;
  int left = B;
  for (int i = 0; i + 1 < k; ++i) {
    const int size = gen::integer(1, left - (k - 1 - i), 1);
    cut.push_back(size);
    left -= size;
  }
  cut.push_back(left);
  return cut;
}

Scenario shard_invariance(const LayerRow& row) {
  // B ≥ 2 and no empty sequence (every shard holds a token, as min_len asks of train rows);
  // padding zero: what poison in the padding does is padding_invariance's question, and NaN
  // padding would make a batch-statistics row disagree by NaN rather than by its statistics
  Base base = draw_base(row, gen::Reach::medium, 2);
  base.x = gen::batch(base.shape, gen::regime(), gen::Poison::zero, base.min_len);
  const ShardCut cut = draw_cut(base.shape.B);
  Scenario s = same_input(base, row.mode());
  s.b.calls[0].shards = cut;
  s.compare_state = row.layer->stateful();
  std::string c;
  for (int size : cut) c += (c.empty() ? "" : ", ") + std::to_string(size);
  s.note = "the whole batch (a) vs the batch cut into " + std::to_string(cut.size()) +
           " shards of [" + c + "] sequences (b)";
  return s;
}

Scenario reference_agreement(const LayerRow& row) {
  Base base;
  base.min_len = min_len(row);
  base.shape = gen::shape(base.min_len, gen::Reach::large);
  base.params = gen::params(*row.layer, base.shape.D);
  base.state = gen::state(base.shape.D);
  base.x = gen::batch(base.shape, gen::hard_regime(base.shape.D), gen::poison(), base.min_len, true);
  Scenario s = same_input(base, row.mode());
  s.b.impl = Impl::reference;
  s.compare_state = row.layer->stateful();
  s.note = "optimized (a) vs reference (b)";
  return s;
}

Scenario thread_determinism(const LayerRow& row) {
  // two thirds of the cases large enough for the kernels' parallel paths (kParallelMinValues):
  // wide (row and feature-block counts that split differently for every thread count) or tall
  // and narrow (many rows of 1–3 features: where a library splits one reduction over threads),
  // with values whose sums round, so that any change of summation order shows in the last bits
  Base base = draw_base(row, gen::Reach::parallel, 1, true, gen::bitwise_regime(), false);
  Scenario s = same_input(base, row.mode());
  s.a.threads = 1;
  s.b.threads = *rc::gen::element(1, 2, 3, 4);
  s.compare_state = row.layer->stateful();
  s.note = "1 thread (a) vs " + std::to_string(s.b.threads) + " threads (b)";
  return s;
}

// A sequence alone, then inside a batch of 1 to 512 tokens at any index: the optimized output
// must be bitwise the same, whatever the chunking of the rows over threads.
Scenario batch_invariance_bitwise(const LayerRow& row) {
  // values whose sums round in float32: a reduction whose order depends on the batch shows
  const gen::Regime regime = gen::bitwise_regime();
  Base base = draw_base(row, gen::Reach::small, 1, false, regime, false);
  const int L = base.x.lengths[0];
  Batch alone(1, L, base.shape.D);
  std::copy(base.x.x.begin(), base.x.x.begin() + std::size_t(L) * base.shape.D, alone.x.begin());
  const int B2 = *inRange(1, 9);
  const int T2 = *inRange(L, 65);
  const int j = *inRange(0, B2);
  Batch big = gen::batch({B2, T2, base.shape.D}, regime, gen::poison(), std::min(base.min_len, T2));
  big.lengths[j] = L;
  for (int t = 0; t < L; ++t)
    for (int d = 0; d < base.shape.D; ++d) big.at(j, t, d) = alone.at(0, t, d);
  Scenario s = same_input(base, row.mode());
  s.a.calls = {{alone, row.mode()}};
  s.b.calls = {{big, row.mode()}};
  s.pairs.clear();
  for (int t = 0; t < L; ++t) s.pairs.push_back({{0, 0, t}, {0, j, t}});
  s.note = "a sequence of " + std::to_string(L) + " tokens alone vs at index " + std::to_string(j) +
           " of a batch of " + std::to_string(B2 * T2) + " positions";
  return s;
}

// ---------------------------------------------------------------------------------------------
// numerical range: what float32 kernels get wrong at the ends of the range (the variance of
// ±1e30 overflowing, x² beyond 1.8e19, E[x²] − E[x]² at a large offset), held against every
// row, external ones included. They check the optimized kernel: the reference computes in
// double, where these ranges are ordinary.

Scenario finite_output(const LayerRow& row) {
  Base base = draw_base(row, gen::Reach::small, 1, true);
  gen::make_extreme(base.x);
  Scenario s = same_input(base, row.mode());
  s.a.impl = Impl::reference;  // the double reference: finite wherever the exact result is
  s.note = "the double reference (a) vs the optimized kernel (b) on finite values of extreme magnitude";
  return s;
}

Scenario scale_range_invariance(const LayerRow& row) {
  Base base = draw_base(row, gen::Reach::small, 1, true);
  // zeros in the padding: a scaled 1e30 would leave float range (BatchNorm's naive use reads it)
  gen::fill_padding(base.x, gen::Poison::zero);
  // a power of two, so the scaled input is exact: 2^-66 ≈ 1.4e-20 … 2^83 ≈ 9.7e24
  const int e = gen::integer(-66, 83, 0);
  Batch y = base.x;
  for (auto& v : y.x) v = std::ldexp(v, e);
  Scenario s = related(base, row.mode(), y);
  s.note = "every position scaled by 2^" + std::to_string(e) + " (" + std::to_string(std::ldexp(1.0, e)) + ")";
  return s;
}

Scenario constant_token(const LayerRow& row) {
  Base base = draw_base(row, gen::Reach::small);
  const int b = *inRange(0, base.shape.B);
  const int t = *inRange(0, base.x.lengths[b]);
  const float c = float(*rc::gen::element(0.0, 1.0, -3.5, 1000.1, 4e4, 1e20, -1e30, 1e-30, 1e-40));
  for (int d = 0; d < base.shape.D; ++d) base.x.at(b, t, d) = c;
  Scenario s = same_input(base, row.mode());
  s.b.calls.clear();
  s.pairs.clear();
  std::vector<double> beta(base.shape.D, 0.0);
  for (int d = 0; d < base.shape.D && !base.params.beta.empty(); ++d) beta[d] = base.params.beta[d];
  s.expected = {{{0, b, t}, beta}};
  s.note = "token (" + std::to_string(b) + ", " + std::to_string(t) + ") set to the constant " +
           std::to_string(c) + "; its output compared with β";
  return s;
}

Scenario offset_invariance(const LayerRow& row) {
  // medium cases for external rows too, and long reductions: the error of a float32
  // accumulation at a large offset grows with the count of values summed into one statistic
  // (over the rows for batch statistics, over the features for a token's), so it often shows
  // only beyond about a thousand of them
  Base base = draw_base(row, gen::Reach::long_reduction, 1, true, gen::Regime::normal, false,
                        true);
  // 2^m·(1 + j/8), 8192 ≤ offset < 2^20
  const int m = *inRange(13, 19), j = *inRange(0, 8);
  const float offset = gen::pow2_offset(m, j);
  // The claim's other half, a tiny spread: in one case in four every value becomes a whole
  // number of the offset's units in the last place (|k| ≤ 16), so each token's and each
  // feature's spread is a few ulps of x + offset, where a float32 variance loses it entirely
  // (E[x²] − E[x]² cancels; a running mean rounds onto one of the values).
  const float ulp = gen::ulp_of_pow2_offset(m);
  const bool few_ulps = *inRange(0, 4) == 0;
  // Side a is side b minus the offset exactly: x ← fl(x + offset) − offset (exact by Sterbenz
  // for |x| < offset / 2). Values off the k/16 grid (dense and long cases) would otherwise round
  // when shifted, and side b would hold another spread than side a, not the same one moved.
  // Poison and huge values are left as they are (they are only compared where they are padding).
  for (auto& v : base.x.x) {
    if (!std::isfinite(v) || std::fabs(v) >= offset / 4) continue;
    if (few_ulps) v = ulp * std::nearbyint(std::clamp(v, -4.0f, 4.0f) * 4.0f);
    v = (v + offset) - offset;
  }
  // at every position, as feature_shift_invariance does: BatchNorm's naive use counts padding
  Batch y = base.x;
  for (auto& v : y.x) v += offset;
  gen::classify(gen::Regime::offset_tiny_variance);
  if (few_ulps) coverage::note("offset: spread of a few ulps");
  Scenario s = related(base, row.mode(), y);
  s.note = "every position plus " + std::to_string(offset) + " (a large offset, the spread unchanged)";
  return s;
}

// ---------------------------------------------------------------------------------------------
// running a scenario: both sides, the comparison, the evidence

struct SideOut {
  std::vector<Output> outs;
  std::vector<Conditioning> conds;
  State state;
};

// Runs a side with `impl` (the side's own, or the cell's).
SideOut run_side(const LayerRow& row, Impl impl, const Scenario& sc, const Side& side) {
  const ForwardFn& f = row.layer->forward(impl);
  SideOut r;
  r.state = sc.state;
  ThreadScope threads(side.threads);
  for (const auto& w : side.warmup) {
    Output tmp;
    f(w, sc.params, Mode::train, &r.state, tmp);
  }
  for (const auto& c : side.calls) {
    const State before = r.state;
    Output o;
    if (c.shards.empty())
      f(c.batch, sc.params, c.mode, &r.state, o);
    else
      row.layer->forward_on_shards(impl, c.batch, c.shards, sc.params, c.mode, &r.state, o);
    // a sharded call's conditioning is the whole batch's: the rows that keep shard invariance
    // give each element the statistics the whole batch gives it
    // (the others, with statistics of their own shard, are expected to break it)
    r.outs.push_back(std::move(o));
    r.conds.push_back(row.layer->conditioning(c.batch, sc.params, c.mode, &before));
  }
  return r;
}

double finite_or_zero(double v) { return std::isfinite(v) ? v : 0.0; }

const Labels kTokenLabels{{"b", "t"}, "d", "x", "y"};

json params_json(const Scenario& sc) {
  json p = {{"eps", sc.params.eps}};
  if (!sc.params.gamma.empty()) p["gamma"] = sc.params.gamma;
  if (!sc.params.beta.empty()) p["beta"] = sc.params.beta;
  p["momentum"] = sc.params.momentum;
  for (const auto& [name, v] : sc.params.named) p[name] = v;
  if (!sc.state.empty()) {
    p["running_mean"] = sc.state.running_mean;
    p["running_var"] = sc.state.running_var;
  }
  return p;
}

// A side in the evidence schema; `out` null: the side was rejected (inputs only).
json side_record(const Side& side, const SideOut* out, Impl cell_impl, bool with_state) {
  json calls = json::array();
  const std::size_t shown = std::min<std::size_t>(side.calls.size(), 16);
  for (std::size_t i = 0; i < shown; ++i) {
    const Batch& x = side.calls[i].batch;
    json attributes = {{"lengths", x.lengths}};
    if (side.calls[i].mode != Mode::none) attributes["mode"] = to_string(side.calls[i].mode);
    if (!side.calls[i].shards.empty()) attributes["shards"] = side.calls[i].shards;
    json tensors = {{"x", tensor_json(x.x, {"B", "T", "D"}, {x.B, x.T, x.D})}};
    if (out) tensors["y"] = tensor_json(out->outs[i], {"B", "T", "D"}, {x.B, x.T, x.D});
    calls.push_back(call_json({{"B", x.B}, {"T", x.T}, {"D", x.D}}, std::move(tensors), attributes));
  }
  json j = side_json(to_string(side.impl.value_or(cell_impl)), calls);
  if (shown < side.calls.size()) j["calls_not_shown"] = side.calls.size() - shown;
  if (side.threads) j["threads"] = side.threads;
  if (!side.warmup.empty()) j["training_batches_before"] = side.warmup.size();
  if (out && with_state && !out->state.empty())
    j["final_state"] = {{"running_mean", out->state.running_mean},
                        {"running_var", out->state.running_var}};
  return j;
}

CaseOutcome run_scenario(const LayerRow& row, Impl impl, Comparison how, bool eps_sensitive,
                         const Scenario& sc) {
  // The discard policy (rejection.hpp): a side the cell's implementation rejects is discarded
  // only when the other implementation rejects it too, else the case fails with that input.
  SideOut A, B;
  const Impl ia = sc.a.impl.value_or(impl), ib = sc.b.impl.value_or(impl);
  std::optional<Rejection> rejected =
      run_or_reject(ia, [&](Impl i) { A = run_side(row, i, sc, sc.a); });
  const bool a_rejected = rejected.has_value();
  if (!rejected) rejected = run_or_reject(ib, [&](Impl i) { B = run_side(row, i, sc, sc.b); });
  if (rejected)
    return rejected_outcome(*rejected, sc.note, params_json(sc),
                            side_record(sc.a, a_rejected ? nullptr : &A, impl, false),
                            side_record(sc.b, nullptr, impl, false), Diff(kTokenLabels).labels_json());
  Diff d(kTokenLabels, how);
  for (const auto& [pa, pb] : sc.pairs) {
    const Batch& xa = sc.a.calls[pa.call].batch;
    const Batch& xb = sc.b.calls[pb.call].batch;
    const std::size_t ia = xa.index(pa.b, pa.t, 0), ib = xb.index(pb.b, pb.t, 0);
    const Output& ya = A.outs[pa.call];
    const Output& yb = B.outs[pb.call];
    const Conditioning& ca = A.conds[pa.call];
    const Conditioning& cb = B.conds[pb.call];
    d.rows({pa.call, {pa.b, pa.t}}, {pb.call, {pb.b, pb.t}}, RowView(&ya[ia], xa.D),
           RowView(&yb[ib], xa.D),
           [&](int k) {
             const double a = ya[ia + k], b = yb[ib + k];
             double tol = tolerance(b, std::max(finite_or_zero(ca.cond[ia + k]), finite_or_zero(cb.cond[ib + k])));
             if (eps_sensitive) {
               // the explicit bound of the ε term: ε/(2·s²)·(|a − β| + |b − β|)
               const double rel = std::max(finite_or_zero(ca.eps_rel[ia + k]), finite_or_zero(cb.eps_rel[ib + k]));
               const double beta = sc.params.beta.empty() ? 0.0 : sc.params.beta[k];
               tol += rel * (std::abs(a - beta) + std::abs(b - beta));
             }
             return tol;
           },
           RowView(&xa.x[ia], xa.D), RowView(&xb.x[ib], xb.D));
  }
  for (const auto& [pa, want] : sc.expected) {
    const Batch& xa = sc.a.calls[pa.call].batch;
    const std::size_t ia = xa.index(pa.b, pa.t, 0);
    d.rows({pa.call, {pa.b, pa.t}}, {pa.call, {pa.b, pa.t}}, RowView(&A.outs[pa.call][ia], xa.D),
           RowView(want.data(), xa.D), [&](int k) { return tolerance(want[k], 0); },
           RowView(&xa.x[ia], xa.D));
  }
  if (sc.compare_state && !A.state.empty())
    for (std::size_t f = 0; f < A.state.running_mean.size(); ++f) {
      const std::string at = "[" + std::to_string(f) + "]";
      d.value("running_mean" + at, A.state.running_mean[f], B.state.running_mean[f],
              tolerance(B.state.running_mean[f], 0));
      d.value("running_var" + at, A.state.running_var[f], B.state.running_var[f],
              tolerance(B.state.running_var[f], 0));
    }
  return outcome(d, sc.note, [&] {
    return CaseRecord{.params = params_json(sc),
                      .input = side_record(sc.a, &A, impl, sc.compare_state),
                      .related = side_record(sc.b, &B, impl, sc.compare_state)};
  });
}

// ---------------------------------------------------------------------------------------------
// the registry of norm properties

Property make(NormProperty n) {
  const ScenarioFn scenario = n.scenario;
  const Comparison how = n.comparison;
  const bool eps = n.eps_sensitive;
  return {.info = {.id = std::move(n.id)},
          .comparison = how,
          .eps_sensitive = eps,
          .applies = std::move(n.applies),
          .check = [scenario, how, eps](const Row& row, Impl impl) {
            return run_scenario(row.norm, impl, how, eps, scenario(row.norm));
          }};
}

}  // namespace norm_scenario

// The norm family in matrix order; the words of each property are in catalogue.json.
std::vector<Property> norm_properties() {
  using namespace norm_scenario;
  const Applicability optimized = {.optimized_only = true};
  const Applicability mode_comparing = {.mode_comparing = true};
  std::vector<Property> code;
  for (NormProperty n : std::initializer_list<NormProperty>{
           {.id = "batch_independence", .scenario = batch_independence},
           {.id = "padding_invariance", .scenario = padding_invariance},
           {.id = "token_independence", .scenario = token_independence},
           {.id = "causality", .scenario = causality},
           {.id = "train_inference_equivalence", .scenario = train_inference_equivalence,
            .applies = mode_comparing},
           {.id = "streaming_equivalence", .scenario = streaming_equivalence, .applies = mode_comparing},
           {.id = "token_scale_invariance", .scenario = token_scale_invariance, .eps_sensitive = true},
           {.id = "global_scale_invariance", .scenario = global_scale_invariance, .eps_sensitive = true},
           {.id = "token_shift_invariance", .scenario = token_shift_invariance},
           {.id = "feature_shift_invariance", .scenario = feature_shift_invariance},
           {.id = "feature_scale_invariance", .scenario = feature_scale_invariance, .eps_sensitive = true},
           {.id = "batch_permutation_equivariance", .scenario = batch_permutation_equivariance},
           {.id = "shard_invariance", .scenario = shard_invariance},
           {.id = "nan_containment", .scenario = nan_containment, .comparison = Comparison::containment},
           {.id = "reference_agreement", .scenario = reference_agreement, .applies = optimized},
           {.id = "thread_determinism", .scenario = thread_determinism, .comparison = Comparison::bitwise,
            .applies = optimized},
           {.id = "batch_invariance_bitwise", .scenario = batch_invariance_bitwise,
            .comparison = Comparison::bitwise,
            .applies = {.optimized_only = true, .needs = "batch_independence"}},
           {.id = "finite_output", .scenario = finite_output, .comparison = Comparison::range,
            .applies = optimized},
           {.id = "scale_range_invariance", .scenario = scale_range_invariance, .comparison = Comparison::range,
            .eps_sensitive = true, .applies = {.optimized_only = true, .needs = "global_scale_invariance"}},
           {.id = "constant_token", .scenario = constant_token, .comparison = Comparison::bitwise,
            .applies = {.optimized_only = true, .needs = "token_shift_invariance"}},
           {.id = "offset_invariance", .scenario = offset_invariance, .comparison = Comparison::range,
            .applies = {.optimized_only = true,
                        .needs_one_of = {"token_shift_invariance", "feature_shift_invariance"}}},
       })
    code.push_back(make(std::move(n)));
  return declared(Family::norm, std::move(code));
}

}  // namespace normcheck
