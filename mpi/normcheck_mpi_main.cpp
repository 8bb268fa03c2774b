// normcheck-mpi: the normcheck command with the row mpi_sync_batch_norm, whose forward runs over
// the MPI ranks (mpi/distributed.hpp). Started by mpirun: rank 0 runs the command (every
// subcommand and option of `normcheck`), the other ranks serve its steps.
//
//   mpirun -np 2 build/release/normcheck-mpi matrix --layer mpi_sync_batch_norm --implementation optimized
//
// Options of its own, before the command's: --mpi-timeout S (how long a collective of a step may
// take, default 30 s) and --mpi-idle-timeout S (how long a serving rank waits for rank 0's next
// step, default 900 s: rank 0 may be checking other rows or shrinking in between).
//
//   mpirun -np 2 build/release/normcheck-mpi equivalence [--cases N] [--seed S]
//
// checks the distributed forward bit for bit against the in-process sync_batch_norm on the same
// cuts (mpi::equivalence).
#include <mpi.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "cli/cli.hpp"
#include "properties/engine.hpp"
#include "mpi/distributed.hpp"

namespace {

bool parse_seconds(const char* text, double& out) {
  char* end = nullptr;
  const double v = std::strtod(text, &end);
  if (!text || end == text || *end != '\0' || !(v > 0)) return false;
  out = v;
  return true;
}

// normcheck-mpi equivalence [--cases N] [--seed S]: mpi::equivalence (default 2000 cases, seed 1)
int equivalence_command(int argc, char** argv) {
  long long cases = 2000;
  unsigned long long seed = 1;
  for (int i = 2; i < argc; i += 2) {
    const std::string a = argv[i];
    char* end = nullptr;
    const char* v = i + 1 < argc ? argv[i + 1] : "";
    const unsigned long long n = std::strtoull(v, &end, 10);
    if ((a != "--cases" && a != "--seed") || end == v || *end != '\0') {
      std::fprintf(stderr, "normcheck-mpi equivalence: usage: equivalence [--cases N] [--seed S]\n");
      return 2;
    }
    (a == "--cases" ? (void)(cases = (long long)n) : (void)(seed = n));
  }
  return normcheck::mpi::equivalence(cases, seed);
}

}  // namespace

int main(int argc, char** argv) {
  // cli_main starts the program again when OMP_WAIT_POLICY is unset (GOMP reads it when it
  // loads); after MPI_Init that second start would fail to join the job, so it happens here,
  // before MPI is initialized, in the same process (the same rank)
  if (!std::getenv("OMP_WAIT_POLICY")) {
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    execv("/proc/self/exe", argv);  // on failure, carry on with the default policy
    std::fprintf(stderr, "normcheck-mpi: could not start again with OMP_WAIT_POLICY=PASSIVE: "
                         "cli_main will try to and fail; set OMP_WAIT_POLICY\n");
    return 2;
  }
  int provided = 0;
  // the watchdog thread of `matrix` never calls MPI; OpenMP threads neither
  MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
  normcheck::mpi::Options options;
  std::vector<char*> args = {argv[0]};
  int i = 1;
  for (; i < argc; ++i) {
    const std::string a = argv[i];
    double* target = a == "--mpi-timeout" ? &options.timeout
                     : a == "--mpi-idle-timeout" ? &options.idle_timeout : nullptr;
    if (!target) break;
    if (i + 1 >= argc || !parse_seconds(argv[i + 1], *target)) {
      int rank = 0;
      MPI_Comm_rank(MPI_COMM_WORLD, &rank);
      if (rank == 0) std::fprintf(stderr, "normcheck-mpi: %s needs a number of seconds > 0\n", a.c_str());
      MPI_Finalize();
      return 2;
    }
    ++i;
  }
  for (; i < argc; ++i) args.push_back(argv[i]);
  args.push_back(nullptr);

  normcheck::mpi::start(options);
  if (normcheck::mpi::rank() != 0) {
    const long long served = normcheck::mpi::serve();
    std::fprintf(stderr, "normcheck-mpi: rank %d served %lld steps\n", normcheck::mpi::rank(), served);
    MPI_Finalize();
    return 0;
  }
  normcheck::register_layer(normcheck::mpi::sync_batch_norm_entry());
  // a replay needs the same ranks: the commands it prints start with mpirun
  normcheck::set_replay_launcher("mpirun -np " + std::to_string(normcheck::mpi::size()));
  int code = 2;
  try {
    if (args.size() > 2 && std::string(args[1]) == "equivalence")
      code = equivalence_command(int(args.size()) - 1, args.data());
    else
      code = normcheck::cli_main(
          int(args.size()) - 1, args.data(),
          {.in_process = true, .why = "its cells call MPI, which a forked worker process cannot"});
  } catch (...) {
    normcheck::mpi::stop();
    MPI_Finalize();
    throw;
  }
  normcheck::mpi::stop();
  MPI_Finalize();
  return code;
}
