#include "properties/engine.hpp"

#include <chrono>
#include <cmath>
#include <sstream>

#include "properties/search.hpp"

namespace normcheck {

// ---------------------------------------------------------------------------------------------
// the model's small functions

const char* to_string(Family f) {
  static constexpr const char* names[] = {"norm", "attention", "block"};
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
  // a must-hold property listed in a row's profile is a declared, explained exception (an
  // external kernel that is not thread-deterministic, say)
  if (impl == Impl::optimized && row.optimized_violated.count(prop.id())) return Expect::violated;
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

std::string fmt_double(double v) {
  std::ostringstream s;
  s.precision(6);
  s << v;
  return s.str();
}

std::string plural(int n, const char* one, const char* many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
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

CellResult run_cell(const Cell& cell, const RunOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  CellResult r{.cell = cell.info};
  if (r.cell.expected == Expect::not_applicable) {
    r.observed = "not_applicable";
    return r;
  }
  const bool want_violation = r.cell.expected == Expect::violated;

  std::optional<CaseOutcome> last_failure;
  double max_dev = 0;
  auto one_case = [&](std::string& why) {
    CaseOutcome o;
    try {
      o = cell.property->check(cell.row, cell.info.impl);
    } catch (const InvalidInput& e) {
      why = std::string("the row rejects this input: ") + e.what();
      return CaseVerdict::discard;
    }
    max_dev = std::max(max_dev, o.max_dev);
    // A ✗ cell counts only a finite counterexample (never one made of NaN alone); a ✓ cell
    // fails on any disagreement.
    if (want_violation ? !o.finite_violation : !o.any()) return CaseVerdict::fine;
    why = o.summary;
    last_failure = std::move(o);
    return CaseVerdict::counterexample;
  };
  SearchOptions so{.id = cell.id(),
                   .max_success = want_violation ? options.cases * options.violation_search_factor
                                                 : options.cases,
                   .max_size = options.max_size,
                   .seed = options.seed ? *options.seed : rc_params().seed,
                   .reproduce = options.reproduce,
                   .use_rc_params_reproduce = options.use_rc_params_reproduce};
  r.seed = so.seed;
  const SearchResult found = search(one_case, so);
  r.max_deviation = max_dev;

  const std::string name = cell_name(r.cell);
  switch (found.kind) {
    case SearchResult::Kind::passed:
      r.observed = "holds";
      r.cases = found.cases;
      if (want_violation)
        r.message = name + ": expected violation not found in " + plural(r.cases, "case", "cases") +
                    " (largest deviation " + fmt_double(max_dev) +
                    "). Either the row keeps this invariant or the generators cannot reach the "
                    "inputs that break it.";
      break;
    case SearchResult::Kind::failed:
      r.observed = "violated";
      r.cases = found.cases + 1;
      r.reproduce = found.reproduce;
      // the last counterexample RapidCheck saw is the shrunk one it reports
      if (last_failure) r.counterexample = last_failure->evidence;
      if (!want_violation)
        r.message = name + ": expected to hold, but a counterexample was found after " +
                    plural(r.cases, "case", "cases") + " and shrunk: " +
                    (last_failure ? last_failure->summary : std::string("?")) +
                    "\n  replay: " + replay_command(r) + "\n      or  " + rc_params_command(r);
      break;
    case SearchResult::Kind::gave_up:
      r.observed = "error";
      r.cases = found.cases;
      r.message = name + ": gave up: " + found.description;
      break;
    case SearchResult::Kind::error:
      r.observed = "error";
      r.message = name + ": " + found.description;
      break;
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

std::string replay_command(const CellResult& r) {
  if (r.reproduce.empty()) return "";
  return "normcheck matrix --layer '^" + r.cell.row.id + "$' --property '^" + r.cell.prop.id +
         "$' --implementation " + to_string(r.cell.impl) + " --reproduce '" + r.reproduce + "'";
}

std::string rc_params_command(const CellResult& r) {
  if (r.reproduce.empty()) return "";
  return "RC_PARAMS=\"" + r.reproduce + "\" normcheck_property_tests --gtest_filter='*/" +
         gtest_name(r.id()) + "'";
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
                      {"max_deviation", r.max_deviation},
                      {"counterexample", r.counterexample},
                      {"reproduce", r.reproduce},
                      {"seed", r.seed},
                      {"seconds", r.seconds}};
  if (!row.placement.empty()) j["placement"] = row.placement;
  if (row.origin != "builtin") j["origin"] = row.origin;
  if (!r.message.empty()) j["message"] = r.message;
  return j;
}

}  // namespace normcheck
