#include "reports/report.hpp"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <stdexcept>

#include <fmt/color.h>
#include <fmt/format.h>

#include "norms/kernels_api.hpp"
#include "properties/counterexample.hpp"
#include "reports/html.hpp"
#include "reports/workers.hpp"

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

const char* family_title(Family f) {
  switch (f) {
    case Family::norm: return "Norm layers";
    case Family::attention: return "Attention";
    case Family::block: return "Norm layers inside a Transformer block";
    case Family::gradient: return "Gradients of the norm layers (backward passes)";
  }
  return "?";
}

namespace {

using nlohmann::json;

const char* impl_short(Impl i) { return i == Impl::reference ? "ref" : "opt"; }

Expect expect_from_string(const std::string& s) {
  if (s == "holds") return Expect::holds;
  if (s == "violated") return Expect::violated;
  if (s == "not_applicable") return Expect::not_applicable;
  throw std::invalid_argument("field 'expected': '" + s + "' is not holds, violated or not_applicable");
}

std::string seconds_text(double s) {
  return s < 10 ? fmt::format("{:.2f} s", s) : fmt::format("{:.1f} s", s);
}

std::string plural(long long n, const char* one, const char* many) {
  return fmt::format("{} {}", n, n == 1 ? one : many);
}

// ---------------------------------------------------------------------------------------------
// the matrix, as a grid per family

// One cell of the printed matrix: a row × a property, both implementations. An implementation
// the property does not apply to (reference_agreement on the reference) does not hide the other.
struct GridCell {
  std::vector<const CellResult*> shown;
  bool agree() const {
    return std::all_of(shown.begin(), shown.end(),
                       [&](const CellResult* r) { return r->observed == shown.front()->observed; });
  }
  bool as_expected() const {
    return std::all_of(shown.begin(), shown.end(), [](const CellResult* r) { return r->as_expected(); });
  }
};

struct Grid {
  Family family = Family::norm;
  std::vector<std::string> columns;  // property ids
  std::vector<std::string> headers;  // their column names
  std::vector<std::string> rows;     // row labels
  std::map<std::pair<std::string, std::string>, GridCell> cells;  // (row, property)
  const GridCell* at(const std::string& row, const std::string& col) const {
    auto it = cells.find({row, col});
    return it == cells.end() ? nullptr : &it->second;
  }
};

// Column order: the registries' property order, restricted to the family's results; properties
// the registry does not know (a report from another build) follow in order of appearance.
std::vector<Grid> grids_of(const std::vector<CellResult>& results) {
  std::vector<Grid> grids;
  for (Family f : kFamilies) {
    Grid g;
    g.family = f;
    std::map<std::pair<std::string, std::string>, std::vector<const CellResult*>> all;
    for (const auto& r : results) {
      if (r.cell.row.family != f) continue;
      const std::string label = row_label(r);
      if (std::find(g.rows.begin(), g.rows.end(), label) == g.rows.end()) g.rows.push_back(label);
      all[{label, r.cell.prop.id}].push_back(&r);
    }
    if (g.rows.empty()) continue;
    auto add_column = [&](const std::string& id) {
      if (std::find(g.columns.begin(), g.columns.end(), id) != g.columns.end()) return;
      for (const auto& r : results)
        if (r.cell.row.family == f && r.cell.prop.id == id) {
          g.columns.push_back(id);
          g.headers.push_back(r.cell.prop.column.empty() ? id : r.cell.prop.column);
          return;
        }
    };
    for (const auto& p : columns()) add_column(p.id);
    for (const auto& r : results)
      if (r.cell.row.family == f) add_column(r.cell.prop.id);
    for (auto& [key, list] : all) {
      GridCell c;
      for (const auto* r : list)
        if (r->observed != "not_applicable" || !r->as_expected()) c.shown.push_back(r);
      if (c.shown.empty()) c.shown.push_back(list.front());
      g.cells[key] = c;
    }
    grids.push_back(std::move(g));
  }
  return grids;
}

std::string markdown_cell(const GridCell& c) {
  if (c.agree()) return std::string(outcome_symbol(c.shown.front()->observed)) + (c.as_expected() ? "" : "!");
  std::string text;
  for (const auto* r : c.shown)
    text += std::string(text.empty() ? "" : " ") + impl_short(r->cell.impl) + " " +
            outcome_symbol(r->observed) + (r->as_expected() ? "" : "!");
  return text;
}

std::string markdown_grid(const Grid& g) {
  std::string out = "| layer [mode] |";
  for (const auto& h : g.headers) out.append(" ").append(h).append(" |");
  out += "\n|---|";
  for (std::size_t i = 0; i < g.columns.size(); ++i) out += "---|";
  out += "\n";
  for (const auto& row : g.rows) {
    out += "| " + row + " |";
    for (const auto& col : g.columns) {
      const GridCell* c = g.at(row, col);
      if (c) out.append(" ").append(markdown_cell(*c)).append(" |");
      else out += "   |";
    }
    out += "\n";
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// the matrix for a terminal

constexpr std::size_t kTerminalWidth = 160;
constexpr std::size_t kPitch = 7;  // columns per property: names up to 13 characters on staggered lines

std::string paint(const std::string& text, bool colour, fmt::text_style style) {
  return colour ? fmt::format(style, "{}", text) : text;
}

// "✓", "✗!", "✓|✗" (reference|optimized), coloured: ✓ green, ✗ blue, – dim, a surprise red.
std::string terminal_cell(const GridCell& c, bool colour) {
  auto one = [&](const CellResult* r) {
    const std::string sym = std::string(outcome_symbol(r->observed)) + (r->as_expected() ? "" : "!");
    if (!r->as_expected()) return paint(sym, colour, fmt::emphasis::bold | fmt::fg(fmt::terminal_color::bright_red));
    if (r->observed == "holds") return paint(sym, colour, fmt::fg(fmt::terminal_color::green));
    if (r->observed == "violated") return paint(sym, colour, fmt::fg(fmt::terminal_color::bright_blue));
    return paint(sym, colour, fmt::emphasis::faint);
  };
  if (c.agree() && c.as_expected()) return one(c.shown.front());
  if (c.agree() && c.shown.size() == 1) return one(c.shown.front());
  std::string text;
  for (const auto* r : c.shown) text.append(text.empty() ? "" : "|").append(one(r));
  return text;
}

std::size_t visible_width(const std::string& s) {
  // display width without ANSI escape sequences
  std::string plain;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\033') {
      while (i < s.size() && s[i] != 'm') ++i;
      continue;
    }
    plain += s[i];
  }
  return display_width(plain);
}

std::string pad_to(std::string s, std::size_t width) {
  const std::size_t w = visible_width(s);
  if (w < width) s.append(width - w, ' ');
  return s;
}

std::string terminal_grid(const Grid& g, bool colour) {
  std::size_t label_w = 12;
  for (const auto& r : g.rows) label_w = std::max(label_w, display_width(r));
  label_w += 2;
  const std::size_t per_chunk =
      std::max<std::size_t>(1, (kTerminalWidth > label_w + 4 ? kTerminalWidth - label_w - 4 : 1) / kPitch);
  std::string out = paint(family_title(g.family), colour, fmt::emphasis::bold) +
                    fmt::format(" ({}, {})\n", plural(long(g.rows.size()), "row", "rows"),
                                plural(long(g.columns.size()), "property", "properties"));
  for (std::size_t first = 0; first < g.columns.size(); first += per_chunk) {
    const std::size_t last = std::min(g.columns.size(), first + per_chunk);
    // names on two staggered lines, each starting above its column's symbol
    for (int line = 0; line < 2; ++line) {
      std::string h(label_w, ' ');
      for (std::size_t k = first; k < last; ++k) {
        if (int((k - first) % 2) != line) continue;
        h = pad_to(h, label_w + (k - first) * kPitch);
        h += g.headers[k];
      }
      while (!h.empty() && h.back() == ' ') h.pop_back();
      if (!h.empty()) out += h + "\n";
    }
    for (const auto& row : g.rows) {
      std::string line = pad_to(row, label_w);
      for (std::size_t k = first; k < last; ++k) {
        line = pad_to(line, label_w + (k - first) * kPitch);
        const GridCell* c = g.at(row, g.columns[k]);
        line += c ? terminal_cell(*c, colour) : "";
      }
      while (!line.empty() && line.back() == ' ') line.pop_back();
      out += line + "\n";
    }
    if (last < g.columns.size()) out += "\n";
  }
  return out;
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
  // the built-in optimized kernels' instruction-set path: their bits differ between paths
  json env = {{"kernel_path", to_string(kernel_path())}};
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

std::string this_command_line() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  std::string line, arg;
  while (std::getline(in, arg, '\0')) {
    const bool plain = !arg.empty() &&
        arg.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%") == std::string::npos;
    std::string quoted = "'";
    for (char c : arg) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
    line.append(line.empty() ? "" : " ").append(plain ? arg : quoted.append("'"));
  }
  return line;
}

namespace {

// run_matrix's body: `workers` runs the cells when given, else this process one after another.
MatrixRun run_cells(const std::vector<Cell>& cells, const RunOptions& options,
                    const std::function<void(const CellResult&, std::size_t)>& after_each, Workers* workers) {
  MatrixRun run;
  RunMeta& m = run.meta;
  m.seed = *options.seed;
  m.cases = options.cases;
  m.threads = omp_get_max_threads();
  m.started_at = utc_now();
  m.command = this_command_line();
  m.versions = build_versions();
  m.total_cells = int(cells.size());
  const auto start = std::chrono::steady_clock::now();
  run.results.reserve(cells.size());
  if (workers) {
    workers->run([&](CellResult&& r, std::size_t i) {
      run.results.push_back(std::move(r));
      if (after_each) after_each(run.results.back(), i);
    }, options.on_cell);
  } else {
    for (std::size_t i = 0; i < cells.size(); ++i) {
      run.results.push_back(run_cell(cells[i], options));
      if (after_each) after_each(run.results.back(), i);
    }
  }
  m.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return run;
}

}  // namespace

MatrixRun run_matrix(const std::vector<Cell>& cells, RunOptions options,
                     const std::function<void(const CellResult&, std::size_t)>& after_each,
                     int workers) {
  if (!options.seed) options.seed = (uint64_t(std::random_device{}()) << 32) | std::random_device{}();
  if (std::min<int>(workers, int(cells.size())) < 2 || !options.reproduce.empty())
    return run_cells(cells, options, after_each, nullptr);
  Workers pool(cells, options, std::min<int>(workers, int(cells.size())));
  return run_cells(cells, options, after_each, &pool);
}

MatrixRun run_matrix(Workers& workers, const std::function<void(const Cell&, bool)>& on_cell,
                     const std::function<void(const CellResult&, std::size_t)>& after_each) {
  RunOptions options = workers.options();
  if (!options.seed) throw std::invalid_argument("run_matrix: the workers were given options without a seed");
  options.on_cell = on_cell;
  return run_cells(workers.cells(), options, after_each, &workers);
}

void write_report(const std::string& dir, const MatrixRun& run) {
  write_report_dir(dir, matrix_report_files(run.results, run.meta));
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
  std::string out;
  for (const auto& g : grids_of(results)) out.append(out.empty() ? "" : "\n").append(markdown_grid(g));
  return out;
}

std::string matrix_legend() {
  return "✓ holds · ✗ violated: a counterexample was found · – not applicable · E error · "
         "! not what the spec expects (a surprise) · `ref ✓ opt ✗`: the reference and the "
         "optimized implementation differ";
}

std::string matrix_text(const std::vector<CellResult>& results, bool colour) {
  std::string out;
  for (const auto& g : grids_of(results)) out.append(out.empty() ? "" : "\n").append(terminal_grid(g, colour));
  return out + "\n✓ holds · ✗ violated: a counterexample was found · – not applicable · E error\n"
               "! not what the spec expects (a surprise) · ✓|✗ the reference (left) and the optimized "
               "implementation (right) differ\n";
}

std::string expected_matrix_markdown() {
  // the built-in catalogue only: external rows (oneDNN) depend on what the build found; one
  // symbol per row and property (the expected matrix is the same for both implementations but
  // where a property applies to one only)
  std::vector<CellResult> cells;
  for (const auto& c : all_cells()) {
    if (c.info.impl != Impl::optimized || c.info.row.origin != "builtin") continue;
    cells.push_back({.cell = c.info, .observed = to_string(c.info.expected)});
  }
  const std::string table = matrix_table(cells);
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

std::string with_generated_tables(const std::string& text) {
  const std::string begin = "<!-- matrix:begin", end = "<!-- matrix:end -->";
  const auto b = text.find(begin);
  if (b == std::string::npos) throw std::invalid_argument("no line starting with '" + begin + "'");
  const auto body = text.find('\n', b);
  const auto e = text.find(end, b);
  if (body == std::string::npos || e == std::string::npos) throw std::invalid_argument("no '" + end + "' line after '" + begin + "'");
  return text.substr(0, body + 1) + expected_matrix_markdown() + text.substr(e);
}

std::vector<FailureSection> failure_sections(const std::vector<CellResult>& results) {
  std::vector<FailureSection> surprises, violations;
  for (const auto& r : results) {
    const bool surprise = !r.as_expected();
    if (!surprise && r.observed != "violated") continue;
    FailureSection s{.cell = &r,
                     .surprise = surprise,
                     .anchor = "cell-" + gtest_name(r.id()),
                     .title = section_title(r),
                     .body = section_body(r)};
    (surprise ? surprises : violations).push_back(std::move(s));
  }
  surprises.insert(surprises.end(), std::make_move_iterator(violations.begin()),
                   std::make_move_iterator(violations.end()));
  return surprises;
}

std::string run_line(const RunMeta& meta) {
  std::string line = fmt::format("Seed **{}** · {} per cell · {} · {} · normcheck {}", meta.seed,
                                 plural(meta.cases, "case", "cases"),
                                 plural(meta.threads, "OpenMP thread", "OpenMP threads"),
                                 seconds_text(meta.seconds), meta.versions.value("normcheck", std::string("?")));
  if (meta.shard_count > 1) line += fmt::format(" · shard {}/{}", meta.shard_index, meta.shard_count);
  if (meta.merged_from.is_array()) line += " · merged from " + plural(long(meta.merged_from.size()), "shard", "shards");
  if (!meta.started_at.empty()) line += " · " + meta.started_at;
  return line;
}

std::string verdict_line(const Summary& s) {
  return fmt::format("**{}: {} as expected, {}** ({}, {} not applicable){}", plural(s.cells, "cell", "cells"),
                     s.as_expected, plural(s.surprises, "surprise", "surprises"),
                     plural(s.errors, "error", "errors"), s.not_applicable,
                     s.surprises == 0 ? ": every cell is what the spec expects." : ": see Surprises below.");
}

std::string report_markdown(const std::vector<CellResult>& results, const RunMeta& meta) {
  const Summary s = summarize(results);
  std::string md = "# normcheck matrix — " +
                   (s.surprises == 0 ? std::string("0 surprises")
                                     : plural(s.surprises, "SURPRISE", "SURPRISES")) + "\n\n";
  md += verdict_line(s) + "\n\n";
  md += run_line(meta) + "  \n";
  if (!meta.environment.empty()) md += "Environment: " + environment_text(meta.environment) + "  \n";
  if (!meta.command.empty()) md += "`" + meta.command + "`\n";
  md += "\n## Matrix\n\n" + matrix_legend() + ".\n";
  for (const auto& g : grids_of(results))
    md += std::string("\n### ") + family_title(g.family) + "\n\n" + markdown_grid(g);

  const auto sections = failure_sections(results);
  if (s.surprises > 0) {
    md += fmt::format("\n## Surprises ({})\n\nCells that are not what the spec expects, each with its "
                      "replay commands and minimal counterexample.\n", s.surprises);
    for (const auto& sec : sections)
      if (sec.surprise) md += "\n### " + sec.title + "\n\n" + sec.body;
  }
  std::size_t expected = 0;
  for (const auto& sec : sections) expected += sec.surprise ? 0 : 1;
  if (expected > 0) {
    md += fmt::format("\n## Expected violations ({})\n\nThe ✗ cells, each found as the spec expects. "
                      "Their minimal counterexamples: report.html (open a line), or "
                      "`normcheck show CELL --report DIR` in a terminal.\n\n", expected);
    for (const auto& sec : sections)
      if (!sec.surprise) md += "- `" + sec.cell->id() + "`: " + violation_summary(*sec.cell) + "\n";
  }
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
    cells.push_back(std::move(c));
  }
  json j = {{"format", kMatrixFormat},
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
  for (Family f : kFamilies)
    if (s == to_string(f)) return f;
  throw std::invalid_argument("field 'family': '" + s + "' is not norm, attention, block or gradient");
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
  read_outcome(c, r);
  const json& p = field(c, "property_info");
  r.cell.prop = {property, p.value("column", property), p.value("statement", ""),
                 p.value("related_input", ""), p.value("compared", ""), p.value("claim", "")};
  return r;
}

void read_outcome(const json& c, CellResult& r) {
  r.observed = get<std::string>(c, "observed");
  r.cases = get<int>(c, "cases");
  const json& dev = field(c, "max_deviation");
  if (dev.is_number()) r.max_deviation = dev.get<double>();
  else if (dev == "NaN" || dev == "inf" || dev == "-inf") r.max_deviation = value_of(dev);
  else throw std::invalid_argument("field 'max_deviation' is neither a number nor \"NaN\", \"inf\"");
  r.counterexample = field(c, "counterexample");
  r.reproduce = get<std::string>(c, "reproduce");
  if (c.contains("replay") && c["replay"].is_object()) {
    r.replay_cli = c["replay"].value("normcheck", std::string());
    r.replay_tests = c["replay"].value("ctest", std::string());
  }
  r.message = c.value("message", std::string());
  r.seed = c.value("seed", uint64_t(0));
  r.seconds = c.value("seconds", 0.0);
  r.shrink_budget_spent = c.value("shrink_budget_spent", false);
  r.shrink_cases = c.value("shrink_cases", 0);
  if (c.contains("drawn") && c["drawn"].is_object())
    for (const auto& [cls, n] : c["drawn"].items())
      if (n.is_number_integer()) r.drawn[cls] = n.get<int>();
}

LoadedReport report_from_json(const json& j) {
  if (!j.is_object()) throw std::invalid_argument("not a JSON object");
  const std::string format = get<std::string>(j, "format");
  if (format != kMatrixFormat && format != "normcheck-matrix/2")
    throw std::invalid_argument("format '" + format + "' is not " + kMatrixFormat + " (or normcheck-matrix/2)");
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
