// Golden gradients: dx, dγ, dβ computed by PyTorch's autograd in float64
// (golden/pytorch_grad_golden.json, format normalization-golden-grad/1), checked through the
// backward functions of the layer registry.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "properties/golden.hpp"

namespace normcheck {

inline constexpr const char* kGradGoldenFormat = "normalization-golden-grad/1";

// True when a loaded golden file declares the gradient format (its "format" field).
bool is_grad_golden(const nlohmann::json& file);

// Loads a gradient golden file: load_golden's checks, and "format" must be
// normalization-golden-grad/1; throws GoldenFileError otherwise.
nlohmann::json load_grad_golden(const std::string& path);

// Checks one gradient case with one implementation through `row` (a layer row with a backward):
// runs the backward on the case's x, lengths, γ, β, params (and running statistics, which eval
// rows need) with its upstream gradient `dy`, then compares `dx` (valid positions only when
// `valid_only`), `dgamma` and `dbeta` (null: the layer has none) with the case's tolerance; the
// double reference must agree to 1e-4 of it, as for the forward. Never throws: a malformed case
// comes back as an input error naming the field.
GoldenOutcome check_grad_golden_case(const nlohmann::json& c, Impl impl, const LayerRow& row);
// The same, through the row the case's op names; an op with no backward in this build is an
// unknown op (known = false).
GoldenOutcome check_grad_golden_case(const nlohmann::json& c, Impl impl);

// The project's copy of the gradient golden file (set at build time), like default_golden_path.
std::string default_grad_golden_path();

}  // namespace normcheck
