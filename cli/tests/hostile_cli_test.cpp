// Hostile golden files through the command line: `normcheck golden` on every file of
// properties/tests/hostile/ (listed with what its reason must say in EXPECTED) exits 2 with one
// line on stderr naming the case and the field — never a crash, a hang or a silent pass.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "cli/tests/test_util.hpp"
#include "properties/tests/hostile_corpus.hpp"

namespace normcheck {
namespace {

namespace fs = std::filesystem;
using hostile::expectations;
using hostile::golden_case;
using hostile::hostile_files;
using testing::read_file;

struct CliResult {
  bool exited = false;  // false: killed by a signal (a crash)
  int code = -1;
  std::string out, err;
};

std::string quote(const std::string& s) { return "'" + s + "'"; }

// Runs `normcheck golden <args>` with a 60 s limit (exit 124 would mean a hang).
CliResult run_golden(const std::string& args) {
  static int n = 0;
  const std::string err_path = ::testing::TempDir() + "/normcheck_hostile_" +
                               std::to_string(::getpid()) + "_" + std::to_string(n++) + ".err";
  const std::string cmd = "timeout 60 " + quote(NORMCHECK_CLI) + " golden " + args + " 2>" +
                          quote(err_path);
  CliResult r;
  FILE* p = popen(cmd.c_str(), "r");
  char buf[4096];
  while (std::size_t k = fread(buf, 1, sizeof buf, p)) r.out.append(buf, k);
  const int status = pclose(p);
  r.exited = WIFEXITED(status);
  r.code = r.exited ? WEXITSTATUS(status) : -1;
  r.err = read_file(err_path);
  std::remove(err_path.c_str());
  return r;
}

TEST(HostileCorpus, EveryFileHasAnExpectationAndEveryExpectationAFile) {
  const auto exp = expectations();
  const auto files = hostile_files();
  EXPECT_GE(files.size(), 30u);
  for (const auto& f : files) EXPECT_TRUE(exp.count(f)) << f << " is not listed in EXPECTED";
  for (const auto& [f, parts] : exp) {
    EXPECT_TRUE(fs::exists(std::string(NORMCHECK_HOSTILE_DIR) + "/" + f)) << f;
    EXPECT_FALSE(parts.empty()) << f;
  }
}

class HostileFile : public ::testing::TestWithParam<std::string> {};

TEST_P(HostileFile, ExitsTwoWithOneLineNamingTheCaseAndField) {
  const std::string name = GetParam();
  const auto exp = expectations();
  ASSERT_TRUE(exp.count(name)) << name << " is not listed in EXPECTED";
  const auto r = run_golden(quote(std::string(NORMCHECK_HOSTILE_DIR) + "/" + name));
  ASSERT_TRUE(r.exited) << "crashed; stderr: " << r.err;
  ASSERT_NE(r.code, 124) << "hung (killed after 60 s)";
  EXPECT_EQ(r.code, 2) << "stdout: " << r.out << "\nstderr: " << r.err;
  ASSERT_FALSE(r.err.empty());
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "not exactly one line: " << r.err;
  for (const auto& part : exp.at(name))
    EXPECT_NE(r.err.find(part), std::string::npos) << "reason lacks \"" << part << "\": " << r.err;
}

INSTANTIATE_TEST_SUITE_P(Golden, HostileFile, ::testing::ValuesIn(hostile_files()),
                         [](const auto& info) {
                           std::string s = info.param.substr(0, info.param.size() - 5);
                           for (auto& c : s)
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           return s;
                         });

TEST(HostileCli, MissingFileAndDirectoryExitTwo) {
  for (const std::string& path : {std::string("/no/such/golden.json"), std::string(NORMCHECK_HOSTILE_DIR)}) {
    const auto r = run_golden(quote(path));
    ASSERT_TRUE(r.exited);
    EXPECT_EQ(r.code, 2) << path;
    EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << r.err;
    EXPECT_NE(r.err.find(path), std::string::npos) << r.err;
  }
}

std::string write_temp(const std::string& name, const nlohmann::json& j) {
  const std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream(path) << j.dump();
  return path;
}

// The other two exit codes, for contrast: numbers that disagree are a failure (1), not an input
// error; a good case passes (0); an input error wins over a failure in the same run (2).
TEST(HostileCli, DisagreeingNumbersExitOneAndGoodCasesZero) {
  const auto good = golden_case("layer_norm");
  auto bad = good;
  bad["y"][3] = bad["y"][3].get<double>() + 0.5;
  const auto ok = run_golden(quote(write_temp("normcheck_good.json", {{"cases", {good}}})));
  EXPECT_EQ(ok.code, 0) << ok.out << ok.err;
  const auto fail = run_golden(quote(write_temp("normcheck_bad.json", {{"cases", {good, bad}}})));
  EXPECT_EQ(fail.code, 1) << fail.out << fail.err;
  EXPECT_NE(fail.out.find("1 passed, 1 failed"), std::string::npos) << fail.out;
  EXPECT_TRUE(fail.err.empty()) << fail.err;
  auto unknown = good;
  unknown["op"] = "no_such_op";
  const auto both =
      run_golden(quote(write_temp("normcheck_mixed.json", {{"cases", {good, bad, unknown}}})));
  EXPECT_EQ(both.code, 2) << both.out << both.err;
  EXPECT_NE(both.out.find("1 passed, 1 failed, 1 not checked"), std::string::npos) << both.out;
}

}  // namespace
}  // namespace normcheck
