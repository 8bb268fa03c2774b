// Spreading a run over machines: shards partition the cells, merge joins them back into the
// same report a single run writes, and refuses inputs that do not make one run. The ctest
// binaries shard natively through GoogleTest's GTEST_TOTAL_SHARDS / GTEST_SHARD_INDEX.
#include <gtest/gtest.h>

#include <regex>
#include <set>

#include "reports/shard.hpp"
#include "cli/tests/test_util.hpp"

namespace normcheck {
namespace {

using nlohmann::json;
using namespace testing;  // cli, run, read_file, scratch (test_util.hpp)

const std::string kSelection = " --layer '^rms_norm$|^batch_norm_eval$' --cases 30 --seed 3";

TEST(Shard, ParsesIOverN) {
  EXPECT_EQ(parse_shard("2/8").index, 2);
  EXPECT_EQ(parse_shard("2/8").count, 8);
  EXPECT_THROW(parse_shard("8/8"), std::invalid_argument);
  EXPECT_THROW(parse_shard("1/0"), std::invalid_argument);
  EXPECT_THROW(parse_shard("-1/2"), std::invalid_argument);
  EXPECT_THROW(parse_shard("1of2"), std::invalid_argument);
}

TEST(Shard, ShardsPartitionTheCellsAndMergeGivesTheSingleRunReport) {
  const std::string dir = scratch("shards");
  ASSERT_EQ(run(cli() + " matrix" + kSelection + " --json " + dir + "/full.json").code, 0);
  std::string files;
  std::set<std::string> seen;
  std::size_t total = 0;
  for (int i = 0; i < 3; ++i) {
    const std::string f = dir + "/shard" + std::to_string(i) + ".json";
    const auto r = run(cli() + " matrix" + kSelection + " --shard " + std::to_string(i) + "/3 --json " + f);
    ASSERT_EQ(r.code, 0) << r.err;
    const json shard = json::parse(read_file(f));
    for (const auto& c : shard["cells"]) {
      const std::string id = c["row"].get<std::string>() + "/" + c["implementation"].get<std::string>() +
                             "/" + c["property"].get<std::string>();
      EXPECT_TRUE(seen.insert(id).second) << id << " is in two shards";
      ++total;
    }
    files += " " + f;
  }
  const auto m = run(cli() + " merge" + files + " --out " + dir + "/merged");
  ASSERT_EQ(m.code, 0) << m.err;
  const json full = json::parse(read_file(dir + "/full.json"));
  const json merged = json::parse(read_file(dir + "/merged/report.json"));
  EXPECT_EQ(total, full["cells"].size());
  ASSERT_EQ(merged["cells"].size(), full["cells"].size());
  for (std::size_t k = 0; k < full["cells"].size(); ++k) {
    const json& a = full["cells"][k];
    const json& b = merged["cells"][k];
    EXPECT_EQ(a["row"], b["row"]) << k;
    EXPECT_EQ(a["implementation"], b["implementation"]) << k;
    EXPECT_EQ(a["property"], b["property"]) << k;
    EXPECT_EQ(a["observed"], b["observed"]) << k;
    EXPECT_EQ(a["counterexample"], b["counterexample"]) << k << " (same seed: same cases)";
  }
  EXPECT_EQ(merged["merged_from"].size(), 3u);
  EXPECT_EQ(merged["shard"]["count"], 1);
  // the merged report.md has the single run's matrix, and merge prints it as the run did
  const auto single = run(cli() + " matrix" + kSelection + " --out " + dir + "/single");
  ASSERT_EQ(single.code, 0) << single.err;
  auto matrix_of = [](const std::string& md) {
    const auto at = md.find("## Matrix");
    return at == std::string::npos ? std::string() : md.substr(at, md.find("\n## ", at + 1) - at);
  };
  const std::string single_matrix = matrix_of(read_file(dir + "/single/report.md"));
  ASSERT_NE(single_matrix.find("| rms_norm |"), std::string::npos) << single_matrix;
  EXPECT_EQ(matrix_of(read_file(dir + "/merged/report.md")), single_matrix);
  EXPECT_EQ(m.out.substr(0, m.out.find("\n\n✓")), single.out.substr(0, single.out.find("\n\n✓")));
}

TEST(Shard, MergeRefusesInputsThatAreNotOneRun) {
  const std::string dir = scratch("merge_errors");
  for (int i = 0; i < 2; ++i)
    ASSERT_EQ(run(cli() + " matrix" + kSelection + " --shard " + std::to_string(i) + "/2 --json " + dir +
                  "/s" + std::to_string(i) + ".json").code, 0);
  ASSERT_EQ(run(cli() + " matrix --layer '^rms_norm$|^batch_norm_eval$' --cases 31 --seed 3 --shard 1/2 --json " +
                dir + "/other_cases.json").code, 0);
  ASSERT_EQ(run(cli() + " matrix" + kSelection + " --json " + dir + "/unsharded.json").code, 0);
  std::ofstream(dir + "/garbage.json") << "{ not json";
  std::ofstream(dir + "/other.json") << R"({"format": "normcheck-golden/1"})";
  const std::string s0 = dir + "/s0.json", s1 = dir + "/s1.json";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {s0, "missing shard 1/2"},
      {s0 + " " + s1 + " " + s1, "given twice"},
      {s0 + " " + dir + "/other_cases.json", "cases per cell 30 vs 31"},
      {s0 + " " + dir + "/unsharded.json", "shard count 2 vs 1"},
      {dir + "/unsharded.json " + dir + "/unsharded.json", "given twice"},
      {s0 + " " + dir + "/garbage.json", "not valid JSON"},
      {s0 + " " + dir + "/other.json", "not a normcheck matrix report"},
  };
  for (const auto& [args, reason] : cases) {
    const auto r = run(cli() + " merge " + args);
    EXPECT_EQ(r.code, 2) << args;
    EXPECT_NE(r.err.find(reason), std::string::npos) << args << "\nstderr: " << r.err;
  }
  // a truncated shard is caught by its cell count
  json truncated = json::parse(read_file(s1));
  truncated["cells"].erase(truncated["cells"].size() - 1);
  std::ofstream(dir + "/truncated.json") << truncated.dump();
  const auto r = run(cli() + " merge " + s0 + " " + dir + "/truncated.json");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("a complete one holds"), std::string::npos) << r.err;
  EXPECT_EQ(run(cli() + " merge " + s0 + " " + s1).code, 0);
}

// GoogleTest shards a test binary natively; ctest runs one test per process, so with ctest use
// `ctest -I start,,stride` instead (README).
TEST(Shard, GoogleTestShardingPartitionsTheCtestBinary) {
  const std::string binary = NORMCHECK_PROPERTY_TESTS;
  const std::string filter = " --gtest_filter='Registry.*:Regression.*:Validation.*'";
  std::set<std::string> all;
  {
    const auto r = run(binary + filter + " --gtest_list_tests");
    std::string suite;
    std::istringstream lines(r.out);
    for (std::string line; std::getline(lines, line);) {
      if (line.empty() || line.rfind("Running main", 0) == 0) continue;
      if (line[0] != ' ') suite = line;
      else all.insert(suite + line.substr(2, line.find(' ', 2) - 2));
    }
  }
  ASSERT_GE(all.size(), 3u);
  std::set<std::string> seen;
  for (int i = 0; i < 3; ++i) {
    const auto r = run("GTEST_TOTAL_SHARDS=3 GTEST_SHARD_INDEX=" + std::to_string(i) + " " + binary + filter);
    EXPECT_EQ(r.code, 0) << r.out;
    std::smatch m;
    std::string out = r.out;
    int ran = 0;
    while (std::regex_search(out, m, std::regex(R"(\[ RUN      \] (\S+))"))) {
      EXPECT_TRUE(seen.insert(m[1]).second) << m[1] << " ran in two shards";
      ++ran;
      out = m.suffix();
    }
    EXPECT_GT(ran, 0) << "shard " << i << " ran nothing";
  }
  EXPECT_EQ(seen, all);
}

}  // namespace
}  // namespace normcheck
