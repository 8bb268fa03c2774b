// The gradient family (../docs/PROPERTIES.md, "Gradient properties"): the backward pass of every
// norm row whose layer has one (catalog.cpp's gradient_rows, `<row> [gradient]`), checked like
// the forward. A case is a forward input x with an upstream gradient dy at every position; the
// row's backward (reference or optimized) gives dx [B·T·D], dγ and dβ [D], which a property
// compares with the comparison module (compare.hpp: the gradient tolerance rule, Diff, the
// evidence schema, in which a compared row is a token's dx features).
//
// Padding, as the backward passes define it (norms/*.cpp): the token-wise layers and batch_norm
// treat padding as tokens — dx is computed there like anywhere, dγ and dβ sum over it, and
// batch_norm's train statistics include it — while masked_batch_norm ignores it (dx = 0 there,
// nothing summed over it). dy is drawn at every position, padding included, so that each row's
// handling of padding is exercised. A property that compares every position, or dγ and dβ
// (sums over padding in the token-wise rows), fills the padding with ordinary tokens: a poison
// token there would make a token-wise row's dγ NaN or its tolerance infinite, and check nothing.
// The properties about padding and other sequences compare valid tokens' dx only, with the norm
// family's poison in the padding.
//
// Expected profiles (catalog.cpp): a property that makes a norm property's claim about the
// backward pass (batch and padding independence, agreement, determinism) is derived from that
// norm property (Derivation::from); the geometry of normalization applies where the forward
// keeps the invariance it follows from (Applicability::forward_keeps) and holds there; finite
// differences hold everywhere.
#include <algorithm>
#include <cmath>
#include <optional>
#include <random>
#include <stdexcept>

#include "properties/families.hpp"
#include "properties/texts.hpp"
#include "properties/norm_scenarios.hpp"
#include "properties/threads.hpp"

namespace normcheck {
namespace {

using nlohmann::json;
using norm_scenario::Scenario;
using norm_scenario::Side;
using norm_scenario::TokenPos;
using TokenPairs = std::vector<std::pair<TokenPos, TokenPos>>;

// ---------------------------------------------------------------------------------------------
// inputs

// An upstream gradient: one token of the normal regime (k/16 in [-4, 4], shrinking to 0) at
// every position, padding included. Above 2048 values (where the evidence stops listing them:
// the thread-determinism and batch-invariance shapes) the same values come from one seed: 10^5
// picks cost more than every kernel of the case, and shrinking them one by one helps no reader.
std::vector<float> upstream(const Batch& x) {
  std::vector<float> dy(x.x.size());
  if (dy.size() > 2048) {
    std::mt19937 rng(*rc::gen::inRange<uint32_t>(0, 1u << 16));
    for (auto& v : dy) v = float(int(rng() % 129) - 64) / 16.0f;
    return dy;
  }
  for (std::size_t r = 0; r < x.rows(); ++r) {
    const auto v = gen::token(gen::Regime::normal, x.D);
    std::copy(v.begin(), v.end(), dy.begin() + std::ptrdiff_t(r * x.D));
  }
  return dy;
}

// Padding positions filled with ordinary tokens (the normal regime), for the properties that
// compare every position or dγ, dβ (see the top of the file).
void ordinary_padding(Batch& x) {
  for (int b = 0; b < x.B; ++b)
    for (int t = x.lengths[b]; t < x.T; ++t) {
      const auto v = gen::token(gen::Regime::normal, x.D);
      std::copy(v.begin(), v.end(), &x.at(b, t, 0));
    }
}

// Every position of x (call 0 of both sides), padding included.
TokenPairs every_position(const Batch& x) {
  TokenPairs pairs;
  for (int b = 0; b < x.B; ++b)
    for (int t = 0; t < x.T; ++t) pairs.push_back({{0, b, t}, {0, b, t}});
  return pairs;
}

// ---------------------------------------------------------------------------------------------
// a case: a norm scenario's calls with an upstream gradient each, through the backward pass

struct GradCase {
  Scenario s = {};
  std::vector<std::vector<float>> dy_a = {}, dy_b = {};  // per call of each side
  std::optional<Params> params_b = {};  // side b's parameters, when they differ (ε·α²)
  bool padding_too = false;     // s.pairs covers padding: the rule counts padding as tokens
  bool compare_params = false;  // dγ and dβ too
  bool accumulate_b = false;    // side b's dγ, dβ summed over its calls before comparing
  double factor_b = 1;          // side b's dx times this before comparing (α·dx(αx))
  std::string note = {};        // what the related input is, in words and numbers
};

// Every side shares the input's dy call by call (the same inputs on both sides).
GradCase same_upstream(Scenario s) {
  GradCase c{.s = std::move(s)};
  for (const auto& call : c.s.a.calls) c.dy_a.push_back(upstream(call.batch));
  c.dy_b = c.dy_a;
  c.note = c.s.note;
  return c;
}

// The related side's dy is fresh at every position but the compared ones, which carry the
// input's: the claim is about tokens whose x and dy are the same on both sides. Which positions
// carry it: the compared tokens, or (Keep::sequences) every position of their sequences, padding
// included — a sequence moved to another batch takes its whole dy along, so that what differs
// is the other sequences and nothing else.
enum class Keep { tokens, sequences };

GradCase paired_upstream(Scenario s, Keep keep) {
  GradCase c{.s = std::move(s)};
  for (const auto& call : c.s.a.calls) c.dy_a.push_back(upstream(call.batch));
  for (const auto& call : c.s.b.calls) c.dy_b.push_back(upstream(call.batch));
  for (const auto& [pa, pb] : c.s.pairs) {
    const Batch& xa = c.s.a.calls[pa.call].batch;
    const Batch& xb = c.s.b.calls[pb.call].batch;
    const bool whole = keep == Keep::sequences && xa.T == xb.T;
    const std::size_t from = xa.index(pa.b, whole ? 0 : pa.t, 0), to = xb.index(pb.b, whole ? 0 : pb.t, 0);
    std::copy_n(&c.dy_a[pa.call][from], std::size_t(whole ? xa.T : 1) * xa.D, &c.dy_b[pb.call][to]);
  }
  c.note = c.s.note + (keep == Keep::sequences
                           ? "; dy of the moved sequence the same (padding included), the others' fresh"
                           : "; dy of the compared tokens the same, fresh everywhere else (padding included)");
  return c;
}

struct GradOut {
  std::vector<Grads> g = {};   // per call
  GradientTerms terms = {};    // what the tolerance rule reads of this side's calls
};

GradOut run_backward(const LayerRow& row, Impl impl, const Params& p, const State& st,
                     const Side& side, const std::vector<std::vector<float>>& dy, bool padding_too) {
  GradOut out;
  for (std::size_t i = 0; i < side.calls.size(); ++i) {
    const Batch& x = side.calls[i].batch;
    Grads g;
    {
      ThreadScope threads(side.threads);
      if (side.calls[i].shards.empty())
        row.layer->backward(impl)(x, p, side.calls[i].mode, &st, dy[i], g);
      else
        row.layer->backward_on_shards(impl, x, side.calls[i].shards, p, side.calls[i].mode, &st,
                                      dy[i], g);
    }
    // a sharded call's terms are the whole batch's (as the norm family's shard_invariance takes
    // its conditioning), its scale with the dx, dγ, dβ the shards gave
    out.terms |= gradient_terms(row, x, p, st, g, dy[i], padding_too);
    out.g.push_back(std::move(g));
  }
  return out;
}

const Labels kGradLabels{{"b", "t"}, "d", "x", "dx"};

// The parameters and running statistics of a one-sided case, for the evidence.
json case_params(const Params& p, const State& st) {
  Scenario s;
  s.params = p;
  s.state = st;
  return norm_scenario::params_json(s);
}

json features_json(const std::vector<double>& v) {
  return tensor_json(v, {"D"}, {int(v.size())});
}

// A side of the evidence: each call's x, dy and the dx it gave.
json backward_side(const Side& side, Impl impl, const std::vector<std::vector<float>>& dy,
                   const GradOut& out) {
  json calls = json::array();
  const std::size_t shown = std::min<std::size_t>(side.calls.size(), 16);
  for (std::size_t i = 0; i < shown; ++i) {
    const Batch& x = side.calls[i].batch;
    const std::vector<std::string> dims = {"B", "T", "D"};
    const std::vector<int> shape = {x.B, x.T, x.D};
    json attributes = {{"lengths", x.lengths}};
    if (side.calls[i].mode != Mode::none) attributes["mode"] = to_string(side.calls[i].mode);
    calls.push_back(call_json({{"B", x.B}, {"T", x.T}, {"D", x.D}},
                              {{"x", tensor_json(x.x, dims, shape)},
                               {"dy", tensor_json(dy[i], dims, shape)},
                               {"dx", tensor_json(out.g[i].dx, dims, shape)}},
                              attributes));
  }
  json j = side_json(to_string(impl), calls);
  if (shown < side.calls.size()) j["calls_not_shown"] = side.calls.size() - shown;
  if (side.threads) j["threads"] = side.threads;
  return j;
}

// Runs both sides and compares the paired tokens' dx (and dγ, dβ) under `how`: the gradient
// tolerance rule of the less accurate side, at the larger cond and scale of the two.
CaseOutcome compare_backward(const LayerRow& row, Impl impl, Comparison how, const GradCase& c) {
  const Impl ia = c.s.a.impl.value_or(impl), ib = c.s.b.impl.value_or(impl);
  const Params& pb = c.params_b ? *c.params_b : c.s.params;
  const GradOut A = run_backward(row, ia, c.s.params, c.s.state, c.s.a, c.dy_a, c.padding_too);
  GradOut B = run_backward(row, ib, pb, c.s.state, c.s.b, c.dy_b, c.padding_too);
  for (auto& g : B.g)
    for (auto& e : g.dx) e *= c.factor_b;
  // rescaled, b's dx is a's in exact arithmetic: a's terms are the rule's (b's scale, before the
  // rescaling, is 1/α times them)
  GradientTerms terms = A.terms;
  if (c.factor_b == 1) terms |= B.terms;
  const bool optimized = ia == Impl::optimized || ib == Impl::optimized;
  const Impl less_accurate = optimized ? Impl::optimized : Impl::reference;
  const GradTolerance tol = gradient_tolerance(terms, less_accurate);
  const GradTolerance param_tol = param_gradient_tolerance(terms, less_accurate);
  Diff d(kGradLabels, how);
  for (const auto& [pa, pb2] : c.s.pairs) {
    const Batch& xa = c.s.a.calls[pa.call].batch;
    const Batch& xb = c.s.b.calls[pb2.call].batch;
    const std::size_t at_a = xa.index(pa.b, pa.t, 0), at_b = xb.index(pb2.b, pb2.t, 0);
    const std::vector<double>& ya = A.g[pa.call].dx;
    const std::vector<double>& yb = B.g[pb2.call].dx;
    d.rows({pa.call, {pa.b, pa.t}}, {pb2.call, {pb2.b, pb2.t}}, RowView(&ya[at_a], xa.D),
           RowView(&yb[at_b], xb.D), [&](int k) { return tol.bound(yb[at_b + k]); },
           RowView(&xa.x[at_a], xa.D), RowView(&xb.x[at_b], xb.D));
  }
  // side b's dγ, dβ: call by call, or (accumulate_b) added up over its calls in order, as
  // gradient accumulation adds each micro-batch's into the parameters' .grad
  std::vector<Grads> params_b = B.g;
  if (c.accumulate_b && !B.g.empty()) {
    Grads sum{.dgamma = B.g[0].dgamma, .dbeta = B.g[0].dbeta};
    for (std::size_t i = 1; i < B.g.size(); ++i)
      for (auto [acc, part] : {std::pair{&sum.dgamma, &B.g[i].dgamma}, std::pair{&sum.dbeta, &B.g[i].dbeta}})
        for (std::size_t f = 0; f < acc->size() && f < part->size(); ++f) (*acc)[f] += (*part)[f];
    params_b = {std::move(sum)};
  }
  if (c.compare_params)
    for (std::size_t i = 0; i < A.g.size() && i < params_b.size(); ++i)
      for (const auto& [name, ga, gb] : {std::tuple{"dgamma", &A.g[i].dgamma, &params_b[i].dgamma},
                                         std::tuple{"dbeta", &A.g[i].dbeta, &params_b[i].dbeta}})
        for (std::size_t f = 0; f < ga->size() && f < gb->size(); ++f)
          d.value(std::string(name) + "[" + std::to_string(f) + "]" +
                      (A.g.size() > 1 ? " of call " + std::to_string(i) : "") +
                      (c.accumulate_b ? " (b: accumulated over its calls)" : ""),
                  (*ga)[f], (*gb)[f], param_tol.bound((*gb)[f]));
  return outcome(d, c.note, [&] {
    CaseRecord r{.params = norm_scenario::params_json(c.s),
                 .input = backward_side(c.s.a, ia, c.dy_a, A),
                 .related = backward_side(c.s.b, ib, c.dy_b, B)};
    if (c.params_b) r.params["eps (related)"] = c.params_b->eps;
    if (c.compare_params && !A.g.empty() && !params_b.empty())
      for (const auto& [name, ga, gb] : {std::tuple{"dgamma", &A.g[0].dgamma, &params_b[0].dgamma},
                                         std::tuple{"dbeta", &A.g[0].dbeta, &params_b[0].dbeta}})
        if (!ga->empty())
          r.params[name] = {{"input", features_json(*ga)}, {"related", features_json(*gb)}};
    return r;
  });
}

// ---------------------------------------------------------------------------------------------
// properties that make a norm property's claim about dx: the norm property's scenario, with dy

CaseOutcome grad_reference_agreement(const Row& row, Impl impl) {
  Scenario s = norm_scenario::reference_agreement(row.norm);  // a: optimized, b: reference
  ordinary_padding(s.a.calls[0].batch);
  s.b.calls[0].batch = s.a.calls[0].batch;
  s.pairs = every_position(s.a.calls[0].batch);
  GradCase c = same_upstream(std::move(s));
  c.padding_too = c.compare_params = true;
  c.note += "; every position's dx (padding holds ordinary tokens), dγ and dβ";
  return compare_backward(row.norm, impl, Comparison::values, c);
}

CaseOutcome grad_batch_independence(const Row& row, Impl impl) {
  return compare_backward(row.norm, impl, Comparison::values,
                          paired_upstream(norm_scenario::batch_independence(row.norm), Keep::sequences));
}

CaseOutcome grad_padding_invariance(const Row& row, Impl impl) {
  return compare_backward(row.norm, impl, Comparison::values,
                          paired_upstream(norm_scenario::padding_invariance(row.norm), Keep::tokens));
}

// The batch cut along B into 2 to 4 consecutive parts of uneven sizes (norm_scenario::draw_cut,
// as shard_invariance cuts it), run two ways against the whole batch (a), dy the same at every
// position on both sides:
// - Cut::micro_batches: each part its own forward and backward, one after another, as gradient
//   accumulation runs them (each normalized with its own statistics: nothing is synchronized
//   between the steps of one process, SyncBatchNorm's all-reduce included); b's dγ, dβ are the
//   parts' added up;
// - Cut::shards: the parts as the workers of one data-parallel step (backward_on_shards: each
//   alone, unless the layer synchronizes them), dγ, dβ added over the workers (DDP's all-reduce).
// Every position's dx is compared, padding included (ordinary tokens there: the token-wise rows
// and batch_norm sum dγ, dβ over it, and masked_batch_norm gives it dx = 0 on both sides); the
// input's regime drawn as shard_invariance draws it; B ≥ 2, no empty sequence.
enum class Cut { micro_batches, shards };

CaseOutcome cut_batch(const Row& row, Impl impl, Cut how) {
  const LayerRow& r = row.norm;
  norm_scenario::Base base = norm_scenario::draw_base(r, gen::Reach::medium, 2);
  base.x = gen::batch(base.shape, gen::regime(), gen::Poison::zero, base.min_len);
  ordinary_padding(base.x);
  const Batch& x = base.x;
  const ShardCut cut = norm_scenario::draw_cut(x.B);
  std::string sizes;
  for (int size : cut) sizes += (sizes.empty() ? "" : ", ") + std::to_string(size);
  GradCase c;
  c.s.params = base.params;
  c.s.state = base.state;
  c.s.a.calls = {{x, r.mode()}};
  c.dy_a = {upstream(x)};
  if (how == Cut::shards) {
    c.s.b.calls = {{x, r.mode(), cut}};
    c.s.pairs = every_position(x);
    c.dy_b = c.dy_a;
    c.note = "the whole batch (a) vs one data-parallel step on " + std::to_string(cut.size()) +
             " shards of [" + sizes + "] sequences (b), dγ and dβ added over the shards";
  } else {
    const std::size_t per = std::size_t(x.T) * x.D;
    int first = 0;
    for (std::size_t i = 0; i < cut.size(); ++i) {
      c.s.b.calls.push_back({sequences(x, first, cut[i]), r.mode()});
      c.dy_b.emplace_back(c.dy_a[0].begin() + std::ptrdiff_t(first * per),
                          c.dy_a[0].begin() + std::ptrdiff_t((first + cut[i]) * per));
      for (int b = 0; b < cut[i]; ++b)
        for (int t = 0; t < x.T; ++t) c.s.pairs.push_back({{0, first + b, t}, {int(i), b, t}});
      first += cut[i];
    }
    c.accumulate_b = true;
    c.note = "the whole batch (a) vs " + std::to_string(cut.size()) + " micro-batches of [" +
             sizes + "] sequences, each its own forward and backward (b), dγ and dβ accumulated";
  }
  c.padding_too = c.compare_params = true;
  c.note += "; every position's dx (padding holds ordinary tokens), dγ and dβ";
  return compare_backward(r, impl, Comparison::values, c);
}

CaseOutcome grad_microbatch_equivalence(const Row& row, Impl impl) {
  return cut_batch(row, impl, Cut::micro_batches);
}

CaseOutcome grad_shard_invariance(const Row& row, Impl impl) {
  return cut_batch(row, impl, Cut::shards);
}

// The shapes of thread_determinism (norm_properties.cpp): two thirds of the cases large enough
// for the kernels' parallel paths, wide or tall and narrow. Unlike the norm scenario, a large
// case's values come from one seed (dense grid k·2^-18 in [-4, 4]), as upstream()'s do: a
// counterexample found there is shrunk pick by pick, and 10^4 to 10^5 picks of values, each
// retried through every backward of the case, would take hours where a few picks take seconds.
// Shrinking still reaches the small cases (kind 0, the row's ordinary draw) where a bug shows
// there. Padding holds zeros: a NaN there makes a token-wise row's dγ NaN on both sides, whatever
// the order of its sums; the bitwise comparison needs no ordinary tokens.
norm_scenario::Base thread_case(const LayerRow& row) {
  const int kind = *rc::gen::element(0, 1, 2);
  if (kind == 0) {
    norm_scenario::Base base = norm_scenario::draw_base(row);
    gen::fill_padding(base.x, gen::Poison::zero);
    return base;
  }
  norm_scenario::Base base;
  base.min_len = norm_scenario::min_len(row);
  base.shape = kind == 1 ? gen::Shape{*rc::gen::inRange(4, 9), *rc::gen::inRange(16, 33),
                                      *rc::gen::element(65, 130, 257)}
                         : gen::Shape{*rc::gen::inRange(4, 9), *rc::gen::inRange(32, 65),
                                      *rc::gen::element(1, 2, 3)};
  base.params = gen::params(*row.layer, base.shape.D);
  base.state = gen::state(base.shape.D);
  base.x = Batch(base.shape.B, base.shape.T, base.shape.D);
  for (auto& l : base.x.lengths) l = *rc::gen::inRange(base.min_len, base.shape.T + 1);
  std::mt19937 rng(*rc::gen::inRange<uint32_t>(0, 1u << 16));
  for (int b = 0; b < base.x.B; ++b)
    for (int t = 0; t < base.x.lengths[b]; ++t)
      for (int d = 0; d < base.x.D; ++d)
        base.x.at(b, t, d) = float(int(rng() % (1u << 21)) - (1 << 20)) / 262144.0f;
  gen::fill_padding(base.x, gen::Poison::zero);
  return base;
}

CaseOutcome grad_thread_determinism(const Row& row, Impl impl) {
  const norm_scenario::Base base = thread_case(row.norm);
  Scenario s;
  s.params = base.params;
  s.state = base.state;
  s.a.calls = {{base.x, row.norm.mode()}};
  s.a.threads = 1;
  s.b.threads = *rc::gen::element(1, 2, 3, 4);
  s.note = "1 thread (a) vs " + std::to_string(s.b.threads) + " threads (b)";
  GradCase c = same_upstream(std::move(s));
  Batch& x = c.s.a.calls[0].batch;
  c.padding_too = c.compare_params = true;
  // dγ, dβ (and BatchNorm's per-feature sums) are reduced in double, where sums of grid values
  // are exact in any order, so a reduction whose order followed the threads could go unseen.
  // In half the cases every third row r (r % 3 = 1) gets dy·2^60 and the next row the same x and
  // −dy·2^60: the pair cancels exactly but wipes out the small sum accumulated before it
  // ((s + 2^60) − 2^60 = 0 in double), so what survives depends on where a reduction's pieces
  // begin and end.
  if (*rc::gen::inRange(0, 2)) {
    const int D = x.D;
    for (std::size_t r = 1; r + 1 < x.rows(); r += 3)
      for (int d = 0; d < D; ++d) {
        float& g = c.dy_a[0][r * D + d];
        g = std::ldexp(g, 60);
        c.dy_a[0][(r + 1) * D + d] = -g;
        x.x[(r + 1) * D + d] = x.x[r * D + d];
      }
    c.dy_b = c.dy_a;
    c.note += "; rows of dy·2^60 followed by their negation";
  }
  c.s.b.calls = {{x, row.norm.mode()}};
  c.s.pairs = every_position(x);
  return compare_backward(row.norm, impl, Comparison::bitwise, c);
}

CaseOutcome grad_batch_invariance_bitwise(const Row& row, Impl impl) {
  return compare_backward(row.norm, impl, Comparison::bitwise,
                          paired_upstream(norm_scenario::batch_invariance_bitwise(row.norm), Keep::tokens));
}

// dx(αx) = dx(x)/α (and dγ, dβ unchanged) for a forward with y(αx) = y(x). With ε the forward's
// invariance is exact when ε scales with α² (y(αx; α²ε) = y(x; ε)), so side b runs there: no ε
// allowance is needed, and α = 2^k keeps αx and α²ε exact in float32.
CaseOutcome grad_scale_covariance(const Row& row, Impl impl) {
  norm_scenario::Base base = norm_scenario::draw_base(row.norm);
  ordinary_padding(base.x);
  const int k = *rc::gen::element(-8, -3, -1, 1, 2, 5, 8);
  const double alpha = std::ldexp(1.0, k);
  Scenario s;
  s.params = base.params;
  s.state = base.state;
  Batch scaled = base.x;
  for (auto& v : scaled.x) v = float(v * alpha);
  s.a.calls = {{base.x, row.norm.mode()}};
  s.b.calls = {{scaled, row.norm.mode()}};
  s.pairs = every_position(base.x);
  s.note = "every position scaled by α = 2^" + std::to_string(k) + " and ε by α²";
  GradCase c = same_upstream(std::move(s));
  c.params_b = c.s.params;
  c.params_b->eps = c.s.params.eps * alpha * alpha;
  c.factor_b = alpha;
  c.padding_too = c.compare_params = true;
  c.note += "; b's dx shown times α";
  return compare_backward(row.norm, impl, Comparison::values, c);
}

// ---------------------------------------------------------------------------------------------
// the geometry of normalization: a forward that ignores moving x along a direction has a
// gradient orthogonal to it, for any dy (dy·J·v = 0 for every v the forward ignores)

enum class Orbit { token_shift, token_scale, feature_shift, feature_scale };

// ε tiny where the orbit is a scaling: the forward ignores a scaling only as ε → 0, and with
// ε = 1e-30 its derivative along x is rstd·ε/(σ² + ε)·Σ dx̂·x̂, below 1e-15 of the terms for a
// set of variance ≥ 1e-15 (every drawn set that is not constant; a constant one has x̂ = 0 and
// nothing to miss).
constexpr double kTinyEps = 1e-30;

CaseOutcome orthogonality(const Row& row, Impl impl, Orbit orbit) {
  const LayerRow& r = row.norm;
  norm_scenario::Base base = norm_scenario::draw_base(r);
  ordinary_padding(base.x);
  const bool scale = orbit == Orbit::token_scale || orbit == Orbit::feature_scale;
  const bool per_token = orbit == Orbit::token_shift || orbit == Orbit::token_scale;
  if (scale) base.params.eps = kTinyEps;
  const Batch& x = base.x;
  const auto dy = upstream(x);
  Grads g;
  r.layer->backward(impl)(x, base.params, r.mode(), &base.state, dy, g);
  // a token's sum reads its own dx (valid tokens only); a feature's, every position's
  const GradTolerance tol =
      gradient_tolerance(gradient_terms(r, x, base.params, base.state, g, dy, !per_token), impl);
  // Σ c·dx over a set, c = 1 (shift) or x (scale); each dx may be off by tol.bound(dx)
  Diff d(kGradLabels);
  auto check = [&](const std::string& where, const std::vector<std::size_t>& at) {
    double sum = 0, bound = 0;
    for (std::size_t i : at) {
      const double coef = scale ? double(x.x[i]) : 1.0;
      sum += coef * g.dx[i];
      bound += std::abs(coef) * tol.bound(g.dx[i]);
    }
    d.value(where, sum, 0.0, bound);
  };
  const char* what = scale ? "x·dx" : "dx";
  std::vector<std::size_t> at;
  if (per_token) {
    for (int b = 0; b < x.B; ++b)
      for (int t = 0; t < x.lengths[b]; ++t) {
        at.clear();
        for (int f = 0; f < x.D; ++f) at.push_back(x.index(b, t, f));
        check(std::string("Σ_d ") + what + " of token (b=" + std::to_string(b) + ", t=" +
                  std::to_string(t) + ")", at);
      }
  } else {
    for (int f = 0; f < x.D; ++f) {
      at.clear();
      for (std::size_t p = 0; p < x.rows(); ++p) at.push_back(p * x.D + f);
      check(std::string("Σ_{b,t} ") + what + " of feature d=" + std::to_string(f), at);
    }
  }
  const std::string note = std::string(per_token ? "each valid token's " : "each feature's (every position) ") +
                           (scale ? "Σ x·dx, at ε = 1e-30," : "Σ dx,") + " against 0";
  const Side input{.calls = {{x, r.mode()}}};
  return outcome(d, note, [&] {
    return CaseRecord{.params = case_params(base.params, base.state),
                      .input = backward_side(input, impl, {dy}, {.g = {g}})};
  });
}

CaseOutcome grad_token_shift_orthogonality(const Row& row, Impl impl) {
  return orthogonality(row, impl, Orbit::token_shift);
}
CaseOutcome grad_token_scale_orthogonality(const Row& row, Impl impl) {
  return orthogonality(row, impl, Orbit::token_scale);
}
CaseOutcome grad_feature_shift_orthogonality(const Row& row, Impl impl) {
  return orthogonality(row, impl, Orbit::feature_shift);
}
CaseOutcome grad_feature_scale_orthogonality(const Row& row, Impl impl) {
  return orthogonality(row, impl, Orbit::feature_scale);
}

// ---------------------------------------------------------------------------------------------
// finite differences of the double forward

CaseOutcome grad_finite_difference(const Row& row, Impl impl) {
  const LayerRow& r = row.norm;
  norm_scenario::Base base = norm_scenario::draw_base(r);
  // Inputs the steps keep exact in float32 (compare.hpp, finite_difference_tolerance): values
  // of magnitude ≤ 4 + 2^-13 on grids no finer than 2^-18 (not the large offsets, whose grid is
  // 2^-10 at 1000), so x + t·v with t = ±2^-20, ±2^-21 and |v| ≤ 8 needs at most 24 bits;
  // padding ordinary tokens (every position's y enters F); ε ≥ 1e-6 for the truncation bound.
  const gen::Regime regime = *rc::gen::element(gen::Regime::normal, gen::Regime::tiny_variance,
                                               gen::Regime::constant_rows, gen::Regime::dense);
  base.x = gen::batch(base.shape, regime, gen::Poison::zero, base.min_len);
  ordinary_padding(base.x);
  Params& p = base.params;
  p.eps = std::max(p.eps, 1e-6);
  const Batch& x = base.x;
  const auto dy = upstream(x);
  const auto direction = [](std::size_t n) {
    return *rc::gen::container<std::vector<int>>(n, rc::gen::inRange(-8, 9));
  };
  const auto v = direction(x.x.size()), u = direction(p.gamma.size()), w = direction(p.beta.size());

  Grads g;
  r.layer->backward(impl)(x, p, r.mode(), &base.state, dy, g);
  // the optimized gradients may each be off by the rule's bound (the reference's by 1e-4 of it)
  const GradientTerms rule = gradient_terms(r, x, p, base.state, g, dy, true);
  const GradTolerance tol = gradient_tolerance(rule, impl), param_tol = param_gradient_tolerance(rule, impl);
  double analytic = 0, terms = 0, allowed = 0;
  for (const auto& [grad, dir, t] : {std::tuple{&g.dx, &v, &tol}, std::tuple{&g.dgamma, &u, &param_tol},
                                     std::tuple{&g.dbeta, &w, &param_tol}})
    for (std::size_t i = 0; i < dir->size() && i < grad->size(); ++i) {
      analytic += (*grad)[i] * (*dir)[i];
      terms += std::abs((*grad)[i] * (*dir)[i]);
      allowed += std::abs((*dir)[i]) * t->bound((*grad)[i]);
    }

  // F(t) = Σ dy·y(x + t·v, γ + t·u, β + t·w) by the reference forward, in double
  std::vector<double> evaluations;
  const auto F = [&](double t) {
    Batch xt = x;
    Params pt = p;
    auto step = [t](float& to, float from, int dir) {
      const double want = double(from) + t * dir;
      to = float(want);
      if (double(to) != want)  // the generators left the grid this bound is derived for
        throw std::logic_error("grad_finite_difference: the step " + std::to_string(t) +
                               " is not exact at the value " + std::to_string(from));
    };
    for (std::size_t i = 0; i < v.size(); ++i) step(xt.x[i], x.x[i], v[i]);
    for (std::size_t i = 0; i < u.size(); ++i) step(pt.gamma[i], p.gamma[i], u[i]);
    for (std::size_t i = 0; i < w.size(); ++i) step(pt.beta[i], p.beta[i], w[i]);
    State st = base.state;
    Output y;
    r.layer->reference(xt, pt, r.mode(), &st, y);
    double f = 0;
    for (std::size_t i = 0; i < y.size(); ++i) f += double(dy[i]) * y[i];
    evaluations.push_back(f);
    return f;
  };
  State st = base.state;
  Output y0;
  r.layer->reference(x, p, r.mode(), &st, y0);
  double rounding = 0;  // Σ (1 + |dy·y|) at t = 0
  for (std::size_t i = 0; i < y0.size(); ++i) rounding += 1 + std::abs(dy[i] * y0[i]);
  const double h = std::ldexp(1.0, -20);
  const double d1 = (F(h) - F(-h)) / (2 * h), d2 = (F(h / 2) - F(-h / 2)) / h;
  const double richardson = (4 * d2 - d1) / 3;
  const double bound = finite_difference_tolerance(terms, rounding, h) + allowed;

  Diff d(kGradLabels);
  d.value(std::string("Σ dx·v") + (u.empty() ? "" : " + Σ dγ·u") + (w.empty() ? "" : " + Σ dβ·w") +
              " (a: the " + to_string(impl) + " gradients; b: finite differences)",
          analytic, richardson, bound);
  const std::string note = "the directional derivative along random integer directions v (x), u (γ), "
                           "w (β) in [-8, 8] against Richardson-extrapolated central differences "
                           "of the reference forward, steps 2^-20 and 2^-21";
  return outcome(d, note, [&] {
    const std::vector<std::string> dims = {"B", "T", "D"};
    const std::vector<int> shape = {x.B, x.T, x.D};
    json attributes = {{"lengths", x.lengths}};
    if (r.mode() != Mode::none) attributes["mode"] = to_string(r.mode());
    json input = side_json(to_string(impl),
                           json::array({call_json({{"B", x.B}, {"T", x.T}, {"D", x.D}},
                                                  {{"x", tensor_json(x.x, dims, shape)},
                                                   {"dy", tensor_json(dy, dims, shape)},
                                                   {"dx", tensor_json(g.dx, dims, shape)},
                                                   {"v", tensor_json(std::vector<float>(v.begin(), v.end()), dims, shape)}},
                                                  attributes)}));
    json fd = attributes;
    fd["F(h), F(-h), F(h/2), F(-h/2)"] = evaluations;
    fd["central"] = d2;
    fd["richardson"] = richardson;
    json related = side_json("reference forward (double)",
                             json::array({call_json({{"B", x.B}, {"T", x.T}, {"D", x.D}},
                                                    {{"x", tensor_json(x.x, dims, shape)},
                                                     {"y", tensor_json(y0, dims, shape)}},
                                                    fd)}));
    json params = case_params(p, base.state);
    if (!u.empty()) params["u"] = u, params["dgamma"] = features_json(g.dgamma);
    if (!w.empty()) params["w"] = w, params["dbeta"] = features_json(g.dbeta);
    return CaseRecord{.params = params, .input = input, .related = related};
  });
}

}  // namespace

// The gradient properties. Derivation::from: the gradient row violates the property exactly
// when its norm row violates one of these (catalog.cpp's gradient_rows). No current row needs
// an exception to that rule: each backward couples tokens, sequences and padding exactly as its
// forward does (batch_norm train through the batch mean and variance, padding included;
// masked_batch_norm through the valid tokens' statistics only; the others within a token or a
// group, or elementwise in eval). Only dγ and dβ differ — a token-wise row sums them over
// padding, which its forward output never sees — and they are compared only where the same
// input runs on both sides.
// grad_microbatch_equivalence is derived from batch_independence: a micro-batch is the batch
// with the other sequences taken away, so a token's dx is the same in its micro-batch for every
// cut exactly when it does not depend on the other sequences (a micro-batch of one sequence is
// that sequence alone), and dγ, dβ, sums of per-token terms, then add up over the micro-batches.
// grad_shard_invariance is derived from shard_invariance: one data-parallel step, whose workers
// a synchronizing layer joins. So sync_batch_norm [train] keeps the second and breaks the first:
// its all-reduce joins the workers of one step, but micro-batches are separate steps, each
// normalized with its own statistics, as in PyTorch, whose SyncBatchNorm reduces over the
// process group within one forward call and never across calls.
std::vector<Property> gradient_properties() {
  const Applicability optimized = {.optimized_only = true};
  return declared(
      Family::gradient,
      {{.info = {.id = "grad_reference_agreement"}, .applies = optimized,
        .derived = {.from = {"reference_agreement"}}, .check = grad_reference_agreement},
       {.info = {.id = "grad_finite_difference"}, .check = grad_finite_difference},
       {.info = {.id = "grad_batch_independence"}, .derived = {.from = {"batch_independence"}},
        .check = grad_batch_independence},
       {.info = {.id = "grad_padding_invariance"}, .derived = {.from = {"padding_invariance"}},
        .check = grad_padding_invariance},
       {.info = {.id = "grad_microbatch_equivalence"}, .derived = {.from = {"batch_independence"}},
        .check = grad_microbatch_equivalence},
       {.info = {.id = "grad_shard_invariance"}, .derived = {.from = {"shard_invariance"}},
        .check = grad_shard_invariance},
       {.info = {.id = "grad_token_shift_orthogonality"},
        .applies = {.forward_keeps = "token_shift_invariance"}, .check = grad_token_shift_orthogonality},
       {.info = {.id = "grad_token_scale_orthogonality"},
        .applies = {.forward_keeps = "token_scale_invariance"}, .check = grad_token_scale_orthogonality},
       {.info = {.id = "grad_feature_shift_orthogonality"},
        .applies = {.forward_keeps = "feature_shift_invariance"}, .check = grad_feature_shift_orthogonality},
       {.info = {.id = "grad_feature_scale_orthogonality"},
        .applies = {.forward_keeps = "feature_scale_invariance"}, .check = grad_feature_scale_orthogonality},
       {.info = {.id = "grad_scale_covariance"}, .applies = {.forward_keeps = "global_scale_invariance"},
        .check = grad_scale_covariance},
       {.info = {.id = "grad_thread_determinism"}, .comparison = Comparison::bitwise, .applies = optimized,
        .derived = {.from = {"thread_determinism"}}, .check = grad_thread_determinism},
       {.info = {.id = "grad_batch_invariance_bitwise"}, .comparison = Comparison::bitwise,
        .applies = {.optimized_only = true, .needs = "grad_batch_independence"},
        .derived = {.from = {"batch_invariance_bitwise"}}, .check = grad_batch_invariance_bitwise}});
}

}  // namespace normcheck
