// Unit tests of attention, the KV cache and the block, with the regression cases from real
// bugs (fully masked rows, top-left causal alignment, poison leaking through masks), and the
// check that the optimized kernel holds no T×T buffer. The matrix cells run in
// normcheck_property_tests (properties/tests/matrix_test.cpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>

#include "attention/block.hpp"
#include "attention/cells.hpp"
#include "attention/check.hpp"
#include "attention/mha.hpp"

// ---------------------------------------------------------------------------------------------
// A counting heap: this binary interposes glibc's malloc family (operator new, std::vector,
// Eigen's aligned_malloc and the OpenMP runtime all end there) and keeps the live heap bytes
// and their peak. The library is compiled with -Werror=vla and the kernels use no alloca, so a
// buffer that grows with T cannot hide on the stack either.

#include <malloc.h>

// Under AddressSanitizer the sanitizer owns malloc: interposing it there crashes the binary, so
// the sanitizer build skips the measurement (it runs in every normal build and in CI's release
// run) and keeps only the counters.
#if defined(__SANITIZE_ADDRESS__)
#define NORMCHECK_COUNTING_HEAP 0
#else
#define NORMCHECK_COUNTING_HEAP 1
#endif

namespace heap {
constinit std::atomic<long long> live{0}, peak{0};

void add(void* p) {
  if (!p) return;
  const long long now = live += (long long)malloc_usable_size(p);
  long long pk = peak.load();
  while (now > pk && !peak.compare_exchange_weak(pk, now)) {
  }
}
void sub(void* p) {
  if (p) live -= (long long)malloc_usable_size(p);
}

// Peak heap growth while f runs, over the bytes live when it starts.
template <class F>
long long peak_growth(F&& f) {
  const long long base = live.load();
  peak.store(base);
  f();
  return peak.load() - base;
}
}  // namespace heap

#if NORMCHECK_COUNTING_HEAP
extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);
void __libc_free(void*);

void* malloc(std::size_t n) {
  void* p = __libc_malloc(n);
  heap::add(p);
  return p;
}
void* calloc(std::size_t n, std::size_t size) {
  void* p = __libc_calloc(n, size);
  heap::add(p);
  return p;
}
void* realloc(void* old, std::size_t n) {
  const long long before = old ? (long long)malloc_usable_size(old) : 0;
  void* p = __libc_realloc(old, n);
  if (p || n == 0) heap::live -= before;  // moved or freed; on failure `old` is untouched
  heap::add(p);
  return p;
}
void free(void* p) {
  heap::sub(p);
  __libc_free(p);
}
void* memalign(std::size_t align, std::size_t n) {
  void* p = __libc_memalign(align, n);
  heap::add(p);
  return p;
}
void* aligned_alloc(std::size_t align, std::size_t n) { return memalign(align, n); }
int posix_memalign(void** out, std::size_t align, std::size_t n) {
  void* p = memalign(align, n);
  if (!p) return ENOMEM;
  *out = p;
  return 0;
}
}
#endif

namespace normcheck {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

std::vector<float> random_values(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = g(rng);
  return v;
}

struct Qkv {
  SdpaShape s;
  std::vector<float> q, k, v;
};

Qkv random_qkv(const SdpaShape& s, unsigned seed) {
  return {s, random_values(s.q_size(), seed), random_values(s.k_size(), seed + 1),
          random_values(s.v_size(), seed + 2)};
}

// Runs either implementation; outputs (and weights, if asked) widened to double.
std::vector<double> sdpa(Impl impl, const Qkv& x, const SdpaMask& m,
                         std::vector<double>* weights = nullptr) {
  std::vector<double> out;
  if (impl == Impl::reference) {
    sdpa_reference(out, weights, x.q, x.k, x.v, x.s, m, default_scale(x.s.dh));
  } else {
    std::vector<float> o, w;
    sdpa_optimized(o, weights ? &w : nullptr, x.q, x.k, x.v, x.s, m, default_scale(x.s.dh));
    out.assign(o.begin(), o.end());
    if (weights) weights->assign(w.begin(), w.end());
  }
  return out;
}

}  // namespace

void PrintTo(Impl i, std::ostream* os) { *os << to_string(i); }

namespace {

class BothImpls : public ::testing::TestWithParam<Impl> {};

std::string impl_name(const ::testing::TestParamInfo<Impl>& info) { return to_string(info.param); }

INSTANTIATE_TEST_SUITE_P(Attention, BothImpls,
                         ::testing::Values(Impl::reference, Impl::optimized), impl_name);

// Regression: a fully masked query row (softmax over nothing) gave NaN, and NaN in masked
// keys/values leaked into the other rows through 0·NaN.
TEST_P(BothImpls, FullyMaskedRowGivesZerosAndPoisonStaysOut) {
  Qkv x = random_qkv({2, 2, 3, 3, 4, 5, 0}, 1);
  SdpaMask m;
  m.key_lengths = {0, 2};  // sequence 0: every key is padding; sequence 1: key 2 is
  for (int h = 0; h < 2; ++h)
    for (int b = 0; b < 2; ++b)
      for (int t = m.key_lengths[b]; t < 3; ++t) {
        const std::size_t row = (std::size_t(b) * 2 + h) * 3 + t;
        std::fill_n(&x.k[row * 4], 4, kNaN);
        std::fill_n(&x.v[row * 5], 5, kNaN);
      }
  const auto out = sdpa(GetParam(), x, m);
  for (std::size_t i = 0; i < out.size(); ++i) {
    ASSERT_TRUE(std::isfinite(out[i])) << "out element " << i;
    if (i < out.size() / 2) {
      EXPECT_EQ(out[i], 0.0) << "fully masked row, element " << i;
    }
  }
}

// Causal with more queries than keys: the first queries see no key at all (bottom-right).
TEST_P(BothImpls, CausalQueriesBeforeEveryKeyGiveZeros) {
  const Qkv x = random_qkv({1, 1, 4, 2, 3, 3, 0}, 2);
  SdpaMask m;
  m.causal = true;
  const auto out = sdpa(GetParam(), x, m);
  for (int i = 0; i < 4; ++i)
    for (int c = 0; c < 3; ++c) {
      ASSERT_TRUE(std::isfinite(out[i * 3 + c]));
      if (i < 2) {
        EXPECT_EQ(out[i * 3 + c], 0.0) << "query " << i << " is before every key";
      }
    }
  EXPECT_NE(out[2 * 3], 0.0);
}

// Regression: a single decode query against a cache of L keys must see all L keys, not only
// key 0 (a causal mask aligned top-left).
TEST_P(BothImpls, SingleDecodeQuerySeesTheWholeCache) {
  const int L = 6;
  const Qkv all = random_qkv({1, 2, L, L, 4, 4, 0}, 3);
  KvCache<float> cache(1, 2, 4, 4, L);
  cache.append(all.k, all.v, L);
  Qkv step;
  step.s = cache.shape_for(1);
  step.q = random_values(step.s.q_size(), 9);
  step.k = cache.keys();
  step.v = cache.values();
  SdpaMask causal;
  causal.causal = true;
  std::vector<double> w;
  const auto out = sdpa(GetParam(), step, causal, &w);
  ASSERT_EQ(w.size(), std::size_t(2 * L));
  for (int h = 0; h < 2; ++h)
    for (int j = 0; j < L; ++j) EXPECT_GT(w[h * L + j], 0.0) << "head " << h << " key " << j;
  // and it is exactly attention over every key without a causal mask
  const auto open = sdpa(GetParam(), step, SdpaMask{});
  for (std::size_t i = 0; i < out.size(); ++i) EXPECT_EQ(out[i], open[i]) << i;
}

TEST_P(BothImpls, KvCacheOverflowIsAClearError) {
  KvCache<float> cache(1, 1, 2, 2, 3);
  cache.append(std::vector<float>(4, 1.0f), std::vector<float>(4, 1.0f), 2);
  try {
    cache.append(std::vector<float>(4, 1.0f), std::vector<float>(4, 1.0f), 2);
    FAIL() << "appending past the capacity must throw";
  } catch (const InvalidInput& e) {
    EXPECT_NE(std::string(e.what()).find("KV cache overflow: appending n = 2 tokens to a cache "
                                         "holding 2 of capacity 3"),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(cache.size(), 2) << "a rejected append must not change the cache";

  // through multi-head decoding as well
  MhaWeights w{4, 2, std::vector<float>(48, 0.1f), std::vector<float>(12, 0.0f),
               std::vector<float>(16, 0.1f), std::vector<float>(4, 0.0f)};
  const std::vector<float> x(4, 0.5f);
  if (GetParam() == Impl::optimized) {
    KvCache<float> c = mha_cache<float>(w, 1);
    std::vector<float> y;
    mha_decode_optimized(y, nullptr, w, x, 1, c);
    EXPECT_THROW(mha_decode_optimized(y, nullptr, w, x, 1, c), InvalidInput);
  } else {
    KvCache<double> c = mha_cache<double>(w, 1);
    std::vector<double> y, xd(x.begin(), x.end());
    mha_decode_reference(y, nullptr, w, xd, 1, c);
    EXPECT_THROW(mha_decode_reference(y, nullptr, w, xd, 1, c), InvalidInput);
  }
}

TEST_P(BothImpls, HeadsMustDivideTheEmbedDim) {
  MhaWeights w{16, 3, std::vector<float>(3 * 256, 0.1f), std::vector<float>(48, 0.0f),
               std::vector<float>(256, 0.1f), std::vector<float>(16, 0.0f)};
  const std::vector<float> x(2 * 16, 1.0f);
  try {
    if (GetParam() == Impl::optimized) {
      std::vector<float> y;
      mha_optimized(y, nullptr, w, x, x, 1, 2, 2, SdpaMask{});
    } else {
      std::vector<double> y, xd(x.begin(), x.end());
      mha_reference(y, nullptr, w, xd, xd, 1, 2, 2, SdpaMask{});
    }
    FAIL() << "heads = 3 with E = 16 must be rejected";
  } catch (const InvalidInput& e) {
    EXPECT_NE(std::string(e.what()).find("heads = 3 must divide E = 16"), std::string::npos)
        << e.what();
  }
}

TEST_P(BothImpls, InvalidShapesAndLengthsNameTheParameter) {
  const Qkv x = random_qkv({2, 1, 3, 3, 2, 2, 0}, 4);
  SdpaMask m;
  m.key_lengths = {3, 4};
  auto message = [&](const Qkv& in, const SdpaMask& mask) {
    try {
      sdpa(GetParam(), in, mask);
    } catch (const InvalidInput& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message(x, m).find("lengths[1] = 4 is outside [0, Tk = 3]"), std::string::npos);
  Qkv short_q = x;
  short_q.q.pop_back();
  EXPECT_NE(message(short_q, SdpaMask{}).find("q has 11 values, expected B*H*Tq*dh = 12"),
            std::string::npos);
  m.key_lengths = {3};
  EXPECT_NE(message(x, m).find("key lengths has 1 entries, expected B = 2"), std::string::npos);
}

// The weights the optimized kernel exposes are the ones it used: with V = identity the output
// rows are the weight rows.
TEST(Attention, ExposedWeightsAreTheKernelsOwn) {
  const int Tk = 7;
  Qkv x = random_qkv({2, 2, 5, Tk, 3, Tk, 0}, 5);
  std::fill(x.v.begin(), x.v.end(), 0.0f);
  for (int bh = 0; bh < 4; ++bh)
    for (int j = 0; j < Tk; ++j) x.v[(std::size_t(bh) * Tk + j) * Tk + j] = 1.0f;
  SdpaMask m;
  m.key_lengths = {7, 4};
  m.causal = true;
  std::vector<double> w;
  const auto out = sdpa(Impl::optimized, x, m, &w);
  ASSERT_EQ(out.size(), w.size());
  for (std::size_t i = 0; i < out.size(); ++i) EXPECT_NEAR(out[i], w[i], 1e-6) << i;
}

// ---------------------------------------------------------------------------------------------
// The optimized kernel's vectorized exp against std::exp: ≤ 2 ulp over a sweep of every range
// (normal results, subnormal results, underflow to 0, overflow to +inf), the special values
// handled like std::exp, and the same bits whether a value sits in a full 8-lane group or in
// the scalar tail.

// distance in units in the last place, counting across zero and into the subnormals
long long ulps(float a, float b) {
  auto key = [](float x) {
    std::int32_t i;
    std::memcpy(&i, &x, sizeof i);
    return i < 0 ? -(long long)(i & 0x7fffffff) : (long long)i;
  };
  return std::llabs(key(a) - key(b));
}

TEST(SdpaExp, WithinTwoUlpOfStdExpAndExactAtTheEdges) {
  std::vector<float> x;
  for (float t = -110.0f; t < 95.0f; t += std::max(1e-5f, 3e-6f * std::abs(t)))
    x.push_back(t);
  for (float t = -1e-3f; t < 1e-3f; t += 1.37e-7f) x.push_back(t);
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> edges = {0.0f, -0.0f, 1e-30f, -1e-30f, 1e-45f, 88.0f, 88.72283f,
                                    88.722839f, 88.7229f, 89.0f, 100.0f, -87.33654f, -87.34f,
                                    -100.0f, -103.27893f, -103.97208f, -103.9721f, -104.0f,
                                    -150.0f, 1e30f, -1e30f, std::numeric_limits<float>::max(),
                                    std::numeric_limits<float>::lowest(), inf, -inf, kNaN};
  x.insert(x.end(), edges.begin(), edges.end());
  ASSERT_GT(x.size(), 100000u);
  std::vector<float> y(x.size());
  sdpa_exp(x.data(), y.data(), x.size());
  long long worst = 0;
  float worst_x = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const float want = std::exp(x[i]);
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(y[i])) << "exp(" << x[i] << ") = " << y[i];
      continue;
    }
    if (std::isinf(want) || want == 0.0f) {
      EXPECT_EQ(y[i], want) << "exp(" << x[i] << ")";
      continue;
    }
    const long long u = ulps(y[i], want);
    if (u > worst) worst = u, worst_x = x[i];
  }
  EXPECT_LE(worst, 2) << "worst at x = " << worst_x;
  EXPECT_EQ(y[x.size() - 3], inf);
  EXPECT_EQ(y[x.size() - 2], 0.0f);
  EXPECT_TRUE(std::isnan(y.back()));
  // the kernel skips the online-softmax correction when the max did not change: e^±0 is 1
  const float zeros[2] = {0.0f, -0.0f};
  float ones[2];
  sdpa_exp(zeros, ones, 2);
  EXPECT_EQ(ones[0], 1.0f);
  EXPECT_EQ(ones[1], 1.0f);
  // one value at a time (the scalar tail) gives the same bits as inside an 8-lane group
  for (std::size_t i = 0; i < x.size(); i += 97) {
    float one;
    sdpa_exp(&x[i], &one, 1);
    if (std::isnan(y[i])) {
      EXPECT_TRUE(std::isnan(one));
    } else {
      EXPECT_EQ(std::memcmp(&one, &y[i], sizeof one), 0) << "x = " << x[i];
    }
  }
}

// Every instruction-set path this CPU has (sdpa_use_path): the paths round differently (FMA,
// lane counts, the AVX-512 decode kernel), so instead of comparing them with each other each
// one must (1) agree with the double reference within the tolerance rule — outputs with the
// attention's conditioning, weights with the logit bound L — and (2) keep its own bits for 1, 2
// and 3 threads and for a sequence alone or inside a batch. Shapes cover full and partial
// blocks and tiles, tails of dh and dv, masks, decode (Tq = 1) and heads wider than the AVX-512
// kernel takes (dh = 130: its 8-lane fallback).
//
// The rule's 2e-6·cond stands for (dh + 2)·u·cond (float32 logits off by at most (dh + 2)·u·L,
// attention/sdpa_cells.cpp), which it bounds for dh ≤ 31; wider heads get that same bound.
TEST(SdpaPaths, EveryPathAgreesWithTheReferenceAndKeepsItsBitsAcrossThreadsAndBatches) {
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
        check::ThreadScope scope(threads);
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
              ASSERT_LE(std::abs(one.first[row * s.dv + c] - o), check::rule(o, 2 * L * spread * wide))
                  << "out (" << b << ", " << h << ", " << i << ", " << c << ")";
            }
            for (int j = 0; j < s.Tk; ++j) {
              const double w = ref_w[row * s.Tk + j];
              ASSERT_LE(std::abs(one.second[row * s.Tk + j] - w), check::rule(w, L))
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
  sdpa_use_path(SdpaPath::best);
  EXPECT_GE(paths, 1);
}

// ---------------------------------------------------------------------------------------------
// No T×T buffer in the optimized kernel: its peak heap growth does not grow with T, while the
// reference (which materializes the scores) is measured holding at least T² doubles, which
// shows the measurement sees such a buffer.

TEST(NoQuadraticBuffer, OptimizedScratchDoesNotGrowWithT) {
  if (!NORMCHECK_COUNTING_HEAP)
    GTEST_SKIP() << "AddressSanitizer owns malloc here; the heap measurement runs in the release build";
  long long first = -1;
  for (int T : {256, 1024, 4096}) {
    const Qkv x = random_qkv({1, 1, T, T, 8, 8, 0}, 6);
    SdpaMask m;
    m.causal = true;
    std::vector<float> out(x.s.out_size());  // the caller's output, allocated beforehand
    sdpa_optimized(out, nullptr, x.q, x.k, x.v, x.s, m, default_scale(8));  // warm the thread pool
    const long long grown = heap::peak_growth(
        [&] { sdpa_optimized(out, nullptr, x.q, x.k, x.v, x.s, m, default_scale(8)); });
    const long long quadratic = (long long)T * T * (long long)sizeof(float);
    EXPECT_LT(grown, quadratic / 64) << "T = " << T << ": " << grown << " bytes";
    if (first < 0) first = grown;
    EXPECT_LE(grown, first + 1024) << "scratch grew with T: " << first << " → " << grown
                                   << " bytes at T = " << T;
  }
}

TEST(NoQuadraticBuffer, TheMeasurementSeesTheReferencesScoreMatrix) {
  if (!NORMCHECK_COUNTING_HEAP)
    GTEST_SKIP() << "AddressSanitizer owns malloc here; the heap measurement runs in the release build";
  const int T = 1024;
  const Qkv x = random_qkv({1, 1, T, T, 8, 8, 0}, 7);
  std::vector<double> out(x.s.out_size());
  const long long grown = heap::peak_growth(
      [&] { sdpa_reference(out, nullptr, x.q, x.k, x.v, x.s, SdpaMask{}, default_scale(8)); });
  EXPECT_GE(grown, (long long)T * T * (long long)sizeof(double));
}

// ---------------------------------------------------------------------------------------------
// the block

BlockWeights small_block(int E, int H, Placement p, unsigned seed) {
  BlockWeights w;
  w.placement = p;
  w.attn = {E, H, random_values(3 * E * E, seed), random_values(3 * E, seed + 1),
            random_values(E * E, seed + 2), random_values(E, seed + 3)};
  for (auto* v : {&w.attn.in_proj_weight, &w.attn.out_proj_weight})
    for (auto& x : *v) x *= 0.25f;
  w.F = 2 * E;
  w.w1 = random_values(w.F * E, seed + 4);
  w.b1 = random_values(w.F, seed + 5);
  w.w2 = random_values(E * w.F, seed + 6);
  w.b2 = random_values(E, seed + 7);
  for (auto* v : {&w.w1, &w.w2})
    for (auto& x : *v) x *= 0.25f;
  return w;
}

Batch random_batch(int B, int T, int E, std::vector<int> lengths, unsigned seed) {
  Batch x(B, T, E);
  x.lengths = std::move(lengths);
  x.x = random_values(x.x.size(), seed);
  return x;
}

// A frozen BatchNorm (eval mode) is a fixed per-feature affine map: teacher forcing over a
// padded batch and decoding token by token must agree. (The matrix's decode_equivalence
// compares train with eval and is not applicable to eval rows; this covers that path.)
TEST_P(BothImpls, BlockWithFrozenBatchNormDecodesLikeTeacherForcing) {
  const auto& bn = layer("batch_norm");
  for (Placement p : {Placement::pre, Placement::post}) {
    BlockWeights w = small_block(8, 2, p, 11);
    w.norm1.gamma = random_values(8, 20);
    w.norm2.beta = random_values(8, 21);
    BlockState st;
    for (State* s : {&st.norm1, &st.norm2}) {
      s->running_mean = std::vector<double>(8, 0.25);
      s->running_var = std::vector<double>(8, 1.5);
    }
    const Batch x = random_batch(3, 5, 8, {5, 2, 4}, 30);
    BlockState forced = st;
    const auto a = block_forward(bn, GetParam(), Mode::eval, w, forced, x, false);
    const auto b = block_decode(bn, GetParam(), Mode::eval, w, st, x, false);
    for (int s = 0; s < x.B; ++s)
      for (int t = 0; t < x.lengths[s]; ++t)
        for (int e = 0; e < 8; ++e) {
          const std::size_t i = x.index(s, t, e);
          EXPECT_NEAR(a.y[i], b.y[i], 1e-4 + 1e-4 * std::abs(b.y[i])) << to_string(p) << " " << i;
        }
  }
}

// The reference and optimized blocks compute the same function (LayerNorm, both placements).
TEST(Block, OptimizedAgreesWithReference) {
  const auto& ln = layer("layer_norm");
  for (Placement p : {Placement::pre, Placement::post}) {
    const BlockWeights w = small_block(12, 3, p, 40);
    const Batch x = random_batch(2, 6, 12, {6, 3}, 50);
    BlockState s1, s2;
    const auto ref = block_forward(ln, Impl::reference, Mode::none, w, s1, x, true);
    const auto opt = block_forward(ln, Impl::optimized, Mode::none, w, s2, x, true);
    for (int b = 0; b < 2; ++b)
      for (int t = 0; t < x.lengths[b]; ++t)
        for (int e = 0; e < 12; ++e) {
          const std::size_t i = x.index(b, t, e);
          EXPECT_NEAR(opt.y[i], ref.y[i], 1e-4 + 1e-4 * std::abs(ref.y[i])) << to_string(p) << " " << i;
        }
    ASSERT_EQ(ref.attn_weights.size(), std::size_t(2 * 3 * 6 * 6));
    for (std::size_t i = 0; i < ref.attn_weights.size(); ++i)
      EXPECT_NEAR(opt.attn_weights[i], ref.attn_weights[i], 1e-5) << i;
  }
}

TEST(Block, RejectsAnInputOfTheWrongWidth) {
  const BlockWeights w = small_block(8, 2, Placement::pre, 60);
  const Batch x = random_batch(1, 2, 6, {2}, 61);
  BlockState st;
  try {
    block_forward(layer("layer_norm"), Impl::optimized, Mode::none, w, st, x, false);
    FAIL();
  } catch (const InvalidInput& e) {
    EXPECT_NE(std::string(e.what()).find("D = 6"), std::string::npos) << e.what();
  }
}

// ---------------------------------------------------------------------------------------------
// the golden checkers can fail

nlohmann::json first_case(const std::string& op) {
  const auto file = load_golden(default_golden_path());
  for (const auto& c : file["cases"])
    if (c["op"] == op) return c;
  throw std::runtime_error("no golden case for " + op);
}

TEST(GoldenAttention, CorruptedValuesFailNamingThePosition) {
  auto s = first_case("sdpa");
  s["y"][3] = s["y"][3].get<double>() + 1e-3;
  auto m = first_case("mha");
  m["y"][1] = m["y"][1].get<double>() - 1e-3;
  for (Impl impl : {Impl::reference, Impl::optimized}) {
    const auto os = check_sdpa_golden_case(s, impl);
    EXPECT_FALSE(os.passed);
    EXPECT_NE(os.error.find("y[0,0,0,3]"), std::string::npos) << os.error;
    const auto om = check_mha_golden_case(m, impl);
    EXPECT_FALSE(om.passed);
    EXPECT_NE(om.error.find("y[0,0,1]"), std::string::npos) << om.error;
  }
}

TEST(GoldenAttention, HeadsNotDividingEIsAFieldError) {
  auto m = first_case("mha");
  m["heads"] = 3;
  const auto o = check_mha_golden_case(m, Impl::optimized);
  EXPECT_FALSE(o.passed);
  EXPECT_NE(o.error.find("heads = 3 must divide E"), std::string::npos) << o.error;
}

}  // namespace
}  // namespace normcheck
