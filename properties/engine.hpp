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

#include <normcheck/properties/model.hpp>

namespace normcheck {

// Which program runs the cells. A program whose main calls cli_main, or a GoogleTest binary
// running NORMCHECK_INSTANTIATE_MATRIX, holds every cell it runs, so its own replay command names
// it as it was started (argv[0]).
enum class Program { library, cli, tests };

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
  // Shrink candidates a cell may run after its first counterexample (≤ 0: no limit); past it,
  // as past `shrink_budget`, the smallest counterexample so far is reported. Counted, not timed,
  // so a run reports the same counterexample for a seed however loaded the machine is (the
  // time budget is then only a backstop for a slow kernel). The default matrix's ✗ cells run
  // 1 to 1,624 (seeds 1–3).
  int shrink_cases = 5000;
  double watchdog = 0;
  // Called as each cell starts (started true) and ends (false): the CLI's watchdog. Cells run
  // in worker processes (run_matrix) are announced by the process that started the workers.
  std::function<void(const Cell& cell, bool started)> on_cell = {};
  double hard_limit() const {
    return watchdog > 0 ? watchdog : std::max(cell_budget, 0.0) + std::max(shrink_budget, 0.0) + 30;
  }
  Program program = Program::library;
  // A check that is not a matrix cell (a registry-wide test in a GoogleTest binary, run as a
  // cell of its own: properties/tests/inherited.hpp): the GoogleTest filter of that test. Its
  // replay command is then `RC_PARAMS="reproduce=..." <this binary> --gtest_filter='<filter>'`
  // alone, since no command-line program holds the check.
  std::string test_filter = {};
};

// RunOptions from RapidCheck's global configuration (RC_PARAMS: seed, max_success, reproduce).
RunOptions options_from_rc_params();

struct CellResult {
  CellInfo cell;
  std::string observed = {};  // holds | violated | error | not_applicable
  int cases = 0;         // cases run (for a ✗ cell: until the counterexample was found)
  // The largest deviation seen over every case: NaN when a value was NaN on one side only, inf
  // when infinite on one side only (worse_deviation), else the largest finite |a − b|.
  double max_deviation = 0;
  nlohmann::json counterexample = {};  // null when none was found
  std::string reproduce = {};     // RC_PARAMS value that replays the counterexample
  // The two commands that replay it, naming the programs that hold the cell (replay_command,
  // rc_params_command); set by run_cell when `reproduce` is. The same command twice when only
  // the test binary holds it (RunOptions::test_filter).
  std::string replay_cli = {}, replay_tests = {};
  std::string message = {};       // one paragraph a person reads
  uint64_t seed = 0;
  double seconds = 0;
  bool shrink_budget_spent = false;  // the counterexample is the smallest found within the budget
  int shrink_cases = 0;              // shrink candidates run (a ✗ or failed cell)
  // What the cell's cases drew, by class (generators.hpp, gen::Coverage): sizes relative to each
  // kernel threshold, data regimes, poison, ... (successful and failing cases alike).
  std::map<std::string, int> drawn = {};

  std::string id() const { return cell.id(); }
  bool as_expected() const;
};

CellResult run_cell(const Cell& cell, const RunOptions& options);

// ---------------------------------------------------------------------------------------------
// Replay. A failure carries two commands that replay exactly its minimal case, each in a program
// that holds the cell (empty when there is nothing to replay):
//   <cli> matrix --layer '^<row>$' --property '^<property>$' --implementation <impl> --reproduce '...'
//   RC_PARAMS="reproduce=..." <tests> --gtest_filter='*/<gtest name>'
// <cli> is a program whose main registers the row and calls cli_main; <tests> the GoogleTest
// binary that instantiates the row's cells. The running program is named as it was started
// (argv[0]); another one as a path in the same style (relative to the working directory, or
// absolute, as ctest starts tests), found next to the running program, else by its name.
std::string replay_command(const CellResult& r);
std::string rc_params_command(const CellResult& r);

// The programs holding a row's cells. Built-in rows: `normcheck` and `normcheck_property_tests`.
struct Programs {
  std::string cli;    // the project's command line (main: register the rows, call cli_main)
  std::string tests;  // the project's test binary (NORMCHECK_INSTANTIATE_MATRIX over its cells)
};
// Names the programs holding the rows this process registers at run time (register_layer,
// register_attention): the names of the project's two executables (CMake targets), or paths.
// Call it where the rows are registered, so both programs know it. Without it, the replay
// commands of those rows name the running program and a placeholder for the other.
void set_replay_programs(Programs programs);
// What starts the running program, put before its name in the replay commands it writes for
// itself (normcheck-mpi: "mpirun -np 2"): a program that only runs under a launcher says so, and
// its replays work as printed. Empty by default.
void set_replay_launcher(std::string launcher);

nlohmann::json to_json(const CellResult& r);

}  // namespace normcheck
