// Runs one cell of the matrix — (row, implementation, property) — with RapidCheck, and turns
// the outcome into a CellResult: observed holds/violated/error, the shrunk counterexample and the
// string that replays it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "properties/model.hpp"

namespace normcheck {

struct RunOptions {
  int cases = 100;                   // generated cases for a ✓ cell
  int violation_search_factor = 10;  // a ✗ cell searches up to factor × cases for its counterexample
  std::optional<uint64_t> seed;      // default: RapidCheck's configuration (RC_PARAMS or fresh)
  std::string reproduce;             // "reproduce=..." (RC_PARAMS form) replays one case
  int max_size = 100;
  // Also replay a case named in RC_PARAMS' reproduce map (the ctest binary). The CLI turns this
  // off: with it off and a seed given, RapidCheck's global configuration is never loaded (and
  // never prints its own, unrelated, seed).
  bool use_rc_params_reproduce = true;
};

// RunOptions from RapidCheck's global configuration (RC_PARAMS: seed, max_success, reproduce).
RunOptions options_from_rc_params();

struct CellResult {
  CellInfo cell;
  std::string observed = {};  // holds | violated | error | not_applicable
  int cases = 0;         // cases run (for a ✗ cell: until the counterexample was found)
  double max_deviation = 0;
  nlohmann::json counterexample = {};  // null when none was found
  std::string reproduce = {};     // RC_PARAMS value that replays the counterexample
  std::string message = {};       // one paragraph a person reads
  uint64_t seed = 0;
  double seconds = 0;

  std::string id() const { return cell.id(); }
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
