// The case code of the `mha` rows: multi-head attention with PyTorch's layout, run through the
// row's entry. Each case draws its input, builds the related input, runs both and compares the
// output rows y of the query tokens (b, i).
//
// cond = Σ_c |W_o[e,c]|·(k_s·2·L̂·Σ_j w_j·|v_jc − o_c| + k_v·(Σ_j w_j·v̂_jc + |o_c|)) per output
// element y[b, i, e]: sdpa's bound (sdpa_properties.cpp) carried through the projections. L̂
// bounds the logits by the magnitudes the float32 projections round relative to (q̂ = Σ|W_q||x|
// + |b_q|, likewise k̂, v̂), whose (E + 1)·u relative errors add 2(E + 1)·u·L̂ to the logits'
// error; the values carry (E + 1)·u·v̂ and the out-projection (E + 1)·u·|o|, all taken to y
// through |W_o|. k_s = (dh + 2E + 4)/32 and k_v = (E + 1)/32 turn those counts of u into
// 2e-6·cond.
#include <map>

#include "properties/attention_cases.hpp"
#include "properties/generators.hpp"

namespace normcheck::attn::mha {
namespace {

using nlohmann::json;

// ---------------------------------------------------------------------------------------------
// cases

struct MhaCase {
  MhaWeights w;
  int B = 1, Tq = 1, Tk = 1;
  bool self = true;                  // memory is the query tensor
  std::vector<float> query, memory;  // [B, Tq, E], [B, Tk, E]
  SdpaMask m;

  int E() const { return w.E; }
  float* q_tok(int b, int t) { return &query[(std::size_t(b) * Tq + t) * w.E]; }
  float* m_tok(int b, int t) { return &memory[(std::size_t(b) * Tk + t) * w.E]; }
  const float* q_tok(int b, int t) const { return &query[(std::size_t(b) * Tq + t) * w.E]; }
  const float* m_tok(int b, int t) const { return &memory[(std::size_t(b) * Tk + t) * w.E]; }
  // keeps memory = query for self-attention after the query changed
  void sync() {
    if (self) memory = query;
  }
  SdpaShape heads() const { return {B, w.H, Tq, Tk, w.head_dim(), w.head_dim(), 0}; }
};

// Projection weights k/128, k in [-32, 32]; biases k/16, k in [-8, 8].
MhaWeights draw_weights(int E, int H) {
  MhaWeights w;
  w.E = E;
  w.H = H;
  for (int k : ints(std::size_t(3) * E * E, 32)) w.in_proj_weight.push_back(float(k) / 128.0f);
  for (int k : ints(std::size_t(3) * E, 8)) w.in_proj_bias.push_back(float(k) / 16.0f);
  for (int k : ints(std::size_t(E) * E, 32)) w.out_proj_weight.push_back(float(k) / 128.0f);
  for (int k : ints(std::size_t(E), 8)) w.out_proj_bias.push_back(float(k) / 16.0f);
  return w;
}

// A case of the given weights: tokens, mask and values k/16 (memory = query for `self`).
MhaCase draw_with(MhaWeights w, const TokenRanges& tokens) {
  const Tokens t = draw_tokens(tokens);
  MhaCase c;
  c.w = std::move(w);
  c.B = t.B;
  c.Tq = t.Tq;
  c.Tk = t.Tk;
  c.m = t.m;
  c.self = tokens.queries == Queries::self;
  c.query = values(std::size_t(c.B) * c.Tq * c.E());
  c.memory = c.self ? c.query : values(std::size_t(c.B) * c.Tk * c.E());
  return c;
}

// A case with dh in [1, 8] and 1 to 4 heads, E = H·dh ≤ 16.
MhaCase draw(const TokenRanges& tokens = {}) {
  const int dh = *inRange(1, 9);
  const int H = *inRange(1, std::min(4, 16 / dh) + 1);
  return draw_with(draw_weights(H * dh, H), tokens);
}

Run run(const AttentionEntry& e, Impl impl, const MhaCase& c, bool weights = false) {
  Run r;
  const MhaFn& f = impl == Impl::reference ? e.mha_reference : e.mha_optimized;
  f(r.out, weights ? &r.weights : nullptr, c.w, c.query, c.memory, c.B, c.Tq, c.Tk, c.m);
  return r;
}

template <class T>
std::vector<double> widen(const std::vector<T>& v) {
  return {v.begin(), v.end()};
}

// ---------------------------------------------------------------------------------------------
// tolerance (the top of this file)

// |x|·|W|ᵀ + |b| of a projection part: the magnitude its float rounding is relative to,
// as heads [B, H, T, dh]
std::vector<double> abs_projection(const MhaWeights& w, int part, const std::vector<float>& x,
                                   int B, int T) {
  const int E = w.E, H = w.H, dh = w.head_dim();
  std::vector<double> r(std::size_t(B) * T * E);
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T; ++t)
      for (int h = 0; h < H; ++h)
        for (int d = 0; d < dh; ++d) {
          const int o = part * E + h * dh + d;
          double a = std::abs(double(w.in_proj_bias[o]));
          for (int e = 0; e < E; ++e)
            a += std::abs(double(w.in_proj_weight[std::size_t(o) * E + e])) *
                 std::abs(double(x[(std::size_t(b) * T + t) * E + e]));
          r[((std::size_t(b) * H + h) * T + t) * dh + d] = a;
        }
  return r;
}

// The cond of every output element y [B, Tq, E], and the logit bound L̂ of every query row
// [B, H, Tq] (the cond of its attention weights).
struct MhaCond {
  std::vector<double> y, logits;
};

MhaCond mha_cond(const MhaCase& c) {
  const int E = c.E(), H = c.w.H, dh = c.w.head_dim();
  const SdpaShape s = c.heads();
  const MhaHeads ref = mha_reference_heads(c.w, widen(c.query), widen(c.memory), c.B, c.Tq, c.Tk, c.m);
  const auto qa = abs_projection(c.w, 0, c.query, c.B, c.Tq);
  const auto ka = abs_projection(c.w, 1, c.memory, c.B, c.Tk);
  const auto va = abs_projection(c.w, 2, c.memory, c.B, c.Tk);
  const double scale = default_scale(dh);
  const double k_s = (dh + 2.0 * E + 4) / 32, k_v = (E + 1.0) / 32;
  MhaCond cond;
  cond.y.assign(std::size_t(c.B) * c.Tq * E, 0.0);
  cond.logits.assign(std::size_t(c.B) * H * c.Tq, 0.0);
  std::vector<double> head_cond(E);
  for (int b = 0; b < c.B; ++b)
    for (int i = 0; i < c.Tq; ++i) {
      const int n = visible_keys(s, c.m, b, i);
      for (int h = 0; h < H; ++h) {
        const std::size_t qrow = (std::size_t(b) * H + h) * c.Tq + i;
        auto krow = [&](int j) { return (std::size_t(b) * H + h) * c.Tk + j; };
        double L = 0;
        std::vector<double> w(n);  // the reference's weights of this row
        for (int j = 0; j < n; ++j) {
          double a = 0, logit = 0;
          for (int d = 0; d < dh; ++d) {
            a += qa[qrow * dh + d] * ka[krow(j) * dh + d];
            logit += ref.q[qrow * dh + d] * ref.k[krow(j) * dh + d];
          }
          L = std::max(L, a);
          w[j] = logit * scale;
        }
        L *= scale;
        cond.logits[qrow] = std::isfinite(L) ? L : 0.0;
        const double sum = exp_shifted(w);
        for (auto& x : w) x /= sum;
        for (int d = 0; d < dh; ++d) {
          const double o = ref.o[qrow * dh + d];
          double spread = 0, vmag = 0;  // Σ_j w_j·|v_jd − o_d|, Σ_j w_j·v̂_jd
          for (int j = 0; j < n; ++j) {
            spread += w[j] * std::abs(ref.v[krow(j) * dh + d] - o);
            vmag += w[j] * va[krow(j) * dh + d];
          }
          const double v = k_s * 2 * L * spread + k_v * (vmag + std::abs(o));
          head_cond[h * dh + d] = std::isfinite(v) ? v : 0.0;
        }
      }
      for (int e = 0; e < E; ++e) {
        double a = 0;
        for (int k = 0; k < E; ++k)
          a += std::abs(double(c.w.out_proj_weight[std::size_t(e) * E + k])) * head_cond[k];
        cond.y[(std::size_t(b) * c.Tq + i) * E + e] = a;
      }
    }
  return cond;
}

// An independent evaluation in long double: projections, max-subtracted softmax, out_proj.
Output oracle(const MhaCase& c) {
  const int E = c.E(), H = c.w.H, dh = c.w.head_dim();
  const SdpaShape s = c.heads();
  auto proj = [&](const std::vector<float>& x, int T, int part) {
    std::vector<long double> y(std::size_t(c.B) * T * E);
    for (std::size_t r = 0; r < std::size_t(c.B) * T; ++r)
      for (int o = 0; o < E; ++o) {
        long double a = c.w.in_proj_bias[part * E + o];
        for (int e = 0; e < E; ++e)
          a += (long double)c.w.in_proj_weight[std::size_t(part * E + o) * E + e] * x[r * E + e];
        y[r * E + o] = a;
      }
    return y;
  };
  const auto q = proj(c.query, c.Tq, 0), k = proj(c.memory, c.Tk, 1), v = proj(c.memory, c.Tk, 2);
  Output out(std::size_t(c.B) * c.Tq * E);
  for (int b = 0; b < c.B; ++b)
    for (int i = 0; i < c.Tq; ++i) {
      const int n = visible_keys(s, c.m, b, i);
      std::vector<long double> o(E, 0.0L);
      for (int h = 0; h < H && n > 0; ++h) {
        std::vector<long double> sc(n);
        for (int j = 0; j < n; ++j) {
          long double a = 0;
          for (int d = 0; d < dh; ++d)
            a += q[(std::size_t(b) * c.Tq + i) * E + h * dh + d] * k[(std::size_t(b) * c.Tk + j) * E + h * dh + d];
          sc[j] = a / std::sqrt((long double)dh);
        }
        const long double sum = exp_shifted(sc);
        for (int d = 0; d < dh; ++d) {
          long double a = 0;
          for (int j = 0; j < n; ++j) a += sc[j] * v[(std::size_t(b) * c.Tk + j) * E + h * dh + d];
          o[h * dh + d] = a / sum;
        }
      }
      for (int e = 0; e < E; ++e) {
        long double a = c.w.out_proj_bias[e];
        for (int k2 = 0; k2 < E; ++k2) a += (long double)c.w.out_proj_weight[std::size_t(e) * E + k2] * o[k2];
        out[(std::size_t(b) * c.Tq + i) * E + e] = double(a);
      }
    }
  return out;
}

// ---------------------------------------------------------------------------------------------
// sides and evidence

// A case run through one side of a comparison, with its cond (empty: 0).
struct Side {
  MhaCase c;
  std::string implementation;
  Run r;
  MhaCond cond = {};
};

Side side(const AttentionEntry& e, Impl impl, MhaCase c, bool weights = false) {
  Run r = run(e, impl, c, weights);
  MhaCond cond = mha_cond(c);
  return {std::move(c), to_string(impl), std::move(r), std::move(cond)};
}

// The output rows y of a call: [B, Tq] tokens of E values, with their query tokens.
OutRows rows(const MhaCase& c, const Output& y, const std::vector<double>* cond, int call = 0) {
  return {.call = call, .dims = {c.B, c.Tq}, .width = c.E(), .y = &y, .cond = cond, .x = &c.query, .x_width = c.E()};
}

OutRows rows(const Side& s) { return rows(s.c, s.r.out, &s.cond.y); }

const Labels kLabels{{"b", "i"}, "e", "query", "y"};

json weights_json(const MhaWeights& w) {
  const int E = w.E;
  return {{"in_proj_weight", tensor_json(w.in_proj_weight, {"3E", "E"}, {3 * E, E})},
          {"in_proj_bias", w.in_proj_bias},
          {"out_proj_weight", tensor_json(w.out_proj_weight, {"E", "E"}, {E, E})},
          {"out_proj_bias", w.out_proj_bias}};
}

json params(const MhaCase& c) {
  json j = {{"E", c.E()},
            {"heads", c.w.H},
            {"shape", {{"B", c.B}, {"Tq", c.Tq}, {"Tk", c.Tk}}},
            {"causal", c.m.causal},
            {"key_lengths", c.m.key_lengths},
            {"self_attention", c.self}};
  j.update(weights_json(c.w));
  return j;
}

// One call: the query (and memory, unless self-attention), y, the weights when the call returned
// them, and its projection weights when they are not the input's (params).
json call(const Side& side, const MhaWeights& input_weights) {
  const MhaCase& c = side.c;
  const int E = c.E();
  json tensors = {{"query", tensor_json(c.query, {"B", "Tq", "E"}, {c.B, c.Tq, E})},
                  {"y", tensor_json(side.r.out, {"B", "Tq", "E"}, {c.B, c.Tq, E})}};
  if (!c.self) tensors["memory"] = tensor_json(c.memory, {"B", "Tk", "E"}, {c.B, c.Tk, E});
  if (!side.r.weights.empty())
    tensors["weights"] = tensor_json(side.r.weights, {"B", "H", "Tq", "Tk"}, {c.B, c.w.H, c.Tq, c.Tk});
  json attributes = {{"causal", c.m.causal}, {"key_lengths", c.m.key_lengths}, {"self_attention", c.self}};
  const MhaWeights& w = input_weights;
  if (c.w.in_proj_weight != w.in_proj_weight || c.w.in_proj_bias != w.in_proj_bias ||
      c.w.out_proj_weight != w.out_proj_weight || c.w.out_proj_bias != w.out_proj_bias)
    attributes["projection_weights"] = weights_json(c.w);
  return call_json({{"B", c.B}, {"Tq", c.Tq}, {"Tk", c.Tk}, {"E", E}}, std::move(tensors), std::move(attributes));
}

CaseRecord record(const Side& a, const Side& b) {
  return {.params = params(a.c),
          .input = side_json(a.implementation, json::array({call(a, a.c.w)})),
          .related = side_json(b.implementation, json::array({call(b, a.c.w)}))};
}

// A case and its related case through the cell's implementation, compared under a mapping.
// `poisoned`: the case's only non-finite inputs are where no compared output may read
// (Diff::poisoned_unread).
CaseOutcome compare(const AttentionEntry& e, Impl impl, const MhaCase& a, const MhaCase& b,
                    const std::string& note, const From& from = same_row, bool poisoned = false) {
  const Side A = side(e, impl, a), B = side(e, impl, b);
  Diff d(kLabels);
  if (poisoned) d.poisoned_unread();
  compare_rows(d, rows(A), rows(B), from);
  return outcome(d, note, [&] { return record(A, B); });
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// properties

CaseOutcome row_stochastic(const AttentionEntry& e, Impl impl) {
  const MhaCase c = draw();
  const Side s{c, to_string(impl), run(e, impl, c, true)};
  const SdpaShape heads = c.heads();
  const int E = c.E();
  Diff d(kLabels);
  for (int b = 0; b < c.B; ++b)
    for (int i = 0; i < c.Tq; ++i) {
      const int n = visible_keys(heads, c.m, b, i);
      for (int h = 0; h < c.w.H; ++h)
        stochastic_row(d, RowView(&s.r.weights[((std::size_t(b) * c.w.H + h) * c.Tq + i) * c.Tk], c.Tk), n, {b, h, i});
      if (n == 0)  // no visible key: zero attention output, y = out_proj_bias
        for (int k = 0; k < E; ++k) {
          const double want = c.w.out_proj_bias[k];
          d.value(at("y", {b, i, k}) + " of a fully masked query (a) vs out_proj_bias (b)",
                  s.r.out[(std::size_t(b) * c.Tq + i) * E + k], want, tolerance(want, 0));
        }
    }
  // input: the call's output; related: the weights the same call exposes
  return outcome(d, "the per-head attention weights of every query",
                 [&] { return record({s.c, s.implementation, {s.r.out, {}}}, s); });
}

CaseOutcome causality(const AttentionEntry& e, Impl impl) {
  const MhaCase c = draw({.causal = Causal::always, .queries = Queries::self});
  const int b = *inRange(0, c.B);
  const int s = *inRange(0, c.Tq);
  // the future: fresh tokens one time in five, else poison (its queries, keys and values too)
  const Filler future = draw_filler();
  MhaCase c2 = c;
  for (int t = s + 1; t < c.Tq; ++t) {
    const auto v = future.finite ? values(c.E()) : std::vector<float>(c.E(), poison_value(future.poison));
    std::copy(v.begin(), v.end(), c2.q_tok(b, t));
  }
  c2.sync();
  classify_mixed_horizons(c.Tq, c.Tk, c.m, b, s, future);
  const std::string note = "tokens after position " + std::to_string(s) + " of sequence " + std::to_string(b) +
                           " set to " + future.name("fresh values");
  // NaN or ±inf only in the future tokens, which no compared output may read: a leak
  return compare(e, impl, c, c2, note, rows_where([&](const Index& r) { return r[0] == b && r[1] <= s; }),
                 future.non_finite());
}

CaseOutcome key_padding_invariance(const AttentionEntry& e, Impl impl) {
  const MhaCase c = draw({.queries = Queries::self});
  const Padding pad = draw_padding("token", "1000");
  const float pv = pad.fill.finite ? 1000.0f : poison_value(pad.fill.poison);
  MhaCase c2 = c;
  c2.Tq = c2.Tk = c.Tq + pad.extra;
  c2.query = values(std::size_t(c.B) * c2.Tq * c.E());
  for (int b = 0; b < c.B; ++b)
    for (int t = 0; t < c2.Tq; ++t) {
      if (t >= c.m.key_lengths[b])
        std::fill_n(c2.q_tok(b, t), c.E(), pv);
      else
        std::copy_n(c.q_tok(b, t), c.E(), c2.q_tok(b, t));
    }
  c2.sync();
  // NaN only in padding tokens: a NaN out leaked
  return compare(e, impl, c, c2, pad.note, valid_queries(c.m, 1), pad.poisoned);
}

CaseOutcome kv_permutation_invariance(const AttentionEntry& e, Impl impl) {
  const MhaCase c = draw({.causal = Causal::never});
  const auto perm = permutations(c.m.key_lengths);
  MhaCase c2 = c;
  for (int b = 0; b < c.B; ++b)
    for (int j = 0; j < c.m.key_lengths[b]; ++j) std::copy_n(c.m_tok(b, perm[b][j]), c.E(), c2.m_tok(b, j));
  return compare(e, impl, c, c2, "valid memory tokens of each sequence permuted: " + list(perm));
}

CaseOutcome query_permutation_equivariance(const AttentionEntry& e, Impl impl) {
  const MhaCase c = draw({.causal = Causal::never});
  const auto perm = permutations(std::vector<int>(c.B, c.Tq));
  MhaCase c2 = c;
  for (int b = 0; b < c.B; ++b)
    for (int i = 0; i < c.Tq; ++i) std::copy_n(c.q_tok(b, perm[b][i]), c.E(), c2.q_tok(b, i));
  return compare(e, impl, c, c2, "query tokens of each sequence permuted (new order): " + list(perm),
                 [&](const Index& r) { return Index{r[0], perm[r[0]][r[1]]}; });
}

CaseOutcome batch_independence(const AttentionEntry& e, Impl impl) {
  const MhaCase c = draw({.queries = Queries::self});
  const int b = *inRange(0, c.B);
  const int B2 = *inRange(1, 5);
  const int j = *inRange(0, B2);
  MhaCase c2 = c;
  c2.B = B2;
  c2.m.key_lengths = key_lengths(B2, c.Tk);
  c2.m.key_lengths[j] = c.m.key_lengths[b];
  c2.query = values(std::size_t(B2) * c.Tq * c.E());
  for (int t = 0; t < c.Tq; ++t) std::copy_n(c.q_tok(b, t), c.E(), c2.q_tok(j, t));
  c2.sync();
  return compare(e, impl, c, c2,
                 "sequence " + std::to_string(b) + " moved to index " + std::to_string(j) + " of a batch of " +
                     std::to_string(B2),
                 [&](const Index& r) -> std::optional<Index> {
                   if (r[0] != j) return std::nullopt;
                   return Index{b, r[1]};
                 });
}

CaseOutcome logit_shift_invariance(const AttentionEntry& e, Impl impl) {
  const MhaCase c = draw();
  const int E = c.E();
  std::vector<float> shift(E);
  for (auto& x : shift) x = gen::shift_amount();
  MhaCase c2 = c;
  for (int k = 0; k < E; ++k) c2.w.in_proj_bias[E + k] += shift[k];  // every key k_j + shift
  std::vector<int> quarters;
  for (float x : shift) quarters.push_back(int(x * 4));
  return compare(e, impl, c, c2,
                 "the key bias plus a vector (quarters) " + list(quarters) + ": every key shifted alike");
}

CaseOutcome value_affine_equivariance(const AttentionEntry& e, Impl impl) {
  const MhaCase c = draw();
  const int E = c.E();
  const float a = signed_scale();
  std::vector<float> beta(E);
  for (auto& x : beta) x = gen::shift_amount();
  MhaCase c2 = c;  // v = W_v·x + b_v → a·v + β
  for (std::size_t i = 2 * std::size_t(E) * E; i < 3 * std::size_t(E) * E; ++i) c2.w.in_proj_weight[i] *= a;
  for (int k = 0; k < E; ++k) c2.w.in_proj_bias[2 * E + k] = a * c.w.in_proj_bias[2 * E + k] + beta[k];
  const Side A = side(e, impl, c), B = side(e, impl, c2);
  // y' = W_o·(a·o + β) + b_o = a·(y − b_o) + b_o + W_o·β where a query sees some key
  std::vector<double> wob(E, 0.0);
  for (int k = 0; k < E; ++k)
    for (int l = 0; l < E; ++l) wob[k] += double(c.w.out_proj_weight[std::size_t(k) * E + l]) * beta[l];
  Output want(A.r.out);
  for (std::size_t x = 0; x < want.size(); ++x) {
    const int k = int(x % E), i = int(x / E % c.Tq), b = int(x / E / c.Tq);
    const double bo = c.w.out_proj_bias[k];
    if (visible_keys(c.heads(), c.m, b, i) > 0) want[x] = a * (A.r.out[x] - bo) + bo + wob[k];
  }
  OutRows mapped = rows(c, want, &A.cond.y);
  mapped.cond_factor = std::abs(a);
  Diff d(kLabels);
  compare_rows(d, mapped, rows(B));
  return outcome(d, "values v → a·v + β (W_v, b_v scaled by a = " + std::to_string(a) + ", β = " +
                        list(beta) + "); compared: a·(y − b_o) + b_o + W_o·β (a) vs y of a·v + β (b)",
                 [&] { return record(A, B); });
}

CaseOutcome kv_cache_equivalence(const AttentionEntry& e, Impl impl) {
  MhaCase c = draw({.B = {1, 1}, .causal = Causal::always, .queries = Queries::self, .padding = false});
  c.m.key_lengths = {c.Tk};
  const int L = c.Tq, P = *inRange(1, L + 1);
  const Side full = side(e, impl, c);
  // related side: the sequence decoded through a KV cache, one call per schedule
  const MhaDecodeFn& decode = impl == Impl::reference ? e.decode_reference : e.decode_optimized;
  const auto all = schedules(L, P);
  std::vector<Output> decoded(all.size());
  for (std::size_t k = 0; k < all.size(); ++k) decode(decoded[k], c.w, c.query, all[k].second);
  Diff d(kLabels);
  for (std::size_t k = 0; k < all.size(); ++k) compare_rows(d, rows(full), rows(c, decoded[k], nullptr, int(k)));
  return outcome(d, "one causal forward (a) vs chunks of 1, 2, 3, L and prefill " + std::to_string(P) +
                        " + decode through the KV cache (b)",
                 [&] {
                   json calls = json::array();
                   for (std::size_t k = 0; k < all.size(); ++k)
                     calls.push_back(call_json({{"L", L}, {"E", c.E()}},
                                               {{"query", tensor_json(c.query, {"L", "E"}, {L, c.E()})},
                                                {"y", tensor_json(decoded[k], {"L", "E"}, {L, c.E()})}},
                                               {{"schedule", all[k].first}, {"chunks", all[k].second}}));
                   return CaseRecord{.params = params(c),
                                     .input = side_json(to_string(impl), json::array({call(full, c.w)})),
                                     .related = side_json(to_string(impl), std::move(calls))};
                 });
}

CaseOutcome large_logit_stability(const AttentionEntry& e, Impl impl) {
  MhaCase c = draw();
  const int E = c.E();
  const bool rough = *rc::gen::arbitrary<bool>();  // float32 logits then carry rounding errors
  if (rough) {
    for (auto* v : {&c.query, &c.w.in_proj_weight, &c.w.in_proj_bias}) roughen(*v, int(v->size()));
    if (!c.self) roughen(c.memory, 5);
    c.sync();
  }
  // scale W_q and b_q by a power of two so that the largest visible logit lands in (5e3, 1e4]
  const MhaHeads h0 = mha_reference_heads(c.w, widen(c.query), widen(c.memory), c.B, c.Tq, c.Tk, c.m);
  const SdpaShape s = c.heads();
  const int dh = c.w.head_dim();
  double max_logit = 0;
  for (int b = 0; b < c.B; ++b)
    for (int h = 0; h < c.w.H; ++h)
      for (int i = 0; i < c.Tq; ++i)
        for (int j = 0; j < visible_keys(s, c.m, b, i); ++j) {
          double a = 0;
          for (int d = 0; d < dh; ++d)
            a += h0.q[((std::size_t(b) * c.w.H + h) * c.Tq + i) * dh + d] *
                 h0.k[((std::size_t(b) * c.w.H + h) * c.Tk + j) * dh + d];
          max_logit = std::max(max_logit, std::abs(a) * default_scale(dh));
        }
  const double f = max_logit > 0 ? std::exp2(std::floor(std::log2(1e4 / max_logit))) : 1.0;
  for (std::size_t i = 0; i < std::size_t(E) * E; ++i) c.w.in_proj_weight[i] *= float(f);
  for (int k = 0; k < E; ++k) c.w.in_proj_bias[k] *= float(f);
  // the reference's side carries the cond; a long double evaluation has no rounding to bound
  const Side A{c, to_string(impl), run(e, impl, c)};
  const Side B = impl == Impl::optimized ? side(e, Impl::reference, c)
                                         : Side{c, "long double evaluation", {oracle(c), {}}};
  const std::string note = "W_q, b_q scaled by " + std::to_string(f) + ": largest |logit| " +
                           std::to_string(max_logit * f) + (rough ? ", values off the dyadic grid" : "") +
                           "; " + A.implementation + " (a) vs " + B.implementation + " (b)";
  Diff d(kLabels);
  compare_rows(d, rows(A), rows(B));
  return outcome(d, note, [&] { return record(A, B); });
}

// Logits rising with the memory position (the FlashAttention rescale regime: every later key
// tile raises each row's running maximum): feature 0 of memory token j plus j/2; in every head,
// key dimension 0 reads feature 0 with weight 1/2 and query dimension 0 is the constant 2 (its
// W_q row zero, its bias 2), so each logit climbs by j/2/√dh on top of the drawn ones. Exact in
// float32 for the drawn values.
void rising_memory(MhaCase& c) {
  const int E = c.E(), dh = c.w.head_dim();
  for (int h = 0; h < c.w.H; ++h) {
    const int q = h * dh, k = E + h * dh;
    std::fill_n(&c.w.in_proj_weight[std::size_t(q) * E], E, 0.0f);
    c.w.in_proj_bias[q] = 2.0f;
    c.w.in_proj_weight[std::size_t(k) * E] = 0.5f;
  }
  for (int b = 0; b < c.B; ++b)
    for (int j = 0; j < c.Tk; ++j) c.m_tok(b, j)[0] += float(j) / 2.0f;
  if (c.self) c.query = c.memory;
}

// Classifies a case in which some row's maxima rise across key tiles (on the reference's logits
// of the visible keys).
void classify_rising(const MhaCase& c) {
  if (c.Tk <= kSdpaKeyTile) return;
  const MhaHeads h = mha_reference_heads(c.w, widen(c.query), widen(c.memory), c.B, c.Tq, c.Tk, c.m);
  const int H = c.w.H, dh = c.w.head_dim();
  for (int b = 0; b < c.B; ++b)
    for (int hd = 0; hd < H; ++hd)
      for (int i = 0; i < c.Tq; ++i) {
        std::vector<double> s(spec_visible(c.Tq, c.Tk, c.m, b, i));
        for (int j = 0; j < int(s.size()); ++j)
          for (int d = 0; d < dh; ++d)
            s[j] += h.q[((std::size_t(b) * H + hd) * c.Tq + i) * dh + d] * h.k[((std::size_t(b) * H + hd) * c.Tk + j) * dh + d];
        for (auto& x : s) x *= default_scale(dh);
        if (rises_across_key_tiles(s)) return classify(regime::rising_maxima);
      }
}

CaseOutcome reference_agreement(const AttentionEntry& e, Impl) {
  // the kernel's tiling is what this compares: half the cases over several tiles, one in eight
  // a single query against a single token
  MhaCase c = *one_in(8) ? draw({.T = {1, 1}, .tiles_one_in = 0}) : draw({.tiles_one_in = 2});
  const bool rising = c.Tk > kSdpaKeyTile && *chance(3, 4);
  if (rising) rising_memory(c);
  const bool rough = *rc::gen::arbitrary<bool>();
  if (rough) {
    for (auto* v : {&c.query, &c.w.in_proj_weight, &c.w.in_proj_bias, &c.w.out_proj_weight, &c.w.out_proj_bias})
      roughen(*v, int(v->size()));
    if (!c.self) roughen(c.memory, 5);
    c.sync();
  }
  classify_rising(c);
  const bool poisoned = *chance(3, 4);
  const Poison poison = poisoned ? draw_poison() : Poison::nan;
  if (poisoned)
    for (int b = 0; b < c.B; ++b)
      for (int t = c.m.key_lengths[b]; t < c.Tk; ++t) {
        std::fill_n(c.m_tok(b, t), c.E(), poison_value(poison));
        if (c.self) std::fill_n(c.q_tok(b, t), c.E(), poison_value(poison));
      }
  const Side A = side(e, Impl::optimized, c, true), B = side(e, Impl::reference, c, true);
  // a poisoned query's own row is not compared
  auto keep = [&](int b, int i) { return !(c.self && poisoned && i >= c.m.key_lengths[b]); };
  Diff d(kLabels);
  // NaN only in padded tokens, whose rows are not compared
  if (poisoned && poison == Poison::nan) d.poisoned_unread();
  compare_rows(d, rows(A), rows(B), rows_where([&](const Index& r) { return keep(r[0], r[1]); }));
  // a weight's relative error is at most twice its row's logit error
  compare_weights(
      d, c.heads(), A.r.weights, B.r.weights,
      [&](int b, int h, int i) { return B.cond.logits[(std::size_t(b) * c.w.H + h) * c.Tq + i]; }, keep);
  return outcome(d, std::string("optimized (a) vs reference (b)") + (rising ? ", memory rising along feature 0" : "") +
                        (rough ? ", values off the dyadic grid" : "") +
                        (poisoned ? std::string(", padded memory tokens set to ") + to_string(poison) : ""),
                 [&] { return record(A, B); });
}

CaseOutcome thread_determinism(const AttentionEntry& e, Impl) {
  // half the cases large enough for the parallel projections and attention
  const MhaCase c = *rc::gen::arbitrary<bool>()
                        ? draw_with(draw_weights(16, *rc::gen::element(2, 4)),
                                    {.B = {2, 3}, .T = {32, 48}, .queries = Queries::self})
                        : draw();
  return across_threads(
      kLabels, [&] { return Side{c, "optimized", run(e, Impl::optimized, c, true)}; },
      [&](Diff& d, const Side& one, const Side& many) {
        compare_rows(d, rows(one), rows(many));
        compare_weights(d, c.heads(), one.r.weights, many.r.weights);
      },
      record);
}

namespace {

// y of one query that sees exactly memory token m_0: its weight is 1, so y = W_o·(W_v·m_0 + b_v)
// + b_o (long double, from the weights alone).
std::vector<double> one_key_output(const MhaWeights& w, const float* m0) {
  const int E = w.E;
  std::vector<long double> v(E);
  for (int o = 0; o < E; ++o) {
    long double a = w.in_proj_bias[2 * E + o];
    for (int k = 0; k < E; ++k) a += (long double)w.in_proj_weight[std::size_t(2 * E + o) * E + k] * m0[k];
    v[o] = a;
  }
  std::vector<double> y(E);
  for (int o = 0; o < E; ++o) {
    long double a = w.out_proj_bias[o];
    for (int k = 0; k < E; ++k) a += (long double)w.out_proj_weight[std::size_t(o) * E + k] * v[k];
    y[o] = double(a);
  }
  return y;
}

// Every compared query of c against what the masks' formula says it sees (spec_visible): the
// queries of sequence b that see n memory tokens, in one call without a mask against b's first n
// memory tokens; n = 0 gives out_proj_bias and n = 1 out_proj(v_0) (one_key_output), with no
// kernel call. keep(b, i): the query is compared (a poisoned padded query is not).
// `poisoned`: c's only non-finite values are where no compared output may read (padded memory
// tokens): a non-finite output is a leak (Diff::poisoned_unread).
CaseOutcome against_prefixes(const AttentionEntry& e, Impl impl, const MhaCase& c, const std::string& note,
                             const std::function<bool(int b, int i)>& keep, bool poisoned = false) {
  const Side A = side(e, impl, c);
  const int E = c.E();
  const std::vector<PrefixGroup> groups = prefix_groups(c.B, c.Tq, c.Tk, c.m, keep);
  std::vector<Side> prefixes;  // per group: a kernel call (n ≥ 2) or the closed form (n ≤ 1)
  for (const auto& [b, n, queries] : groups) {
    MhaCase p;
    p.w = c.w;
    p.B = 1;
    p.Tq = int(queries.size());
    p.Tk = std::max(n, 1);
    p.self = false;
    for (int i : queries) p.query.insert(p.query.end(), c.q_tok(b, i), c.q_tok(b, i) + E);
    p.memory.assign(c.m_tok(b, 0), c.m_tok(b, 0) + std::size_t(p.Tk) * E);
    if (n >= 2) {
      prefixes.push_back(side(e, impl, std::move(p)));
      continue;
    }
    Output closed;
    const std::vector<double> y = n == 1 ? one_key_output(c.w, c.m_tok(b, 0))
                                         : std::vector<double>(c.w.out_proj_bias.begin(), c.w.out_proj_bias.end());
    for (std::size_t r = 0; r < queries.size(); ++r) closed.insert(closed.end(), y.begin(), y.end());
    prefixes.push_back(
        Side{std::move(p), n ? "out_proj(v_0) (one visible token)" : "out_proj_bias (no visible token)", {closed, {}}});
  }
  return prefix_outcome(
      kLabels, poisoned, note, groups.size(), rows(A),
      [&](std::size_t k) { return rows(prefixes[k].c, prefixes[k].r.out, &prefixes[k].cond.y, int(k)); },
      [&](std::size_t k, const Index& row) { return Index{groups[k].b, groups[k].queries[row[1]]}; },
      [&] { return params(c); }, A.implementation, [&] { return call(A, c.w); }, impl, [&](std::size_t k) {
        json j = call(prefixes[k], c.w);
        j["attributes"].update(prefix_attributes(groups[k], "visible_tokens", prefixes[k].implementation));
        return j;
      });
}

}  // namespace

CaseOutcome causal_mask_semantics(const AttentionEntry& e, Impl impl) {
  // self-attention one time in two (its first token sees itself alone), else a block of Tq
  // queries against Tk ≥ Tq memory tokens (bottom-right)
  const bool self = *rc::gen::arbitrary<bool>();
  const MhaCase c = draw({.causal = Causal::always, .queries = self ? Queries::self : Queries::at_most_keys,
                          .padding = false, .tiles_one_in = 3});
  return against_prefixes(e, impl, c,
                          "causal attention of " + std::to_string(c.Tq) + " queries against " + std::to_string(c.Tk) +
                              " memory tokens",
                          [](int, int) { return true; });
}

CaseOutcome key_padding_semantics(const AttentionEntry& e, Impl impl) {
  const bool self = *rc::gen::arbitrary<bool>();
  MhaCase c = draw({.queries = self ? Queries::self : Queries::at_most_keys, .tiles_one_in = 3});
  const Poison poison = draw_poison();
  for (int b = 0; b < c.B; ++b)
    for (int t = c.m.key_lengths[b]; t < c.Tk; ++t) std::fill_n(c.m_tok(b, t), c.E(), poison_value(poison));
  if (c.self) c.query = c.memory;
  return against_prefixes(e, impl, c,
                          std::string("key lengths ") + list(c.m.key_lengths) + (c.m.causal ? " with the causal mask" : "") +
                              ", padded memory tokens set to " + to_string(poison),
                          [&](int b, int i) { return !c.self || i < c.m.key_lengths[b]; },
                          /*poisoned=*/poison != Poison::huge);
}

}  // namespace normcheck::attn::mha
