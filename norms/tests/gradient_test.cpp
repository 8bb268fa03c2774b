// Backward passes of every registry layer that has one (LayerEntry::backward_reference and
// backward_optimized), driven by the registry, where no comparison of outputs is involved:
// - validation: dy of the wrong size and every bad input the forward rejects; the raw kernels'
//   arguments; dx written over dy or x;
// - the row-segment reduction's determinism at 1-4 threads.
// The properties of the gradients themselves (finite differences, thread determinism, batch
// invariance, agreement, geometry) are in properties/tests/gradient_numerics_test.cpp.
#include <gtest/gtest.h>
#include <omp.h>
#include <rapidcheck.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <functional>

#include "norms/kernels.hpp"
#include "norms/kernels_api.hpp"
#include "norms/tests/bad_inputs.hpp"
#include "norms/tests/gradient_util.hpp"

namespace normcheck {
namespace {

using namespace test::grad;

// ---------------------------------------------------------------------------------------------
// Determinism of the row-segment reduction the backward kernels sum dγ, dβ with. (The registry
// rows' finite differences, thread determinism and batch invariance are in
// properties/tests/gradient_numerics_test.cpp, whose failures print the matrix's section.)

// The reduction itself: a sum whose value depends on its order (s, 2^60, −2^60 repeated: each
// pair wipes out the small sum before it, so the result depends on where segments begin) comes
// out bitwise the same at 1-4 threads, for row counts around the segment count.
TEST(GradientDeterminism, RowSegmentSumsDoNotDependOnTheThreadCount) {
  for (std::size_t n : {std::size_t(1), std::size_t(5), std::size_t(23), std::size_t(24),
                        std::size_t(25), std::size_t(97), std::size_t(1000), std::size_t(4099)}) {
    const auto value = [](std::size_t r) {  // s, +2^60, −2^60, s, …
      return r % 3 == 0 ? double(r % 7) + 0.25 : std::ldexp(r % 3 == 1 ? 1.0 : -1.0, 60);
    };
    std::vector<double> first;
    for (int threads : {1, 2, 3, 4}) {
      Threads t(threads);
      std::vector<double> total(2);
      // width 4096: above kParallelMinValues, so the OpenMP path runs
      kernels::reduce_row_segments(n, 4096, 2, total.data(), [&](std::size_t r0, std::size_t r1, double* acc) {
        for (std::size_t r = r0; r < r1; ++r) acc[0] += value(r), acc[1] += 1;
      });
      EXPECT_EQ(total[1], double(n)) << "every row once";
      if (threads == 1) first = total;
      EXPECT_TRUE(same_bits(total, first)) << n << " rows at " << threads << " threads: " << total[0] << " vs " << first[0];
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Validation: the backward rejects everything the forward rejects (bad_inputs.hpp), and a dy of
// the wrong size, with InvalidInput naming the parameter, before writing anything.

using test::bad_input::BadCase;
using test::bad_input::Input;
using test::bad_input::ValidationParam;

std::vector<BadCase> backward_bad_cases() {
  using namespace test::bad_input;
  auto c = bad_cases();
  c.push_back({"dy_too_short", always, [](Input&) {}, {"dy has 23 values", "24"}});
  c.push_back({"dy_too_long", always, [](Input&) {}, {"dy has 25 values", "24"}});
  c.push_back({"dy_empty", always, [](Input&) {}, {"dy has 0 values", "24"}});
  return c;
}

class BackwardRejects : public ::testing::TestWithParam<ValidationParam> {};

TEST_P(BackwardRejects, WithAMessageNamingTheParameterAndNothingWritten) {
  const auto& [row, impl, bad] = GetParam();
  Input in = test::bad_input::valid_input(row);
  std::vector<float> dy(in.x.x.size(), 0.5f);  // the valid input's size
  bad.mutate(in);
  if (bad.name == "dy_too_short") dy.pop_back();
  if (bad.name == "dy_too_long") dy.push_back(0);
  if (bad.name == "dy_empty") dy.clear();
  const State before = in.s;
  Grads out{.dx = {42.0}, .dgamma = {-7.0}, .dbeta = {3.0}};
  const Grads out_before = out;
  test::bad_input::expect_rejected(GetParam(), in, [&] {
    row.layer->backward(impl)(in.x, in.p, in.mode, in.with_state ? &in.s : nullptr, dy, out);
  });
  EXPECT_EQ(in.s.running_mean, before.running_mean);
  EXPECT_EQ(in.s.running_var, before.running_var);
  EXPECT_TRUE(same_bits(out, out_before)) << "the gradients were written by a rejected call";
}

INSTANTIATE_TEST_SUITE_P(Gradient, BackwardRejects,
                         ::testing::ValuesIn(test::bad_input::validation_params(
                             rows_where(has_gradient), backward_bad_cases())),
                         test::bad_input::validation_test_name);

// Without this the cases above would prove nothing: the input they start from is accepted.
TEST(GradientValidation, TheValidInputIsAcceptedByEveryBackward) {
  for (const auto& row : rows_where(has_gradient))
    for (Impl impl : {Impl::reference, Impl::optimized}) {
      Input in = test::bad_input::valid_input(row);
      const std::vector<float> dy(in.x.x.size(), 0.5f);
      Grads out;
      EXPECT_NO_THROW(row.layer->backward(impl)(in.x, in.p, in.mode, &in.s, dy, out))
          << row.id() << " " << to_string(impl);
      EXPECT_EQ(out.dx.size(), in.x.x.size()) << row.id();
      EXPECT_EQ(out.dgamma.size(), in.p.gamma.size()) << row.id();
      EXPECT_EQ(out.dbeta.size(), in.p.beta.size()) << row.id();
    }
}

// The raw kernels check their arguments before touching memory, naming the parameter.
TEST(GradientValidation, RawKernelsRejectBadArgumentsNamingThem) {
  std::vector<float> dx(8, 42.0f), dy(8, 1.0f), x(8, 1.0f), dg(4, 42.0f), db(4, 42.0f);
  const std::vector<double> mean(4, 0.0), var(4, 1.0);
  const auto expect_rejects = [&](const std::function<void()>& call, const std::string& part) {
    try {
      call();
      ADD_FAILURE() << "accepted; expected a message naming " << part;
    } catch (const InvalidInput& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
    for (float v : dx) EXPECT_EQ(v, 42.0f) << "dx written by a rejected call";
    for (float v : dg) EXPECT_EQ(v, 42.0f) << "dgamma written by a rejected call";
  };
  for (auto kernel : {layer_norm_backward_kernel, rms_norm_backward_kernel}) {
    expect_rejects([&] { kernel(dx.data(), dg.data(), db.data(), nullptr, x.data(), nullptr, 2, 4, 1e-5f); }, "dy is null");
    expect_rejects([&] { kernel(nullptr, dg.data(), db.data(), dy.data(), x.data(), nullptr, 2, 4, 1e-5f); }, "dx is null");
    expect_rejects([&] { kernel(dx.data(), dg.data(), db.data(), dy.data(), nullptr, nullptr, 2, 4, 1e-5f); }, "x is null");
    expect_rejects([&] { kernel(dx.data(), dg.data(), db.data(), dy.data(), x.data(), nullptr, 2, 0, 1e-5f); }, "D = 0");
    expect_rejects([&] { kernel(dx.data(), dg.data(), db.data(), dy.data(), x.data(), nullptr, 2, 4, 0.0f); }, "eps = 0");
  }
  expect_rejects([&] { group_norm_backward_kernel(dx.data(), dg.data(), db.data(), dy.data(), x.data(), nullptr, 2, 4, 3, 1e-5f); }, "groups = 3");
  expect_rejects([&] { batch_norm_backward_kernel(dx.data(), dg.data(), db.data(), nullptr, x.data(), nullptr, 1, 2, 4, nullptr, mean.data(), var.data(), 1e-5, true); }, "dy is null");
  expect_rejects([&] { batch_norm_backward_kernel(dx.data(), dg.data(), db.data(), dy.data(), x.data(), nullptr, 1, 2, 4, nullptr, nullptr, var.data(), 1e-5, true); }, "mean is null");
  const int one[1] = {1};
  expect_rejects([&] { batch_norm_backward_kernel(dx.data(), dg.data(), db.data(), dy.data(), x.data(), nullptr, 1, 2, 4, one, mean.data(), var.data(), 1e-5, true); }, "got 1");
  const int bad[1] = {3};
  expect_rejects([&] { batch_norm_backward_kernel(dx.data(), dg.data(), db.data(), dy.data(), x.data(), nullptr, 1, 2, 4, bad, mean.data(), var.data(), 1e-5, false); }, "lengths[0] = 3");
}

// The raw kernels may write dx over dy or over x (kernels_api.hpp): the same bits as into a
// buffer of its own, on the serial and the OpenMP path, with and without γ.
TEST(GradientKernels, InPlaceGivesTheSameBits) {
  using Kernel = std::function<void(float* dx, const float* dy, const float* x, const float* g,
                                    float* dg, float* db, std::size_t rows, int D)>;
  const std::vector<std::pair<const char*, Kernel>> kernels = {
      {"layer_norm", [](float* dx, const float* dy, const float* x, const float* g, float* dg,
                        float* db, std::size_t rows, int D) {
         layer_norm_backward_kernel(dx, dg, db, dy, x, g, rows, D, 1e-5f);
       }},
      {"rms_norm", [](float* dx, const float* dy, const float* x, const float* g, float* dg,
                      float* db, std::size_t rows, int D) {
         rms_norm_backward_kernel(dx, dg, db, dy, x, g, rows, D, 1e-5f);
       }},
      {"group_norm", [](float* dx, const float* dy, const float* x, const float* g, float* dg,
                        float* db, std::size_t rows, int D) {
         group_norm_backward_kernel(dx, dg, db, dy, x, g, rows, D, D % 3 == 0 ? 3 : 1, 1e-5f);
       }},
      {"batch_norm", [](float* dx, const float* dy, const float* x, const float* g, float* dg,
                        float* db, std::size_t rows, int D) {
         std::vector<double> mean(D), var(D);
         batch_norm_statistics_kernel(mean.data(), var.data(), x, 1, int(rows), D, nullptr);
         batch_norm_backward_kernel(dx, dg, db, dy, x, g, 1, int(rows), D, nullptr, mean.data(),
                                    var.data(), 1e-5, true);
       }},
  };
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  for (const auto& [name, kernel] : kernels)
    for (int D : {7, 33, 96})
      for (std::size_t rows : {std::size_t(3), kernels::kParallelMinValues / std::size_t(D) + 5})
        for (bool affine : {false, true}) {
          SCOPED_TRACE(std::string(name) + " D " + std::to_string(D) + " rows " + std::to_string(rows));
          std::vector<float> x(rows * D), dy(rows * D), g(D);
          for (auto& v : x) v = u(rng);
          for (auto& v : dy) v = u(rng);
          for (auto& v : g) v = u(rng);
          const float* gp = affine ? g.data() : nullptr;
          std::vector<float> want(rows * D), dg(D), db(D);
          kernel(want.data(), dy.data(), x.data(), gp, dg.data(), db.data(), rows, D);
          for (bool over_dy : {true, false}) {
            std::vector<float> dy2 = dy, x2 = x, dg2(D), db2(D);
            float* dx = over_dy ? dy2.data() : x2.data();
            kernel(dx, dy2.data(), x2.data(), gp, dg2.data(), db2.data(), rows, D);
            const char* where = over_dy ? "dx over dy" : "dx over x";
            EXPECT_EQ(0, std::memcmp(dx, want.data(), want.size() * sizeof(float))) << where;
            EXPECT_EQ(0, std::memcmp(dg2.data(), dg.data(), D * sizeof(float))) << where;
            EXPECT_EQ(0, std::memcmp(db2.data(), db.data(), D * sizeof(float))) << where;
          }
        }
}

}  // namespace
}  // namespace normcheck
