#include "attention/registry.hpp"
#include "attention/sdpa.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include <Eigen/Dense>

namespace normcheck {

double default_scale(int dh) { return 1.0 / std::sqrt(double(dh)); }

int visible_keys(const SdpaShape& s, const SdpaMask& m, int b, int i) {
  int end = m.key_lengths.empty() ? s.Tk : m.key_lengths[b];
  if (m.causal) end = std::min(end, s.Tk - s.Tq + i + 1);
  return std::max(end, 0);
}

namespace {

std::string str(std::size_t v) { return std::to_string(v); }

void check_size(const char* name, std::size_t got, std::size_t want, const char* formula) {
  if (got != want)
    throw InvalidInput(std::string(name) + " has " + str(got) + " values, expected " + formula +
                       " = " + str(want));
}

}  // namespace

void validate_sdpa(const SdpaShape& s, const SdpaMask& m, double scale, std::size_t q_size,
                   std::size_t k_size, std::size_t v_size) {
  const std::pair<const char*, int> dims[] = {{"B", s.B},   {"H", s.H},   {"Tq", s.Tq},
                                              {"Tk", s.Tk}, {"dh", s.dh}, {"dv", s.dv}};
  for (const auto& [name, v] : dims)
    if (v <= 0) throw InvalidInput(std::string("attention shape: ") + name + " = " +
                                   std::to_string(v) + " must be positive");
  if (s.kv_capacity != 0 && s.kv_capacity < s.Tk)
    throw InvalidInput("attention shape: kv_capacity = " + std::to_string(s.kv_capacity) +
                       " is smaller than Tk = " + std::to_string(s.Tk));
  if (!(scale > 0) || !std::isfinite(scale))
    throw InvalidInput("attention scale must be positive and finite, got " + std::to_string(scale));
  if (!m.key_lengths.empty()) {
    if (m.key_lengths.size() != std::size_t(s.B))
      throw InvalidInput("key lengths has " + str(m.key_lengths.size()) + " entries, expected B = " +
                         std::to_string(s.B));
    for (int b = 0; b < s.B; ++b)
      if (m.key_lengths[b] < 0 || m.key_lengths[b] > s.Tk)
        throw InvalidInput("lengths[" + std::to_string(b) + "] = " +
                           std::to_string(m.key_lengths[b]) + " is outside [0, Tk = " +
                           std::to_string(s.Tk) + "]");
  }
  check_size("q", q_size, s.q_size(), "B*H*Tq*dh");
  check_size("k", k_size, s.k_size(), "B*H*kv_rows*dh");
  check_size("v", v_size, s.v_size(), "B*H*kv_rows*dv");
}

// ---------------------------------------------------------------------------------------------
// reference: double, scores materialized per (b, h), softmax over the visible prefix only

template <class T>
void sdpa_reference(std::vector<double>& out, std::vector<double>* weights,
                    const std::vector<T>& q, const std::vector<T>& k, const std::vector<T>& v,
                    const SdpaShape& s, const SdpaMask& m, double scale) {
  validate_sdpa(s, m, scale, q.size(), k.size(), v.size());
  using Src = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using Mat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  out.assign(s.out_size(), 0.0);
  if (weights) weights->assign(s.weights_size(), 0.0);
  for (int b = 0; b < s.B; ++b)
    for (int h = 0; h < s.H; ++h) {
      const std::size_t bh = std::size_t(b) * s.H + h;
      Eigen::Map<const Src> Q(q.data() + bh * s.Tq * s.dh, s.Tq, s.dh);          // [Tq, dh]
      Eigen::Map<const Src> K(k.data() + bh * s.kv_rows() * s.dh, s.Tk, s.dh);   // [Tk, dh]
      Eigen::Map<const Src> V(v.data() + bh * s.kv_rows() * s.dv, s.Tk, s.dv);   // [Tk, dv]
      // [Tq, Tk]; columns of masked keys may hold anything (NaN poison): never read below
      const Mat S = scale * (Q.template cast<double>() * K.template cast<double>().transpose());
      for (int i = 0; i < s.Tq; ++i) {
        const int n = visible_keys(s, m, b, i);
        if (n == 0) continue;  // fully masked: zeros
        const double mx = S.row(i).head(n).maxCoeff();
        Eigen::RowVectorXd p = (S.row(i).head(n).array() - mx).exp().matrix();
        p /= p.sum();
        Eigen::Map<Eigen::RowVectorXd> o(out.data() + (bh * s.Tq + i) * s.dv, s.dv);
        o = p * V.topRows(n).template cast<double>();
        if (weights)
          Eigen::Map<Eigen::RowVectorXd>(weights->data() + (bh * s.Tq + i) * s.Tk, n) = p;
      }
    }
}

template void sdpa_reference<float>(std::vector<double>&, std::vector<double>*,
                                    const std::vector<float>&, const std::vector<float>&,
                                    const std::vector<float>&, const SdpaShape&, const SdpaMask&,
                                    double);
template void sdpa_reference<double>(std::vector<double>&, std::vector<double>*,
                                     const std::vector<double>&, const std::vector<double>&,
                                     const std::vector<double>&, const SdpaShape&,
                                     const SdpaMask&, double);

// ---------------------------------------------------------------------------------------------
// optimized: float32, tiled, register-blocked, online softmax
//
// Every value below is computed by a sequence of IEEE float operations fixed by the shapes and
// by the row's own visible-key count, never by which rows share a tile or which thread runs it:
//   score(i, j)  d-lane l of an 8-lane accumulator sums q[d]·k[d] over d ≡ l (mod 8) in d order;
//                the lanes fold by ((0+4)+(1+5))+((2+6)+(3+7)), then, if dh mod 8 ≠ 0, + the
//                scalar tail (d ≥ dh − dh mod 8, in d order), then × scale. A block of up to 8
//                scores (4 rows × 4 or × 2 keys in a prefill, 1 row × 8 keys for a lone row
//                or a decode query) folds its 8 accumulators together by a transpose whose
//                every lane performs exactly that tree, so the block shape does not matter.
//   key tiles    [j0, j0 + kSdpaKeyTile) with j0 = 0, 32, 64, … for every row (absolute key
//                positions): a decode query and the same position inside a prefill see the
//                same tiles, and a row sees the first n = min(32, visible − j0) keys of a tile.
//   row (per tile)  tile max over its n keys (lane max, then a fixed shuffle tree); new max =
//                max(old, tile max); correction = exp(old − new), or exactly 1 without calling
//                exp when old == new (exp(0) is exactly 1, so this is the same value);
//                p_j = exp(s_j − new) (0 past n); tile sum = 8 lanes (lane = j mod 8) summed
//                over the tile's 4 groups in order, folded by the tree; sum = sum·correction +
//                tile sum; acc = acc·correction (skipped when it is 1: x·1 = x), then
//                acc_c += p_j·v_jc for the row's n keys in increasing j.
//   output       acc_c · (1/sum); weights (when asked) recompute score(i, j) the same way and
//                give exp(s_j − final max) · (1/sum).
//   exp          exp8 below: Cephes expf's polynomial after a Cody–Waite reduction, lane-wise
//                (a scalar is one lane of the same code).
// Register blocking only interleaves independent elements (4 rows × 4 or 2 keys of scores;
// 4 rows × 32 or 16 columns of acc kept in registers across the keys all 4 rows see, then each
// row's own remaining keys); each element still sees the operations listed above in the same
// order. The tile is compiled for AVX-512VL (32 registers: the larger blocks), AVX2 and the
// x86-64 baseline (see attention_tile_avx512 below); GCC vector extensions lower to ymm
// operations or SSE pairs, the same IEEE operations, so the same bits (no path enables FMA,
// and the file is compiled with -ffp-contract=off). Test: SdpaPaths.EveryCompiledPathGivesTheSameBits.
// Broadcasts: inside these target() functions GCC 12 lowers a v8f{x, …, x} initializer to a
// chain of inserts, so splat goes through lane 0 + shuffle, and p·v uses a memory-operand
// vbroadcastss on the AVX paths (splat_at); both are data movement only. Scores keep d along
// the lanes: keys along the lanes (K tile packed transposed) was measured and dropped — no gain
// for prefill with 8-row query tiles, and a lone decode row, which must use the same order,
// paid the whole transpose (2–3.5× slower). bench/ANALYSIS.md, attention section.

#pragma GCC diagnostic ignored "-Wpsabi"  // v8f is only passed between always-inline functions
// (GCC reports it at the end of the file, for the clones' dispatcher: the push is never popped)

namespace {

typedef float v8f __attribute__((vector_size(32)));
typedef int v8i __attribute__((vector_size(32)));

#define NC_INLINE inline __attribute__((always_inline))

// Below this many multiply-adds a call runs on the calling thread (results are the same).
constexpr double kParallelMinWork = 1 << 14;
constexpr int kQT = kSdpaQueryTile, kKT = kSdpaKeyTile;
static_assert(kKT % 8 == 0, "the key tile is whole 8-lane groups");
constexpr float kInf = std::numeric_limits<float>::infinity();

NC_INLINE v8f load8(const float* p) {
  v8f r;
  std::memcpy(&r, p, sizeof r);
  return r;
}
NC_INLINE void store8(float* p, v8f x) { std::memcpy(p, &x, sizeof x); }
// Broadcast through lane 0 and a shuffle. Inside the `target` functions below, GCC 12 builds
// v8f{x, …, x} as a chain of 7 vinsertps (+ vinsertf128) per broadcast (seen in the AVX-512VL
// p·v and score loops: ~7 shuffle uops next to every 8 multiply-adds); this form gives one
// vbroadcastss, from memory when x was just loaded. Data movement only: the same bits.
NC_INLINE v8f splat(float x) {
  v8f t = {};
  std::memcpy(&t, &x, sizeof x);
  return __builtin_shuffle(t, v8i{});
}
// *p on every lane for the p·v loops. AVX paths: a memory-operand vbroadcastss (a load-port
// uop; GCC 12 loads the scalar and broadcasts it register to register, a shuffle-pipe uop next
// to every 8 multiply-adds). The inline asm is only instantiated for the AVX paths (the
// baseline path gets splat); it is data movement, so the bits are the same.
template <bool AVX>
NC_INLINE v8f splat_at(const float* p) {
  if constexpr (AVX) {
    v8f r;
    asm("vbroadcastss %1, %0" : "=v"(r) : "m"(*p));
    return r;
  } else {
    return splat(*p);
  }
}
NC_INLINE v8f iota8() { return v8f{0, 1, 2, 3, 4, 5, 6, 7}; }
NC_INLINE v8f as_float(v8i x) {
  v8f r;
  std::memcpy(&r, &x, sizeof r);
  return r;
}
NC_INLINE v8i as_int(v8f x) {
  v8i r;
  std::memcpy(&r, &x, sizeof r);
  return r;
}

// exp, lane-wise: n = round(x·log2 e) (by adding 1.5·2²³), r = x − n·C1 − n·C2 (C1 + C2 = ln 2,
// n·C1 exact), e^r by Cephes expf's degree-7 polynomial, times 2^⌊n/2⌋ (exact) times 2^(n−⌊n/2⌋)
// (one rounding, so results down in the subnormals are rounded once). x is clamped to
// [−104, 89] first: below, e^x rounds to 0; above, the scaling overflows to +inf. NaN stays NaN.
NC_INLINE v8f exp8(v8f x) {
  const v8f lo = splat(-104.0f), hi = splat(89.0f);
  v8f xc = x < lo ? lo : x;
  xc = xc > hi ? hi : xc;
  const v8f magic = splat(12582912.0f);  // 1.5·2²³: adding it rounds to an integer
  const v8f t = xc * splat(1.44269504088896341f) + magic;
  const v8f n = t - magic;
  const v8i ni = as_int(t) - as_int(magic);
  v8f r = xc - n * splat(0.693359375f);
  r = r - n * splat(-2.12194440e-4f);
  const v8f z = r * r;
  v8f y = splat(1.9875691500e-4f);
  y = y * r + splat(1.3981999507e-3f);
  y = y * r + splat(8.3334519073e-3f);
  y = y * r + splat(4.1665795894e-2f);
  y = y * r + splat(1.6666665459e-1f);
  y = y * r + splat(5.0000001201e-1f);
  y = (y * z + r) + splat(1.0f);
  const v8i n1 = ni >> 1, n2 = ni - n1;
  y = y * as_float((n1 + 127) << 23);
  y = y * as_float((n2 + 127) << 23);
  return x == x ? y : x;
}

NC_INLINE float exp1(float x) { return exp8(splat(x))[0]; }

NC_INLINE v8f vmax(v8f a, v8f b) { return b > a ? b : a; }
NC_INLINE float hmax(v8f a) {  // a fixed tree (max of non-NaN values does not depend on it)
  a = vmax(a, __builtin_shuffle(a, v8i{4, 5, 6, 7, 0, 1, 2, 3}));
  a = vmax(a, __builtin_shuffle(a, v8i{2, 3, 0, 1, 6, 7, 4, 5}));
  a = vmax(a, __builtin_shuffle(a, v8i{1, 0, 3, 2, 5, 4, 7, 6}));
  return a[0];
}
// ((a0+a4)+(a1+a5))+((a2+a6)+(a3+a7))
NC_INLINE float fold(v8f a) {
  return ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));
}

// fold of 8 accumulators at once: lane t of the result is fold(a[t]), by the same tree.
NC_INLINE v8f hadd(v8f a, v8f b) {
  return __builtin_shuffle(a, b, v8i{0, 2, 8, 10, 4, 6, 12, 14}) +
         __builtin_shuffle(a, b, v8i{1, 3, 9, 11, 5, 7, 13, 15});
}
NC_INLINE v8f fold8(const v8f* a) {
  v8f t[4];
  for (int k = 0; k < 4; ++k)  // [a0+a4, a1+a5, a2+a6, a3+a7] of a[2k] | of a[2k+1]
    t[k] = __builtin_shuffle(a[2 * k], a[2 * k + 1], v8i{0, 1, 2, 3, 8, 9, 10, 11}) +
           __builtin_shuffle(a[2 * k], a[2 * k + 1], v8i{4, 5, 6, 7, 12, 13, 14, 15});
  const v8f f = hadd(hadd(t[0], t[1]), hadd(t[2], t[3]));  // a0 a2 a4 a6 | a1 a3 a5 a7
  return __builtin_shuffle(f, v8i{0, 4, 1, 5, 2, 6, 3, 7});
}

// Scores of R rows (q, row stride dh) × J consecutive keys (k, row stride dh), R·J ≤ 16, into
// S[r·kKT + jj]: see the top of this section for the order of operations. Each group of 8
// accumulators folds together (fold8).
template <int R, int J>
NC_INLINE void score_block(float* S, const float* q, const float* k, int dh, float scale) {
  constexpr int G = (R * J + 7) / 8;
  static_assert(R * J <= 16);
  v8f a[8 * G] = {};
  int d = 0;
  if constexpr (R == 1) {  // key after key: one sequential stream through K (decode reads K
                           // from memory; 8 interleaved row streams defeat the prefetcher)
    const int dh8 = dh & ~7;
    for (int jj = 0; jj < J; ++jj)
      for (int e = 0; e < dh8; e += 8) a[jj] += load8(q + e) * load8(k + std::size_t(jj) * dh + e);
    d = dh8;
  }
  for (; d + 8 <= dh; d += 8) {
    v8f kv[J];
    for (int jj = 0; jj < J; ++jj) kv[jj] = load8(k + std::size_t(jj) * dh + d);
    for (int r = 0; r < R; ++r) {
      const v8f qv = load8(q + std::size_t(r) * dh + d);
      for (int jj = 0; jj < J; ++jj) a[r * J + jj] += qv * kv[jj];
    }
  }
  v8f f8[G];
  for (int g = 0; g < G; ++g) f8[g] = fold8(a + 8 * g);
  if (d < dh) {
    float tail[8 * G] = {};
    for (; d < dh; ++d)
      for (int r = 0; r < R; ++r)
        for (int jj = 0; jj < J; ++jj)
          tail[r * J + jj] += q[std::size_t(r) * dh + d] * k[std::size_t(jj) * dh + d];
    for (int g = 0; g < G; ++g) f8[g] += load8(tail + 8 * g);
  }
  float f[8 * G];
  for (int g = 0; g < G; ++g) store8(f + 8 * g, f8[g] * scale);
  for (int r = 0; r < R; ++r) std::memcpy(S + r * kKT, f + r * J, sizeof(float) * J);
}

// Scores of R rows against keys [0, n) of a key tile.
template <int R, int J>
NC_INLINE void score_rows(float* S, const float* q, const float* k, int dh, float scale, int n) {
  int j = 0;
  for (; j + J <= n; j += J) score_block<R, J>(S + j, q, k + std::size_t(j) * dh, dh, scale);
  for (; j < n; ++j) score_block<R, 1>(S + j, q, k + std::size_t(j) * dh, dh, scale);
}

// acc[r][c..c+8C) += P[r][jj]·v[jj][c..] for jj in [j_begin, j_end), in jj order, R rows
// (acc row stride dv, P row stride kKT), kept in registers across the keys.
template <bool AVX, int R, int C>
NC_INLINE void pv_block(float* acc, const float* P, const float* v, int dv, int c, int j_begin,
                        int j_end) {
  v8f a[R][C];
  for (int r = 0; r < R; ++r)
    for (int u = 0; u < C; ++u) a[r][u] = load8(acc + std::size_t(r) * dv + c + 8 * u);
  for (int jj = j_begin; jj < j_end; ++jj) {
    v8f vv[C];
    for (int u = 0; u < C; ++u) vv[u] = load8(v + std::size_t(jj) * dv + c + 8 * u);
    for (int r = 0; r < R; ++r) {
      const v8f p = splat_at<AVX>(P + r * kKT + jj);
      for (int u = 0; u < C; ++u) a[r][u] += p * vv[u];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int u = 0; u < C; ++u) store8(acc + std::size_t(r) * dv + c + 8 * u, a[r][u]);
}

// One row's acc over keys [j_begin, j_end) of the tile, every column.
template <bool AVX>
NC_INLINE void pv_row(float* acc, const float* P, const float* v, int dv, int j_begin, int j_end) {
  if (j_begin >= j_end) return;
  const int dv8 = dv & ~7;
  int c = 0;
  for (; c + 64 <= dv8; c += 64) pv_block<AVX, 1, 8>(acc, P, v, dv, c, j_begin, j_end);
  for (; c + 16 <= dv8; c += 16) pv_block<AVX, 1, 2>(acc, P, v, dv, c, j_begin, j_end);
  for (; c < dv8; c += 8) pv_block<AVX, 1, 1>(acc, P, v, dv, c, j_begin, j_end);
  for (; c < dv; ++c)
    for (int jj = j_begin; jj < j_end; ++jj) acc[c] += P[jj] * v[std::size_t(jj) * dv + c];
}

// The online-softmax step of one row over a key tile whose first n scores it sees: turns the
// scores S[0, kKT) into p (0 past n) in place and updates max, sum; returns the correction
// exp(old max − new max). When the max did not change that is exp(0) = 1 exactly, so it is
// not evaluated (and the caller skips acc·1: the same bits).
NC_INLINE float softmax_step(float* S, int n, float& mx, float& sum) {
  v8f m8 = load8(S);
  if (n == kKT) {
    for (int g = 8; g < kKT; g += 8) m8 = vmax(m8, load8(S + g));
  } else {
    m8 = iota8() < float(n) ? m8 : splat(-kInf);
    for (int g = 8; g < kKT; g += 8)
      m8 = vmax(m8, iota8() + float(g) < float(n) ? load8(S + g) : splat(-kInf));
  }
  const float new_max = std::max(mx, hmax(m8));
  const float shift = mx - new_max;
  const float correction = shift == 0.0f ? 1.0f : exp1(shift);  // 0 on the first tile
  v8f s8;
  if (n == kKT) {
    s8 = exp8(load8(S) - new_max);
    store8(S, s8);
    for (int g = 8; g < kKT; g += 8) {
      const v8f p = exp8(load8(S + g) - new_max);
      store8(S + g, p);
      s8 += p;
    }
  } else {
    s8 = v8f{};
    for (int g = 0; g < kKT; g += 8) {
      const v8f e = exp8(load8(S + g) - new_max);
      const v8f p = iota8() + float(g) < float(n) ? e : v8f{};
      store8(S + g, p);
      s8 += p;
    }
  }
  sum = sum * correction + fold(s8);
  mx = new_max;
  return correction;
}

// softmax_step of R rows that each see the whole key tile, interleaved so that the rows'
// dependency chains (max → exp → sum) overlap; every row's operations are those above.
template <int R>
NC_INLINE void softmax_full_rows(float* S, float* mx, float* sum, float* correction) {
  v8f m8[R], s8[R];
  for (int r = 0; r < R; ++r) m8[r] = load8(S + r * kKT);
  for (int g = 8; g < kKT; g += 8)
    for (int r = 0; r < R; ++r) m8[r] = vmax(m8[r], load8(S + r * kKT + g));
  float new_max[R];
  v8f shift = {};
  for (int r = 0; r < R; ++r) {
    new_max[r] = std::max(mx[r], hmax(m8[r]));
    shift[r] = mx[r] - new_max[r];
  }
  const v8f c8 = exp8(shift);
  for (int r = 0; r < R; ++r) correction[r] = shift[r] == 0.0f ? 1.0f : c8[r];
  for (int r = 0; r < R; ++r) {
    s8[r] = exp8(load8(S + r * kKT) - new_max[r]);
    store8(S + r * kKT, s8[r]);
  }
  for (int g = 8; g < kKT; g += 8)
    for (int r = 0; r < R; ++r) {
      const v8f p = exp8(load8(S + r * kKT + g) - new_max[r]);
      store8(S + r * kKT + g, p);
      s8[r] += p;
    }
  for (int r = 0; r < R; ++r) {
    sum[r] = sum[r] * correction[r] + fold(s8[r]);
    mx[r] = new_max[r];
  }
}

// One tile of up to kSdpaQueryTile query rows of one (b, h). acc: [kSdpaQueryTile, dv] scratch.
// SJ: keys per 4-row score block; PC: 8-column vectors per 4-row p·v block (the register
// budget of the ISA; neither changes any element's operations).
template <bool AVX, int SJ, int PC>
NC_INLINE void tile_impl(float* out, float* weights, const float* q, const float* k,
                         const float* v, const SdpaShape& s, const SdpaMask& m, float scale,
                         int b, int h, int i0, float* acc) {
  const std::size_t bh = std::size_t(b) * s.H + h;
  const int dh = s.dh, dv = s.dv;
  const float* kb = k + bh * s.kv_rows() * dh;  // [Tk, dh]
  const float* vb = v + bh * s.kv_rows() * dv;  // [Tk, dv]
  const float* qb = q + (bh * s.Tq + i0) * dh;  // this tile's rows
  const int rows = std::min(kQT, s.Tq - i0);
  float mx[kQT], sum[kQT];
  int end[kQT];
  alignas(32) float S[kQT * kKT];  // scores, then p, of one key tile
  std::fill(S, S + kQT * kKT, 0.0f);
  int end_max = 0;
  for (int r = 0; r < rows; ++r) {
    end[r] = visible_keys(s, m, b, i0 + r);
    end_max = std::max(end_max, end[r]);
    mx[r] = -kInf;
    sum[r] = 0.0f;
    std::fill(acc + std::size_t(r) * dv, acc + std::size_t(r + 1) * dv, 0.0f);
  }
  const int dv8 = dv & ~7;
  // key tiles in order; each row folds a tile into its running (max, sum, acc)
  for (int j0 = 0; j0 < end_max; j0 += kKT) {
    const float* kt = kb + std::size_t(j0) * dh;
    const float* vt = vb + std::size_t(j0) * dv;
    int n[kQT];  // keys of this tile each row sees
    for (int r = 0; r < rows; ++r) n[r] = std::clamp(end[r] - j0, 0, kKT);
    // scores: blocks of 4 rows × 2 keys, up to the block's widest row
    int r = 0;
    for (; r + 4 <= rows; r += 4) {
      const int w = std::max({n[r], n[r + 1], n[r + 2], n[r + 3]});
      score_rows<4, SJ>(S + r * kKT, qb + std::size_t(r) * dh, kt, dh, scale, w);
    }
    for (; r < rows; ++r) score_rows<1, 8>(S + r * kKT, qb + std::size_t(r) * dh, kt, dh, scale, n[r]);
    // softmax step per row; acc scaled by the correction
    float corr[kQT];
    for (r = 0; r < rows;) {
      if (r + 4 <= rows && n[r] == kKT && n[r + 3] == kKT && n[r + 1] == kKT && n[r + 2] == kKT) {
        softmax_full_rows<4>(S + r * kKT, mx + r, sum + r, corr + r);
        r += 4;
      } else {
        corr[r] = n[r] == 0 ? 1.0f : softmax_step(S + r * kKT, n[r], mx[r], sum[r]);
        ++r;
      }
    }
    for (r = 0; r < rows; ++r) {
      if (corr[r] == 1.0f) continue;
      float* a = acc + std::size_t(r) * dv;
      for (int c = 0; c < dv; ++c) a[c] *= corr[r];
    }
    // p·v: blocks of 4 rows × 16 columns over the keys all 4 see, then each row's rest
    for (r = 0; r + 4 <= rows; r += 4) {
      const int common = std::min({n[r], n[r + 1], n[r + 2], n[r + 3]});
      float* a = acc + std::size_t(r) * dv;
      const float* P = S + r * kKT;
      if (common > 0) {
        int c = 0;
        for (; c + 8 * PC <= dv8; c += 8 * PC) pv_block<AVX, 4, PC>(a, P, vt, dv, c, 0, common);
        for (; c + 16 <= dv8; c += 16) pv_block<AVX, 4, 2>(a, P, vt, dv, c, 0, common);
        for (; c < dv8; c += 8) pv_block<AVX, 4, 1>(a, P, vt, dv, c, 0, common);
        for (int rr = 0; rr < 4; ++rr)
          for (c = dv8; c < dv; ++c)
            for (int jj = 0; jj < common; ++jj)
              a[std::size_t(rr) * dv + c] += P[rr * kKT + jj] * vt[std::size_t(jj) * dv + c];
      }
      for (int rr = 0; rr < 4; ++rr)
        pv_row<AVX>(a + std::size_t(rr) * dv, P + rr * kKT, vt, dv, std::max(common, 0), n[r + rr]);
    }
    for (; r < rows; ++r) pv_row<AVX>(acc + std::size_t(r) * dv, S + r * kKT, vt, dv, 0, n[r]);
  }
  for (int r = 0; r < rows; ++r) {
    if (end[r] == 0) continue;  // fully masked: the output stays zero
    const std::size_t row = bh * s.Tq + i0 + r;
    const float inv = 1.0f / sum[r];
    const float* a = acc + std::size_t(r) * dv;
    float* o = out + row * dv;
    for (int c = 0; c < dv; ++c) o[c] = a[c] * inv;
    if (weights) {  // the same scores and exp, against the final max
      float* w = weights + row * s.Tk;
      for (int j0 = 0; j0 < end[r]; j0 += kKT) {
        const int nr = std::min(kKT, end[r] - j0);
        score_rows<1, 8>(S, qb + std::size_t(r) * dh, kb + std::size_t(j0) * dh, dh, scale, nr);
        for (int g = 0; g < nr; g += 8) {
          float e[8];
          store8(e, exp8(load8(S + g) - mx[r]) * inv);
          std::memcpy(w + j0 + g, e, sizeof(float) * std::min(8, nr - g));
        }
      }
    }
  }
}

// The tile compiled three times, chosen once at run time: AVX-512 (VL: 32 ymm registers, so
// 4 × 4 score blocks and 4 rows × 32 columns of p·v), AVX2 and the x86-64 baseline (16
// registers: 4 × 2 and 4 × 16). None of them enables FMA (-mavx512vl does not imply it, and
// this file is compiled with -ffp-contract=off as well), and the block shapes only interleave
// independent elements, so all three give the same bits.
#define NC_TILE_ARGS                                                                        \
  float *out, float *weights, const float *q, const float *k, const float *v,               \
      const SdpaShape &s, const SdpaMask &m, float scale, int b, int h, int i0, float *acc
#define NC_TILE_CALL out, weights, q, k, v, s, m, scale, b, h, i0, acc
__attribute__((target("avx512f,avx512vl"))) void attention_tile_avx512(NC_TILE_ARGS) {
  tile_impl<true, 4, 4>(NC_TILE_CALL);
}
__attribute__((target("avx2"))) void attention_tile_avx2(NC_TILE_ARGS) {
  tile_impl<true, 2, 2>(NC_TILE_CALL);
}
void attention_tile_baseline(NC_TILE_ARGS) { tile_impl<false, 2, 2>(NC_TILE_CALL); }

using TileFn = void (*)(NC_TILE_ARGS);
bool has_avx512() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl");
}
bool has_avx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2");
}
TileFn best_tile() {
  return has_avx512() ? attention_tile_avx512 : has_avx2() ? attention_tile_avx2
                                                           : attention_tile_baseline;
}
TileFn attention_tile = best_tile();  // changed only by sdpa_use_path (tests)

__attribute__((target_clones("avx2", "default")))
void exp_values(const float* x, float* y, std::size_t n) {
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) store8(y + i, exp8(load8(x + i)));
  for (; i < n; ++i) y[i] = exp1(x[i]);
}

}  // namespace

void sdpa_exp(const float* x, float* y, std::size_t n) { exp_values(x, y, n); }

bool sdpa_use_path(SdpaPath path) {
  switch (path) {
    case SdpaPath::best: attention_tile = best_tile(); return true;
    case SdpaPath::avx512: if (!has_avx512()) return false; attention_tile = attention_tile_avx512; return true;
    case SdpaPath::avx2: if (!has_avx2()) return false; attention_tile = attention_tile_avx2; return true;
    case SdpaPath::baseline: attention_tile = attention_tile_baseline; return true;
  }
  return false;
}

void sdpa_optimized(std::vector<float>& out, std::vector<float>* weights,
                    const std::vector<float>& q, const std::vector<float>& k,
                    const std::vector<float>& v, const SdpaShape& s, const SdpaMask& m,
                    double scale) {
  validate_sdpa(s, m, scale, q.size(), k.size(), v.size());
  out.assign(s.out_size(), 0.0f);
  if (weights) weights->assign(s.weights_size(), 0.0f);
  float* w = weights ? weights->data() : nullptr;
  const int tiles = (s.Tq + kQT - 1) / kQT;
  const long long tasks = (long long)s.B * s.H * tiles;
  const double work = double(s.B) * s.H * s.Tq * s.Tk * (s.dh + s.dv);
  const float fscale = float(scale);
#pragma omp parallel if (tasks > 1 && work >= kParallelMinWork)
  {
    std::vector<float> acc(std::size_t(kQT) * s.dv);  // per thread, O(dv)
#pragma omp for schedule(static)
    for (long long task = 0; task < tasks; ++task) {
      const int tile = int(task % tiles);
      const int bh = int(task / tiles);
      attention_tile(out.data(), w, q.data(), k.data(), v.data(), s, m, fscale, bh / s.H,
                     bh % s.H, tile * kQT, acc.data());
    }
  }
}

// ---------------------------------------------------------------------------------------------
// KV cache

template <class T>
KvCache<T>::KvCache(int B, int H, int dh, int dv, int capacity)
    : B_(B), H_(H), dh_(dh), dv_(dv), capacity_(capacity) {
  if (B <= 0 || H <= 0 || dh <= 0 || dv <= 0)
    throw InvalidInput("KV cache: B, H, dh, dv must be positive, got " + std::to_string(B) + ", " +
                       std::to_string(H) + ", " + std::to_string(dh) + ", " + std::to_string(dv));
  if (capacity <= 0)
    throw InvalidInput("KV cache: capacity = " + std::to_string(capacity) + " must be positive");
  k_.assign(std::size_t(B) * H * capacity * dh, T(0));
  v_.assign(std::size_t(B) * H * capacity * dv, T(0));
}

template <class T>
void KvCache<T>::append(const std::vector<T>& k, const std::vector<T>& v, int n) {
  if (n <= 0) throw InvalidInput("KV cache: appending n = " + std::to_string(n) + " tokens");
  if (size_ + n > capacity_)
    throw InvalidInput("KV cache overflow: appending n = " + std::to_string(n) +
                       " tokens to a cache holding " + std::to_string(size_) + " of capacity " +
                       std::to_string(capacity_));
  check_size("k", k.size(), std::size_t(B_) * H_ * n * dh_, "B*H*n*dh");
  check_size("v", v.size(), std::size_t(B_) * H_ * n * dv_, "B*H*n*dv");
  for (int bh = 0; bh < B_ * H_; ++bh) {
    std::copy_n(k.begin() + std::size_t(bh) * n * dh_, std::size_t(n) * dh_,
                k_.begin() + (std::size_t(bh) * capacity_ + size_) * dh_);
    std::copy_n(v.begin() + std::size_t(bh) * n * dv_, std::size_t(n) * dv_,
                v_.begin() + (std::size_t(bh) * capacity_ + size_) * dv_);
  }
  size_ += n;
}

template <class T>
SdpaShape KvCache<T>::shape_for(int Tq) const {
  return {B_, H_, Tq, size_, dh_, dv_, capacity_};
}

template class KvCache<float>;
template class KvCache<double>;

// ---------------------------------------------------------------------------------------------
// the registry entry

AttentionEntry sdpa_entry() {
  return {.name = "sdpa",
          .op = AttentionOp::sdpa,
          .formula = "softmax(q·kᵀ·scale + mask)·v; key-padding and bottom-right causal masks",
          .sdpa_reference = [](Output& out, std::vector<double>* weights, const std::vector<float>& q,
                               const std::vector<float>& k, const std::vector<float>& v,
                               const SdpaShape& s, const SdpaMask& m, double scale) {
            sdpa_reference(out, weights, q, k, v, s, m, scale);
          },
          .sdpa_optimized = [](Output& out, std::vector<double>* weights, const std::vector<float>& q,
                               const std::vector<float>& k, const std::vector<float>& v,
                               const SdpaShape& s, const SdpaMask& m, double scale) {
            std::vector<float> o, w;
            sdpa_optimized(o, weights ? &w : nullptr, q, k, v, s, m, scale);
            out.assign(o.begin(), o.end());
            if (weights) weights->assign(w.begin(), w.end());
          }};
}

}  // namespace normcheck
