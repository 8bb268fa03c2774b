// Helpers shared by the tests of reports/ (and of cli/): reading files and fresh scratch
// directories.
#pragma once

#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

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

inline std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// What differs between two texts, line by line, as a short diff a person reads: "- " lines only
// in `a`, "+ " lines only in `b` (longest common subsequence), at most `max_lines` of them.
inline std::string line_diff(const std::string& a, const std::string& b, std::size_t max_lines = 30) {
  const auto x = lines_of(a), y = lines_of(b);
  std::vector<std::vector<int>> lcs(x.size() + 1, std::vector<int>(y.size() + 1, 0));
  for (std::size_t i = x.size(); i-- > 0;)
    for (std::size_t j = y.size(); j-- > 0;)
      lcs[i][j] = x[i] == y[j] ? lcs[i + 1][j + 1] + 1 : std::max(lcs[i + 1][j], lcs[i][j + 1]);
  std::string out;
  std::size_t shown = 0, hidden = 0, i = 0, j = 0;
  auto emit = [&](const char* sign, const std::string& line, std::size_t at) {
    if (shown++ < max_lines) out += std::string(sign) + " " + std::to_string(at + 1) + ": " + line + "\n";
    else ++hidden;
  };
  while (i < x.size() || j < y.size()) {
    if (i < x.size() && j < y.size() && x[i] == y[j]) {
      ++i, ++j;
    } else if (i < x.size() && (j == y.size() || lcs[i + 1][j] >= lcs[i][j + 1])) {
      emit("-", x[i], i);
      ++i;
    } else {
      emit("+", y[j], j);
      ++j;
    }
  }
  if (hidden) out += "… and " + std::to_string(hidden) + " more changed lines\n";
  return out;
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
