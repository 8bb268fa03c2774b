// The block family: every norm row of the registry inside a Transformer block, in Pre-LN and
// Post-LN placement (catalog.cpp's block_rows), on both implementations. Nothing here names a
// norm: rows and modes come from the registry, expectations from each property's Derivation.
//
// How a row runs the block (the row's mode decides):
//   stateless row (Mode::none)  teacher forcing over the padded batch, the norm in Mode::none
//   train row                   teacher forcing over the padded batch, the norm in train mode
//   eval row                    decoding: each sequence alone, token by token, KV cache, the
//                               norm in eval mode
// Outputs of two runs are compared with composite_tolerance (rtol = atol = 1e-4, compare.hpp).
#include <algorithm>
#include <random>
#include <type_traits>

#include <rapidcheck.h>

#include "attention/block.hpp"
#include "properties/families.hpp"
#include "properties/texts.hpp"
#include "properties/generators.hpp"

namespace normcheck {
namespace {

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

const BlockEntry& block_of(const Row& row) { return row.block ? *row.block : block_entry(); }

BlockOutput run(const Row& row, Impl impl, const BlockCase& c, const Batch& x, bool want_weights) {
  const RowRun how = row_run(row.norm);
  BlockState st = c.state;
  if (how.path == Path::decode)
    return block_of(row).decode(*row.norm.layer, impl, how.mode, c.w, st, x, want_weights);
  return block_of(row).forward(*row.norm.layer, impl, how.mode, c.w, st, x, want_weights);
}

json norm_params_json(const Params& p) {
  json j = {{"eps", p.eps}};
  if (!p.gamma.empty()) j["gamma"] = p.gamma;
  if (!p.beta.empty()) j["beta"] = p.beta;
  j["momentum"] = p.momentum;
  for (const auto& [name, v] : p.named) j[name] = v;
  return j;
}

// The case's parameters: the block's shape, the seed of its projection weights, both norms'
// parameters and running statistics.
json case_params(const Row& row, const BlockCase& c, const std::string& path) {
  json j = {{"norm", row.norm.name()},
            {"placement", to_string(c.w.placement)},
            {"path", path},
            {"E", c.w.attn.E},
            {"heads", c.w.attn.H},
            {"F", c.w.F},
            {"projection_weights", "seeded: std::mt19937(" + std::to_string(c.weight_seed) +
                                       "), entries k/16·1/√fan_in"},
            {"norm1", norm_params_json(c.w.norm1)},
            {"norm2", norm_params_json(c.w.norm2)}};
  if (!c.state.norm1.empty())
    j["running_stats"] = {{"norm1", {{"mean", c.state.norm1.running_mean}, {"var", c.state.norm1.running_var}}},
                          {"norm2", {{"mean", c.state.norm2.running_mean}, {"var", c.state.norm2.running_var}}}};
  return j;
}

// One side: the batch [B, T, E] through the block; with the first attention's weights when
// the property compares them.
json side(Impl impl, const Batch& x, const BlockOutput& o, bool weights = false, int H = 0) {
  json tensors = {{"x", tensor_json(x.x, {"B", "T", "E"}, {x.B, x.T, x.D})},
                  {"y", tensor_json(o.y, {"B", "T", "E"}, {x.B, x.T, x.D})}};
  if (weights)
    tensors["attention_weights"] =
        tensor_json(o.attn_weights, {"B", "H", "query", "key"}, {x.B, H, x.T, x.T});
  return side_json(to_string(impl),
                   json::array({call_json({{"B", x.B}, {"T", x.T}, {"E", x.D}}, tensors,
                                          {{"lengths", x.lengths}})}));
}

const Labels kTokenLabels{{"b", "t"}, "e", "x", "y"};

// `cond`: the conditioning of what the two runs computed differently (two_run_cond; a formula's,
// see Amplification), added as the tolerance rule's float32 term 2e-6·cond.
void compare_tokens(Diff& d, const Batch& xa, const BlockOutput& A, int b, int t, const Batch& xb,
                    const BlockOutput& B, int b2, int t2, double cond = 0) {
  const std::size_t ia = xa.index(b, t, 0), ib = xb.index(b2, t2, 0);
  d.rows({0, {b, t}}, {0, {b2, t2}}, RowView(&A.y[ia], xa.D), RowView(&B.y[ib], xb.D),
         [&](int e) { return composite_tolerance(B.y[ib + e]) + 2e-6 * cond; }, RowView(&xa.x[ia], xa.D),
         RowView(&xb.x[ib], xb.D));
}

// The conditioning term of two runs of the block on batches of different layouts (another batch
// size, appended padding): they compute the same valid values in another order (a norm's
// statistics blocks, attention tiles), and each norm multiplies that rounding noise by its
// amplification, as between the block and its formula. The larger of the two runs' (Amplification,
// below), so an ill-conditioned input (nearly equal values, a small ε) is not a violation
// while a real dependence on the layout still shows at any conditioning.
double two_run_cond(const Row& row, Impl impl, const BlockCase& c, const Batch& xa,
                    const Batch& xb);

// The case of a two-run comparison: its parameters and both sides.
CaseRecord record(const Row& row, Impl impl, const BlockCase& c, const std::string& path,
                  const Batch& xa, const BlockOutput& A, const Batch& xb, const BlockOutput& B) {
  return {.params = case_params(row, c, path), .input = side(impl, xa, A), .related = side(impl, xb, B)};
}

// A batch of B2 fresh sequences with x's sequence b copied to index j.
Batch with_sequence_moved(const Row& row, const Batch& x, int b, int B2, int j) {
  Batch y = draw_batch(row.norm, {B2, x.T, x.D}, gen::regime(), gen::poison());
  y.lengths[j] = x.lengths[b];
  std::copy_n(&x.x[x.index(b, 0, 0)], std::size_t(x.T) * x.D, &y.x[y.index(j, 0, 0)]);
  return y;
}

// ---------------------------------------------------------------------------------------------
// block properties

CaseOutcome attention_weight_batch_independence(const Row& row, Impl impl) {
  const BlockCase c = draw_block(row.norm, row.placement);
  const int b = *inRange(0, c.x.B), B2 = *inRange(1, 5), j = *inRange(0, B2);
  const Batch y = with_sequence_moved(row, c.x, b, B2, j);
  const BlockOutput A = run(row, impl, c, c.x, true), B = run(row, impl, c, y, true);
  const int H = c.w.attn.H, T = c.x.T, len = c.x.lengths[b];
  // the weight row of query i in head h of a sequence: [T] keys
  auto at = [&](int seq, int h, int i) { return ((std::size_t(seq) * H + h) * T + i) * T; };
  Diff d({{"h", "query"}, "key", "", "weight"});
  for (int h = 0; h < H; ++h)
    for (int i = 0; i < len; ++i)
      d.rows({0, {h, i}}, {0, {h, i}}, RowView(&A.attn_weights[at(b, h, i)], len),
             RowView(&B.attn_weights[at(j, h, i)], len),
             [&](int k) { return composite_tolerance(B.attn_weights[at(j, h, i) + k]); });
  const std::string note = "sequence " + std::to_string(b) + " moved to index " +
                           std::to_string(j) + " of a batch of " + std::to_string(B2) +
                           " (fresh neighbours); weights of the block's first attention";
  return outcome(d, note, [&] {
    return CaseRecord{.params = case_params(row, c, to_string(row_run(row.norm).path)),
                      .input = side(impl, c.x, A, true, H),
                      .related = side(impl, y, B, true, H)};
  });
}

std::string moved_note(int b, int j, int B2) {
  return "sequence " + std::to_string(b) + " moved to index " + std::to_string(j) +
         " of a batch of " + std::to_string(B2);
}

CaseOutcome block_batch_independence(const Row& row, Impl impl) {
  const BlockCase c = draw_block(row.norm, row.placement);
  const int b = *inRange(0, c.x.B), B2 = *inRange(1, 5), j = *inRange(0, B2);
  const Batch y = with_sequence_moved(row, c.x, b, B2, j);
  const BlockOutput A = run(row, impl, c, c.x, false), B = run(row, impl, c, y, false);
  const double cond = two_run_cond(row, impl, c, c.x, y);
  Diff d(kTokenLabels);
  for (int t = 0; t < c.x.lengths[b]; ++t) compare_tokens(d, c.x, A, b, t, y, B, j, t, cond);
  return outcome(d, moved_note(b, j, B2), [&] {
    return record(row, impl, c, to_string(row_run(row.norm).path), c.x, A, y, B);
  });
}

CaseOutcome block_padding_invariance(const Row& row, Impl impl) {
  const BlockCase c = draw_block(row.norm, row.placement);
  const int extra = *inRange(0, 4);
  const auto poison = gen::poison();
  Batch y(c.x.B, c.x.T + extra, c.x.D);
  y.lengths = c.x.lengths;
  for (int b = 0; b < y.B; ++b)
    std::copy_n(&c.x.x[c.x.index(b, 0, 0)], std::size_t(c.x.T) * c.x.D, &y.x[y.index(b, 0, 0)]);
  gen::fill_padding(y, poison);
  const BlockOutput A = run(row, impl, c, c.x, false), B = run(row, impl, c, y, false);
  const double cond = two_run_cond(row, impl, c, c.x, y);
  Diff d(kTokenLabels);
  for (int b = 0; b < c.x.B; ++b)
    for (int t = 0; t < c.x.lengths[b]; ++t) compare_tokens(d, c.x, A, b, t, y, B, b, t, cond);
  const std::string note = std::to_string(extra) + " padding positions appended, all padding set to " +
                           gen::to_string(poison);
  return outcome(d, note, [&] {
    return record(row, impl, c, to_string(row_run(row.norm).path), c.x, A, y, B);
  });
}

CaseOutcome block_causality(const Row& row, Impl impl) {
  const BlockCase c = draw_block(row.norm, row.placement);
  const int b = *inRange(0, c.x.B);
  const int s = *inRange(0, c.x.lengths[b]);
  Batch y = c.x;
  for (int t = s + 1; t < c.x.lengths[b]; ++t) {
    const auto v = gen::token(gen::Regime::normal, c.x.D);
    std::copy(v.begin(), v.end(), &y.at(b, t, 0));
  }
  const BlockOutput A = run(row, impl, c, c.x, false), B = run(row, impl, c, y, false);
  Diff d(kTokenLabels);
  for (int t = 0; t <= s; ++t) compare_tokens(d, c.x, A, b, t, y, B, b, t);
  const std::string note = "tokens after position " + std::to_string(s) + " of sequence " +
                           std::to_string(b) + " replaced";
  return outcome(d, note, [&] {
    return record(row, impl, c, to_string(row_run(row.norm).path), c.x, A, y, B);
  });
}

CaseOutcome decode_equivalence(const Row& row, Impl impl) {
  const BlockCase c = draw_block(row.norm, row.placement);
  const LayerEntry& norm = *row.norm.layer;
  const bool stateful = row.norm.mode() != Mode::none;
  // a stateful layer's running statistics are first trained on batches of the same shape
  BlockState trained = c.state;
  int warmup = 0;
  if (stateful) {
    warmup = *inRange(1, 4);
    for (int i = 0; i < warmup; ++i) {
      const Batch w = draw_batch(row.norm, {c.x.B, c.x.T, c.x.D}, gen::Regime::normal, gen::Poison::zero);
      block_of(row).forward(norm, impl, Mode::train, c.w, trained, w, false);
    }
  }
  BlockState forced = trained;
  const BlockOutput A =
      block_of(row).forward(norm, impl, stateful ? Mode::train : Mode::none, c.w, forced, c.x, false);
  const BlockOutput B =
      block_of(row).decode(norm, impl, stateful ? Mode::eval : Mode::none, c.w, trained, c.x, false);
  // the two paths compute attention in another order (prefill tiles, a KV cache), and each norm
  // amplifies that rounding noise as between two layouts (two_run_cond: a Post-LN group_norm of
  // two features 5e-5 apart with ε = 1e-12 turned a few ulps into 7e-4)
  const double cond = two_run_cond(row, impl, c, c.x, c.x);
  Diff d(kTokenLabels);
  for (int b = 0; b < c.x.B; ++b)
    for (int t = 0; t < c.x.lengths[b]; ++t) compare_tokens(d, c.x, A, b, t, c.x, B, b, t, cond);
  const std::string note =
      std::string("padded batch with teacher forcing") + (stateful ? " in train mode" : "") +
      " (a) vs every sequence decoded alone, token by token, with a KV cache" +
      (stateful ? " in eval mode after " + std::to_string(warmup) + " training batches" : "") + " (b)";
  return outcome(d, note, [&] {
    CaseRecord r = record(row, impl, c, "teacher_forcing (a) vs decode (b)", c.x, A, c.x, B);
    if (stateful)
      r.params["running_stats_after_training"] = {
          {"norm1", {{"mean", trained.norm1.running_mean}, {"var", trained.norm1.running_var}}},
          {"norm2", {{"mean", trained.norm2.running_mean}, {"var", trained.norm2.running_var}}}};
    return r;
  });
}

// ---------------------------------------------------------------------------------------------
// semantic pins: the block against formulas written here, not against another run of itself,
// so that a block wired wrong in both implementations (a residual taken from the wrong tensor, a
// norm skipped, the MLP reading the wrong tensor) fails

// The norm row on a whole padded batch act [B, T, E] in the row's mode, as the block calls it:
// its input rounded to float32 (the norm API), its output as the norm gives it.
//
// A formula evaluates the block's float32 stages in its own order, so the two differ by rounding
// errors, and a norm multiplies the relative error of its input by up to |x|/σ (|x|·inv_std of
// the row's Conditioning, or 1 + cond when the row gives no inv_std): an input set of nearly
// equal values (σ ≪ |x|, a small ε) makes rounding noise of order u·|x| an output of order 1.
// Amplification collects, per norm call, the largest such factor over the valid elements; a
// formula's conditioning is their product (the second norm amplifies what the first left).
struct Amplification {
  double product = 1;
  void add(const Row& row, const Params& p, const State* state, const Batch& in) {
    const auto& conditioning = row.norm.layer->conditioning;
    if (!conditioning) return;
    const Conditioning c = conditioning(in, p, row_run(row.norm).mode, state);
    double worst = 1;
    for (int b = 0; b < in.B; ++b)
      for (int t = 0; t < in.lengths[b]; ++t)
        for (int e = 0; e < in.D; ++e) {
          const std::size_t i = in.index(b, t, e);
          const double a = c.inv_std.empty() ? 1 + c.cond[i] : std::abs(double(in.x[i])) * c.inv_std[i];
          if (std::isfinite(a)) worst = std::max(worst, a);
        }
    product *= worst;
  }
  // the tolerance rule's cond for the formula (about |x|/σ squared for two well-conditioned
  // norms: a few units, so the term adds little to composite_tolerance's 1e-4)
  double cond() const { return product; }
};

template <class T>
std::vector<T> norm_of(const Row& row, Impl impl, const Params& p, State* state, const Batch& x,
                       const std::vector<T>& act, Amplification* amp = nullptr) {
  Batch in(x.B, x.T, x.D);
  in.lengths = x.lengths;
  for (std::size_t i = 0; i < act.size(); ++i) in.x[i] = float(act[i]);
  if (amp) amp->add(row, p, state, in);  // before a train-mode call updates the state
  Output out;
  row.norm.layer->forward(impl)(in, p, row_run(row.norm).mode, state, out);
  return std::vector<T>(out.begin(), out.end());
}

// MLP(u) = W2·relu(W1·u + b1) + b2 over n rows of E, written out (not block.cpp's `linear`).
template <class T>
std::vector<T> mlp_formula(const BlockWeights& w, const std::vector<T>& u, std::size_t n) {
  const int E = w.attn.E, F = w.F;
  std::vector<T> y(n * E), hidden(F);
  for (std::size_t r = 0; r < n; ++r) {
    for (int f = 0; f < F; ++f) {
      T a = T(w.b1[f]);
      for (int e = 0; e < E; ++e) a += T(w.w1[std::size_t(f) * E + e]) * u[r * E + e];
      hidden[f] = a > T(0) ? a : T(0);
    }
    for (int e = 0; e < E; ++e) {
      T a = T(w.b2[e]);
      for (int f = 0; f < F; ++f) a += T(w.w2[std::size_t(e) * F + f]) * hidden[f];
      y[r * E + e] = a;
    }
  }
  return y;
}

// The block's formula, step by step, in the implementation's precision (double for the
// reference, float32 for the optimized), from its parts: the norm row, causal multi-head
// self-attention with the batch's key-padding mask, the MLP above.
//   Pre-LN   h = x + MHA(N1(x)),  y = h + MLP(N2(h))
//   Post-LN  h = N1(x + MHA(x)),  y = N2(h + MLP(h))
// Eval rows decode in the block; here they run over the whole batch: their norms are token-wise
// in eval mode and causal attention over the batch is what decoding with a KV cache computes.
template <class T>
Output composed(const Row& row, Impl impl, const BlockWeights& w, BlockState st, const Batch& x,
                Amplification* amp) {
  const std::vector<T> in(x.x.begin(), x.x.end());
  const SdpaMask mask{x.lengths, true};
  auto mha = [&](const std::vector<T>& a) {
    std::vector<T> out;
    mha_for<T>(out, nullptr, w.attn, a, a, x.B, x.T, x.T, mask);
    return out;
  };
  std::vector<T> y;
  if (w.placement == Placement::pre) {
    const auto h = block_add(in, mha(norm_of(row, impl, w.norm1, &st.norm1, x, in, amp)));
    y = block_add(h, mlp_formula(w, norm_of(row, impl, w.norm2, &st.norm2, x, h, amp), x.rows()));
  } else {
    const auto h = norm_of(row, impl, w.norm1, &st.norm1, x, block_add(in, mha(in)), amp);
    y = norm_of(row, impl, w.norm2, &st.norm2, x, block_add(h, mlp_formula(w, h, x.rows())), amp);
  }
  return Output(y.begin(), y.end());
}

// A side that is a formula, not a block run: {"implementation": what computed it, "calls": [x, y]}.
json formula_side(const std::string& what, const Batch& x, const Output& y) {
  return side_json(what, json::array({call_json({{"B", x.B}, {"T", x.T}, {"E", x.D}},
                                                {{"x", tensor_json(x.x, {"B", "T", "E"}, {x.B, x.T, x.D})},
                                                 {"y", tensor_json(y, {"B", "T", "E"}, {x.B, x.T, x.D})}},
                                                {{"lengths", x.lengths}})}));
}

double two_run_cond(const Row& row, Impl impl, const BlockCase& c, const Batch& xa,
                    const Batch& xb) {
  double cond = 0;
  for (const Batch* x : {&xa, &xb}) {
    Amplification amp;
    if (impl == Impl::reference)
      composed<double>(row, impl, c.w, c.state, *x, &amp);
    else
      composed<float>(row, impl, c.w, c.state, *x, &amp);
    cond = std::max(cond, amp.cond());
  }
  return cond;
}

// Valid tokens of the block's output (a) against the formula's (b), under composite_tolerance
// plus the rule's conditioning term for the formula's norms (Amplification): the formula
// evaluates the same float32 stages in its own order.
CaseOutcome against_formula(const Row& row, Impl impl, const BlockCase& c, const BlockOutput& A,
                            const Output& want, const Amplification& amp, const std::string& formula,
                            const std::string& note) {
  BlockOutput B;
  B.y = want;
  Diff d(kTokenLabels);
  for (int b = 0; b < c.x.B; ++b)
    for (int t = 0; t < c.x.lengths[b]; ++t) compare_tokens(d, c.x, A, b, t, c.x, B, b, t, amp.cond());
  return outcome(d, note, [&] {
    return CaseRecord{.params = case_params(row, c, to_string(row_run(row.norm).path)),
                      .input = side(impl, c.x, A),
                      .related = formula_side(formula, c.x, want)};
  });
}

CaseOutcome block_zero_branches(const Row& row, Impl impl) {
  BlockCase c = draw_block(row.norm, row.placement);
  // zero padding: 0·x is 0 only for finite x, and a norm that counts the padding (batch_norm)
  // would carry NaN poison into every token's branch; what padding does is block_padding's subject
  gen::fill_padding(c.x, gen::Poison::zero);
  std::fill(c.w.attn.out_proj_weight.begin(), c.w.attn.out_proj_weight.end(), 0.0f);
  std::fill(c.w.attn.out_proj_bias.begin(), c.w.attn.out_proj_bias.end(), 0.0f);
  std::fill(c.w.w2.begin(), c.w.w2.end(), 0.0f);
  std::fill(c.w.b2.begin(), c.w.b2.end(), 0.0f);
  const BlockOutput A = run(row, impl, c, c.x, false);
  Output want(c.x.x.begin(), c.x.x.end());  // Pre-LN: x itself
  Amplification amp;
  std::string formula = "x (Pre-LN with both branches zero)";
  if (row.placement == Placement::post) {  // N2(N1(x)), the norm row called directly
    BlockState st = c.state;
    const std::vector<double> x(c.x.x.begin(), c.x.x.end());
    want = norm_of(row, impl, c.w.norm2, &st.norm2, c.x, norm_of(row, impl, c.w.norm1, &st.norm1, c.x, x, &amp), &amp);
    formula = "N2(N1(x)) through the norm row (Post-LN with both branches zero)";
  }
  return against_formula(row, impl, c, A, want, amp, formula,
                         "out_proj, b_o, W2 and b2 set to zero: the block (a) vs " + formula + " (b)");
}

CaseOutcome block_composition(const Row& row, Impl impl) {
  const BlockCase c = draw_block(row.norm, row.placement);
  const BlockOutput A = run(row, impl, c, c.x, false);
  Amplification amp;
  const Output want = impl == Impl::reference ? composed<double>(row, impl, c.w, c.state, c.x, &amp)
                                              : composed<float>(row, impl, c.w, c.state, c.x, &amp);
  const std::string formula = row.placement == Placement::pre
                                  ? "h = x + MHA(N1(x)), y = h + MLP(N2(h)), step by step"
                                  : "h = N1(x + MHA(x)), y = N2(h + MLP(h)), step by step";
  return against_formula(row, impl, c, A, want, amp, formula, "the block (a) vs its formula " + formula + " (b)");
}

}  // namespace

// The block properties and what each inherits from the norm row (model.hpp, Derivation).
//
// Rows that run teacher forcing (stateless and train rows): attention, the MLP and the
// residuals are token-wise or masked-causal and keep each property, so the block breaks one
// exactly when its norm does. attention_weight_batch_independence: in Pre-LN the first attention
// reads N1(x); in Post-LN it reads x itself, before any norm, so its weights hold for every norm.
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
// the union below equals streaming_equivalence for a consistent profile and says why. It is
// mode-comparing like the norm's: an eval row has no train mode to compare.
std::vector<Property> block_properties() {
  return declared(
      Family::block,
      {{.info = {.id = "attention_weight_batch_independence"},
        .derived = {.from = {"batch_independence"}, .pre_ln_only = true},
        .check = attention_weight_batch_independence},
       {.info = {.id = "block_batch_independence"}, .derived = {.from = {"batch_independence"}},
        .check = block_batch_independence},
       {.info = {.id = "block_padding_invariance"}, .derived = {.from = {"padding_invariance"}},
        .check = block_padding_invariance},
       {.info = {.id = "block_causality"}, .derived = {.from = {"causality"}}, .check = block_causality},
       {.info = {.id = "decode_equivalence"}, .applies = {.mode_comparing = true},
        .derived = {.from = {"causality", "streaming_equivalence", "train_inference_equivalence"}},
        .check = decode_equivalence},
       // Pins of the block's wiring against formulas: they hold for every norm (the formula
       // runs the same norm on the same batch), so nothing is derived.
       {.info = {.id = "block_zero_branches"}, .check = block_zero_branches},
       {.info = {.id = "block_composition"}, .check = block_composition}});
}

}  // namespace normcheck
