// Helpers shared by the tests of reports/ (and of cli/): reading files and fresh scratch
// directories.
#pragma once

#include <unistd.h>

#include <gtest/gtest.h>

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

}  // namespace normcheck::testing
