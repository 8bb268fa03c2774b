// A kernel that never returns must not hang a run: past the watchdog's hard limit the cell is an
// error, the run's reports are written with what it has, and the command exits 1.
#include <gtest/gtest.h>

#include <chrono>

#include <nlohmann/json.hpp>

#include "cli/tests/test_util.hpp"

namespace normcheck {
namespace {

using testing::read_file;
using testing::run;
using testing::scratch;

TEST(Watchdog, AHangingKernelIsAnErrorCellAndTheRunExitsOne) {
  const std::string path = scratch("watchdog") + "/matrix.json";
  const auto start = std::chrono::steady_clock::now();
  // rms_norm's cell runs first and finishes; hanging_layer_norm's optimized kernel never returns
  const auto r = run(std::string(NORMCHECK_HANGING) +
                     " matrix --layer '^(rms_norm|hanging_layer_norm)$' --property '^padding_invariance$' "
                     "--implementation optimized --cases 20 --seed 3 --watchdog 2 --json " + path);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(r.code, 1) << r.out << r.err;
  EXPECT_LT(seconds, 30) << "the watchdog must stop the run soon after its limit";
  EXPECT_NE(r.out.find("watchdog"), std::string::npos) << r.out;
  const auto j = nlohmann::json::parse(read_file(path));
  ASSERT_EQ(j["cells"].size(), 2u) << j.dump(1);
  EXPECT_EQ(j["cells"][0]["row"], "rms_norm");
  EXPECT_EQ(j["cells"][0]["observed"], "holds");
  EXPECT_EQ(j["cells"][1]["row"], "hanging_layer_norm");
  EXPECT_EQ(j["cells"][1]["observed"], "error");
  EXPECT_NE(j["cells"][1]["message"].get<std::string>().find("hard limit"), std::string::npos);
}

TEST(Watchdog, BudgetFlagsAreValidated) {
  for (const char* flag : {"--cell-budget 0", "--shrink-budget -1", "--watchdog 0"}) {
    const auto r = run(std::string(NORMCHECK_HANGING) + " matrix --layer '^rms_norm$' " + flag);
    EXPECT_EQ(r.code, 2) << flag << "\n" << r.err;
  }
}

}  // namespace
}  // namespace normcheck
