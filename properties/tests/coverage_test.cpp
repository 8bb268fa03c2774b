// A default run must reach every regime a kernel threshold defines (norms/kernels.hpp: vector
// lanes, row groups, the parallel and streaming thresholds, BatchNorm's statistics blocks and
// segments), and the regimes where real bugs live (T = 1, empty sequences, NaN poison, values
// whose sums round, a large offset, outlier features at a row's ends, extreme magnitudes, sums
// over thousands of values). The classes are read from the cells' results (CellResult::drawn),
// which the generators fill relative to the kernels' constants: a threshold raised beyond the
// generators' reach makes this test fail.
#include <gtest/gtest.h>

#include <map>

#include "properties/catalog.hpp"
#include "properties/generators.hpp"

namespace normcheck {
namespace {

std::map<std::string, int> drawn_by_a_default_run(uint64_t seed) {
  RunOptions o;
  o.seed = seed;
  o.use_rc_params_reproduce = false;
  std::map<std::string, int> all;
  for (const auto& cell : all_cells()) {
    if (cell.info.row.family != Family::norm || cell.info.row.origin != "builtin") continue;
    for (const auto& [cls, n] : run_cell(cell, o).drawn) all[cls] += n;
  }
  return all;
}

TEST(Coverage, ADefaultRunDrawsEveryThresholdRegimeAndTheBugRegimes) {
  std::vector<std::string> wanted = gen::threshold_classes();
  for (const char* c : {"T=1", "empty sequence", "poison:NaN", "poison:1e30", "poison:-inf",
                        "regime:decimal", "regime:dense", "regime:offset_tiny_variance",
                        "regime:constant_rows", "regime:outlier_features", "regime:ulp_spread",
                        "outlier feature: first", "outlier feature: last", "magnitude:1e30",
                        "magnitude:1e-38",
                        "magnitude:mixed with ±1e30", "long reduction over rows",
                        "long reduction over features", "offset: spread of a few ulps"})
    wanted.push_back(c);
  for (uint64_t seed : {1u, 2u}) {
    const auto drawn = drawn_by_a_default_run(seed);
    for (const auto& c : wanted)
      EXPECT_GT(drawn.count(c) ? drawn.at(c) : 0, 0)
          << "seed " << seed << ": a default run never draws '" << c << "'";
    std::string all;
    for (const auto& [c, n] : drawn) all += "  " + c + ": " + std::to_string(n) + "\n";
    std::cout << "seed " << seed << ", cases per class:\n" << all;
  }
}

}  // namespace
}  // namespace normcheck
