// The raw kernels' large-output path (non-temporal stores) gives the bits of the ordinary one.
#include <gtest/gtest.h>

#include <omp.h>

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

}  // namespace
}  // namespace normcheck
