// Every failure carries a command that replays exactly that case: replaying shows the same
// counterexample, in-process, through the CLI, and in the ctest binary (RC_PARAMS).
#include <gtest/gtest.h>

#include "reports/report.hpp"
#include "cli/tests/test_util.hpp"

namespace normcheck {
namespace {

using nlohmann::json;
using testing::cli;
using testing::read_file;
using testing::run;
using testing::scratch;

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

TEST(Replay, TheCliReplayCommandShowsTheSameCounterexample) {
  const std::string dir = scratch("replay_cli");
  const auto r = run(cli() + " matrix --layer '^batch_norm_train$' --property '^padding_invariance$' "
                             "--implementation optimized --seed 11 --json " + dir + "/first.json");
  ASSERT_EQ(r.code, 0) << r.err;
  const json first = json::parse(read_file(dir + "/first.json"))["cells"].at(0);
  std::string command = first.at("replay").at("normcheck").get<std::string>();
  ASSERT_EQ(command.rfind("normcheck matrix ", 0), 0u) << command;
  command.replace(0, std::string("normcheck").size(), cli());
  const auto again = run(command + " --json " + dir + "/again.json");
  ASSERT_EQ(again.code, 0) << command << "\n" << again.err;
  const json replayed = json::parse(read_file(dir + "/again.json"))["cells"].at(0);
  EXPECT_EQ(replayed["counterexample"], first["counterexample"]);
  EXPECT_EQ(replayed["reproduce"], first["reproduce"]);
  // and it is the counterexample an in-process run with the same seed finds
  EXPECT_EQ(json::parse(to_json(run_cell(find_cell(kCell), options(11))).dump())["counterexample"],
            first["counterexample"]);
}

TEST(Replay, TheRcParamsFormReplaysInTheCtestBinary) {
  const CellResult first = run_cell(find_cell(kCell), options(11));
  std::string command = rc_params_command(first);
  const std::string binary = "normcheck_property_tests";
  const auto at = command.find(binary);
  ASSERT_NE(at, std::string::npos) << command;
  command.replace(at, binary.size(), NORMCHECK_PROPERTY_TESTS);
  const auto r = run(command);
  EXPECT_EQ(r.code, 0) << command << "\n" << r.out;
  EXPECT_NE(r.out.find("[  PASSED  ] 1 test"), std::string::npos) << "exactly the one cell ran:\n" << r.out;
  EXPECT_NE(r.out.find(std::string(kCell) + ": expected violated, observed violated in 1 cases"), std::string::npos)
      << "the replay runs the one minimal case:\n" << r.out;
  EXPECT_NE(r.out.find("RC_PARAMS=\"" + first.reproduce + "\""), std::string::npos)
      << "and shrinks to the same case:\n" << r.out;
}

}  // namespace
}  // namespace normcheck
