#include "properties/engine.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>

#include "properties/coverage.hpp"
#include "properties/counterexample.hpp"
#include "properties/search.hpp"

// Where the built-in programs are in the build tree and once installed (properties/CMakeLists.txt).
#ifndef NORMCHECK_BUILD_CLI
#define NORMCHECK_BUILD_CLI ""
#endif
#ifndef NORMCHECK_BUILD_PROPERTY_TESTS
#define NORMCHECK_BUILD_PROPERTY_TESTS ""
#endif
#ifndef NORMCHECK_INSTALLED_CLI
#define NORMCHECK_INSTALLED_CLI ""
#endif

namespace normcheck {

// ---------------------------------------------------------------------------------------------
// the model's small functions

const char* to_string(Family f) {
  static constexpr const char* names[] = {"norm", "attention", "block", "gradient"};
  return names[int(f)];
}

const char* to_string(Expect e) {
  static constexpr const char* names[] = {"holds", "violated", "not_applicable"};
  return names[int(e)];
}

Expect expected(const Row& row, Impl impl, const Property& prop) {
  if (prop.applies.optimized_only && impl != Impl::optimized) return Expect::not_applicable;
  if (prop.applies.mode_comparing && row.info.mode == Mode::eval) return Expect::not_applicable;
  if (!prop.applies.needs.empty() && row.violated.count(prop.applies.needs))
    return Expect::not_applicable;
  const auto& any = prop.applies.needs_one_of;
  if (!any.empty() && std::all_of(any.begin(), any.end(), [&](const std::string& id) { return row.violated.count(id) > 0; }))
    return Expect::not_applicable;
  if (!prop.applies.forward_keeps.empty() &&
      (!row.norm.profile || row.norm.profile->violated.count(prop.applies.forward_keeps)))
    return Expect::not_applicable;
  // a must-hold property listed in a row's profile is a declared, explained exception (an
  // external kernel that is not thread-deterministic, say)
  if (impl == Impl::optimized && row.optimized_violates.count(prop.id())) return Expect::violated;
  return row.violated.count(prop.id()) ? Expect::violated : Expect::holds;
}

std::string CellInfo::id() const { return row.id + "/" + to_string(impl) + "/" + prop.id; }

std::string gtest_name(const std::string& cell_id) {
  std::string name = cell_id;
  for (auto& ch : name)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return name;
}

// ---------------------------------------------------------------------------------------------
// running a cell

RunOptions options_from_rc_params() {
  const RcParams p = rc_params();
  RunOptions o;
  o.cases = p.max_success;
  o.seed = p.seed;
  o.max_size = p.max_size;
  return o;
}

namespace {

std::string plural(int n, const char* one, const char* many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}

// ---------------------------------------------------------------------------------------------
// the programs replay commands name

namespace fs = std::filesystem;

Programs& project_programs() {
  static Programs p;
  return p;
}

// argv[0] of this process, as it was started ("build/release/normcheck", "/abs/my_tests",
// "normcheck"), and the directory of its executable.
const std::string& started_as() {
  static const std::string argv0 = [] {
    std::ifstream in("/proc/self/cmdline", std::ios::binary);
    std::string first;
    std::getline(in, first, '\0');
    return first;
  }();
  return argv0;
}

fs::path own_directory() {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? fs::path() : exe.parent_path();
}

// A program found at `found` (absolute), written the way this process was started: absolute,
// relative to the working directory, or by name when both were found on the PATH.
std::string written_like_self(const fs::path& found) {
  const std::string& self = started_as();
  if (!self.empty() && self[0] == '/') return found.string();
  if (self.find('/') == std::string::npos)
    return found.parent_path() == own_directory() ? found.filename().string() : found.string();
  std::error_code ec;
  const fs::path rel = found.lexically_relative(fs::current_path(ec));
  if (ec || rel.empty()) return found.string();
  const std::string text = rel.string();
  return text.find('/') == std::string::npos ? "./" + text : text;
}

// `name` as a replay command writes it: next to the running program, else at one of `known`
// (absolute paths), else as given.
std::string locate(const std::string& name, const std::vector<std::string>& known = {}) {
  std::error_code ec;
  std::vector<fs::path> candidates;
  if (name.find('/') != std::string::npos) candidates.push_back(fs::absolute(name, ec));
  else if (!own_directory().empty()) candidates.push_back(own_directory() / name);
  for (const auto& k : known)
    if (!k.empty()) candidates.push_back(k);
  for (const auto& c : candidates)
    if (fs::is_regular_file(c, ec)) return written_like_self(c.lexically_normal());
  return name;
}

// What starts the running program, before its name in its own replays (set_replay_launcher).
std::string& replay_launcher() {
  static std::string launcher;
  return launcher;
}

// The programs that hold a row: built-in (and mutant) rows live in normcheck's own programs,
// rows registered at run time in the project's (set_replay_programs).
struct Holders {
  std::string cli, tests;
};

Holders holders_of(const RowInfo& row, Program running) {
  const bool builtin = row.origin != "external";
  const Programs& project = project_programs();
  Holders h;
  if (running == Program::cli) h.cli = started_as();
  else if (builtin) h.cli = locate("normcheck", {NORMCHECK_BUILD_CLI, NORMCHECK_INSTALLED_CLI});
  else h.cli = project.cli.empty() ? "YOUR_CLI_MAIN_PROGRAM" : locate(project.cli);
  if (running == Program::tests) h.tests = started_as();
  else if (builtin) h.tests = locate("normcheck_property_tests", {NORMCHECK_BUILD_PROPERTY_TESTS});
  else h.tests = project.tests.empty() ? "YOUR_TEST_BINARY" : locate(project.tests);
  return h;
}

std::string quoted_program(const std::string& p) {
  return p.find_first_of(" '\"$`\\") == std::string::npos ? p : "'" + p + "'";
}

void set_replay(CellResult& r, Program running, const std::string& test_filter = {}) {
  if (r.reproduce.empty()) return;
  if (!test_filter.empty()) {  // a check of a test binary, not a matrix cell: that binary alone
    r.replay_tests = "RC_PARAMS=\"" + r.reproduce + "\" " + quoted_program(started_as()) +
                     " --gtest_filter='" + test_filter + "'";
    r.replay_cli = r.replay_tests;
    return;
  }
  const Holders h = holders_of(r.cell.row, running);
  const std::string& launcher = replay_launcher();
  r.replay_cli = (running == Program::cli && !launcher.empty() ? launcher + " " : std::string()) +
                 quoted_program(h.cli) + " matrix --layer '^" + r.cell.row.id + "$' --property '^" +
                 r.cell.prop.id + "$' --implementation " + to_string(r.cell.impl) +
                 " --reproduce '" + r.reproduce + "'";
  r.replay_tests = "RC_PARAMS=\"" + r.reproduce + "\" " + quoted_program(h.tests) +
                   " --gtest_filter='*/" + gtest_name(r.id()) + "'";
}

// "batch_norm [train] / optimized / padding_invariance"
std::string cell_name(const CellInfo& c) {
  return c.row.name + " / " + to_string(c.impl) + " / " + c.prop.id;
}

}  // namespace

bool CellResult::as_expected() const {
  if (cell.expected == Expect::not_applicable) return observed == "not_applicable";
  return observed == to_string(cell.expected);
}

namespace {
CellResult run_cell_unwatched(const Cell& cell, const RunOptions& options);
}

CellResult run_cell(const Cell& cell, const RunOptions& options) {
  if (!options.on_cell) return run_cell_unwatched(cell, options);
  options.on_cell(cell, true);
  CellResult r = run_cell_unwatched(cell, options);
  options.on_cell(cell, false);
  return r;
}

namespace {

CellResult run_cell_unwatched(const Cell& cell, const RunOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  CellResult r{.cell = cell.info};
  if (r.cell.expected == Expect::not_applicable) {
    r.observed = "not_applicable";
    return r;
  }
  const bool want_violation = r.cell.expected == Expect::violated;

  std::optional<CaseOutcome> last_failure;
  double max_dev = 0;  // NaN and inf included: a deviation is never summarised as smaller
  bool failed_once = false;
  coverage::start_cell();
  auto one_case = [&](std::string& why) {
    CaseOutcome o;
    // shrink candidates are not draws of the search: only the search's cases are counted
    coverage::start_case(!failed_once);
    try {
      o = cell.property->check(cell.row, cell.info.impl);
    } catch (const InvalidInput& e) {
      // both implementations reject it (rejection.hpp): not an input of this layer
      coverage::end_case();
      why = std::string("the row rejects this input: ") + e.what();
      return CaseVerdict::discard;
    }
    coverage::end_case();
    max_dev = worse_deviation(max_dev, o.max_dev);
    // A ✗ cell counts only a finite counterexample (never one made of NaN alone) — or a
    // rejected valid input, which is shrunk like a counterexample and reported as an error; a
    // ✓ cell fails on any disagreement.
    const bool fails = want_violation ? o.finite_violation || !o.rejection.empty() : o.any();
    if (!fails) return CaseVerdict::fine;
    why = o.summary;
    failed_once = true;
    last_failure = std::move(o);
    return CaseVerdict::counterexample;
  };
  SearchOptions so{.id = cell.id(),
                   .max_success = want_violation ? options.cases * options.violation_search_factor
                                                 : options.cases,
                   .max_size = options.max_size,
                   .seed = options.seed ? *options.seed : rc_params().seed,
                   .reproduce = options.reproduce,
                   .use_rc_params_reproduce = options.use_rc_params_reproduce,
                   .search_budget = options.cell_budget,
                   .shrink_budget = options.shrink_budget,
                   .shrink_cases = options.shrink_cases};
  r.seed = so.seed;
  const SearchResult found = search(one_case, so);
  r.max_deviation = max_dev;
  r.drawn = coverage::cell_counts();

  const std::string name = cell_name(r.cell);
  switch (found.kind) {
    case SearchResult::Kind::passed:
      r.observed = "holds";
      r.cases = found.cases;
      if (want_violation)
        r.message = name + ": expected violation not found in " + plural(r.cases, "case", "cases") +
                    " (largest deviation " + deviation_text(max_dev) +
                    "). Either the row keeps this invariant or the generators cannot reach the "
                    "inputs that break it.";
      break;
    case SearchResult::Kind::failed: {
      r.cases = found.cases + 1;
      r.reproduce = found.reproduce;
      r.shrink_budget_spent = found.shrink_budget_spent;
      r.shrink_cases = found.shrink_cases;
      set_replay(r, options.program, options.test_filter);
      // the last counterexample RapidCheck saw is the shrunk one it reports
      if (last_failure) r.counterexample = last_failure->evidence;
      const bool rejected = last_failure && !last_failure->rejection.empty();
      // a rejected valid input is no evidence for a ✗ cell: the row failed otherwise
      r.observed = rejected && want_violation ? "error" : "violated";
      const bool by_count = options.shrink_cases > 0 && found.shrink_cases >= options.shrink_cases;
      const std::string shrunk =
          found.shrink_budget_spent
              ? " and shrunk until the shrink budget (" +
                    (by_count ? plural(options.shrink_cases, "case", "cases")
                              : fmt::format("{:g} s", options.shrink_budget)) +
                    ") was spent: the smallest counterexample found so far"
              : " and shrunk";
      if (!want_violation || rejected)
        r.message = name + ": expected " + (want_violation ? "a violation" : "to hold") +
                    ", but " + (rejected ? "an implementation rejects a valid input" : "a counterexample was found") +
                    " after " + plural(r.cases, "case", "cases") + shrunk + ": " +
                    (last_failure ? last_failure->summary : std::string("?")) +
                    "\n  replay: " + replay_command(r) +
                    (rc_params_command(r) == replay_command(r) ? "" : "\n      or  " + rc_params_command(r));
      else if (found.shrink_budget_spent)
        r.message = name + ": counterexample found after " + plural(r.cases, "case", "cases") + shrunk;
      break;
    }
    case SearchResult::Kind::gave_up:
      r.observed = "error";
      r.cases = found.cases;
      r.message = name + (found.search_budget_spent ? ": " : ": gave up: ") + found.description;
      break;
    case SearchResult::Kind::error:
      r.observed = "error";
      r.message = name + ": " + found.description;
      break;
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

}  // namespace

void set_replay_programs(Programs programs) { project_programs() = std::move(programs); }
void set_replay_launcher(std::string launcher) { replay_launcher() = std::move(launcher); }

// A result made elsewhere (read back from JSON without its commands, or built by hand) gets the
// commands this process would print.
std::string replay_command(const CellResult& r) {
  if (!r.replay_cli.empty() || r.reproduce.empty()) return r.replay_cli;
  CellResult c = r;
  set_replay(c, Program::library);
  return c.replay_cli;
}

std::string rc_params_command(const CellResult& r) {
  if (!r.replay_tests.empty() || r.reproduce.empty()) return r.replay_tests;
  CellResult c = r;
  set_replay(c, Program::library);
  return c.replay_tests;
}

nlohmann::json to_json(const CellResult& r) {
  const RowInfo& row = r.cell.row;
  nlohmann::json j = {{"family", to_string(row.family)},
                      {"layer", row.layer},
                      {"mode", row.mode == Mode::none ? nlohmann::json(nullptr)
                                                      : nlohmann::json(to_string(row.mode))},
                      {"implementation", to_string(r.cell.impl)},
                      {"row", row.id},
                      {"property", r.cell.prop.id},
                      {"expected", to_string(r.cell.expected)},
                      {"observed", r.observed},
                      {"as_expected", r.as_expected()},
                      {"cases", r.cases},
                      {"max_deviation", number_json(r.max_deviation)},
                      {"counterexample", r.counterexample},
                      {"reproduce", r.reproduce},
                      {"seed", r.seed},
                      {"seconds", r.seconds}};
  if (!row.placement.empty()) j["placement"] = row.placement;
  if (row.origin != "builtin") j["origin"] = row.origin;
  if (!r.reproduce.empty())
    j["replay"] = {{"normcheck", replay_command(r)}, {"ctest", rc_params_command(r)}};
  if (!r.message.empty()) j["message"] = r.message;
  if (r.shrink_budget_spent) j["shrink_budget_spent"] = true;
  if (!r.reproduce.empty()) j["shrink_cases"] = r.shrink_cases;
  if (!r.drawn.empty()) j["drawn"] = r.drawn;
  return j;
}

}  // namespace normcheck
