// The block rows of the matrix: every norm row of the registry inside a Transformer block, in
// Pre-LN and Post-LN placement, on both implementations. Nothing here names a norm: rows,
// modes and expectations come from layer_rows() and each row's profile.
//
// How a row runs the block (the row's mode decides):
//   stateless row (Mode::none)  teacher forcing over the padded batch, the norm in Mode::none
//   train row                   teacher forcing over the padded batch, the norm in train mode
//   eval row                    decoding: each sequence alone, token by token, KV cache, the
//                               norm in eval mode
// Outputs of two runs are compared with check::composite (rtol = atol = 1e-4, see check.hpp).
#include <algorithm>
#include <random>

#include <rapidcheck.h>

#include "attention/block.hpp"
#include "attention/cells.hpp"
#include "attention/check.hpp"
#include "properties/generators.hpp"

namespace normcheck {
namespace {

using check::Diff;
using nlohmann::json;
using rc::gen::inRange;

enum class Path { teacher_forcing, decode };

struct RowRun {
  Path path;
  Mode mode;  // the mode both norms are called in
};

RowRun row_run(const LayerRow& row) {
  switch (row.mode()) {
    case Mode::train: return {Path::teacher_forcing, Mode::train};
    case Mode::eval: return {Path::decode, Mode::eval};
    case Mode::none: break;
  }
  return {Path::teacher_forcing, Mode::none};
}

const char* to_string(Path p) { return p == Path::decode ? "decode" : "teacher_forcing"; }

// ---------------------------------------------------------------------------------------------
// cases

struct BlockCase {
  BlockWeights w;
  BlockState state;
  Batch x;
  uint32_t weight_seed = 0;
};

// Projection weights from a seed (a case's weights are ~8·E² numbers: one seed keeps the case
// small and its shrinking short; inputs and norm parameters are drawn value by value).
// Entries k/16·1/√fan_in, k in [-16, 16]; biases k/16, k in [-8, 8].
std::vector<float> seeded(std::mt19937& rng, std::size_t n, int fan_in) {
  std::vector<float> v(n);
  const float s = 1.0f / std::sqrt(float(fan_in));
  for (auto& x : v) x = float(int(rng() % 33) - 16) / 16.0f * s;
  return v;
}

std::vector<float> seeded_bias(std::mt19937& rng, std::size_t n) {
  std::vector<float> v(n);
  for (auto& x : v) x = float(int(rng() % 17) - 8) / 16.0f;
  return v;
}

// A padded batch for the row. Train rows compute batch statistics, and a train-mode norm
// rejects a single value per channel (as PyTorch does): their sequences get at least two valid
// tokens, so that no batch a cell builds from them is rejected. (RapidCheck's first cases are
// the smallest, one-token batches: rejecting them all would make the cell give up.)
Batch draw_batch(const LayerRow& row, gen::Shape shape, gen::Regime regime, gen::Poison poison) {
  const bool train = row.mode() == Mode::train;
  if (train) shape.T = std::max(shape.T, 2);
  std::vector<int> lengths(shape.B);
  for (auto& l : lengths) l = *inRange(train ? 2 : 1, shape.T + 1);
  return gen::batch(shape, regime, poison, lengths);
}

BlockCase draw_block(const LayerRow& row, Placement placement) {
  BlockCase c;
  const int dh = *inRange(1, 9);
  const int H = *inRange(1, std::min(4, 16 / dh) + 1);
  const int E = H * dh;
  c.weight_seed = *inRange<uint32_t>(0, 1u << 16);
  std::mt19937 rng(c.weight_seed);
  c.w.placement = placement;
  c.w.attn.E = E;
  c.w.attn.H = H;
  c.w.attn.in_proj_weight = seeded(rng, std::size_t(3) * E * E, E);
  c.w.attn.in_proj_bias = seeded_bias(rng, std::size_t(3) * E);
  c.w.attn.out_proj_weight = seeded(rng, std::size_t(E) * E, E);
  c.w.attn.out_proj_bias = seeded_bias(rng, E);
  c.w.F = 2 * E;
  c.w.w1 = seeded(rng, std::size_t(c.w.F) * E, E);
  c.w.b1 = seeded_bias(rng, c.w.F);
  c.w.w2 = seeded(rng, std::size_t(E) * c.w.F, c.w.F);
  c.w.b2 = seeded_bias(rng, E);
  c.w.norm1 = gen::params(*row.layer, E);
  c.w.norm2 = gen::params(*row.layer, E);
  if (row.layer->stateful()) {
    c.state.norm1 = gen::state(E);
    c.state.norm2 = gen::state(E);
  }
  c.x = draw_batch(row, {*inRange(1, 4), *inRange(1, 7), E}, gen::regime(), gen::poison());
  return c;
}

BlockOutput run(const LayerRow& row, Impl impl, const BlockCase& c, const Batch& x,
                bool want_weights) {
  const RowRun how = row_run(row);
  BlockState st = c.state;
  if (how.path == Path::decode)
    return block_decode(*row.layer, impl, how.mode, c.w, st, x, want_weights);
  return block_forward(*row.layer, impl, how.mode, c.w, st, x, want_weights);
}

json params_json(const Params& p) {
  json j = {{"eps", p.eps}};
  if (!p.gamma.empty()) j["gamma"] = p.gamma;
  if (!p.beta.empty()) j["beta"] = p.beta;
  j["momentum"] = p.momentum;
  j["groups"] = p.groups;
  j["alpha"] = p.alpha;
  return j;
}

json side_json(const Batch& x, const BlockOutput& o) {
  return {{"shape", {x.B, x.T, x.D}},
          {"lengths", x.lengths},
          {"x", check::nested(x.x, {x.B, x.T, x.D})},
          {"y", check::nested(o.y, {x.B, x.T, x.D})}};
}

json case_json(const LayerRow& row, Impl impl, const BlockCase& c, const std::string& path) {
  json j = {{"norm", row.name()},
            {"placement", to_string(c.w.placement)},
            {"implementation", to_string(impl)},
            {"path", path},
            {"E", c.w.attn.E},
            {"heads", c.w.attn.H},
            {"F", c.w.F},
            {"projection_weights", "seeded: std::mt19937(" + std::to_string(c.weight_seed) +
                                       "), entries k/16·1/√fan_in"},
            {"norm1", params_json(c.w.norm1)},
            {"norm2", params_json(c.w.norm2)}};
  if (!c.state.norm1.empty())
    j["running_stats"] = {{"norm1", {{"mean", c.state.norm1.running_mean}, {"var", c.state.norm1.running_var}}},
                          {"norm2", {{"mean", c.state.norm2.running_mean}, {"var", c.state.norm2.running_var}}}};
  return j;
}

// The evidence of a two-run comparison: the case, then both sides' inputs and outputs.
json pair_json(const LayerRow& row, Impl impl, const BlockCase& c, const std::string& path,
               const Batch& xa, const BlockOutput& A, const Batch& xb, const BlockOutput& B) {
  json e = case_json(row, impl, c, path);
  e["input"] = side_json(xa, A);
  e["related"] = side_json(xb, B);
  return e;
}

std::string at(int b, int t, int e) {
  return "[" + std::to_string(b) + "," + std::to_string(t) + "," + std::to_string(e) + "]";
}

void compare_tokens(Diff& d, const Batch& xa, const BlockOutput& A, int b, int t, const Batch& xb,
                    const BlockOutput& B, int b2, int t2) {
  for (int e = 0; e < xa.D; ++e) {
    const double a = A.y[xa.index(b, t, e)], bv = B.y[xb.index(b2, t2, e)];
    d.values(a, bv, check::composite(bv), [&] { return "y" + at(b, t, e) + " (a) vs y" + at(b2, t2, e) + " (b)"; });
  }
}

// A batch of B2 fresh sequences with x's sequence b copied to index j.
Batch with_sequence_moved(const LayerRow& row, const Batch& x, int b, int B2, int j) {
  Batch y = draw_batch(row, {B2, x.T, x.D}, gen::regime(), gen::poison());
  y.lengths[j] = x.lengths[b];
  std::copy_n(&x.x[x.index(b, 0, 0)], std::size_t(x.T) * x.D, &y.x[y.index(j, 0, 0)]);
  return y;
}

// ---------------------------------------------------------------------------------------------
// block properties

CaseOutcome attention_weight_batch_independence(const LayerRow& row, Placement p, Impl impl) {
  const BlockCase c = draw_block(row, p);
  const int b = *inRange(0, c.x.B), B2 = *inRange(1, 5), j = *inRange(0, B2);
  const Batch y = with_sequence_moved(row, c.x, b, B2, j);
  const BlockOutput A = run(row, impl, c, c.x, true), B = run(row, impl, c, y, true);
  const int H = c.w.attn.H, T = c.x.T, len = c.x.lengths[b];
  auto w = [&](const BlockOutput& o, int seq, int h, int i, int k) {
    return o.attn_weights[((std::size_t(seq) * H + h) * T + i) * T + k];
  };
  Diff d;
  for (int h = 0; h < H; ++h)
    for (int i = 0; i < len; ++i)
      for (int k = 0; k < len; ++k)
        d.values(w(A, b, h, i, k), w(B, j, h, i, k), check::composite(w(B, j, h, i, k)), [&] {
          return "weight[h=" + std::to_string(h) + ", query " + std::to_string(i) + ", key " +
                 std::to_string(k) + "] of the sequence in batch a vs batch b";
        });
  const std::string note = "sequence " + std::to_string(b) + " moved to index " +
                           std::to_string(j) + " of a batch of " + std::to_string(B2) +
                           " (fresh neighbours); weights of the block's first attention";
  return check::outcome(d, note, [&] {
    json e = pair_json(row, impl, c, to_string(row_run(row).path), c.x, A, y, B);
    // the sequence's weight matrices [H][T][T] in both batches
    e["attention_weights_input"] = check::nested(A.attn_weights, {H, T, T}, std::size_t(b) * H * T * T);
    e["attention_weights_related"] = check::nested(B.attn_weights, {H, T, T}, std::size_t(j) * H * T * T);
    return e;
  });
}

CaseOutcome block_batch_independence(const LayerRow& row, Placement p, Impl impl) {
  const BlockCase c = draw_block(row, p);
  const int b = *inRange(0, c.x.B), B2 = *inRange(1, 5), j = *inRange(0, B2);
  const Batch y = with_sequence_moved(row, c.x, b, B2, j);
  const BlockOutput A = run(row, impl, c, c.x, false), B = run(row, impl, c, y, false);
  Diff d;
  for (int t = 0; t < c.x.lengths[b]; ++t) compare_tokens(d, c.x, A, b, t, y, B, j, t);
  const std::string note = "sequence " + std::to_string(b) + " moved to index " +
                           std::to_string(j) + " of a batch of " + std::to_string(B2);
  return check::outcome(d, note, [&] {
    return pair_json(row, impl, c, to_string(row_run(row).path), c.x, A, y, B);
  });
}

CaseOutcome block_padding_invariance(const LayerRow& row, Placement p, Impl impl) {
  const BlockCase c = draw_block(row, p);
  const int extra = *inRange(0, 4);
  const auto poison = gen::poison();
  Batch y(c.x.B, c.x.T + extra, c.x.D);
  y.lengths = c.x.lengths;
  for (int b = 0; b < y.B; ++b)
    std::copy_n(&c.x.x[c.x.index(b, 0, 0)], std::size_t(c.x.T) * c.x.D, &y.x[y.index(b, 0, 0)]);
  gen::fill_padding(y, poison);
  const BlockOutput A = run(row, impl, c, c.x, false), B = run(row, impl, c, y, false);
  Diff d;
  for (int b = 0; b < c.x.B; ++b)
    for (int t = 0; t < c.x.lengths[b]; ++t) compare_tokens(d, c.x, A, b, t, y, B, b, t);
  const std::string note = std::to_string(extra) + " padding positions appended, all padding set to " +
                           gen::to_string(poison);
  return check::outcome(d, note, [&] {
    return pair_json(row, impl, c, to_string(row_run(row).path), c.x, A, y, B);
  });
}

CaseOutcome block_causality(const LayerRow& row, Placement p, Impl impl) {
  const BlockCase c = draw_block(row, p);
  const int b = *inRange(0, c.x.B);
  const int s = *inRange(0, c.x.lengths[b]);
  Batch y = c.x;
  for (int t = s + 1; t < c.x.lengths[b]; ++t) {
    const auto v = gen::token(gen::Regime::normal, c.x.D);
    std::copy(v.begin(), v.end(), &y.at(b, t, 0));
  }
  const BlockOutput A = run(row, impl, c, c.x, false), B = run(row, impl, c, y, false);
  Diff d;
  for (int t = 0; t <= s; ++t) compare_tokens(d, c.x, A, b, t, y, B, b, t);
  const std::string note = "tokens after position " + std::to_string(s) + " of sequence " +
                           std::to_string(b) + " replaced";
  return check::outcome(d, note, [&] {
    return pair_json(row, impl, c, to_string(row_run(row).path), c.x, A, y, B);
  });
}

CaseOutcome decode_equivalence(const LayerRow& row, Placement p, Impl impl) {
  const BlockCase c = draw_block(row, p);
  const bool stateful = row.mode() != Mode::none;
  // a stateful layer's running statistics are first trained on batches of the same shape
  BlockState trained = c.state;
  int warmup = 0;
  if (stateful) {
    warmup = *inRange(1, 4);
    for (int i = 0; i < warmup; ++i) {
      const Batch w = draw_batch(row, {c.x.B, c.x.T, c.x.D}, gen::Regime::normal, gen::Poison::zero);
      block_forward(*row.layer, impl, Mode::train, c.w, trained, w, false);
    }
  }
  BlockState forced = trained;
  const BlockOutput A = block_forward(*row.layer, impl, stateful ? Mode::train : Mode::none, c.w,
                                      forced, c.x, false);
  const BlockOutput B = block_decode(*row.layer, impl, stateful ? Mode::eval : Mode::none, c.w,
                                     trained, c.x, false);
  Diff d;
  for (int b = 0; b < c.x.B; ++b)
    for (int t = 0; t < c.x.lengths[b]; ++t) compare_tokens(d, c.x, A, b, t, c.x, B, b, t);
  const std::string note =
      std::string("padded batch with teacher forcing") + (stateful ? " in train mode" : "") +
      " (a) vs every sequence decoded alone, token by token, with a KV cache" +
      (stateful ? " in eval mode after " + std::to_string(warmup) + " training batches" : "") + " (b)";
  return check::outcome(d, note, [&] {
    json e = pair_json(row, impl, c, "teacher_forcing (a) vs decode (b)", c.x, A, c.x, B);
    if (stateful)
      e["running_stats_after_training"] = {
          {"norm1", {{"mean", trained.norm1.running_mean}, {"var", trained.norm1.running_var}}},
          {"norm2", {{"mean", trained.norm2.running_mean}, {"var", trained.norm2.running_var}}}};
    return e;
  });
}

// ---------------------------------------------------------------------------------------------
// the registry of block properties and what each norm row must show

struct BlockProperty {
  PropertyInfo info;
  CaseOutcome (*check)(const LayerRow&, Placement, Impl);
};

const std::vector<BlockProperty>& block_registry() {
  static const std::vector<BlockProperty> all = {
      {{"attention_weight_batch_independence", "attn_w_batch",
        "the attention weights of a sequence do not depend on the batch it sits in",
        "sequence b placed at any index of a batch of 1 to 4 with fresh neighbours",
        "the weights of the block's first attention for b's valid queries and keys",
        "a norm before attention must not let the batch steer what a token attends to"},
       attention_weight_batch_independence},
      {{"block_batch_independence", "blk_batch",
        "a sequence's block output does not depend on the other sequences of its batch",
        "sequence b placed at any index of a batch of 1 to 4 with fresh neighbours",
        "b's valid outputs", "a sample's result must not depend on its neighbours"},
       block_batch_independence},
      {{"block_padding_invariance", "blk_padding",
        "appending padding and changing its contents does not change the block's valid outputs",
        "extra padding appended, all padding filled with poison (0, 1e30, -inf, NaN)",
        "valid outputs", "padding must not pollute a block"},
       block_padding_invariance},
      {{"block_causality", "blk_causal",
        "block outputs at positions ≤ s do not depend on tokens after s",
        "tokens after position s of one sequence replaced", "that sequence's positions ≤ s",
        "no look-ahead through the norm: required for autoregressive training"},
       block_causality},
      {{"decode_equivalence", "decode",
        "a padded batch with teacher forcing in train mode gives what decoding each sequence alone, "
        "token by token, with a KV cache in eval mode gives",
        "every sequence decoded alone (batch of one) in eval mode, after the running statistics "
        "were trained on batches of the same shape",
        "all valid outputs", "what a model learns in training is what it computes when it generates"},
       decode_equivalence},
  };
  return all;
}

// The expected outcome of a block cell, from the norm row's profile.
//
// Rows that run teacher forcing (stateless and train rows): attention, the MLP and the
// residuals are token-wise or masked-causal and keep each property, so the block breaks one
// exactly when its norm does:
//   block_batch_independence  ✗ iff the norm violates batch_independence
//   block_padding_invariance  ✗ iff the norm violates padding_invariance
//   block_causality           ✗ iff the norm violates causality
//   attention_weight_batch_independence
//                             Pre-LN: the first attention reads N1(x), so ✗ iff the norm
//                             violates batch_independence. Post-LN: the first attention reads
//                             x itself, before any norm, so its weights hold for every norm.
// Eval rows run the block by decoding: every sequence alone, token by token, its norm on one
// token at a time and only its own past in the cache. A batch, padding or future tokens never
// reach the computation, so those four properties hold by construction (the cells check that
// the decoding path really isolates sequences: a cache not reset between sequences, a padding
// token fed, fails them).
//
// decode_equivalence compares a train-mode batch with eval-mode decoding alone, token by token.
// Both sides agree iff the norm's output for a token in the padded training batch equals its
// eval-mode output for that token alone: that is the norm's streaming_equivalence. A norm that
// looks at later tokens (causality ✗: instance_norm) or whose train and eval modes differ
// (train_inference_equivalence ✗: batch statistics vs running statistics) cannot have it, so
// the union below equals streaming_equivalence for a consistent profile and says why. It is a
// mode-comparing property like the norm's: for eval rows not applicable — an eval row has no
// train mode to compare (its decoding path is checked by the four properties above).
Expect block_expectation(const LayerRow& row, Placement p, const std::string& prop) {
  const auto& violated = row.profile->violated;
  auto v = [&](const char* id) { return violated.count(id) > 0; };
  if (prop == "decode_equivalence") {
    if (row.mode() == Mode::eval) return Expect::not_applicable;
    return v("causality") || v("streaming_equivalence") || v("train_inference_equivalence")
               ? Expect::violated
               : Expect::holds;
  }
  if (row_run(row).path == Path::decode) return Expect::holds;
  bool bad = false;
  if (prop == "attention_weight_batch_independence")
    bad = p == Placement::pre && v("batch_independence");
  else if (prop == "block_batch_independence")
    bad = v("batch_independence");
  else if (prop == "block_padding_invariance")
    bad = v("padding_invariance");
  else if (prop == "block_causality")
    bad = v("causality");
  return bad ? Expect::violated : Expect::holds;
}

}  // namespace

std::vector<PropertyInfo> block_properties() {
  std::vector<PropertyInfo> out;
  for (const auto& p : block_registry()) out.push_back(p.info);
  return out;
}

std::vector<Cell> block_cells() {
  std::vector<Cell> cells;
  for (const auto& row : layer_rows())
    for (Placement placement : {Placement::pre, Placement::post})
      for (Impl impl : {Impl::reference, Impl::optimized})
        for (const auto& p : block_registry()) {
          Cell c;
          c.row_id = std::string("block_") + to_string(placement) + "_" + row.id();
          c.row_name = row.name();
          c.layer = row.layer->name;
          c.mode = row.mode();
          c.placement = to_string(placement);
          c.impl = impl;
          c.prop = p.info;
          c.expected = block_expectation(row, placement, p.info.id);
          auto fn = p.check;
          c.check_case = [row, placement, impl, fn] { return fn(row, placement, impl); };
          cells.push_back(std::move(c));
        }
  return cells;
}

}  // namespace normcheck
