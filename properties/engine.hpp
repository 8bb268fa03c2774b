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
  int cases = 100;                // generated cases for a ✓ cell; the search budget of a ✗ cell
  std::optional<uint64_t> seed;   // default: RapidCheck's configuration (RC_PARAMS or fresh)
  std::string reproduce;          // "reproduce=..." (RC_PARAMS form) replays one case
  int max_size = 100;
};

// RunOptions from RapidCheck's global configuration (RC_PARAMS: seed, max_success, reproduce).
RunOptions options_from_rc_params();

struct Cell {
  LayerRow row;
  Impl impl;
  const PropertyDef* prop;
  std::string id() const;  // "batch_norm_train/optimized/padding_invariance"
};

// Every cell of every registry row × implementation × property, not-applicable ones included.
std::vector<Cell> all_cells();

struct CellResult {
  std::string layer;
  Mode mode = Mode::none;
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

nlohmann::json to_json(const CellResult& r);

}  // namespace normcheck
