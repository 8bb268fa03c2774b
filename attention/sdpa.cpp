#include "attention/registry.hpp"
#include "attention/sdpa.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include <Eigen/Dense>
#include <cpuid.h>
#include <immintrin.h>

#include "norms/kernels.hpp"
#include "norms/kernels_api.hpp"

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
  start_sdpa(out, weights, q, k, v, s, m, scale);
  using Src = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using Mat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
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
// Three instruction-set paths (kernel_path(), norms/kernels_api.hpp; sdpa_use_path for tests):
// AVX-512 runs the kernel in namespace z further down (16 lanes, FMA, queries along the lanes
// in a prefill); AVX2 (with FMA) and the x86-64 baseline run the 8-lane tile below, which the
// AVX-512 path also uses for heads wider than z::kMaxD. The paths round differently and agree
// with the reference within the tolerance rule; each one on its own computes every value by a
// sequence of operations fixed by the shapes and by the row's own visible-key count, never by
// which rows share a tile or which thread runs it. Test:
// SdpaPaths.EveryPathAgreesWithTheReferenceAndKeepsItsBitsAcrossThreadsAndBatches.
//
// The 8-lane tile:
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
// order. On the FMA targets GCC contracts each a·b + c above into one FMA (the expressions are
// the same in every block shape, so this holds there too). Broadcasts: inside these target()
// functions GCC 12 lowers a v8f{x, …, x} initializer to a chain of inserts, so splat goes
// through lane 0 + shuffle, and p·v uses a memory-operand vbroadcastss on the AVX paths
// (splat_at); both are data movement only.

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
  return __builtin_shufflevector(t, t, 0, 0, 0, 0, 0, 0, 0, 0);
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
  a = vmax(a, __builtin_shufflevector(a, a, 4, 5, 6, 7, 0, 1, 2, 3));
  a = vmax(a, __builtin_shufflevector(a, a, 2, 3, 0, 1, 6, 7, 4, 5));
  a = vmax(a, __builtin_shufflevector(a, a, 1, 0, 3, 2, 5, 4, 7, 6));
  return a[0];
}
// ((a0+a4)+(a1+a5))+((a2+a6)+(a3+a7))
NC_INLINE float fold(v8f a) {
  return ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));
}

// fold of 8 accumulators at once: lane t of the result is fold(a[t]), by the same tree.
NC_INLINE v8f hadd(v8f a, v8f b) {
  return __builtin_shufflevector(a, b, 0, 2, 8, 10, 4, 6, 12, 14) +
         __builtin_shufflevector(a, b, 1, 3, 9, 11, 5, 7, 13, 15);
}
NC_INLINE v8f fold8(const v8f* a) {
  v8f t[4];
  for (int k = 0; k < 4; ++k)  // [a0+a4, a1+a5, a2+a6, a3+a7] of a[2k] | of a[2k+1]
    t[k] = __builtin_shufflevector(a[2 * k], a[2 * k + 1], 0, 1, 2, 3, 8, 9, 10, 11) +
           __builtin_shufflevector(a[2 * k], a[2 * k + 1], 4, 5, 6, 7, 12, 13, 14, 15);
  const v8f f = hadd(hadd(t[0], t[1]), hadd(t[2], t[3]));  // a0 a2 a4 a6 | a1 a3 a5 a7
  return __builtin_shufflevector(f, f, 0, 4, 1, 5, 2, 6, 3, 7);
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

// The 8-lane tile compiled for AVX2 with FMA (16 registers: 4 × 2 score blocks, 4 rows × 16
// columns of p·v; GCC contracts each a·b + c into one FMA, the same expressions in every inlined
// block shape, so block shapes still only interleave independent elements), for the x86-64
// baseline (no FMA) and, with AVX-512VL's 32 registers (4 × 4, 4 × 32, FMA), for heads wider
// than the AVX-512 kernel below takes (dh or dv above z::kMaxD).
#define NC_TILE_ARGS                                                                        \
  float *out, float *weights, const float *q, const float *k, const float *v,               \
      const SdpaShape &s, const SdpaMask &m, float scale, int b, int h, int i0, float *acc
#define NC_TILE_CALL out, weights, q, k, v, s, m, scale, b, h, i0, acc
__attribute__((target("avx512f,avx512vl,fma"))) void attention_tile_avx512vl(NC_TILE_ARGS) {
  tile_impl<true, 4, 4>(NC_TILE_CALL);
}
__attribute__((target("avx2,fma"))) void attention_tile_avx2(NC_TILE_ARGS) {
  tile_impl<true, 2, 2>(NC_TILE_CALL);
}
void attention_tile_baseline(NC_TILE_ARGS) { tile_impl<false, 2, 2>(NC_TILE_CALL); }
using TileFn = void (*)(NC_TILE_ARGS);

// (a template, like tile_impl, so that the v8f values pass only between functions of the same
// target: Clang rejects a v8f argument from an AVX2 function to a baseline one)
template <int>
NC_INLINE void exp_values_v8(const float* x, float* y, std::size_t n) {
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) store8(y + i, exp8(load8(x + i)));
  for (; i < n; ++i) y[i] = exp1(x[i]);
}
__attribute__((target("avx2,fma"))) void exp_values_avx2(const float* x, float* y, std::size_t n) {
  exp_values_v8<0>(x, y, n);
}
void exp_values_baseline(const float* x, float* y, std::size_t n) { exp_values_v8<0>(x, y, n); }

}  // namespace

// =============================================================================================
// The AVX-512 kernel (16 lanes, FMA), for heads of dh, dv ≤ z::kMaxD.
//
// Prefill (Tq ≥ 2) keeps queries along the lanes: a task is up to z::kQB = 48 query rows of one
// (b, h), packed transposed once (Qt[d][i]); every key's score for 16 queries is an FMA chain
// over d with the key's element broadcast from K in its own layout (no packing of K, no
// horizontal sums), and the online softmax is lane-wise: each lane is one query.
//   score(i, j)  acc = 0; acc = fma(q_i[d], k_j[d], acc) for d = 0, 1, …, dh − 1.
//   key tiles    [j0, j0 + z::kKT) with j0 = 0, 64, 128, … (absolute key positions); a query
//                sees keys j < visible_keys(i), masked lane by lane.
//   per tile     tile max m_t = max over the visible j of acc (lane-wise max in j order);
//                m_new = max(m, m_t·scale); correction c = exp(m − m_new) (exactly 1 when
//                m = m_new, including before the first visible key); p_j = exp(acc_j·scale −
//                m_new) (the product rounded first), 0 where not visible; l = fma(l, c, (a0 + a1) + (a2 + a3))
//                with a_r the sum of p_j over j ≡ r (mod 4) in j order; o_c = o_c·c (skipped
//                when every c is 1: x·1 = x), then o_c = fma(v_jc, p_j, o_c) for the visible j
//                in order (masked FMAs leave the other lanes untouched: no 0·inf).
//   output       o_c · (1/l); weights (when asked) recompute acc the same way and give
//                exp(acc·scale − m) · (1/l).
// Decode (Tq = 1) runs one query against the keys along the lanes instead (16 lanes would be
// one query): score = the d-lane partial sums of 16 keys (d ≡ l mod 16, FMA chains over d)
// folded by one tree (kernels::avx512::hsum16x16), then the same tile steps with p in 16-key
// vectors and o_c in registers. A decode query therefore rounds differently from the same row
// inside a prefill (both agree with the reference within the tolerance rule).
// Every value's operations depend only on the shapes and on its own query's visible keys —
// never on the thread count, which queries share a task or lane vector, or B — so the results
// are bitwise the same for any thread count, batch composition or query split of a given Tq
// class (1 or ≥ 2). Keys a query does not see may be multiplied in its lane for a neighbour
// (causal) and are masked; keys at or past key_lengths are never read. Scratch: fixed-size
// arrays on the stack (≈ 60 KB a thread), nothing that grows with T.

NORMCHECK_AVX512_BEGIN

namespace {
namespace z {

constexpr int kQV = 3;          // query vectors (16 lanes each) per prefill task
constexpr int kQB = 16 * kQV;   // query rows per prefill task
constexpr int kKT = 64;         // keys per tile
constexpr int kKB = 8;          // keys per score block (8 × kQV accumulators)
constexpr int kMaxD = 128;      // dh and dv this kernel takes (its stack scratch)

// exp, lane-wise: n = round(x·log2 e), r = x − n·C1 − n·C2 (two FMAs; C1 + C2 = ln 2, n·C1
// exact), e^r by Cephes expf's degree-7 polynomial (Horner with FMA), times 2^n by vscalefps
// (one rounding, so results in the subnormals are rounded once). x is clamped to [−104, 89]:
// below, e^x rounds to 0; above, the scaling overflows to +inf. NaN stays NaN (max and min
// return their second operand when one is NaN).
[[gnu::always_inline]] inline __m512 exp16(__m512 x) {
  const __m512 xc = _mm512_min_ps(_mm512_set1_ps(89.0f), _mm512_max_ps(_mm512_set1_ps(-104.0f), x));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), xc);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  const __m512 z = _mm512_mul_ps(r, r);
  __m512 y = _mm512_set1_ps(1.9875691500e-4f);
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.3981999507e-3f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(8.3334519073e-3f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(4.1665795894e-2f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.6666665459e-1f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(5.0000001201e-1f));
  y = _mm512_add_ps(_mm512_fmadd_ps(y, z, r), _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(y, n);
}

void exp_values(const float* x, float* y, std::size_t n) {
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, exp16(_mm512_loadu_ps(x + i)));
  if (i < n) {
    const __mmask16 k = kernels::avx512::head_mask(int(n - i));
    _mm512_mask_storeu_ps(y + i, k, exp16(_mm512_maskz_loadu_ps(k, x + i)));
  }
}

// The exponent of every p is s·scale rounded, minus the running max of those same rounded
// values, so it is never positive: an FMA (s·scale − m unrounded) would add up to half an ulp
// of s·scale, e^128 for logits near 1e10, an infinite l and NaN outputs. GCC contracts a
// _mm512_mul_ps followed by a _mm512_sub_ps into that FMA (C++ has -ffp-contract=fast), so
// the product is taken with an explicit rounding mode, which it never contracts.
[[gnu::always_inline]] inline __m512 rounded_product(__m512 a, __m512 b) {
  return _mm512_mul_round_ps(a, b, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}

//
// The correction exp(m − m_new), exactly 1 where m = m_new (also when both are −inf: no key
// seen yet, and exp(−inf − −inf) would be NaN).
[[gnu::always_inline]] inline __m512 correction(__m512 m, __m512 m_new) {
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(m, m_new, _CMP_EQ_OQ),
                              exp16(_mm512_sub_ps(m, m_new)), _mm512_set1_ps(1.0f));
}

// ---------------------------------------------------------------------------------------------
// prefill: queries along the lanes

struct Prefill {
  int dh, dv, rows;   // rows of this task (≤ kQB)
  const float* k;     // [Tk, dh] of this (b, h)
  const float* v;     // [Tk, dv]
  float scale;
  int kend;           // keys readable: the largest visible count of the task's rows
  alignas(64) float Qt[kMaxD * kQB];   // [d][lane]
  alignas(64) float Ot[kMaxD * kQB];   // [c][lane]: o^T
  alignas(64) float S[kKT * kQB];      // [j][lane]: acc, then p, of one key tile
  alignas(64) int end[kQB];            // visible keys per lane (padding lanes: kend)
};

// S[j][·] = acc of keys j0 + jb … + kKB − 1 (the last key of the tile repeated past nk).
template <int QV>
[[gnu::always_inline]] inline void score_block(Prefill& t, int j0, int jb, int nk) {
  constexpr int L = 16 * QV;
  const float* kp[kKB];
  for (int kk = 0; kk < kKB; ++kk)
    kp[kk] = t.k + std::size_t(j0 + std::min(jb + kk, nk - 1)) * t.dh;
  __m512 acc[kKB][QV];
  for (int kk = 0; kk < kKB; ++kk)
    for (int u = 0; u < QV; ++u) acc[kk][u] = _mm512_setzero_ps();
  for (int d = 0; d < t.dh; ++d) {
    __m512 qd[QV];
    for (int u = 0; u < QV; ++u) qd[u] = _mm512_load_ps(t.Qt + d * L + 16 * u);
    for (int kk = 0; kk < kKB; ++kk) {
      const __m512 kv = _mm512_set1_ps(kp[kk][d]);
      for (int u = 0; u < QV; ++u) acc[kk][u] = _mm512_fmadd_ps(qd[u], kv, acc[kk][u]);
    }
  }
  for (int kk = 0; kk < kKB; ++kk)
    for (int u = 0; u < QV; ++u) _mm512_store_ps(t.S + (jb + kk) * L + 16 * u, acc[kk][u]);
}

// o^T[c0 + cc][·] for cc < CB over the tile's keys [0, nk); `full`: every lane sees them all.
template <int QV, int CB>
[[gnu::always_inline]] inline void pv_block(Prefill& t, int j0, int c0, int nk, bool full,
                                            const __m512i* end) {
  constexpr int L = 16 * QV;
  __m512 acc[CB][QV];
  for (int cc = 0; cc < CB; ++cc)
    for (int u = 0; u < QV; ++u) acc[cc][u] = _mm512_load_ps(t.Ot + (c0 + cc) * L + 16 * u);
  const float* vj = t.v + std::size_t(j0) * t.dv + c0;
  if (full) {
    for (int j = 0; j < nk; ++j, vj += t.dv) {
      __m512 p[QV];
      for (int u = 0; u < QV; ++u) p[u] = _mm512_load_ps(t.S + j * L + 16 * u);
      for (int cc = 0; cc < CB; ++cc) {
        const __m512 vv = _mm512_set1_ps(vj[cc]);
        for (int u = 0; u < QV; ++u) acc[cc][u] = _mm512_fmadd_ps(vv, p[u], acc[cc][u]);
      }
    }
  } else {
    for (int j = 0; j < nk; ++j, vj += t.dv) {
      __m512 p[QV];
      __mmask16 vis[QV];
      for (int u = 0; u < QV; ++u) {
        p[u] = _mm512_load_ps(t.S + j * L + 16 * u);
        vis[u] = _mm512_cmpgt_epi32_mask(end[u], _mm512_set1_epi32(j0 + j));
      }
      for (int cc = 0; cc < CB; ++cc) {
        const __m512 vv = _mm512_set1_ps(vj[cc]);
        for (int u = 0; u < QV; ++u) acc[cc][u] = _mm512_mask3_fmadd_ps(vv, p[u], acc[cc][u], vis[u]);
      }
    }
  }
  for (int cc = 0; cc < CB; ++cc)
    for (int u = 0; u < QV; ++u) _mm512_store_ps(t.Ot + (c0 + cc) * L + 16 * u, acc[cc][u]);
}

template <int QV>
void prefill_task(Prefill& t, float* out, float* weights, int Tk) {
  constexpr int L = 16 * QV;
  __m512i end[QV];
  __m512 m[QV], l[QV];
  int emin = t.kend;
  for (int i = 0; i < t.rows; ++i) emin = std::min(emin, t.end[i]);
  for (int i = t.rows; i < L; ++i) t.end[i] = t.kend;
  for (int u = 0; u < QV; ++u) {
    end[u] = _mm512_load_si512(t.end + 16 * u);
    m[u] = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
    l[u] = _mm512_setzero_ps();
  }
  std::fill(t.Ot, t.Ot + std::size_t(t.dv) * L, 0.0f);
  const __m512 scale = _mm512_set1_ps(t.scale);
  for (int j0 = 0; j0 < t.kend; j0 += kKT) {
    const int nk = std::min(kKT, t.kend - j0);
    const bool full = emin >= j0 + nk;  // every lane sees every key of the tile
    for (int jb = 0; jb < nk; jb += kKB) score_block<QV>(t, j0, jb, nk);
    bool rescale = false;
    __m512 corr[QV];
    for (int u = 0; u < QV; ++u) {
      __m512 mt = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
      for (int j = 0; j < nk; ++j) {
        const __m512 s = _mm512_load_ps(t.S + j * L + 16 * u);
        mt = full ? _mm512_max_ps(mt, s)
                  : _mm512_mask_max_ps(mt, _mm512_cmpgt_epi32_mask(end[u], _mm512_set1_epi32(j0 + j)), mt, s);
      }
      const __m512 m_new = _mm512_max_ps(m[u], _mm512_mul_ps(mt, scale));
      corr[u] = correction(m[u], m_new);
      rescale |= _mm512_cmp_ps_mask(corr[u], _mm512_set1_ps(1.0f), _CMP_NEQ_UQ) != 0;
      m[u] = m_new;
      __m512 a[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
      for (int j = 0; j < nk; ++j) {
        float* sj = t.S + j * L + 16 * u;
        __m512 p = exp16(_mm512_sub_ps(rounded_product(_mm512_load_ps(sj), scale), m_new));
        if (!full) p = _mm512_maskz_mov_ps(_mm512_cmpgt_epi32_mask(end[u], _mm512_set1_epi32(j0 + j)), p);
        _mm512_store_ps(sj, p);
        a[j & 3] = _mm512_add_ps(a[j & 3], p);
      }
      l[u] = _mm512_fmadd_ps(l[u], corr[u], _mm512_add_ps(_mm512_add_ps(a[0], a[1]), _mm512_add_ps(a[2], a[3])));
    }
    if (rescale)
      for (int c = 0; c < t.dv; ++c)
        for (int u = 0; u < QV; ++u) {
          float* o = t.Ot + c * L + 16 * u;
          _mm512_store_ps(o, _mm512_mul_ps(_mm512_load_ps(o), corr[u]));
        }
    int c = 0;
    for (; c + 8 <= t.dv; c += 8) pv_block<QV, 8>(t, j0, c, nk, full, end);
    if (c + 4 <= t.dv) pv_block<QV, 4>(t, j0, c, nk, full, end), c += 4;
    if (c + 2 <= t.dv) pv_block<QV, 2>(t, j0, c, nk, full, end), c += 2;
    if (c < t.dv) pv_block<QV, 1>(t, j0, c, nk, full, end);
  }
  // o = o^T · (1/l), back to rows; rows that see no key stay zero
  alignas(64) float inv[L];
  for (int u = 0; u < QV; ++u)
    _mm512_store_ps(inv + 16 * u, _mm512_div_ps(_mm512_set1_ps(1.0f), l[u]));
  for (int i = 0; i < t.rows; ++i) {
    if (t.end[i] == 0) continue;
    float* o = out + std::size_t(i) * t.dv;
    for (int c = 0; c < t.dv; ++c) o[c] = t.Ot[c * L + i] * inv[i];
  }
  if (!weights) return;
  // the same scores and exp against the final max
  alignas(64) float mf[L];
  for (int u = 0; u < QV; ++u) _mm512_store_ps(mf + 16 * u, m[u]);
  for (int j0 = 0; j0 < t.kend; j0 += kKT) {
    const int nk = std::min(kKT, t.kend - j0);
    for (int jb = 0; jb < nk; jb += kKB) score_block<QV>(t, j0, jb, nk);
    for (int j = 0; j < nk; ++j)
      for (int u = 0; u < QV; ++u) {
        float* sj = t.S + j * L + 16 * u;
        const __m512 p = exp16(_mm512_sub_ps(rounded_product(_mm512_load_ps(sj), scale), _mm512_load_ps(mf + 16 * u)));
        _mm512_store_ps(sj, _mm512_mul_ps(p, _mm512_load_ps(inv + 16 * u)));
      }
    for (int i = 0; i < t.rows; ++i)
      for (int j = 0; j < nk && j0 + j < t.end[i]; ++j)
        weights[std::size_t(i) * Tk + j0 + j] = t.S[j * L + i];
  }
}

// ---------------------------------------------------------------------------------------------
// decode: one query, keys along the lanes

// Decode's prefetch: each line 6 KB ahead into L1 (T0). With the norms' 16 KB into L2 (T1)
// decode read at 0.85–0.87 of a streaming read of the same bytes (bench: decode/read); with
// this, 0.90–0.95 (A/B on this VM, three runs each, 1 and 2 threads: 4 KB and 8 KB T0 about as
// good at 1 thread and worse at 2; 2 KB and 12 KB worse). Decode reads two streams in turns
// (a K tile, then a V tile), so a short distance keeps the turn's lines arriving. On the AMD
// EPYC (Zen 4) host of 2026-12-01 it costs instead: decode / copy 0.35–0.46 with it, 0.49–0.54
// without at 1 thread (three alternating runs each; 2 threads 0.41–0.55 and 0.51–0.55), so AMD
// CPUs run without it (decode_prefetches). A prefetch never changes a result.
template <bool kPrefetch>
[[gnu::always_inline]] inline void decode_prefetch(const float* p) {
  if constexpr (kPrefetch) _mm_prefetch(reinterpret_cast<const char*>(p) + 6144, _MM_HINT_T0);
}

// acc of key rows k[kk] (kk < 16) against q, d along the lanes: lane l sums d ≡ l (mod 16) by
// FMA in d order; the last d vector masked. Key after key (each row's dh/16 vectors in turn,
// then the next row): the 16 rows lie one after another in memory, so this reads K as one
// sequential stream; d outer and keys inner jumped by dh·4 bytes at every load, 16 interleaved
// streams. Each acc[kk] still takes its FMAs in d order: the same bits. On the AMD EPYC (Zen 4)
// host of 2026-12-01, three alternating runs each: decode / copy 0.35–0.39 → 0.42–0.54 at 1
// thread, 0.41–0.44 → 0.51–0.56 at 2 (the Intel host of the earlier runs not measured since).
template <bool kPrefetch>
[[gnu::always_inline]] inline __m512 scores16(const float* q, const float* const* kr, int dh) {
  __m512 acc[16];
  for (int kk = 0; kk < 16; ++kk) acc[kk] = _mm512_setzero_ps();
  const int full = dh / 16 * 16;
  for (int kk = 0; kk < 16; ++kk)
    for (int d = 0; d < full; d += 16) {
      decode_prefetch<kPrefetch>(kr[kk] + d);
      acc[kk] = _mm512_fmadd_ps(_mm512_loadu_ps(q + d), _mm512_loadu_ps(kr[kk] + d), acc[kk]);
    }
  const int d = full;
  if (d < dh) {
    const __mmask16 mk = kernels::avx512::head_mask(dh - d);
    const __m512 qd = _mm512_maskz_loadu_ps(mk, q + d);
    for (int kk = 0; kk < 16; ++kk)
      acc[kk] = _mm512_fmadd_ps(qd, _mm512_maskz_loadu_ps(mk, kr[kk] + d), acc[kk]);
  }
  return kernels::avx512::hsum16x16(acc);
}

// S[0, 64) = acc of keys j0 … j0 + nk − 1 (the last repeated past nk, masked by the caller).
template <bool kPrefetch>
[[gnu::always_inline]] inline void decode_scores(float* S, const float* q, const float* k,
                                                 int dh, int j0, int nk) {
  for (int g = 0; g * 16 < nk; ++g) {
    const float* kr[16];
    for (int kk = 0; kk < 16; ++kk)
      kr[kk] = k + std::size_t(j0 + std::min(16 * g + kk, nk - 1)) * dh;
    _mm512_store_ps(S + 16 * g, scores16<kPrefetch>(q, kr, dh));
  }
}

template <int NV, bool kPrefetch>  // value vectors: dv ≤ 16·NV
void decode_row(float* out, float* weights, const float* q, const float* k, const float* v,
                int dh, int dv, int e, float fscale) {
  const __m512 scale = _mm512_set1_ps(fscale);
  alignas(64) float S[kKT];
  __m512 o[NV];
  __mmask16 cm[NV];
  for (int u = 0; u < NV; ++u) {
    o[u] = _mm512_setzero_ps();
    cm[u] = kernels::avx512::head_mask(std::clamp(dv - 16 * u, 0, 16));
  }
  float m = -std::numeric_limits<float>::infinity();
  __m512 l = _mm512_setzero_ps();
  for (int j0 = 0; j0 < e; j0 += kKT) {
    const int nk = std::min(kKT, e - j0);
    decode_scores<kPrefetch>(S, q, k, dh, j0, nk);
    __m512 s[4], mt = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
    for (int g = 0; g < 4; ++g) {
      const __mmask16 vis = kernels::avx512::head_mask(std::clamp(nk - 16 * g, 0, 16));
      s[g] = _mm512_load_ps(S + 16 * g);
      mt = _mm512_mask_max_ps(mt, vis, mt, s[g]);
    }
    const __m512 m_old = _mm512_set1_ps(m);
    const __m512 m_new = _mm512_max_ps(m_old, _mm512_mul_ps(_mm512_set1_ps(_mm512_reduce_max_ps(mt)), scale));
    const __m512 c = correction(m_old, m_new);
    m = _mm512_cvtss_f32(m_new);
    __m512 p[4];
    for (int g = 0; g < 4; ++g) {
      const __mmask16 vis = kernels::avx512::head_mask(std::clamp(nk - 16 * g, 0, 16));
      p[g] = _mm512_maskz_mov_ps(vis, exp16(_mm512_sub_ps(rounded_product(s[g], scale), m_new)));
      _mm512_store_ps(S + 16 * g, p[g]);
    }
    l = _mm512_fmadd_ps(l, c, _mm512_add_ps(_mm512_add_ps(p[0], p[1]), _mm512_add_ps(p[2], p[3])));
    if (_mm512_cvtss_f32(c) != 1.0f)
      for (int u = 0; u < NV; ++u) o[u] = _mm512_mul_ps(o[u], c);
    const float* vj = v + std::size_t(j0) * dv;
    for (int j = 0; j < nk; ++j, vj += dv) {
      const __m512 pj = _mm512_set1_ps(S[j]);
      for (int u = 0; u < NV; ++u) {
        decode_prefetch<kPrefetch>(vj + 16 * u);
        o[u] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(cm[u], vj + 16 * u), pj, o[u]);
      }
    }
  }
  const float inv = 1.0f / kernels::avx512::hsum(l);
  for (int u = 0; u < NV; ++u)
    _mm512_mask_storeu_ps(out + 16 * u, cm[u], _mm512_mul_ps(o[u], _mm512_set1_ps(inv)));
  if (!weights) return;
  const __m512 mf = _mm512_set1_ps(m), vinv = _mm512_set1_ps(inv);
  for (int j0 = 0; j0 < e; j0 += kKT) {
    const int nk = std::min(kKT, e - j0);
    decode_scores<kPrefetch>(S, q, k, dh, j0, nk);
    for (int g = 0; g * 16 < nk; ++g) {
      const __mmask16 vis = kernels::avx512::head_mask(std::min(nk - 16 * g, 16));
      const __m512 w = _mm512_mul_ps(exp16(_mm512_sub_ps(rounded_product(_mm512_load_ps(S + 16 * g), scale), mf)), vinv);
      _mm512_mask_storeu_ps(weights + j0 + 16 * g, vis, w);
    }
  }
}

using DecodeFn = void (*)(float*, float*, const float*, const float*, const float*, int, int, int, float);
template <bool kPrefetch>
constexpr DecodeFn kDecode[8] = {
    decode_row<1, kPrefetch>, decode_row<2, kPrefetch>, decode_row<3, kPrefetch>,
    decode_row<4, kPrefetch>, decode_row<5, kPrefetch>, decode_row<6, kPrefetch>,
    decode_row<7, kPrefetch>, decode_row<8, kPrefetch>};

// Whether decode prefetches (decode_prefetch): on every CPU but AMD's family 19h, where it was
// measured to cost on Zen 4 (above; Zen 3 shares the family, not measured). On the AMD EPYC
// Zen 5 host (family 1Ah) of 2026-12-01 it gains what it gains on Intel: decode / copy
// 0.29–0.32 → 0.58–0.65 at 1 thread and 0.34–0.40 → 0.61–0.68 at 2 (six alternating runs,
// faster in every one).
bool decode_prefetches() {
  static const bool yes = [] {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    __builtin_cpu_init();
    if (!__builtin_cpu_is("amd") || !__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return true;
    const unsigned base = (eax >> 8) & 0xF, family = base == 0xF ? base + ((eax >> 20) & 0xFF) : base;
    return family != 0x19;
  }();
  return yes;
}

void attention_avx512(float* out, float* weights, const float* q, const float* k, const float* v,
                      const SdpaShape& s, const SdpaMask& m, float scale) {
  const std::size_t BH = std::size_t(s.B) * s.H;
  const double work = double(BH) * s.Tq * s.Tk * (s.dh + s.dv);
  if (s.Tq == 1) {
    const DecodeFn decode = (decode_prefetches() ? kDecode<true> : kDecode<false>)[(s.dv + 15) / 16 - 1];
#pragma omp parallel for schedule(static) if (BH > 1 && work >= kParallelMinWork)
    for (long long bh = 0; bh < (long long)BH; ++bh) {
      const int b = int(bh / s.H);
      const int e = visible_keys(s, m, b, 0);
      if (e == 0) continue;
      decode(out + bh * s.dv, weights ? weights + bh * s.Tk : nullptr, q + bh * s.dh,
             k + bh * s.kv_rows() * s.dh, v + bh * s.kv_rows() * s.dv, s.dh, s.dv, e, scale);
    }
    return;
  }
  const int tiles = (s.Tq + kQB - 1) / kQB;
  const long long tasks = (long long)BH * tiles;
#pragma omp parallel if (tasks > 1 && work >= kParallelMinWork)
  {
    Prefill t;  // per thread, on its stack
    t.dh = s.dh;
    t.dv = s.dv;
    t.scale = scale;
#pragma omp for schedule(static, 1)
    for (long long task = 0; task < tasks; ++task) {
      const std::size_t bh = std::size_t(task / tiles);
      const int b = int(bh / s.H), i0 = int(task % tiles) * kQB;
      t.rows = std::min(kQB, s.Tq - i0);
      t.k = k + bh * s.kv_rows() * s.dh;
      t.v = v + bh * s.kv_rows() * s.dv;
      t.kend = 0;
      for (int i = 0; i < t.rows; ++i) {
        t.end[i] = visible_keys(s, m, b, i0 + i);
        t.kend = std::max(t.kend, t.end[i]);
      }
      if (t.kend == 0) continue;  // every row fully masked: zeros
      const int QV = (t.rows + 15) / 16;
      const float* qr = q + (bh * s.Tq + i0) * s.dh;
      for (int d = 0; d < s.dh; ++d)
        for (int i = 0; i < 16 * QV; ++i)
          t.Qt[d * 16 * QV + i] = i < t.rows ? qr[std::size_t(i) * s.dh + d] : 0.0f;
      float* o = out + (bh * s.Tq + i0) * s.dv;
      float* w = weights ? weights + (bh * s.Tq + i0) * s.Tk : nullptr;
      if (QV == 1)
        prefill_task<1>(t, o, w, s.Tk);
      else if (QV == 2)
        prefill_task<2>(t, o, w, s.Tk);
      else
        prefill_task<3>(t, o, w, s.Tk);
    }
  }
}

}  // namespace z
}  // namespace

NORMCHECK_AVX512_END

namespace {

// The path sdpa_optimized runs: kernel_path() (norms/kernels_api.hpp) unless a test chose one.
SdpaPath current_path() {
  switch (kernel_path()) {
    case KernelPath::avx512: return SdpaPath::avx512;
    case KernelPath::avx2: return SdpaPath::avx2;
    default: return SdpaPath::baseline;
  }
}
SdpaPath active_path = current_path();  // changed only by sdpa_use_path (tests)

bool cpu_has(SdpaPath p) {
  __builtin_cpu_init();
  switch (p) {
    case SdpaPath::avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("fma");
    case SdpaPath::avx2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    default: return true;
  }
}

}  // namespace

void sdpa_exp(const float* x, float* y, std::size_t n) {
  if (active_path == SdpaPath::avx512)
    z::exp_values(x, y, n);
  else if (active_path == SdpaPath::avx2)
    exp_values_avx2(x, y, n);
  else
    exp_values_baseline(x, y, n);
}

bool sdpa_use_path(SdpaPath path) {
  if (path == SdpaPath::best) {
    active_path = current_path();
    return true;
  }
  if (!cpu_has(path)) return false;
  active_path = path;
  return true;
}

void sdpa_optimized(std::vector<float>& out, std::vector<float>* weights,
                    const std::vector<float>& q, const std::vector<float>& k,
                    const std::vector<float>& v, const SdpaShape& s, const SdpaMask& m,
                    double scale) {
  start_sdpa(out, weights, q, k, v, s, m, scale);
  float* w = weights ? weights->data() : nullptr;
  const float fscale = float(scale);
  if (active_path == SdpaPath::avx512 && s.dh <= z::kMaxD && s.dv <= z::kMaxD)
    return z::attention_avx512(out.data(), w, q.data(), k.data(), v.data(), s, m, fscale);
  const TileFn tile_fn = active_path == SdpaPath::avx512 ? attention_tile_avx512vl
                      : active_path == SdpaPath::avx2 ? attention_tile_avx2
                                                      : attention_tile_baseline;
  const int tiles = (s.Tq + kQT - 1) / kQT;
  const long long tasks = (long long)s.B * s.H * tiles;
  const double work = double(s.B) * s.H * s.Tq * s.Tk * (s.dh + s.dv);
#pragma omp parallel if (tasks > 1 && work >= kParallelMinWork)
  {
    std::vector<float> acc(std::size_t(kQT) * s.dv);  // per thread, O(dv)
#pragma omp for schedule(static)
    for (long long task = 0; task < tasks; ++task) {
      const int tile = int(task % tiles);
      const int bh = int(task / tiles);
      tile_fn(out.data(), w, q.data(), k.data(), v.data(), s, m, fscale, bh / s.H, bh % s.H,
              tile * kQT, acc.data());
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
