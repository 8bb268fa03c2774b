// The RapidCheck adapter: the one place that drives RapidCheck's internals (rc::detail). It runs
// a property — a function that draws one case and says whether it is a counterexample — with a
// given seed and budget, shrinks the first counterexample, and returns the string that replays
// it.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace normcheck {

// What one case showed.
enum class CaseVerdict {
  fine,            // no counterexample
  counterexample,  // the property fails on this case (RapidCheck shrinks it)
  discard,         // the case does not apply (RapidCheck draws another)
};

struct SearchOptions {
  std::string id;          // the property's name in a reproduce string (a cell id)
  int max_success = 100;   // cases to pass
  int max_size = 100;
  uint64_t seed = 0;
  std::string reproduce = {};  // "reproduce=..." naming `id`: replay that one case (empty: search)
  // with `reproduce` empty: replay a case RC_PARAMS names for `id` (the ctest binary)
  bool use_rc_params_reproduce = false;
  // Wall-clock budgets in seconds (≤ 0: none). Past `search_budget` the remaining cases are
  // discarded without running, so RapidCheck gives up (the cell is an error); past
  // `shrink_budget` after the first counterexample, no further shrink is accepted, and the
  // smallest counterexample so far is the result. A replay (`reproduce`) has no budget.
  double search_budget = 0;
  double shrink_budget = 0;
  // Shrink candidates (cases run after the first counterexample) at most (≤ 0: no limit): past
  // it, as past `shrink_budget`, the smallest counterexample so far is the result. A count, not
  // a time, so it stops at the same case on a fast machine and a loaded one.
  int shrink_cases = 0;
};

struct SearchResult {
  enum class Kind { passed, failed, gave_up, error } kind = Kind::error;
  int cases = 0;            // cases that passed (before the failure, for a failure)
  std::string reproduce;    // failed: "reproduce=...", the minimal case
  std::string description;  // gave_up and error: RapidCheck's words
  bool search_budget_spent = false;  // gave_up because the search budget ran out
  bool shrink_budget_spent = false;  // failed, shrinking stopped by its budget
  double shrink_seconds = 0;         // failed: time spent shrinking
  int shrink_cases = 0;              // failed: shrink candidates run
};

// Runs `one_case` (which may say why in `why`) until max_success cases pass or one is a counterexample, then shrinks it.
// Throws std::invalid_argument when `reproduce` does not name `id`.
SearchResult search(const std::function<CaseVerdict(std::string& why)>& one_case, const SearchOptions& options);

// RapidCheck's global configuration (RC_PARAMS): seed, max_success, max_size.
struct RcParams {
  uint64_t seed = 0;
  int max_success = 100, max_size = 100;
};
RcParams rc_params();

}  // namespace normcheck
