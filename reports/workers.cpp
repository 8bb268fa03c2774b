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
[[noreturn]] void worker_loop(int fd, const std::vector<Cell>& cells, RunOptions options, int threads) {
  omp_set_num_threads(threads);
  options.on_cell = {};  // the parent's watchdog watches the parent's announcements
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

struct Worker {
  pid_t pid = -1;
  int fd = -1;
  std::optional<std::size_t> running;  // the cell it was given last, until its result comes
};

std::string how_it_ended(pid_t pid) {
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return "ended";
  if (WIFSIGNALED(status)) return "was killed by signal " + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) + ")";
  return "exited with status " + std::to_string(WEXITSTATUS(status));
}

}  // namespace

void run_in_workers(const std::vector<Cell>& cells, const RunOptions& options, int count,
                    const std::function<void(CellResult&&, std::size_t)>& done) {
  const int threads = omp_get_max_threads();
  std::fflush(stdout);
  std::fflush(stderr);
  std::vector<Worker> workers(std::size_t(std::max(count, 1)));
  const pid_t parent = getpid();
  // The workers are forked from a thread of their own, which lives as long as they do:
  // - it never ran an OpenMP region (GNU OpenMP keeps a thread's team with that thread, and a
  //   child forked from a thread whose team exists waits for the team's threads, which the child
  //   does not have);
  // - a worker gets SIGKILL when that thread ends (PR_SET_PDEATHSIG), so a parent that ends
  //   (its watchdog fired) does not leave a worker running a kernel that never returns.
  std::string fork_error;
  std::mutex m;
  std::condition_variable cv;
  bool forked = false, finished = false;
  std::thread forker([&] {
    for (auto& w : workers) {
      int fds[2];
      if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
        fork_error = std::string("socketpair: ") + std::strerror(errno);
        break;
      }
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
        fork_error = std::string("fork: ") + std::strerror(errno);
        break;
      }
      w.pid = pid;
      w.fd = fds[0];
    }
    std::unique_lock lock(m);
    forked = true;
    cv.notify_all();
    cv.wait(lock, [&] { return finished; });
  });
  {
    std::unique_lock lock(m);
    cv.wait(lock, [&] { return forked; });
  }
  struct EndForker {  // after the workers were stopped and waited for (declared first: runs last)
    std::mutex& m;
    std::condition_variable& cv;
    bool& finished;
    std::thread& forker;
    ~EndForker() {
      {
        std::lock_guard lock(m);
        finished = true;
      }
      cv.notify_all();
      forker.join();
    }
  } end_forker{m, cv, finished, forker};

  auto stop_all = [&] {
    for (auto& w : workers) {
      if (w.pid <= 0) continue;
      kill(w.pid, SIGKILL);
      ::close(w.fd);
      waitpid(w.pid, nullptr, 0);
      w.pid = -1;
    }
  };
  std::size_t next = 0, emitted = 0;
  std::vector<std::optional<CellResult>> results(cells.size());
  auto give = [&](Worker& w) {
    const uint32_t index = next < cells.size() ? uint32_t(next) : kStop;
    if (index != kStop) {
      w.running = next++;
    } else {
      w.running.reset();
    }
    return send_all(w.fd, &index, 4);
  };
  try {
    if (!fork_error.empty()) throw std::runtime_error("run_matrix: " + fork_error);
    for (auto& w : workers)
      if (!give(w)) throw std::runtime_error("run_matrix: a worker process ended before its first cell: " + how_it_ended(w.pid));
    while (emitted < cells.size()) {
      std::vector<pollfd> fds;
      std::vector<Worker*> polled;
      for (auto& w : workers)
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
        Worker& w = *polled[i];
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
            if (options.on_cell) options.on_cell(cell, true);
            continue;
          case Message::invalid_argument: throw std::invalid_argument(text);
          case Message::failure: throw std::runtime_error(text);
          case Message::result: break;
          default: throw std::runtime_error("run_matrix: a worker sent an unknown message");
        }
        if (options.on_cell) options.on_cell(cell, false);
        results[index] = decode(cell, payload);
        if (!give(w)) throw std::runtime_error("run_matrix: a worker process ended: " + how_it_ended(w.pid));
        for (; emitted < cells.size() && results[emitted]; ++emitted) {
          done(std::move(*results[emitted]), emitted);
          results[emitted].reset();
        }
      }
    }
  } catch (...) {
    stop_all();
    throw;
  }
  for (auto& w : workers) {  // each was told to stop: wait for it
    ::close(w.fd);
    waitpid(w.pid, nullptr, 0);
    w.pid = -1;
  }
}

}  // namespace normcheck
