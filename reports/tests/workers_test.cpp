// run_matrix in worker processes: the same cells, in the same order, with the same results as a
// run in this process, apart from the seconds each cell took.
#include <gtest/gtest.h>

#include <omp.h>

#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <regex>
#include <set>
#include <thread>
#include <utility>

#include "reports/report.hpp"
#include "reports/workers.hpp"

namespace normcheck {
namespace {

using nlohmann::json;

// Holding, violated (with counterexamples and their shrinking), not applicable, a property that
// sets its own thread counts and rows whose kernels run OpenMP regions at the default count.
std::vector<Cell> some_cells() {
  const std::regex rows("^(layer_norm|batch_norm_train|rms_norm)$");
  const std::regex props("^(padding_invariance|batch_independence|thread_determinism|offset_invariance|"
                         "token_shift_invariance|feature_shift_invariance|reference_agreement)$");
  std::vector<Cell> cells;
  for (const auto& c : all_cells())
    if (std::regex_search(c.info.row.id, rows) && std::regex_search(c.info.prop.id, props)) cells.push_back(c);
  return cells;
}

std::vector<json> cells_json(const MatrixRun& run) {
  std::vector<json> out;
  for (const auto& r : run.results) {
    json j = to_json(r);
    j.erase("seconds");
    out.push_back(std::move(j));
  }
  return out;
}

RunOptions seeded(int cases) {
  RunOptions o;
  o.seed = 11;
  o.cases = cases;
  o.use_rc_params_reproduce = false;
  return o;
}

MatrixRun run_with(const std::vector<Cell>& cells, int workers, std::vector<std::size_t>* order = nullptr) {
  return run_matrix(cells, seeded(30), [&](const CellResult&, std::size_t i) { if (order) order->push_back(i); },
                    workers);
}

// Four cells on two workers: whether they were forked from this thread, and the results that came.
std::pair<bool, std::size_t> four_cells_on_workers() {
  const auto cells = some_cells();
  Workers w(std::vector<Cell>(cells.begin(), cells.begin() + 4), seeded(5), 2);
  std::size_t n = 0;
  w.run([&](CellResult&&, std::size_t) { ++n; });
  return {w.forked_alone(), n};
}

TEST(Workers, TwoOrThreeWorkersGiveTheCellsOfARunInThisProcess) {
  // an OpenMP region in this thread first, as earlier tests and a program's own work leave it:
  // the workers must still run their kernels' regions
  int sum = 0;
#pragma omp parallel reduction(+ : sum)
  sum += 1;
  ASSERT_GE(sum, 1);

  const auto cells = some_cells();
  ASSERT_GE(cells.size(), 20u);
  const MatrixRun one = run_with(cells, 1);
  const auto expected = cells_json(one);
  std::set<std::string> observed;
  for (const auto& j : expected) observed.insert(j["observed"].get<std::string>());
  // the selection holds every kind of result, so the comparison covers each
  EXPECT_EQ(observed, (std::set<std::string>{"holds", "violated", "not_applicable"}));
  for (int workers : {2, 3}) {
    std::vector<std::size_t> order;
    const MatrixRun many = run_with(cells, workers, &order);
    ASSERT_EQ(many.results.size(), cells.size()) << workers;
    const auto got = cells_json(many);
    for (std::size_t i = 0; i < cells.size(); ++i) EXPECT_EQ(got[i], expected[i]) << workers << " workers, cell " << i;
    ASSERT_EQ(order.size(), cells.size());
    for (std::size_t i = 0; i < order.size(); ++i) EXPECT_EQ(order[i], i) << "after_each must come in order";
  }
}

TEST(Workers, AnExceptionInAWorkerReachesTheCaller) {
  // the reproduce string of one cell's counterexample given to other cells: run_cell throws
  // std::invalid_argument in the worker
  const auto cells = some_cells();
  RunOptions o = seeded(30);
  std::string reproduce;
  std::size_t found = 0;
  for (; found < cells.size() && reproduce.empty(); ++found)
    if (cells[found].info.expected == Expect::violated) reproduce = run_cell(cells[found], o).reproduce;
  ASSERT_FALSE(reproduce.empty());
  std::vector<Cell> others;
  for (std::size_t i = 0; i < cells.size() && others.size() < 3; ++i)
    if (i + 1 != found && cells[i].info.expected != Expect::not_applicable) others.push_back(cells[i]);
  o.reproduce = reproduce;
  // run_matrix replays one cell in this process; the workers are asked directly
  Workers w(others, o, 2);
  EXPECT_THROW(w.run([](CellResult&&, std::size_t) {}), std::invalid_argument);
}

// A process that runs no other thread forks its workers from the constructing thread; one that
// does (a thread blocked on a condition variable here) from a fresh one. Each statement runs in a
// process of its own started anew ("threadsafe" death tests re-run this binary for the one test),
// so no earlier test's OpenMP threads are there.
TEST(WorkersDeathTest, ForkedFromThisThreadWhenItIsTheOnlyOne) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  auto run_alone = [] {
    const int before = process_threads();
    const auto [alone, n] = four_cells_on_workers();
    std::fprintf(stderr, "threads before %d, alone %d, cells %zu\n", before, int(alone), n);
    std::exit(before == 1 && alone && n == 4 ? 0 : 1);
  };
  EXPECT_EXIT(run_alone(), testing::ExitedWithCode(0), "threads before 1, alone 1, cells 4");
  auto run_beside_a_thread = [] {
    std::mutex m;
    std::condition_variable cv;
    bool stop = false;
    std::thread other([&] {
      std::unique_lock lock(m);
      cv.wait(lock, [&] { return stop; });
    });
    const auto [alone, n] = four_cells_on_workers();
    {
      std::lock_guard lock(m);
      stop = true;
    }
    cv.notify_all();
    other.join();
    std::fprintf(stderr, "alone %d, cells %zu\n", int(alone), n);
    std::exit(!alone && n == 4 ? 0 : 1);
  };
  EXPECT_EXIT(run_beside_a_thread(), testing::ExitedWithCode(0), "alone 0, cells 4");
}

TEST(Workers, RunTwiceIsAnError) {
  const auto cells = some_cells();
  Workers w(std::vector<Cell>(cells.begin(), cells.begin() + 2), seeded(5), 2);
  w.run([](CellResult&&, std::size_t) {});
  EXPECT_THROW(w.run([](CellResult&&, std::size_t) {}), std::logic_error);
}

TEST(Workers, AvailableProcessorsIsAtLeastOne) { EXPECT_GE(available_processors(), 1); }

}  // namespace
}  // namespace normcheck
