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

#include "properties/families.hpp"
#include "properties/generators.hpp"
#include "properties/threads.hpp"

namespace normcheck {
namespace {

using nlohmann::json;
using rc::gen::inRange;

// ---------------------------------------------------------------------------------------------
// scenarios

struct Call {
  Batch batch;
  Mode mode = Mode::none;
};

struct Side {
  std::optional<Impl> impl;  // default: the cell's implementation
  int threads = 0;           // OpenMP threads for this side; 0 = the process default
  std::vector<Batch> warmup; // run in train mode first (state carried over), not compared
  std::vector<Call> calls;   // outputs of these are compared
};

// A token position: call index, sequence, token. All D features of it are compared.
struct TokenPos {
  int call = 0, b = 0, t = 0;
};

struct Scenario {
  Params params;
  State state;  // initial running statistics (stateful layers)
  Side a, b;
  std::vector<std::pair<TokenPos, TokenPos>> pairs;
  bool compare_state = false;  // also compare the final running statistics
  std::string note;            // what the related input is, in words and numbers
};

// A norm property: its words, the scenario that draws one case, and how the two sides compare.
using ScenarioFn = Scenario (*)(const LayerRow&);

struct NormProperty {
  PropertyInfo info;
  ScenarioFn scenario;
  Comparison comparison = Comparison::values;
  bool eps_sensitive = false;
  Applicability applies = {};
};

// Every valid token of `x` (call ca) paired with the same token of call cb.
std::vector<std::pair<TokenPos, TokenPos>> valid_pairs(const Batch& x, int ca = 0, int cb = 0) {
  std::vector<std::pair<TokenPos, TokenPos>> pairs;
  for (int b = 0; b < x.B; ++b)
    for (int t = 0; t < x.lengths[b]; ++t) pairs.push_back({{ca, b, t}, {cb, b, t}});
  return pairs;
}

struct Base {
  int min_len = 1;  // 2 for train rows of stateful layers (one value per channel is an error)
  gen::Shape shape;
  Batch x;
  Params params;
  State state;
};

int min_len(const LayerRow& row) { return row.mode() == Mode::train ? 2 : 1; }

Base draw_base(const LayerRow& row, int min_B = 1) {
  Base base;
  base.min_len = min_len(row);
  base.shape = gen::shape(base.min_len);
  base.shape.B = std::max(base.shape.B, min_B);
  base.params = gen::params(*row.layer, base.shape.D);
  base.state = gen::state(base.shape.D);
  base.x = gen::batch(base.shape, gen::regime(), gen::poison(), base.min_len);
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
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

// ---------------------------------------------------------------------------------------------
// scenario builders

Scenario batch_independence(const LayerRow& row) {
  Base base = draw_base(row);
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

NormProperty batch_independence_property() {
  return {.info = {"batch_independence", "batch_ind",
                   "a sequence's outputs do not depend on the other sequences of its batch",
                   "sequence b placed in a different batch (other sequences fresh, any batch size ≥ 1, any index)",
                   "b's valid outputs", "a sample's result must not depend on its neighbours"},
          .scenario = batch_independence};
}

Scenario padding_invariance(const LayerRow& row) {
  Base base = draw_base(row);
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

NormProperty padding_invariance_property() {
  return {.info = {"padding_invariance", "padding",
                   "appending padding and changing its contents does not change valid outputs",
                   "extra padding appended, all padding filled with poison (0, 1e30, -inf, NaN)",
                   "valid outputs", "padding must not pollute statistics"},
          .scenario = padding_invariance};
}

// One sequence b of the input with fresh valid tokens in place of its own: token t alone
// (token_independence: every other token compared) or every token after t (causality: b's
// tokens up to t compared).
enum class Replace { one_token, the_future };

Scenario replaced(const LayerRow& row, Replace what) {
  Base base = draw_base(row);
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

NormProperty causality_property() {
  return {.info = {"causality", "causality", "outputs at positions ≤ s do not depend on tokens after s",
                   "tokens after position s of one sequence replaced", "that sequence's positions ≤ s",
                   "no look-ahead: required for autoregressive training"},
          .scenario = causality};
}

NormProperty token_independence_property() {
  return {.info = {"token_independence", "token_ind",
                   "replacing one valid token does not change the other tokens' outputs",
                   "one valid token replaced", "every other valid token", "token-wise modelling"},
          .scenario = token_independence};
}

// The input in train mode on both sides, after the same training batches: the mode-comparing
// properties then change side b.
Scenario after_training(const LayerRow& row, Base& base) {
  base = draw_base(row);
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

NormProperty train_inference_equivalence_property() {
  return {.info = {"train_inference_equivalence", "train≡inf", "train mode and eval mode give the same outputs",
                   "same input in eval mode, after the running stats were trained on batches from the same distribution",
                   "all valid outputs", "train and inference behave the same"},
          .scenario = train_inference_equivalence, .applies = {.mode_comparing = true}};
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

NormProperty streaming_equivalence_property() {
  return {.info = {"streaming_equivalence", "streaming",
                   "a token fed alone in eval mode gets its full-batch train-mode output",
                   "every token fed alone (batch of one, one token) in eval mode",
                   "vs. full batch in train mode", "autoregressive decoding with batch size 1"},
          .scenario = streaming_equivalence, .applies = {.mode_comparing = true}};
}

// The input and a related input that is the input with `op` applied: per valid token (each its
// own drawn value) or per feature (each its own value, at every position).
enum class Each { token, feature };

template <class Draw, class Op>
Scenario transformed(const LayerRow& row, Each each, Draw draw, Op op, const std::string& what) {
  Base base = draw_base(row);
  Batch y = base.x;
  std::vector<float> drawn;
  if (each == Each::feature) {
    for (int d = 0; d < y.D; ++d) drawn.push_back(draw());
    for (std::size_t i = 0; i < y.x.size(); ++i) op(y.x[i], drawn[i % y.D]);
  } else {
    for (int b = 0; b < y.B; ++b)
      for (int t = 0; t < y.lengths[b]; ++t) {
        drawn.push_back(draw());
        for (int d = 0; d < y.D; ++d) op(y.at(b, t, d), drawn.back());
      }
  }
  Scenario s = related(base, row.mode(), y);
  s.note = (each == Each::token ? "valid tokens " : "features ") + what + " " + fmt_list(drawn) +
           (each == Each::feature ? " at every position" : "");
  return s;
}

void scale(float& v, float a) { v *= a; }
void shift(float& v, float c) { v += c; }

Scenario token_scale_invariance(const LayerRow& row) {
  return transformed(row, Each::token, gen::scale_factor, scale, "scaled by");
}

NormProperty token_scale_invariance_property() {
  return {.info = {"token_scale_invariance", "tok_scale", "multiplying a token by α > 0 does not change outputs",
                   "each token multiplied by its own α > 0", "valid outputs",
                   "a token's scale carries no information"},
          .scenario = token_scale_invariance, .eps_sensitive = true};
}

Scenario token_shift_invariance(const LayerRow& row) {
  return transformed(row, Each::token, gen::shift_amount, shift, "shifted by");
}

NormProperty token_shift_invariance_property() {
  return {.info = {"token_shift_invariance", "tok_shift",
                   "adding a constant to every feature of a token does not change outputs",
                   "each token plus its own constant (same for all features)", "valid outputs", "re-centring"},
          .scenario = token_shift_invariance};
}

Scenario feature_scale_invariance(const LayerRow& row) {
  return transformed(row, Each::feature, gen::scale_factor, scale, "scaled by");
}

NormProperty feature_scale_invariance_property() {
  return {.info = {"feature_scale_invariance", "feat_scale",
                   "multiplying each feature by its own α > 0 everywhere does not change outputs",
                   "each feature times its own α > 0, at every position", "valid outputs",
                   "per-feature normalization (the batch axis)"},
          .scenario = feature_scale_invariance, .eps_sensitive = true};
}

Scenario feature_shift_invariance(const LayerRow& row) {
  return transformed(row, Each::feature, gen::shift_amount, shift, "shifted by");
}

NormProperty feature_shift_invariance_property() {
  return {.info = {"feature_shift_invariance", "feat_shift",
                   "adding a per-feature constant everywhere does not change outputs",
                   "each feature plus its own constant, at every position", "valid outputs",
                   "the batch axis of BatchNorm"},
          .scenario = feature_shift_invariance};
}

Scenario global_scale_invariance(const LayerRow& row) {
  Base base = draw_base(row);
  Batch y = base.x;
  const float a = gen::scale_factor();
  for (auto& v : y.x) v *= a;
  Scenario s = related(base, row.mode(), y);
  s.note = "every position scaled by " + std::to_string(a);
  return s;
}

NormProperty global_scale_invariance_property() {
  return {.info = {"global_scale_invariance", "glob_scale",
                   "multiplying the whole batch by α > 0 does not change outputs",
                   "whole batch multiplied by one α > 0", "valid outputs",
                   "the overall scale of activations carries no information"},
          .scenario = global_scale_invariance, .eps_sensitive = true};
}

Scenario batch_permutation_equivariance(const LayerRow& row) {
  Base base = draw_base(row);
  const int B = base.shape.B;
  std::vector<int> perm(B);
  for (int i = 0; i < B; ++i) perm[i] = i;
  for (int i = 0; i + 1 < B; ++i) std::swap(perm[i], perm[*inRange(i, B)]);
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

NormProperty batch_permutation_equivariance_property() {
  return {.info = {"batch_permutation_equivariance", "batch_perm",
                   "permuting the sequences permutes the outputs alike", "sequences permuted",
                   "outputs permuted alike", "order of samples does not matter"},
          .scenario = batch_permutation_equivariance};
}

Scenario nan_containment(const LayerRow& row) {
  Base base = draw_base(row, 2);
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

NormProperty nan_containment_property() {
  return {.info = {"nan_containment", "nan_contain", "a NaN in one sequence leaves every other sequence finite",
                   "one NaN written into one valid token of sequence b",
                   "valid outputs of every other sequence", "one bad request must not poison a served batch"},
          .scenario = nan_containment, .comparison = Comparison::containment};
}

Scenario reference_agreement(const LayerRow& row) {
  gen::Shape shape = gen::shape(min_len(row));
  shape.D = *rc::gen::weightedOneOf<int>(
      {{3, rc::gen::element(1, 7, 31, 33, 100)}, {1, rc::gen::just(gen::features())}});
  Base base;
  base.min_len = min_len(row);
  base.shape = shape;
  base.params = gen::params(*row.layer, shape.D);
  base.state = gen::state(shape.D);
  base.x = gen::batch(shape, gen::hard_regime(), gen::poison(), base.min_len);
  Scenario s = same_input(base, row.mode());
  s.b.impl = Impl::reference;
  s.compare_state = row.layer->stateful();
  s.note = "optimized (a) vs reference (b)";
  return s;
}

NormProperty reference_agreement_property() {
  return {.info = {"reference_agreement", "ref_agree",
                   "the optimized kernel agrees with the reference within the tolerance rule",
                   "the same input through the double-precision reference (hard inputs: large offsets, tiny variance, constant rows, odd D)",
                   "all valid outputs and running statistics", "the fast kernel computes the same function"},
          .scenario = reference_agreement, .applies = {.optimized_only = true}};
}

Scenario thread_determinism(const LayerRow& row) {
  Base base = draw_base(row);
  // two thirds of the cases large enough for the kernels' parallel paths (kParallelMinValues):
  // wide (row and feature-block counts that split differently for every thread count) or tall
  // and narrow (many rows of 1–3 features: where a library splits one reduction over threads),
  // with values on a fine grid so that any change of summation order shows in the last bits
  const int kind = *rc::gen::element(0, 1, 2);
  if (kind > 0) {
    base.shape = kind == 1 ? gen::Shape{*inRange(4, 9), *inRange(16, 33), *rc::gen::element(65, 130, 257)}
                           : gen::Shape{*inRange(4, 9), *inRange(32, 65), *rc::gen::element(1, 2, 3)};
    base.params = gen::params(*row.layer, base.shape.D);
    base.state = gen::state(base.shape.D);
    base.x = gen::batch(base.shape, gen::Regime::dense, gen::poison(), base.min_len);
  }
  Scenario s = same_input(base, row.mode());
  s.a.threads = 1;
  s.b.threads = *rc::gen::element(1, 2, 3, 4);
  s.compare_state = row.layer->stateful();
  s.note = "1 thread (a) vs " + std::to_string(s.b.threads) + " threads (b)";
  return s;
}

NormProperty thread_determinism_property() {
  return {.info = {"thread_determinism", "threads",
                   "the optimized output is bitwise the same for 1, 2, 3 and 4 OpenMP threads and on a repeat",
                   "the same input run with another thread count",
                   "all valid outputs and running statistics, bitwise",
                   "results never depend on the machine's parallelism"},
          .scenario = thread_determinism, .comparison = Comparison::bitwise,
          .applies = {.optimized_only = true}};
}

// A sequence alone, then inside a batch of 1 to 512 tokens at any index: the optimized output
// must be bitwise the same, whatever the chunking of the rows over threads.
Scenario batch_invariance_bitwise(const LayerRow& row) {
  Base base = draw_base(row);
  const int L = base.x.lengths[0];
  Batch alone(1, L, base.shape.D);
  std::copy(base.x.x.begin(), base.x.x.begin() + std::size_t(L) * base.shape.D, alone.x.begin());
  const int B2 = *inRange(1, 9);
  const int T2 = *inRange(L, 65);
  const int j = *inRange(0, B2);
  Batch big = gen::batch({B2, T2, base.shape.D}, gen::regime(), gen::poison(), std::min(base.min_len, T2));
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

NormProperty batch_invariance_bitwise_property() {
  return {.info = {"batch_invariance_bitwise", "batch_bits",
                   "a sequence's optimized output is bitwise the same alone and inside batches of 1 to 512 tokens",
                   "the sequence alone (batch of one) vs inside a larger batch at any index",
                   "the sequence's valid outputs, bitwise",
                   "serving results do not change with the batch a request lands in"},
          .scenario = batch_invariance_bitwise, .comparison = Comparison::bitwise,
          .applies = {.optimized_only = true, .needs = "batch_independence"}};
}

// ---------------------------------------------------------------------------------------------
// running a scenario: both sides, the comparison, the evidence

struct SideOut {
  std::vector<Output> outs;
  std::vector<Conditioning> conds;
  State state;
};

SideOut run_side(const LayerRow& row, Impl cell_impl, const Scenario& sc, const Side& side) {
  const Impl impl = side.impl.value_or(cell_impl);
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
    f(c.batch, sc.params, c.mode, &r.state, o);
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

json side_record(const Side& side, const SideOut& out, Impl cell_impl, bool with_state) {
  json calls = json::array();
  const std::size_t shown = std::min<std::size_t>(side.calls.size(), 16);
  for (std::size_t i = 0; i < shown; ++i) {
    const Batch& x = side.calls[i].batch;
    json attributes = {{"lengths", x.lengths}};
    if (side.calls[i].mode != Mode::none) attributes["mode"] = to_string(side.calls[i].mode);
    calls.push_back(call_json({{"B", x.B}, {"T", x.T}, {"D", x.D}},
                              {{"x", tensor_json(x.x, {"B", "T", "D"}, {x.B, x.T, x.D})},
                               {"y", tensor_json(out.outs[i], {"B", "T", "D"}, {x.B, x.T, x.D})}},
                              attributes));
  }
  json j = side_json(to_string(side.impl.value_or(cell_impl)), calls);
  if (shown < side.calls.size()) j["calls_not_shown"] = side.calls.size() - shown;
  if (side.threads) j["threads"] = side.threads;
  if (!side.warmup.empty()) j["training_batches_before"] = side.warmup.size();
  if (with_state && !out.state.empty())
    j["final_state"] = {{"running_mean", out.state.running_mean},
                        {"running_var", out.state.running_var}};
  return j;
}

CaseOutcome run_scenario(const LayerRow& row, Impl impl, Comparison how, bool eps_sensitive,
                         const Scenario& sc) {
  const SideOut A = run_side(row, impl, sc, sc.a);
  const SideOut B = run_side(row, impl, sc, sc.b);
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
                      .input = side_record(sc.a, A, impl, sc.compare_state),
                      .related = side_record(sc.b, B, impl, sc.compare_state)};
  });
}

// ---------------------------------------------------------------------------------------------
// the registry of norm properties

Property make(NormProperty n) {
  const ScenarioFn scenario = n.scenario;
  const Comparison how = n.comparison;
  const bool eps = n.eps_sensitive;
  return {.info = std::move(n.info),
          .family = Family::norm,
          .comparison = how,
          .eps_sensitive = eps,
          .applies = std::move(n.applies),
          .check = [scenario, how, eps](const Row& row, Impl impl) {
            return run_scenario(row.norm, impl, how, eps, scenario(row.norm));
          }};
}

}  // namespace

std::vector<Property> norm_properties() {
  std::vector<Property> out;
  for (auto def : {
       batch_independence_property, padding_invariance_property, token_independence_property,
       causality_property, train_inference_equivalence_property, streaming_equivalence_property,
       token_scale_invariance_property, global_scale_invariance_property,
       token_shift_invariance_property, feature_shift_invariance_property,
       feature_scale_invariance_property, batch_permutation_equivariance_property,
       nan_containment_property, reference_agreement_property, thread_determinism_property,
       batch_invariance_bitwise_property})
    out.push_back(make(def()));
  return out;
}

}  // namespace normcheck
