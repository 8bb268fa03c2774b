// The result model of a matrix run and its writers: the terminal/Markdown matrix, report.md,
// report.json (and reading it back, for `normcheck merge`), report.html (html.hpp). The
// field-by-field description of report.json is docs/REPORT_FORMAT.md.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <normcheck/properties/catalog.hpp>
#include <normcheck/reports/output_dir.hpp>

namespace normcheck {

// report.json's "format" (docs/REPORT_FORMAT.md says what changed in each version).
inline constexpr const char* kMatrixFormat = "normcheck-matrix/3";

// What a run was: everything a reader needs to trust or repeat it (run_matrix fills it).
struct RunMeta {
  uint64_t seed = 0;
  int cases = 0;      // cases per cell (the budget of a ✗ cell's search)
  int threads = 0;    // OpenMP threads
  double seconds = 0; // wall time of the run (merge: of the longest shard)
  std::string command;     // the command line
  std::string started_at;  // UTC, ISO 8601
  std::string layer_filter = ".*", property_filter = ".*", implementation = "both";
  int shard_index = 0, shard_count = 1;
  int total_cells = 0;     // cells the filters select, before sharding
  nlohmann::json versions = nlohmann::json::object();  // build_versions() of the binary that ran the cells
  // run_environment() when the run ended: what decides the results of rows registered at run
  // time (normcheck-aten: ATen's version, CPU capability, BLAS library, thread counts)
  nlohmann::json environment = nlohmann::json::object();
  nlohmann::json merged_from = nullptr;  // normcheck merge: one entry per input shard
};

// normcheck (the CMake project version), compiler, RapidCheck, Eigen, fmt, nlohmann_json, OpenMP.
nlohmann::json build_versions();
std::string utc_now();
// This process's command line, each argument shell-quoted where it needs it.
std::string this_command_line();

// A run of cells: the results, in order, and the run's metadata.
struct MatrixRun {
  std::vector<CellResult> results;
  RunMeta meta;
};
// Runs the cells with `options` (a fresh seed when it has none) and fills the metadata: seed,
// cases, OpenMP threads, wall time, start time, command line, versions, total_cells.
// `after_each(result, index)` is called after every cell, in order (progress). With `workers`
// ≥ 2 the cells run that many at a time in worker processes (reports/workers.hpp); the results
// are the same as one after another in this process, apart from each cell's seconds.
MatrixRun run_matrix(const std::vector<Cell>& cells, RunOptions options,
                     const std::function<void(const CellResult&, std::size_t)>& after_each = {},
                     int workers = 1);
// Writes report.md, report.json and report.html of a run into `dir` (write_report_dir).
void write_report(const std::string& dir, const MatrixRun& run);

// The environment block of the reports: a source (registered by whoever registers external rows,
// before the run) returns {"key": "value", ...} of what decides their results on this machine;
// run_environment() joins every source's answer, asked now, to the built-in `kernel_path` (the
// instruction-set path kernel_path() chose for the built-in optimized kernels).
void add_environment_source(std::function<nlohmann::json()> source);
nlohmann::json run_environment();
std::string environment_text(const nlohmann::json& env);  // "key value · key value"

struct Summary {
  int cells = 0, as_expected = 0, surprises = 0, errors = 0, not_applicable = 0;
};
Summary summarize(const std::vector<CellResult>& results);
// The heading of a family's matrix ("Norm layers", "Attention", …), in every report.
const char* family_title(Family f);

// "batch_norm [train]", "layer_norm [pre-LN block]": the matrix row of a cell.
std::string row_label(const CellResult& r);

// The matrix as Markdown tables, one per family (norm layers, attention, blocks) with its own
// columns, separated by a blank line: one row per layer [mode] (and placement), one column per
// property; ✓ holds, ✗ violated, – not applicable, E error; "!" marks a cell whose observed
// outcome differs from the expected matrix. A cell shows one symbol when the reference and the
// optimized implementation agree, else both ("ref ✓ opt ✗!").
std::string matrix_table(const std::vector<CellResult>& results);

// The matrix for a terminal: one table per family under its title, column names on two
// staggered lines so that a table fits 160 columns (wider ones are split), "✓|✗" when the
// reference and the optimized implementation differ, and the legend. `colour`: ANSI colours
// (✓ green, ✗ blue, – faint, surprises bold red).
std::string matrix_text(const std::vector<CellResult>& results, bool colour);
// The legend of the Markdown tables, one line.
std::string matrix_legend();

// The expected matrix as the registries declare it, with the layer and property tables: README's
// generated tables (a test keeps them equal).
std::string expected_matrix_markdown();
// `text` (README.md) with its generated block — the lines between the one starting with
// "<!-- matrix:begin" and "<!-- matrix:end -->" — replaced by expected_matrix_markdown().
// Throws std::invalid_argument when a marker is missing. `normcheck list --write README.md`.
std::string with_generated_tables(const std::string& text);

// One section per surprise and per ✗ cell (section_title, section_body of
// properties/counterexample.hpp): the property and its claim, the outcome, the replay commands
// and the minimal counterexample as small tensors. Surprises first.
struct FailureSection {
  const CellResult* cell = nullptr;
  bool surprise = false;
  std::string anchor;  // HTML id: "cell-<gtest name>"
  std::string title;   // one line
  std::string body;    // Markdown
};
std::vector<FailureSection> failure_sections(const std::vector<CellResult>& results);

// report.md leads with the verdict: a title and a line saying how many surprises, the run, the
// matrix tables with the legend, then every surprise in full and every expected ✗ in one line
// (its counterexample: report.html, or `normcheck show CELL`).
std::string report_markdown(const std::vector<CellResult>& results, const RunMeta& meta);
nlohmann::json report_json(const std::vector<CellResult>& results, const RunMeta& meta);

// report.md, report.json and report.html of a matrix run.
ReportFiles matrix_report_files(const std::vector<CellResult>& results, const RunMeta& meta);

// Reading a report.json back (normcheck merge). Throws std::invalid_argument naming the field.
struct LoadedReport {
  RunMeta meta;
  std::vector<CellResult> cells;
};
LoadedReport report_from_json(const nlohmann::json& j);
CellResult cell_from_json(const nlohmann::json& c);
// The outcome of a cell's JSON (to_json: observed, cases, deviation, counterexample, reproduce,
// replay, message, seed, seconds, budget, drawn) into r; r.cell is left as it is.
void read_outcome(const nlohmann::json& c, CellResult& r);

}  // namespace normcheck
