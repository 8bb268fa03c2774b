// One ctest test per cell of the project's layer; a failure prints its counterexample.
#include <normcheck/gtest.hpp>
std::vector<const normcheck::LayerEntry*> my_layers();
NORMCHECK_INSTANTIATE_MATRIX(MyKernels, normcheck::layer_cells(my_layers()));
