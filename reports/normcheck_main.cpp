// normcheck: the command-line front end. Every list it shows or runs comes from the layer and
// property registries.
#include <omp.h>

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <iostream>
#include <random>
#include <regex>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "mutants/mutants.hpp"
#include "reports/report.hpp"

namespace nc = normcheck;

namespace {

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
  fmt::print("\nproperties:\n");
  for (const auto& p : nc::all_properties()) fmt::print("  {:<36} {}\n", p.id, p.statement);
  fmt::print("\ngolden ops:");
  for (const auto& [op, fn] : nc::golden_ops()) fmt::print(" {}", op);
  fmt::print("\n");
  return 0;
}

struct MatrixArgs {
  std::string json_path, out_dir, layer_re = ".*", property_re = ".*", impl = "both", reproduce;
  int cases = 100;
  int threads = 0;
  std::optional<uint64_t> seed;
};

int cmd_matrix(const MatrixArgs& a) {
  const uint64_t seed = a.seed ? *a.seed : std::random_device{}() * 4294967296ULL + std::random_device{}();
  if (a.threads > 0) omp_set_num_threads(a.threads);
  std::regex layer_re, prop_re;
  try {
    layer_re = std::regex(a.layer_re);
    prop_re = std::regex(a.property_re);
  } catch (const std::regex_error& e) {
    fmt::print(stderr, "normcheck: invalid regular expression: {}\n", e.what());
    return 2;
  }
  std::vector<nc::Cell> cells;
  for (const auto& c : nc::all_cells()) {
    if (!std::regex_search(c.row_id, layer_re) && !std::regex_search(c.row_name, layer_re))
      continue;
    if (!std::regex_search(c.prop.id, prop_re)) continue;
    if (a.impl != "both" && a.impl != nc::to_string(c.impl)) continue;
    cells.push_back(c);
  }
  if (cells.empty()) {
    fmt::print(stderr, "normcheck: no cell matches --layer '{}' --property '{}' --implementation {}\n",
               a.layer_re, a.property_re, a.impl);
    return 2;
  }
  fmt::print(stderr, "normcheck matrix: {} cells, {} cases per cell, seed {}\n", cells.size(),
             a.cases, seed);
  nc::RunOptions opt;
  opt.cases = a.cases;
  opt.seed = seed;
  opt.reproduce = a.reproduce;
  const auto start = std::chrono::steady_clock::now();
  std::vector<nc::CellResult> results;
  std::string last_row;
  for (const auto& c : cells) {
    try {
      results.push_back(nc::run_cell(c, opt));
    } catch (const std::invalid_argument& e) {
      fmt::print(stderr, "normcheck: {}\n", e.what());
      return 2;
    }
    if (c.row_name != last_row) {
      last_row = c.row_name;
      fmt::print(stderr, "  {} ...\n", last_row);
    }
  }
  nc::RunMeta meta;
  meta.seed = seed;
  meta.cases = a.cases;
  meta.threads = omp_get_max_threads();
  meta.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const auto summary = nc::summarize(results);
  fmt::print("{}\n", nc::matrix_table(results));
  for (const auto& r : results)
    if (!r.as_expected()) fmt::print("SURPRISE {}\n", r.message);
  fmt::print("{} cells: {} as expected, {} surprises, {} errors ({:.1f} s, seed {})\n",
             summary.cells, summary.as_expected, summary.surprises, summary.errors, meta.seconds,
             seed);
  if (!a.json_path.empty()) nc::write_file_atomic(a.json_path, nc::report_json(results, meta).dump(1));
  if (!a.out_dir.empty()) {
    nc::write_file_atomic(a.out_dir + "/report.json", nc::report_json(results, meta).dump(1));
    nc::write_file_atomic(a.out_dir + "/report.md", nc::report_markdown(results, meta));
    fmt::print("report written to {}/report.md and {}/report.json\n", a.out_dir, a.out_dir);
  }
  return summary.surprises == 0 ? 0 : 1;
}

int cmd_golden(const std::vector<std::string>& files, const std::string& impl) {
  int passed = 0, failed = 0;
  for (const auto& path : files) {
    nlohmann::json file;
    try {
      file = nc::load_golden(path);
    } catch (const nc::GoldenFileError& e) {
      fmt::print(stderr, "normcheck golden: {}\n", e.what());
      return 2;
    }
    for (const auto& c : file["cases"]) {
      bool ok = true;
      for (nc::Impl i : {nc::Impl::reference, nc::Impl::optimized}) {
        if (impl != "both" && impl != nc::to_string(i)) continue;
        const auto o = nc::check_golden_case(c, i);
        if (!o.passed) {
          ok = false;
          fmt::print("FAIL {} [{}]: {}\n", o.id, nc::to_string(i), o.error);
          if (!o.known) break;  // one line for an unknown op, not one per implementation
        }
      }
      ok ? ++passed : ++failed;
    }
  }
  fmt::print("{} passed, {} failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
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

int main(int argc, char** argv) {
  // Thousands of tiny OpenMP regions: with the default (spinning) wait policy, idle threads
  // burn the cores other processes need, and on a loaded 2-core machine a run slows ten-fold.
  // GOMP reads the policy when it loads, so set it and start again.
  if (!std::getenv("OMP_WAIT_POLICY")) {
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    execv("/proc/self/exe", argv);  // on failure, carry on with the default policy
  }
  CLI::App app{"normcheck: property-based verification of Transformer normalization layers"};
  app.require_subcommand(1);

  bool list_markdown = false;
  auto* list = app.add_subcommand("list", "List the layers (rows, with expected profiles) and the properties");
  list->add_flag("--markdown", list_markdown, "Print the expected matrix as a Markdown table");

  MatrixArgs m;
  auto* matrix = app.add_subcommand("matrix", "Run every (layer, implementation, property) cell and print the matrix");
  matrix->add_option("--json", m.json_path, "Write the cells as JSON to FILE");
  matrix->add_option("--out", m.out_dir, "Write report.md and report.json into DIR");
  matrix->add_option("--cases", m.cases, "Generated cases per cell")->check(CLI::Range(1, 10000000));
  matrix->add_option("--seed", m.seed, "RapidCheck seed (default: fresh, always printed)");
  matrix->add_option("--layer", m.layer_re, "Only rows whose id or name matches REGEX");
  matrix->add_option("--property", m.property_re, "Only properties matching REGEX");
  matrix->add_option("--implementation", m.impl, "reference, optimized or both")
      ->check(CLI::IsMember({"reference", "optimized", "both"}));
  matrix->add_option("--threads", m.threads, "OpenMP threads")->check(CLI::Range(1, 1024));
  matrix->add_option("--reproduce", m.reproduce, "Replay one case: the reproduce string of a failure");

  std::vector<std::string> golden_files;
  std::string golden_impl = "both";
  auto* golden = app.add_subcommand("golden", "Check golden vectors (PyTorch) of the ops this build knows");
  golden->add_option("files", golden_files, "Golden JSON files")->required();
  golden->add_option("--implementation", golden_impl, "reference, optimized or both")
      ->check(CLI::IsMember({"reference", "optimized", "both"}));

  int mutant_cases = 100;
  std::optional<uint64_t> mutant_seed;
  auto* mut = app.add_subcommand("mutants", "Run the deliberately broken layers through the suite and print the mutation score");
  mut->add_option("--cases", mutant_cases, "Generated cases per cell")->check(CLI::Range(1, 10000000));
  mut->add_option("--seed", mutant_seed, "RapidCheck seed (default: fresh, always printed)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  try {
    if (app.got_subcommand("list")) return cmd_list(list_markdown);
    if (app.got_subcommand("matrix")) return cmd_matrix(m);
    if (app.got_subcommand("golden")) return cmd_golden(golden_files, golden_impl);
    if (app.got_subcommand("mutants")) return cmd_mutants(mutant_cases, mutant_seed);
  } catch (const std::exception& e) {
    fmt::print(stderr, "normcheck: {}\n", e.what());
    return 2;
  }
  return 2;
}
