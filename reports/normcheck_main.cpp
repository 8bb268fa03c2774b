// normcheck: the command-line front end. Every list it shows or runs comes from the layer and
// property registries.
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <random>
#include <regex>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

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

// Exit codes: 0 every case passed; 1 a case's numbers disagree; 2 an input error — a file that
// cannot be read as a golden file, a malformed case (the line names the case and the field) or
// an op this build does not know. An input error wins over a failure: the verdict is incomplete.
int cmd_golden(const std::vector<std::string>& files, const std::string& impl) {
  int passed = 0, failed = 0, input_errors = 0;
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
    for (std::size_t k = 0; k < cases.size(); ++k) {
      bool ok = true, bad_input = false;
      for (nc::Impl i : {nc::Impl::reference, nc::Impl::optimized}) {
        if (impl != "both" && impl != nc::to_string(i)) continue;
        const auto o = nc::check_golden_case(cases[k], i);
        if (o.input_error()) {  // the same for both implementations: one line
          fmt::print(stderr, "normcheck golden: {}: {}: {}\n", one_line(path), case_name(o, k),
                     one_line(o.error));
          bad_input = true;
          break;
        }
        if (!o.passed) {
          ok = false;
          fmt::print("FAIL {} [{}]: {}\n", one_line(o.id, 120), nc::to_string(i), one_line(o.error));
        }
      }
      bad_input ? ++input_errors : ok ? ++passed : ++failed;
    }
  }
  if (input_errors > 0)
    fmt::print("{} passed, {} failed, {} not checked (input errors)\n", passed, failed, input_errors);
  else
    fmt::print("{} passed, {} failed\n", passed, failed);
  if (input_errors > 0) return 2;
  return failed == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
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
  } catch (const std::exception& e) {
    fmt::print(stderr, "normcheck: {}\n", e.what());
    return 2;
  }
  return 2;
}
