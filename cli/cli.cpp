// The `normcheck` command line (cli.hpp). Every list it shows or runs comes from the registries
// (properties/catalog.hpp); every report it writes comes from reports/.
//
// Exit codes: 0 every cell as expected (golden: every case passed), 1 a surprise (golden: a
// failed case), 2 a usage or input error, with a one-line reason on stderr.
#include <omp.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <fstream>
#include <optional>
#include <map>
#include <random>
#include <set>
#include <regex>
#include <sstream>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli/cli.hpp"
#include "mutants/mutants.hpp"
#include "properties/golden_grad.hpp"
#include "reports/golden_report.hpp"
#include "reports/report.hpp"
#include "reports/shard.hpp"

namespace nc = normcheck;

namespace {

// A usage or input error: exit code 2, the message is the one-line reason.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::string shell_quote(const std::string& s) {
  if (!s.empty() && s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%") == std::string::npos)
    return s;
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::string command_line(int argc, char** argv) {
  std::string s = "normcheck";
  for (int i = 1; i < argc; ++i) s += " " + shell_quote(argv[i]);
  return s;
}

double since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// ---------------------------------------------------------------------------------------------
// progress on stderr: a line per finished row; a bar as well when stderr is a terminal

class Progress {
 public:
  explicit Progress(std::size_t total) : total_(total), tty_(isatty(STDERR_FILENO) == 1) {}

  void cell_done(const nc::CellResult& r, bool row_finished, double elapsed) {
    ++done_;
    ++row_cells_;
    if (!r.as_expected()) ++row_surprises_;
    row_seconds_ += r.seconds;
    if (row_finished) {
      const std::string line = fmt::format(
          "  [{:>{}}/{}] {} · {}: {} cells, {} ({:.2f} s)", done_, digits(), total_,
          nc::row_label(r), nc::to_string(r.cell.impl), row_cells_,
          row_surprises_ == 0 ? std::string("all as expected")
                              : fmt::format("{} SURPRISE{}", row_surprises_, row_surprises_ == 1 ? "" : "S"),
          row_seconds_);
      if (tty_) fmt::print(stderr, "\r\033[K");
      fmt::print(stderr, "{}\n", line);
      row_cells_ = row_surprises_ = 0;
      row_seconds_ = 0;
    }
    if (tty_) {
      const int width = 30;
      const int filled = int(width * done_ / std::max<std::size_t>(total_, 1));
      fmt::print(stderr, "\r\033[K  [{}{}] {}/{} cells · {:.1f} s", std::string(filled, '#'),
                 std::string(width - filled, '.'), done_, total_, elapsed);
      if (done_ == total_) fmt::print(stderr, "\n");
      std::fflush(stderr);
    }
  }

 private:
  int digits() const { return int(std::to_string(total_).size()); }
  std::size_t total_, done_ = 0;
  bool tty_;
  int row_cells_ = 0, row_surprises_ = 0;
  double row_seconds_ = 0;
};

// ---------------------------------------------------------------------------------------------
// list

int cmd_list(bool markdown) {
  if (markdown) {
    fmt::print("{}", nc::expected_matrix_markdown());
    return 0;
  }
  fmt::print("layers (rows):\n");
  for (const auto& row : nc::layer_rows()) {
    std::string v;
    for (const auto& p : row.profile->violated) v += (v.empty() ? "" : ", ") + p;
    fmt::print("  {:<28} {}\n", row.name(), row.layer->formula);
    fmt::print("  {:<28} expected violations: {}\n", "", v.empty() ? "none" : v);
  }
  // attention and block rows, with their expected violations
  fmt::print("\nattention and block rows:\n");
  for (const auto& row : nc::all_rows()) {
    if (row.info.family == nc::Family::norm) continue;
    std::string v;
    for (const auto& p : row.violated) v += (v.empty() ? "" : ", ") + p;
    for (const auto& p : row.optimized_violated) v += (v.empty() ? "" : ", ") + p + " (optimized)";
    fmt::print("  {:<44} expected violations: {}\n", row.info.name, v.empty() ? "none" : v);
  }
  fmt::print("\nproperties:\n");
  for (const auto& p : nc::columns()) fmt::print("  {:<36} {}\n", p.id, p.statement);
  fmt::print("\ngolden ops:");
  for (const auto& [op, fn] : nc::golden_ops()) fmt::print(" {}", op);
  fmt::print("\n");
  return 0;
}

// ---------------------------------------------------------------------------------------------
// matrix and merge

struct MatrixArgs {
  std::string json_path, out_dir, layer_re = ".*", property_re = ".*", impl = "both", reproduce, shard;
  int cases = 100;
  int search_factor = 10;
  int threads = 0;
  std::optional<uint64_t> seed;
};

void write_outputs(const std::vector<nc::CellResult>& results, const nc::RunMeta& meta,
                   const std::string& json_path, const std::string& out_dir) {
  if (!json_path.empty()) nc::write_file_atomic(json_path, nc::report_json(results, meta).dump(1) + "\n");
  if (!out_dir.empty()) {
    nc::write_report_dir(out_dir, nc::matrix_report_files(results, meta));
    fmt::print("report written to {}/ (report.md, report.json, report.html)\n", out_dir);
  }
}

int print_and_exit_code(const std::vector<nc::CellResult>& results, const nc::RunMeta& meta) {
  const auto summary = nc::summarize(results);
  fmt::print("{}\n", nc::matrix_table(results));
  for (const auto& r : results)
    if (!r.as_expected()) fmt::print("SURPRISE {}\n", r.message.empty() ? r.id() : r.message);
  fmt::print("{} cells: {} as expected, {} surprises, {} errors ({:.1f} s, seed {})\n", summary.cells,
             summary.as_expected, summary.surprises, summary.errors, meta.seconds, meta.seed);
  return summary.surprises == 0 ? 0 : 1;
}

int cmd_matrix(const MatrixArgs& a, const std::string& command) {
  std::regex layer_re, prop_re;
  try {
    layer_re = std::regex(a.layer_re);
    prop_re = std::regex(a.property_re);
  } catch (const std::regex_error& e) {
    throw UsageError(std::string("invalid regular expression: ") + e.what());
  }
  std::optional<nc::ShardSpec> shard;
  if (!a.shard.empty()) {
    try {
      shard = nc::parse_shard(a.shard);
    } catch (const std::invalid_argument& e) {
      throw UsageError(e.what());
    }
    if (!a.seed) throw UsageError("--shard needs --seed: every shard must run the same experiment");
    if (!a.reproduce.empty()) throw UsageError("--shard and --reproduce do not go together");
  }
  if (!a.out_dir.empty()) nc::check_report_dir(a.out_dir);  // fail before a long run, not after

  std::vector<nc::Cell> selected;
  for (const auto& c : nc::all_cells()) {
    const nc::RowInfo& row = c.info.row;
    if (!std::regex_search(row.id, layer_re) && !std::regex_search(row.name, layer_re)) continue;
    if (!std::regex_search(c.info.prop.id, prop_re)) continue;
    if (a.impl != "both" && a.impl != nc::to_string(c.info.impl)) continue;
    selected.push_back(c);
  }
  if (selected.empty())
    throw UsageError(fmt::format("no cell matches --layer '{}' --property '{}' --implementation {}",
                                 a.layer_re, a.property_re, a.impl));
  if (!a.reproduce.empty() && selected.size() != 1)
    throw UsageError(fmt::format("--reproduce replays one cell, but the filters select {}: anchor them "
                                 "(--layer '^row$' --property '^name$') and name --implementation",
                                 selected.size()));
  std::vector<nc::Cell> cells;
  for (std::size_t k = 0; k < selected.size(); ++k)
    if (!shard || nc::in_shard(k, *shard)) cells.push_back(selected[k]);

  const uint64_t seed = a.seed ? *a.seed : (uint64_t(std::random_device{}()) << 32) | std::random_device{}();
  if (a.threads > 0) omp_set_num_threads(a.threads);
  fmt::print(stderr, "normcheck matrix: {} cells{}, {} cases per cell, seed {}, {} OpenMP threads\n",
             cells.size(), shard ? fmt::format(" (shard {}/{} of {})", shard->index, shard->count, selected.size()) : "",
             a.cases, seed, omp_get_max_threads());

  nc::RunOptions opt;
  opt.cases = a.cases;
  opt.violation_search_factor = a.search_factor;
  opt.seed = seed;
  opt.reproduce = a.reproduce;
  opt.use_rc_params_reproduce = false;
  nc::RunMeta meta;
  meta.started_at = nc::utc_now();
  const auto start = std::chrono::steady_clock::now();
  std::vector<nc::CellResult> results;
  Progress progress(cells.size());
  for (std::size_t i = 0; i < cells.size(); ++i) {
    try {
      results.push_back(nc::run_cell(cells[i], opt));
    } catch (const std::invalid_argument& e) {  // a reproduce string for another cell
      throw UsageError(e.what());
    }
    const bool row_finished = i + 1 == cells.size() ||
                              cells[i + 1].info.row.id != cells[i].info.row.id ||
                              cells[i + 1].info.impl != cells[i].info.impl;
    progress.cell_done(results.back(), row_finished, since(start));
  }
  meta.seed = seed;
  meta.cases = a.cases;
  meta.threads = omp_get_max_threads();
  meta.seconds = since(start);
  meta.command = command;
  meta.layer_filter = a.layer_re;
  meta.property_filter = a.property_re;
  meta.implementation = a.impl;
  if (shard) {
    meta.shard_index = shard->index;
    meta.shard_count = shard->count;
  }
  meta.total_cells = int(selected.size());
  meta.versions = nc::build_versions();
  meta.environment = nc::run_environment();
  const int code = print_and_exit_code(results, meta);
  write_outputs(results, meta, a.json_path, a.out_dir);
  return code;
}

nlohmann::json read_json_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw UsageError(path + ": cannot open the file");
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::parse_error& e) {
    throw UsageError(path + ": not valid JSON (" + std::string(e.what()) + ")");
  }
}

int cmd_merge(const std::vector<std::string>& files, const std::string& out_dir,
              const std::string& json_path, const std::string& command) {
  if (!out_dir.empty()) nc::check_report_dir(out_dir);
  std::vector<std::pair<std::string, nlohmann::json>> inputs;
  for (const auto& f : files) inputs.emplace_back(f, read_json_file(f));
  nc::LoadedReport merged;
  try {
    merged = nc::merge_reports(inputs);
  } catch (const nc::MergeError& e) {
    throw UsageError(e.what());
  }
  merged.meta.command = command;
  fmt::print(stderr, "normcheck merge: {} shards, {} cells, seed {}\n", inputs.size(),
             merged.cells.size(), merged.meta.seed);
  const int code = print_and_exit_code(merged.cells, merged.meta);
  write_outputs(merged.cells, merged.meta, json_path, out_dir);
  return code;
}

// ---------------------------------------------------------------------------------------------
// golden

// One line, whatever a hostile file puts in an id or a message: control characters become
// spaces and very long text is cut.
std::string one_line(std::string s, std::size_t max = 400) {
  for (auto& ch : s)
    if (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f) ch = ' ';
  if (s.size() > max) s = s.substr(0, max) + "...";
  return s;
}

std::string case_name(const nc::GoldenOutcome& o, std::size_t index) {
  return o.id.empty() ? fmt::format("case #{}", index)
                      : fmt::format("case '{}' (#{})", one_line(o.id, 120), index);
}

// The rows a case goes through: with no --layer, the op's built-in row ({""}); with --layer, every
// row computing the case's op whose id matches (none: the case is skipped). An op that is not a
// string or not known gives {""}, so check_golden_case names the input error.
std::vector<std::string> golden_case_rows(const nlohmann::json& c, const std::optional<std::regex>& layer) {
  if (!layer || !c.is_object() || !c.contains("op") || !c["op"].is_string()) return {""};
  const auto it = nc::golden_rows().find(c["op"].get<std::string>());
  if (it == nc::golden_rows().end()) return {""};
  std::vector<std::string> rows;
  for (const auto& r : it->second)
    if (std::regex_search(r.row, *layer)) rows.push_back(r.row);
  return rows;
}

// Exit codes: 0 every case passed; 1 a case's numbers disagree; 2 an input error — a file that
// cannot be read as a golden file, a malformed case (the line names the case and the field) or
// an op this build does not know. An input error wins over a failure: the verdict is incomplete.
// `layer` (a regex, empty: none): check each case through every row computing its op whose id
// matches, an external library's included; outcomes are named "<row>: <case id>".
int cmd_golden(const std::vector<std::string>& files, const std::string& impl,
               const std::string& out_dir, const std::string& layer_regex, const std::string& command) {
  std::optional<std::regex> layer;
  if (!layer_regex.empty()) layer.emplace(layer_regex);
  int skipped = 0;
  if (!out_dir.empty()) nc::check_report_dir(out_dir);
  nc::GoldenRun run;
  run.files = files;
  run.meta.command = command;
  run.meta.started_at = nc::utc_now();
  run.meta.versions = nc::build_versions();
  run.meta.environment = nc::run_environment();
  const auto start = std::chrono::steady_clock::now();
  int input_errors = 0;
  for (const auto& path : files) {
    nlohmann::json file;
    try {
      file = nc::load_golden(path);
    } catch (const nc::GoldenFileError& e) {
      fmt::print(stderr, "normcheck golden: {}\n", one_line(e.what()));
      ++input_errors;
      continue;
    }
    const auto& cases = file["cases"];
    const bool grad = nc::is_grad_golden(file);  // gradient cases go through the backward passes
    for (std::size_t k = 0; k < cases.size(); ++k) {
      const auto rows = grad ? std::vector<std::string>{""} : golden_case_rows(cases[k], layer);
      if (rows.empty()) ++skipped;
      for (const auto& row : rows) {
        bool ok = true, bad_input = false;
        for (nc::Impl i : {nc::Impl::reference, nc::Impl::optimized}) {
          if (impl != "both" && impl != nc::to_string(i)) continue;
          auto o = grad ? nc::check_grad_golden_case(cases[k], i)
                        : nc::check_golden_case(cases[k], i, row);
          if (o.input_error()) {  // the same for both implementations: one line
            fmt::print(stderr, "normcheck golden: {}: {}: {}\n", one_line(path), case_name(o, k),
                       one_line(o.error));
            bad_input = true;
            break;
          }
          if (!row.empty()) o.id = row + ": " + o.id;
          run.outcomes.push_back(o);
          if (!o.passed) {
            ok = false;
            fmt::print("FAIL {} [{}]: {}\n", one_line(o.id, 120), nc::to_string(i), one_line(o.error));
          }
        }
        bad_input ? ++input_errors : ok ? ++run.passed : ++run.failed;
      }
    }
  }
  run.meta.seconds = since(start);
  if (skipped > 0)
    fmt::print("{} cases skipped: no row matching --layer computes their op\n", skipped);
  if (input_errors > 0)
    fmt::print("{} passed, {} failed, {} not checked (input errors)\n", run.passed, run.failed, input_errors);
  else
    fmt::print("{} passed, {} failed\n", run.passed, run.failed);
  if (!out_dir.empty()) {
    nc::write_report_dir(out_dir, nc::golden_report_files(run));
    fmt::print("report written to {}/ (report.md, report.json, report.html)\n", out_dir);
  }
  if (input_errors > 0) return 2;
  return run.failed == 0 ? 0 : 1;
}

int cmd_mutants(int cases, std::optional<uint64_t> seed_opt) {
  const uint64_t seed = seed_opt ? *seed_opt : std::random_device{}() * 4294967296ULL + std::random_device{}();
  nc::RunOptions opt;
  opt.cases = cases;
  opt.seed = seed;
  fmt::print(stderr, "normcheck mutants: {} mutants, {} cases per cell, seed {}\n", nc::mutants().size(),
             cases, seed);
  int killed = 0;
  for (const auto& m : nc::mutants()) {
    const auto r = nc::run_mutant(m, opt);
    if (r.killed) ++killed;
    fmt::print("{:<32} imitates {:<18} {}\n    {}\n", m.id, m.imitates,
               r.killed ? "KILLED by " + r.killed_by : std::string("SURVIVED"), m.bug);
  }
  const int total = int(nc::mutants().size());
  fmt::print("mutation score: {}/{} killed\n", killed, total);
  return killed == total ? 0 : 1;
}

}  // namespace

int normcheck::cli_main(int argc, char** argv) {
  // Thousands of tiny OpenMP regions: with the default (spinning) wait policy, idle threads
  // burn the cores other processes need, and on a loaded 2-core machine a run slows ten-fold.
  // GOMP reads the policy when it loads, so set it and start again.
  if (!std::getenv("OMP_WAIT_POLICY")) {
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    execv("/proc/self/exe", argv);  // on failure, carry on with the default policy
  }
  const std::string command = command_line(argc, argv);
  CLI::App app{"normcheck: property-based verification of Transformer normalization layers"};
  app.require_subcommand(1);
  app.set_version_flag("--version", nc::build_versions()["normcheck"].get<std::string>());
  app.footer("Exit codes: 0 all as expected, 1 a surprise (or a failed golden case), 2 a usage or "
             "input error. `normcheck SUBCOMMAND --help` describes each subcommand.");

  bool list_markdown = false;
  auto* list = app.add_subcommand("list", "List the layers (rows, with expected profiles), the properties and the golden ops");
  list->add_flag("--markdown", list_markdown, "Print the expected matrix as a Markdown table (README's copy)");

  MatrixArgs m;
  auto* matrix = app.add_subcommand("matrix", "Run the (layer, implementation, property) cells and print the matrix");
  matrix->add_option("--cases", m.cases, "Generated cases per ✓ cell; default 100")
      ->check(CLI::Range(1, 10000000));
  matrix->add_option("--search-factor", m.search_factor,
                     "A ✗ cell searches up to FACTOR × cases for its counterexample; default 10")
      ->check(CLI::Range(1, 1000));
  matrix->add_option("--seed", m.seed, "RapidCheck seed; default: a fresh one, always printed");
  matrix->add_option("--layer", m.layer_re, "Only rows whose id (batch_norm_train) or name matches REGEX");
  matrix->add_option("--property", m.property_re, "Only properties whose id matches REGEX");
  matrix->add_option("--implementation", m.impl, "reference, optimized or both (default)")
      ->check(CLI::IsMember({"reference", "optimized", "both"}));
  matrix->add_option("--threads", m.threads, "OpenMP threads of the kernels (default: OpenMP's)")
      ->check(CLI::Range(1, 1024));
  matrix->add_option("--shard", m.shard, "Run shard I of N (0 ≤ I < N): cell k of the selection when k mod N = I; needs --seed");
  matrix->add_option("--reproduce", m.reproduce, "Replay one failing case: the 'reproduce=...' string of its report");
  matrix->add_option("--out", m.out_dir, "Write report.md, report.json and report.html into DIR (replaced atomically)");
  matrix->add_option("--json", m.json_path, "Also write the JSON report to FILE");
  matrix->footer("Exit codes: 0 every cell as expected, 1 a surprise, 2 a usage or input error.");

  std::vector<std::string> merge_files;
  std::string merge_out, merge_json;
  auto* merge = app.add_subcommand("merge", "Join the report.json files of the shards of one run into one report");
  merge->add_option("files", merge_files, "report.json of every shard (matrix --shard I/N --json FILE or --out DIR)")->required();
  merge->add_option("--out", merge_out, "Write report.md, report.json and report.html into DIR");
  merge->add_option("--json", merge_json, "Write the merged JSON report to FILE");
  merge->footer("Exit codes: 0 every cell as expected, 1 a surprise, 2 overlapping, missing or incompatible inputs.");

  std::vector<std::string> golden_files;
  std::string golden_impl = "both", golden_out, golden_layer;
  auto* golden = app.add_subcommand("golden", "Check golden vectors (PyTorch) of the ops this build knows");
  golden->add_option("files", golden_files, "Golden JSON files")->required();
  golden->add_option("--implementation", golden_impl, "reference, optimized or both (default)")
      ->check(CLI::IsMember({"reference", "optimized", "both"}));
  golden->add_option("--out", golden_out, "Write the golden report (report.md, report.json, report.html) into DIR");
  golden->add_option("--layer", golden_layer,
                     "Check each case through every row whose id matches REGEX and computes its op "
                     "(an external library's rows too; default: the op's built-in row)");
  golden->footer("Exit codes: 0 every case passed, 1 a case failed, 2 a usage or input error.");

  int mutant_cases = 100;
  std::optional<uint64_t> mutant_seed;
  auto* mut = app.add_subcommand("mutants", "Run the deliberately broken layers through the suite and print the mutation score");
  mut->add_option("--cases", mutant_cases, "Generated cases per cell")->check(CLI::Range(1, 10000000));
  mut->add_option("--seed", mutant_seed, "RapidCheck seed (default: fresh, always printed)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    fmt::print(stderr, "normcheck: {} (see normcheck --help)\n", e.what());
    return 2;
  }
  try {
    if (list->parsed()) return cmd_list(list_markdown);
    if (matrix->parsed()) return cmd_matrix(m, command);
    if (merge->parsed()) return cmd_merge(merge_files, merge_out, merge_json, command);
    if (mut->parsed()) return cmd_mutants(mutant_cases, mutant_seed);
    if (golden->parsed()) return cmd_golden(golden_files, golden_impl, golden_out, golden_layer, command);
  } catch (const std::exception& e) {
    fmt::print(stderr, "normcheck: {}\n", e.what());
    return 2;
  }
  return 2;
}
