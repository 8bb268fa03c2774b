// The expected matrix as ctest tests: one test per (layer row, implementation, property) cell,
// named <row>_<implementation>_<property> so that `ctest -R batch_norm` or `ctest -R padding`
// selects sensibly. Budget and seed come from RC_PARAMS (max_success, seed); a failure message
// carries the RC_PARAMS="reproduce=..." string that replays it.
#include <gtest/gtest.h>

#include <iostream>

#include "properties/catalog.hpp"

namespace normcheck {
namespace {

std::vector<Cell> applicable_cells() {
  std::vector<Cell> cells;
  for (const auto& c : all_cells())
    if (c.expected != Expect::not_applicable) cells.push_back(c);
  return cells;
}

}  // namespace

void PrintTo(const Cell& c, std::ostream* os) { *os << c.id(); }

namespace {

class MatrixCell : public ::testing::TestWithParam<Cell> {};

TEST_P(MatrixCell, AsExpected) {
  const Cell& cell = GetParam();
  const CellResult r = run_cell(cell, options_from_rc_params());
  std::cout << cell.id() << ": expected " << to_string(r.expected) << ", observed " << r.observed
            << " in " << r.cases << " cases (seed " << r.seed << ", max deviation "
            << r.max_deviation << ")\n";
  if (!r.reproduce.empty()) std::cout << "  RC_PARAMS=\"" << r.reproduce << "\"\n";
  ASSERT_TRUE(r.as_expected()) << r.message;
  if (r.expected == Expect::violated) {
    EXPECT_FALSE(r.counterexample.is_null()) << "a ✗ cell must carry its counterexample";
    EXPECT_FALSE(r.reproduce.empty()) << "a ✗ cell must carry its reproduce string";
  }
}

std::string cell_test_name(const ::testing::TestParamInfo<Cell>& info) {
  return gtest_name(info.param.id());
}

INSTANTIATE_TEST_SUITE_P(Matrix, MatrixCell, ::testing::ValuesIn(applicable_cells()),
                         cell_test_name);

}  // namespace
}  // namespace normcheck
