// The expected matrix as ctest tests: one test per (row, implementation, property) cell, named
// so that `ctest -R batch_norm` or `ctest -R padding` selects sensibly.
#include "properties/catalog.hpp"
#include "properties/gtest_matrix.hpp"

NORMCHECK_INSTANTIATE_MATRIX(Matrix, normcheck::all_cells());
