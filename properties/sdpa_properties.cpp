// The `sdpa` row: bare scaled dot-product attention over [B, H, T, d]. Each property draws one
// case with RapidCheck, builds the related input, runs the cell's implementation and compares.
//
// cond = 2·L·Σ_j w_j·|v_jc − o_ic| per output element (b, h, i, c), j over the visible keys, w
// the exact weights. L = scale·max_j Σ_d |q_id|·|k_jd| bounds the logits, so float32 logits are
// off by at most δ = (dh + 2)·u·L (a dh-term dot product and the scaling). To first order o_c
// moves by Σ_j w_j·(v_jc − o_c)·(δs_j − Σ_k w_k·δs_k), at most 2δ·Σ_j w_j·|v_jc − o_c| =
// (dh + 2)·u·cond < 2e-6·cond for dh ≤ 31; exp, the normalization and the value sums stay within
// 1e-5 + 1e-5·|b|. Where a case makes every logit exact in float32 (large_logit_stability:
// integer q and k, power-of-two scale) cond is 0: the plain single-layer bound.
#include <algorithm>

#include "attention/cell_support.hpp"
#include "attention/cells.hpp"
#include "attention/check.hpp"
#include "attention/sdpa.hpp"
#include "properties/generators.hpp"

namespace normcheck::attn {
namespace {

using check::Diff;
using nlohmann::json;

// ---------------------------------------------------------------------------------------------
// sdpa cases

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
};

double draw_scale(int dh) {
  return *rc::gen::weightedOneOf<double>(
      {{3, rc::gen::just(default_scale(dh))}, {1, rc::gen::element(0.25, 0.5, 1.0)}});
}

SdpaCase draw_sdpa(Causal causal, Queries queries, bool padding = true) {
  SdpaCase c;
  c.s.B = *inRange(1, 4);
  c.s.H = *inRange(1, 4);
  c.s.dh = *inRange(1, 9);
  c.s.dv = *rc::gen::weightedOneOf<int>({{3, rc::gen::just(c.s.dh)}, {1, inRange(1, 9)}});
  c.s.Tk = *inRange(1, 9);
  c.s.Tq = queries == Queries::self           ? c.s.Tk
           : queries == Queries::at_most_keys ? *inRange(1, c.s.Tk + 1)
                                              : *inRange(1, 9);
  c.m.causal = draw_causal(causal);
  c.m.key_lengths = padding ? key_lengths(c.s.B, c.s.Tk) : std::vector<int>(c.s.B, c.s.Tk);
  c.scale = draw_scale(c.s.dh);
  c.q = values(c.s.q_size());
  c.k = values(c.s.k_size());
  c.v = values(c.s.v_size());
  return c;
}

// The same case with Tq queries and Tk keys: rows that exist in both are copied, new rows drawn.
SdpaCase with_tokens(const SdpaCase& c, int Tq, int Tk) {
  SdpaCase r = c;
  r.s.Tq = Tq;
  r.s.Tk = Tk;
  r.s.kv_capacity = 0;
  r.q = values(r.s.q_size());
  r.k = values(r.s.k_size());
  r.v = values(r.s.v_size());
  const SdpaCase& src = c;
  for (int b = 0; b < c.s.B; ++b)
    for (int h = 0; h < c.s.H; ++h) {
      for (int i = 0; i < std::min(Tq, c.s.Tq); ++i)
        std::copy_n(src.q_at(b, h, i), c.s.dh, r.q_at(b, h, i));
      for (int j = 0; j < std::min(Tk, c.s.Tk); ++j) {
        std::copy_n(src.k_at(b, h, j), c.s.dh, r.k_at(b, h, j));
        std::copy_n(src.v_at(b, h, j), c.s.dv, r.v_at(b, h, j));
      }
    }
  return r;
}

struct SdpaRun {
  std::vector<double> out, weights;
};

SdpaRun run(const SdpaCase& c, Impl impl, bool want_weights = false) {
  SdpaRun r;
  if (impl == Impl::reference) {
    sdpa_reference(r.out, want_weights ? &r.weights : nullptr, c.q, c.k, c.v, c.s, c.m, c.scale);
  } else {
    std::vector<float> out, w;
    ::normcheck::sdpa_cells_kernel()(out, want_weights ? &w : nullptr, c.q, c.k, c.v, c.s, c.m, c.scale);
    r.out = widen(out);
    r.weights = widen(w);
  }
  return r;
}

// L of one query row: scale·max over visible keys of Σ_d |q_d|·|k_jd|
double logit_bound(const SdpaCase& c, int b, int h, int i) {
  const int n = visible_keys(c.s, c.m, b, i);
  const float* q = &c.q[c.row(b, h, i) * c.s.dh];
  double L = 0;
  for (int j = 0; j < n; ++j) {
    const float* k = &c.k[c.kv_row(b, h, j) * c.s.dh];
    double a = 0;
    for (int d = 0; d < c.s.dh; ++d) a += std::abs(double(q[d])) * std::abs(double(k[d]));
    L = std::max(L, a);
  }
  return c.scale * L;
}

// The exact softmax weights of query row (b, h, i) over its visible keys.
std::vector<double> exact_weights(const SdpaCase& c, int b, int h, int i) {
  const int n = visible_keys(c.s, c.m, b, i);
  std::vector<double> w(n);
  for (int j = 0; j < n; ++j) {
    double a = 0;
    for (int d = 0; d < c.s.dh; ++d)
      a += double(c.q[c.row(b, h, i) * c.s.dh + d]) * c.k[c.kv_row(b, h, j) * c.s.dh + d];
    w[j] = a * c.scale;
  }
  const double mx = n ? *std::max_element(w.begin(), w.end()) : 0.0;
  double sum = 0;
  for (auto& x : w) sum += (x = std::exp(x - mx));
  for (auto& x : w) x /= sum;
  return w;
}

// cond of every output element [B, H, Tq, dv] (see the top of this file)
std::vector<double> sdpa_cond(const SdpaCase& c, const std::vector<double>& out) {
  std::vector<double> cond(c.s.out_size(), 0.0);
  for (int b = 0; b < c.s.B; ++b)
    for (int h = 0; h < c.s.H; ++h)
      for (int i = 0; i < c.s.Tq; ++i) {
        const auto w = exact_weights(c, b, h, i);
        const double L = logit_bound(c, b, h, i);
        const std::size_t row = c.row(b, h, i);
        for (int col = 0; col < c.s.dv; ++col) {
          double spread = 0;  // Σ_j w_j·|v_jc − o_c|
          for (int j = 0; j < int(w.size()); ++j)
            spread += w[j] * std::abs(c.v[c.kv_row(b, h, j) * c.s.dv + col] - out[row * c.s.dv + col]);
          const double v = 2 * L * spread;
          cond[row * c.s.dv + col] = std::isfinite(v) ? v : 0.0;
        }
      }
  return cond;
}

json sdpa_json(const SdpaCase& c, const SdpaRun& r, Impl impl) {
  const int B = c.s.B, H = c.s.H, rows = c.s.kv_rows();
  json j = {{"implementation", to_string(impl)},
            {"shape", {{"B", B}, {"H", H}, {"Tq", c.s.Tq}, {"Tk", c.s.Tk}, {"dh", c.s.dh}, {"dv", c.s.dv}}},
            {"causal", c.m.causal},
            {"scale", c.scale},
            {"key_lengths", c.m.key_lengths},
            {"q", check::nested(c.q, {B, H, c.s.Tq, c.s.dh})},
            {"k", check::nested(c.k, {B, H, rows, c.s.dh})},
            {"v", check::nested(c.v, {B, H, rows, c.s.dv})},
            {"out", check::nested(r.out, {B, H, c.s.Tq, c.s.dv})}};
  if (c.s.kv_capacity) j["kv_capacity"] = c.s.kv_capacity;
  return j;
}

json sdpa_pair_json(const SdpaCase& a, const SdpaRun& ra, const SdpaCase& b, const SdpaRun& rb,
                    Impl ia, Impl ib) {
  return {{"input", sdpa_json(a, ra, ia)}, {"related", sdpa_json(b, rb, ib)}};
}

// Compares output row (b, h, i) of side a with row (b2, h2, i2) of side b, every column.
struct SdpaSide {
  const SdpaCase& c;
  const SdpaRun& r;
  std::vector<double> cond;
  SdpaSide(const SdpaCase& c_, const SdpaRun& r_) : c(c_), r(r_), cond(sdpa_cond(c_, r_.out)) {}
};

void compare_rows(Diff& d, const SdpaSide& A, int b, int h, int i, const SdpaSide& Bs, int b2,
                  int h2, int i2, double cond_factor_a = 1.0) {
  const std::size_t ra = A.c.row(b, h, i), rb = Bs.c.row(b2, h2, i2);
  for (int col = 0; col < A.c.s.dv; ++col) {
    const double a = A.r.out[ra * A.c.s.dv + col], bv = Bs.r.out[rb * Bs.c.s.dv + col];
    const double cond = std::max(cond_factor_a * A.cond[ra * A.c.s.dv + col],
                                 Bs.cond[rb * Bs.c.s.dv + col]);
    d.values(a, bv, check::rule(bv, cond), [&] {
      return "out" + at({b, h, i, col}) + " (a) vs out" + at({b2, h2, i2, col}) + " (b)";
    });
  }
}

// ---------------------------------------------------------------------------------------------
// sdpa properties

CaseOutcome sdpa_row_stochastic(Impl impl) {
  SdpaCase c = draw_sdpa(Causal::maybe, Queries::any);
  // V = identity: the output rows are the attention weights the kernel used
  c.s.dv = c.s.Tk;
  c.v.assign(c.s.v_size(), 0.0f);
  for (int b = 0; b < c.s.B; ++b)
    for (int h = 0; h < c.s.H; ++h)
      for (int j = 0; j < c.s.Tk; ++j) c.v_at(b, h, j)[j] = 1.0f;
  const SdpaRun r = run(c, impl, true);
  Diff d;
  const int Tk = c.s.Tk;
  for (int b = 0; b < c.s.B; ++b)
    for (int h = 0; h < c.s.H; ++h)
      for (int i = 0; i < c.s.Tq; ++i) {
        const int n = visible_keys(c.s, c.m, b, i);
        const std::size_t row = c.row(b, h, i);
        double sum = 0;
        for (int j = 0; j < Tk; ++j) {
          const double w = r.out[row * Tk + j];
          if (j < n && !(w >= 0)) d.fail(w, 0, 0, "weight" + at({b, h, i, j}) + " is negative");
          if (j >= n && w != 0)
            d.fail(w, 0, 0, "weight" + at({b, h, i, j}) + " of a masked key is not 0");
          sum += w;
          d.values(r.weights[row * Tk + j], w, check::rule(w, 0), [&] {
            return "exposed weight" + at({b, h, i, j}) + " (a) vs the output with V = I (b)";
          });
        }
        if (n > 0)
          d.values(sum, 1.0, check::rule(1.0, 0), [&] { return "sum of weight row" + at({b, h, i}); });
      }
  return check::outcome(d, "V = identity, so each output row is that query's weight row",
                        [&] { return json{{"input", sdpa_json(c, r, impl)}}; });
}

CaseOutcome sdpa_causality(Impl impl) {
  const SdpaCase c = draw_sdpa(Causal::always, Queries::at_most_keys);
  const int b = *inRange(0, c.s.B);
  const int s = *inRange(0, c.s.Tq);
  const int pos = c.s.Tk - c.s.Tq + s;  // absolute position of query s (bottom-right)
  SdpaCase c2 = c;
  for (int h = 0; h < c.s.H; ++h) {
    for (int i = s + 1; i < c.s.Tq; ++i) {
      const auto q = values(c.s.dh);
      std::copy(q.begin(), q.end(), c2.q_at(b, h, i));
    }
    for (int j = pos + 1; j < c.s.Tk; ++j) {
      const auto k = values(c.s.dh), v = values(c.s.dv);
      std::copy(k.begin(), k.end(), c2.k_at(b, h, j));
      std::copy(v.begin(), v.end(), c2.v_at(b, h, j));
    }
  }
  const SdpaRun ra = run(c, impl), rb = run(c2, impl);
  const SdpaSide A(c, ra), B(c2, rb);
  Diff d;
  for (int h = 0; h < c.s.H; ++h)
    for (int i = 0; i <= s; ++i) compare_rows(d, A, b, h, i, B, b, h, i);
  const std::string note = "sequence " + std::to_string(b) + ": queries after " +
                           std::to_string(s) + " and keys/values after position " +
                           std::to_string(pos) + " replaced";
  return check::outcome(d, note, [&] { return sdpa_pair_json(c, ra, c2, rb, impl, impl); });
}

CaseOutcome sdpa_key_padding_invariance(Impl impl) {
  const SdpaCase c = draw_sdpa(Causal::maybe, Queries::self);
  const int extra = *inRange(0, 4);
  const int poison = *rc::gen::element(0, 1, 2);
  const char* poison_name[] = {"NaN", "1e30", "V = 1000"};
  SdpaCase c2 = with_tokens(c, c.s.Tq + extra, c.s.Tk + extra);
  for (int b = 0; b < c.s.B; ++b)
    for (int h = 0; h < c.s.H; ++h)
      for (int t = c.m.key_lengths[b]; t < c2.s.Tk; ++t) {
        float* k = c2.k_at(b, h, t);
        float* v = c2.v_at(b, h, t);
        float* q = c2.q_at(b, h, t);
        if (poison == 2) {
          std::fill(v, v + c.s.dv, 1000.0f);
        } else {
          const float p = poison == 0 ? kNaN : 1e30f;
          std::fill(k, k + c.s.dh, p);
          std::fill(v, v + c.s.dv, p);
          std::fill(q, q + c.s.dh, p);
        }
      }
  const SdpaRun ra = run(c, impl), rb = run(c2, impl);
  const SdpaSide A(c, ra), B(c2, rb);
  Diff d;
  for (int b = 0; b < c.s.B; ++b)
    for (int h = 0; h < c.s.H; ++h)
      for (int i = 0; i < c.m.key_lengths[b]; ++i) compare_rows(d, A, b, h, i, B, b, h, i);
  const std::string note = std::to_string(extra) + " padding positions appended, every padded " +
                           "position set to " + poison_name[poison];
  return check::outcome(d, note, [&] { return sdpa_pair_json(c, ra, c2, rb, impl, impl); });
}

CaseOutcome sdpa_kv_permutation_invariance(Impl impl) {
  const SdpaCase c = draw_sdpa(Causal::never, Queries::any);
  SdpaCase c2 = c;
  std::string perms;
  for (int b = 0; b < c.s.B; ++b) {
    const auto p = permutation(c.m.key_lengths[b]);
    perms += (b ? ", " : "") + list(p);
    const SdpaCase& src = c;
    for (int h = 0; h < c.s.H; ++h)
      for (int j = 0; j < int(p.size()); ++j) {
        std::copy_n(src.k_at(b, h, p[j]), c.s.dh, c2.k_at(b, h, j));
        std::copy_n(src.v_at(b, h, p[j]), c.s.dv, c2.v_at(b, h, j));
      }
  }
  const SdpaRun ra = run(c, impl), rb = run(c2, impl);
  const SdpaSide A(c, ra), B(c2, rb);
  Diff d;
  for (int b = 0; b < c.s.B; ++b)
    for (int h = 0; h < c.s.H; ++h)
      for (int i = 0; i < c.s.Tq; ++i) compare_rows(d, A, b, h, i, B, b, h, i);
  return check::outcome(d, "visible keys and values of each sequence permuted: " + perms,
                        [&] { return sdpa_pair_json(c, ra, c2, rb, impl, impl); });
}

CaseOutcome sdpa_query_permutation_equivariance(Impl impl) {
  const SdpaCase c = draw_sdpa(Causal::never, Queries::any);
  SdpaCase c2 = c;
  std::vector<std::vector<int>> perm;
  std::string perms;
  for (int b = 0; b < c.s.B; ++b) {
    perm.push_back(permutation(c.s.Tq));
    perms += (b ? ", " : "") + list(perm.back());
    const SdpaCase& src = c;
    for (int h = 0; h < c.s.H; ++h)
      for (int i = 0; i < c.s.Tq; ++i) std::copy_n(src.q_at(b, h, perm[b][i]), c.s.dh, c2.q_at(b, h, i));
  }
  const SdpaRun ra = run(c, impl), rb = run(c2, impl);
  const SdpaSide A(c, ra), B(c2, rb);
  Diff d;
  for (int b = 0; b < c.s.B; ++b)
    for (int h = 0; h < c.s.H; ++h)
      for (int i = 0; i < c.s.Tq; ++i) compare_rows(d, A, b, h, perm[b][i], B, b, h, i);
  return check::outcome(d, "queries of each sequence permuted (new order): " + perms,
                        [&] { return sdpa_pair_json(c, ra, c2, rb, impl, impl); });
}

CaseOutcome sdpa_batch_independence(Impl impl) {
  const SdpaCase c = draw_sdpa(Causal::maybe, Queries::any);
  const int b = *inRange(0, c.s.B);
  const int B2 = *inRange(1, 5);
  const int j = *inRange(0, B2);
  SdpaCase c2 = c;
  c2.s.B = B2;
  c2.m.key_lengths = key_lengths(B2, c.s.Tk);
  c2.m.key_lengths[j] = c.m.key_lengths[b];
  c2.q = values(c2.s.q_size());
  c2.k = values(c2.s.k_size());
  c2.v = values(c2.s.v_size());
  const SdpaCase& src = c;
  for (int h = 0; h < c.s.H; ++h) {
    for (int i = 0; i < c.s.Tq; ++i) std::copy_n(src.q_at(b, h, i), c.s.dh, c2.q_at(j, h, i));
    for (int t = 0; t < c.s.Tk; ++t) {
      std::copy_n(src.k_at(b, h, t), c.s.dh, c2.k_at(j, h, t));
      std::copy_n(src.v_at(b, h, t), c.s.dv, c2.v_at(j, h, t));
    }
  }
  const SdpaRun ra = run(c, impl), rb = run(c2, impl);
  const SdpaSide A(c, ra), B(c2, rb);
  Diff d;
  for (int h = 0; h < c.s.H; ++h)
    for (int i = 0; i < c.s.Tq; ++i) compare_rows(d, A, b, h, i, B, j, h, i);
  const std::string note = "sequence " + std::to_string(b) + " moved to index " +
                           std::to_string(j) + " of a batch of " + std::to_string(B2);
  return check::outcome(d, note, [&] { return sdpa_pair_json(c, ra, c2, rb, impl, impl); });
}

CaseOutcome sdpa_logit_shift_invariance(Impl impl) {
  const SdpaCase c = draw_sdpa(Causal::maybe, Queries::any);
  std::vector<float> shift(c.s.dh);
  for (auto& x : shift) x = gen::shift_amount();
  SdpaCase c2 = c;
  for (std::size_t i = 0; i < c2.k.size(); ++i) c2.k[i] += shift[i % c.s.dh];
  const SdpaRun ra = run(c, impl), rb = run(c2, impl);
  const SdpaSide A(c, ra), B(c2, rb);
  Diff d;
  for (int b = 0; b < c.s.B; ++b)
    for (int h = 0; h < c.s.H; ++h)
      for (int i = 0; i < c.s.Tq; ++i) compare_rows(d, A, b, h, i, B, b, h, i);
  std::vector<int> s16;
  for (float x : shift) s16.push_back(int(x * 4));
  return check::outcome(d, "every key plus the same vector (quarters) " + list(s16),
                        [&] { return sdpa_pair_json(c, ra, c2, rb, impl, impl); });
}

CaseOutcome sdpa_value_affine_equivariance(Impl impl) {
  const SdpaCase c = draw_sdpa(Causal::maybe, Queries::any);
  const float a = (*rc::gen::arbitrary<bool>() ? -1.0f : 1.0f) * gen::scale_factor();
  std::vector<float> beta(c.s.dv);
  for (auto& x : beta) x = gen::shift_amount();
  SdpaCase c2 = c;
  for (std::size_t i = 0; i < c2.v.size(); ++i) c2.v[i] = a * c.v[i] + beta[i % c.s.dv];
  const SdpaRun ra = run(c, impl), rb = run(c2, impl);
  const SdpaSide A(c, ra), B(c2, rb);
  Diff d;
  for (int b = 0; b < c.s.B; ++b)
    for (int h = 0; h < c.s.H; ++h)
      for (int i = 0; i < c.s.Tq; ++i) {
        const bool any_key = visible_keys(c.s, c.m, b, i) > 0;  // else both rows are zeros
        const std::size_t row = c.row(b, h, i);
        for (int col = 0; col < c.s.dv; ++col) {
          const std::size_t e = row * c.s.dv + col;
          const double want = any_key ? a * ra.out[e] + beta[col] : 0.0;
          const double cond = std::max(std::abs(a) * A.cond[e], B.cond[e]);
          d.values(rb.out[e], want, check::rule(want, cond), [&] {
            return "out" + at({b, h, i, col}) + " of a·v + b (a) vs a·out + b (b)";
          });
        }
      }
  std::string bs;
  for (float x : beta) bs += (bs.empty() ? "" : ", ") + std::to_string(x);
  return check::outcome(d, "v → a·v + b with a = " + std::to_string(a) + ", b = [" + bs + "]",
                        [&] { return sdpa_pair_json(c, ra, c2, rb, impl, impl); });
}

CaseOutcome sdpa_kv_cache_equivalence(Impl impl) {
  SdpaCase c;
  c.s.B = *inRange(1, 3);
  c.s.H = *inRange(1, 4);
  c.s.dh = *inRange(1, 9);
  c.s.dv = *inRange(1, 9);
  c.s.Tq = c.s.Tk = *inRange(1, 9);
  c.m.causal = true;
  c.scale = draw_scale(c.s.dh);
  c.q = values(c.s.q_size());
  c.k = values(c.s.k_size());
  c.v = values(c.s.v_size());
  const int L = c.s.Tk, P = *inRange(1, L + 1);
  const SdpaRun full = run(c, impl);
  const SdpaSide F(c, full);
  Diff d;
  json steps = json::array();
  for (const auto& [name, chunks] : schedules(L, P)) {
    KvCache<float> cache(c.s.B, c.s.H, c.s.dh, c.s.dv, L);
    int t0 = 0;
    for (int n : chunks) {
      SdpaCase step;
      step.m.causal = true;
      step.scale = c.scale;
      std::vector<float> q, k, v;
      const SdpaCase& src = c;
      for (int b = 0; b < c.s.B; ++b)
        for (int h = 0; h < c.s.H; ++h) {
          q.insert(q.end(), src.q_at(b, h, t0), src.q_at(b, h, t0) + n * c.s.dh);
          k.insert(k.end(), src.k_at(b, h, t0), src.k_at(b, h, t0) + n * c.s.dh);
          v.insert(v.end(), src.v_at(b, h, t0), src.v_at(b, h, t0) + n * c.s.dv);
        }
      cache.append(k, v, n);
      step.s = cache.shape_for(n);
      step.q = q;
      step.k = cache.keys();
      step.v = cache.values();
      const SdpaRun r = run(step, impl);
      const SdpaSide S(step, r);
      const int mism = d.mismatches();
      for (int b = 0; b < c.s.B; ++b)
        for (int h = 0; h < c.s.H; ++h)
          for (int i = 0; i < n; ++i) {
            const std::size_t rs = step.row(b, h, i), rf = c.row(b, h, t0 + i);
            for (int col = 0; col < c.s.dv; ++col) {
              const double a = r.out[rs * c.s.dv + col], f = full.out[rf * c.s.dv + col];
              const double cond = std::max(S.cond[rs * c.s.dv + col], F.cond[rf * c.s.dv + col]);
              d.values(a, f, check::rule(f, cond), [&] {
                return name + ": out" + at({b, h, t0 + i, col}) + " via the cache (a) vs the full causal forward (b)";
              });
            }
          }
      if (d.mismatches() > mism && steps.size() < 4)
        steps.push_back({{"schedule", name}, {"chunk_start", t0}, {"step", sdpa_json(step, r, impl)}});
      t0 += n;
    }
  }
  return check::outcome(d, "chunks of 1, 2, 3, L and prefill " + std::to_string(P) +
                               " + decode through a KV cache vs one causal forward",
                        [&] { return json{{"input", sdpa_json(c, full, impl)}, {"differing_steps", steps}}; });
}

// An independent evaluation in long double with the row maximum subtracted.
std::vector<double> sdpa_oracle(const SdpaCase& c) {
  std::vector<double> out(c.s.out_size(), 0.0);
  for (int b = 0; b < c.s.B; ++b)
    for (int h = 0; h < c.s.H; ++h)
      for (int i = 0; i < c.s.Tq; ++i) {
        const int n = visible_keys(c.s, c.m, b, i);
        if (n == 0) continue;
        std::vector<long double> s(n);
        for (int j = 0; j < n; ++j) {
          long double a = 0;
          for (int d = 0; d < c.s.dh; ++d)
            a += (long double)c.q[c.row(b, h, i) * c.s.dh + d] * c.k[c.kv_row(b, h, j) * c.s.dh + d];
          s[j] = a * c.scale;
        }
        const long double mx = *std::max_element(s.begin(), s.end());
        long double sum = 0;
        for (auto& x : s) sum += (x = std::exp(x - mx));
        for (int col = 0; col < c.s.dv; ++col) {
          long double o = 0;
          for (int j = 0; j < n; ++j) o += s[j] * c.v[c.kv_row(b, h, j) * c.s.dv + col];
          out[c.row(b, h, i) * c.s.dv + col] = double(o / sum);
        }
      }
  return out;
}

CaseOutcome sdpa_large_logit_stability(Impl impl) {
  // Integer q and k and a power-of-two scale make every logit exact in float32, so the
  // optimized kernel must match the reference as closely as for small logits (cond = 0).
  SdpaCase c;
  c.s.B = *inRange(1, 3);
  c.s.H = *inRange(1, 3);
  c.s.dh = *inRange(1, 9);
  c.s.dv = *inRange(1, 9);
  c.s.Tk = *inRange(1, 9);
  c.s.Tq = *inRange(1, 9);
  c.m.causal = *rc::gen::arbitrary<bool>();
  c.m.key_lengths = key_lengths(c.s.B, c.s.Tk);
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
        for (int d = 0; d < c.s.dh; ++d) {
          const std::size_t e = (std::size_t(bh) * c.s.Tk + j) * c.s.dh + d;
          c.k.push_back(float(common[d] + small[e]));
        }
    }
    how = "q integers in [-8, 8], keys = ±" + std::to_string(C) + " per feature + [-3, 3]";
  }
  c.v = values(c.s.v_size());
  double max_logit = 0;
  for (int b = 0; b < c.s.B; ++b)
    for (int h = 0; h < c.s.H; ++h)
      for (int i = 0; i < c.s.Tq; ++i) max_logit = std::max(max_logit, logit_bound(c, b, h, i));

  const SdpaRun r = run(c, impl);
  SdpaRun want;
  if (impl == Impl::optimized)
    want = run(c, Impl::reference);
  else
    want.out = sdpa_oracle(c);
  Diff d;
  for (std::size_t e = 0; e < r.out.size(); ++e) {
    const std::size_t row = e / c.s.dv;
    const int i = int(row % c.s.Tq), b = int(row / c.s.Tq / c.s.H), h = int(row / c.s.Tq % c.s.H);
    d.values(r.out[e], want.out[e], check::rule(want.out[e], 0), [&] {
      return "out" + at({b, h, i, int(e % c.s.dv)}) + " (a) vs " +
             (impl == Impl::optimized ? "the reference" : "a long double evaluation") + " (b)";
    });
  }
  return check::outcome(d, how + ", scale " + std::to_string(c.scale) + ", |logits| ≤ " +
                               std::to_string(max_logit),
                        [&] {
                          return json{{"input", sdpa_json(c, r, impl)},
                                      {"expected_out", check::nested(want.out, {c.s.B, c.s.H, c.s.Tq, c.s.dv})}};
                        });
}

CaseOutcome sdpa_reference_agreement(Impl) {
  SdpaCase c = draw_sdpa(Causal::maybe, Queries::any);
  // hard inputs: larger magnitudes (sharper softmax), poison in the padded keys and values
  const float mag = *rc::gen::element(1.0f, 4.0f, 16.0f);
  for (auto& x : c.q) x *= mag;
  const int poison = *rc::gen::element(0, 1, 2, 3);
  const float pv[] = {0.0f, kNaN, 1e30f, -std::numeric_limits<float>::infinity()};
  if (poison)
    for (int b = 0; b < c.s.B; ++b)
      for (int h = 0; h < c.s.H; ++h)
        for (int t = c.m.key_lengths[b]; t < c.s.Tk; ++t) {
          std::fill(c.k_at(b, h, t), c.k_at(b, h, t) + c.s.dh, pv[poison]);
          std::fill(c.v_at(b, h, t), c.v_at(b, h, t) + c.s.dv, pv[poison]);
        }
  const bool rough = *rc::gen::arbitrary<bool>();
  if (rough) {
    roughen(c.q, 1);
    roughen(c.k, 2);
    roughen(c.v, 3);
  }
  const SdpaRun opt = run(c, Impl::optimized, true), ref = run(c, Impl::reference, true);
  const SdpaSide A(c, opt), B(c, ref);
  Diff d;
  for (int b = 0; b < c.s.B; ++b)
    for (int h = 0; h < c.s.H; ++h)
      for (int i = 0; i < c.s.Tq; ++i) {
        compare_rows(d, A, b, h, i, B, b, h, i);
        const double L = logit_bound(c, b, h, i);
        for (int j = 0; j < c.s.Tk; ++j) {
          const std::size_t e = c.row(b, h, i) * c.s.Tk + j;
          d.values(opt.weights[e], ref.weights[e], check::rule(ref.weights[e], L),
                   [&] { return "weight" + at({b, h, i, j}); });
        }
      }
  return check::outcome(d, "optimized (a) vs reference (b); queries ×" + std::to_string(mag) +
                               (rough ? ", values off the dyadic grid" : "") +
                               (poison ? ", padded keys/values poisoned" : ""),
                        [&] { return sdpa_pair_json(c, opt, c, ref, Impl::optimized, Impl::reference); });
}

CaseOutcome sdpa_thread_determinism(Impl) {
  SdpaCase c;
  if (*rc::gen::arbitrary<bool>()) {  // large enough for the kernel's parallel path
    c.s.B = *inRange(1, 4);
    c.s.H = *inRange(2, 5);
    c.s.Tq = *inRange(32, 49);
    c.s.Tk = *inRange(32, 49);
    c.s.dh = *inRange(4, 9);
    c.s.dv = *inRange(4, 9);
    c.m.causal = *rc::gen::arbitrary<bool>();
    c.m.key_lengths = key_lengths(c.s.B, c.s.Tk);
    c.scale = draw_scale(c.s.dh);
    c.q = values(c.s.q_size());
    c.k = values(c.s.k_size());
    c.v = values(c.s.v_size());
  } else {
    c = draw_sdpa(Causal::maybe, Queries::any);
  }
  const int threads = *rc::gen::element(1, 2, 3, 4);
  return check::thread_determinism(
      threads, [&] { return run(c, Impl::optimized, true); },
      [&](const SdpaRun& one, const SdpaRun& many) {
        return sdpa_pair_json(c, one, c, many, Impl::optimized, Impl::optimized);
      });
}

}  // namespace

std::map<std::string, CheckFn> sdpa_checks() {
  return {
      {"row_stochastic", sdpa_row_stochastic},
      {"causality", sdpa_causality},
      {"key_padding_invariance", sdpa_key_padding_invariance},
      {"kv_permutation_invariance", sdpa_kv_permutation_invariance},
      {"query_permutation_equivariance", sdpa_query_permutation_equivariance},
      {"batch_independence", sdpa_batch_independence},
      {"logit_shift_invariance", sdpa_logit_shift_invariance},
      {"value_affine_equivariance", sdpa_value_affine_equivariance},
      {"kv_cache_equivalence", sdpa_kv_cache_equivalence},
      {"large_logit_stability", sdpa_large_logit_stability},
      {"reference_agreement", sdpa_reference_agreement},
      {"thread_determinism", sdpa_thread_determinism},
  };
}

}  // namespace normcheck::attn
