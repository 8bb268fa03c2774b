// The reports and the command line: what a user reads must match the registries.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "reports/report.hpp"

namespace normcheck {
namespace {

std::string read_file(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// Runs a command, returns its exit code and stdout.
std::pair<int, std::string> run(const std::string& cmd) {
  std::string out;
  FILE* p = popen((cmd + " 2>/dev/null").c_str(), "r");
  char buf[4096];
  while (std::size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  const int status = pclose(p);
  return {WEXITSTATUS(status), out};
}

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

TEST(Cli, ListNamesEveryRowAndProperty) {
  const auto [code, out] = run(std::string(NORMCHECK_CLI) + " list");
  EXPECT_EQ(code, 0);
  for (const auto& c : all_cells()) {
    EXPECT_NE(out.find(c.row_name), std::string::npos) << c.row_name;
    EXPECT_NE(out.find(c.prop.id), std::string::npos) << c.prop.id;
  }
}

TEST(Cli, UsageErrorsExitWithTwo) {
  EXPECT_EQ(run(std::string(NORMCHECK_CLI) + " matrix --cases 0").first, 2);
  EXPECT_EQ(run(std::string(NORMCHECK_CLI) + " matrix --layer no_such_layer").first, 2);
  EXPECT_EQ(run(std::string(NORMCHECK_CLI) + " golden /no/such/file.json").first, 2);
  EXPECT_EQ(run(std::string(NORMCHECK_CLI) + " frobnicate").first, 2);
}

TEST(Cli, MatrixJsonHasTheContractFields) {
  const std::string path = ::testing::TempDir() + "/normcheck_cli_matrix.json";
  const auto [code, out] = run(std::string(NORMCHECK_CLI) +
                               " matrix --layer '^batch_norm_train$' --property 'batch_independence|global_scale' "
                               "--cases 50 --seed 7 --json " + path);
  EXPECT_EQ(code, 0) << out;
  const auto j = nlohmann::json::parse(read_file(path));
  ASSERT_EQ(j["cells"].size(), 4u);
  for (const auto& c : j["cells"]) {
    for (const char* k : {"layer", "mode", "implementation", "property", "expected", "observed",
                          "cases", "max_deviation", "counterexample", "reproduce"})
      EXPECT_TRUE(c.contains(k)) << k;
    EXPECT_EQ(c["mode"], "train");
    if (c["property"] == "batch_independence") {
      EXPECT_EQ(c["observed"], "violated");
      EXPECT_FALSE(c["counterexample"].is_null());
      EXPECT_EQ(c["reproduce"].get<std::string>().rfind("reproduce=", 0), 0u);
    } else {
      EXPECT_EQ(c["observed"], "holds");
    }
  }
}

TEST(Cli, GoldenPassesEveryNormCaseAndACorruptedCopyFailsNamingTheCase) {
  auto file = nlohmann::json::parse(read_file(std::string(NORMCHECK_SOURCE_DIR) + "/golden/pytorch_golden.json"));
  auto& cases = file["cases"];
  // keep the ops this build knows (attention ops may be registered by another module)
  nlohmann::json known = nlohmann::json::array();
  for (const auto& c : cases)
    if (golden_op_known(c["op"].get<std::string>())) known.push_back(c);
  ASSERT_GE(known.size(), 68u) << "every norm op of the golden file must be known";
  file["cases"] = known;
  const std::string good = ::testing::TempDir() + "/golden_known.json";
  write_file_atomic(good, file.dump());
  const auto [code, out] = run(std::string(NORMCHECK_CLI) + " golden " + good);
  EXPECT_EQ(code, 0) << out;
  EXPECT_NE(out.find(std::to_string(known.size()) + " passed, 0 failed"), std::string::npos) << out;

  auto& victim = file["cases"][20];
  victim["y"][3] = victim["y"][3].get<double>() + 0.01;
  const std::string bad = ::testing::TempDir() + "/golden_corrupted.json";
  write_file_atomic(bad, file.dump());
  const auto [bad_code, bad_out] = run(std::string(NORMCHECK_CLI) + " golden " + bad);
  EXPECT_EQ(bad_code, 1) << bad_out;
  EXPECT_NE(bad_out.find(victim["id"].get<std::string>()), std::string::npos) << bad_out;
  EXPECT_NE(bad_out.find("y["), std::string::npos) << bad_out;
  EXPECT_NE(bad_out.find(std::to_string(known.size() - 1) + " passed, 1 failed"), std::string::npos) << bad_out;
}

}  // namespace
}  // namespace normcheck
