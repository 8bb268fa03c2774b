// The property families, each written in its own file; properties/catalog.cpp joins them.
#pragma once

#include <vector>

#include "properties/model.hpp"

namespace normcheck {

std::vector<Property> norm_properties();       // norm_properties.cpp
std::vector<Property> attention_properties();  // attention_properties.cpp (sdpa and mha rows)
std::vector<Property> block_properties();      // block_properties.cpp
std::vector<Property> gradient_properties();   // gradient_properties.cpp

}  // namespace normcheck
