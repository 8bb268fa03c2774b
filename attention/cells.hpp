// The attention and block cells of the matrix, their property descriptions, and the golden
// checkers of the ops `sdpa` and `mha`. properties/catalog.cpp joins them with the norm cells.
#pragma once

#include <vector>

#include <nlohmann/json.hpp>

#include "properties/engine.hpp"
#include "properties/golden.hpp"
#include "attention/sdpa.hpp"

namespace normcheck {

// Rows `sdpa` and `mha` × implementation × attention property.
std::vector<Cell> attention_cells();
// Every norm row × placement (pre, post) × implementation × block property.
std::vector<Cell> block_cells();

// Column descriptions, matrix order. Attention properties that share an id with a norm
// property (batch_independence, causality, reference_agreement, thread_determinism) share its
// column; a cell's own PropertyInfo says what it means for attention.
std::vector<PropertyInfo> attention_properties();
std::vector<PropertyInfo> block_properties();

// The optimized SDPA kernel the `sdpa` cells run: sdpa_optimized. A seam for mutants/ only,
// which swaps a deliberately broken kernel in for the duration of its own run.
using SdpaKernelFn = void (*)(std::vector<float>& out, std::vector<float>* weights,
                              const std::vector<float>& q, const std::vector<float>& k,
                              const std::vector<float>& v, const SdpaShape& s, const SdpaMask& m,
                              double scale);
SdpaKernelFn& sdpa_cells_kernel();

GoldenOutcome check_sdpa_golden_case(const nlohmann::json& c, Impl impl);
GoldenOutcome check_mha_golden_case(const nlohmann::json& c, Impl impl);

}  // namespace normcheck
