// README tells the registries' story: its generated tables are the registries' expected matrix.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>

#include "reports/report.hpp"
#include "reports/tests/test_util.hpp"

namespace normcheck {
namespace {

using testing::read_file;

TEST(Readme, GeneratedTablesAreTheRegistries) {
  const std::string readme = read_file(std::string(NORMCHECK_SOURCE_DIR) + "/README.md");
  std::string regenerated;
  ASSERT_NO_THROW(regenerated = with_generated_tables(readme)) << "README.md lost its matrix markers";
  // a short diff, not the two texts
  EXPECT_TRUE(regenerated == readme)
      << "README's generated tables drifted from the registries (- README, + registries):\n"
      << testing::line_diff(readme, regenerated)
      << "Regenerate them with `build/release/normcheck list --write README.md`.";
}

TEST(Readme, TheDriftMessageIsAShortDiff) {
  const std::string readme = read_file(std::string(NORMCHECK_SOURCE_DIR) + "/README.md");
  std::string drifted = readme;
  const std::string from = "| layer_norm | ✓ |", to = "| layer_norm | ✗ |";
  const auto at = drifted.find(from);
  ASSERT_NE(at, std::string::npos);
  drifted.replace(at, from.size(), to);
  const std::string diff = testing::line_diff(drifted, with_generated_tables(drifted));
  EXPECT_EQ(std::count(diff.begin(), diff.end(), '\n'), 2) << diff;
  EXPECT_EQ(diff.rfind("- ", 0), 0u) << diff;
  EXPECT_NE(diff.find("\n+ "), std::string::npos) << diff;
  EXPECT_EQ(with_generated_tables(with_generated_tables(drifted)), with_generated_tables(drifted));
  EXPECT_THROW(with_generated_tables("no markers here"), std::invalid_argument);
}

TEST(Readme, LinksTheReportFormatPage) {
  const std::string readme = read_file(std::string(NORMCHECK_SOURCE_DIR) + "/README.md");
  EXPECT_NE(readme.find("(docs/REPORT_FORMAT.md)"), std::string::npos);
  EXPECT_TRUE(std::filesystem::exists(std::string(NORMCHECK_SOURCE_DIR) + "/docs/REPORT_FORMAT.md"));
}

}  // namespace
}  // namespace normcheck
