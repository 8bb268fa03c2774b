#include "reports/report.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <stdexcept>

#include <fmt/format.h>

namespace normcheck {
namespace {

const char* symbol(const std::string& observed) {
  if (observed == "holds") return "✓";
  if (observed == "violated") return "✗";
  if (observed == "not_applicable") return "–";
  return "E";
}

std::string row_label(const CellResult& r) {
  return r.row_name + (r.placement.empty() ? "" : " [" + r.placement + "-LN block]") +
         (r.impl == Impl::reference ? " (ref)" : " (opt)");
}

}  // namespace

Summary summarize(const std::vector<CellResult>& results) {
  Summary s;
  for (const auto& r : results) {
    ++s.cells;
    if (r.observed == "not_applicable") ++s.not_applicable;
    if (r.observed == "error") ++s.errors;
    if (r.as_expected()) ++s.as_expected;
    else ++s.surprises;
  }
  return s;
}

std::string matrix_table(const std::vector<CellResult>& results) {
  std::vector<std::string> cols;  // property order of the registry, restricted to the run
  for (const auto& p : all_properties())
    for (const auto& r : results)
      if (r.property == p.id) {
        cols.push_back(p.id);
        break;
      }
  std::vector<std::string> rows;
  std::map<std::pair<std::string, std::string>, const CellResult*> cell;
  for (const auto& r : results) {
    const std::string label = row_label(r);
    if (std::find(rows.begin(), rows.end(), label) == rows.end()) rows.push_back(label);
    cell[{label, r.property}] = &r;
  }
  std::string out = "| layer [mode] (impl) |";
  for (const auto& c : cols) out += " " + property_info(c).short_name + " |";
  out += "\n|---|";
  for (std::size_t i = 0; i < cols.size(); ++i) out += "---|";
  out += "\n";
  for (const auto& row : rows) {
    out += "| " + row + " |";
    for (const auto& c : cols) {
      auto it = cell.find({row, c});
      if (it == cell.end()) {
        out += "   |";
        continue;
      }
      const CellResult& r = *it->second;
      out += std::string(" ") + symbol(r.observed) + (r.as_expected() ? "" : "!") + " |";
    }
    out += "\n";
  }
  return out;
}

std::string expected_matrix_markdown() {
  // expected cells of the optimized implementation (it has every column the reference has)
  std::vector<CellResult> expected;
  for (const auto& c : all_cells()) {
    // the built-in catalogue only: external rows (oneDNN) depend on what the build found
    if (c.impl != Impl::optimized || c.origin != "builtin") continue;
    CellResult r;
    r.row_id = c.row_id;
    r.row_name = c.row_name;
    r.placement = c.placement;
    r.property = c.prop.id;
    r.impl = c.impl;
    r.expected = c.expected;
    r.observed = to_string(c.expected);
    expected.push_back(r);
  }
  std::string table = matrix_table(expected);
  // rows are not per implementation here
  for (std::string::size_type at; (at = table.find(" (opt)")) != std::string::npos;)
    table.erase(at, 6);
  for (std::string::size_type at; (at = table.find("layer [mode] (impl)")) != std::string::npos;)
    table.replace(at, 19, "layer [mode]");

  std::string layers_md = "\n| layer | formula | statistics over | modes |\n|---|---|---|---|\n";
  for (const auto& l : layers()) {
    if (l.origin != "builtin") continue;
    std::string modes;
    for (const auto& r : l.rows) modes += (modes.empty() ? "" : ", ") + std::string(to_string(r.mode));
    layers_md += fmt::format("| `{}` | `{}` | {} | {} |\n", l.name, l.formula, l.statistics_over,
                             l.stateful() ? modes : "stateless");
  }
  std::string props_md = "\n| property | column | statement | related input | claim |\n|---|---|---|---|---|\n";
  for (const auto& p : all_properties())
    props_md += fmt::format("| `{}` | {} | {} | {} | {} |\n", p.id, p.short_name, p.statement,
                            p.related_input, p.claim);
  return table + layers_md + props_md;
}

std::string report_markdown(const std::vector<CellResult>& results, const RunMeta& meta) {
  const Summary s = summarize(results);
  std::string md = "# normcheck matrix\n\n";
  md += fmt::format("seed {} · {} cases per cell · {:.1f} s\n\n", meta.seed, meta.cases,
                    meta.seconds);
  md += matrix_table(results);
  md += fmt::format(
      "\n**{} cells: {} as expected, {} surprises** ({} errors, {} not applicable). "
      "✓ holds, ✗ violated, – not applicable, E error, ! differs from the expected matrix.\n",
      s.cells, s.as_expected, s.surprises, s.errors, s.not_applicable);
  for (const auto& r : results) {
    if (r.observed == "not_applicable") continue;
    const bool surprise = !r.as_expected();
    if (r.observed != "violated" && !surprise) continue;
    const auto& p = r.info;
    md += fmt::format("\n## {} — {} / {}{}\n\n", r.property, r.row_name, to_string(r.impl),
                      surprise ? " — SURPRISE" : "");
    md += fmt::format("*{}* (claim: {}). Related input: {}. Compared: {}.\n\n", p.statement,
                      p.claim, p.related_input, p.compared);
    md += fmt::format("Expected **{}**, observed **{}** after {} cases.\n\n", to_string(r.expected),
                      r.observed, r.cases);
    if (!r.message.empty()) md += r.message + "\n\n";
    if (!r.counterexample.is_null()) {
      md += "Minimal counterexample (`a` = input, `b` = related input):\n\n```json\n" +
            r.counterexample.dump(1) + "\n```\n\n";
      md += fmt::format("Replay: `normcheck matrix --layer '^{}$' --property '^{}$' "
                        "--implementation {} --reproduce '{}'`\n",
                        r.row_id, r.property, to_string(r.impl), r.reproduce);
    }
  }
  return md;
}

nlohmann::json report_json(const std::vector<CellResult>& results, const RunMeta& meta) {
  const Summary s = summarize(results);
  nlohmann::json cells = nlohmann::json::array();
  for (const auto& r : results) cells.push_back(to_json(r));
  return {{"format", "normcheck-matrix/1"},
          {"seed", meta.seed},
          {"cases_per_cell", meta.cases},
          {"threads", meta.threads},
          {"seconds", meta.seconds},
          {"summary",
           {{"cells", s.cells},
            {"as_expected", s.as_expected},
            {"surprises", s.surprises},
            {"errors", s.errors},
            {"not_applicable", s.not_applicable}}},
          {"cells", cells}};
}

void write_file_atomic(const std::string& path, const std::string& content) {
  const std::filesystem::path target(path);
  if (target.has_parent_path()) std::filesystem::create_directories(target.parent_path());
  const std::filesystem::path tmp = target.string() + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) throw std::runtime_error("cannot write " + tmp.string());
    f << content;
    if (!f.flush()) throw std::runtime_error("cannot write " + tmp.string());
  }
  std::filesystem::rename(tmp, target);
}

}  // namespace normcheck
