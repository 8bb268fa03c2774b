// The registry-wide tests every layer inherits outside the matrix (numerics_test.cpp,
// gradient_numerics_test.cpp, widths_test.cpp) run each check as the matrix runs a cell: the
// RapidCheck adapter's search and shrinking (engine.hpp, run_cell), the case compared with a
// Diff into the evidence schema (compare.hpp), and on failure the matrix's own section
// (counterexample.hpp, section_text): the row, its mode and implementation, the check's words,
// the shapes B×T×D of both sides, every compared token with expected vs got, the worst value
// against its tolerance, and the one command that replays the minimal case in this binary.
#pragma once

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <utility>

#include "norms/tests/row_draws.hpp"
#include "properties/catalog.hpp"
#include "properties/counterexample.hpp"
#include "properties/norm_scenarios.hpp"

namespace normcheck::test {

// The matrix row of a registry row (its norm row; with Family::gradient its gradient row), built
// from the row's own entry, so a broken copy of an entry gives a row of that copy.
inline Row matrix_row(const LayerRow& r, Family family = Family::norm) {
  for (Row& row : family == Family::gradient ? gradient_rows(*r.layer) : norm_rows(*r.layer))
    if (row.norm.id() == r.id()) return row;
  throw std::invalid_argument("no " + std::string(to_string(family)) + " row " + r.id());
}

// The GoogleTest filter naming the running test alone (its replay command).
inline std::string current_test_filter() {
  const auto* t = ::testing::UnitTest::GetInstance()->current_test_info();
  return t ? std::string(t->test_suite_name()) + "." + t->name() : "*";
}

// Runs `check` (one drawn case of `row` with `impl`, compared with a Diff) as a cell that must
// hold: `info` says what it checks, in the matrix's words (id, statement, related input,
// compared, claim). Budget and seed from RC_PARAMS, as the matrix's ctest cells; `cases` > 0
// overrides the budget (a check whose input is fixed needs one case).
inline CellResult run_inherited(const Row& row, Impl impl, PropertyInfo info, CheckFn check,
                                int cases = 0) {
  const Property prop{.info = std::move(info), .family = row.info.family, .check = std::move(check)};
  const Cell cell{.info = {.row = row.info, .impl = impl, .prop = prop.info, .expected = Expect::holds},
                  .row = row,
                  .property = &prop};
  RunOptions options = options_from_rc_params();
  options.program = Program::tests;
  options.test_filter = current_test_filter();
  if (cases > 0) options.cases = cases;
  return run_cell(cell, options);
}

// Runs `check` on a row of a registry-wide test (its `family` matrix row) with the row's
// implementation, as run_inherited.
inline CellResult run_inherited(const RowImpl& p, Family family, PropertyInfo info, CheckFn check) {
  return run_inherited(matrix_row(p.row, family), p.impl, std::move(info), std::move(check));
}

// The optimized output of `row` on the fixed batch x against the reference's, every valid token
// under the tolerance rule at the row's own conditioning, as a cell of one case that must hold:
// `info` says what it checks, `note` what the input is; a failure reads as the matrix's.
inline CellResult agrees_with_reference(const LayerRow& row, const Batch& x, const Params& p,
                                        const State& s, PropertyInfo info, std::string note) {
  norm_scenario::Scenario sc;
  sc.params = p;
  sc.state = s;
  sc.a = {.impl = Impl::optimized, .calls = {{x, row.mode()}}};
  sc.b = {.impl = Impl::reference, .calls = {{x, row.mode()}}};
  sc.pairs = norm_scenario::valid_pairs(x);
  sc.note = std::move(note);
  return run_inherited(
      matrix_row(row), Impl::optimized, std::move(info),
      [sc](const Row& r, Impl impl) {
        return norm_scenario::run_scenario(r.norm, impl, Comparison::values, false, sc);
      },
      1);
}

}  // namespace normcheck::test

// The registry-wide test prefix/suite_.test_/<name>: one test per element of `params` (a
// std::vector<RowImpl>: row_draws.hpp, named by `name`, row_name or row_impl_name), each running
// `check` (a CheckFn) on the element's row, its `family` matrix row, with its implementation, as
// a cell that must hold; `info` (a PropertyInfo) says what it checks.
#define NORMCHECK_INHERITED_TEST(prefix, suite_, test_, params, name, family, info, check)      \
  class suite_ : public ::testing::TestWithParam<::normcheck::test::RowImpl> {};                \
  TEST_P(suite_, test_) {                                                                       \
    EXPECT_INHERITED_HOLDS(::normcheck::test::run_inherited(GetParam(), family, info, check)); \
  }                                                                                             \
  INSTANTIATE_TEST_SUITE_P(prefix, suite_, ::testing::ValuesIn(params), name)

// A check that must hold, failing with the matrix's section of its minimal counterexample.
#define EXPECT_INHERITED_HOLDS(result)                                       \
  do {                                                                       \
    const ::normcheck::CellResult& normcheck_r_ = (result);                  \
    EXPECT_TRUE(normcheck_r_.as_expected()) << "\n"                          \
                                            << ::normcheck::section_text(normcheck_r_); \
  } while (0)
