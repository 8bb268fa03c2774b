#include "mpi/distributed.hpp"

#include <mpi.h>
#include <omp.h>
#include <sched.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "norms/sync_batch_norm.hpp"

namespace normcheck::mpi {
namespace {

constexpr long long kProtocol = 1;  // bumped whenever a message's layout changes
enum Command : long long { kStep = 1, kStop = 2 };

// What rank 0 broadcasts first in every step: fixed size, the same binary on every rank.
struct Header {
  long long command = kStop;
  long long step = 0;  // 1, 2, … : the step's number, for the messages
  long long B = 0, T = 0, D = 0;
  long long mode = 0;  // Mode
  long long threads = 1;
  long long gamma = 0, beta = 0;  // has γ / β
  long long shards = 0;
  double eps = 0, momentum = 0;
};

// Test-only faults (NORMCHECK_MPI_FAULT=<kind>:<step>), acted on by rank 1 at that step:
// kill (the process dies: SIGKILL), stall (stops taking part, alive), shape (reports another D
// in the shape check), local (from that step on, normalizes with its own shards' statistics
// only: BatchNorm without the synchronization, which the matrix must catch).
struct Fault {
  std::string kind;
  long long step = 0;
};

struct World {
  int rank = 0, size = 1;
  Options options;
  Fault fault;
  long long step = 0;  // the current step
};

World& world() {
  static World w;
  return w;
}

double since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

[[noreturn]] void fail(const std::string& message) {
  std::fprintf(stderr, "normcheck-mpi: rank %d of %d: %s\n", world().rank, world().size,
               message.c_str());
  std::fflush(stderr);
  std::fflush(stdout);
  MPI_Abort(MPI_COMM_WORLD, 3);
  std::_Exit(3);
}

std::string step_name() {
  return world().step == 0 ? std::string("the start-up check") : "step " + std::to_string(world().step);
}

std::string mpi_error(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(code, text, &len);
  return std::string(text, std::size_t(len));
}

void check(int rc, const char* call) {
  if (rc != MPI_SUCCESS) fail(std::string(call) + " failed in " + step_name() + ": " + mpi_error(rc));
}

// Waits for a non-blocking collective, polling MPI_Test (which also progresses it) until
// `timeout` seconds have passed; then the run ends with a message naming the collective.
// Yields the core between polls: on a machine with fewer cores than ranks, a rank that spins
// would take the time of the rank it waits for.
void wait(MPI_Request& request, const char* what, double timeout) {
  const auto t0 = std::chrono::steady_clock::now();
  for (int polls = 0;; ++polls) {
    int done = 0;
    const int rc = MPI_Test(&request, &done, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) fail(std::string(what) + " failed in " + step_name() + ": " + mpi_error(rc));
    if (done) return;
    if (since(t0) > timeout) {
      char limit[32];
      std::snprintf(limit, sizeof limit, "%g", timeout);
      fail(std::string(what) + " of " + step_name() + " did not complete within " + limit +
           " s: a rank died, stopped or no longer takes part (every collective waits with a "
           "timeout: --mpi-timeout, --mpi-idle-timeout)");
    }
    if (polls < 200)
      sched_yield();
    else
      std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
}

void bcast(void* data, int count, MPI_Datatype type, const char* what, double timeout) {
  MPI_Request r;
  check(MPI_Ibcast(data, count, type, 0, MPI_COMM_WORLD, &r), "MPI_Ibcast");
  wait(r, what, timeout);
}

void allgather(const void* send, int count, MPI_Datatype type, void* recv, const char* what) {
  MPI_Request r;
  check(MPI_Iallgather(send, count, type, recv, count, type, MPI_COMM_WORLD, &r), "MPI_Iallgather");
  wait(r, what, world().options.timeout);
}

bool fault_at(const char* kind) {
  const World& w = world();
  return w.rank == 1 && w.fault.kind == kind && w.step == w.fault.step;
}

// Which shards and sequences a rank holds: a contiguous block of the cut's shards, so the ranks
// in rank order hold the shards in shard order.
struct Placement {
  std::vector<int> first_shard;  // [size + 1]
  std::vector<long long> first_seq;  // [size + 1]
  int slots = 1;  // the most shards a rank holds (the all-gather's slots per rank)
};

Placement place(const std::vector<int>& cut, int ranks) {
  Placement p;
  const int k = int(cut.size());
  p.first_shard.resize(ranks + 1);
  p.first_seq.resize(ranks + 1);
  for (int r = 0; r <= ranks; ++r) p.first_shard[r] = int((long long)r * k / ranks);
  std::vector<long long> seq(k + 1, 0);
  for (int i = 0; i < k; ++i) seq[i + 1] = seq[i] + cut[i];
  for (int r = 0; r <= ranks; ++r) p.first_seq[r] = seq[p.first_shard[r]];
  p.slots = (k + ranks - 1) / ranks;
  return p;
}

// The shape check: every rank all-gathers what it believes the step is; any difference ends the
// run, naming the ranks' views.
void check_shapes(const Header& h, int slots) {
  const World& w = world();
  long long mine[7] = {kProtocol, h.step, h.B, h.T, h.D, h.shards, slots};
  if (fault_at("shape")) mine[4] += 1;
  std::vector<long long> all(std::size_t(7) * w.size);
  allgather(mine, 7, MPI_LONG_LONG, all.data(), "MPI_Iallgather (the ranks' shapes)");
  auto view = [&](int r) {
    const long long* v = all.data() + std::size_t(7) * r;
    return "rank " + std::to_string(r) + " has protocol " + std::to_string(v[0]) + ", step " +
           std::to_string(v[1]) + ", [B, T, D] = [" + std::to_string(v[2]) + ", " + std::to_string(v[3]) +
           ", " + std::to_string(v[4]) + "], " + std::to_string(v[5]) + " shards";
  };
  for (int r = 0; r < w.size; ++r)
    if (!std::equal(all.begin() + 7 * r, all.begin() + 7 * r + 7, all.begin()))
      fail("the ranks disagree on the shape of " + step_name() + ": " + view(0) + ", " + view(r) +
           " (every rank must run the same normcheck-mpi and receive the same case)");
}

// One data-parallel step, on every rank. Rank 0 passes the whole batch and its state; the other
// ranks receive what they need. Returns (on rank 0) the outputs in the batch's layout and the
// state rank 0's replica holds after the step.
void step(Header h, const Batch* whole, const ShardCut* whole_cut, const Params* whole_p,
          State* state, Output* out) {
  World& w = world();
  w.step = h.step;
  const bool root = w.rank == 0;
  if (!root && h.threads > 0) omp_set_num_threads(int(h.threads));
  if (fault_at("kill")) std::raise(SIGKILL);
  if (fault_at("stall"))
    for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
  const int D = int(h.D), T = int(h.T);
  const Mode mode = Mode(h.mode);
  // the cut and the parameters: shards ints, then γ, β, running mean, running var (D each)
  std::vector<double> payload(std::size_t(h.shards) + 4 * std::size_t(D), 0.0);
  if (root) {
    for (long long i = 0; i < h.shards; ++i) payload[i] = (*whole_cut)[i];
    double* v = payload.data() + h.shards;
    for (int d = 0; d < D; ++d) {
      v[d] = h.gamma ? whole_p->gamma[d] : 0.0;
      v[D + d] = h.beta ? whole_p->beta[d] : 0.0;
      v[2 * D + d] = state ? state->running_mean[d] : 0.0;
      v[3 * D + d] = state ? state->running_var[d] : 0.0;
    }
  }
  bcast(payload.data(), int(payload.size()), MPI_DOUBLE, "MPI_Ibcast (the shard cut and parameters)",
        w.options.timeout);
  std::vector<int> cut(h.shards);
  for (long long i = 0; i < h.shards; ++i) cut[i] = int(payload[i]);
  Params p;
  p.eps = h.eps;
  p.momentum = h.momentum;
  const double* v = payload.data() + h.shards;
  if (h.gamma) p.gamma.assign(v, v + D);
  if (h.beta) p.beta.assign(v + D, v + 2 * D);
  State replica;
  replica.running_mean.assign(v + 2 * D, v + 3 * D);
  replica.running_var.assign(v + 3 * D, v + 4 * D);

  const Placement at = place(cut, w.size);
  check_shapes(h, at.slots);

  // the sequences of this rank's shards
  const std::size_t per_seq = std::size_t(T) * D;
  std::vector<int> counts(w.size), displs(w.size);
  for (int r = 0; r < w.size; ++r) {
    counts[r] = int((at.first_seq[r + 1] - at.first_seq[r]) * per_seq);
    displs[r] = int(at.first_seq[r] * per_seq);
  }
  const int my_seqs = int(at.first_seq[w.rank + 1] - at.first_seq[w.rank]);
  Batch local(my_seqs, T, D);
  {
    MPI_Request r;
    check(MPI_Iscatterv(root ? whole->x.data() : nullptr, counts.data(), displs.data(), MPI_FLOAT,
                        local.x.data(), counts[w.rank], MPI_FLOAT, 0, MPI_COMM_WORLD, &r),
          "MPI_Iscatterv");
    wait(r, "MPI_Iscatterv (the shards' sequences)", w.options.timeout);
  }

  std::vector<double> mean, var(D);
  long long n = 0;
  if (mode == Mode::train) {
    // this rank's shards' moments in its slots: [count, mean[D], M2[D]]; unused slots count 0
    const std::size_t slot = 1 + 2 * std::size_t(D);
    std::vector<double> mine(slot * at.slots, 0.0), all(mine.size() * w.size);
    int first = 0;
    for (int s = at.first_shard[w.rank]; s < at.first_shard[w.rank + 1]; ++s) {
      const Moments m = shard_moments(Impl::optimized, local, first, cut[s]);
      double* o = mine.data() + slot * (s - at.first_shard[w.rank]);
      o[0] = double(m.n);
      std::copy(m.mean.begin(), m.mean.end(), o + 1);
      std::copy(m.m2.begin(), m.m2.end(), o + 1 + D);
      first += cut[s];
    }
    allgather(mine.data(), int(mine.size()), MPI_DOUBLE, all.data(),
              "MPI_Iallgather (the shards' count, mean and M2)");
    // merged in rank order, slot order: the cut's shard order, on every rank
    const bool local_only = w.rank == 1 && w.fault.kind == "local" && w.step >= w.fault.step;
    Moments merged;
    for (int r = 0; r < w.size; ++r) {
      if (local_only && r != w.rank) continue;
      for (int s = 0; s < at.slots; ++s) {
        const double* o = all.data() + slot * (std::size_t(r) * at.slots + s);
        if (o[0] == 0) continue;
        Moments m;
        m.n = (long long)o[0];
        m.mean.assign(o + 1, o + 1 + D);
        m.m2.assign(o + 1 + D, o + 1 + 2 * D);
        merge_moments(merged, m);
      }
    }
    if (merged.n == 0) {  // only under the `local` fault: a rank without shards
      merged.mean.assign(D, 0.0);
      merged.m2.assign(D, 0.0);
    }
    n = merged.n;
    if (!local_only && n != h.B * h.T)
      fail("the all-gathered counts sum to " + std::to_string(n) + " positions in " + step_name() +
           ", the batch has " + std::to_string(h.B * h.T));
    mean = std::move(merged.mean);
    for (int d = 0; d < D; ++d) var[d] = merged.m2[d] / double(n);
  } else {
    mean = replica.running_mean;
    var = replica.running_var;
  }

  // each rank normalizes its own sequences; rank 0 gathers them in the batch's layout
  Output y;
  if (my_seqs > 0) sync_normalize(Impl::optimized, local, p, mean, var, y);
  std::vector<float> mine(y.begin(), y.end()), gathered(root ? std::size_t(h.B) * per_seq : 0);
  {
    MPI_Request r;
    check(MPI_Igatherv(mine.data(), int(mine.size()), MPI_FLOAT, root ? gathered.data() : nullptr,
                       counts.data(), displs.data(), MPI_FLOAT, 0, MPI_COMM_WORLD, &r),
          "MPI_Igatherv");
    wait(r, "MPI_Igatherv (the normalized shards)", w.options.timeout);
  }
  if (mode == Mode::train) sync_update_running(p, n, mean, var, replica);
  if (root) {
    out->assign(gathered.begin(), gathered.end());
    if (state) *state = std::move(replica);
  }
}

long long g_step = 0;  // rank 0: the steps started

// Rank 0: a forward call of the row as one step over the ranks. Everything the layer rejects is
// rejected here, before any message: the other ranks never see an invalid case.
void distributed_forward(const Batch& in, const ShardCut& cut, const Params& p, Mode mode,
                         State* state, Output& out) {
  validate_batch(in);
  check_sync_batch_norm_inputs(in, p, mode, state);
  validate_shard_cut(in, cut);
  if (in.x.size() > std::size_t(INT_MAX))
    throw InvalidInput("mpi_sync_batch_norm: a batch of " + std::to_string(in.x.size()) +
                       " values does not fit one MPI message (at most " + std::to_string(INT_MAX) + ")");
  Header h;
  h.command = kStep;
  h.step = ++g_step;
  h.B = in.B;
  h.T = in.T;
  h.D = in.D;
  h.mode = (long long)mode;
  h.threads = omp_get_max_threads();
  h.gamma = !p.gamma.empty();
  h.beta = !p.beta.empty();
  h.shards = (long long)cut.size();
  h.eps = p.eps;
  h.momentum = p.momentum;
  world().step = h.step;
  bcast(&h, int(sizeof h), MPI_BYTE, "MPI_Ibcast (the step's header)", world().options.timeout);
  step(h, &in, &cut, &p, state, &out);
}

}  // namespace

void start(const Options& options) {
  World& w = world();
  w.options = options;
  MPI_Comm_rank(MPI_COMM_WORLD, &w.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &w.size);
  // errors come back as codes: the messages say which collective of which step
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  if (const char* f = std::getenv("NORMCHECK_MPI_FAULT"); f && *f) {
    const std::string s = f;
    const auto colon = s.find(':');
    w.fault.kind = s.substr(0, colon);
    w.fault.step = colon == std::string::npos ? 1 : std::atoll(s.c_str() + colon + 1);
    if (w.fault.kind != "kill" && w.fault.kind != "stall" && w.fault.kind != "shape" && w.fault.kind != "local")
      fail("NORMCHECK_MPI_FAULT='" + s + "': expected kill|stall|shape|local:<step>");
  }
  long long mine = kProtocol;
  std::vector<long long> all(w.size);
  allgather(&mine, 1, MPI_LONG_LONG, all.data(), "MPI_Iallgather (the start-up check)");
  for (int r = 0; r < w.size; ++r)
    if (all[r] != kProtocol)
      fail("rank " + std::to_string(r) + " speaks protocol " + std::to_string(all[r]) + ", this rank " +
           std::to_string(kProtocol) + ": every rank must run the same normcheck-mpi");
}

int rank() { return world().rank; }
int size() { return world().size; }

long long serve() {
  long long served = 0;
  for (;;) {
    Header h;
    bcast(&h, int(sizeof h), MPI_BYTE, "MPI_Ibcast (waiting for rank 0's next step)",
          world().options.idle_timeout);
    if (h.command == kStop) return served;
    if (h.command != kStep) fail("unknown command " + std::to_string(h.command) + " from rank 0");
    step(h, nullptr, nullptr, nullptr, nullptr, nullptr);
    ++served;
  }
}

void stop() {
  Header h;
  h.command = kStop;
  bcast(&h, int(sizeof h), MPI_BYTE, "MPI_Ibcast (the stop)", world().options.timeout);
}

LayerEntry sync_batch_norm_entry() {
  LayerEntry e = implementation_of(
      layer("sync_batch_norm"), "mpi_sync_batch_norm",
      "sync_batch_norm over MPI ranks: each rank's shards' (count, mean, M2) all-gathered and "
      "merged with Chan's formula in shard order; each rank normalizes its own shards",
      [](const Batch& in, const Params& p, Mode mode, State* state, Output& out) {
        validate_batch(in);
        // the batch over the ranks as evenly as B allows: min(B, ranks) shards
        const int k = std::min(in.B, size());
        ShardCut cut(std::max(k, 1), 0);
        for (int i = 0; i < k; ++i) cut[i] = in.B / k + (i < in.B % k ? 1 : 0);
        distributed_forward(in, cut, p, mode, state, out);
      });
  e.sharded_optimized = distributed_forward;
  return e;
}

}  // namespace normcheck::mpi
