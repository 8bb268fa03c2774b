// One GoogleTest test per cell, for ctest: in one test source of the project's test binary,
//
//   #include <normcheck/gtest.hpp>
//   NORMCHECK_INSTANTIATE_MATRIX(MyKernels, normcheck::layer_cells(my_layers()));
//
// and link GTest::gtest_main (the package's normcheck_add_tests(TARGET SOURCES...) does, and
// makes each cell a ctest test). A failing cell prints the counterexample as report.md does, with
// the two commands that replay it.
#pragma once

#include <normcheck/normcheck.hpp>
#include <normcheck/properties/gtest_matrix.hpp>
