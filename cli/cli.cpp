// The `normcheck` command line (cli.hpp). Every list it shows or runs comes from the registries
// (properties/catalog.hpp); every report it writes comes from reports/. A project's own program
// (its main registers its rows, then calls cli_main) is the same command under its own name:
// usage, errors and replay commands name the program as it was started.
//
// Exit codes: 0 every cell as expected (golden: every case passed), 1 a surprise (golden: a
// failed case), 2 a usage or input error, with a one-line reason on stderr.
#include <malloc.h>
#include <omp.h>
#include <unistd.h>

#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli/cli.hpp"
#include "mutants/mutants.hpp"
#include "properties/golden_grad.hpp"
#include "properties/counterexample.hpp"
#include "reports/golden_report.hpp"
#include "reports/report.hpp"
#include "reports/shard.hpp"
#include "reports/workers.hpp"

namespace nc = normcheck;

namespace {

// A usage error (exit code 2): the message is the one-line reason; the subcommand's help is
// pointed to.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// An input error (exit code 2) that is not about the command line: a file that cannot be read.
struct InputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The program as usage lines and messages name it: "normcheck", "my_normcheck".
std::string program_name(const char* argv0) {
  const std::string name = std::filesystem::path(argv0 ? argv0 : "normcheck").filename().string();
  return name.empty() ? "normcheck" : name;
}

std::string plural(long long n, const char* one, const char* many) {
  return fmt::format("{} {}", n, n == 1 ? one : many);
}

double since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// A whole number in [lo, hi], or the option is refused naming itself (CLI11 prefixes the
// option's name): "--seed: '-1' is not a whole number from 0 to 18446744073709551615".
template <class T>
CLI::Validator whole_number(T lo, T hi) {
  return CLI::Validator(
      [lo, hi](std::string& text) -> std::string {
        T v{};
        const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
        if (ec == std::errc() && end == text.data() + text.size() && v >= lo && v <= hi) return "";
        return fmt::format("'{}' is not a whole number from {} to {}", text, lo, hi);
      },
      fmt::format("INT in [{}, {}]", lo, hi));
}

const auto kSeed = whole_number<uint64_t>(0, std::numeric_limits<uint64_t>::max());
const auto kCases = whole_number<int>(1, 10000000);

// Colour on a terminal, unless NO_COLOR is set (https://no-color.org) or --color says otherwise.
bool use_colour(const std::string& choice) {
  if (choice == "always") return true;
  if (choice == "never") return false;
  const char* no_colour = std::getenv("NO_COLOR");
  return isatty(STDOUT_FILENO) == 1 && !(no_colour && *no_colour);
}

// ---------------------------------------------------------------------------------------------
// The watchdog. The engine's budgets stop a cell between two cases; a case that never returns
// (a kernel stuck in a loop or a lock) is stopped here: past the hard limit the watchdog thread
// calls `fire` with the stuck cell, which reports it and ends the process (the main thread, or
// a worker process, is still inside the kernel, so the run cannot end normally). Several cells
// run at once when run_matrix runs them in worker processes: each has its own clock.

class Watchdog {
 public:
  using Fire = std::function<void(const nc::Cell& cell, double seconds)>;
  Watchdog(double limit, Fire fire) : limit_(limit), fire_(std::move(fire)), thread_([this] { loop(); }) {}
  ~Watchdog() {
    {
      std::lock_guard lock(m_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  void on_cell(const nc::Cell& cell, bool started) {
    std::lock_guard lock(m_);
    if (started) running_[&cell] = std::chrono::steady_clock::now();
    else running_.erase(&cell);
  }

 private:
  void loop() {
    std::unique_lock lock(m_);
    while (!stop_) {
      cv_.wait_for(lock, std::chrono::milliseconds(100));
      if (stop_) continue;
      for (const auto& [cell, start] : running_)
        if (since(start) >= limit_) fire_(*cell, since(start));  // does not return
    }
  }
  double limit_;
  Fire fire_;
  std::mutex m_;
  std::condition_variable cv_;
  std::map<const nc::Cell*, std::chrono::steady_clock::time_point> running_;
  bool stop_ = false;
  std::thread thread_;  // last: starts once the members above exist
};

nc::CellResult stuck_cell(const nc::Cell& cell, double seconds, double limit) {
  nc::CellResult r{.cell = cell.info};
  r.observed = "error";
  r.seconds = seconds;
  r.message = fmt::format("{} / {} / {}: a case did not return within the watchdog's hard limit of {:.0f} s "
                          "(a kernel that never returns?): the run stops here",
                          cell.info.row.name, nc::to_string(cell.info.impl), cell.info.prop.id, limit);
  return r;
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
          "  [{:>{}}/{}] {} · {}: {}, {} ({:.2f} s)", done_, digits(), total_, nc::row_label(r),
          nc::to_string(r.cell.impl), plural(row_cells_, "cell", "cells"),
          row_surprises_ == 0 ? std::string("all as expected")
                              : plural(row_surprises_, "SURPRISE", "SURPRISES"),
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

// Replaces the generated block of README-like text (between "<!-- matrix:begin" and
// "<!-- matrix:end -->") in `path`; prints what it did.
int write_generated_tables(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path + ": cannot open the file");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::string updated;
  try {
    updated = nc::with_generated_tables(text);
  } catch (const std::invalid_argument& e) {
    throw InputError(path + ": " + e.what());
  }
  if (updated == text) {
    fmt::print("{}: the generated tables are up to date\n", path);
    return 0;
  }
  nc::write_file_atomic(path, updated);
  fmt::print("{}: generated tables rewritten from the registries\n", path);
  return 0;
}

int cmd_list(bool markdown, const std::string& write_path) {
  if (!write_path.empty()) return write_generated_tables(write_path);
  if (markdown) {
    fmt::print("{}", nc::expected_matrix_markdown());
    return 0;
  }
  fmt::print("layers (rows):\n");
  for (const auto& row : nc::layer_rows()) {
    std::string v;
    for (const auto& p : row.profile->violated) v += (v.empty() ? "" : ", ") + p;
    for (const auto& p : row.profile->optimized_violates) v += (v.empty() ? "" : ", ") + p + " (optimized)";
    fmt::print("  {:<28} {}\n", row.name(), row.layer->formula);
    fmt::print("  {:<28} expected violations: {}\n", "", v.empty() ? "none" : v);
  }
  // attention and block rows, with their expected violations
  fmt::print("\nattention and block rows:\n");
  for (const auto& row : nc::all_rows()) {
    if (row.info.family == nc::Family::norm) continue;
    std::string v;
    for (const auto& p : row.violated) v += (v.empty() ? "" : ", ") + p;
    for (const auto& p : row.optimized_violates) v += (v.empty() ? "" : ", ") + p + " (optimized)";
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

struct Budgets {
  double cell = nc::RunOptions{}.cell_budget;
  double shrink = nc::RunOptions{}.shrink_budget;
  int shrink_cases = nc::RunOptions{}.shrink_cases;
  double watchdog = 0;
  void apply(nc::RunOptions& o) const {
    o.cell_budget = cell;
    o.shrink_budget = shrink;
    o.shrink_cases = shrink_cases;
    o.watchdog = watchdog;
  }
};

void add_budget_options(CLI::App* app, Budgets& b) {
  app->add_option("--cell-budget", b.cell,
                  "Seconds a cell may search; past it the cell is an error and the run goes on (default 60)")
      ->check(CLI::Range(0.001, 1e6));
  app->add_option("--shrink-budget", b.shrink,
                  "Seconds a cell may shrink its counterexample; past it the smallest found so far is reported (default 30)")
      ->check(CLI::Range(0.001, 1e6));
  app->add_option("--shrink-cases", b.shrink_cases,
                  "Shrink candidates a cell may run after its first counterexample; past it the smallest found so "
                  "far is reported (default 5000; a count, so a seed gives the same counterexample on a loaded machine)")
      ->check(CLI::Range(1, 1000000000));
  app->add_option("--watchdog", b.watchdog,
                  "Hard limit, seconds, for one cell (a kernel that never returns): the cell is an error, the "
                  "reports are written and the run exits 1 (default: both budgets + 30)")
      ->check(CLI::Range(0.001, 1e6));
}

struct MatrixArgs {
  std::string json_path, out_dir, layer_re = ".*", property_re = ".*", impl = "both", reproduce, shard;
  std::string colour = "auto";
  int cases = 100;
  int search_factor = 10;
  int threads = 0;
  int jobs = 0;  // 0: the processors this process may run on
  std::optional<uint64_t> seed;
  Budgets budgets;
};

std::regex compile(const std::string& re, const char* option) {
  try {
    return std::regex(re);
  } catch (const std::regex_error& e) {
    throw UsageError(fmt::format("{} '{}': invalid regular expression: {}", option, re, e.what()));
  }
}

// Where the reports go, checked before a long run rather than after it.
void check_outputs(const std::string& out_dir, const std::string& json_path) {
  if (!out_dir.empty()) nc::check_report_dir(out_dir);
  if (!json_path.empty()) nc::check_output_file(json_path);
}

void write_outputs(const std::vector<nc::CellResult>& results, const nc::RunMeta& meta,
                   const std::string& json_path, const std::string& out_dir) {
  if (!json_path.empty()) nc::write_file_atomic(json_path, nc::report_json(results, meta).dump(1) + "\n");
  if (!out_dir.empty()) {
    nc::write_report_dir(out_dir, nc::matrix_report_files(results, meta));
    fmt::print("report written to {}/ (report.md, report.json, report.html)\n", out_dir);
  }
}

int print_and_exit_code(const std::vector<nc::CellResult>& results, const nc::RunMeta& meta,
                        bool colour, bool sections) {
  const auto summary = nc::summarize(results);
  fmt::print("{}\n", nc::matrix_text(results, colour));
  for (const auto& r : results)
    if (!r.as_expected()) fmt::print("SURPRISE {}\n", r.message.empty() ? r.id() : r.message);
  // a replayed case: its section, as report.md shows it
  if (sections)
    for (const auto& r : results)
      if (r.observed == "violated" || !r.as_expected()) fmt::print("\n{}\n", nc::section_text(r));
  fmt::print("{}: {} as expected, {}, {} ({:.1f} s, seed {})\n", plural(summary.cells, "cell", "cells"),
             summary.as_expected, plural(summary.surprises, "surprise", "surprises"),
             plural(summary.errors, "error", "errors"), meta.seconds, meta.seed);
  return summary.surprises == 0 ? 0 : 1;
}

int cmd_matrix(const MatrixArgs& a, const std::string& program) {
  const std::regex layer_re = compile(a.layer_re, "--layer"), prop_re = compile(a.property_re, "--property");
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
  check_outputs(a.out_dir, a.json_path);

  std::vector<nc::Cell> selected;
  for (const auto& c : nc::all_cells()) {
    const nc::RowInfo& row = c.info.row;
    if (!std::regex_search(row.id, layer_re) && !std::regex_search(row.name, layer_re)) continue;
    if (!std::regex_search(c.info.prop.id, prop_re)) continue;
    if (a.impl != "both" && a.impl != nc::to_string(c.info.impl)) continue;
    selected.push_back(c);
  }
  if (selected.empty())
    throw UsageError(fmt::format("no cell matches --layer '{}' --property '{}' --implementation {} "
                                 "(`{} list` names the rows and properties)",
                                 a.layer_re, a.property_re, a.impl, program));
  if (!a.reproduce.empty() && selected.size() != 1)
    throw UsageError(fmt::format("--reproduce replays one cell, but the filters select {}: anchor them "
                                 "(--layer '^row$' --property '^name$') and name --implementation",
                                 selected.size()));
  std::vector<nc::Cell> cells;
  for (std::size_t k = 0; k < selected.size(); ++k)
    if (!shard || nc::in_shard(k, *shard)) cells.push_back(selected[k]);

  if (a.threads > 0) omp_set_num_threads(a.threads);
  nc::RunOptions opt;
  opt.cases = a.cases;
  opt.violation_search_factor = a.search_factor;
  opt.seed = a.seed ? *a.seed : (uint64_t(std::random_device{}()) << 32) | std::random_device{}();
  opt.reproduce = a.reproduce;
  opt.use_rc_params_reproduce = false;
  opt.program = nc::Program::cli;
  a.budgets.apply(opt);
  if (a.reproduce.empty())  // a replay is one case of one cell: no run to announce
    fmt::print(stderr, "{} matrix: {}{}, {} per cell, seed {}, {}\n", program, plural(long(cells.size()), "cell", "cells"),
               shard ? fmt::format(" (shard {}/{} of {})", shard->index, shard->count, selected.size()) : "",
               plural(a.cases, "case", "cases"), *opt.seed, plural(omp_get_max_threads(), "OpenMP thread", "OpenMP threads"));

  // what the run's metadata says beyond what run_matrix fills in
  auto describe = [&](nc::RunMeta& meta) {
    meta.layer_filter = a.layer_re;
    meta.property_filter = a.property_re;
    meta.implementation = a.impl;
    if (shard) {
      meta.shard_index = shard->index;
      meta.shard_count = shard->count;
    }
    meta.total_cells = int(selected.size());
    meta.environment = nc::run_environment();  // external rows' sources, asked as the run ends
  };
  // The workers are forked now, before the watchdog's thread starts: this process runs no other
  // thread, so none can hold a lock the workers inherit held (reports/workers.hpp).
  const int jobs = std::min<long>(a.jobs > 0 ? a.jobs : nc::available_processors(), long(cells.size()));
  std::optional<nc::Workers> workers;
  if (jobs >= 2 && a.reproduce.empty()) {
    const int others = nc::process_threads() - 1;
    workers.emplace(cells, opt, jobs);
    if (!workers->forked_alone())
      fmt::print(stderr, "{} matrix: the workers were forked while {} other thread{} of this program ran (started "
                         "before cli_main): a lock one of them held then stays held in every worker, which hangs "
                         "if it takes it (the watchdog ends such a run); start them after cli_main, or use --jobs 1\n",
                 program, others, others == 1 ? "" : "s");
  }
  Progress progress(cells.size());
  const auto start = std::chrono::steady_clock::now();
  const std::string started_at = nc::utc_now();
  // A case that never returns: the watchdog reports the cells finished so far and the stuck one
  // (an error), writes the reports and ends the process with exit code 1.
  std::vector<nc::CellResult> finished;
  std::mutex finished_mutex;  // the watchdog reads them from its thread
  Watchdog watchdog(opt.hard_limit(), [&](const nc::Cell& stuck, double seconds) {
    std::lock_guard lock(finished_mutex);
    finished.push_back(stuck_cell(stuck, seconds, opt.hard_limit()));
    nc::RunMeta meta{.seed = *opt.seed, .cases = a.cases, .threads = omp_get_max_threads(),
                     .seconds = since(start), .command = nc::this_command_line(), .started_at = started_at};
    meta.versions = nc::build_versions();
    describe(meta);
    print_and_exit_code(finished, meta, use_colour(a.colour), false);
    write_outputs(finished, meta, a.json_path, a.out_dir);
    std::fflush(stdout);
    std::fflush(stderr);
    std::_Exit(1);
  });
  opt.on_cell = [&](const nc::Cell& c, bool started) { watchdog.on_cell(c, started); };
  nc::MatrixRun run;
  auto after_each = [&](const nc::CellResult& r, std::size_t i) {
    {
      std::lock_guard lock(finished_mutex);
      finished.push_back(r);
    }
    const bool row_finished = i + 1 == cells.size() || cells[i + 1].info.row.id != cells[i].info.row.id ||
                              cells[i + 1].info.impl != cells[i].info.impl;
    progress.cell_done(r, row_finished, since(start));
  };
  try {
    run = workers ? nc::run_matrix(*workers, opt.on_cell, after_each) : nc::run_matrix(cells, opt, after_each);
  } catch (const std::invalid_argument& e) {  // a reproduce string for another cell
    throw UsageError(e.what());
  }
  nc::RunMeta& meta = run.meta;
  describe(meta);
  const int code = print_and_exit_code(run.results, meta, use_colour(a.colour), !a.reproduce.empty());
  write_outputs(run.results, meta, a.json_path, a.out_dir);
  return code;
}

nlohmann::json read_json_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw InputError(path + ": cannot open the file");
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::parse_error& e) {
    throw InputError(path + ": not valid JSON (" + std::string(e.what()) + ")");
  }
}

int cmd_merge(const std::vector<std::string>& files, const std::string& out_dir,
              const std::string& json_path, const std::string& colour, const std::string& program) {
  check_outputs(out_dir, json_path);
  std::vector<std::pair<std::string, nlohmann::json>> inputs;
  for (const auto& f : files) inputs.emplace_back(f, read_json_file(f));
  nc::LoadedReport merged;
  try {
    merged = nc::merge_reports(inputs);
  } catch (const nc::MergeError& e) {
    throw InputError(e.what());
  }
  merged.meta.command = nc::this_command_line();
  fmt::print(stderr, "{} merge: {}, {}, seed {}\n", program, plural(long(inputs.size()), "shard", "shards"),
             plural(long(merged.cells.size()), "cell", "cells"), merged.meta.seed);
  const int code = print_and_exit_code(merged.cells, merged.meta, use_colour(colour), false);
  write_outputs(merged.cells, merged.meta, json_path, out_dir);
  return code;
}

// ---------------------------------------------------------------------------------------------
// show

// The report.json of a report directory, or the file itself.
nc::LoadedReport load_report(const std::string& path) {
  std::error_code ec;
  const std::string file = std::filesystem::is_directory(path, ec) ? path + "/report.json" : path;
  try {
    return nc::report_from_json(read_json_file(file));
  } catch (const std::invalid_argument& e) {
    throw InputError(file + ": not a normcheck matrix report: " + e.what());
  }
}

int cmd_show(const std::vector<std::string>& wanted, const std::string& report, const std::string& program) {
  const nc::LoadedReport loaded = load_report(report);
  std::vector<const nc::CellResult*> shown;
  if (wanted.empty()) {
    for (const auto& r : loaded.cells)
      if (!r.as_expected()) shown.push_back(&r);
    if (shown.empty()) {
      fmt::print("{}: {}, 0 surprises. Name a cell to show it: {} show row/implementation/property\n",
                 report, plural(long(loaded.cells.size()), "cell", "cells"), program);
      return 0;
    }
  }
  for (const auto& w : wanted) {
    // a cell id, its ctest name, or a ctest test name ending in it (Matrix/MatrixCell.AsExpected/<name>)
    const nc::CellResult* found = nullptr;
    for (const auto& r : loaded.cells) {
      const std::string name = nc::gtest_name(r.id());
      if (w == r.id() || w == name ||
          (w.size() > name.size() && w.compare(w.size() - name.size(), name.size(), name) == 0 &&
           w[w.size() - name.size() - 1] == '/'))
        found = &r;
    }
    if (!found)
      throw UsageError(fmt::format("no cell '{}' in {} ({}); a cell is named row/implementation/property, "
                                   "e.g. {}", w, report, plural(long(loaded.cells.size()), "cell", "cells"),
                                   loaded.cells.empty() ? "batch_norm_train/optimized/padding_invariance"
                                                        : loaded.cells.front().id()));
    shown.push_back(found);
  }
  for (std::size_t i = 0; i < shown.size(); ++i) fmt::print("{}{}", i ? "\n" : "", nc::section_text(*shown[i]));
  return 0;
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

// A checker of golden cases through one row: one of nc::golden_rows(), the rows computing an op.
struct GoldenChecker {
  std::string row, op;
  nc::GoldenFn check;
};

// The rows --layer selects (id or name matching) among those computing a golden op, an external
// library's rows (registered at run time) too.
std::vector<GoldenChecker> golden_checkers(const std::string& layer_re) {
  const std::regex re = compile(layer_re, "--layer");
  std::map<std::string, std::string> names;
  for (const auto& row : nc::all_rows()) names.emplace(row.info.id, row.info.name);
  std::vector<GoldenChecker> out;
  for (const auto& [op, rows] : nc::golden_rows())
    for (const auto& r : rows) {
      const auto name = names.find(r.row);
      if (std::regex_search(r.row, re) || (name != names.end() && std::regex_search(name->second, re)))
        out.push_back({r.row, op, r.check});
    }
  if (out.empty()) throw UsageError(fmt::format("no row with a golden op matches --layer '{}'", layer_re));
  return out;
}

// Exit codes: 0 every case passed; 1 a case's numbers disagree; 2 an input error — a file that
// cannot be read as a golden file, a malformed case (the line names the case and the field) or
// an op this build does not know. An input error wins over a failure: the verdict is incomplete.
// With --layer, each case is checked through every selected row computing its op (an external
// library's rows too; outcomes are named "<row>: <case id>"), and cases of other ops are not
// checked.
int cmd_golden(std::vector<std::string> files, const std::string& impl, const std::string& layer_re,
               const std::string& out_dir, const std::string& program) {
  check_outputs(out_dir, "");
  std::vector<GoldenChecker> rows;
  if (!layer_re.empty()) rows = golden_checkers(layer_re);
  if (files.empty()) files.push_back(nc::default_golden_path());
  nc::GoldenRun run;
  run.files = files;
  run.meta.command = nc::this_command_line();
  run.meta.started_at = nc::utc_now();
  run.meta.versions = nc::build_versions();
  run.meta.environment = nc::run_environment();
  const auto start = std::chrono::steady_clock::now();
  int input_errors = 0, other_ops = 0;
  for (const auto& path : files) {
    nlohmann::json file;
    try {
      file = nc::load_golden(path);
    } catch (const nc::GoldenFileError& e) {
      fmt::print(stderr, "{} golden: {}\n", program, one_line(e.what()));
      ++input_errors;
      continue;
    }
    const auto& cases = file["cases"];
    const bool grad = nc::is_grad_golden(file);  // gradient cases go through the backward passes
    for (std::size_t k = 0; k < cases.size(); ++k) {
      // the checkers of this case: the built-in one of its op, or every selected row computing it
      std::vector<std::pair<std::string, nc::GoldenFn>> checkers;
      if (rows.empty()) {
        checkers.push_back({"", [grad](const nlohmann::json& c, nc::Impl i) {
                              return grad ? nc::check_grad_golden_case(c, i) : nc::check_golden_case(c, i);
                            }});
      } else {
        const std::string op = cases[k].is_object() ? cases[k].value("op", std::string()) : std::string();
        for (const auto& r : rows)
          if (r.op == op) checkers.push_back({r.row, r.check});
        if (checkers.empty()) {
          ++other_ops;
          continue;
        }
      }
      for (const auto& [row, check] : checkers) {  // a row's case passes or fails as one
        bool ok = true, bad_input = false;
        for (nc::Impl i : {nc::Impl::reference, nc::Impl::optimized}) {
          if (impl != "both" && impl != nc::to_string(i)) continue;
          auto o = check(cases[k], i);
          if (o.input_error()) {  // the same for both implementations: one line
            fmt::print(stderr, "{} golden: {}: {}: {}\n", program, one_line(path), case_name(o, k), one_line(o.error));
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
  std::string line = fmt::format("{} passed, {} failed", run.passed, run.failed);
  if (input_errors > 0) line += fmt::format(", {} not checked (input errors)", input_errors);
  if (other_ops > 0)
    line += fmt::format(" ({} of other ops not checked)", plural(other_ops, "case", "cases"));
  fmt::print("{}\n", line);
  if (!out_dir.empty()) {
    nc::write_report_dir(out_dir, nc::golden_report_files(run));
    fmt::print("report written to {}/ (report.md, report.json, report.html)\n", out_dir);
  }
  if (input_errors > 0) return 2;
  return run.failed == 0 ? 0 : 1;
}

int cmd_mutants(int cases, std::optional<uint64_t> seed_opt, const Budgets& budgets,
                const std::string& program) {
  const uint64_t seed = seed_opt ? *seed_opt : std::random_device{}() * 4294967296ULL + std::random_device{}();
  nc::RunOptions opt;
  opt.cases = cases;
  opt.seed = seed;
  opt.use_rc_params_reproduce = false;  // the seed given: RapidCheck's own configuration stays unloaded
  budgets.apply(opt);
  fmt::print(stderr, "{} mutants: {}, {} per cell, seed {}\n", program,
             plural(long(nc::mutants().size()), "mutant", "mutants"), plural(cases, "case", "cases"), seed);
  Watchdog watchdog(opt.hard_limit(), [&](const nc::Cell& stuck, double seconds) {
    fmt::print("{}\nmutation score: incomplete\n", stuck_cell(stuck, seconds, opt.hard_limit()).message);
    std::fflush(stdout);
    std::_Exit(1);
  });
  opt.on_cell = [&](const nc::Cell& c, bool started) { watchdog.on_cell(c, started); };
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

int normcheck::cli_main(int argc, char** argv) { return cli_main(argc, argv, CliOptions{}); }

int normcheck::cli_main(int argc, char** argv, const CliOptions& options) {
  // Thousands of tiny OpenMP regions: with the default (spinning) wait policy, idle threads
  // burn the cores other processes need, and on a loaded 2-core machine a run slows ten-fold.
  // GOMP reads the policy when it loads, so set it and start again.
  if (!std::getenv("OMP_WAIT_POLICY")) {
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    execv("/proc/self/exe", argv);  // on failure, carry on with the default policy
  }
  // A run draws and frees thousands of batches, some of hundreds of MB. glibc's malloc gives
  // large blocks back to the kernel (mmap'd blocks at free, the heap's top beyond the trim
  // threshold), so the next case faults every page in again, zeroed: 1.6 million page faults in
  // the default matrix, and on a VM each costs microseconds (AMD EPYC Zen 5 host: 21–29 s wall,
  // 15 s of it in the kernel). Blocks up to 1 GiB come from the heap, and up to 1 GiB of its free
  // top stays mapped: 0.13 million faults, 12–15 s, the same peak memory (250 MB per worker).
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  const std::string program = program_name(argc > 0 ? argv[0] : nullptr);
  CLI::App app{program + ": property-based verification of Transformer normalization and attention layers",
               program};
  app.require_subcommand(1);
  app.set_version_flag("--version", nc::build_versions()["normcheck"].get<std::string>());
  app.footer("Exit codes: 0 all as expected, 1 a surprise (or a failed golden case), 2 a usage or "
             "input error. `" + program + " SUBCOMMAND --help` describes each subcommand.");

  bool list_markdown = false;
  std::string list_write;
  auto* list = app.add_subcommand("list", "List the layers (rows, with expected profiles), the properties and the golden ops");
  list->add_flag("--markdown", list_markdown, "Print the expected matrix and the layer and property tables as Markdown (README's generated tables)");
  list->add_option("--write", list_write, "Rewrite the generated tables of FILE (between its <!-- matrix:begin --> and <!-- matrix:end --> lines), e.g. README.md");

  MatrixArgs m;
  auto* matrix = app.add_subcommand("matrix", "Run the (layer, implementation, property) cells and print the matrix");
  matrix->add_option("--cases", m.cases, "Generated cases per ✓ cell; default 100")->check(kCases);
  matrix->add_option("--search-factor", m.search_factor,
                     "A ✗ cell searches up to FACTOR × cases for its counterexample; default 10")
      ->check(whole_number<int>(1, 1000));
  matrix->add_option("--seed", m.seed, "RapidCheck seed; default: a fresh one, always printed")->check(kSeed);
  matrix->add_option("--layer", m.layer_re, "Only rows whose id (batch_norm_train) or name matches REGEX");
  matrix->add_option("--property", m.property_re, "Only properties whose id matches REGEX");
  matrix->add_option("--implementation", m.impl, "reference, optimized or both (default)")
      ->check(CLI::IsMember({"reference", "optimized", "both"}));
  matrix->add_option("--threads", m.threads, "OpenMP threads of the kernels (default: OpenMP's)")
      ->check(whole_number<int>(1, 1024));
  matrix->add_option("--jobs", m.jobs,
                     "Cells run at once, each in a worker process (default: the processors this process may use); "
                     "the results are the same for any count, 1 runs every cell in this process")
      ->check(whole_number<int>(1, 1024));
  matrix->add_option("--shard", m.shard, "Run shard I of N (0 ≤ I < N): cell k of the selection when k mod N = I; needs --seed");
  matrix->add_option("--reproduce", m.reproduce,
                     "Replay one failing case (the 'reproduce=...' string of its report) and print its counterexample");
  matrix->add_option("--out", m.out_dir, "Write report.md, report.json and report.html into DIR (replaced atomically)");
  matrix->add_option("--json", m.json_path, "Also write the JSON report to FILE");
  add_budget_options(matrix, m.budgets);
  matrix->add_option("--color", m.colour, "Colour the matrix: auto (on a terminal, unless NO_COLOR is set), always, never")
      ->check(CLI::IsMember({"auto", "always", "never"}));
  matrix->footer("Exit codes: 0 every cell as expected, 1 a surprise, 2 a usage or input error.");

  std::vector<std::string> show_cells;
  std::string show_report = "normcheck-report";
  auto* show = app.add_subcommand("show", "Print cells' sections of a report (the property, the outcome, the replay commands, the counterexample) as report.md has them");
  show->add_option("cells", show_cells, "Cells: row/implementation/property (or the ctest name); none: every surprise");
  show->add_option("--report", show_report, "A report directory (matrix --out DIR) or its report.json; default normcheck-report");
  show->footer("Exit codes: 0 printed, 2 no such report or cell.");

  std::vector<std::string> merge_files;
  std::string merge_out, merge_json, merge_colour = "auto";
  auto* merge = app.add_subcommand("merge", "Join the report.json files of the shards of one run into one report");
  merge->add_option("files", merge_files, "report.json of every shard (matrix --shard I/N --json FILE or --out DIR)")->required();
  merge->add_option("--out", merge_out, "Write report.md, report.json and report.html into DIR");
  merge->add_option("--json", merge_json, "Write the merged JSON report to FILE");
  merge->add_option("--color", merge_colour, "Colour the matrix: auto, always, never")
      ->check(CLI::IsMember({"auto", "always", "never"}));
  merge->footer("Exit codes: 0 every cell as expected, 1 a surprise, 2 overlapping, missing or incompatible inputs.");

  std::vector<std::string> golden_files;
  std::string golden_impl = "both", golden_out, golden_layer;
  auto* golden = app.add_subcommand("golden", "Check golden vectors (PyTorch) of the ops this build knows");
  golden->add_option("files", golden_files, "Golden JSON files; default: the PyTorch golden file normcheck ships");
  golden->add_option("--implementation", golden_impl, "reference, optimized or both (default)")
      ->check(CLI::IsMember({"reference", "optimized", "both"}));
  golden->add_option("--layer", golden_layer,
                     "Check the cases of the ops that rows matching REGEX compute, through each of those "
                     "rows (e.g. a project's own layer_norm kernel, or an external library's rows); "
                     "cases of other ops are not checked");
  golden->add_option("--out", golden_out, "Write the golden report (report.md, report.json, report.html) into DIR");
  golden->footer("Exit codes: 0 every case passed, 1 a case failed, 2 a usage or input error.");

  int mutant_cases = 100;
  std::optional<uint64_t> mutant_seed;
  auto* mut = app.add_subcommand("mutants", "Run the deliberately broken layers through the suite and print the mutation score");
  mut->add_option("--cases", mutant_cases, "Generated cases per cell")->check(kCases);
  mut->add_option("--seed", mutant_seed, "RapidCheck seed (default: fresh, always printed)")->check(kSeed);
  Budgets mutant_budgets;
  add_budget_options(mut, mutant_budgets);

  // the subcommand named on the command line, for the help an error points to
  std::string sub;
  for (int i = 1; i < argc && sub.empty(); ++i)
    if (argv[i][0] != '-') sub = argv[i];
  const std::vector<CLI::App*> subcommands = app.get_subcommands({});
  const bool known = !sub.empty() && std::any_of(subcommands.begin(), subcommands.end(),
                                                 [&](const CLI::App* s) { return s->get_name() == sub; });
  const std::string help = known ? program + " " + sub + " --help" : program + " --help";
  if (!sub.empty() && !known) {
    std::string names;
    for (const CLI::App* s : subcommands) names.append(names.empty() ? "" : ", ").append(s->get_name());
    fmt::print(stderr, "{}: unknown subcommand '{}'; the subcommands are {} (see {})\n", program, one_line(sub, 80),
               names, help);
    return 2;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    fmt::print(stderr, "{}: {} (see {})\n", program, one_line(e.what()), help);
    return 2;
  }
  try {
    if (list->parsed()) return cmd_list(list_markdown, list_write);
    if (matrix->parsed()) {
      if (options.in_process) {
        if (m.jobs > 1)
          throw UsageError("--jobs " + std::to_string(m.jobs) + ": " + program +
                           " runs every cell in this process (" + options.why + ")");
        m.jobs = 1;
      }
      return cmd_matrix(m, program);
    }
    if (show->parsed()) return cmd_show(show_cells, show_report, program);
    if (merge->parsed()) return cmd_merge(merge_files, merge_out, merge_json, merge_colour, program);
    if (mut->parsed()) return cmd_mutants(mutant_cases, mutant_seed, mutant_budgets, program);
    if (golden->parsed()) return cmd_golden(golden_files, golden_impl, golden_layer, golden_out, program);
  } catch (const UsageError& e) {
    fmt::print(stderr, "{}: {} (see {})\n", program, one_line(e.what(), 2000), help);
    return 2;
  } catch (const std::exception& e) {
    fmt::print(stderr, "{}: {}\n", program, one_line(e.what(), 2000));
    return 2;
  }
  return 2;
}
