// The attention rows of the matrix: `sdpa` (bare scaled dot-product attention over [B, H, T, d])
// and `mha` (multi-head attention, PyTorch layout). Each property draws one case with
// RapidCheck, builds the related input, runs the cell's implementation and compares.
//
// Tolerance (the rule of PROPERTIES.md, |a − b| ≤ 1e-5 + 2e-6·cond + 1e-5·|b|) with the
// attention's own conditioning in place of |mean|/std. u = 2^-24 and 2e-6 ≈ 33u.
//   sdpa  cond = 2·L·Σ_j w_j·|v_jc − o_ic|, per output element (b, h, i, c), j over the visible
//         keys, w the exact weights. L = scale·max_j Σ_d |q_id|·|k_jd| bounds the logits, so
//         float32 logits are off by at most δ = (dh + 2)·u·L (a dh-term dot product and the
//         scaling). To first order o_c moves by Σ_j w_j·(v_jc − o_c)·(δs_j − Σ_k w_k·δs_k),
//         at most 2δ·Σ_j w_j·|v_jc − o_c| = (dh + 2)·u·cond < 2e-6·cond for dh ≤ 31. exp, the
//         normalization and the value sums stay within 1e-5 + 1e-5·|b|.
//   mha   cond = Σ_c |W_o[e,c]|·(k_s·2·L̂·Σ_j w_j·|v_jc − o_c| + k_v·(Σ_j w_j·v̂_jc + |o_c|)),
//         the same through the projections: L̂ bounds the logits by the magnitudes the float32
//         projections round relative to (q̂ = Σ|W_q||x| + |b_q|, likewise k̂, v̂), whose
//         (E + 1)·u relative errors add 2(E + 1)·u·L̂ to the logits' error; the values carry
//         (E + 1)·u·v̂ and the out-projection (E + 1)·u·|o|, all taken to y through |W_o|.
//         k_s = (dh + 2E + 4)/32 and k_v = (E + 1)/32 turn those counts of u into 2e-6·cond.
// The comparisons of two runs of one implementation use the same rule and cond (the larger of
// the two sides'). Where a case makes every logit exact in float32 (large_logit_stability of
// sdpa: integer q and k, power-of-two scale) cond is 0: the plain single-layer bound.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include <rapidcheck.h>

#include "attention/cells.hpp"
#include "attention/check.hpp"
#include "attention/mha.hpp"
#include "properties/generators.hpp"

namespace normcheck {
namespace {

using check::Diff;
using nlohmann::json;
using rc::gen::inRange;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// ---------------------------------------------------------------------------------------------
// generators: values on exact float grids, drawn from integers that shrink towards 0

rc::Gen<int> centered(int m) {
  return rc::gen::map(inRange(0, 2 * m + 1), [](int k) { return k % 2 ? (k + 1) / 2 : -(k / 2); });
}

std::vector<int> ints(std::size_t n, int m) {
  return *rc::gen::container<std::vector<int>>(n, centered(m));
}

// n values k/16 in [-4, 4]
std::vector<float> values(std::size_t n) {
  std::vector<float> v;
  v.reserve(n);
  for (int k : ints(n, 64)) v.push_back(float(k) / 16.0f);
  return v;
}

// Pushes values off the dyadic grids (each times 1 + 0.37·sin(i)), so that float32 rounds
// at every step as it does on real activations: reference_agreement draws these half the time.
void roughen(std::vector<float>& v, int salt) {
  for (std::size_t i = 0; i < v.size(); ++i) v[i] *= float(1.0 + 0.37 * std::sin(double(i) + salt));
}

std::vector<int> permutation(int n) {
  std::vector<int> p(n);
  std::iota(p.begin(), p.end(), 0);
  for (int i = 0; i + 1 < n; ++i) std::swap(p[i], p[*inRange(i, n)]);
  return p;
}

std::vector<int> key_lengths(int B, int Tk) {
  std::vector<int> l(B);
  for (auto& x : l)
    x = *rc::gen::weightedOneOf<int>(
        {{1, rc::gen::just(0)}, {2, rc::gen::just(Tk)}, {5, inRange(1, Tk + 1)}});
  return l;
}

enum class Causal { never, maybe, always };
enum class Queries { any, self, at_most_keys };

bool draw_causal(Causal c) {
  return c == Causal::always || (c == Causal::maybe && *rc::gen::arbitrary<bool>());
}

std::string at(std::initializer_list<int> idx) {
  std::string s = "[";
  for (int i : idx) {
    if (s.size() > 1) s += ',';
    s += std::to_string(i);
  }
  return s + "]";
}

std::string list(const std::vector<int>& v) {
  std::string s = "[";
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

template <class T>
std::vector<double> widen(const std::vector<T>& v) {
  return {v.begin(), v.end()};
}

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
    sdpa_optimized(out, want_weights ? &w : nullptr, c.q, c.k, c.v, c.s, c.m, c.scale);
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

// Chunk schedules of a sequence of L tokens: chunks of 1, 2, 3 and L, and a prefill of P
// tokens followed by single-token decoding.
std::vector<std::pair<std::string, std::vector<int>>> schedules(int L, int P) {
  std::vector<std::pair<std::string, std::vector<int>>> all;
  for (int size : {1, 2, 3, L}) {
    std::vector<int> s;
    for (int t = 0; t < L; t += size) s.push_back(std::min(size, L - t));
    all.push_back({"chunks of " + std::to_string(size), s});
  }
  std::vector<int> s = {P};
  for (int t = P; t < L; ++t) s.push_back(1);
  all.push_back({"prefill " + std::to_string(P) + " + decode", s});
  return all;
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
  SdpaRun one, many;
  {
    check::ThreadScope scope(1);
    one = run(c, Impl::optimized, true);
  }
  {
    check::ThreadScope scope(threads);
    many = run(c, Impl::optimized, true);
  }
  Diff d;
  for (std::size_t e = 0; e < one.out.size(); ++e)
    d.bitwise(one.out[e], many.out[e], [&] { return "out element " + std::to_string(e); });
  for (std::size_t e = 0; e < one.weights.size(); ++e)
    d.bitwise(one.weights[e], many.weights[e], [&] { return "weight element " + std::to_string(e); });
  return check::outcome(d, "1 thread (a) vs " + std::to_string(threads) + " threads (b)", [&] {
    return sdpa_pair_json(c, one, c, many, Impl::optimized, Impl::optimized);
  });
}

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
  MhaRun one, many;
  {
    check::ThreadScope scope(1);
    one = run(c, Impl::optimized, true);
  }
  {
    check::ThreadScope scope(threads);
    many = run(c, Impl::optimized, true);
  }
  Diff d;
  for (std::size_t e = 0; e < one.out.size(); ++e)
    d.bitwise(one.out[e], many.out[e], [&] { return "y element " + std::to_string(e); });
  for (std::size_t e = 0; e < one.weights.size(); ++e)
    d.bitwise(one.weights[e], many.weights[e], [&] { return "weight element " + std::to_string(e); });
  return check::outcome(d, "1 thread (a) vs " + std::to_string(threads) + " threads (b)", [&] {
    return mha_pair_json(c, one, c, many, Impl::optimized, Impl::optimized);
  });
}

// ---------------------------------------------------------------------------------------------
// the registry of attention properties

struct AttentionProperty {
  PropertyInfo column;   // the matrix column (shared with a norm property when ids match)
  PropertyInfo info;     // what the property means for attention
  bool optimized_only = false;
  CaseOutcome (*sdpa)(Impl);
  CaseOutcome (*mha)(Impl);
};

const std::vector<AttentionProperty>& attention_registry() {
  static const std::vector<AttentionProperty> all = [] {
    std::vector<AttentionProperty> p;
    auto add = [&](PropertyInfo info, bool opt_only, CaseOutcome (*s)(Impl), CaseOutcome (*m)(Impl)) {
      p.push_back({info, info, opt_only, s, m});
    };
    add({"row_stochastic", "row_stoch",
         "attention weights are ≥ 0, sum to 1 over the visible keys, are 0 at masked keys; a fully masked row is all zeros",
         "sdpa: V = identity (the output is the weight matrix); mha: the per-head weights it exposes",
         "every weight row", "attention is a convex combination of the visible values"},
        false, sdpa_row_stochastic, mha_row_stochastic);
    add({"causality", "causality", "outputs at query positions ≤ s do not depend on tokens after s",
         "queries after s and keys/values after s's absolute position (bottom-right) replaced",
         "outputs of queries ≤ s", "no look-ahead: required for autoregressive training"},
        false, sdpa_causality, mha_causality);
    add({"key_padding_invariance", "key_pad",
         "poison in padded keys and values and extra padding do not change valid outputs",
         "extra padding appended; padded keys/values (and queries) set to NaN, 1e30, or V = 1000",
         "outputs of valid queries", "the key-padding mask really removes padding"},
        false, sdpa_key_padding_invariance, mha_key_padding_invariance);
    add({"kv_permutation_invariance", "kv_perm",
         "permuting the visible keys together with their values does not change the output (non-causal)",
         "visible key/value rows of each sequence permuted", "every output",
         "attention is a set operation over its keys"},
        false, sdpa_kv_permutation_invariance, mha_kv_permutation_invariance);
    add({"query_permutation_equivariance", "q_perm",
         "permuting the queries permutes the outputs alike (non-causal)", "queries permuted",
         "outputs permuted alike", "queries are independent"},
        false, sdpa_query_permutation_equivariance, mha_query_permutation_equivariance);
    add({"batch_independence", "batch_ind",
         "a sequence's attention output does not depend on the other sequences of its batch",
         "sequence b placed at any index of a batch of 1 to 4 with fresh neighbours",
         "b's outputs", "a sample's result must not depend on its neighbours"},
        false, sdpa_batch_independence, mha_batch_independence);
    add({"logit_shift_invariance", "logit_shift",
         "adding the same vector to every key (a per-query constant added to its logits) does not change the output",
         "every key plus one vector c (mha: the key bias plus c)", "every output",
         "softmax is shift invariant: the kernel subtracts a maximum, never an absolute reference"},
        false, sdpa_logit_shift_invariance, mha_logit_shift_invariance);
    add({"value_affine_equivariance", "v_affine",
         "v → a·v + b gives a·out + b for every query that sees a key",
         "values mapped v → a·v + b (mha: W_v, b_v changed accordingly)",
         "outputs vs a·out + b (mha: through out_proj)", "weights sum to exactly one convex combination"},
        false, sdpa_value_affine_equivariance, mha_value_affine_equivariance);
    add({"kv_cache_equivalence", "kv_cache",
         "prefill + decode and chunked prefill (chunks 1, 2, 3, L) through a KV cache equal one full causal forward",
         "the sequence fed through a KV cache in chunks", "every output",
         "incremental decoding computes what training computed (bottom-right causal alignment)"},
        false, sdpa_kv_cache_equivalence, mha_kv_cache_equivalence);
    add({"large_logit_stability", "big_logits",
         "logits up to ±1e4 give finite outputs that match the reference",
         "q, k with logits up to ±1e4 (sdpa: exact in float32)",
         "every output vs the reference (optimized) or a long double evaluation (reference)",
         "the softmax subtracts the row maximum: no overflow"},
        false, sdpa_large_logit_stability, mha_large_logit_stability);
    add({"reference_agreement", "ref_agree",
         "the optimized kernel agrees with the reference within the tolerance rule (attention cond)",
         "the same input through the double-precision reference (sharper logits, poisoned padding)",
         "every output and every attention weight", "the fast kernel computes the same function"},
        true, sdpa_reference_agreement, mha_reference_agreement);
    add({"thread_determinism", "threads",
         "the optimized output is bitwise the same for 1, 2, 3 and 4 OpenMP threads",
         "the same input with another thread count (large cases reach the parallel path)",
         "every output and weight, bitwise", "results never depend on the machine's parallelism"},
        true, sdpa_thread_determinism, mha_thread_determinism);
    return p;
  }();
  return all;
}

}  // namespace

std::vector<PropertyInfo> attention_properties() {
  std::vector<PropertyInfo> out;
  for (const auto& p : attention_registry()) out.push_back(p.column);
  return out;
}

std::vector<Cell> attention_cells() {
  std::vector<Cell> cells;
  for (const char* row : {"sdpa", "mha"})
    for (Impl impl : {Impl::reference, Impl::optimized})
      for (const auto& p : attention_registry()) {
        Cell c;
        c.row_id = row;
        c.row_name = row;
        c.layer = row;
        c.impl = impl;
        c.prop = p.info;
        c.expected = p.optimized_only && impl == Impl::reference ? Expect::not_applicable
                                                                 : Expect::holds;
        auto fn = std::string(row) == "sdpa" ? p.sdpa : p.mha;
        c.check_case = [fn, impl] { return fn(impl); };
        cells.push_back(std::move(c));
      }
  return cells;
}

}  // namespace normcheck
