// The hostile golden corpus (properties/tests/hostile/): its files and, from EXPECTED, what the
// one-line reason for each must say. Read by the in-process tests here and the CLI tests.
#pragma once

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "properties/golden.hpp"

namespace normcheck::hostile {

inline std::map<std::string, std::vector<std::string>> expectations() {
  std::map<std::string, std::vector<std::string>> m;
  std::ifstream f(std::string(NORMCHECK_HOSTILE_DIR) + "/EXPECTED");
  std::string line;
  while (std::getline(f, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> parts;
    std::stringstream s(line);
    std::string part;
    while (std::getline(s, part, '\t')) parts.push_back(part);
    m[parts.at(0)] = {parts.begin() + 1, parts.end()};
  }
  return m;
}

inline std::vector<std::string> hostile_files() {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(NORMCHECK_HOSTILE_DIR))
    if (e.path().extension() == ".json") names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// The first case of `op` in the project's golden files.
inline nlohmann::json golden_case(const std::string& op) {
  static const std::vector<nlohmann::json> files = {load_golden(default_golden_path()),
                                                    load_golden(default_block_golden_path())};
  for (const auto& file : files)
    for (const auto& c : file["cases"])
      if (c["op"] == op) return c;
  throw std::runtime_error("no golden case for " + op);
}

}  // namespace normcheck::hostile
