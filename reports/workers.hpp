// Cells run in worker processes. RapidCheck keeps its generation state in process-wide statics,
// so two cells cannot run in threads of one process; each worker is a process forked from the
// running one (it holds the same rows and options), runs the cells it is given one at a time and
// sends each result back. A cell's result depends only on the cell and the options, so the
// results are those of a run in one process, apart from the seconds each cell took.
#pragma once

#include <cstddef>
#include <functional>
#include <vector>

#include "properties/engine.hpp"

namespace normcheck {

// Runs `cells` on `workers` processes (≥ 2), handing out the next cell to whichever worker is
// free, in order. `done(result, index)` is called in the order of `cells` as results come in;
// `options.on_cell` is called here as a worker starts and ends each cell. The kernels of every
// worker get this thread's OpenMP thread count. Throws std::runtime_error when a worker ends
// without a result (a crash in a kernel), and what run_cell threw in a worker (as
// std::invalid_argument or std::runtime_error).
void run_in_workers(const std::vector<Cell>& cells, const RunOptions& options, int workers,
                    const std::function<void(CellResult&&, std::size_t)>& done);

// The processors this process may run on (sched_getaffinity), at least 1: the default workers.
int available_processors();

}  // namespace normcheck
