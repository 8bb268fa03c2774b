// Runs one cell of the matrix — (row, implementation, property) — with RapidCheck, and turns
// the outcome into a CellResult: observed holds/violated/error, the shrunk counterexample and the
// string that replays it.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
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
  // Wall-clock budgets, seconds (≤ 0: none). Past `cell_budget` a cell still searching ends as
  // `error` and the run goes on; past `shrink_budget` after its first counterexample a cell
  // reports the smallest counterexample shrunk so far. A case already running is not
  // interrupted: the watchdog (cli) ends a run whose cell passes hard_limit() (a kernel that
  // never returns): `watchdog` seconds, or when ≤ 0 both budgets plus 30 s.
  double cell_budget = 60;
  double shrink_budget = 30;
  double watchdog = 0;
  // Called as each cell starts (with the cell) and ends (nullptr): the CLI's watchdog.
  std::function<void(const Cell*)> on_cell = {};
  double hard_limit() const {
    return watchdog > 0 ? watchdog : std::max(cell_budget, 0.0) + std::max(shrink_budget, 0.0) + 30;
  }
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
  bool shrink_budget_spent = false;  // the counterexample is the smallest found within the budget
  // What the cell's cases drew, by class (generators.hpp, gen::Coverage): sizes relative to each
  // kernel threshold, data regimes, poison, ... (successful and failing cases alike).
  std::map<std::string, int> drawn = {};

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
