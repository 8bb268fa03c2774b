// Every failure carries a command that replays exactly that case: replaying shows the same
// counterexample, in-process, through the CLI, and in the ctest binary (RC_PARAMS).
#include <gtest/gtest.h>

#include "reports/report.hpp"
#include "cli/tests/test_util.hpp"

namespace normcheck {
namespace {

using nlohmann::json;
using namespace testing;  // cli, run, read_file, scratch (test_util.hpp)

const char* kCell = "batch_norm_train/optimized/padding_invariance";  // expected ✗

Cell find_cell(const std::string& id) {
  for (const auto& c : all_cells())
    if (c.id() == id) return c;
  throw std::invalid_argument("no cell " + id);
}

RunOptions options(uint64_t seed) {
  RunOptions o;
  o.seed = seed;
  o.cases = 100;
  o.use_rc_params_reproduce = false;
  return o;
}

TEST(Replay, InProcessReplayShowsTheSameCounterexample) {
  const Cell cell = find_cell(kCell);
  const CellResult first = run_cell(cell, options(11));
  ASSERT_EQ(first.observed, "violated");
  ASSERT_FALSE(first.reproduce.empty());
  RunOptions replay = options(999);  // the seed does not matter: the reproduce string does
  replay.reproduce = first.reproduce;
  const CellResult again = run_cell(cell, replay);
  EXPECT_EQ(again.observed, "violated");
  EXPECT_EQ(again.cases, 1) << "a replay runs the one minimal case";
  EXPECT_EQ(again.counterexample, first.counterexample);
  EXPECT_EQ(again.reproduce, first.reproduce);
}

// The minimal counterexample block of a printed section (```text … ```).
std::string counterexample_block(const std::string& text) {
  const auto at = text.find("**Minimal counterexample**");
  if (at == std::string::npos) return "";
  const auto open = text.find("```text\n", at), close = text.find("```\n", text.find("```text\n", at) + 8);
  return open == std::string::npos || close == std::string::npos ? "" : text.substr(open, close - open);
}

TEST(Replay, TheCliReplayCommandPastedAsItIsShowsTheSameCounterexample) {
  const std::string dir = scratch("replay_cli");
  const auto r = run(cli() + " matrix --layer '^batch_norm_train$' --property '^padding_invariance$' "
                             "--implementation optimized --seed 11 --out " + dir + "/first");
  ASSERT_EQ(r.code, 0) << r.err;
  const json first = json::parse(read_file(dir + "/first/report.json"))["cells"].at(0);
  const std::string command = first.at("replay").at("normcheck").get<std::string>();
  // it names the program that ran the cell, as it was started
  ASSERT_EQ(command.rfind(cli() + " matrix ", 0), 0u) << command;
  const auto again = run(command + " --json " + dir + "/again.json");
  ASSERT_EQ(again.code, 0) << command << "\n" << again.err;
  const json replayed = json::parse(read_file(dir + "/again.json"))["cells"].at(0);
  EXPECT_EQ(replayed["counterexample"], first["counterexample"]);
  EXPECT_EQ(replayed["reproduce"], first["reproduce"]);
  // and it is the counterexample an in-process run with the same seed finds
  EXPECT_EQ(json::parse(to_json(run_cell(find_cell(kCell), options(11))).dump())["counterexample"],
            first["counterexample"]);
  // --reproduce prints the section on the terminal: the counterexample as `show` prints it from
  // the report (the same text report.md and report.html have)
  const std::string block = counterexample_block(again.out);
  ASSERT_FALSE(block.empty()) << "--reproduce prints the counterexample:\n" << again.out;
  EXPECT_NE(block.find("pair 1 of "), std::string::npos) << block;
  const auto shown = run(cli() + " show " + kCell + " --report " + dir + "/first");
  ASSERT_EQ(shown.code, 0) << shown.err;
  EXPECT_EQ(counterexample_block(shown.out), block);
  EXPECT_NE(again.out.find("1 cell: 1 as expected, 0 surprises"), std::string::npos) << again.out;
}

TEST(Replay, TheTestBinaryReplayCommandPastedAsItIsReplaysInTheCtestBinary) {
  const CellResult first = run_cell(find_cell(kCell), options(11));
  const std::string command = rc_params_command(first);
  // the built-in cells live in normcheck_property_tests; this test binary finds it in the build tree
  ASSERT_NE(command.find("properties/normcheck_property_tests --gtest_filter="), std::string::npos) << command;
  const auto r = run(command);
  EXPECT_EQ(r.code, 0) << command << "\n" << r.out;
  EXPECT_NE(r.out.find("[  PASSED  ] 1 test"), std::string::npos) << "exactly the one cell ran:\n" << r.out;
  EXPECT_NE(r.out.find(std::string(kCell) + ": expected violated, observed violated in 1 case "), std::string::npos)
      << "the replay runs the one minimal case:\n" << r.out;
  EXPECT_NE(r.out.find("RC_PARAMS=\"" + first.reproduce + "\""), std::string::npos)
      << "and shrinks to the same case:\n" << r.out;
}

}  // namespace
}  // namespace normcheck
