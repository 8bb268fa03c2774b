// Runs one cell of the matrix — (layer row, implementation, property) — with RapidCheck, and
// turns the outcome into a CellResult: observed holds/violated, the shrunk counterexample and
// the string that replays it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "properties/property.hpp"

namespace normcheck {

struct RunOptions {
  int cases = 100;                // generated cases for a ✓ cell
  int violation_search_factor = 10;  // a ✗ cell searches up to factor × cases for its counterexample
  std::optional<uint64_t> seed;   // default: RapidCheck's configuration (RC_PARAMS or fresh)
  std::string reproduce;          // "reproduce=..." (RC_PARAMS form) replays one case
  int max_size = 100;
  // Also replay a case named in RC_PARAMS' reproduce map (the ctest binary). The CLI turns this
  // off: with it off and a seed given, RapidCheck's global configuration is never loaded (and
  // never prints its own, unrelated, seed).
  bool use_rc_params_reproduce = true;
};

// RunOptions from RapidCheck's global configuration (RC_PARAMS: seed, max_success, reproduce).
RunOptions options_from_rc_params();

// The outcome of one generated case of a cell.
struct CaseOutcome {
  bool finite_violation = false;    // a real, finite counterexample
  bool nonfinite_mismatch = false;  // NaN/inf on one side only (a failure for ✓ cells only)
  double max_dev = 0;               // largest finite deviation seen in this case
  std::string summary;              // one line: what differs, where
  nlohmann::json evidence;          // the case as small tensors; filled when anything differs
  bool any() const { return finite_violation || nonfinite_mismatch; }
};

// One cell of the matrix: a row (a layer in a mode, an attention op, a block with a norm in
// one placement), an implementation and a property, with what the registries expect of it.
struct Cell {
  std::string row_id;     // "batch_norm_train", "sdpa", "block_pre_layer_norm"
  std::string row_name;   // "batch_norm [train]"
  std::string layer;      // "batch_norm"
  Mode mode = Mode::none;
  std::string placement;  // "pre" | "post" for block cells, else empty
  std::string origin = "builtin";  // builtin | external | mutant (the layer's origin)
  Impl impl = Impl::reference;
  PropertyInfo prop;
  Expect expected = Expect::holds;
  // Draws one case with RapidCheck (`*gen` inside) and checks it. Throws InvalidInput when the
  // layer rejects the drawn input (the case is discarded).
  std::function<CaseOutcome()> check_case;

  std::string id() const;  // "batch_norm_train/optimized/padding_invariance"
};

// The ctest/GoogleTest name of a cell: its id with every non-alphanumeric character as '_'.
std::string gtest_name(const std::string& cell_id);

// The norm cells: every row of the given layers (default: the registry) × implementation ×
// norm property, not-applicable included.
std::vector<Cell> norm_cells();
std::vector<Cell> norm_cells(const std::vector<const LayerEntry*>& layers);
// One norm cell. `row` must outlive the cell (its check_case keeps the pointers). Tests use it
// to run a property on a layer entry that is not in the registry (a deliberately broken kernel).
Cell norm_cell(const LayerRow& row, Impl impl, const PropertyDef& prop);

struct CellResult {
  std::string row_id;
  std::string layer;
  Mode mode = Mode::none;
  std::string placement;
  PropertyInfo info;
  Impl impl = Impl::reference;
  std::string property;
  std::string row_name;  // "batch_norm [train]"
  Expect expected = Expect::holds;
  std::string observed;  // holds | violated | error | not_applicable
  int cases = 0;         // cases run (for a ✗ cell: until the counterexample was found)
  double max_deviation = 0;
  nlohmann::json counterexample;  // null when none was found
  std::string reproduce;          // RC_PARAMS value that replays the counterexample
  std::string message;            // one paragraph a person reads
  uint64_t seed = 0;
  double seconds = 0;

  std::string id() const;
  bool as_expected() const;
};

CellResult run_cell(const Cell& cell, const RunOptions& options);

// The two commands that replay a failure exactly (empty when there is nothing to replay):
//   normcheck matrix --layer '^<row>$' --property '^<property>$' --implementation <impl> --reproduce '...'
//   RC_PARAMS="reproduce=..." normcheck_property_tests --gtest_filter='*<gtest name>'
std::string replay_command(const CellResult& r);
std::string rc_params_command(const CellResult& r);

nlohmann::json to_json(const CellResult& r);

}  // namespace normcheck
