// Helpers shared by the tests of reports/: reading files, running the normcheck command (and
// the other binaries) and fresh scratch directories.
#pragma once

#include <unistd.h>

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace normcheck::testing {

inline std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

inline std::size_t count(const std::string& haystack, const std::string& needle) {
  std::size_t n = 0;
  for (std::size_t at = haystack.find(needle); at != std::string::npos; at = haystack.find(needle, at + 1)) ++n;
  return n;
}

// A fresh, empty directory under the test temp dir (removed first if a previous run left it).
// A fresh directory for one test, unique to this process (two test runs on one machine, or
// ctest's parallel jobs, must not share a Chromium profile or a report directory).
inline std::string scratch(const std::string& name) {
  const std::filesystem::path p = std::filesystem::path(::testing::TempDir()) /
                                  ("normcheck_report_tests_" + std::to_string(::getpid()) + "_" + name);
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p.string();
}

struct Run {
  int code = -1;
  std::string out, err;
};

// Runs a shell command; returns its exit code, stdout and stderr.
inline Run run(const std::string& cmd) {
  static int counter = 0;
  const std::string err_path = ::testing::TempDir() + "/normcheck_report_tests_stderr_" +
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

}  // namespace normcheck::testing
