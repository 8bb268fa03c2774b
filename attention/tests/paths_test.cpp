// The optimized kernel's instruction-set paths.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "attention/tests/test_util.hpp"

namespace normcheck {
namespace {

using namespace test;

// The tolerance rule (docs/PROPERTIES.md; properties/compare.hpp, a folder this one may not
// include): |a − b| ≤ 1e-5 + 2e-6·cond + 1e-5·|b|, b the reference.
double rule(double b, double cond) { return 1e-5 + 2e-6 * cond + 1e-5 * std::abs(b); }

// The OpenMP thread count for one scope, restored when it ends (an ASSERT leaves early).
struct Threads {
  explicit Threads(int n) : previous(omp_get_max_threads()) { omp_set_num_threads(n); }
  ~Threads() { omp_set_num_threads(previous); }
  int previous;
};

// sdpa_use_path(best) when the test ends, however it ends: a failed ASSERT must not leave a
// narrower path selected for the tests that run after it in the same process.
struct BestPathAfterwards {
  ~BestPathAfterwards() { sdpa_use_path(SdpaPath::best); }
};

// Every instruction-set path this CPU has (sdpa_use_path): the paths round differently (FMA,
// lane counts, the AVX-512 decode kernel), so instead of comparing them with each other each
// one must (1) agree with the double reference within the tolerance rule — outputs with the
// attention's conditioning, weights with the logit bound L — and (2) keep its own bits for 1, 2
// and 3 threads and for a sequence alone or inside a batch. Shapes cover full and partial
// blocks and tiles, tails of dh and dv, masks, decode (Tq = 1) and heads wider than the AVX-512
// kernel takes (dh = 130: its 8-lane fallback).
//
// The rule's 2e-6·cond stands for (dh + 2)·u·cond (float32 logits off by at most (dh + 2)·u·L,
// properties/sdpa_properties.cpp), which it bounds for dh ≤ 31; wider heads get that same bound.
TEST(SdpaPaths, EveryPathAgreesWithTheReferenceAndKeepsItsBitsAcrossThreadsAndBatches) {
  const BestPathAfterwards restore;
  std::mt19937 rng(12);
  int paths = 0;
  for (SdpaPath path : {SdpaPath::baseline, SdpaPath::avx2, SdpaPath::avx512}) {
    if (!sdpa_use_path(path)) continue;
    ++paths;
    for (int t = 0; t < 40; ++t) {
      SdpaShape s;
      s.B = 1 + int(rng() % 3);
      s.H = 1 + int(rng() % 2);
      s.Tk = 1 + int(rng() % 150);
      s.Tq = t % 4 == 0 ? 1 : 1 + int(rng() % 100);
      s.dh = t % 3 == 0 ? 64 : t == 7 ? 130 : 1 + int(rng() % 70);
      s.dv = t % 3 == 0 ? 64 : 1 + int(rng() % 70);
      SdpaMask m;
      m.causal = rng() % 2;
      if (rng() % 2)
        for (int b = 0; b < s.B; ++b) m.key_lengths.push_back(int(rng() % (s.Tk + 1)));
      const Qkv x = random_qkv(s, 100 + t);
      const double scale = default_scale(s.dh);
      SCOPED_TRACE("path " + std::to_string(int(path)) + ", case " + std::to_string(t) + ": B " +
                   std::to_string(s.B) + " H " + std::to_string(s.H) + " Tq " + std::to_string(s.Tq) +
                   " Tk " + std::to_string(s.Tk) + " dh " + std::to_string(s.dh) + " dv " +
                   std::to_string(s.dv) + (m.causal ? " causal" : ""));
      auto run = [&](int threads) {
        const Threads scope(threads);
        std::pair<std::vector<float>, std::vector<float>> r;
        sdpa_optimized(r.first, &r.second, x.q, x.k, x.v, s, m, scale);
        return r;
      };
      const auto one = run(1);

      // (1) the reference, within the tolerance rule
      std::vector<double> ref, ref_w;
      sdpa_reference(ref, &ref_w, x.q, x.k, x.v, s, m, scale);
      const double wide = std::max(1.0, (s.dh + 2) / 33.0);
      for (int b = 0; b < s.B; ++b)
        for (int h = 0; h < s.H; ++h)
          for (int i = 0; i < s.Tq; ++i) {
            const std::size_t bh = std::size_t(b) * s.H + h, row = bh * s.Tq + i;
            const int n = visible_keys(s, m, b, i);
            double L = 0;  // scale·max_j Σ_d |q_d|·|k_jd|
            for (int j = 0; j < n; ++j) {
              double a = 0;
              for (int d = 0; d < s.dh; ++d)
                a += std::abs(double(x.q[row * s.dh + d]) * x.k[(bh * s.kv_rows() + j) * s.dh + d]);
              L = std::max(L, scale * a);
            }
            for (int c = 0; c < s.dv; ++c) {
              const double o = ref[row * s.dv + c];
              double spread = 0;  // Σ_j w_j·|v_jc − o_c|
              for (int j = 0; j < n; ++j)
                spread += ref_w[row * s.Tk + j] * std::abs(x.v[(bh * s.kv_rows() + j) * s.dv + c] - o);
              ASSERT_LE(std::abs(one.first[row * s.dv + c] - o), rule(o, 2 * L * spread * wide))
                  << "out (" << b << ", " << h << ", " << i << ", " << c << ")";
            }
            for (int j = 0; j < s.Tk; ++j) {
              const double w = ref_w[row * s.Tk + j];
              ASSERT_LE(std::abs(one.second[row * s.Tk + j] - w), rule(w, L))
                  << "weight (" << b << ", " << h << ", " << i << ", " << j << ")";
            }
          }

      // (2) its own bits: other thread counts
      for (int threads : {2, 3}) {
        const auto many = run(threads);
        ASSERT_EQ(std::memcmp(many.first.data(), one.first.data(), one.first.size() * sizeof(float)), 0)
            << "outputs, " << threads << " threads";
        ASSERT_EQ(std::memcmp(many.second.data(), one.second.data(), one.second.size() * sizeof(float)), 0)
            << "weights, " << threads << " threads";
      }
      // and the last sequence alone (batch of one) against its place in the batch
      const int b = s.B - 1;
      SdpaShape s1 = s;
      s1.B = 1;
      SdpaMask m1 = m;
      if (!m.key_lengths.empty()) m1.key_lengths = {m.key_lengths[b]};
      auto tail = [&](const std::vector<float>& v, std::size_t per_b) {
        return std::vector<float>(v.end() - std::ptrdiff_t(per_b), v.end());
      };
      std::vector<float> alone, alone_w;
      sdpa_optimized(alone, &alone_w, tail(x.q, s.q_size() / s.B), tail(x.k, s.k_size() / s.B),
                     tail(x.v, s.v_size() / s.B), s1, m1, scale);
      ASSERT_EQ(std::memcmp(alone.data(), tail(one.first, alone.size()).data(), alone.size() * sizeof(float)), 0)
          << "sequence " << b << " alone vs in the batch, outputs";
      ASSERT_EQ(std::memcmp(alone_w.data(), tail(one.second, alone_w.size()).data(), alone_w.size() * sizeof(float)), 0)
          << "sequence " << b << " alone vs in the batch, weights";
    }
  }
  EXPECT_GE(paths, 1);
}

// Large logits on every path: the running max is taken over the rounded values s·scale, so each
// exponent s·scale − m must be computed from those same rounded values. Computed unrounded (an
// FMA), it can be positive by up to half an ulp of s·scale — e^128 once logits pass about 1e10 —
// and the sum of p overflows to inf: NaN outputs for finite inputs. Logits from 1e2 to 1e30, in
// prefill and decode, each key's value distinct: every output must be finite, and where one key
// dominates (its logit ahead by far more than any rounding) it must be that key's value.
TEST(SdpaPaths, LargeLogitsGiveFiniteOutputsOnEveryPath) {
  const BestPathAfterwards restore;
  int paths = 0;
  for (SdpaPath path : {SdpaPath::baseline, SdpaPath::avx2, SdpaPath::avx512}) {
    if (!sdpa_use_path(path)) continue;
    ++paths;
    for (int Tq : {1, 2, 17}) {
      for (int Tk : {1, 3, 70}) {
        for (double magnitude = 1e1; magnitude <= 1e15; magnitude *= 10) {
          SdpaShape s;
          s.Tq = Tq;
          s.Tk = Tk;
          s.dh = 2;
          s.dv = 2;
          // q = k_last = magnitude: the last key's logit is magnitude²·2·scale, every other key's
          // a tenth of that or less
          std::vector<float> q(std::size_t(Tq) * 2, float(magnitude)), k(std::size_t(Tk) * 2),
              v(std::size_t(Tk) * 2);
          for (int j = 0; j < Tk; ++j) {
            const float kj = j == Tk - 1 ? float(magnitude) : float(magnitude / 10 / (j + 1));
            k[j * 2] = k[j * 2 + 1] = kj;
            v[j * 2] = float(j + 1);
            v[j * 2 + 1] = -float(j + 1);
          }
          std::vector<float> out, w;
          sdpa_optimized(out, &w, q, k, v, s, SdpaMask{}, default_scale(s.dh));
          SCOPED_TRACE("path " + std::to_string(int(path)) + ", Tq " + std::to_string(Tq) + ", Tk " +
                       std::to_string(Tk) + ", |q| = |k| = " + std::to_string(magnitude));
          for (int i = 0; i < Tq; ++i) {
            ASSERT_TRUE(std::isfinite(out[i * 2]) && std::isfinite(out[i * 2 + 1]))
                << "query " << i << ": " << out[i * 2] << ", " << out[i * 2 + 1];
            if (magnitude >= 1e3) {  // the last key's logit is ahead by ≥ 0.9·1e6·√2
              EXPECT_EQ(out[i * 2], float(Tk)) << "query " << i;
              EXPECT_EQ(out[i * 2 + 1], -float(Tk)) << "query " << i;
            }
          }
        }
      }
    }
  }
  EXPECT_GE(paths, 1);
}

}  // namespace
}  // namespace normcheck
