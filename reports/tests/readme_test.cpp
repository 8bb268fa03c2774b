// README tells the registries' story: its generated tables are the registries' expected matrix.
#include <gtest/gtest.h>

#include <filesystem>

#include "reports/report.hpp"
#include "reports/tests/test_util.hpp"

namespace normcheck {
namespace {

using testing::read_file;

TEST(Readme, MatrixSectionIsTheRegistriesExpectedMatrix) {
  const std::string readme = read_file(std::string(NORMCHECK_SOURCE_DIR) + "/README.md");
  const std::string begin = "<!-- matrix:begin", end = "<!-- matrix:end -->";
  const auto b = readme.find(begin), e = readme.find(end);
  ASSERT_NE(b, std::string::npos);
  ASSERT_NE(e, std::string::npos);
  const auto body_start = readme.find('\n', b) + 1;
  EXPECT_EQ(readme.substr(body_start, e - body_start), expected_matrix_markdown())
      << "README's matrix drifted from the registries: regenerate it with "
         "`normcheck list --markdown`";
}

TEST(Readme, LinksTheReportFormatPage) {
  const std::string readme = read_file(std::string(NORMCHECK_SOURCE_DIR) + "/README.md");
  EXPECT_NE(readme.find("(docs/REPORT_FORMAT.md)"), std::string::npos);
  EXPECT_TRUE(std::filesystem::exists(std::string(NORMCHECK_SOURCE_DIR) + "/docs/REPORT_FORMAT.md"));
}

}  // namespace
}  // namespace normcheck
