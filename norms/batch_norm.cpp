// batch_norm: y = γ·(x − μ_d)/√(σ_d² + ε) + β with μ_d, σ_d² over every B·T position of feature
// d (padding included: the naive use in a padded Transformer batch). State: running mean/var.
// Backward (train: through the batch mean and biased variance, as PyTorch's autograd; eval:
// elementwise) for batch_norm and masked_batch_norm: after each forward section below.
#include "norms/batch_norm.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "norms/kernels.hpp"
#include "norms/kernels_api.hpp"

namespace normcheck {
namespace {

bool selected(const Batch& in, int b, int t, TokenSet tokens) {
  return tokens == TokenSet::all_positions || in.valid(b, t);
}

long long count_selected(const Batch& in, TokenSet tokens) {
  return tokens == TokenSet::all_positions ? (long long)in.rows() : in.valid_tokens();
}

long long check_inputs(const Batch& in, const Params& p, Mode mode, const State* state,
                       TokenSet tokens) {
  return check_batch_norm_inputs(in, p, mode, state, tokens,
                                 tokens == TokenSet::all_positions ? "batch_norm" : "masked_batch_norm");
}

}  // namespace

// Every check happens before anything is written, so a rejected call leaves the state as it was.
long long check_batch_norm_inputs(const Batch& in, const Params& p, Mode mode, const State* state,
                                  TokenSet tokens, const char* name) {
  validate_batch(in);
  validate_affine(p, in.D);
  validate_eps(p.eps);
  validate_momentum(p.momentum);
  if (mode == Mode::none)
    throw InvalidInput(std::string(name) + " needs a mode: train or eval");
  if (!state) throw InvalidInput(std::string(name) + " needs running statistics (state)");
  validate_state(*state, in.D, name);
  const long long n = count_selected(in, tokens);
  if (mode == Mode::train && n <= 1)
    throw InvalidInput(std::string(name) + ": expected more than 1 value per channel when "
                       "training, got " + std::to_string(n) + " (B = " + std::to_string(in.B) +
                       ", T = " + std::to_string(in.T) + ")");
  return n;
}


namespace {

void update_running(double* running_mean, double* running_var, const double* mean,
                    const double* var, int D, long long n, double momentum) {
  const double unbiased = double(n) / double(n - 1);
  for (int d = 0; d < D; ++d) {
    running_mean[d] = (1 - momentum) * running_mean[d] + momentum * mean[d];
    running_var[d] = (1 - momentum) * running_var[d] + momentum * var[d] * unbiased;
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// reference: double, statistics in two passes over the selected tokens

namespace {

// The statistics a call normalizes with, [D] each: train: mean and biased variance over the n
// selected tokens, two passes in double; eval: the running statistics.
void batch_norm_reference_statistics(const Batch& in, Mode mode, const State* state,
                                     TokenSet tokens, long long n, std::vector<double>& mean,
                                     std::vector<double>& var) {
  const int D = in.D;
  if (mode != Mode::train) {
    mean = state->running_mean;
    var = state->running_var;
    return;
  }
  mean.assign(D, 0.0);
  var.assign(D, 0.0);
  for (int b = 0; b < in.B; ++b)
    for (int t = 0; t < in.T; ++t)
      if (selected(in, b, t, tokens))
        for (int d = 0; d < D; ++d) mean[d] += in.at(b, t, d);
  for (int d = 0; d < D; ++d) mean[d] /= double(n);
  for (int b = 0; b < in.B; ++b)
    for (int t = 0; t < in.T; ++t)
      if (selected(in, b, t, tokens))
        for (int d = 0; d < D; ++d) var[d] += (in.at(b, t, d) - mean[d]) * (in.at(b, t, d) - mean[d]);
  for (int d = 0; d < D; ++d) var[d] /= double(n);
}

}  // namespace

void batch_norm_reference(const Batch& in, const Params& p, Mode mode, State* state, Output& out,
                          TokenSet tokens) {
  const long long n = check_inputs(in, p, mode, state, tokens);
  const int D = in.D;
  std::vector<double> mean, var;
  batch_norm_reference_statistics(in, mode, state, tokens, n, mean, var);
  out.assign(in.x.size(), 0.0);
  for (int b = 0; b < in.B; ++b)
    for (int t = 0; t < in.T; ++t) {
      if (tokens == TokenSet::valid_tokens && !in.valid(b, t)) continue;  // padding stays 0
      for (int d = 0; d < D; ++d) {
        const double g = p.gamma.empty() ? 1.0 : p.gamma[d];
        const double be = p.beta.empty() ? 0.0 : p.beta[d];
        out[in.index(b, t, d)] = g * (in.at(b, t, d) - mean[d]) / std::sqrt(var[d] + p.eps) + be;
      }
    }
  if (mode == Mode::train)
    update_running(state->running_mean.data(), state->running_var.data(), mean.data(), var.data(),
                   D, n, p.momentum);
}

// ---------------------------------------------------------------------------------------------
// backward reference: double. Per feature d over the n selected tokens, with x̂ = (x − μ)·rstd,
// rstd = 1/√(σ² + ε):
//   dβ = Σ dy,  dγ = Σ dy·x̂,
//   train: dx = γ·rstd·(dy − dβ/n − x̂·dγ/n)  (through the batch mean and the biased variance)
//   eval:  dx = γ·rstd·dy                     (the running statistics are constants)
// and dx = 0 at positions that are not selected (masked_batch_norm's padding, whose output is
// the constant 0: dy there reaches nothing).

void batch_norm_backward_reference(const Batch& in, const Params& p, Mode mode, const State* state,
                                   const std::vector<float>& dy, Grads& out, TokenSet tokens) {
  const long long n = check_inputs(in, p, mode, state, tokens);
  validate_dy(in, dy);
  const int D = in.D;
  std::vector<double> mean, var;
  batch_norm_reference_statistics(in, mode, state, tokens, n, mean, var);
  std::vector<double> rstd(D), sum_dy(D, 0.0), sum_dy_xhat(D, 0.0);  // [D] each
  for (int d = 0; d < D; ++d) rstd[d] = 1.0 / std::sqrt(var[d] + p.eps);
  for (int b = 0; b < in.B; ++b)
    for (int t = 0; t < in.T; ++t)
      if (selected(in, b, t, tokens))
        for (int d = 0; d < D; ++d) {
          const double g = dy[in.index(b, t, d)];
          sum_dy[d] += g;
          sum_dy_xhat[d] += g * (in.at(b, t, d) - mean[d]) * rstd[d];
        }
  Grads gr;
  gr.dx.assign(in.x.size(), 0.0);
  for (int b = 0; b < in.B; ++b)
    for (int t = 0; t < in.T; ++t) {
      if (!selected(in, b, t, tokens)) continue;  // stays 0
      for (int d = 0; d < D; ++d) {
        const std::size_t i = in.index(b, t, d);
        const double scale = (p.gamma.empty() ? 1.0 : p.gamma[d]) * rstd[d];
        const double xhat = (in.x[i] - mean[d]) * rstd[d];
        gr.dx[i] = mode == Mode::train
                       ? scale * (dy[i] - sum_dy[d] / double(n) - xhat * sum_dy_xhat[d] / double(n))
                       : scale * dy[i];
      }
    }
  if (!p.gamma.empty()) gr.dgamma = sum_dy_xhat;
  if (!p.beta.empty()) gr.dbeta = sum_dy;
  out = std::move(gr);
}

// ---------------------------------------------------------------------------------------------
// optimized: float32 data. Statistics read x once from memory: the rows are cut into blocks of
// R ≥ 16 whole rows (R·D·4 ≤ kStatBlockBytes where D allows, so a block stays in L2), each
// block's mean and M2 are computed two-pass in double per feature range (the second pass hits
// cache), and the blocks are merged in a fixed order with Chan's formula; the AVX-512 path
// instead takes each segment's rows in one pass (below). Then one OpenMP pass over independent
// rows normalizes. The raw kernels are in kernels_api.hpp; three instruction-set paths
// (kernel_path()): AVX-512 with FMA, the 8-lane code for AVX2 with FMA and for the baseline.
//
// Why the bits never depend on the thread count: R, the feature ranges, the segments (fixed
// runs of consecutive blocks) and every merge order are functions of (B·T, D) only; a thread
// takes whole segments, and each segment is computed the same way whichever thread runs it.

namespace {

// The statistics' blocking (kernels.hpp, where the generators read it too).
using kernels::kStatBlockBytes;
using kernels::kStatFeatures;
using kernels::kStatSegments;
using kernels::stat_block_rows;

// Chan's parallel update of (na, mean, m2) with a part of nb values, its mean mb and M2 m2b,
// feature by feature (no lane depends on another: the vector and scalar code give the same
// bits). na = 0 copies the part.
inline void chan_merge(double* __restrict mean, double* __restrict m2, long long na,
                       const double* __restrict mb, const double* __restrict m2b, long long nb,
                       int w) {
  if (na == 0) {
    for (int d = 0; d < w; ++d) mean[d] = mb[d];
    for (int d = 0; d < w; ++d) m2[d] = m2b[d];
    return;
  }
  const double n = double(na) + double(nb);
  const double wb = double(nb) / n, wab = double(na) * double(nb) / n;
  for (int d = 0; d < w; ++d) {
    const double delta = mb[d] - mean[d];
    // a part holding ±inf: the mean of all values is that infinity (or NaN for both signs),
    // as a plain sum gives it; the update below would make ∞ − ∞ of it
    mean[d] = std::isfinite(mean[d]) && std::isfinite(mb[d]) ? mean[d] + delta * wb : mean[d] + mb[d];
    m2[d] = (m2[d] + m2b[d]) + delta * delta * wab;
  }
}

// 4 doubles / 8 floats as GCC vector types: AVX2 registers on the AVX2 path, SSE2 registers on
// the baseline; lane-wise IEEE operations either way.
typedef double v4d __attribute__((vector_size(32)));
typedef double v8d __attribute__((vector_size(64)));
typedef float v8f __attribute__((vector_size(32)));

// x[0..8) as doubles, lo = x[0..4), hi = x[4..8). Inlined into each path; converting 8 floats
// at once is what lets GCC 12 emit one vcvtps2pd ymm per 4 values (it splits a 4-float one).
[[gnu::always_inline]] inline void load8(const float* p, v4d& lo, v4d& hi) {
  v8f f;
  std::memcpy(&f, p, sizeof f);
  const v8d d = __builtin_convertvector(f, v8d);
  std::memcpy(&lo, &d, sizeof lo);
  std::memcpy(&hi, reinterpret_cast<const char*>(&d) + sizeof lo, sizeof hi);
}

// Mean and M2 of features [f0, f0 + w) over the n rows rows[0..n) (pointers to row starts),
// two passes in double, each feature summed over the rows in index order (four rows per step,
// still added one after the other); then merged into the running (count, mean[w], m2[w]) of
// the caller. acc, tmean: scratch of w doubles, 32-byte aligned. While the first pass reads
// the tile from memory, the same tile `pf` floats further (the next block; 0: none) is
// prefetched into L2, so the next block's first pass does not wait on memory (bench/ANALYSIS.md).
// The 8-lane body of the AVX2 path (FMA by contraction: GCC fuses the e·e + acc of each
// feature, the same expression in the vector body and the scalar tail) and of the baseline.
[[gnu::always_inline]] inline void tile_stats_v8(const float* const* rows, int n, int f0, int w,
                                                double* __restrict acc, double* __restrict tmean,
                                                long long count, double* mean, double* m2,
                                                std::ptrdiff_t pf) {
  const int w8 = w / 8, wv = 8 * w8;  // features [0, wv) in vectors, [wv, w) one by one
  v4d* va = reinterpret_cast<v4d*>(acc);  // GCC vector types alias their element type
  v4d* vm = reinterpret_cast<v4d*>(tmean);
  for (int d = 0; d < w; ++d) acc[d] = 0;
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    const float *x0 = rows[i] + f0, *x1 = rows[i + 1] + f0, *x2 = rows[i + 2] + f0,
                *x3 = rows[i + 3] + f0;  // [w] each
    for (int j = 0; j < w8; ++j) {
      if (pf && (j & 1) == 0) {  // one line of each row every 16 features
        __builtin_prefetch(x0 + 8 * j + pf, 0, 2);
        __builtin_prefetch(x1 + 8 * j + pf, 0, 2);
        __builtin_prefetch(x2 + 8 * j + pf, 0, 2);
        __builtin_prefetch(x3 + 8 * j + pf, 0, 2);
      }
      v4d l0, h0, l1, h1, l2, h2, l3, h3;
      load8(x0 + 8 * j, l0, h0);
      load8(x1 + 8 * j, l1, h1);
      load8(x2 + 8 * j, l2, h2);
      load8(x3 + 8 * j, l3, h3);
      va[2 * j] = (((va[2 * j] + l0) + l1) + l2) + l3;
      va[2 * j + 1] = (((va[2 * j + 1] + h0) + h1) + h2) + h3;
    }
    for (int d = wv; d < w; ++d)
      acc[d] = (((acc[d] + double(x0[d])) + double(x1[d])) + double(x2[d])) + double(x3[d]);
  }
  for (; i < n; ++i) {
    const float* xr = rows[i] + f0;
    for (int j = 0; j < w8; ++j) {
      v4d l, h;
      load8(xr + 8 * j, l, h);
      va[2 * j] += l;
      va[2 * j + 1] += h;
    }
    for (int d = wv; d < w; ++d) acc[d] += double(xr[d]);
  }
  const double nb = double(n);
  for (int d = 0; d < w; ++d) tmean[d] = acc[d] / nb;
  for (int d = 0; d < w; ++d) acc[d] = 0;
  // second pass: the tile is in cache since the first
  i = 0;
  for (; i + 4 <= n; i += 4) {
    const float *x0 = rows[i] + f0, *x1 = rows[i + 1] + f0, *x2 = rows[i + 2] + f0,
                *x3 = rows[i + 3] + f0;
    for (int j = 0; j < w8; ++j) {
      v4d l0, h0, l1, h1, l2, h2, l3, h3;
      load8(x0 + 8 * j, l0, h0);
      load8(x1 + 8 * j, l1, h1);
      load8(x2 + 8 * j, l2, h2);
      load8(x3 + 8 * j, l3, h3);
      const v4d ml = vm[2 * j], mh = vm[2 * j + 1];
      l0 -= ml, l1 -= ml, l2 -= ml, l3 -= ml;
      h0 -= mh, h1 -= mh, h2 -= mh, h3 -= mh;
      va[2 * j] = (((va[2 * j] + l0 * l0) + l1 * l1) + l2 * l2) + l3 * l3;
      va[2 * j + 1] = (((va[2 * j + 1] + h0 * h0) + h1 * h1) + h2 * h2) + h3 * h3;
    }
    for (int d = wv; d < w; ++d) {
      const double e0 = double(x0[d]) - tmean[d], e1 = double(x1[d]) - tmean[d],
                   e2 = double(x2[d]) - tmean[d], e3 = double(x3[d]) - tmean[d];
      acc[d] = (((acc[d] + e0 * e0) + e1 * e1) + e2 * e2) + e3 * e3;
    }
  }
  for (; i < n; ++i) {
    const float* xr = rows[i] + f0;
    for (int j = 0; j < w8; ++j) {
      v4d l, h;
      load8(xr + 8 * j, l, h);
      l -= vm[2 * j];
      h -= vm[2 * j + 1];
      va[2 * j] += l * l;
      va[2 * j + 1] += h * h;
    }
    for (int d = wv; d < w; ++d) {
      const double e = double(xr[d]) - tmean[d];
      acc[d] += e * e;
    }
  }
  chan_merge(mean, m2, count, tmean, acc, n, w);
}

__attribute__((target("avx2,fma"))) void tile_stats_avx2(const float* const* rows, int n, int f0,
                                                        int w, double* acc, double* tmean,
                                                        long long count, double* mean, double* m2,
                                                        std::ptrdiff_t pf) {
  tile_stats_v8(rows, n, f0, w, acc, tmean, count, mean, m2, pf);
}
void tile_stats_baseline(const float* const* rows, int n, int f0, int w, double* acc,
                         double* tmean, long long count, double* mean, double* m2,
                         std::ptrdiff_t pf) {
  tile_stats_v8(rows, n, f0, w, acc, tmean, count, mean, m2, pf);
}

// Rows [r0, r1) of batch_norm_apply_kernel, dispatched once per range: y = (x − mu)·a + be
// (an FMA on the AVX2 path, by contraction).
[[gnu::always_inline]] inline void apply_rows_v8(float* out, const float* x, std::size_t r0,
                                                 std::size_t r1, int T, int D, const int* lengths,
                                                 const float* mu, const float* a, const float* be,
                                                 bool stream) {
  for (std::size_t r = r0; r < r1; ++r) {
    if (lengths && int(r % T) >= lengths[r / T]) continue;
    const float* xr = x + r * D;  // [D]
    kernels::write_row(out + r * D, D, stream,
                       [&](int d) { return (xr[d] - mu[d]) * a[d] + be[d]; });
  }
}
__attribute__((target("avx2,fma"))) void apply_rows_avx2(float* out, const float* x,
                                                        std::size_t r0, std::size_t r1, int T,
                                                        int D, const int* lengths, const float* mu,
                                                        const float* a, const float* be,
                                                        bool stream) {
  apply_rows_v8(out, x, r0, r1, T, D, lengths, mu, a, be, stream);
}
void apply_rows_baseline(float* out, const float* x, std::size_t r0, std::size_t r1, int T, int D,
                         const int* lengths, const float* mu, const float* a, const float* be,
                         bool stream) {
  apply_rows_v8(out, x, r0, r1, T, D, lengths, mu, a, be, stream);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// AVX-512 path (FMA): the same 16 fixed segments and the same merge of their partials in index
// order; each segment's statistics in one streaming pass (block_stats_avx512), the apply pass
// through the shared streaming writer.
NORMCHECK_AVX512_BEGIN

namespace {

namespace v16 = kernels::avx512;

// The mean and M2 of every feature over n selected rows (rows[0..n), D features each: on this
// path a whole segment), merged into the running (count, mean[D], m2[D]) of the caller. One pass over the rows in
// memory order, in double, each sum over the rows in index order, eight rows per step:
// s0 = Σx gives the mean (s0·fl(1/n): summed as the reference sums, so ±1e30 values that cancel
// leave the small ones in, which a shifted sum would absorb); with p the first row,
// s1 = Σ(x − p) and s2 = Σ(x − p)² (FMA) give M2 = max(0, fma(−s1·s1, fl(1/n), s2)). Shifting by
// one of the rows' own values bounds the cancellation in s2 − s1²/n ((mean − p)² ≤ M2: at most
// a factor n on double's rounding), a constant feature gives exactly M2 = 0, and the rows are
// read once, as one stream. sc: scratch of 4·D16 doubles (D16 = D rounded up to 16), 64-byte aligned.
void block_stats_avx512(const float* const* rows, int n, int D, double* __restrict sc,
                        long long count, double* mean, double* m2) {
  const int D16 = (D + 15) / 16 * 16;
  double* __restrict piv = sc;
  double* __restrict s0 = sc + D16;
  double* __restrict s1 = sc + 2 * D16;
  double* __restrict s2 = sc + 3 * D16;
  auto load = [&](const float* p, int c, __m512d& lo, __m512d& hi) {  // [c, c + 16) of a row
    const __mmask16 k = c + 16 <= D ? __mmask16(0xFFFF) : v16::head_mask(D - c);
    lo = _mm512_cvtps_pd(_mm256_maskz_loadu_ps(__mmask8(k), p + c));
    hi = _mm512_cvtps_pd(_mm256_maskz_loadu_ps(__mmask8(k >> 8), p + c + 8));
  };
  const __m512d zero = _mm512_setzero_pd();
  for (int c = 0; c < D16; c += 16) {
    __m512d lo, hi;
    load(rows[0], c, lo, hi);
    _mm512_store_pd(piv + c, lo);
    _mm512_store_pd(piv + c + 8, hi);
    for (double* a : {s0, s1, s2}) {
      _mm512_store_pd(a + c, zero);
      _mm512_store_pd(a + c + 8, zero);
    }
  }
  // one half (8 features) of a step: m rows added to s0, their x − p to s1 and squared into s2
  auto step = [&](const __m512d* x, int m, int c) {
    const __m512d p = _mm512_load_pd(piv + c);
    __m512d a0 = _mm512_load_pd(s0 + c), a1 = _mm512_load_pd(s1 + c), a2 = _mm512_load_pd(s2 + c);
    for (int r = 0; r < m; ++r) {
      const __m512d e = _mm512_sub_pd(x[r], p);
      a0 = _mm512_add_pd(a0, x[r]);
      a1 = _mm512_add_pd(a1, e);
      a2 = _mm512_fmadd_pd(e, e, a2);
    }
    _mm512_store_pd(s0 + c, a0);
    _mm512_store_pd(s1 + c, a1);
    _mm512_store_pd(s2 + c, a2);
  };
  constexpr int kStep = 8;
  int i = 0;
  for (; i + kStep <= n; i += kStep)
    for (int c = 0; c < D16; c += 16) {
      __m512d lo[kStep], hi[kStep];
      for (int r = 0; r < kStep; ++r) {
        v16::prefetch_ahead(rows[i + r] + c);
        load(rows[i + r], c, lo[r], hi[r]);
      }
      step(lo, kStep, c);
      step(hi, kStep, c + 8);
    }
  for (; i < n; ++i)
    for (int c = 0; c < D16; c += 16) {
      __m512d lo, hi;
      load(rows[i], c, lo, hi);
      step(&lo, 1, c);
      step(&hi, 1, c + 8);
    }
  const __m512d inv = _mm512_set1_pd(1.0 / double(n));
  for (int c = 0; c < D16; c += 8) {
    const __m512d a = _mm512_load_pd(s1 + c);
    _mm512_store_pd(s2 + c, _mm512_max_pd(zero, _mm512_fnmadd_pd(_mm512_mul_pd(a, a), inv,
                                                                 _mm512_load_pd(s2 + c))));
    _mm512_store_pd(s0 + c, _mm512_mul_pd(_mm512_load_pd(s0 + c), inv));
  }
  chan_merge(mean, m2, count, s0, s2, n, D);
}

void apply_rows_avx512(float* out, const float* x, std::size_t r0, std::size_t r1, int T, int D,
                       const int* lengths, const float* mu, const float* a, const float* be,
                       bool stream) {
  // y = (x − μ)·a + β, one rounding for the multiply-add: both loops below compute it by this
  const auto apply = [](__m512 xv, __m512 m, __m512 av, __m512 bv) {
    return _mm512_fmadd_ps(_mm512_sub_ps(xv, m), av, bv);
  };
  std::size_t r = r0;
  // Whole 64-byte-aligned rows without a padding mask go four at a time: each vector of μ, a
  // and β is loaded once for four rows (at D = 4096 the three are 48 KB, which row by row
  // missed L1 for every output vector, beside x).
  if (!lengths && D % 16 == 0 && (reinterpret_cast<std::uintptr_t>(out) & 63) == 0)
    for (; r + 4 <= r1; r += 4)
      for (int d = 0; d < D; d += 16) {
        const __m512 m = _mm512_loadu_ps(mu + d), av = _mm512_loadu_ps(a + d),
                     bv = _mm512_loadu_ps(be + d);
        for (std::size_t k = 0; k < 4; ++k) {
          const float* xr = x + (r + k) * D + d;
          v16::prefetch_ahead(xr);
          const __m512 y = apply(_mm512_loadu_ps(xr), m, av, bv);
          if (stream)
            _mm512_stream_ps(out + (r + k) * D + d, y);
          else
            _mm512_store_ps(out + (r + k) * D + d, y);
        }
      }
  for (; r < r1; ++r) {
    if (lengths && int(r % T) >= lengths[r / T]) continue;
    const float* xr = x + r * D;  // [D]
    v16::write_row(out + r * D, D, stream, [&](int d, __mmask16 k) {
      v16::prefetch_ahead(xr + d);
      return apply(_mm512_maskz_loadu_ps(k, xr + d), _mm512_maskz_loadu_ps(k, mu + d),
                   _mm512_maskz_loadu_ps(k, a + d), _mm512_maskz_loadu_ps(k, be + d));
    });
  }
}

}  // namespace

NORMCHECK_AVX512_END

namespace {

// The raw kernels select positions by lengths (nullptr: every position).
const int* selection(const Batch& in, TokenSet tokens) {
  return tokens == TokenSet::valid_tokens ? in.lengths.data() : nullptr;
}

void check_kernel_batch(const char* kernel, const float* x, int B, int T, int D,
                        const int* lengths) {
  if (B <= 0 || T <= 0)
    throw InvalidInput(std::string(kernel) + ": B and T must be positive, got B = " +
                       std::to_string(B) + ", T = " + std::to_string(T));
  validate_rows(kernel, x, x, std::size_t(B) * T, D);
  if (lengths)
    for (int b = 0; b < B; ++b)
      if (lengths[b] < 0 || lengths[b] > T)
        throw InvalidInput(std::string(kernel) + ": lengths[" + std::to_string(b) + "] = " +
                           std::to_string(lengths[b]) + " is outside [0, T = " +
                           std::to_string(T) + "]");
}

}  // namespace

long long batch_norm_statistics_kernel(double* mean, double* var, const float* x, int B, int T,
                                       int D, const int* lengths) {
  check_kernel_batch("batch_norm_statistics_kernel", x, B, T, D, lengths);
  if (!mean || !var) throw InvalidInput("batch_norm_statistics_kernel: mean or var is null");
  long long n = 0;
  for (int b = 0; b < B; ++b) n += lengths ? lengths[b] : T;
  const std::size_t rows = std::size_t(B) * T;
  const int R = stat_block_rows(D);
  const std::size_t blocks = (rows + R - 1) / R;
  const int S = int(std::min<std::size_t>(blocks, kStatSegments));
  // per segment: count of selected rows, mean[D], M2[D]
  std::vector<long long> seg_n(S, 0);
  thread_local std::vector<double> seg_buf;  // reused across calls (kernels::reused_zeroed)
  double* const seg_mean = kernels::reused_zeroed(seg_buf, 2 * std::size_t(S) * D);
  double* const seg_m2 = seg_mean + std::size_t(S) * D;
  const KernelPath path = kernel_path();
#pragma omp parallel if (rows * D >= kernels::kParallelMinValues)
  {
    // the selected rows of a block (of a whole segment on the AVX-512 path)
    std::vector<const float*> sel(path == KernelPath::avx512 ? (blocks + S - 1) / S * R : R);
    alignas(64) double acc[kStatFeatures], tmean[kStatFeatures];
    // AVX-512 path: pivot, s0, s1, s2 of D16 doubles each, 64-byte aligned
    const std::size_t D16 = (std::size_t(D) + 15) / 16 * 16;
    std::vector<double> sc_buf(path == KernelPath::avx512 ? 4 * D16 + 8 : 0);
    double* sc = reinterpret_cast<double*>((reinterpret_cast<std::uintptr_t>(sc_buf.data()) + 63) & ~std::uintptr_t(63));
#pragma omp for schedule(static)
    for (int s = 0; s < S; ++s) {
      double* sm = seg_mean + std::size_t(s) * D;  // [D]
      double* s2 = seg_m2 + std::size_t(s) * D;    // [D]
      long long count = 0;
      const std::size_t end = blocks * (s + 1) / S;
      if (path == KernelPath::avx512) {
        // one pass needs no L2-sized blocks: the segment's rows are one block, so the per-block
        // work on the D-long sums (start, finish, merge) happens once per segment
        const std::size_t r0 = blocks * s / S * R, r1 = std::min(rows, end * R);
        for (std::size_t r = r0; r < r1; ++r)
          if (!lengths || int(r % T) < lengths[r / T]) sel[count++] = x + r * D;
        if (count > 0) block_stats_avx512(sel.data(), int(count), D, sc, 0, sm, s2);
        seg_n[s] = count;
        continue;
      }
      for (std::size_t blk = blocks * s / S; blk < end; ++blk) {
        const std::size_t r0 = blk * R, r1 = std::min(rows, r0 + R);
        // prefetch the next block of this segment while reading this one, when it is whole
        const std::ptrdiff_t pf = blk + 1 < end && r1 + R <= rows ? std::ptrdiff_t(R) * D : 0;
        int k = 0;
        for (std::size_t r = r0; r < r1; ++r)
          if (!lengths || int(r % T) < lengths[r / T]) sel[k++] = x + r * D;
        if (k == 0) continue;
        for (int f0 = 0; f0 < D; f0 += kStatFeatures)
          if (path == KernelPath::avx2)
            tile_stats_avx2(sel.data(), k, f0, std::min(kStatFeatures, D - f0), acc, tmean, count,
                            sm + f0, s2 + f0, pf);
          else
            tile_stats_baseline(sel.data(), k, f0, std::min(kStatFeatures, D - f0), acc, tmean,
                                count, sm + f0, s2 + f0, pf);
        count += k;
      }
      seg_n[s] = count;
    }
  }
  // the segments' partials, merged in index order
  long long count = 0;
  for (int s = 0; s < S; ++s) {
    if (seg_n[s] == 0) continue;
    chan_merge(mean, var, count, seg_mean + std::size_t(s) * D, seg_m2 + std::size_t(s) * D,
               seg_n[s], D);
    count += seg_n[s];
  }
  if (n == 0) {
    std::fill(mean, mean + D, 0.0);
    std::fill(var, var + D, 0.0);
  } else {
    for (int d = 0; d < D; ++d) var[d] = var[d] / double(n);
  }
  return n;
}

void batch_norm_apply_kernel(float* out, const float* x, int B, int T, int D, const int* lengths,
                             const float* mu, const float* a, const float* be) {
  check_kernel_batch("batch_norm_apply_kernel", x, B, T, D, lengths);
  if (!out || !mu || !a || !be)
    throw InvalidInput("batch_norm_apply_kernel: out, mu, a or be is null");
  const std::size_t rows = std::size_t(B) * T;
  // large outputs through non-temporal stores (kernels.hpp): same values, no read of y
  const bool stream = rows * D * sizeof(float) >= kernels::kStreamMinBytes;
  const KernelPath path = kernel_path();
  kernels::for_each_row_range(rows, std::size_t(D), [&](std::size_t r0, std::size_t r1) {
    if (path == KernelPath::avx512)
      apply_rows_avx512(out, x, r0, r1, T, D, lengths, mu, a, be, stream);
    else if (path == KernelPath::avx2)
      apply_rows_avx2(out, x, r0, r1, T, D, lengths, mu, a, be, stream);
    else
      apply_rows_baseline(out, x, r0, r1, T, D, lengths, mu, a, be, stream);
  });
}

void batch_feature_stats(const Batch& in, TokenSet tokens, long long, std::vector<double>& mean,
                         std::vector<double>& var) {
  batch_norm_statistics_kernel(mean.data(), var.data(), in.x.data(), in.B, in.T, in.D,
                               selection(in, tokens));
}

void batch_norm_train_kernel(float* out, double* running_mean, double* running_var,
                             const float* x, const float* gamma, const float* beta,
                             std::size_t rows, int D, double eps, double momentum) {
  // one sequence of `rows` tokens, none of them padding: the registry path's own kernels
  if (rows < 2) throw InvalidInput("batch_norm_train_kernel: expected more than 1 value per channel");
  std::vector<double> mean(D), var(D);
  const long long n = batch_norm_statistics_kernel(mean.data(), var.data(), x, 1, int(rows), D, nullptr);
  std::vector<float> mu(D), a(D), be(D);
  for (int d = 0; d < D; ++d) {
    mu[d] = float(mean[d]);
    a[d] = float((gamma ? gamma[d] : 1.0) / std::sqrt(var[d] + eps));
    be[d] = beta ? beta[d] : 0.0f;
  }
  batch_norm_apply_kernel(out, x, 1, int(rows), D, nullptr, mu.data(), a.data(), be.data());
  update_running(running_mean, running_var, mean.data(), var.data(), D, n, momentum);
}

void batch_norm_optimized(const Batch& in, const Params& p, Mode mode, State* state, Output& out,
                          TokenSet tokens) {
  const long long n = check_inputs(in, p, mode, state, tokens);
  const int D = in.D;
  std::vector<double> mean(D), var(D);
  if (mode == Mode::train)
    batch_norm_statistics_kernel(mean.data(), var.data(), in.x.data(), in.B, in.T, D,
                                 selection(in, tokens));
  else {
    mean = state->running_mean;
    var = state->running_var;
  }
  // y = (x − μ)·a + β with a = γ/√(σ²+ε), per feature, in float
  std::vector<float> mu(D), a(D), be(D);
  for (int d = 0; d < D; ++d) {
    mu[d] = float(mean[d]);
    // the scale in double: σ² of a batch holding 1e30 padding overflows float
    a[d] = float((p.gamma.empty() ? 1.0 : p.gamma[d]) / std::sqrt(var[d] + p.eps));
    be[d] = p.beta.empty() ? 0.0f : p.beta[d];
  }
  std::vector<float> y(in.x.size(), 0.0f);  // masked_batch_norm: padding stays 0
  batch_norm_apply_kernel(y.data(), in.x.data(), in.B, in.T, D, selection(in, tokens), mu.data(),
                          a.data(), be.data());
  out.assign(y.begin(), y.end());
  if (mode == Mode::train)
    update_running(state->running_mean.data(), state->running_var.data(), mean.data(), var.data(),
                   D, n, p.momentum);
}

// ---------------------------------------------------------------------------------------------
// backward optimized: the per-feature sums Σ dy and Σ dy·(x − μ) in double over fixed row
// segments (kernels::reduce_row_segments: the same bits at any thread count), then one
// elementwise pass over independent rows in float: dx = a·((dy − c1) − (x − μ)·c2) with
// a = γ·rstd, c1 = dβ/n, c2 = rstd·dγ/n per feature (train), dx = a·dy (eval).
// Limit, as the forward's: x − μ in float, so inputs near ±FLT_MAX with batch statistics give
// inf.

namespace {

// Adds Σ dy·(x − μ) to acc_c and Σ dy to acc_b [D] over the selected rows of [r0, r1), in row
// order. Lane-wise over features, so the AVX2 and baseline clones give the same bits.
__attribute__((target_clones("avx2", "default")))
void batch_norm_backward_sums_rows(const float* dy, const float* x, std::size_t r0, std::size_t r1, int T,
                        int D, const int* lengths, const double* mean, double* acc_c,
                        double* acc_b) {
  for (std::size_t r = r0; r < r1; ++r) {
    if (lengths && int(r % T) >= lengths[r / T]) continue;
    const float* xr = x + r * D;    // [D]
    const float* dyr = dy + r * D;  // [D]
    for (int d = 0; d < D; ++d) {
      const double g = dyr[d];
      acc_b[d] += g;
      acc_c[d] += g * (double(xr[d]) - mean[d]);
    }
  }
}

// dx of the rows [r0, r1); 0 at rows that are not selected.
__attribute__((target_clones("avx2", "default")))
void batch_norm_backward_apply_rows(float* dx, const float* dy, const float* x, std::size_t r0,
                         std::size_t r1, int T, int D, const int* lengths, const float* mu,
                         const float* a, const float* c1, const float* c2, bool train) {
  for (std::size_t r = r0; r < r1; ++r) {
    float* o = dx + r * D;            // [D]
    const float* xr = x + r * D;      // [D]
    const float* dyr = dy + r * D;    // [D]
    if (lengths && int(r % T) >= lengths[r / T])
      std::fill(o, o + D, 0.0f);
    else if (train)
      for (int d = 0; d < D; ++d) o[d] = a[d] * ((dyr[d] - c1[d]) - (xr[d] - mu[d]) * c2[d]);
    else
      for (int d = 0; d < D; ++d) o[d] = a[d] * dyr[d];
  }
}

}  // namespace

void batch_norm_backward_kernel(float* dx, float* dgamma, float* dbeta, const float* dy,
                                const float* x, const float* gamma, int B, int T, int D,
                                const int* lengths, const double* mean, const double* var,
                                double eps, bool train) {
  const char* name = "batch_norm_backward_kernel";
  check_kernel_batch(name, x, B, T, D, lengths);
  for (auto [ptr, what] : {std::pair{(const void*)dx, "dx"}, std::pair{(const void*)dy, "dy"},
                           std::pair{(const void*)mean, "mean"}, std::pair{(const void*)var, "var"}})
    if (!ptr) throw InvalidInput(std::string(name) + ": " + what + " is null");
  validate_eps(eps);
  long long n = 0;
  for (int b = 0; b < B; ++b) n += lengths ? lengths[b] : T;
  if (train && n < 2)
    throw InvalidInput(std::string(name) + ": expected more than 1 value per channel when "
                       "training, got " + std::to_string(n));
  std::vector<double> sums(2 * std::size_t(D));  // [2, D]: Σ dy·(x − μ), Σ dy
  batch_norm_backward_sums(sums.data(), dy, x, B, T, D, lengths, mean);
  batch_norm_backward_apply(dx, dgamma, dbeta, sums.data(), n, dy, x, gamma, B, T, D, lengths,
                            mean, var, eps, train);
}

void batch_norm_backward_sums(double* sums, const float* dy, const float* x, int B, int T, int D,
                              const int* lengths, const double* mean) {
  const std::size_t rows = std::size_t(B) * T;
  kernels::reduce_row_segments(rows, D, 2 * std::size_t(D), sums,
                               [&](std::size_t r0, std::size_t r1, double* acc) {
                                 batch_norm_backward_sums_rows(dy, x, r0, r1, T, D, lengths, mean, acc,
                                                    acc + D);
                               });
}

void batch_norm_backward_apply(float* dx, float* dgamma, float* dbeta, const double* sums,
                               long long n, const float* dy, const float* x, const float* gamma,
                               int B, int T, int D, const int* lengths, const double* mean,
                               const double* var, double eps, bool train) {
  const std::size_t rows = std::size_t(B) * T;
  std::vector<float> mu(D), a(D), c1(D, 0.0f), c2(D, 0.0f);  // [D] each
  for (int d = 0; d < D; ++d) {
    const double rstd = 1.0 / std::sqrt(var[d] + eps);
    const double dg = sums[d] * rstd, db = sums[D + d];  // Σ dy·x̂, Σ dy
    mu[d] = float(mean[d]);
    a[d] = float((gamma ? gamma[d] : 1.0) * rstd);
    if (train) {
      c1[d] = float(db / double(n));
      c2[d] = float(dg * rstd / double(n));
    }
    if (dgamma) dgamma[d] = float(dg);
    if (dbeta) dbeta[d] = float(db);
  }
  kernels::for_each_row_range(rows, std::size_t(D), [&](std::size_t r0, std::size_t r1) {
    batch_norm_backward_apply_rows(dx, dy, x, r0, r1, T, D, lengths, mu.data(), a.data(), c1.data(),
                        c2.data(), train);
  });
}

void batch_norm_backward_optimized(const Batch& in, const Params& p, Mode mode, const State* state,
                                   const std::vector<float>& dy, Grads& out, TokenSet tokens) {
  check_inputs(in, p, mode, state, tokens);
  validate_dy(in, dy);
  const int D = in.D;
  std::vector<double> mean(D), var(D);
  if (mode == Mode::train)  // the forward's statistics, bit for bit
    batch_norm_statistics_kernel(mean.data(), var.data(), in.x.data(), in.B, in.T, D,
                                 selection(in, tokens));
  else {
    mean = state->running_mean;
    var = state->running_var;
  }
  run_affine_backward(p, in.x.size(), out, [&](float* dx, float* dg, float* db, const float* g) {
    batch_norm_backward_kernel(dx, dg, db, dy.data(), in.x.data(), g, in.B, in.T, D,
                               selection(in, tokens), mean.data(), var.data(), p.eps,
                               mode == Mode::train);
  });
}

Conditioning batch_norm_conditioning(const Batch& in, const Params& p, Mode mode,
                                     const State* state, TokenSet tokens) {
  validate_batch(in);
  const int D = in.D;
  std::vector<double> cond(D, 0.0), eps_rel(D, 0.0), inv_std(D, 0.0);
  if (mode == Mode::train) {
    const long long n = count_selected(in, tokens);
    std::vector<double> mean(D, 0.0), var(D, 0.0);
    if (n > 1)
      batch_norm_statistics_kernel(mean.data(), var.data(), in.x.data(), in.B, in.T, D,
                                   selection(in, tokens));
    for (int d = 0; d < D; ++d) {
      cond[d] = std::abs(mean[d]) / std::sqrt(var[d] + p.eps);
      eps_rel[d] = var[d] > 0 ? std::min(1.0, p.eps / (2 * var[d])) : 1.0;
      inv_std[d] = 1.0 / std::sqrt(var[d] + p.eps);
    }
  } else if (state && state->running_mean.size() == std::size_t(D)) {
    for (int d = 0; d < D; ++d) {  // running statistics do not move with the input: no ε term
      cond[d] = std::abs(state->running_mean[d]) / std::sqrt(state->running_var[d] + p.eps);
      inv_std[d] = 1.0 / std::sqrt(state->running_var[d] + p.eps);
    }
  }
  Conditioning c;
  c.cond.resize(in.x.size());
  c.eps_rel.resize(in.x.size());
  c.inv_std.assign(in.x.size(), 0.0);  // 0 where a position is not selected: nothing reaches it
  for (std::size_t i = 0; i < in.x.size(); ++i) {
    c.cond[i] = cond[i % D];
    c.eps_rel[i] = eps_rel[i % D];
    if (selected(in, int(i / D / in.T), int(i / D % in.T), tokens)) c.inv_std[i] = inv_std[i % D];
  }
  return c;
}

ForwardFn batch_norm_forward(Impl impl, TokenSet tokens) {
  return [impl, tokens](const Batch& in, const Params& p, Mode m, State* s, Output& o) {
    (impl == Impl::reference ? batch_norm_reference : batch_norm_optimized)(in, p, m, s, o, tokens);
  };
}

BackwardFn batch_norm_backward(Impl impl, TokenSet tokens) {
  return [impl, tokens](const Batch& in, const Params& p, Mode m, const State* s,
                        const std::vector<float>& dy, Grads& g) {
    (impl == Impl::reference ? batch_norm_backward_reference
                             : batch_norm_backward_optimized)(in, p, m, s, dy, g, tokens);
  };
}

ConditioningFn batch_norm_conditioning(TokenSet tokens) {
  return [tokens](const Batch& in, const Params& p, Mode m, const State* s) {
    return batch_norm_conditioning(in, p, m, s, tokens);
  };
}

RowProfile frozen_affine_eval_row() {
  return {Mode::eval, scale_and_shift_invariances(),
          "a fixed per-feature affine map: nothing is re-normalized"};
}

LayerEntry batch_norm_family(std::string name, std::string formula, std::string statistics_over,
                             TokenSet tokens, std::set<std::string> train, std::string why) {
  return {.name = std::move(name), .formula = std::move(formula),
          .statistics_over = std::move(statistics_over), .params = {.momentum = true},
          .rows = {{Mode::train, std::move(train), std::move(why)}, frozen_affine_eval_row()},
          .reference = batch_norm_forward(Impl::reference, tokens),
          .optimized = batch_norm_forward(Impl::optimized, tokens),
          .conditioning = batch_norm_conditioning(tokens),
          .backward_reference = batch_norm_backward(Impl::reference, tokens),
          .backward_optimized = batch_norm_backward(Impl::optimized, tokens)};
}

LayerEntry batch_norm_entry() {
  return batch_norm_family(
      "batch_norm", "γ·(x−μ_d)/√(σ_d²+ε) + β; train: batch μ, σ² (biased); eval: running stats",
      "all B·T tokens, padding included (the naive use)", TokenSet::all_positions,
      {"batch_independence", "padding_invariance", "token_independence", "causality",
       "train_inference_equivalence", "streaming_equivalence", "token_scale_invariance",
       "token_shift_invariance", "nan_containment", "shard_invariance"},
      "batch statistics: every output depends on every position of the batch, padding included "
      "(a shard's own statistics differ from the batch's)");
}

}  // namespace normcheck
