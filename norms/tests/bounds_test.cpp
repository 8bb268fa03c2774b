// No out-of-bounds access. The raw kernels (kernels_api.hpp) run on buffers placed between guard
// regions filled with a NaN sentinel: a write outside the kernel's range changes a guard, and a
// read outside it pulls a NaN into the output, which then differs from the same call on
// exact-size vectors (where AddressSanitizer, in the asan preset, sees any overrun). Every registry
// layer runs through the same widths, compared with its reference, so a layer added later is
// swept too (its overruns are caught by the asan run).
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>

#include "norms/kernels.hpp"
#include "norms/kernels_api.hpp"
#include "norms/tests/test_util.hpp"

namespace normcheck {
namespace {

const int kWidths[] = {1, 7, 15, 17, 31, 33, 63, 65, 100, 1000};
constexpr std::size_t kGuard = 67;  // odd, so the values start off any vector alignment

template <class V>
V sentinel();
template <>
float sentinel<float>() {
  const std::uint32_t bits = 0x7fc0deadu;  // a quiet NaN with a payload no kernel produces
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}
template <>
double sentinel<double>() {
  const std::uint64_t bits = 0x7ff8deadbeef0001ull;
  double f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}
template <>
int sentinel<int>() {
  return -123456789;
}

template <class V>
bool is_sentinel(V v) {
  const V s = sentinel<V>();
  return std::memcmp(&v, &s, sizeof v) == 0;
}

// n values between two guard regions of sentinels.
template <class V>
struct Guarded {
  std::vector<V> buf;
  std::size_t n;
  explicit Guarded(std::size_t n_) : buf(n_ + 2 * kGuard, sentinel<V>()), n(n_) {}
  Guarded(const std::vector<V>& values) : Guarded(values.size()) {
    std::copy(values.begin(), values.end(), data());
  }
  V* data() { return buf.data() + kGuard; }
  std::vector<V> values() const { return {buf.begin() + kGuard, buf.begin() + kGuard + n}; }
  // where a guard was overwritten, or -1
  long long broken_guard() const {
    for (std::size_t i = 0; i < buf.size(); ++i)
      if ((i < kGuard || i >= kGuard + n) && !is_sentinel(buf[i])) return (long long)i - (long long)kGuard;
    return -1;
  }
};

template <class V>
bool same_bits(const std::vector<V>& a, const std::vector<V>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(V)) == 0;
}

std::vector<float> values(std::size_t n, std::mt19937& rng) {
  std::uniform_int_distribution<int> k(-64, 64);
  std::vector<float> v(n);
  for (auto& e : v) e = float(k(rng)) / 16.0f;
  return v;
}

// Row counts: one row, a few, and enough for the kernels' OpenMP path (kParallelMinValues).
std::vector<std::size_t> row_counts(int D) {
  return {1, 2, 5, kernels::kParallelMinValues / std::size_t(D) + 3};
}

using RowKernel = void (*)(float*, const float*, const float*, const float*, std::size_t, int, float);

struct RowKernelCase {
  const char* name;
  RowKernel kernel;
};

void PrintTo(const RowKernelCase& c, std::ostream* os) { *os << c.name; }

class RowKernelBounds : public ::testing::TestWithParam<std::tuple<RowKernelCase, int>> {};

TEST_P(RowKernelBounds, StaysInsideItsBuffers) {
  const auto [kc, D] = GetParam();
  std::mt19937 rng(D);
  for (std::size_t rows : row_counts(D))
    for (int variant = 0; variant < 4; ++variant) {
      const bool affine = variant & 1;
      const float scale = variant & 2 ? 1e30f : 1.0f;  // 1e30: the overflow path (kernels.hpp)
      SCOPED_TRACE(std::string(kc.name) + " rows " + std::to_string(rows) + " D " +
                   std::to_string(D) + (affine ? " with gamma, beta" : " without") + " scale " +
                   std::to_string(scale));
      auto x = values(rows * D, rng);
      for (auto& v : x) v *= scale;
      std::vector<float> gamma, beta;
      if (affine) {
        gamma = values(D, rng);
        beta = values(D, rng);
      }
      // exact-size buffers: the result to match (and what ASan watches)
      std::vector<float> want(rows * D);
      kc.kernel(want.data(), x.data(), affine ? gamma.data() : nullptr,
                affine ? beta.data() : nullptr, rows, D, 1e-5f);

      Guarded<float> gx(x), gg(gamma), gb(beta), gy(rows * D);
      kc.kernel(gy.data(), gx.data(), affine ? gg.data() : nullptr, affine ? gb.data() : nullptr,
                rows, D, 1e-5f);
      EXPECT_EQ(gy.broken_guard(), -1) << "wrote outside out[rows*D]";
      EXPECT_EQ(gx.broken_guard(), -1);
      EXPECT_TRUE(same_bits(gx.values(), x)) << "x was written";
      EXPECT_TRUE(same_bits(gy.values(), want))
          << "differs from the exact-size call: a read outside x, gamma or beta";
      for (std::size_t i = 0; i < want.size(); ++i)
        ASSERT_TRUE(std::isfinite(want[i])) << "output " << i << " not written or not finite";

      // in place (documented): out == x
      Guarded<float> inplace(x);
      kc.kernel(inplace.data(), inplace.data(), affine ? gg.data() : nullptr,
                affine ? gb.data() : nullptr, rows, D, 1e-5f);
      EXPECT_EQ(inplace.broken_guard(), -1);
      EXPECT_TRUE(same_bits(inplace.values(), want)) << "in place differs";
    }
}

INSTANTIATE_TEST_SUITE_P(
    Bounds, RowKernelBounds,
    ::testing::Combine(::testing::Values(RowKernelCase{"layer_norm_kernel", layer_norm_kernel},
                                         RowKernelCase{"rms_norm_kernel", rms_norm_kernel}),
                       ::testing::ValuesIn(kWidths)),
    [](const auto& info) {
      return std::string(std::get<0>(info.param).name) + "_D" +
             std::to_string(std::get<1>(info.param));
    });

// (B, T) shapes for the batch-norm kernels, masked selections included.
struct BatchShape {
  int B, T;
  std::vector<int> lengths;  // empty: every position selected (lengths == nullptr)
};

std::vector<BatchShape> batch_shapes(int D) {
  const int T_par = int(kernels::kParallelMinValues / std::size_t(D)) / 3 + 2;
  return {{1, 2, {}},    {2, 3, {}},         {2, 3, {3, 1}},       {3, 5, {0, 5, 2}},
          {1, 1, {1}},   {3, T_par, {}},     {3, T_par, {T_par, 1, T_par - 1}}};
}

class BatchNormKernelBounds : public ::testing::TestWithParam<int> {};

TEST_P(BatchNormKernelBounds, StatisticsAndApplyStayInsideTheirBuffers) {
  const int D = GetParam();
  std::mt19937 rng(D);
  for (const auto& sh : batch_shapes(D)) {
    SCOPED_TRACE("B " + std::to_string(sh.B) + " T " + std::to_string(sh.T) + " D " +
                 std::to_string(D) + (sh.lengths.empty() ? " all positions" : " masked"));
    const std::size_t n = std::size_t(sh.B) * sh.T * D;
    const auto x = values(n, rng);
    const int* lengths = sh.lengths.empty() ? nullptr : sh.lengths.data();

    std::vector<double> mean(D), var(D);
    const long long count =
        batch_norm_statistics_kernel(mean.data(), var.data(), x.data(), sh.B, sh.T, D, lengths);
    long long expect_count = 0;
    for (int b = 0; b < sh.B; ++b) expect_count += lengths ? lengths[b] : sh.T;
    EXPECT_EQ(count, expect_count);

    Guarded<float> gx(x);
    Guarded<double> gm(D), gv(D);
    Guarded<int> gl(sh.lengths);
    batch_norm_statistics_kernel(gm.data(), gv.data(), gx.data(), sh.B, sh.T, D,
                                 lengths ? gl.data() : nullptr);
    EXPECT_EQ(gm.broken_guard(), -1) << "wrote outside mean[D]";
    EXPECT_EQ(gv.broken_guard(), -1) << "wrote outside var[D]";
    EXPECT_EQ(gx.broken_guard(), -1);
    EXPECT_TRUE(same_bits(gx.values(), x)) << "x was written";
    EXPECT_TRUE(same_bits(gm.values(), mean)) << "a read outside x";
    EXPECT_TRUE(same_bits(gv.values(), var)) << "a read outside x";

    const auto mu = values(D, rng), a = values(D, rng), be = values(D, rng);
    std::vector<float> want(n, 0.0f);
    batch_norm_apply_kernel(want.data(), x.data(), sh.B, sh.T, D, lengths, mu.data(), a.data(),
                            be.data());
    Guarded<float> gmu(mu), ga(a), gbe(be), gy(n);
    batch_norm_apply_kernel(gy.data(), gx.data(), sh.B, sh.T, D, lengths ? gl.data() : nullptr,
                            gmu.data(), ga.data(), gbe.data());
    EXPECT_EQ(gy.broken_guard(), -1) << "wrote outside out[B*T*D]";
    const auto got = gy.values();
    for (int b = 0; b < sh.B; ++b)
      for (int t = 0; t < sh.T; ++t)
        for (int d = 0; d < D; ++d) {
          const std::size_t i = (std::size_t(b) * sh.T + t) * D + d;
          if (!lengths || t < lengths[b]) {
            ASSERT_TRUE(std::memcmp(&got[i], &want[i], sizeof(float)) == 0)
                << "(" << b << ", " << t << ", " << d << "): a read outside mu, a, be or x";
          } else {
            ASSERT_TRUE(is_sentinel(got[i])) << "padding (" << b << ", " << t << ", " << d
                                             << ") written although not selected";
          }
        }
  }
}

INSTANTIATE_TEST_SUITE_P(Bounds, BatchNormKernelBounds, ::testing::ValuesIn(kWidths),
                         [](const auto& info) { return std::string("D") + std::to_string(info.param); });

// The raw kernels are public entry points too: they reject what they cannot address.
TEST(KernelValidation, RawKernelsRejectBadSizesAndPointers) {
  std::vector<float> x(8, 1.0f), y(8);
  const auto expect_reject = [](const std::function<void()>& call, const std::string& part) {
    try {
      call();
      ADD_FAILURE() << "accepted; expected a message with " << part;
    } catch (const InvalidInput& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  for (RowKernel k : {layer_norm_kernel, rms_norm_kernel}) {
    expect_reject([&] { k(y.data(), x.data(), nullptr, nullptr, 2, 0, 1e-5f); }, "D = 0");
    expect_reject([&] { k(y.data(), x.data(), nullptr, nullptr, 2, -3, 1e-5f); }, "D = -3");
    expect_reject([&] { k(nullptr, x.data(), nullptr, nullptr, 2, 4, 1e-5f); }, "out is null");
    expect_reject([&] { k(y.data(), nullptr, nullptr, nullptr, 2, 4, 1e-5f); }, "x is null");
    expect_reject([&] { k(y.data(), x.data(), nullptr, nullptr, 2, 4, 0.0f); }, "eps = 0");
    expect_reject([&] { k(y.data(), x.data(), nullptr, nullptr, SIZE_MAX / 2, 4, 1e-5f); },
                  "overflows");
    EXPECT_NO_THROW(k(nullptr, nullptr, nullptr, nullptr, 0, 4, 1e-5f)) << "no rows: nothing to do";
  }
  double m[4], v[4];
  const int bad_lengths[2] = {1, 3};
  expect_reject([&] { batch_norm_statistics_kernel(m, v, x.data(), 2, 2, 0, nullptr); }, "D = 0");
  expect_reject([&] { batch_norm_statistics_kernel(m, v, x.data(), 0, 2, 2, nullptr); }, "B = 0");
  expect_reject([&] { batch_norm_statistics_kernel(m, v, x.data(), 2, 2, 2, bad_lengths); },
                "lengths[1] = 3");
  expect_reject([&] { batch_norm_statistics_kernel(nullptr, v, x.data(), 2, 2, 2, nullptr); },
                "null");
  const float mu[2] = {0, 0}, a[2] = {1, 1}, be[2] = {0, 0};
  expect_reject([&] { batch_norm_apply_kernel(y.data(), x.data(), 2, 0, 2, nullptr, mu, a, be); },
                "T = 0");
  expect_reject([&] { batch_norm_apply_kernel(y.data(), x.data(), 2, 2, 2, bad_lengths, mu, a, be); },
                "lengths[1] = 3");
  expect_reject([&] { batch_norm_apply_kernel(y.data(), x.data(), 2, 2, 2, nullptr, mu, nullptr, be); },
                "null");
}

}  // namespace
}  // namespace normcheck
