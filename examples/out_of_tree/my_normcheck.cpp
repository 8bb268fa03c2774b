// A normcheck-style run over the project's layers: prints the matrix, writes report.md and
// report.json into the directory given, exits 0 only if every cell is as expected.
#include <iostream>
#include <random>

#include <reports/report.hpp>

#include "my_layer_norm.hpp"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: my_normcheck OUT_DIR\n";
    return 2;
  }
  normcheck::RunOptions options;
  options.seed = std::random_device{}();
  std::vector<normcheck::CellResult> results;
  for (const auto& cell : normcheck::norm_cells(my_kernels::register_with_normcheck()))
    results.push_back(normcheck::run_cell(cell, options));
  normcheck::RunMeta meta;
  meta.seed = *options.seed;
  meta.cases = options.cases;
  std::cout << normcheck::matrix_table(results);
  normcheck::write_file_atomic(std::string(argv[1]) + "/report.md", normcheck::report_markdown(results, meta));
  normcheck::write_file_atomic(std::string(argv[1]) + "/report.json", normcheck::report_json(results, meta).dump(1));
  const auto s = normcheck::summarize(results);
  std::cout << s.cells << " cells: " << s.as_expected << " as expected, " << s.surprises
            << " surprises (seed " << meta.seed << ")\n";
  return s.surprises == 0 ? 0 : 1;
}
