#include "reports/report.hpp"

#include <algorithm>
#include <ctime>
#include <map>
#include <set>
#include <stdexcept>

#include <fmt/format.h>

#include "reports/counterexample.hpp"
#include "reports/html.hpp"

#ifndef NORMCHECK_VERSION
#define NORMCHECK_VERSION "unknown"
#endif
#ifndef NORMCHECK_COMPILER
#define NORMCHECK_COMPILER "unknown"
#endif
#ifndef NORMCHECK_RAPIDCHECK_VERSION
#define NORMCHECK_RAPIDCHECK_VERSION "unknown"
#endif
#ifndef NORMCHECK_EIGEN_VERSION
#define NORMCHECK_EIGEN_VERSION "unknown"
#endif

namespace normcheck {
namespace {

using nlohmann::json;

const char* symbol(const std::string& observed) {
  if (observed == "holds") return "✓";
  if (observed == "violated") return "✗";
  if (observed == "not_applicable") return "–";
  return "E";
}

const char* impl_short(Impl i) { return i == Impl::reference ? "ref" : "opt"; }

Expect expect_from_string(const std::string& s) {
  if (s == "holds") return Expect::holds;
  if (s == "violated") return Expect::violated;
  if (s == "not_applicable") return Expect::not_applicable;
  throw std::invalid_argument("field 'expected': '" + s + "' is not holds, violated or not_applicable");
}

// Column order: the registries' property order, restricted to the run; properties the registry
// does not know (a report from another build) follow in order of appearance.
std::vector<std::string> columns_of(const std::vector<CellResult>& results) {
  std::vector<std::string> cols;
  for (const auto& p : columns())
    for (const auto& r : results)
      if (r.cell.prop.id == p.id) {
        cols.push_back(p.id);
        break;
      }
  for (const auto& r : results)
    if (std::find(cols.begin(), cols.end(), r.cell.prop.id) == cols.end()) cols.push_back(r.cell.prop.id);
  return cols;
}

std::string short_name(const std::string& property, const std::vector<CellResult>& results) {
  for (const auto& r : results)
    if (r.cell.prop.id == property && !r.cell.prop.column.empty()) return r.cell.prop.column;
  return property;
}

std::string seconds_text(double s) {
  return s < 10 ? fmt::format("{:.2f} s", s) : fmt::format("{:.1f} s", s);
}

std::string outcome_sentence(const CellResult& r) {
  if (r.observed == "violated")
    return fmt::format("counterexample found after {} case{} and shrunk to the minimal one below",
                       r.cases, r.cases == 1 ? "" : "s");
  if (r.observed == "holds")
    return fmt::format("no counterexample in {} cases, largest deviation seen {}", r.cases,
                       format_number(r.max_deviation));
  if (r.observed == "error") return "the cell could not be run";
  return "not applicable";
}

}  // namespace

json build_versions() {
  return {{"normcheck", NORMCHECK_VERSION},
          {"compiler", NORMCHECK_COMPILER},
          {"rapidcheck", NORMCHECK_RAPIDCHECK_VERSION},
          {"eigen", NORMCHECK_EIGEN_VERSION},
          {"fmt", fmt::format("{}.{}.{}", FMT_VERSION / 10000, FMT_VERSION / 100 % 100, FMT_VERSION % 100)},
          {"nlohmann_json", fmt::format("{}.{}.{}", NLOHMANN_JSON_VERSION_MAJOR,
                                        NLOHMANN_JSON_VERSION_MINOR, NLOHMANN_JSON_VERSION_PATCH)},
#ifdef _OPENMP
          {"openmp", _OPENMP},
#endif
  };
}

namespace {
std::vector<std::function<json()>>& environment_sources() {
  static std::vector<std::function<json()>> all;
  return all;
}
}  // namespace

void add_environment_source(std::function<json()> source) {
  environment_sources().push_back(std::move(source));
}

json run_environment() {
  json env = json::object();
  for (const auto& source : environment_sources()) env.update(source());
  return env;
}

std::string environment_text(const json& env) {
  std::string s;
  for (const auto& [key, value] : env.items())
    s += (s.empty() ? "" : " · ") + key + " " + (value.is_string() ? value.get<std::string>() : value.dump());
  return s;
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

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

std::string row_label(const CellResult& r) { return r.cell.row.name; }

std::string matrix_table(const std::vector<CellResult>& results) {
  const std::vector<std::string> cols = columns_of(results);
  std::vector<std::string> rows;
  std::map<std::pair<std::string, std::string>, std::vector<const CellResult*>> cell;
  for (const auto& r : results) {
    const std::string label = row_label(r);
    if (std::find(rows.begin(), rows.end(), label) == rows.end()) rows.push_back(label);
    cell[{label, r.cell.prop.id}].push_back(&r);
  }
  std::string out = "| layer [mode] |";
  for (const auto& c : cols) out.append(" ").append(short_name(c, results)).append(" |");
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
      // an implementation the property does not apply to (reference_agreement on the
      // reference) does not hide the other one
      std::vector<const CellResult*> shown;
      for (const auto* r : it->second)
        if (r->observed != "not_applicable" || !r->as_expected()) shown.push_back(r);
      if (shown.empty()) shown.push_back(it->second.front());
      const bool agree = std::all_of(shown.begin(), shown.end(), [&](const CellResult* r) {
        return r->observed == shown.front()->observed;
      });
      const bool all_expected = std::all_of(shown.begin(), shown.end(),
                                            [](const CellResult* r) { return r->as_expected(); });
      std::string text;
      if (agree) {
        text = std::string(symbol(shown.front()->observed)) + (all_expected ? "" : "!");
      } else {
        for (const auto* r : shown)
          text += std::string(text.empty() ? "" : " ") + impl_short(r->cell.impl) + " " +
                  symbol(r->observed) + (r->as_expected() ? "" : "!");
      }
      out += " " + text + " |";
    }
    out += "\n";
  }
  return out;
}

std::string expected_matrix_markdown() {
  // one table per family, each with its own columns: norm rows, attention ops, blocks
  std::map<Family, std::vector<CellResult>> family;
  for (const auto& c : all_cells()) {
    // the built-in catalogue only: external rows (oneDNN) depend on what the build found
    if (c.info.impl != Impl::optimized || c.info.row.origin != "builtin") continue;
    family[c.info.row.family].push_back({.cell = c.info, .observed = to_string(c.info.expected)});
  }
  std::string table;
  for (const auto& [f, cells] : family) {
    if (!table.empty()) table += "\n";
    table += matrix_table(cells);
  }
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
  for (const auto& p : columns())
    props_md += fmt::format("| `{}` | {} | {} | {} | {} |\n", p.id, p.column, p.statement,
                            p.related_input, p.claim);
  return table + layers_md + props_md;
}

std::vector<FailureSection> failure_sections(const std::vector<CellResult>& results) {
  std::vector<FailureSection> surprises, violations;
  for (const auto& r : results) {
    const bool surprise = !r.as_expected();
    if (!surprise && r.observed != "violated") continue;
    FailureSection s;
    s.cell = &r;
    s.surprise = surprise;
    s.anchor = "cell-" + gtest_name(r.id());
    s.title = fmt::format("{} {} / {} / {}", symbol(r.observed), row_label(r), to_string(r.cell.impl),
                          r.cell.prop.id);
    if (surprise)
      s.title += fmt::format(" — SURPRISE: expected {}, observed {}", to_string(r.cell.expected), r.observed);
    const PropertyInfo& p = r.cell.prop;
    std::string b;
    b += fmt::format("**Property** `{}`: {}.  \n", p.id, p.statement.empty() ? "?" : p.statement);
    if (!p.claim.empty()) b += fmt::format("**Claim it evidences:** {}.  \n", p.claim);
    if (!p.related_input.empty()) b += fmt::format("**Related input:** {}.  \n", p.related_input);
    if (!p.compared.empty()) b += fmt::format("**Compared:** {}.\n", p.compared);
    b += fmt::format("\n**Expected** {}, **observed** {}{}: {} (seed {}, {}).\n",
                     to_string(r.cell.expected), r.observed,
                     surprise ? " — a surprise" : r.cell.expected == Expect::violated ? ", as the spec says" : "",
                     outcome_sentence(r), r.seed, seconds_text(r.seconds));
    if (surprise && r.observed != "violated" && !r.message.empty())
      b += "\n" + r.message + "\n";
    if (!r.reproduce.empty()) {
      b += "\n**Replay** exactly this case:\n\n```sh\n" + replay_command(r) + "\n```\n\n";
      b += "or in the ctest binary:\n\n```sh\n" + rc_params_command(r) + "\n```\n";
    }
    if (!r.counterexample.is_null())
      b += "\n**Minimal counterexample** (a = the input, b = the related input; y = output):\n\n```text\n" +
           counterexample_text(r.counterexample) + "```\n";
    s.body = b;
    (surprise ? surprises : violations).push_back(std::move(s));
  }
  surprises.insert(surprises.end(), std::make_move_iterator(violations.begin()),
                   std::make_move_iterator(violations.end()));
  return surprises;
}

std::string report_markdown(const std::vector<CellResult>& results, const RunMeta& meta) {
  const Summary s = summarize(results);
  std::string md = "# normcheck matrix\n\n";
  md += fmt::format("Seed **{}** · {} cases per cell · {} OpenMP threads · {} · normcheck {}",
                    meta.seed, meta.cases, meta.threads, seconds_text(meta.seconds),
                    meta.versions.value("normcheck", std::string("?")));
  if (meta.shard_count > 1) md += fmt::format(" · shard {}/{}", meta.shard_index, meta.shard_count);
  if (meta.merged_from.is_array())
    md += fmt::format(" · merged from {} shards", meta.merged_from.size());
  if (!meta.started_at.empty()) md += " · " + meta.started_at;
  md += "\n\n";
  if (!meta.environment.empty()) md += "Environment: " + environment_text(meta.environment) + "\n\n";
  if (!meta.command.empty()) md += "`" + meta.command + "`\n\n";
  md += fmt::format("**{} cells: {} as expected, {} surprise{}** ({} errors, {} not applicable).\n\n",
                    s.cells, s.as_expected, s.surprises, s.surprises == 1 ? "" : "s", s.errors,
                    s.not_applicable);
  md += matrix_table(results);
  md += "\n✓ holds · ✗ violated (a counterexample was found) · – not applicable · E error · "
        "**!** observed differs from the expected matrix · `ref ✓ opt ✗!` when the reference "
        "and the optimized implementation differ.\n";
  const auto sections = failure_sections(results);
  if (s.surprises > 0) {
    md += "\n## Surprises\n\n";
    for (const auto& sec : sections)
      if (sec.surprise) md += "- " + sec.title + "\n";
  }
  if (!sections.empty())
    md += fmt::format("\n## Failures\n\nOne section per ✗ cell and per surprise ({}), surprises first.\n",
                      sections.size());
  for (const auto& sec : sections) md += "\n### " + sec.title + "\n\n" + sec.body;
  return md;
}

json report_json(const std::vector<CellResult>& results, const RunMeta& meta) {
  const Summary s = summarize(results);
  json cells = json::array();
  for (const auto& r : results) {
    json c = to_json(r);
    c["row_name"] = r.cell.row.name;
    c["property_info"] = {{"column", r.cell.prop.column},
                          {"statement", r.cell.prop.statement},
                          {"related_input", r.cell.prop.related_input},
                          {"compared", r.cell.prop.compared},
                          {"claim", r.cell.prop.claim}};
    if (!r.reproduce.empty())
      c["replay"] = {{"normcheck", replay_command(r)}, {"ctest", rc_params_command(r)}};
    cells.push_back(std::move(c));
  }
  json j = {{"format", "normcheck-matrix/2"},
            {"seed", meta.seed},
            {"cases_per_cell", meta.cases},
            {"threads", meta.threads},
            {"seconds", meta.seconds},
            {"started_at", meta.started_at},
            {"command", meta.command},
            {"versions", meta.versions},
            {"environment", meta.environment},
            {"selection",
             {{"layer", meta.layer_filter},
              {"property", meta.property_filter},
              {"implementation", meta.implementation}}},
            {"shard", {{"index", meta.shard_index}, {"count", meta.shard_count}}},
            {"total_cells", meta.total_cells},
            {"summary",
             {{"cells", s.cells},
              {"as_expected", s.as_expected},
              {"surprises", s.surprises},
              {"errors", s.errors},
              {"not_applicable", s.not_applicable}}},
            {"cells", cells}};
  if (!meta.merged_from.is_null()) j["merged_from"] = meta.merged_from;
  return j;
}

ReportFiles matrix_report_files(const std::vector<CellResult>& results, const RunMeta& meta) {
  return {{"report.md", report_markdown(results, meta)},
          {"report.json", report_json(results, meta).dump(1) + "\n"},
          {"report.html", report_html(results, meta)}};
}

// ---------------------------------------------------------------------------------------------
// reading report.json back

namespace {

const json& field(const json& j, const std::string& name) {
  if (!j.is_object() || !j.contains(name)) throw std::invalid_argument("field '" + name + "' is missing");
  return j.at(name);
}

template <class T>
T get(const json& j, const std::string& name) {
  try {
    return field(j, name).get<T>();
  } catch (const json::exception&) {
    throw std::invalid_argument("field '" + name + "' has the wrong type");
  }
}

}  // namespace

Family family_from_string(const std::string& s) {
  for (Family f : {Family::norm, Family::attention, Family::block})
    if (s == to_string(f)) return f;
  throw std::invalid_argument("field 'family': '" + s + "' is not norm, attention or block");
}

CellResult cell_from_json(const json& c) {
  CellResult r;
  RowInfo& row = r.cell.row;
  row.family = family_from_string(get<std::string>(c, "family"));
  row.layer = get<std::string>(c, "layer");
  row.id = get<std::string>(c, "row");
  const json& mode = field(c, "mode");
  row.mode = mode.is_null() ? Mode::none : mode_from_string(mode.get<std::string>());
  row.name = get<std::string>(c, "row_name");
  row.placement = c.value("placement", std::string());
  row.origin = c.value("origin", std::string("builtin"));
  r.cell.impl = impl_from_string(get<std::string>(c, "implementation"));
  const std::string property = get<std::string>(c, "property");
  r.cell.expected = expect_from_string(get<std::string>(c, "expected"));
  r.observed = get<std::string>(c, "observed");
  r.cases = get<int>(c, "cases");
  r.max_deviation = get<double>(c, "max_deviation");
  r.counterexample = field(c, "counterexample");
  r.reproduce = get<std::string>(c, "reproduce");
  r.message = c.value("message", std::string());
  r.seed = c.value("seed", uint64_t(0));
  r.seconds = c.value("seconds", 0.0);
  const json& p = field(c, "property_info");
  r.cell.prop = {property, p.value("column", property), p.value("statement", ""),
                 p.value("related_input", ""), p.value("compared", ""), p.value("claim", "")};
  return r;
}

LoadedReport report_from_json(const json& j) {
  if (!j.is_object()) throw std::invalid_argument("not a JSON object");
  const std::string format = get<std::string>(j, "format");
  if (format != "normcheck-matrix/2")
    throw std::invalid_argument("format '" + format + "' is not normcheck-matrix/2");
  LoadedReport out;
  RunMeta& m = out.meta;
  m.seed = get<uint64_t>(j, "seed");
  m.cases = get<int>(j, "cases_per_cell");
  m.threads = j.value("threads", 0);
  m.seconds = j.value("seconds", 0.0);
  m.started_at = j.value("started_at", "");
  m.command = j.value("command", "");
  if (j.contains("versions") && j["versions"].is_object()) m.versions = j["versions"];
  if (j.contains("environment") && j["environment"].is_object()) m.environment = j["environment"];
  if (j.contains("selection")) {
    const json& s = j["selection"];
    m.layer_filter = s.value("layer", ".*");
    m.property_filter = s.value("property", ".*");
    m.implementation = s.value("implementation", "both");
  }
  if (j.contains("shard")) {
    m.shard_index = get<int>(j["shard"], "index");
    m.shard_count = get<int>(j["shard"], "count");
  }
  const json& cells = field(j, "cells");
  if (!cells.is_array()) throw std::invalid_argument("field 'cells' is not an array");
  m.total_cells = j.value("total_cells", int(cells.size()));
  for (std::size_t i = 0; i < cells.size(); ++i) {
    try {
      out.cells.push_back(cell_from_json(cells[i]));
    } catch (const std::exception& e) {
      throw std::invalid_argument("cells[" + std::to_string(i) + "]: " + e.what());
    }
  }
  return out;
}

}  // namespace normcheck
