// Turns cells into GoogleTest tests, one per cell, named <row>_<implementation>_<property>.
// Include it in exactly one test source and instantiate:
//
//   NORMCHECK_INSTANTIATE_MATRIX(Matrix, normcheck::all_cells());
//
// Budget and seed come from RC_PARAMS (max_success, seed, reproduce). A cell that is not as
// expected fails with its section as report.md prints it: the property, expected vs observed,
// the two commands that replay the minimal case (this test binary, as it was started, and the
// command-line program holding the row) and the counterexample as small tensors. Cells are
// enumerated when GoogleTest registers its tests (after static initialization), so layers
// registered with normcheck::register_layer in a static initializer, or in the expression given
// to the macro, appear.
#pragma once

#include <gtest/gtest.h>

#include <iostream>

#include <normcheck/properties/counterexample.hpp>
#include <normcheck/properties/engine.hpp>

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
  RunOptions options = options_from_rc_params();
  options.program = Program::tests;  // this binary holds the cell: its replay command names it
  const CellResult r = run_cell(cell, options);
  std::cout << cell.id() << ": expected " << to_string(r.cell.expected) << ", observed " << r.observed
            << " in " << r.cases << (r.cases == 1 ? " case" : " cases") << " (seed " << r.seed
            << ", largest deviation " << deviation_text(r.max_deviation) << ")\n";
  if (!r.reproduce.empty()) std::cout << "  RC_PARAMS=\"" << r.reproduce << "\"\n";
  ASSERT_TRUE(r.as_expected()) << "\n" << section_text(r);
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
