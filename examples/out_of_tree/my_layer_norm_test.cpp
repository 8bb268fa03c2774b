// Every property of normcheck against the project's kernel, one ctest test per cell, plus the
// PyTorch golden LayerNorm cases.
#include <properties/catalog.hpp>
#include <properties/gtest_matrix.hpp>

#include "my_layer_norm.hpp"

NORMCHECK_INSTANTIATE_MATRIX(MyKernels, normcheck::norm_cells(my_kernels::register_with_normcheck()));

TEST(MyKernels, MatchesPyTorchLayerNormGoldenCases) {
  const auto file = normcheck::load_golden(normcheck::default_golden_path());
  const auto rows = normcheck::rows_of(*my_kernels::register_with_normcheck()[0]);
  int checked = 0;
  for (const auto& c : file["cases"]) {
    if (c["op"] != "layer_norm") continue;
    const auto o = normcheck::check_norm_golden_case(c, normcheck::Impl::optimized, rows[0]);
    EXPECT_TRUE(o.passed) << o.id << ": " << o.error;
    ++checked;
  }
  EXPECT_GT(checked, 0);
}
