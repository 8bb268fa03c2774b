// The engine's budgets and its discard policy, on hand-built cells around broken copies of
// layer_norm (nothing is added to the registry).
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include <rapidcheck.h>

#include "properties/catalog.hpp"
#include "properties/search.hpp"

namespace normcheck {
namespace {

struct Broken {
  LayerEntry entry;
  std::vector<Cell> cells;
  const Cell& cell(Impl impl, const std::string& prop) const {
    for (const auto& c : cells)
      if (c.info.impl == impl && c.info.prop.id == prop) return c;
    throw std::invalid_argument(prop);
  }
};

std::unique_ptr<Broken> layer_norm_with(ForwardFn optimized) {
  auto b = std::make_unique<Broken>();
  b->entry = layer("layer_norm");
  b->entry.name = "broken_layer_norm";
  b->entry.optimized = std::move(optimized);
  b->cells = norm_cells({&b->entry});
  return b;
}

RunOptions options(uint64_t seed) {
  RunOptions o;
  o.seed = seed;
  o.use_rc_params_reproduce = false;
  return o;
}

void slow_layer_norm(const Batch& in, const Params& p, Mode m, State* s, Output& out) {
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  layer("layer_norm").optimized(in, p, m, s, out);
}

// wrong by 1 on batches of 40 values or more, and slow: its counterexample needs many slow
// shrink steps
void slow_wrong_layer_norm(const Batch& in, const Params& p, Mode m, State* s, Output& out) {
  slow_layer_norm(in, p, m, s, out);
  if (in.x.size() >= 40)
    for (auto& v : out) v += 1;
}

double seconds_of(const std::function<void()>& f) {
  const auto t = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

TEST(Engine, PastTheCellBudgetASearchingCellIsAnErrorAndReturnsSoon) {
  const auto b = layer_norm_with(slow_layer_norm);
  RunOptions o = options(1);
  o.cell_budget = 0.3;  // 100 cases of 40 ms would take 4 s
  CellResult r;
  const double s = seconds_of([&] { r = run_cell(b->cell(Impl::optimized, "reference_agreement"), o); });
  EXPECT_EQ(r.observed, "error") << r.message;
  EXPECT_NE(r.message.find("search budget"), std::string::npos) << r.message;
  EXPECT_LT(s, 2.0);
  // without the budget the same cell holds
  o.cell_budget = 0;
  o.cases = 10;
  EXPECT_EQ(run_cell(b->cell(Impl::optimized, "reference_agreement"), o).observed, "holds");
}

TEST(Engine, PastTheShrinkBudgetTheSmallestCounterexampleSoFarIsReported) {
  const auto b = layer_norm_with(slow_wrong_layer_norm);
  RunOptions o = options(2);
  o.shrink_budget = 0.3;
  CellResult r;
  const double s = seconds_of([&] { r = run_cell(b->cell(Impl::optimized, "reference_agreement"), o); });
  EXPECT_EQ(r.observed, "violated");
  EXPECT_TRUE(r.shrink_budget_spent);
  EXPECT_FALSE(r.counterexample.is_null());
  EXPECT_NE(r.message.find("shrink budget"), std::string::npos) << r.message;
  EXPECT_LT(s, 3.0);
  // the reported case replays: it is the best shrink accepted before the budget ran out
  RunOptions replay = options(2);
  replay.reproduce = r.reproduce;
  const CellResult again = run_cell(b->cell(Impl::optimized, "reference_agreement"), replay);
  EXPECT_EQ(again.observed, "violated");
  // … and it is the case the report shows, not the unshrunk first failure
  EXPECT_EQ(again.counterexample, r.counterexample);
}

TEST(Search, PastTheShrinkBudgetTheRemainingCandidatesAreNotTried) {
  // A case of 20,000 picked values that always fails: each shrink step offers about 20,000 × 15
  // candidates, each a copy of the 20,000 picks. Tried one by one after the budget (each passing
  // at once), they took minutes; the search must end soon after the budget instead, with a
  // reproduce string that replays the smallest failure reached.
  int last_size = -1;
  const auto one_case = [&](std::string& why) {
    const auto v = *rc::gen::resize(100, rc::gen::container<std::vector<int>>(20000, rc::gen::inRange(0, 1 << 14)));
    last_size = int(v.size());
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    why = "always";
    return CaseVerdict::counterexample;
  };
  SearchOptions o{.id = "search_budget_test", .max_success = 10, .seed = 7, .shrink_budget = 0.3};
  const auto t = std::chrono::steady_clock::now();
  const SearchResult r = search(one_case, o);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
  EXPECT_EQ(r.kind, SearchResult::Kind::failed) << r.description;
  EXPECT_TRUE(r.shrink_budget_spent);
  EXPECT_LT(s, 10.0);
  ASSERT_FALSE(r.reproduce.empty());
  SearchOptions replay = o;
  replay.reproduce = r.reproduce;
  EXPECT_EQ(search(one_case, replay).kind, SearchResult::Kind::failed);
  EXPECT_EQ(last_size, 20000);
}

TEST(Search, TheShrinkCaseBudgetStopsAtTheSameCaseHoweverSlowTheCasesRun) {
  // Fails on every vector of 30 values or more: shrinking takes many steps. With a budget of 12
  // candidates, a fast run and a run whose cases are slow (a loaded machine) stop after the same
  // 12 candidates, at the same smallest counterexample so far; the time budget is not reached.
  const auto run = [](int sleep_ms, int shrink_cases) {
    const auto one_case = [&](std::string& why) {
      const auto v = *rc::gen::container<std::vector<int>>(rc::gen::inRange(0, 1000));
      if (sleep_ms) std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms));
      why = "long";
      return v.size() >= 30 ? CaseVerdict::counterexample : CaseVerdict::fine;
    };
    const SearchOptions o{.id = "shrink_cases_test", .max_success = 200, .seed = 11,
                          .shrink_budget = 60, .shrink_cases = shrink_cases};
    return search(one_case, o);
  };
  const SearchResult fast = run(0, 12), slow = run(5, 12), free = run(0, 0);
  ASSERT_EQ(fast.kind, SearchResult::Kind::failed) << fast.description;
  ASSERT_EQ(slow.kind, SearchResult::Kind::failed) << slow.description;
  EXPECT_TRUE(fast.shrink_budget_spent);
  EXPECT_TRUE(slow.shrink_budget_spent);
  EXPECT_EQ(fast.shrink_cases, 12);
  EXPECT_EQ(slow.shrink_cases, 12);
  EXPECT_EQ(fast.reproduce, slow.reproduce);
  // without the count the shrink goes further: the budget did stop it early
  ASSERT_EQ(free.kind, SearchResult::Kind::failed);
  EXPECT_FALSE(free.shrink_budget_spent);
  EXPECT_GT(free.shrink_cases, 12);
  EXPECT_NE(free.reproduce, fast.reproduce);
}

TEST(Engine, ACellStoppedByTheShrinkCaseBudgetSaysSo) {
  const auto b = layer_norm_with(slow_wrong_layer_norm);
  RunOptions o = options(2);
  o.shrink_cases = 3;
  const CellResult r = run_cell(b->cell(Impl::optimized, "reference_agreement"), o);
  EXPECT_EQ(r.observed, "violated");
  EXPECT_TRUE(r.shrink_budget_spent);
  EXPECT_EQ(r.shrink_cases, 3);
  EXPECT_NE(r.message.find("shrink budget (3 cases)"), std::string::npos) << r.message;
  EXPECT_EQ(to_json(r).value("shrink_cases", -1), 3);
}

// Throws on a valid input: tokens of more than 4 features.
void picky_layer_norm(const Batch& in, const Params& p, Mode m, State* s, Output& out) {
  if (in.D > 4) throw InvalidInput("picky: D = " + std::to_string(in.D) + " is not supported");
  layer("layer_norm").optimized(in, p, m, s, out);
}

TEST(Engine, AnImplementationThatRejectsWhatTheReferenceAcceptsFailsWithThatInput) {
  const auto b = layer_norm_with(picky_layer_norm);
  // a ✓ cell: violated, with the smallest rejected input and the message
  const CellResult r = run_cell(b->cell(Impl::optimized, "batch_independence"), options(3));
  EXPECT_EQ(r.observed, "violated") << r.message;
  ASSERT_TRUE(r.counterexample.contains("rejected")) << r.counterexample.dump(1);
  EXPECT_EQ(r.counterexample["rejected"]["implementation"], "optimized");
  EXPECT_NE(r.counterexample["rejected"]["message"].get<std::string>().find("D = 5"), std::string::npos)
      << "shrunk to the smallest D it rejects: " << r.counterexample["rejected"].dump();
  EXPECT_NE(r.message.find("rejects a valid input"), std::string::npos) << r.message;
  // a ✗ cell cannot take a rejection as its evidence: an error, not "violated"
  const CellResult x = run_cell(b->cell(Impl::optimized, "feature_shift_invariance"), options(3));
  EXPECT_EQ(x.cell.expected, Expect::violated);
  if (x.observed != "violated") {
    EXPECT_EQ(x.observed, "error");
    EXPECT_TRUE(x.counterexample.contains("rejected"));
  }
  // the reference cells are untouched (the reference accepts everything the generators draw)
  EXPECT_EQ(run_cell(b->cell(Impl::reference, "batch_independence"), options(3)).observed, "holds");
}

TEST(Engine, ACaseBothImplementationsRejectIsDiscarded) {
  // batch_norm [train] rejects one value per channel in both implementations: never a failure
  for (const auto& c : all_cells())
    if (c.info.row.id == "batch_norm_train" && c.info.prop.id == "padding_invariance") {
      const CellResult r = run_cell(c, options(4));
      EXPECT_TRUE(r.as_expected()) << r.message;
    }
}

}  // namespace
}  // namespace normcheck
