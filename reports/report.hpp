// The result model of a matrix run and its writers (terminal table, Markdown, JSON).
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "properties/catalog.hpp"

namespace normcheck {

struct RunMeta {
  uint64_t seed = 0;
  int cases = 0;
  int threads = 0;
  double seconds = 0;
  std::string command;
};

struct Summary {
  int cells = 0, as_expected = 0, surprises = 0, errors = 0, not_applicable = 0;
};
Summary summarize(const std::vector<CellResult>& results);

// The matrix as a Markdown table: one row per layer row and implementation, one column per
// property; ✓ holds, ✗ violated, – not applicable, E error; "!" marks a cell that differs from
// the expected matrix.
std::string matrix_table(const std::vector<CellResult>& results);

// The expected matrix as the registries declare it (rows × property columns, ✓ ✗ –), for
// the README; a test keeps the README's copy equal to it.
std::string expected_matrix_markdown();

std::string report_markdown(const std::vector<CellResult>& results, const RunMeta& meta);
nlohmann::json report_json(const std::vector<CellResult>& results, const RunMeta& meta);

// Writes `content` to `path` atomically (temporary file + rename).
void write_file_atomic(const std::string& path, const std::string& content);

}  // namespace normcheck
