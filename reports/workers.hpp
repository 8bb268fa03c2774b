// Cells run in worker processes. RapidCheck keeps its generation state in process-wide statics,
// so two cells cannot run in threads of one process; each worker is a process forked from the
// running one (it holds the same rows and options), runs the cells it is given one at a time and
// sends each result back. A cell's result depends only on the cell and the options, so the
// results are those of a run in one process, apart from the seconds each cell took.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <vector>

#include "properties/engine.hpp"
#include "reports/report.hpp"

namespace normcheck {

// Worker processes, forked when constructed, holding `cells` and `options` as they are then.
//
// fork() copies only the thread that calls it: a lock another thread holds at that moment stays
// held in the worker for ever, and the worker hangs when it next takes it. GCC 12's sanitizer
// runtimes have no fork handlers, so their allocator's locks are among those (a worker of an
// ASan build hung that way in a freeing RapidCheck destructor). So:
// - constructed while this process runs no other thread (the CLI constructs it before its
//   watchdog thread starts), the workers are forked from this thread, and nothing can be held;
// - otherwise they are forked from a fresh thread that never ran an OpenMP region (GNU OpenMP:
//   a child forked from a thread whose team exists waits for the team's threads, which it does
//   not have). That is safe only while the other threads hold no lock the cells need: idle
//   OpenMP threads, a thread blocked on a condition variable, not a thread that allocates.
// A worker gets SIGKILL when the thread that forked it ends (PR_SET_PDEATHSIG), so a process
// that ends (its watchdog fired) does not leave a worker running a kernel that never returns.
class Workers {
 public:
  Workers(const std::vector<Cell>& cells, const RunOptions& options, int count);  // count ≥ 2
  ~Workers();  // stops the workers still running and waits for them
  Workers(const Workers&) = delete;
  Workers& operator=(const Workers&) = delete;

  // Runs every cell once, handing out the next cell to whichever worker is free, in order.
  // `done(result, index)` is called in the order of the cells as results come in; `on_cell` (the
  // caller's RunOptions::on_cell, may be empty) here as a worker starts and ends each cell. The
  // kernels of every worker get the OpenMP thread count of the constructing thread. Throws
  // std::runtime_error when a worker ends without a result (a crash in a kernel), and what
  // run_cell threw in a worker (as std::invalid_argument or std::runtime_error). Once only.
  void run(const std::function<void(CellResult&&, std::size_t)>& done,
           const std::function<void(const Cell&, bool)>& on_cell = {});

  const std::vector<Cell>& cells() const;
  const RunOptions& options() const;
  bool forked_alone() const;  // forked while this process ran no other thread

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// run_matrix (report.hpp) with workers forked earlier: they run their cells with their options,
// which must have a seed; `on_cell` is called here as each cell starts and ends
// (RunOptions::on_cell). A program that starts threads of its own (the CLI's watchdog) forks its
// workers before them.
MatrixRun run_matrix(Workers& workers, const std::function<void(const Cell&, bool)>& on_cell,
                     const std::function<void(const CellResult&, std::size_t)>& after_each = {});

// The threads this process runs now (/proc/self/task), at least 1.
int process_threads();

// The processors this process may run on (sched_getaffinity), at least 1: the default workers.
int available_processors();

}  // namespace normcheck
