// sync_batch_norm over a real distributed engine: Open MPI, one process per data-parallel worker
// on one machine (the optional component NORMCHECK_WITH_MPI; README "Training at scale over MPI").
//
// Rank 0 is the driver: it runs the normcheck command (the property engine, RapidCheck's
// generation and shrinking, the in-process reference, the comparison) over the row
// `mpi_sync_batch_norm`, whose optimized forward is this engine. Every forward call of that row
// is one data-parallel step over the ranks: rank 0 broadcasts the case (shape, shard cut,
// parameters, running statistics) and scatters the shards' sequences (rank r holds a contiguous
// block of the cut's shards); every rank checks with a small all-gather that all ranks agree on
// the case's shape, computes its shards' (count, mean, M2) per feature, all-gathers them, merges
// them with Chan's formula in shard order (the same fixed order on every rank, so the same
// bits), normalizes its shards with the merged statistics and updates its replica of the running
// statistics; rank 0 gathers the outputs. The other ranks serve such steps until rank 0 stops
// them.
//
// No hang: every collective is non-blocking (MPI_Ibcast, MPI_Iscatterv, MPI_Iallgather,
// MPI_Igatherv) and waited for by polling MPI_Test against a deadline; past it, or when MPI
// reports an error, the rank prints which collective of which case did not complete and ends the
// whole run with MPI_Abort.
#pragma once

#include "norms/registry.hpp"

namespace normcheck::mpi {

struct Options {
  double timeout = 30;        // seconds a collective of a step may take
  double idle_timeout = 900;  // seconds a serving rank waits for rank 0's next step
};

// After MPI_Init: error handling, fault injection (NORMCHECK_MPI_FAULT, for the tests), and a
// first all-gather checking that every rank runs the same protocol.
void start(const Options& options);
int rank();
int size();

// The row: sync_batch_norm's profile, parameters and in-process reference; its optimized forward
// and sharded forward run over the ranks. The plain forward spreads the batch's sequences over
// the ranks as evenly as B allows (what a distributed sampler gives each worker); the sharded
// forward runs the cut it is given (shard i on one rank, ranks holding consecutive shards).
LayerEntry sync_batch_norm_entry();

// Rank 0 (`normcheck-mpi equivalence`): `cases` random cases of sync_batch_norm's domain (cuts
// of 1 to 4 shards, train and eval, with and without γ/β, values at scales 1e-3…1e3 and offsets),
// each through the distributed sharded forward and the in-process sync_batch_norm's optimized
// sharded forward on the same cut: outputs and running statistics must be bitwise equal (the
// ranks run the in-process row's functions in the same merge order). Prints the verdict, or the
// first case and value that differ; returns 0 or 1.
int equivalence(long long cases, unsigned long long seed);

// Ranks other than 0: serve rank 0's steps until it stops; returns the number of steps served.
long long serve();
// Rank 0: ends the other ranks' serve().
void stop();

}  // namespace normcheck::mpi
