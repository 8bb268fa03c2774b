// The whole catalogue in one place: every property of every family, every row of every registry
// (norm layers, attention entries, norm rows inside blocks, norm rows' backward passes), the
// cells they make, and every golden op. Tests, the CLI and the reports read this and nothing
// else.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include <normcheck/properties/engine.hpp>
#include <normcheck/properties/golden.hpp>

namespace normcheck {

// Every property, families in matrix order (norm, attention, block, gradient).
const std::vector<Property>& properties();
const Property& property(Family family, const std::string& id);  // throws std::invalid_argument
// The matrix columns, in order: one per property id (attention properties that share an id
// with a norm property share its column).
std::vector<PropertyInfo> columns();
const PropertyInfo& column(const std::string& id);  // throws std::invalid_argument

// Rows. A norm entry gives one row per mode; each of those rows sits in a Pre-LN and a Post-LN
// block row, whose profile is derived from it.
std::vector<Row> norm_rows(const LayerEntry& layer);
// `block`: the block implementation the rows run (a mutant's); the built-in one by default.
std::vector<Row> block_rows(const LayerEntry& layer, const BlockEntry& block = block_entry());
// A layer with a backward pass gives one gradient row per mode, `grad_<row id>`, named
// `<row name> [gradient]`, whose profile is derived from the norm row's; none without one.
std::vector<Row> gradient_rows(const LayerEntry& layer);
Row attention_row(const AttentionEntry& entry);
// Every registered row: norm rows, attention rows, block rows, gradient rows (registry order).
std::vector<Row> all_rows();

// Cells: each row × implementation (reference, optimized) × every property of its family,
// not-applicable ones included.
std::vector<Cell> cells_of(const std::vector<Row>& rows);
std::vector<Cell> all_cells();
// The norm cells of the given layers (an out-of-tree project's own kernels), and the gradient
// cells of those with a backward pass.
std::vector<Cell> norm_cells(const std::vector<const LayerEntry*>& layers);
// Every cell of the given layers: their norm rows, their rows inside Pre-LN and Post-LN blocks
// and, for a layer with a backward pass, its gradient rows, as all_cells() holds them — what a
// project's test binary instantiates.
std::vector<Cell> layer_cells(const std::vector<const LayerEntry*>& layers);

using GoldenFn = std::function<GoldenOutcome(const nlohmann::json& c, Impl impl)>;
// Every row that computes a golden op (norm rows: golden_op(row); attention entries: their
// golden_op(); the block), per op, in registry order: the built-in row first, then rows
// registered at run time (an external library's implementation of the same op).
struct GoldenRow {
  std::string row;  // the row id
  GoldenFn check;
};
const std::map<std::string, std::vector<GoldenRow>>& golden_rows();
// op name → checker: each op's first row (the built-in one), one per norm row's op, plus the
// attention ops and the block.
const std::map<std::string, GoldenFn>& golden_ops();
bool golden_op_known(const std::string& op);
// Checks a case of any op; never throws. An unknown op comes back with known = false, a
// malformed case with malformed = true, each with a one-line reason naming the field. `row`: the
// id of the row to check it through (one of golden_rows() for its op; another row comes back
// with known = false); empty: the op's first row.
GoldenOutcome check_golden_case(const nlohmann::json& c, Impl impl, const std::string& row = {});

}  // namespace normcheck
