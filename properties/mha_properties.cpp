// The `mha` row: multi-head attention with PyTorch's layout. Each property draws one case with
// RapidCheck, builds the related input, runs the cell's implementation and compares.
//
// cond = Σ_c |W_o[e,c]|·(k_s·2·L̂·Σ_j w_j·|v_jc − o_c| + k_v·(Σ_j w_j·v̂_jc + |o_c|)) per output
// element y[b, i, e]: sdpa's bound (sdpa_cells.cpp) carried through the projections. L̂ bounds
// the logits by the magnitudes the float32 projections round relative to (q̂ = Σ|W_q||x| + |b_q|,
// likewise k̂, v̂), whose (E + 1)·u relative errors add 2(E + 1)·u·L̂ to the logits' error; the
// values carry (E + 1)·u·v̂ and the out-projection (E + 1)·u·|o|, all taken to y through |W_o|.
// k_s = (dh + 2E + 4)/32 and k_v = (E + 1)/32 turn those counts of u into 2e-6·cond.
#include <algorithm>

#include "attention/cell_support.hpp"
#include "attention/check.hpp"
#include "attention/mha.hpp"
#include "properties/generators.hpp"

namespace normcheck::attn {
namespace {

using check::Diff;
using nlohmann::json;

// ---------------------------------------------------------------------------------------------
// mha cases

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
};

MhaWeights draw_mha_weights(int E, int H) {
  MhaWeights w;
  w.E = E;
  w.H = H;
  for (int k : ints(std::size_t(3) * E * E, 32)) w.in_proj_weight.push_back(float(k) / 128.0f);
  for (int k : ints(std::size_t(3) * E, 8)) w.in_proj_bias.push_back(float(k) / 16.0f);
  for (int k : ints(std::size_t(E) * E, 32)) w.out_proj_weight.push_back(float(k) / 128.0f);
  for (int k : ints(std::size_t(E), 8)) w.out_proj_bias.push_back(float(k) / 16.0f);
  return w;
}

MhaCase draw_mha(Causal causal, Queries queries, bool padding = true) {
  MhaCase c;
  const int dh = *inRange(1, 9);
  const int H = *inRange(1, std::min(4, 16 / dh) + 1);
  c.w = draw_mha_weights(H * dh, H);
  c.B = *inRange(1, 4);
  c.Tk = *inRange(1, 9);
  c.self = queries == Queries::self;
  c.Tq = c.self ? c.Tk
                : queries == Queries::at_most_keys ? *inRange(1, c.Tk + 1)
                                                   : *inRange(1, 9);
  c.m.causal = draw_causal(causal);
  c.m.key_lengths = padding ? key_lengths(c.B, c.Tk) : std::vector<int>(c.B, c.Tk);
  c.query = values(std::size_t(c.B) * c.Tq * c.E());
  c.memory = c.self ? c.query : values(std::size_t(c.B) * c.Tk * c.E());
  return c;
}

struct MhaRun {
  std::vector<double> out, weights;  // [B, Tq, E], [B, H, Tq, Tk]
};

MhaRun run(const MhaCase& c, Impl impl, bool want_weights = false) {
  MhaRun r;
  if (impl == Impl::reference) {
    mha_reference(r.out, want_weights ? &r.weights : nullptr, c.w, widen(c.query),
                  widen(c.memory), c.B, c.Tq, c.Tk, c.m);
  } else {
    std::vector<float> out, w;
    mha_optimized(out, want_weights ? &w : nullptr, c.w, c.query, c.memory, c.B, c.Tq, c.Tk, c.m);
    r.out = widen(out);
    r.weights = widen(w);
  }
  return r;
}

SdpaShape heads_shape(const MhaCase& c) {
  return {c.B, c.w.H, c.Tq, c.Tk, c.w.head_dim(), c.w.head_dim(), 0};
}

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

// cond of every output element y [B, Tq, E] (see the top of this file), and the logit bound L̂
// of every query row [B, H, Tq] (the cond of its attention weights)
struct MhaCond {
  std::vector<double> y, logits;
};

MhaCond mha_cond(const MhaCase& c) {
  const int E = c.E(), H = c.w.H, dh = c.w.head_dim();
  const SdpaShape s = heads_shape(c);
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
        double L = 0;
        for (int j = 0; j < n; ++j) {
          const std::size_t krow = (std::size_t(b) * H + h) * c.Tk + j;
          double a = 0;
          for (int d = 0; d < dh; ++d) a += qa[qrow * dh + d] * ka[krow * dh + d];
          L = std::max(L, a);
        }
        L *= scale;
        cond.logits[qrow] = std::isfinite(L) ? L : 0.0;
        // the reference's weights of this row
        std::vector<double> w(n);
        for (int j = 0; j < n; ++j) {
          const std::size_t krow = (std::size_t(b) * H + h) * c.Tk + j;
          double a = 0;
          for (int d = 0; d < dh; ++d) a += ref.q[qrow * dh + d] * ref.k[krow * dh + d];
          w[j] = a * scale;
        }
        const double mx = n ? *std::max_element(w.begin(), w.end()) : 0.0;
        double sum = 0;
        for (auto& x : w) sum += (x = std::exp(x - mx));
        for (auto& x : w) x /= sum;
        for (int d = 0; d < dh; ++d) {
          const double o = ref.o[qrow * dh + d];
          double spread = 0, vmag = 0;  // Σ_j w_j·|v_jd − o_d|, Σ_j w_j·v̂_jd
          for (int j = 0; j < n; ++j) {
            const std::size_t krow = (std::size_t(b) * H + h) * c.Tk + j;
            spread += w[j] * std::abs(ref.v[krow * dh + d] - o);
            vmag += w[j] * va[krow * dh + d];
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

json mha_json(const MhaCase& c, const MhaRun& r, Impl impl) {
  const int E = c.E();
  json j = {{"implementation", to_string(impl)},
            {"E", E},
            {"heads", c.w.H},
            {"shape", {{"B", c.B}, {"Tq", c.Tq}, {"Tk", c.Tk}}},
            {"causal", c.m.causal},
            {"key_lengths", c.m.key_lengths},
            {"in_proj_weight", check::nested(c.w.in_proj_weight, {3 * E, E})},
            {"in_proj_bias", c.w.in_proj_bias},
            {"out_proj_weight", check::nested(c.w.out_proj_weight, {E, E})},
            {"out_proj_bias", c.w.out_proj_bias},
            {"query", check::nested(c.query, {c.B, c.Tq, E})},
            {"y", check::nested(r.out, {c.B, c.Tq, E})}};
  if (!c.self) j["memory"] = check::nested(c.memory, {c.B, c.Tk, E});
  return j;
}

json mha_pair_json(const MhaCase& a, const MhaRun& ra, const MhaCase& b, const MhaRun& rb,
                   Impl ia, Impl ib) {
  return {{"input", mha_json(a, ra, ia)}, {"related", mha_json(b, rb, ib)}};
}

struct MhaSide {
  const MhaCase& c;
  const MhaRun& r;
  MhaCond conds;
  const std::vector<double>& cond;
  MhaSide(const MhaCase& c_, const MhaRun& r_) : c(c_), r(r_), conds(mha_cond(c_)), cond(conds.y) {}
};

void compare_tokens(Diff& d, const MhaSide& A, int b, int i, const MhaSide& Bs, int b2, int i2) {
  const int E = A.c.E();
  const std::size_t ra = std::size_t(b) * A.c.Tq + i, rb = std::size_t(b2) * Bs.c.Tq + i2;
  for (int e = 0; e < E; ++e) {
    const double a = A.r.out[ra * E + e], bv = Bs.r.out[rb * E + e];
    const double cond = std::max(A.cond[ra * E + e], Bs.cond[rb * E + e]);
    d.values(a, bv, check::rule(bv, cond), [&] {
      return "y" + at({b, i, e}) + " (a) vs y" + at({b2, i2, e}) + " (b)";
    });
  }
}

// ---------------------------------------------------------------------------------------------
// mha properties

CaseOutcome mha_row_stochastic(Impl impl) {
  const MhaCase c = draw_mha(Causal::maybe, Queries::any);
  const MhaRun r = run(c, impl, true);
  const SdpaShape s = heads_shape(c);
  const int H = c.w.H, E = c.E();
  Diff d;
  for (int b = 0; b < c.B; ++b)
    for (int i = 0; i < c.Tq; ++i) {
      const int n = visible_keys(s, c.m, b, i);
      for (int h = 0; h < H; ++h) {
        const std::size_t row = (std::size_t(b) * H + h) * c.Tq + i;
        double sum = 0;
        for (int j = 0; j < c.Tk; ++j) {
          const double w = r.weights[row * c.Tk + j];
          if (j < n && !(w >= 0)) d.fail(w, 0, 0, "weight" + at({b, h, i, j}) + " is negative");
          if (j >= n && w != 0)
            d.fail(w, 0, 0, "weight" + at({b, h, i, j}) + " of a masked key is not 0");
          sum += w;
        }
        if (n > 0)
          d.values(sum, 1.0, check::rule(1.0, 0), [&] { return "sum of weight row" + at({b, h, i}); });
      }
      if (n == 0)  // no visible key: zero attention output, y = out_proj_bias
        for (int e = 0; e < E; ++e) {
          const double y = r.out[(std::size_t(b) * c.Tq + i) * E + e], want = c.w.out_proj_bias[e];
          d.values(y, want, check::rule(want, 0),
                   [&] { return "y" + at({b, i, e}) + " of a fully masked query (a) vs out_proj_bias (b)"; });
        }
    }
  return check::outcome(d, "the per-head attention weights of every query", [&] {
    json j = {{"input", mha_json(c, r, impl)}};
    j["weights"] = check::nested(r.weights, {c.B, H, c.Tq, c.Tk});
    return j;
  });
}

CaseOutcome mha_causality(Impl impl) {
  const MhaCase c = draw_mha(Causal::always, Queries::self);
  const int b = *inRange(0, c.B);
  const int s = *inRange(0, c.Tq);
  MhaCase c2 = c;
  for (int t = s + 1; t < c.Tq; ++t) {
    const auto v = values(c.E());
    std::copy(v.begin(), v.end(), c2.q_tok(b, t));
  }
  c2.sync();
  const MhaRun ra = run(c, impl), rb = run(c2, impl);
  const MhaSide A(c, ra), B(c2, rb);
  Diff d;
  for (int i = 0; i <= s; ++i) compare_tokens(d, A, b, i, B, b, i);
  return check::outcome(d, "tokens after position " + std::to_string(s) + " of sequence " +
                               std::to_string(b) + " replaced",
                        [&] { return mha_pair_json(c, ra, c2, rb, impl, impl); });
}

CaseOutcome mha_key_padding_invariance(Impl impl) {
  const MhaCase c = draw_mha(Causal::maybe, Queries::self);
  const int extra = *inRange(0, 4);
  const int poison = *rc::gen::element(0, 1, 2);
  const float pv[] = {kNaN, 1e30f, 1000.0f};
  const char* poison_name[] = {"NaN", "1e30", "1000"};
  MhaCase c2 = c;
  c2.Tq = c2.Tk = c.Tq + extra;
  c2.query = values(std::size_t(c.B) * c2.Tq * c.E());
  const MhaCase& src = c;
  for (int b = 0; b < c.B; ++b)
    for (int t = 0; t < c2.Tq; ++t) {
      if (t >= c.m.key_lengths[b])
        std::fill(c2.q_tok(b, t), c2.q_tok(b, t) + c.E(), pv[poison]);
      else
        std::copy_n(src.q_tok(b, t), c.E(), c2.q_tok(b, t));
    }
  c2.sync();
  const MhaRun ra = run(c, impl), rb = run(c2, impl);
  const MhaSide A(c, ra), B(c2, rb);
  Diff d;
  for (int b = 0; b < c.B; ++b)
    for (int i = 0; i < c.m.key_lengths[b]; ++i) compare_tokens(d, A, b, i, B, b, i);
  return check::outcome(d, std::to_string(extra) + " padding tokens appended, every padded token set to " +
                               poison_name[poison],
                        [&] { return mha_pair_json(c, ra, c2, rb, impl, impl); });
}

CaseOutcome mha_kv_permutation_invariance(Impl impl) {
  const MhaCase c = draw_mha(Causal::never, Queries::any);
  MhaCase c2 = c;
  std::string perms;
  const MhaCase& src = c;
  for (int b = 0; b < c.B; ++b) {
    const auto p = permutation(c.m.key_lengths[b]);
    perms += (b ? ", " : "") + list(p);
    for (int j = 0; j < int(p.size()); ++j) std::copy_n(src.m_tok(b, p[j]), c.E(), c2.m_tok(b, j));
  }
  const MhaRun ra = run(c, impl), rb = run(c2, impl);
  const MhaSide A(c, ra), B(c2, rb);
  Diff d;
  for (int b = 0; b < c.B; ++b)
    for (int i = 0; i < c.Tq; ++i) compare_tokens(d, A, b, i, B, b, i);
  return check::outcome(d, "valid memory tokens of each sequence permuted: " + perms,
                        [&] { return mha_pair_json(c, ra, c2, rb, impl, impl); });
}

CaseOutcome mha_query_permutation_equivariance(Impl impl) {
  const MhaCase c = draw_mha(Causal::never, Queries::any);
  MhaCase c2 = c;
  std::vector<std::vector<int>> perm;
  std::string perms;
  const MhaCase& src = c;
  for (int b = 0; b < c.B; ++b) {
    perm.push_back(permutation(c.Tq));
    perms += (b ? ", " : "") + list(perm.back());
    for (int i = 0; i < c.Tq; ++i) std::copy_n(src.q_tok(b, perm[b][i]), c.E(), c2.q_tok(b, i));
  }
  const MhaRun ra = run(c, impl), rb = run(c2, impl);
  const MhaSide A(c, ra), B(c2, rb);
  Diff d;
  for (int b = 0; b < c.B; ++b)
    for (int i = 0; i < c.Tq; ++i) compare_tokens(d, A, b, perm[b][i], B, b, i);
  return check::outcome(d, "query tokens of each sequence permuted (new order): " + perms,
                        [&] { return mha_pair_json(c, ra, c2, rb, impl, impl); });
}

CaseOutcome mha_batch_independence(Impl impl) {
  const MhaCase c = draw_mha(Causal::maybe, Queries::self);
  const int b = *inRange(0, c.B);
  const int B2 = *inRange(1, 5);
  const int j = *inRange(0, B2);
  MhaCase c2 = c;
  c2.B = B2;
  c2.m.key_lengths = key_lengths(B2, c.Tk);
  c2.m.key_lengths[j] = c.m.key_lengths[b];
  c2.query = values(std::size_t(B2) * c.Tq * c.E());
  const MhaCase& src = c;
  for (int t = 0; t < c.Tq; ++t) std::copy_n(src.q_tok(b, t), c.E(), c2.q_tok(j, t));
  c2.sync();
  const MhaRun ra = run(c, impl), rb = run(c2, impl);
  const MhaSide A(c, ra), B(c2, rb);
  Diff d;
  for (int i = 0; i < c.Tq; ++i) compare_tokens(d, A, b, i, B, j, i);
  return check::outcome(d, "sequence " + std::to_string(b) + " moved to index " + std::to_string(j) +
                               " of a batch of " + std::to_string(B2),
                        [&] { return mha_pair_json(c, ra, c2, rb, impl, impl); });
}

CaseOutcome mha_logit_shift_invariance(Impl impl) {
  const MhaCase c = draw_mha(Causal::maybe, Queries::any);
  const int E = c.E();
  std::vector<float> shift(E);
  for (auto& x : shift) x = gen::shift_amount();
  MhaCase c2 = c;
  for (int e = 0; e < E; ++e) c2.w.in_proj_bias[E + e] += shift[e];  // every key k_j + shift
  const MhaRun ra = run(c, impl), rb = run(c2, impl);
  const MhaSide A(c, ra), B(c2, rb);
  Diff d;
  for (int b = 0; b < c.B; ++b)
    for (int i = 0; i < c.Tq; ++i) compare_tokens(d, A, b, i, B, b, i);
  std::vector<int> s4;
  for (float x : shift) s4.push_back(int(x * 4));
  return check::outcome(d, "the key bias plus a vector (quarters) " + list(s4) + ": every key shifted alike",
                        [&] { return mha_pair_json(c, ra, c2, rb, impl, impl); });
}

CaseOutcome mha_value_affine_equivariance(Impl impl) {
  const MhaCase c = draw_mha(Causal::maybe, Queries::any);
  const int E = c.E();
  const float a = (*rc::gen::arbitrary<bool>() ? -1.0f : 1.0f) * gen::scale_factor();
  std::vector<float> beta(E);
  for (auto& x : beta) x = gen::shift_amount();
  MhaCase c2 = c;  // v = W_v·x + b_v → a·v + β
  for (std::size_t i = 2 * std::size_t(E) * E; i < 3 * std::size_t(E) * E; ++i) c2.w.in_proj_weight[i] *= a;
  for (int e = 0; e < E; ++e) c2.w.in_proj_bias[2 * E + e] = a * c.w.in_proj_bias[2 * E + e] + beta[e];
  const MhaRun ra = run(c, impl), rb = run(c2, impl);
  const MhaSide A(c, ra), B(c2, rb);
  // y' = W_o·(a·o + β) + b_o = a·(y − b_o) + b_o + W_o·β where a query sees some key
  std::vector<double> wob(E, 0.0);
  for (int e = 0; e < E; ++e)
    for (int k = 0; k < E; ++k) wob[e] += double(c.w.out_proj_weight[std::size_t(e) * E + k]) * beta[k];
  const SdpaShape s = heads_shape(c);
  Diff d;
  for (int b = 0; b < c.B; ++b)
    for (int i = 0; i < c.Tq; ++i) {
      const bool any_key = visible_keys(s, c.m, b, i) > 0;
      for (int e = 0; e < E; ++e) {
        const std::size_t x = (std::size_t(b) * c.Tq + i) * E + e;
        const double bo = c.w.out_proj_bias[e];
        const double want = any_key ? a * (ra.out[x] - bo) + bo + wob[e] : ra.out[x];
        const double cond = std::max(std::abs(a) * A.cond[x], B.cond[x]);
        d.values(rb.out[x], want, check::rule(want, cond),
                 [&] { return "y" + at({b, i, e}) + " with a·v + β (a) vs a·(y − b_o) + b_o + W_o·β (b)"; });
      }
    }
  std::string bs;
  for (float x : beta) bs += (bs.empty() ? "" : ", ") + std::to_string(x);
  return check::outcome(d, "values v → a·v + β (W_v, b_v scaled by a = " + std::to_string(a) + ", β = [" + bs + "])",
                        [&] { return mha_pair_json(c, ra, c2, rb, impl, impl); });
}

template <class T>
std::vector<T> tokens(const std::vector<float>& x, int t0, int n, int E) {
  return std::vector<T>(x.begin() + std::size_t(t0) * E, x.begin() + std::size_t(t0 + n) * E);
}

CaseOutcome mha_kv_cache_equivalence(Impl impl) {
  MhaCase c = draw_mha(Causal::always, Queries::self, false);
  c.B = 1;
  c.m.key_lengths = {c.Tk};
  c.query.resize(std::size_t(c.Tq) * c.E());
  c.sync();
  const int L = c.Tq, E = c.E(), P = *inRange(1, L + 1);
  const MhaRun full = run(c, impl);
  const MhaSide F(c, full);
  Diff d;
  for (const auto& [name, chunks] : schedules(L, P)) {
    KvCache<double> ref_cache = mha_cache<double>(c.w, L);
    KvCache<float> opt_cache = mha_cache<float>(c.w, L);
    int t0 = 0;
    for (int n : chunks) {
      std::vector<double> y;
      if (impl == Impl::reference) {
        mha_decode_reference(y, nullptr, c.w, tokens<double>(c.query, t0, n, E), n, ref_cache);
      } else {
        std::vector<float> yf;
        mha_decode_optimized(yf, nullptr, c.w, tokens<float>(c.query, t0, n, E), n, opt_cache);
        y = widen(yf);
      }
      for (int i = 0; i < n; ++i)
        for (int e = 0; e < E; ++e) {
          const std::size_t x = std::size_t(t0 + i) * E + e;
          const double f = full.out[x];
          d.values(y[std::size_t(i) * E + e], f, check::rule(f, F.cond[x]), [&] {
            return name + ": y" + at({0, t0 + i, e}) + " decoded (a) vs the full causal forward (b)";
          });
        }
      t0 += n;
    }
  }
  return check::outcome(d, "chunks of 1, 2, 3, L and prefill " + std::to_string(P) +
                               " + decode through the KV cache vs one causal forward",
                        [&] { return json{{"input", mha_json(c, full, impl)}}; });
}

// An independent evaluation in long double: projections, max-subtracted softmax, out_proj.
std::vector<double> mha_oracle(const MhaCase& c) {
  const int E = c.E(), H = c.w.H, dh = c.w.head_dim();
  const SdpaShape s = heads_shape(c);
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
  std::vector<double> out(std::size_t(c.B) * c.Tq * E);
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
        const long double mx = *std::max_element(sc.begin(), sc.end());
        long double sum = 0;
        for (auto& x : sc) sum += (x = std::exp(x - mx));
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

CaseOutcome mha_large_logit_stability(Impl impl) {
  MhaCase c = draw_mha(Causal::maybe, Queries::any);
  const int E = c.E();
  const bool rough = *rc::gen::arbitrary<bool>();  // float32 logits then carry rounding errors
  if (rough) {
    for (auto* v : {&c.query, &c.w.in_proj_weight, &c.w.in_proj_bias}) roughen(*v, int(v->size()));
    if (!c.self) roughen(c.memory, 5);
    c.sync();
  }
  // scale W_q and b_q by a power of two so that the largest visible logit lands in (5e3, 1e4]
  const MhaHeads h0 = mha_reference_heads(c.w, widen(c.query), widen(c.memory), c.B, c.Tq, c.Tk, c.m);
  const SdpaShape s = heads_shape(c);
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
  for (int e = 0; e < E; ++e) c.w.in_proj_bias[e] *= float(f);
  const MhaRun r = run(c, impl);
  std::vector<double> want;
  std::vector<double> cond(r.out.size(), 0.0);
  if (impl == Impl::optimized) {
    want = run(c, Impl::reference).out;
    cond = mha_cond(c).y;
  } else {
    want = mha_oracle(c);
  }
  Diff d;
  for (std::size_t x = 0; x < r.out.size(); ++x)
    d.values(r.out[x], want[x], check::rule(want[x], cond[x]), [&] {
      return "y" + at({int(x / E / c.Tq), int(x / E % c.Tq), int(x % E)}) + " (a) vs " +
             (impl == Impl::optimized ? "the reference" : "a long double evaluation") + " (b)";
    });
  return check::outcome(d, "W_q, b_q scaled by " + std::to_string(f) + ": largest |logit| " +
                               std::to_string(max_logit * f) +
                               (rough ? ", values off the dyadic grid" : ""),
                        [&] {
                          return json{{"input", mha_json(c, r, impl)},
                                      {"expected_y", check::nested(want, {c.B, c.Tq, E})}};
                        });
}

CaseOutcome mha_reference_agreement(Impl) {
  MhaCase c = draw_mha(Causal::maybe, Queries::any);
  const bool rough = *rc::gen::arbitrary<bool>();
  if (rough) {
    for (auto* v : {&c.query, &c.w.in_proj_weight, &c.w.in_proj_bias, &c.w.out_proj_weight,
                    &c.w.out_proj_bias})
      roughen(*v, int(v->size()));
    if (!c.self) roughen(c.memory, 5);
    c.sync();
  }
  const int poison = *rc::gen::element(0, 1, 2);
  const float pv[] = {0.0f, kNaN, 1e30f};
  if (poison) {
    for (int b = 0; b < c.B; ++b)
      for (int t = c.m.key_lengths[b]; t < c.Tk; ++t) {
        std::fill(c.m_tok(b, t), c.m_tok(b, t) + c.E(), pv[poison]);
        if (c.self) std::fill(c.q_tok(b, t), c.q_tok(b, t) + c.E(), pv[poison]);
      }
  }
  const MhaRun opt = run(c, Impl::optimized, true), ref = run(c, Impl::reference, true);
  const MhaSide A(c, opt), B(c, ref);
  Diff d;
  for (int b = 0; b < c.B; ++b)
    for (int i = 0; i < c.Tq; ++i) {
      if (c.self && i >= c.m.key_lengths[b] && poison) continue;  // a poisoned query's own row
      compare_tokens(d, A, b, i, B, b, i);
      for (int h = 0; h < c.w.H; ++h)
        for (int j = 0; j < c.Tk; ++j) {
          const std::size_t e = ((std::size_t(b) * c.w.H + h) * c.Tq + i) * c.Tk + j;
          // a weight's relative error is at most twice its row's logit error
          const double cond = B.conds.logits[(std::size_t(b) * c.w.H + h) * c.Tq + i];
          d.values(opt.weights[e], ref.weights[e], check::rule(ref.weights[e], cond),
                   [&] { return "weight" + at({b, h, i, j}); });
        }
    }
  return check::outcome(d, std::string("optimized (a) vs reference (b)") +
                               (rough ? ", values off the dyadic grid" : "") +
                               (poison ? ", padded memory tokens poisoned" : ""),
                        [&] { return mha_pair_json(c, opt, c, ref, Impl::optimized, Impl::reference); });
}

CaseOutcome mha_thread_determinism(Impl) {
  MhaCase c;
  if (*rc::gen::arbitrary<bool>()) {  // large enough for the parallel projections and attention
    c.w = draw_mha_weights(16, *rc::gen::element(2, 4));
    c.B = *inRange(2, 4);
    c.Tq = c.Tk = *inRange(32, 49);
    c.m.causal = *rc::gen::arbitrary<bool>();
    c.m.key_lengths = key_lengths(c.B, c.Tk);
    c.query = c.memory = values(std::size_t(c.B) * c.Tq * c.E());
  } else {
    c = draw_mha(Causal::maybe, Queries::any);
  }
  const int threads = *rc::gen::element(1, 2, 3, 4);
  return check::thread_determinism(
      threads, [&] { return run(c, Impl::optimized, true); },
      [&](const MhaRun& one, const MhaRun& many) {
        return mha_pair_json(c, one, c, many, Impl::optimized, Impl::optimized);
      });
}

}  // namespace

std::map<std::string, CheckFn> mha_checks() {
  return {
      {"row_stochastic", mha_row_stochastic},
      {"causality", mha_causality},
      {"key_padding_invariance", mha_key_padding_invariance},
      {"kv_permutation_invariance", mha_kv_permutation_invariance},
      {"query_permutation_equivariance", mha_query_permutation_equivariance},
      {"batch_independence", mha_batch_independence},
      {"logit_shift_invariance", mha_logit_shift_invariance},
      {"value_affine_equivariance", mha_value_affine_equivariance},
      {"kv_cache_equivalence", mha_kv_cache_equivalence},
      {"large_logit_stability", mha_large_logit_stability},
      {"reference_agreement", mha_reference_agreement},
      {"thread_determinism", mha_thread_determinism},
  };
}

}  // namespace normcheck::attn
