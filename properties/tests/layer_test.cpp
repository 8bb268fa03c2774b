// Unit tests of the layers and registries, and the regression cases from real bugs listed in
// the spec.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <omp.h>

#include <random>

#include "norms/kernels_api.hpp"
#include "norms/registry.hpp"
#include "properties/engine.hpp"

namespace normcheck {
namespace {

Batch from_rows(const std::vector<std::vector<float>>& rows) {
  Batch x(1, int(rows.size()), int(rows[0].size()));
  for (int t = 0; t < x.T; ++t)
    for (int d = 0; d < x.D; ++d) x.at(0, t, d) = rows[t][d];
  return x;
}

double max_abs_diff(const Output& a, const Output& b) {
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

TEST(Registry, EveryProfileNamesARegisteredProperty) {
  for (const auto& l : layers())
    for (const auto& r : l.rows)
      for (const auto& p : r.violated) EXPECT_NO_THROW(property(p)) << l.name << ": " << p;
}

TEST(Registry, NamesAreUnique) {
  std::set<std::string> rows, props;
  for (const auto& r : layer_rows()) EXPECT_TRUE(rows.insert(r.id()).second) << r.id();
  for (const auto& p : properties()) EXPECT_TRUE(props.insert(p.id).second) << p.id;
}

// Regression: a one-pass E[x²]−E[x]² variance loses everything on [40000..40003].
TEST(Regression, LayerNormOnLargeConsecutiveIntegers) {
  const Batch x = from_rows({{40000, 40001, 40002, 40003}});
  Params p;
  p.eps = 1e-5;
  Output ref, opt;
  layer("layer_norm").reference(x, p, Mode::none, nullptr, ref);
  layer("layer_norm").optimized(x, p, Mode::none, nullptr, opt);
  // exact: (x − 40001.5)/√(1.25 + 1e-5)
  for (int d = 0; d < 4; ++d)
    EXPECT_NEAR(ref[d], (d - 1.5) / std::sqrt(1.25 + 1e-5), 1e-12);
  const double cond = 40001.5 / std::sqrt(1.25);
  EXPECT_LE(max_abs_diff(opt, ref), 1e-5 + 2e-6 * cond + 1e-5 * 1.35);
}

TEST(Regression, LayerNormOnRandnPlus2000) {
  std::mt19937 rng(7);
  std::normal_distribution<float> n(0, 1);
  Batch x(2, 3, 257);
  for (auto& v : x.x) v = 2000.0f + n(rng);
  Params p;
  Output ref, opt;
  layer("layer_norm").reference(x, p, Mode::none, nullptr, ref);
  layer("layer_norm").optimized(x, p, Mode::none, nullptr, opt);
  const double atol = 1e-5 + 2e-6 * 2000.0 / 0.9;  // cond ≈ 2000/σ with σ ≈ 1
  for (std::size_t i = 0; i < ref.size(); ++i)
    ASSERT_LE(std::abs(opt[i] - ref[i]), atol + 1e-5 * std::abs(ref[i])) << i;
}

TEST(Regression, BatchNormTrainRejectsOneValuePerChannelAndKeepsState) {
  for (Impl impl : {Impl::reference, Impl::optimized}) {
    Batch x(1, 1, 3);
    x.x = {1, 2, 3};
    Params p;
    State s{{0.5, 0.5, 0.5}, {2, 2, 2}};
    const State before = s;
    Output out;
    try {
      layer("batch_norm").forward(impl)(x, p, Mode::train, &s, out);
      FAIL() << "batch_norm train on one token must throw";
    } catch (const InvalidInput& e) {
      EXPECT_NE(std::string(e.what()).find("expected more than 1 value per channel when training"),
                std::string::npos)
          << e.what();
    }
    EXPECT_EQ(s.running_mean, before.running_mean);
    EXPECT_EQ(s.running_var, before.running_var);
  }
}

// Regression: with momentum 1 the running variance is the unbiased batch variance, so eval on
// the same batch differs from train by exactly √(n/(n−1)) in the normalized values.
TEST(Regression, BatchNormTrainEvalRatioWithMomentumOne) {
  Batch x(2, 2, 1);
  x.x = {1, 2, 4, 7};
  Params p;
  p.momentum = 1.0;
  p.eps = 1e-12;
  for (Impl impl : {Impl::reference, Impl::optimized}) {
    State s{{0.0}, {1.0}};
    Output train, eval;
    layer("batch_norm").forward(impl)(x, p, Mode::train, &s, train);
    EXPECT_NEAR(s.running_mean[0], 3.5, 1e-12);
    EXPECT_NEAR(s.running_var[0], (6.25 + 2.25 + 0.25 + 12.25) / 3.0, 1e-12);
    layer("batch_norm").forward(impl)(x, p, Mode::eval, &s, eval);
    for (int i = 0; i < 4; ++i)
      EXPECT_NEAR(train[i] / eval[i], std::sqrt(4.0 / 3.0), 1e-5) << to_string(impl);
  }
}

TEST(Validation, MismatchedShapesAreRejectedWithTheirNames) {
  Batch x(2, 3, 4);
  x.lengths = {3, 4};
  Params p;
  Output out;
  try {
    layer("layer_norm").optimized(x, p, Mode::none, nullptr, out);
    FAIL();
  } catch (const InvalidInput& e) {
    EXPECT_NE(std::string(e.what()).find("lengths[1] = 4"), std::string::npos) << e.what();
  }
  x.lengths = {3, 3};
  p.gamma.assign(5, 1.0f);
  EXPECT_THROW(layer("rms_norm").reference(x, p, Mode::none, nullptr, out), InvalidInput);
  p.gamma.clear();
  p.eps = 0;
  EXPECT_THROW(layer("layer_norm").reference(x, p, Mode::none, nullptr, out), InvalidInput);
}

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
