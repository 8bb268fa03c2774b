// The report directory is replaced as a whole or not at all.
#include <gtest/gtest.h>

#include <filesystem>

#include "reports/output_dir.hpp"
#include "reports/tests/test_util.hpp"

namespace normcheck {
namespace {

namespace fs = std::filesystem;
using testing::read_file;
using testing::scratch;

std::vector<std::string> entries(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

TEST(ReportDir, WritesEveryFileAndLeavesNoTemporaries) {
  const std::string parent = scratch("dir_new");
  write_report_dir(parent + "/rep", {{"report.md", "# md\n"}, {"report.json", "{}\n"}});
  EXPECT_EQ(read_file(parent + "/rep/report.md"), "# md\n");
  EXPECT_EQ(read_file(parent + "/rep/report.json"), "{}\n");
  EXPECT_EQ(entries(parent), std::vector<std::string>{"rep"});
}

TEST(ReportDir, ReplacesThePreviousReportAsAWhole) {
  const std::string parent = scratch("dir_replace");
  write_report_dir(parent + "/rep", {{"report.md", "old\n"}, {"report.json", "old\n"}, {"report.html", "old\n"}});
  write_report_dir(parent + "/rep/", {{"report.md", "new\n"}, {"report.json", "new\n"}});
  // a per-file writer would have left the old report.html beside the new files
  EXPECT_EQ(entries(parent + "/rep"), (std::vector<std::string>{"report.json", "report.md"}));
  EXPECT_EQ(read_file(parent + "/rep/report.md"), "new\n");
  EXPECT_EQ(entries(parent), std::vector<std::string>{"rep"});
}

TEST(ReportDir, AnInterruptedWriteLeavesThePreviousReport) {
  const std::string parent = scratch("dir_interrupted");
  write_report_dir(parent + "/rep", {{"report.md", "old\n"}, {"report.json", "old\n"}});
  EXPECT_THROW(write_report_dir(parent + "/rep", {{"report.md", "new\n"}, {"report.json", "new\n"}},
                                [] { throw std::runtime_error("interrupted"); }),
               std::runtime_error);
  EXPECT_EQ(read_file(parent + "/rep/report.md"), "old\n");
  EXPECT_EQ(read_file(parent + "/rep/report.json"), "old\n");
  EXPECT_EQ(entries(parent), std::vector<std::string>{"rep"}) << "the temporary directory must be removed";
}

TEST(ReportDir, RefusesADirectoryHoldingOtherFiles) {
  const std::string dir = scratch("dir_foreign");
  std::ofstream(dir + "/thesis.tex") << "years of work";
  EXPECT_THROW(write_report_dir(dir, {{"report.md", "x"}}), OutputError);
  EXPECT_THROW(check_report_dir(dir), OutputError);
  EXPECT_EQ(read_file(dir + "/thesis.tex"), "years of work");
  EXPECT_THROW(write_report_dir(dir + "/new", {{"../escape.md", "x"}}), OutputError);
  EXPECT_FALSE(fs::exists(dir + "/escape.md"));
}

TEST(ReportDir, SingleFileWriteIsAtomicToo) {
  const std::string dir = scratch("file_atomic");
  write_file_atomic(dir + "/sub/out.json", "one");
  write_file_atomic(dir + "/sub/out.json", "two");
  EXPECT_EQ(read_file(dir + "/sub/out.json"), "two");
  EXPECT_EQ(entries(dir + "/sub"), std::vector<std::string>{"out.json"});
}

}  // namespace
}  // namespace normcheck
