// Helpers of the command-line tests: running a binary and reading what it printed.
#pragma once

#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include "reports/tests/test_util.hpp"

namespace normcheck::testing {

struct Run {
  int code = -1;
  std::string out, err;
};

// Runs a shell command; returns its exit code, stdout and stderr.
inline Run run(const std::string& cmd) {
  static int counter = 0;
  const std::string err_path = ::testing::TempDir() + "/normcheck_cli_tests_stderr_" +
                               std::to_string(::getpid()) + "_" + std::to_string(counter++);
  Run r;
  FILE* p = popen((cmd + " 2>" + err_path).c_str(), "r");
  if (!p) return r;
  char buf[4096];
  while (std::size_t n = fread(buf, 1, sizeof buf, p)) r.out.append(buf, n);
  const int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.err = read_file(err_path);
  std::filesystem::remove(err_path);
  return r;
}

inline std::string cli() { return NORMCHECK_CLI; }

// The binaries under test (set by cli/CMakeLists.txt).
inline std::string property_tests() { return NORMCHECK_PROPERTY_TESTS; }

}  // namespace normcheck::testing
