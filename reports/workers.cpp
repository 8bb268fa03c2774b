#include "reports/workers.hpp"

#include "reports/report.hpp"

#include <omp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <condition_variable>
#include <exception>
#include <filesystem>
#include <mutex>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

namespace normcheck {

int available_processors() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
  return std::max(1, CPU_COUNT(&set));
}

namespace {

using nlohmann::json;

// What a worker sends: a cell started, its result, or what run_cell threw.
enum class Message : uint8_t { started = 'S', result = 'R', invalid_argument = 'I', failure = 'E' };
constexpr uint32_t kStop = UINT32_MAX;  // the parent's "no more cells"

// A result travels as its report JSON (to_json) in CBOR, which keeps doubles exactly; the
// parent holds the cell and reads back only the outcome (read_outcome).
std::vector<uint8_t> encode(const CellResult& r) { return json::to_cbor(to_json(r)); }

CellResult decode(const Cell& cell, const std::vector<uint8_t>& bytes) {
  CellResult r{.cell = cell.info};
  read_outcome(json::from_cbor(bytes), r);
  return r;
}

// Whole reads and writes on a stream socket (MSG_NOSIGNAL: a peer gone is an error, not SIGPIPE).
bool send_all(int fd, const void* data, std::size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t k = ::send(fd, p, n, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return false;
    p += k;
    n -= std::size_t(k);
  }
  return true;
}

bool recv_all(int fd, void* data, std::size_t n) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    const ssize_t k = ::recv(fd, p, n, 0);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return false;
    p += k;
    n -= std::size_t(k);
  }
  return true;
}

bool send_message(int fd, Message type, uint32_t index, const void* payload, uint32_t size) {
  const uint8_t t = uint8_t(type);
  return send_all(fd, &t, 1) && send_all(fd, &index, 4) && send_all(fd, &size, 4) &&
         send_all(fd, payload, size);
}

// A worker: runs the cells the parent names until it says stop, then ends without running any
// of the parent's exit handlers or flushing its copies of the parent's output buffers.
[[noreturn]] void worker_loop(int fd, const std::vector<Cell>& cells, const RunOptions& options, int threads) {
  omp_set_num_threads(threads);
  uint32_t index = 0;
  while (recv_all(fd, &index, 4) && index != kStop && index < cells.size()) {
    if (!send_message(fd, Message::started, index, nullptr, 0)) break;
    bool sent = false;
    try {
      const std::vector<uint8_t> bytes = encode(run_cell(cells[index], options));
      sent = send_message(fd, Message::result, index, bytes.data(), uint32_t(bytes.size()));
    } catch (const std::invalid_argument& e) {
      sent = send_message(fd, Message::invalid_argument, index, e.what(), uint32_t(std::strlen(e.what())));
    } catch (const std::exception& e) {
      sent = send_message(fd, Message::failure, index, e.what(), uint32_t(std::strlen(e.what())));
    }
    if (!sent) break;
  }
  _exit(0);
}

std::string how_it_ended(pid_t pid) {
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return "ended";
  if (WIFSIGNALED(status)) return "was killed by signal " + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) + ")";
  return "exited with status " + std::to_string(WEXITSTATUS(status));
}

}  // namespace

struct Workers::Impl {
  struct Worker {
    pid_t pid = -1;
    int fd = -1;
    std::optional<std::size_t> running;  // the cell it was given last, until its result comes
  };
  std::vector<Cell> cells;
  RunOptions options;
  std::vector<Worker> workers;
  bool alone = false, ran = false;
  // the fresh thread the workers were forked from, when not this one: it lives as long as they do
  std::thread forker;
  std::mutex m;
  std::condition_variable cv;
  bool finished = false;

  void fork_all(int threads) {
    const pid_t parent = getpid();
    for (auto& w : workers) {
      int fds[2];
      if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
        throw std::runtime_error(std::string("run_matrix: socketpair: ") + std::strerror(errno));
      const pid_t pid = fork();
      if (pid == 0) {
        ::close(fds[0]);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(1);
        worker_loop(fds[1], cells, options, threads);
      }
      ::close(fds[1]);
      if (pid < 0) {
        ::close(fds[0]);
        throw std::runtime_error(std::string("run_matrix: fork: ") + std::strerror(errno));
      }
      w.pid = pid;
      w.fd = fds[0];
    }
  }

  void stop_all() {
    for (auto& w : workers) {
      if (w.pid <= 0) continue;
      kill(w.pid, SIGKILL);
      ::close(w.fd);
      waitpid(w.pid, nullptr, 0);
      w.pid = -1;
    }
  }

  void end_forker() {
    if (!forker.joinable()) return;
    {
      std::lock_guard lock(m);
      finished = true;
    }
    cv.notify_all();
    forker.join();
  }
};

Workers::Workers(const std::vector<Cell>& cells, const RunOptions& options, int count)
    : impl_(std::make_unique<Impl>()) {
  Impl& s = *impl_;
  s.cells = cells;
  s.options = options;
  s.options.on_cell = {};  // the parent's watchdog watches the parent's announcements
  s.workers.resize(std::size_t(std::max(count, 2)));
  const int threads = omp_get_max_threads();
  std::fflush(stdout);
  std::fflush(stderr);
  s.alone = process_threads() == 1;
  if (s.alone) {
    try {
      s.fork_all(threads);
    } catch (...) {
      s.stop_all();
      throw;
    }
    return;
  }
  std::exception_ptr error;
  bool forked = false;
  s.forker = std::thread([&] {
    try {
      s.fork_all(threads);
    } catch (...) {
      error = std::current_exception();
    }
    std::unique_lock lock(s.m);
    forked = true;
    s.cv.notify_all();
    s.cv.wait(lock, [&] { return s.finished; });
  });
  {
    std::unique_lock lock(s.m);
    s.cv.wait(lock, [&] { return forked; });
  }
  if (error) {
    s.stop_all();
    s.end_forker();
    std::rethrow_exception(error);
  }
}

Workers::~Workers() {
  Impl& s = *impl_;
  for (auto& w : s.workers) {  // told to stop after a complete run; killed otherwise
    if (w.pid <= 0) continue;
    if (s.ran) {
      ::close(w.fd);
      waitpid(w.pid, nullptr, 0);
      w.pid = -1;
    }
  }
  s.stop_all();
  s.end_forker();
}

const std::vector<Cell>& Workers::cells() const { return impl_->cells; }
const RunOptions& Workers::options() const { return impl_->options; }
bool Workers::forked_alone() const { return impl_->alone; }

void Workers::run(const std::function<void(CellResult&&, std::size_t)>& done,
                  const std::function<void(const Cell&, bool)>& on_cell) {
  Impl& s = *impl_;
  if (s.ran) throw std::logic_error("Workers::run: the workers ran their cells already");
  const std::vector<Cell>& cells = s.cells;
  std::size_t next = 0, emitted = 0;
  std::vector<std::optional<CellResult>> results(cells.size());
  auto give = [&](Impl::Worker& w) {
    const uint32_t index = next < cells.size() ? uint32_t(next) : kStop;
    if (index != kStop) {
      w.running = next++;
    } else {
      w.running.reset();
    }
    return send_all(w.fd, &index, 4);
  };
  try {
    for (auto& w : s.workers)
      if (!give(w)) throw std::runtime_error("run_matrix: a worker process ended before its first cell: " + how_it_ended(w.pid));
    while (emitted < cells.size()) {
      std::vector<pollfd> fds;
      std::vector<Impl::Worker*> polled;
      for (auto& w : s.workers)
        if (w.running) {
          fds.push_back({w.fd, POLLIN, 0});
          polled.push_back(&w);
        }
      if (fds.empty()) throw std::logic_error("run_matrix: cells left but no worker running one");
      if (poll(fds.data(), fds.size(), -1) < 0) {
        if (errno == EINTR) continue;
        throw std::runtime_error(std::string("run_matrix: poll: ") + std::strerror(errno));
      }
      for (std::size_t i = 0; i < fds.size(); ++i) {
        if (fds[i].revents == 0) continue;
        Impl::Worker& w = *polled[i];
        uint8_t type = 0;
        uint32_t index = 0, size = 0;
        std::vector<uint8_t> payload;
        bool ok = recv_all(w.fd, &type, 1) && recv_all(w.fd, &index, 4) && recv_all(w.fd, &size, 4);
        if (ok) {
          payload.resize(size);
          ok = recv_all(w.fd, payload.data(), size);
        }
        if (!ok || index != w.running) {
          const std::string cell = cells[*w.running].info.id();
          const pid_t pid = w.pid;
          ::close(w.fd);
          w.pid = -1;
          const std::string how = how_it_ended(pid);
          throw std::runtime_error("run_matrix: the worker process running cell " + cell + " " + how +
                                   " before it returned a result");
        }
        const Cell& cell = cells[index];
        const std::string text(payload.begin(), payload.end());
        switch (Message(type)) {
          case Message::started:
            if (on_cell) on_cell(cell, true);
            continue;
          case Message::invalid_argument: throw std::invalid_argument(text);
          case Message::failure: throw std::runtime_error(text);
          case Message::result: break;
          default: throw std::runtime_error("run_matrix: a worker sent an unknown message");
        }
        if (on_cell) on_cell(cell, false);
        results[index] = decode(cell, payload);
        if (!give(w)) throw std::runtime_error("run_matrix: a worker process ended: " + how_it_ended(w.pid));
        for (; emitted < cells.size() && results[emitted]; ++emitted) {
          done(std::move(*results[emitted]), emitted);
          results[emitted].reset();
        }
      }
    }
  } catch (...) {
    s.stop_all();
    throw;
  }
  s.ran = true;  // each worker was told to stop: the destructor waits for it
}

int process_threads() {
  std::error_code ec;
  int n = 0;
  for (std::filesystem::directory_iterator it("/proc/self/task", ec), end; !ec && it != end; it.increment(ec)) ++n;
  return std::max(n, 1);
}

}  // namespace normcheck
