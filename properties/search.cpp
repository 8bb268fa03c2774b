#include "properties/search.hpp"

#include <chrono>
#include <optional>
#include <stdexcept>
#include <unordered_map>

#include <rapidcheck.h>
#include <rapidcheck/detail/Configuration.h>
#include <rapidcheck/detail/TestListener.h>

namespace normcheck {
namespace {

class QuietListener : public rc::detail::TestListener {
 public:
  void onTestCaseFinished(const rc::detail::CaseDescription&) override {}
  void onShrinkTried(const rc::detail::CaseDescription&, bool) override {}
  void onTestFinished(const rc::detail::TestMetadata&, const rc::detail::TestResult&) override {}
};

}  // namespace

RcParams rc_params() {
  const auto& cfg = rc::detail::configuration();
  return {cfg.testParams.seed, cfg.testParams.maxSuccess, cfg.testParams.maxSize};
}

SearchResult search(const std::function<CaseVerdict(std::string& why)>& one_case, const SearchOptions& o) {
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  const bool budgeted = o.reproduce.empty();
  const auto seconds = [](double s) {
    return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
  };
  // RapidCheck returns from its search at the first counterexample, so every case run after
  // one is a shrink candidate (or the final replay of the smallest one).
  std::optional<Clock::time_point> first_failure;
  bool search_spent = false, shrink_spent = false;
  int cases_run = 0;
  auto body = [&]() {
    if (budgeted && !first_failure && o.search_budget > 0 &&
        Clock::now() - start > seconds(o.search_budget)) {
      // cheap discards until RapidCheck gives up: the cell ends as an error, the run goes on
      search_spent = true;
      RC_DISCARD("the cell's search budget of " + std::to_string(o.search_budget) +
                 " s was spent after " + std::to_string(cases_run) + " cases");
    }
    if (budgeted && first_failure && o.shrink_budget > 0 &&
        Clock::now() - *first_failure > seconds(o.shrink_budget)) {
      // a candidate that passes is never accepted: the smallest counterexample so far stays
      shrink_spent = true;
      return;
    }
    ++cases_run;
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
  QuietListener listener;
  const auto result =
      rc::detail::checkProperty(rc::detail::toProperty(body), meta, params, listener, reproduce);

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
    rc::detail::Configuration cfg;
    cfg.reproduce[o.id] = fail.reproduce;
    // keep only the reproduce=... key: it is all a replay needs
    const std::string full = rc::detail::configToMinimalString(cfg);
    const auto at = full.find("reproduce=");
    r.reproduce = full.substr(at, full.find(' ', at) - at);
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
