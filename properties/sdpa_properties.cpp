// The case code of the `sdpa` rows: bare scaled dot-product attention over [B, H, T, d], run
// through the row's entry. Each case draws its input, builds the related input, runs both and
// compares the output rows of the queries (b, h, i).
//
// cond = 2·L·Σ_j w_j·|v_jc − o_ic| per output element (b, h, i, c), j over the visible keys, w
// the exact weights. L = scale·max_j Σ_d |q_id|·|k_jd| bounds the logits, so float32 logits are
// off by at most δ = (dh + 2)·u·L (a dh-term dot product and the scaling). To first order o_c
// moves by Σ_j w_j·(v_jc − o_c)·(δs_j − Σ_k w_k·δs_k), at most 2δ·Σ_j w_j·|v_jc − o_c| =
// (dh + 2)·u·cond < 2e-6·cond for dh ≤ 31; exp, the normalization and the value sums stay within
// 1e-5 + 1e-5·|b|. Where a case makes every logit exact in float32 (large_logit_stability:
// integer q and k, power-of-two scale) cond is 0: the plain single-layer bound.
#include <map>

#include "properties/attention_cases.hpp"
#include "properties/generators.hpp"

namespace normcheck::attn::sdpa {
namespace {

using nlohmann::json;

// ---------------------------------------------------------------------------------------------
// cases

struct SdpaCase {
  SdpaShape s;
  SdpaMask m;
  double scale = 1;
  std::vector<float> q, k, v;

  std::size_t row(int b, int h, int i) const { return (std::size_t(b) * s.H + h) * s.Tq + i; }
  std::size_t kv_row(int b, int h, int j) const {
    return (std::size_t(b) * s.H + h) * s.kv_rows() + j;
  }
  float* q_at(int b, int h, int i) { return &q[row(b, h, i) * s.dh]; }
  float* k_at(int b, int h, int j) { return &k[kv_row(b, h, j) * s.dh]; }
  float* v_at(int b, int h, int j) { return &v[kv_row(b, h, j) * s.dv]; }
  const float* q_at(int b, int h, int i) const { return &q[row(b, h, i) * s.dh]; }
  const float* k_at(int b, int h, int j) const { return &k[kv_row(b, h, j) * s.dh]; }
  const float* v_at(int b, int h, int j) const { return &v[kv_row(b, h, j) * s.dv]; }
  void draw_values() {
    q = values(s.q_size());
    k = values(s.k_size());
    v = values(s.v_size());
  }
};

// Heads and widths of a case (inclusive ranges): dv = dh three times in four unless dv_any.
struct HeadRanges {
  std::pair<int, int> H = {1, 3}, dh = {1, 8}, dv = {1, 8};
  bool dv_any = false;
};

// The shape and mask of a case; no scale, no values.
SdpaCase draw_shape(const TokenRanges& tokens = {}, const HeadRanges& heads = {}) {
  const Tokens t = draw_tokens(tokens);
  SdpaCase c;
  c.s.B = t.B;
  c.s.Tq = t.Tq;
  c.s.Tk = t.Tk;
  c.m = t.m;
  c.s.H = *inRange(heads.H.first, heads.H.second + 1);
  c.s.dh = *inRange(heads.dh.first, heads.dh.second + 1);
  const auto dv = inRange(heads.dv.first, heads.dv.second + 1);
  c.s.dv = heads.dv_any ? *dv : *rc::gen::weightedOneOf<int>({{3, rc::gen::just(c.s.dh)}, {1, dv}});
  return c;
}

// A case: its shape, a scale (1/√dh three times in four, else 0.25, 0.5 or 1) and values k/16.
SdpaCase draw(const TokenRanges& tokens = {}, const HeadRanges& heads = {}) {
  SdpaCase c = draw_shape(tokens, heads);
  c.scale = *rc::gen::weightedOneOf<double>(
      {{3, rc::gen::just(default_scale(c.s.dh))}, {1, rc::gen::element(0.25, 0.5, 1.0)}});
  c.draw_values();
  return c;
}

// The same case with Tq queries and Tk keys: rows that exist in both are copied, new rows drawn.
SdpaCase with_tokens(const SdpaCase& c, int Tq, int Tk) {
  SdpaCase r = c;
  r.s.Tq = Tq;
  r.s.Tk = Tk;
  r.s.kv_capacity = 0;
  r.draw_values();
  for (int b = 0; b < c.s.B; ++b)
    for (int h = 0; h < c.s.H; ++h) {
      for (int i = 0; i < std::min(Tq, c.s.Tq); ++i) std::copy_n(c.q_at(b, h, i), c.s.dh, r.q_at(b, h, i));
      for (int j = 0; j < std::min(Tk, c.s.Tk); ++j) {
        std::copy_n(c.k_at(b, h, j), c.s.dh, r.k_at(b, h, j));
        std::copy_n(c.v_at(b, h, j), c.s.dv, r.v_at(b, h, j));
      }
    }
  return r;
}

Run run(const AttentionEntry& e, Impl impl, const SdpaCase& c, bool weights = false) {
  Run r;
  const SdpaFn& f = impl == Impl::reference ? e.sdpa_reference : e.sdpa_optimized;
  f(r.out, weights ? &r.weights : nullptr, c.q, c.k, c.v, c.s, c.m, c.scale);
  return r;
}

// ---------------------------------------------------------------------------------------------
// tolerance (the top of this file)

// L of one query row: scale·max over visible keys of Σ_d |q_d|·|k_jd|
double logit_bound(const SdpaCase& c, int b, int h, int i) {
  const int n = visible_keys(c.s, c.m, b, i);
  const float* q = c.q_at(b, h, i);
  double L = 0;
  for (int j = 0; j < n; ++j) {
    const float* k = c.k_at(b, h, j);
    double a = 0;
    for (int d = 0; d < c.s.dh; ++d) a += std::abs(double(q[d])) * std::abs(double(k[d]));
    L = std::max(L, a);
  }
  return c.scale * L;
}

// The logits of query row (b, h, i) over its visible keys, in T precision.
template <class T>
std::vector<T> logits(const SdpaCase& c, int b, int h, int i) {
  std::vector<T> s(visible_keys(c.s, c.m, b, i));
  for (int j = 0; j < int(s.size()); ++j) {
    T a = 0;
    for (int d = 0; d < c.s.dh; ++d) a += T(c.q_at(b, h, i)[d]) * T(c.k_at(b, h, j)[d]);
    s[j] = a * T(c.scale);
  }
  return s;
}

// cond of every output element [B, H, Tq, dv]
std::vector<double> sdpa_cond(const SdpaCase& c, const Output& out) {
  std::vector<double> cond(c.s.out_size(), 0.0);
  for (int b = 0; b < c.s.B; ++b)
    for (int h = 0; h < c.s.H; ++h)
      for (int i = 0; i < c.s.Tq; ++i) {
        auto w = logits<double>(c, b, h, i);  // the exact weights
        const double sum = exp_shifted(w);
        for (auto& x : w) x /= sum;
        const double L = logit_bound(c, b, h, i);
        const std::size_t row = c.row(b, h, i) * c.s.dv;
        for (int col = 0; col < c.s.dv; ++col) {
          double spread = 0;  // Σ_j w_j·|v_jc − o_c|
          for (int j = 0; j < int(w.size()); ++j) spread += w[j] * std::abs(c.v_at(b, h, j)[col] - out[row + col]);
          const double v = 2 * L * spread;
          cond[row + col] = std::isfinite(v) ? v : 0.0;
        }
      }
  return cond;
}

// An independent evaluation in long double with the row maximum subtracted.
Output oracle(const SdpaCase& c) {
  Output out(c.s.out_size(), 0.0);
  for (int b = 0; b < c.s.B; ++b)
    for (int h = 0; h < c.s.H; ++h)
      for (int i = 0; i < c.s.Tq; ++i) {
        auto s = logits<long double>(c, b, h, i);
        if (s.empty()) continue;
        const long double sum = exp_shifted(s);
        for (int col = 0; col < c.s.dv; ++col) {
          long double o = 0;
          for (int j = 0; j < int(s.size()); ++j) o += s[j] * c.v_at(b, h, j)[col];
          out[c.row(b, h, i) * c.s.dv + col] = double(o / sum);
        }
      }
  return out;
}

// ---------------------------------------------------------------------------------------------
// sides and evidence

// A case run through one side of a comparison, with the cond of every output element (empty:
// the logits are exact).
struct Side {
  SdpaCase c;
  std::string implementation;
  Run r;
  std::vector<double> cond = {};
};

Side side(const AttentionEntry& e, Impl impl, SdpaCase c, bool weights = false) {
  Run r = run(e, impl, c, weights);
  std::vector<double> cond = sdpa_cond(c, r.out);
  return {std::move(c), to_string(impl), std::move(r), std::move(cond)};
}

OutRows rows(const Side& s, int call = 0) {
  return {.call = call,
          .dims = {s.c.s.B, s.c.s.H, s.c.s.Tq},
          .width = s.c.s.dv,
          .y = &s.r.out,
          .cond = &s.cond,
          .x = &s.c.q,
          .x_width = s.c.s.dh};
}

const Labels kLabels{{"b", "h", "i"}, "c", "q", "out"};

json shape_json(const SdpaShape& s) {
  return {{"B", s.B}, {"H", s.H}, {"Tq", s.Tq}, {"Tk", s.Tk}, {"dh", s.dh}, {"dv", s.dv}};
}

json params(const SdpaCase& c) {
  return {{"shape", shape_json(c.s)}, {"scale", c.scale}, {"causal", c.m.causal}, {"key_lengths", c.m.key_lengths}};
}

// One call: q, k, v, the output and the weights when the call returned them.
json call(const Side& side, json attributes = json::object()) {
  const SdpaCase& c = side.c;
  const int B = c.s.B, H = c.s.H, Tq = c.s.Tq, dh = c.s.dh, dv = c.s.dv, kv_rows = c.s.kv_rows();
  const std::string kv = c.s.kv_capacity ? "capacity" : "Tk";
  json tensors = {{"q", tensor_json(c.q, {"B", "H", "Tq", "dh"}, {B, H, Tq, dh})},
                  {"k", tensor_json(c.k, {"B", "H", kv, "dh"}, {B, H, kv_rows, dh})},
                  {"v", tensor_json(c.v, {"B", "H", kv, "dv"}, {B, H, kv_rows, dv})},
                  {"out", tensor_json(side.r.out, {"B", "H", "Tq", "dv"}, {B, H, Tq, dv})}};
  if (!side.r.weights.empty())
    tensors["weights"] = tensor_json(side.r.weights, {"B", "H", "Tq", "Tk"}, {B, H, Tq, c.s.Tk});
  attributes["causal"] = c.m.causal;
  attributes["scale"] = c.scale;
  attributes["key_lengths"] = c.m.key_lengths;
  if (c.s.kv_capacity) attributes["kv_capacity"] = c.s.kv_capacity;
  return call_json(shape_json(c.s), std::move(tensors), std::move(attributes));
}

CaseRecord record(const Side& a, const Side& b) {
  return {.params = params(a.c),
          .input = side_json(a.implementation, json::array({call(a)})),
          .related = side_json(b.implementation, json::array({call(b)}))};
}

// The output rows of two sides under a mapping (compare_rows), and the evidence. `poisoned`:
// the case's only non-finite inputs are where no compared output may read (Diff::poisoned_unread).
CaseOutcome compare(const Side& a, const Side& b, const std::string& note, const From& from = same_row,
                    bool poisoned = false) {
  Diff d(kLabels);
  if (poisoned) d.poisoned_unread();
  compare_rows(d, rows(a), rows(b), from);
  return outcome(d, note, [&] { return record(a, b); });
}

// A case and its related case through the cell's implementation, compared under a mapping.
CaseOutcome compare(const AttentionEntry& e, Impl impl, const SdpaCase& a, const SdpaCase& b,
                    const std::string& note, const From& from = same_row, bool poisoned = false) {
  const Side A = side(e, impl, a), B = side(e, impl, b);
  return compare(A, B, note, from, poisoned);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// properties

CaseOutcome row_stochastic(const AttentionEntry& e, Impl impl) {
  SdpaCase c = draw();
  // V = identity: the output rows are the attention weights the kernel used
  c.s.dv = c.s.Tk;
  c.v.assign(c.s.v_size(), 0.0f);
  for (int b = 0; b < c.s.B; ++b)
    for (int h = 0; h < c.s.H; ++h)
      for (int j = 0; j < c.s.Tk; ++j) c.v_at(b, h, j)[j] = 1.0f;
  const Side s{c, to_string(impl), run(e, impl, c, true)};
  // a: the output rows (V = I); b: the weight rows the same call exposes
  Diff d({{"b", "h", "i"}, "key", "q", "weight"});
  const int Tk = c.s.Tk;
  for (int b = 0; b < c.s.B; ++b)
    for (int h = 0; h < c.s.H; ++h)
      for (int i = 0; i < c.s.Tq; ++i) {
        const std::size_t row = c.row(b, h, i) * Tk;
        const RowView w(&s.r.out[row], Tk);
        d.rows({0, {b, h, i}}, {0, {b, h, i}}, w, RowView(&s.r.weights[row], Tk),
               [&](int j) { return tolerance(w[j], 0); }, RowView(c.q_at(b, h, i), c.s.dh),
               RowView(c.q_at(b, h, i), c.s.dh));
        stochastic_row(d, w, visible_keys(c.s, c.m, b, i), {b, h, i});
      }
  // input: the call's output; related: the weights the same call exposes
  return outcome(d, "V = identity, so each output row is that query's weight row",
                 [&] { return record({s.c, s.implementation, {s.r.out, {}}}, s); });
}

CaseOutcome causality(const AttentionEntry& e, Impl impl) {
  // self-attention one time in two: a query tile's rows then see different numbers of keys
  const bool self = *rc::gen::arbitrary<bool>();
  const SdpaCase c = draw({.causal = Causal::always, .queries = self ? Queries::self : Queries::at_most_keys});
  const int b = *inRange(0, c.s.B);
  const int s = *inRange(0, c.s.Tq);
  const int pos = c.s.Tk - c.s.Tq + s;  // absolute position of query s (bottom-right)
  // the future: fresh values one time in five, else poison (what a kernel must never read, or
  // multiply by a zero weight: 0·NaN is NaN)
  const Filler future = draw_filler();
  const float pv = poison_value(future.poison);
  SdpaCase c2 = c;
  for (int h = 0; h < c.s.H; ++h) {
    for (int i = s + 1; i < c.s.Tq; ++i) {
      const auto q = future.finite ? values(c.s.dh) : std::vector<float>(c.s.dh, pv);
      std::copy(q.begin(), q.end(), c2.q_at(b, h, i));
    }
    for (int j = pos + 1; j < c.s.Tk; ++j) {
      const auto k = future.finite ? values(c.s.dh) : std::vector<float>(c.s.dh, pv);
      const auto v = future.finite ? values(c.s.dv) : std::vector<float>(c.s.dv, pv);
      std::copy(k.begin(), k.end(), c2.k_at(b, h, j));
      std::copy(v.begin(), v.end(), c2.v_at(b, h, j));
    }
  }
  classify_mixed_horizons(c.s.Tq, c.s.Tk, c.m, b, s, future);
  // NaN or ±inf only in the future, which no compared output may read: a leak
  return compare(e, impl, c, c2,
                 "sequence " + std::to_string(b) + ": queries after " + std::to_string(s) +
                     " and keys/values after position " + std::to_string(pos) + " set to " +
                     future.name("fresh values"),
                 rows_where([&](const Index& r) { return r[0] == b && r[2] <= s; }), future.non_finite());
}

CaseOutcome key_padding_invariance(const AttentionEntry& e, Impl impl) {
  const SdpaCase c = draw({.queries = Queries::self});
  // V = 1000 at padded values one time in five; else poison in padded keys, values and queries
  const Padding pad = draw_padding("position", "V = 1000");
  SdpaCase c2 = with_tokens(c, c.s.Tq + pad.extra, c.s.Tk + pad.extra);
  for (int b = 0; b < c.s.B; ++b)
    for (int h = 0; h < c.s.H; ++h)
      for (int t = c.m.key_lengths[b]; t < c2.s.Tk; ++t) {
        if (pad.fill.finite) {
          std::fill_n(c2.v_at(b, h, t), c.s.dv, 1000.0f);
          continue;
        }
        const float p = poison_value(pad.fill.poison);
        std::fill_n(c2.k_at(b, h, t), c.s.dh, p);
        std::fill_n(c2.v_at(b, h, t), c.s.dv, p);
        std::fill_n(c2.q_at(b, h, t), c.s.dh, p);
      }
  return compare(e, impl, c, c2, pad.note, valid_queries(c.m, 2), pad.poisoned);
}

CaseOutcome kv_permutation_invariance(const AttentionEntry& e, Impl impl) {
  const SdpaCase c = draw({.causal = Causal::never});
  const auto perm = permutations(c.m.key_lengths);
  SdpaCase c2 = c;
  for (int b = 0; b < c.s.B; ++b)
    for (int h = 0; h < c.s.H; ++h)
      for (int j = 0; j < c.m.key_lengths[b]; ++j) {
        std::copy_n(c.k_at(b, h, perm[b][j]), c.s.dh, c2.k_at(b, h, j));
        std::copy_n(c.v_at(b, h, perm[b][j]), c.s.dv, c2.v_at(b, h, j));
      }
  return compare(e, impl, c, c2, "visible keys and values of each sequence permuted: " + list(perm));
}

CaseOutcome query_permutation_equivariance(const AttentionEntry& e, Impl impl) {
  const SdpaCase c = draw({.causal = Causal::never});
  const auto perm = permutations(std::vector<int>(c.s.B, c.s.Tq));
  SdpaCase c2 = c;
  for (int b = 0; b < c.s.B; ++b)
    for (int h = 0; h < c.s.H; ++h)
      for (int i = 0; i < c.s.Tq; ++i) std::copy_n(c.q_at(b, h, perm[b][i]), c.s.dh, c2.q_at(b, h, i));
  return compare(e, impl, c, c2, "queries of each sequence permuted (new order): " + list(perm),
                 [&](const Index& r) { return Index{r[0], r[1], perm[r[0]][r[2]]}; });
}

CaseOutcome batch_independence(const AttentionEntry& e, Impl impl) {
  const SdpaCase c = draw();
  const int b = *inRange(0, c.s.B);
  const int B2 = *inRange(1, 5);
  const int j = *inRange(0, B2);
  SdpaCase c2 = c;
  c2.s.B = B2;
  c2.m.key_lengths = key_lengths(B2, c.s.Tk);
  c2.m.key_lengths[j] = c.m.key_lengths[b];
  c2.draw_values();
  for (int h = 0; h < c.s.H; ++h) {
    for (int i = 0; i < c.s.Tq; ++i) std::copy_n(c.q_at(b, h, i), c.s.dh, c2.q_at(j, h, i));
    for (int t = 0; t < c.s.Tk; ++t) {
      std::copy_n(c.k_at(b, h, t), c.s.dh, c2.k_at(j, h, t));
      std::copy_n(c.v_at(b, h, t), c.s.dv, c2.v_at(j, h, t));
    }
  }
  return compare(e, impl, c, c2,
                 "sequence " + std::to_string(b) + " moved to index " + std::to_string(j) +
                     " of a batch of " + std::to_string(B2),
                 [&](const Index& r) -> std::optional<Index> {
                   if (r[0] != j) return std::nullopt;
                   return Index{b, r[1], r[2]};
                 });
}

CaseOutcome logit_shift_invariance(const AttentionEntry& e, Impl impl) {
  const SdpaCase c = draw();
  std::vector<float> shift(c.s.dh);
  for (auto& x : shift) x = gen::shift_amount();
  SdpaCase c2 = c;
  for (std::size_t i = 0; i < c2.k.size(); ++i) c2.k[i] += shift[i % c.s.dh];
  std::vector<int> quarters;
  for (float x : shift) quarters.push_back(int(x * 4));
  return compare(e, impl, c, c2, "every key plus the same vector (quarters) " + list(quarters));
}

CaseOutcome value_affine_equivariance(const AttentionEntry& e, Impl impl) {
  const SdpaCase c = draw();
  const float a = signed_scale();
  std::vector<float> beta(c.s.dv);
  for (auto& x : beta) x = gen::shift_amount();
  SdpaCase c2 = c;
  for (std::size_t i = 0; i < c2.v.size(); ++i) c2.v[i] = a * c.v[i] + beta[i % c.s.dv];
  const Side A = side(e, impl, c), B = side(e, impl, c2);
  // a·out + b of the input against the output of a·v + b; a query that sees no key gives zeros
  Output want(A.r.out.size());
  for (std::size_t x = 0; x < want.size(); ++x) {
    const std::size_t row = x / c.s.dv;
    const int i = int(row % c.s.Tq), b = int(row / c.s.Tq / c.s.H);
    want[x] = visible_keys(c.s, c.m, b, i) > 0 ? a * A.r.out[x] + beta[x % c.s.dv] : 0.0;
  }
  OutRows mapped = rows(A);
  mapped.y = &want;
  mapped.cond_factor = std::abs(a);
  Diff d(kLabels);
  compare_rows(d, mapped, rows(B));
  return outcome(d, "v → a·v + b with a = " + std::to_string(a) + ", b = " + list(beta) +
                        "; compared: a·out + b (a) vs the output of a·v + b (b)",
                 [&] { return record(A, B); });
}

CaseOutcome kv_cache_equivalence(const AttentionEntry& e, Impl impl) {
  const SdpaCase c = draw({.B = {1, 2}, .causal = Causal::always, .queries = Queries::self, .padding = false},
                          {.dv_any = true});
  const int L = c.s.Tk, P = *inRange(1, L + 1);
  const Side full = side(e, impl, c);
  // related side: every step of every schedule, each a call against the cache so far
  std::vector<Side> steps;
  json attributes = json::array();
  for (const auto& [name, chunks] : schedules(L, P)) {
    KvCache<float> cache(c.s.B, c.s.H, c.s.dh, c.s.dv, L);
    int t0 = 0;
    for (int n : chunks) {
      SdpaCase step;
      step.m.causal = true;
      step.scale = c.scale;
      std::vector<float> k, v;
      for (int b = 0; b < c.s.B; ++b)
        for (int h = 0; h < c.s.H; ++h) {
          step.q.insert(step.q.end(), c.q_at(b, h, t0), c.q_at(b, h, t0) + n * c.s.dh);
          k.insert(k.end(), c.k_at(b, h, t0), c.k_at(b, h, t0) + n * c.s.dh);
          v.insert(v.end(), c.v_at(b, h, t0), c.v_at(b, h, t0) + n * c.s.dv);
        }
      cache.append(k, v, n);
      step.s = cache.shape_for(n);
      step.k = cache.keys();
      step.v = cache.values();
      steps.push_back(side(e, impl, std::move(step)));
      attributes.push_back({{"schedule", name}, {"chunk_start", t0}});
      t0 += n;
    }
  }
  Diff d(kLabels);
  for (std::size_t k = 0; k < steps.size(); ++k) {
    const int t0 = attributes[k]["chunk_start"].get<int>();
    compare_rows(d, rows(full), rows(steps[k], int(k)),
                 [&](const Index& r) { return Index{r[0], r[1], t0 + r[2]}; });
  }
  return outcome(d, "one causal forward (a) vs chunks of 1, 2, 3, L and prefill " + std::to_string(P) +
                        " + decode through a KV cache (b)",
                 [&] {
                   json calls = json::array();
                   for (std::size_t k = 0; k < steps.size(); ++k) calls.push_back(call(steps[k], attributes[k]));
                   return CaseRecord{.params = params(c),
                                     .input = side_json(to_string(impl), json::array({call(full)})),
                                     .related = side_json(to_string(impl), std::move(calls))};
                 });
}

CaseOutcome large_logit_stability(const AttentionEntry& e, Impl impl) {
  // Integer q and k and a power-of-two scale make every logit exact in float32, so the
  // optimized kernel must match the reference as closely as for small logits (cond = 0).
  SdpaCase c = draw_shape({.B = {1, 2}}, {.H = {1, 2}, .dv_any = true});
  c.scale = *rc::gen::element(0.125, 0.25, 0.5, 1.0);
  const bool offset = *rc::gen::arbitrary<bool>();
  std::string how;
  if (!offset) {  // logits spread over ±1e4: near one-hot rows
    const int M = int(std::sqrt(1e4 / (c.s.dh * c.scale)));
    for (int x : ints(c.s.q_size(), M)) c.q.push_back(float(x));
    for (int x : ints(c.s.k_size(), M)) c.k.push_back(float(x));
    how = "q, k integers in [-" + std::to_string(M) + ", " + std::to_string(M) + "]";
  } else {  // every key = a large common vector + a small offset: logits near ±1e4, close
    const int C = int(1e4 / (c.scale * c.s.dh * 8)) - 3;
    for (int x : ints(c.s.q_size(), 8)) c.q.push_back(float(x));
    const auto small = ints(c.s.k_size(), 3);
    for (int bh = 0; bh < c.s.B * c.s.H; ++bh) {
      std::vector<int> common(c.s.dh);
      for (auto& x : common) x = *rc::gen::element(-C, C);
      for (int j = 0; j < c.s.Tk; ++j)
        for (int d = 0; d < c.s.dh; ++d)
          c.k.push_back(float(common[d] + small[(std::size_t(bh) * c.s.Tk + j) * c.s.dh + d]));
    }
    how = "q integers in [-8, 8], keys = ±" + std::to_string(C) + " per feature + [-3, 3]";
  }
  c.v = values(c.s.v_size());
  double max_logit = 0;
  for (int b = 0; b < c.s.B; ++b)
    for (int h = 0; h < c.s.H; ++h)
      for (int i = 0; i < c.s.Tq; ++i) max_logit = std::max(max_logit, logit_bound(c, b, h, i));
  const Side A{c, to_string(impl), run(e, impl, c)};
  const Side B = impl == Impl::optimized ? Side{c, "reference", run(e, Impl::reference, c)}
                                         : Side{c, "long double evaluation", {oracle(c), {}}};
  return compare(A, B, how + ", scale " + std::to_string(c.scale) + ", |logits| ≤ " +
                           std::to_string(max_logit) + "; " + A.implementation + " (a) vs " +
                           B.implementation + " (b)");
}

// Logits rising with the key position (the FlashAttention rescale regime: every later key tile
// raises each row's running maximum): feature 0 of key j plus j/2, and feature 0 of every query
// at least 1, so each query's logits climb by ≥ kSdpaKeyTile/2·scale per tile. Exact in float32.
void rising_logits(SdpaCase& c) {
  for (int b = 0; b < c.s.B; ++b)
    for (int h = 0; h < c.s.H; ++h) {
      for (int i = 0; i < c.s.Tq; ++i) c.q_at(b, h, i)[0] = 1.0f + std::abs(c.q_at(b, h, i)[0]);
      for (int j = 0; j < c.s.Tk; ++j) c.k_at(b, h, j)[0] += float(j) / 2.0f;
    }
}

// Classifies a case whose rows' maxima rise across key tiles (on the exact logits of the
// visible keys).
void classify_rising(const SdpaCase& c) {
  if (c.s.Tk <= kSdpaKeyTile) return;
  for (int b = 0; b < c.s.B; ++b)
    for (int h = 0; h < c.s.H; ++h)
      for (int i = 0; i < c.s.Tq; ++i)
        if (rises_across_key_tiles(logits<double>(c, b, h, i))) return classify(regime::rising_maxima);
}

CaseOutcome reference_agreement(const AttentionEntry& e, Impl) {
  // the kernel's tiling is what this compares: half the cases over several tiles, one in eight
  // a single query against a single key
  SdpaCase c = *one_in(8) ? draw({.T = {1, 1}, .tiles_one_in = 0}) : draw({.tiles_one_in = 2});
  // hard inputs: larger magnitudes (sharper softmax), maxima rising across key tiles, poison in
  // the padded keys and values
  const float mag = *rc::gen::element(1.0f, 4.0f, 16.0f);
  for (auto& x : c.q) x *= mag;
  const bool rising = c.s.Tk > kSdpaKeyTile && *chance(3, 4);
  if (rising) rising_logits(c);
  const bool poisoned = *chance(3, 4);
  const Poison poison = poisoned ? draw_poison() : Poison::nan;
  if (poisoned)
    for (int b = 0; b < c.s.B; ++b)
      for (int h = 0; h < c.s.H; ++h)
        for (int t = c.m.key_lengths[b]; t < c.s.Tk; ++t) {
          std::fill_n(c.k_at(b, h, t), c.s.dh, poison_value(poison));
          std::fill_n(c.v_at(b, h, t), c.s.dv, poison_value(poison));
        }
  const bool rough = *rc::gen::arbitrary<bool>();
  if (rough) {
    roughen(c.q, 1);
    roughen(c.k, 2);
    roughen(c.v, 3);
  }
  classify_rising(c);
  const Side A = side(e, Impl::optimized, c, true), B = side(e, Impl::reference, c, true);
  Diff d(kLabels);
  // NaN / −inf only in masked keys, values
  if (poisoned && (poison == Poison::nan || poison == Poison::neg_inf)) d.poisoned_unread();
  compare_rows(d, rows(A), rows(B));
  compare_weights(d, c.s, A.r.weights, B.r.weights, [&](int b, int h, int i) { return logit_bound(c, b, h, i); });
  return outcome(d, "optimized (a) vs reference (b); queries ×" + std::to_string(mag) +
                        (rising ? ", logits rising across key tiles" : "") +
                        (rough ? ", values off the dyadic grid" : "") +
                        (poisoned ? std::string(", padded keys/values set to ") + to_string(poison) : ""),
                 [&] { return record(A, B); });
}

CaseOutcome thread_determinism(const AttentionEntry& e, Impl) {
  // half the cases large enough for the kernel's parallel path
  const SdpaCase c = *rc::gen::arbitrary<bool>()
                         ? draw({.T = {32, 48}}, {.H = {2, 4}, .dh = {4, 8}, .dv = {4, 8}, .dv_any = true})
                         : draw();
  return across_threads(
      kLabels, [&] { return Side{c, "optimized", run(e, Impl::optimized, c, true)}; },
      [&](Diff& d, const Side& one, const Side& many) {
        compare_rows(d, rows(one), rows(many));
        compare_weights(d, c.s, one.r.weights, many.r.weights);
      },
      record);
}

namespace {

// Every query of c against what the masks' formula says it sees (spec_visible): the queries of
// sequence b that see n keys, in one call without a mask against b's first n keys; n = 0 is
// zeros and n = 1 is v_0 itself (its one weight is e^0/e^0 = 1 exactly), with no kernel call.
// `poisoned`: c's only non-finite values are where no compared output may read (masked keys and
// values): a non-finite output is a leak (Diff::poisoned_unread).
CaseOutcome against_prefixes(const AttentionEntry& e, Impl impl, const SdpaCase& c, const std::string& note,
                             bool poisoned = false) {
  const Side A = side(e, impl, c);
  const std::vector<PrefixGroup> groups = prefix_groups(c.s.B, c.s.Tq, c.s.Tk, c.m);
  std::vector<Side> prefixes;  // per group: a kernel call (n ≥ 2) or the closed form (n ≤ 1)
  for (const auto& [b, n, queries] : groups) {
    SdpaCase p;
    p.s = {1, c.s.H, int(queries.size()), std::max(n, 1), c.s.dh, c.s.dv, 0};
    p.scale = c.scale;
    p.q.resize(p.s.q_size());
    p.k.resize(p.s.k_size());
    p.v.resize(p.s.v_size());
    for (int h = 0; h < c.s.H; ++h) {
      for (std::size_t r = 0; r < queries.size(); ++r)
        std::copy_n(c.q_at(b, h, queries[r]), c.s.dh, p.q_at(0, h, int(r)));
      for (int j = 0; j < p.s.Tk; ++j) {
        std::copy_n(c.k_at(b, h, j), c.s.dh, p.k_at(0, h, j));
        std::copy_n(c.v_at(b, h, j), c.s.dv, p.v_at(0, h, j));
      }
    }
    if (n >= 2) {
      prefixes.push_back(side(e, impl, std::move(p)));
      continue;
    }
    Output closed(p.s.out_size(), 0.0);  // n = 0: zeros
    if (n == 1)
      for (int h = 0; h < c.s.H; ++h)
        for (std::size_t r = 0; r < queries.size(); ++r)
          std::copy_n(p.v_at(0, h, 0), c.s.dv, &closed[p.row(0, h, int(r)) * c.s.dv]);
    prefixes.push_back(Side{std::move(p), n ? "v_0 (one visible key)" : "zeros (no visible key)", {closed, {}}});
  }
  return prefix_outcome(
      kLabels, poisoned, note, groups.size(), rows(A), [&](std::size_t k) { return rows(prefixes[k], int(k)); },
      [&](std::size_t k, const Index& r) { return Index{groups[k].b, r[1], groups[k].queries[r[2]]}; },
      [&] { return params(c); }, A.implementation, [&] { return call(A); }, impl, [&](std::size_t k) {
        return call(prefixes[k], prefix_attributes(groups[k], "visible_keys", prefixes[k].implementation));
      });
}

}  // namespace

CaseOutcome causal_mask_semantics(const AttentionEntry& e, Impl impl) {
  // self-attention (Tq = Tk: the first query sees one key, the last every key) one time in two,
  // else Tq ≤ Tk (a block of queries against a longer cache: bottom-right alignment)
  const bool self = *rc::gen::arbitrary<bool>();
  const SdpaCase c = draw({.causal = Causal::always, .queries = self ? Queries::self : Queries::at_most_keys,
                           .padding = false, .tiles_one_in = 3});
  return against_prefixes(e, impl, c, "causal attention of " + std::to_string(c.s.Tq) + " queries against " +
                                          std::to_string(c.s.Tk) + " keys");
}

CaseOutcome key_padding_semantics(const AttentionEntry& e, Impl impl) {
  SdpaCase c = draw({.queries = Queries::at_most_keys, .tiles_one_in = 3});
  const Poison poison = draw_poison();
  for (int b = 0; b < c.s.B; ++b)
    for (int h = 0; h < c.s.H; ++h)
      for (int t = c.m.key_lengths[b]; t < c.s.Tk; ++t) {
        std::fill_n(c.k_at(b, h, t), c.s.dh, poison_value(poison));
        std::fill_n(c.v_at(b, h, t), c.s.dv, poison_value(poison));
      }
  return against_prefixes(e, impl, c, std::string("key lengths ") + list(c.m.key_lengths) +
                                          (c.m.causal ? " with the causal mask" : "") +
                                          ", padded keys and values set to " + to_string(poison),
                          /*poisoned=*/poison != Poison::huge);
}

}  // namespace normcheck::attn::sdpa
