// Hostile golden files: `normcheck golden` on every file of tests/hostile/ (listed with what its
// reason must say in tests/hostile/EXPECTED) exits 2 with one line on stderr naming the case and
// the field — never a crash, a hang or a silent pass. In process, a RapidCheck property mutates
// valid golden cases and asserts a clean outcome: pass, a failure that is a comparison, or an
// input error with a one-line reason.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "properties/catalog.hpp"

namespace normcheck {
namespace {

namespace fs = std::filesystem;

struct CliResult {
  bool exited = false;  // false: killed by a signal (a crash)
  int code = -1;
  std::string out, err;
};

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

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
  r.err = slurp(err_path);
  std::remove(err_path.c_str());
  return r;
}

std::map<std::string, std::vector<std::string>> expectations() {
  std::map<std::string, std::vector<std::string>> m;
  std::ifstream f(std::string(NORMCHECK_HOSTILE_DIR) + "/EXPECTED");
  std::string line;
  while (std::getline(f, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> parts;
    std::stringstream s(line);
    std::string part;
    while (std::getline(s, part, '\t')) parts.push_back(part);
    m[parts.at(0)] = {parts.begin() + 1, parts.end()};
  }
  return m;
}

std::vector<std::string> hostile_files() {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(NORMCHECK_HOSTILE_DIR))
    if (e.path().extension() == ".json") names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
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

nlohmann::json golden_case(const std::string& op) {
  static const auto file = load_golden(default_golden_path());
  for (const auto& c : file["cases"])
    if (c["op"] == op) return c;
  throw std::runtime_error("no golden case for " + op);
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

// In process: every case of the corpus is an input error, never a pass or a failure.
TEST(HostileCases, AreInputErrorsInProcessToo) {
  for (const auto& name : hostile_files()) {
    nlohmann::json file;
    try {
      file = load_golden(std::string(NORMCHECK_HOSTILE_DIR) + "/" + name);
    } catch (const GoldenFileError&) {
      continue;  // a file-level error: covered by the CLI test
    }
    for (const auto& c : file["cases"])
      for (Impl impl : {Impl::reference, Impl::optimized}) {
        const auto o = check_golden_case(c, impl);
        EXPECT_TRUE(o.input_error()) << name << ": " << o.error;
        EXPECT_FALSE(o.passed) << name;
      }
  }
}

// ---------------------------------------------------------------------------------------------
// Mutated golden cases: a clean outcome, whatever the mutation.

nlohmann::json hostile_value() {
  using nlohmann::json;
  return *rc::gen::element<json>(json(nullptr), json(true), json("NaN"), json("1e-5"), json(0),
                                 json(-1), json(0.5), json(1e300), json(-1e300), json(1e6),
                                 json(1e9), json(3e38), json::array(), json::object(),
                                 json::array({json::array({1})}), json::array({nullptr}));
}

void mutate(nlohmann::json& c, const std::vector<std::string>& ops) {
  using nlohmann::json;
  std::vector<std::string> keys;
  for (auto it = c.begin(); it != c.end(); ++it) keys.push_back(it.key());
  const std::string key = *rc::gen::elementOf(keys);
  json& v = c[key];
  switch (*rc::gen::inRange(0, 7)) {
    case 0:
      c.erase(key);
      return;
    case 1:
      v = hostile_value();
      return;
    case 2:
      c["op"] = *rc::gen::elementOf(ops);
      return;
    default:
      break;
  }
  if (v.is_array() && !v.empty()) {
    const std::size_t i = *rc::gen::inRange<std::size_t>(0, v.size());
    switch (*rc::gen::inRange(0, 4)) {
      case 0:
        v.erase(v.size() - 1 - i % v.size());
        break;
      case 1:
        v.push_back(*rc::gen::inRange(-3, 4));
        break;
      case 2:
        v[i] = hostile_value();
        break;
      default:
        if (v[i].is_number()) v[i] = v[i].get<double>() * *rc::gen::element(-1.0, 1000.0, 1e30, 1e-30);
        break;
    }
  } else if (v.is_object() && !v.empty()) {
    std::vector<std::string> sub;
    for (auto it = v.begin(); it != v.end(); ++it) sub.push_back(it.key());
    v[*rc::gen::elementOf(sub)] = hostile_value();
  } else {
    v = hostile_value();
  }
}

bool starts_with(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }

TEST(GoldenMutation, CleanErrorOrPassNeverACrash) {
  std::vector<nlohmann::json> seeds;
  std::vector<std::string> ops;
  for (const auto& [op, fn] : golden_ops()) {
    ops.push_back(op);
    try {
      seeds.push_back(golden_case(op));
    } catch (const std::runtime_error&) {  // an op without a case in the file
    }
  }
  ASSERT_FALSE(seeds.empty());
  const bool ok = rc::check("a mutated golden case gives a clean outcome", [&] {
    auto c = *rc::gen::elementOf(seeds);
    const int k = *rc::gen::inRange(1, 4);
    for (int i = 0; i < k; ++i) mutate(c, ops);
    for (Impl impl : {Impl::reference, Impl::optimized}) {
      GoldenOutcome o;
      try {
        o = check_golden_case(c, impl);
      } catch (const std::exception& e) {
        RC_FAIL(std::string("check_golden_case threw: ") + e.what());
      }
      RC_LOG() << to_string(impl) << ": " << o.error << "\n";
      if (impl == Impl::optimized)
        RC_TAG(o.passed ? "passed" : o.input_error() ? "input error" : "numbers disagree");
      RC_ASSERT(o.passed || !o.error.empty());
      RC_ASSERT(o.error.find('\n') == std::string::npos);
      if (o.malformed)
        RC_ASSERT(o.error.find("field '") != std::string::npos ||
                  o.error.find("rejects the input") != std::string::npos);
      if (!o.passed && !o.input_error())  // a failure is a comparison of outputs, nothing else
        RC_ASSERT(starts_with(o.error, "y[") || starts_with(o.error, "new_running_mean[") ||
                  starts_with(o.error, "new_running_var["));
    }
  });
  EXPECT_TRUE(ok) << "the counterexample and its RC_PARAMS=\"reproduce=...\" are printed above";
}

}  // namespace
}  // namespace normcheck
