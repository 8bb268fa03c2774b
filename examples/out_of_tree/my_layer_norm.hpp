#pragma once

#include <norms/registry.hpp>

namespace my_kernels {

// Registers the project's layers with normcheck (idempotent); returns them.
std::vector<const normcheck::LayerEntry*> register_with_normcheck();

}  // namespace my_kernels
