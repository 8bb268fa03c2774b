// The raw kernels' large-output path (non-temporal stores) gives the bits of the ordinary one.
#include <gtest/gtest.h>

#include <omp.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "norms/kernels_api.hpp"

namespace normcheck {
namespace {

// Outputs of 8 MB and more are written with non-temporal stores (norms/kernels.hpp): a large
// batch must give the same bits as the same rows one at a time (normal stores), with rows that
// start unaligned (D = 301), at 1 and 2 threads.
TEST(RawKernels, LargeBatchesStreamTheSameBitsAsRowByRow) {
  const std::size_t rows = 8192;
  const int D = 301;
  std::vector<float> x(rows * D), g(D), b(D);
  std::mt19937 rng(7);
  std::normal_distribution<float> n(0.5f, 2.0f);
  for (auto& v : x) v = n(rng);
  for (auto& v : g) v = n(rng);
  for (auto& v : b) v = n(rng);
  using Kernel = void (*)(float*, const float*, const float*, const float*, std::size_t, int, float);
  for (Kernel k : {Kernel(layer_norm_kernel), Kernel(rms_norm_kernel)})
    for (int threads : {1, 2}) {
      omp_set_num_threads(threads);
      std::vector<float> big(rows * D), one(rows * D);
      k(big.data(), x.data(), g.data(), b.data(), rows, D, 1e-5f);
      for (std::size_t r = 0; r < rows; ++r)
        k(one.data() + r * D, x.data() + r * D, g.data(), b.data(), 1, D, 1e-5f);
      EXPECT_EQ(0, std::memcmp(big.data(), one.data(), big.size() * sizeof(float)))
          << "threads = " << threads;
    }
  std::vector<float> y1(rows * D), y2(rows * D);
  std::vector<double> m1(D, 0.0), v1(D, 1.0), m2(D, 0.0), v2(D, 1.0);
  omp_set_num_threads(1);
  batch_norm_train_kernel(y1.data(), m1.data(), v1.data(), x.data(), g.data(), b.data(), rows, D,
                          1e-5, 0.1);
  omp_set_num_threads(2);
  batch_norm_train_kernel(y2.data(), m2.data(), v2.data(), x.data(), g.data(), b.data(), rows, D,
                          1e-5, 0.1);
  EXPECT_EQ(0, std::memcmp(y1.data(), y2.data(), y1.size() * sizeof(float)));
  EXPECT_EQ(m1, m2);
  EXPECT_EQ(v1, v2);
}

// Rows whose output pass outgrows L1 (3·D·4 bytes > 32 KB) go in pairs, written a chunk of
// columns at a time (norms/token_norm.hpp, token_norm_pairs): a batch must give the bits of the
// same rows one at a time, and in place (out == x) the bits of out of place — with an odd row
// count, D not a multiple of 16 or of the chunk, a row whose squares overflow (the rescaled
// path) and one whose first values lie far out in its spread (layer_norm's second pass), each
// paired with an ordinary row.
TEST(RawKernels, PairedLongRowsGiveTheBitsOfOneRowAtATime) {
  const std::size_t rows = 701;  // 8.4 MB: the streaming stores
  const int D = 3001;
  std::vector<float> x(rows * D), g(D), b(D);
  std::mt19937 rng(11);
  std::normal_distribution<float> n(0.5f, 2.0f);
  for (auto& v : x) v = n(rng);
  for (auto& v : g) v = n(rng);
  for (auto& v : b) v = n(rng);
  for (int d = 0; d < D; ++d) x[5 * D + d] *= 3e19f;     // Σx² overflows float
  for (int d = 0; d < 16; ++d) x[8 * D + d] = 1e4f;      // a shift far out in the spread
  using Kernel = void (*)(float*, const float*, const float*, const float*, std::size_t, int, float);
  for (Kernel k : {Kernel(layer_norm_kernel), Kernel(rms_norm_kernel)})
    for (int threads : {1, 2}) {
      omp_set_num_threads(threads);
      std::vector<float> big(rows * D), one(rows * D), in_place = x;
      k(big.data(), x.data(), g.data(), b.data(), rows, D, 1e-5f);
      k(in_place.data(), in_place.data(), g.data(), b.data(), rows, D, 1e-5f);
      for (std::size_t r = 0; r < rows; ++r)
        k(one.data() + r * D, x.data() + r * D, g.data(), b.data(), 1, D, 1e-5f);
      EXPECT_EQ(0, std::memcmp(big.data(), one.data(), big.size() * sizeof(float)))
          << "threads = " << threads;
      EXPECT_EQ(0, std::memcmp(big.data(), in_place.data(), big.size() * sizeof(float)))
          << "threads = " << threads;
      for (std::size_t r : {std::size_t(5), std::size_t(8)})
        for (int d = 0; d < D; ++d)
          ASSERT_TRUE(std::isfinite(big[r * D + d])) << "row " << r;
      // and the values are the layer (rms) norm of their own row with their own column's γ and
      // β, computed here in double: both sides above share the pairing, this does not
      const bool center = k == Kernel(layer_norm_kernel);
      for (std::size_t r : {std::size_t(0), std::size_t(1), std::size_t(2), rows - 2, rows - 1}) {
        double mean = 0, var = 0;
        for (int d = 0; d < D; ++d) mean += center ? x[r * D + d] : 0.0;
        mean /= D;
        for (int d = 0; d < D; ++d) var += (x[r * D + d] - mean) * (x[r * D + d] - mean);
        var /= D;
        for (int d = 0; d < D; ++d) {
          const double want = (x[r * D + d] - mean) / std::sqrt(var + 1e-5) * g[d] + b[d];
          ASSERT_NEAR(big[r * D + d], want, 1e-4 * (1 + std::abs(want)))
              << "row " << r << ", column " << d;
        }
      }
    }
}

}  // namespace
}  // namespace normcheck
