#include "properties/search.hpp"

#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>
#include <unordered_map>

#include <rapidcheck.h>
#include <rapidcheck/detail/Configuration.h>
#include <rapidcheck/detail/TestListener.h>

namespace normcheck {
namespace {

// Thrown out of RapidCheck by the listener once the shrink budget is spent.
struct StopShrinking {};

// Prints nothing; follows the shrink path (the index, among each step's candidates, of the one
// accepted) and ends the shrinking once `stop` says so. RapidCheck would otherwise try every
// remaining candidate of the smallest case, each passing at once: for a case of a few thousand
// picked values that alone took minutes, past the watchdog's hard limit.
class QuietListener : public rc::detail::TestListener {
 public:
  explicit QuietListener(std::function<bool()> stop = {}) : stop_(std::move(stop)) {}
  void onTestCaseFinished(const rc::detail::CaseDescription& c) override {
    if (c.result.type == rc::detail::CaseResult::Type::Success) ++passed;
  }
  void onShrinkTried(const rc::detail::CaseDescription&, bool accepted) override {
    if (accepted) {
      path.push_back(tried_);
      tried_ = 0;
    } else {
      ++tried_;
    }
    if (stop_ && stop_()) throw StopShrinking{};
  }
  void onTestFinished(const rc::detail::TestMetadata&, const rc::detail::TestResult&) override {}
  std::vector<std::size_t> path;
  int passed = 0;  // search cases that passed

 private:
  std::function<bool()> stop_;
  std::size_t tried_ = 0;
};

// RapidCheck's toProperty, except that a case runs once. RapidCheck asks a case for its result
// and, separately, for its shrinks, and each question runs the case again (the shrinks come from
// the picks a run records): the failing case and every accepted shrink ran twice, and the
// minimal case a third time, each a full run of the property on a case of up to millions of
// values. Here the first run's result and picks are kept: the same cases in the same order,
// the same results, each run once.
using CaseRun = std::pair<rc::detail::TaggedResult, rc::gen::detail::Recipe>;

template <typename Adapter>
rc::Shrinkable<CaseRun> run_once(const Adapter& adapter, rc::gen::detail::Recipe recipe) {
  auto kept = std::make_shared<std::optional<CaseRun>>();
  return rc::shrinkable::shrink(
      [=] {
        if (!*kept) *kept = rc::gen::detail::execWithRecipe(adapter, recipe);
        return **kept;
      },
      [adapter](CaseRun&& run) {
        return rc::seq::map(rc::gen::detail::shrinkRecipe(run.second),
                            [adapter](rc::gen::detail::Recipe&& shrunk) { return run_once(adapter, std::move(shrunk)); });
      });
}

template <typename Body>
rc::detail::Property property_of(Body body) {
  using Adapter = rc::detail::PropertyAdapter<Body>;
  const Adapter adapter(std::move(body));
  return rc::detail::mapToCaseDescription(rc::Gen<CaseRun>([adapter](const rc::Random& random, int size) {
    rc::gen::detail::Recipe recipe;
    recipe.random = random;
    recipe.size = size;
    return run_once(adapter, std::move(recipe));
  }));
}

std::string reproduce_string(const std::string& id, const rc::detail::Reproduce& rep) {
  rc::detail::Configuration cfg;
  cfg.reproduce[id] = rep;
  // keep only the reproduce=... key: it is all a replay needs
  const std::string full = rc::detail::configToMinimalString(cfg);
  const auto at = full.find("reproduce=");
  return full.substr(at, full.find(' ', at) - at);
}

}  // namespace

RcParams rc_params() {
  const auto& cfg = rc::detail::configuration();
  return {cfg.testParams.seed, cfg.testParams.maxSuccess, cfg.testParams.maxSize};
}

SearchResult search(const std::function<CaseVerdict(std::string& why)>& one_case, const SearchOptions& o) {
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  bool budgeted = o.reproduce.empty();  // off for the repeated search and replay below
  const auto seconds = [](double s) {
    return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
  };
  // RapidCheck returns from its search at the first counterexample, so every case run after
  // one is a shrink candidate (or the final replay of the smallest one).
  std::optional<Clock::time_point> first_failure;
  bool search_spent = false, shrink_spent = false;
  int cases_run = 0, shrink_run = 0;
  auto body = [&]() {
    if (budgeted && !first_failure && o.search_budget > 0 &&
        Clock::now() - start > seconds(o.search_budget)) {
      // cheap discards until RapidCheck gives up: the cell ends as an error, the run goes on
      search_spent = true;
      RC_DISCARD("the cell's search budget of " + std::to_string(o.search_budget) +
                 " s was spent after " + std::to_string(cases_run) + " cases");
    }
    if (budgeted && first_failure &&
        ((o.shrink_cases > 0 && shrink_run >= o.shrink_cases) ||
         (o.shrink_budget > 0 && Clock::now() - *first_failure > seconds(o.shrink_budget)))) {
      // a candidate that passes is never accepted: the smallest counterexample so far stays
      shrink_spent = true;
      return;
    }
    ++cases_run;
    if (first_failure) ++shrink_run;
    std::string why;
    switch (one_case(why)) {
      case CaseVerdict::fine: return;
      case CaseVerdict::discard: RC_DISCARD(why);
      case CaseVerdict::counterexample:
        if (!first_failure) first_failure = Clock::now();
        RC_FAIL(why);
    }
  };
  rc::detail::TestParams params;
  params.maxSuccess = o.max_success;
  params.maxSize = o.max_size;
  params.seed = o.seed;
  rc::detail::TestMetadata meta;
  meta.id = o.id;
  meta.description = o.id;
  std::unordered_map<std::string, rc::detail::Reproduce> reproduce;
  if (!o.reproduce.empty()) {
    std::string repro = o.reproduce;
    if (repro.rfind("reproduce=", 0) != 0) repro = "reproduce=" + repro;
    const auto cfg = rc::detail::configFromString(repro);
    const auto it = cfg.reproduce.find(o.id);
    if (it == cfg.reproduce.end())
      throw std::invalid_argument("the reproduce string is not for cell " + o.id);
    reproduce[o.id] = it->second;
  } else if (o.use_rc_params_reproduce) {
    const auto& global = rc::detail::configuration().reproduce;
    if (auto it = global.find(o.id); it != global.end()) reproduce[o.id] = it->second;
  }
  const auto inner = property_of(body);
  // The Random and size each case is drawn with: RapidCheck shrinks the failing case without
  // drawing again, so the last pair seen is the failing case's, the start of its reproduce string.
  std::optional<rc::Random> case_random;
  int case_size = 0;
  const rc::detail::Property property([&](const rc::Random& random, int size) {
    case_random = random;
    case_size = size;
    return inner(random, size);
  });
  QuietListener listener([&] { return shrink_spent; });
  std::optional<rc::detail::TestResult> stopped_result;
  try {
    stopped_result = rc::detail::checkProperty(property, meta, params, listener, reproduce);
  } catch (const StopShrinking&) {
    // The smallest counterexample is the failing case followed along `listener.path`: replayed
    // once, so that the last case `one_case` saw is that one again (its evidence is reported).
    const double shrink_seconds =
        std::chrono::duration<double>(Clock::now() - *first_failure).count();
    const int shrink_count = shrink_run;  // the replay below is not a shrink candidate
    budgeted = false;
    first_failure.reset();
    const rc::detail::Reproduce smallest{*case_random, case_size, listener.path};
    QuietListener replay;
    const auto last = rc::detail::checkProperty(property, meta, params, replay, {{o.id, smallest}});
    SearchResult r;
    r.kind = last.template is<rc::detail::FailureResult>() ? SearchResult::Kind::failed
                                                          : SearchResult::Kind::error;
    r.description = "the smallest counterexample did not fail again when replayed (a property "
                    "that depends on more than its input?)";
    r.cases = listener.passed;
    r.shrink_budget_spent = true;
    r.reproduce = reproduce_string(o.id, smallest);
    r.shrink_seconds = shrink_seconds;
    r.shrink_cases = shrink_count;
    return r;
  }
  const auto& result = *stopped_result;
  if (result.template is<rc::detail::FailureResult>() && case_random && reproduce.empty()) {
    // what the replay after a stopped shrink relies on: the last case drawn is the one that failed
    const auto& fail = result.template get<rc::detail::FailureResult>();
    if (fail.reproduce.random != *case_random || fail.reproduce.size != case_size)
      throw std::logic_error("search: RapidCheck's failing case is not the last one drawn");
  }

  SearchResult r;
  if (result.template is<rc::detail::SuccessResult>()) {
    r.kind = SearchResult::Kind::passed;
    r.cases = result.template get<rc::detail::SuccessResult>().numSuccess;
  } else if (result.template is<rc::detail::FailureResult>()) {
    const auto& fail = result.template get<rc::detail::FailureResult>();
    r.kind = SearchResult::Kind::failed;
    r.cases = fail.numSuccess;
    r.shrink_budget_spent = shrink_spent;
    if (first_failure)
      r.shrink_seconds = std::chrono::duration<double>(Clock::now() - *first_failure).count();
    r.shrink_cases = shrink_run;
    r.reproduce = reproduce_string(o.id, fail.reproduce);
  } else if (result.template is<rc::detail::GaveUpResult>()) {
    r.kind = SearchResult::Kind::gave_up;
    r.cases = result.template get<rc::detail::GaveUpResult>().numSuccess;
    r.description = result.template get<rc::detail::GaveUpResult>().description;
    r.search_budget_spent = search_spent;
  } else {
    r.kind = SearchResult::Kind::error;
    r.description = result.template get<rc::detail::Error>().description;
  }
  return r;
}

}  // namespace normcheck
