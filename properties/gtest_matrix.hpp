// Turns cells into GoogleTest tests, one per cell, named <row>_<implementation>_<property>.
// Include it in exactly one test source and instantiate:
//
//   NORMCHECK_INSTANTIATE_MATRIX(Matrix, normcheck::all_cells());
//
// Budget and seed come from RC_PARAMS (max_success, seed, reproduce); a failure message carries
// the RC_PARAMS="reproduce=..." string that replays it. Cells are enumerated when GoogleTest
// registers its tests (after static initialization), so layers registered with
// normcheck::register_layer in a static initializer or in main() before InitGoogleTest appear.
#pragma once

#include <gtest/gtest.h>

#include <iostream>

#include "properties/engine.hpp"

namespace normcheck {

inline void PrintTo(const Cell& c, std::ostream* os) { *os << c.id(); }

inline std::vector<Cell> applicable(const std::vector<Cell>& cells) {
  std::vector<Cell> out;
  for (const auto& c : cells)
    if (c.info.expected != Expect::not_applicable) out.push_back(c);
  return out;
}

class MatrixCell : public ::testing::TestWithParam<Cell> {};

TEST_P(MatrixCell, AsExpected) {
  const Cell& cell = GetParam();
  const CellResult r = run_cell(cell, options_from_rc_params());
  std::cout << cell.id() << ": expected " << to_string(r.cell.expected) << ", observed " << r.observed
            << " in " << r.cases << " cases (seed " << r.seed << ", max deviation "
            << r.max_deviation << ")\n";
  if (!r.reproduce.empty()) std::cout << "  RC_PARAMS=\"" << r.reproduce << "\"\n";
  ASSERT_TRUE(r.as_expected()) << r.message;
  if (r.cell.expected == Expect::violated) {
    EXPECT_FALSE(r.counterexample.is_null()) << "a ✗ cell must carry its counterexample";
    EXPECT_FALSE(r.reproduce.empty()) << "a ✗ cell must carry its reproduce string";
  }
}

}  // namespace normcheck

#define NORMCHECK_INSTANTIATE_MATRIX(prefix, cells)                                      \
  using MatrixCell = ::normcheck::MatrixCell;                                             \
  INSTANTIATE_TEST_SUITE_P(prefix, MatrixCell,                                           \
                           ::testing::ValuesIn(::normcheck::applicable(cells)),          \
                           [](const ::testing::TestParamInfo<::normcheck::Cell>& info) { \
                             return ::normcheck::gtest_name(info.param.id());            \
                           })
