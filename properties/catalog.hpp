// The whole catalogue in one place: every cell of the matrix (norm rows, attention ops, blocks)
// and every golden op, joined from the registries. Tests, the CLI and the reports read this.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "properties/engine.hpp"
#include "properties/golden.hpp"

namespace normcheck {

std::vector<Cell> all_cells();

// Every property that has a column, in matrix order.
std::vector<PropertyInfo> all_properties();
const PropertyInfo& property_info(const std::string& id);  // throws std::invalid_argument

using GoldenFn = std::function<GoldenOutcome(const nlohmann::json& c, Impl impl)>;
// op name → checker: one per layer row, plus the attention ops.
const std::map<std::string, GoldenFn>& golden_ops();
bool golden_op_known(const std::string& op);
// Checks a case of any op; never throws. An unknown op comes back with known = false, a
// malformed case with malformed = true, each with a one-line reason naming the field.
GoldenOutcome check_golden_case(const nlohmann::json& c, Impl impl);

}  // namespace normcheck
