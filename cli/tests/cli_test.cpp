// The command line: what a user types and reads must match the registries, and it must behave
// like a CI tool (help, seeds, progress, exit codes 0/1/2 with a one-line reason).
#include <gtest/gtest.h>

#include <filesystem>
#include <regex>
#include <tuple>

#include "norms/kernels_api.hpp"
#include "reports/report.hpp"
#include "cli/tests/test_util.hpp"

namespace normcheck {
namespace {

using namespace testing;  // cli, run, read_file, scratch (test_util.hpp)

TEST(Cli, ListNamesEveryRowAndProperty) {
  const auto r = run(cli() + " list");
  EXPECT_EQ(r.code, 0);
  for (const auto& c : all_cells()) {
    // norm rows are listed by name, attention and block rows by their full name
    EXPECT_NE(r.out.find(c.info.row.name), std::string::npos) << c.info.row.name;
    EXPECT_NE(r.out.find(c.info.prop.id), std::string::npos) << c.info.prop.id;
  }
}

TEST(Cli, EverySubcommandHasHelp) {
  for (const std::string sub : {"list", "matrix", "show", "merge", "golden", "mutants"}) {
    const auto r = run(cli() + " " + sub + " --help");
    EXPECT_EQ(r.code, 0) << sub;
    EXPECT_NE(r.out.find("Usage"), std::string::npos) << sub;
  }
  const auto m = run(cli() + " matrix --help");
  for (const char* opt : {"--cases", "--seed", "--threads", "--layer", "--property",
                          "--implementation", "--shard", "--reproduce", "--out", "Exit codes"})
    EXPECT_NE(m.out.find(opt), std::string::npos) << opt;
  EXPECT_EQ(run(cli() + " --version").code, 0);
}

TEST(Cli, ListWriteRegeneratesTheTablesOfAFile) {
  const std::string readme = read_file(std::string(NORMCHECK_SOURCE_DIR) + "/README.md");
  const std::string path = scratch("list_write") + "/README.md";
  std::string drifted = readme;
  const std::string from = "| rms_norm | ✓ |", to = "| rms_norm | ✗ |";
  ASSERT_NE(drifted.find(from), std::string::npos);
  drifted.replace(drifted.find(from), from.size(), to);
  std::ofstream(path) << drifted;
  const auto r = run(cli() + " list --write " + path);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("rewritten"), std::string::npos) << r.out;
  EXPECT_EQ(read_file(path), with_generated_tables(drifted));
  EXPECT_EQ(read_file(path).find(to), std::string::npos);
  const auto again = run(cli() + " list --write " + path);
  EXPECT_NE(again.out.find("up to date"), std::string::npos) << again.out;
  std::ofstream(path) << "no markers";
  const auto bad = run(cli() + " list --write " + path);
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.err.find("matrix:begin"), std::string::npos) << bad.err;
}

TEST(Cli, UsageErrorsExitWithTwoAndOneLineReason) {
  const std::string other = scratch("usage_other");
  std::ofstream(other + "/notes.txt") << "not a report";
  // the command line, what the one line must say, and the help it points to ("" for none: an
  // input error about a file, not about the command line)
  const std::vector<std::tuple<std::string, std::string, std::string>> cases = {
      {"matrix --cases 0", "--cases: '0' is not a whole number from 1 to", "normcheck matrix --help"},
      {"matrix --cases abc", "--cases: 'abc' is not a whole number", "normcheck matrix --help"},
      {"matrix --seed -1", "--seed: '-1' is not a whole number from 0 to 18446744073709551615", "normcheck matrix --help"},
      {"matrix --seed 18446744073709551616", "--seed: '18446744073709551616' is not a whole number", "normcheck matrix --help"},
      {"matrix --threads 2x", "--threads: '2x'", "normcheck matrix --help"},
      {"mutants --seed -1", "--seed: '-1'", "normcheck mutants --help"},
      {"matrix --implementation fast", "--implementation", "normcheck matrix --help"},
      {"matrix --layer no_such_layer", "no cell matches", "normcheck matrix --help"},
      {"matrix --layer '('", "--layer '(': invalid regular expression", "normcheck matrix --help"},
      {"matrix --shard 3/3 --seed 1", "0 ≤ I < N", "normcheck matrix --help"},
      {"matrix --shard two --seed 1", "expected I/N", "normcheck matrix --help"},
      {"matrix --shard 0/2", "needs --seed", "normcheck matrix --help"},
      {"matrix --layer batch_norm --reproduce reproduce=AAAA", "replays one cell", "normcheck matrix --help"},
      {"matrix --layer '^layer_norm$' --property '^padding_invariance$' --implementation reference "
       "--reproduce 'reproduce=BAjYhR3Yo9lbvJXbfRnchlmbv8Gc0lWbppXZk9yc0JXZh1Waud2XlFXdpZXYsVmbjVWxSQbFNvTDU3q5ix1SGjINZDWzLWay208t1EJTY5josRAADoAAAAwBBAAAAAAAAA'",
       "not for cell", "normcheck matrix --help"},
      {"matrix --layer '^layer_norm$' --out " + other, "refusing to replace", ""},
      // an --out that cannot be written fails before the run, not after it
      {"matrix --out /proc/x", "--out /proc/x: cannot write in /proc", ""},
      {"matrix --json /proc/x/y.json", "/proc/x/y.json: cannot write in /proc", ""},
      {"golden /no/such/file.json", "cannot open", ""},
      {"golden --layer no_such_layer", "no row with a golden op matches --layer", "normcheck golden --help"},
      {"merge /no/such/file.json", "cannot open", ""},
      {"merge", "files is required", "normcheck merge --help"},
      {"show --report /no/such/dir", "cannot open", ""},
      {"frobnicate", "unknown subcommand 'frobnicate'; the subcommands are list, matrix, show", "normcheck --help"},
      {"", "A subcommand is required", "normcheck --help"},
  };
  for (const auto& [args, reason, help] : cases) {
    const auto r = run(cli() + " " + args);
    EXPECT_EQ(r.code, 2) << args << "\n" << r.err;
    EXPECT_NE(r.err.find(reason), std::string::npos) << args << "\nstderr: " << r.err;
    if (!help.empty()) {
      EXPECT_NE(r.err.find("(see " + help + ")"), std::string::npos) << args << "\nstderr: " << r.err;
    }
    // "normcheck: reason", or "normcheck golden: reason" for a golden input error; nothing else
    // (no run started: the start line would be on stderr)
    const std::string prefix = args.rfind("golden /", 0) == 0 ? "normcheck golden: " : "normcheck: ";
    EXPECT_EQ(r.err.rfind(prefix, 0), 0u) << args << ": one line of reason, got:\n" << r.err;
    EXPECT_EQ(testing::count(r.err, "\n"), 1u) << args << ": one line of reason, got:\n" << r.err;
  }
  EXPECT_TRUE(std::filesystem::exists(other + "/notes.txt")) << "a refused --out must stay untouched";
}

TEST(Cli, SingularAndPluralAreRight) {
  const auto r = run(cli() + " matrix --layer '^batch_norm_train$' --property '^padding_invariance$' "
                             "--implementation optimized --cases 1 --search-factor 1 --seed 1");
  EXPECT_NE(r.out.find("1 cell: "), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("1 case per cell"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("optimized: 1 cell, "), std::string::npos) << r.err;
  for (const std::string& out : {r.out, r.err})
    for (const char* wrong : {"1 cells", "1 cases", "1 values", "1 surprises", "1 errors"})
      EXPECT_EQ(out.find(std::string(" ") + wrong), std::string::npos) << wrong << " in\n" << out;
}

TEST(Cli, ColourOnATerminalUnlessNoColor) {
  if (run("command -v script").code != 0) GTEST_SKIP() << "script(1) is needed to run under a terminal";
  const std::string matrix = cli() + " matrix --layer '^rms_norm$' --property '^padding_invariance$' --cases 5 --seed 1";
  // colour is SGR (ESC [ … m); the progress line on a terminal uses ESC [K, which is not colour
  const std::regex sgr("\033\\[[0-9;]*m");
  const auto tty = run("script -qec \"" + matrix + "\" /dev/null");
  EXPECT_TRUE(std::regex_search(tty.out, sgr)) << "colour on a terminal:\n" << tty.out;
  const auto no_colour = run("NO_COLOR=1 script -qec \"" + matrix + "\" /dev/null");
  EXPECT_NE(no_colour.out.find("2 cells: 2 as expected"), std::string::npos) << no_colour.out;
  EXPECT_FALSE(std::regex_search(no_colour.out, sgr)) << "NO_COLOR:\n" << no_colour.out;
  EXPECT_FALSE(std::regex_search(run(matrix).out, sgr)) << "no colour into a pipe";
  EXPECT_TRUE(std::regex_search(run(matrix + " --color always").out, sgr));
}

TEST(Cli, ExitCodeOneOnASurprise) {
  // one case is far too few to find batch_norm [eval]'s token_scale counterexample (the first
  // case RapidCheck draws is the smallest): "expected violation not found" is a surprise
  const auto r = run(cli() + " matrix --layer '^batch_norm_eval$' --property '^token_scale_invariance$' "
                             "--implementation reference --cases 1 --search-factor 1 --seed 1");
  EXPECT_EQ(r.code, 1) << r.out << r.err;
  EXPECT_NE(r.out.find("SURPRISE"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("expected violation not found"), std::string::npos) << r.out;
}

TEST(Cli, FreshSeedIsPrintedAndProgressGoesToStderr) {
  const auto r = run(cli() + " matrix --layer '^rms_norm$' --property 'padding|batch_ind' --cases 20");
  ASSERT_EQ(r.code, 0) << r.err;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.err, m, std::regex("seed ([0-9]+)"))) << r.err;
  EXPECT_NE(r.out.find("seed " + m[1].str() + ")"), std::string::npos) << "summary repeats the seed:\n" << r.out;
  // a line per finished row on stderr (not a terminal here), nothing of it on stdout
  EXPECT_NE(r.err.find("rms_norm · reference: 2 cells, all as expected"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("rms_norm · optimized: 2 cells, all as expected"), std::string::npos) << r.err;
  EXPECT_EQ(r.out.find("all as expected"), std::string::npos);
  EXPECT_EQ(r.err.find("Using configuration"), std::string::npos) << "RapidCheck's own seed line must not appear";
}

TEST(Cli, WorkersAreForkedBeforeTheWatchdogThreadStarts) {
  // the program runs no other thread as it forks its workers (reports/workers.hpp): had the
  // watchdog's thread started first, the run would say so on stderr
  const auto r = run(cli() + " matrix --layer '^rms_norm$' --property 'padding|batch_ind' --cases 20 --jobs 2");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err.find("the workers were forked while"), std::string::npos) << r.err;
}

TEST(Cli, MatrixJsonHasTheContractFields) {
  const std::string path = scratch("contract") + "/matrix.json";
  const auto r = run(cli() + " matrix --layer '^batch_norm_train$' --property 'batch_independence|global_scale' "
                             "--cases 50 --seed 7 --threads 2 --json " + path);
  EXPECT_EQ(r.code, 0) << r.out;
  const auto j = nlohmann::json::parse(read_file(path));
  EXPECT_EQ(j["format"], kMatrixFormat);
  EXPECT_EQ(j["seed"], 7);
  EXPECT_EQ(j["cases_per_cell"], 50);
  EXPECT_EQ(j["threads"], 2);
  EXPECT_EQ(j["versions"]["normcheck"], NORMCHECK_EXPECTED_VERSION);
  for (const char* k : {"compiler", "rapidcheck", "eigen"}) EXPECT_TRUE(j["versions"].contains(k)) << k;
  EXPECT_GT(j["seconds"].get<double>(), 0);
  ASSERT_EQ(j["cells"].size(), 4u);
  for (const auto& c : j["cells"]) {
    for (const char* k : {"layer", "mode", "implementation", "property", "expected", "observed",
                          "cases", "max_deviation", "counterexample", "reproduce", "seconds"})
      EXPECT_TRUE(c.contains(k)) << k;
    EXPECT_EQ(c["mode"], "train");
    if (c["property"] == "batch_independence") {
      EXPECT_EQ(c["observed"], "violated");
      EXPECT_FALSE(c["counterexample"].is_null());
      EXPECT_EQ(c["reproduce"].get<std::string>().rfind("reproduce=", 0), 0u);
      EXPECT_NE(c["replay"]["normcheck"].get<std::string>().find("--reproduce"), std::string::npos);
    } else {
      EXPECT_EQ(c["observed"], "holds");
    }
  }
}

TEST(Cli, TheReportNamesTheKernelPathThatRan) {
  // the built-in optimized kernels' bits depend on the instruction-set path: the report says
  // which one ran — this process's path without NORMCHECK_KERNEL_PATH, the one it names
  // otherwise (avx2 only where the CPU has it), as the kernel_path_*_matrix tests rely on
  __builtin_cpu_init();
  const bool has_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  for (const std::string asked : {"", "avx2", "baseline"}) {
    const std::string path = scratch("kernel_path" + asked) + "/matrix.json";
    const auto r = run((asked.empty() ? "" : "NORMCHECK_KERNEL_PATH=" + asked + " ") + cli() +
                       " matrix --layer '^layer_norm$' --property 'batch_independence' --cases 10 "
                       "--seed 3 --json " + path);
    ASSERT_EQ(r.code, 0) << r.err;
    const auto j = nlohmann::json::parse(read_file(path));
    ASSERT_TRUE(j["environment"].contains("kernel_path")) << j["environment"].dump();
    const std::string ran = j["environment"]["kernel_path"];
    if (asked.empty())
      EXPECT_EQ(ran, to_string(kernel_path()));
    else
      EXPECT_EQ(ran, asked == "avx2" && !has_avx2 ? "baseline" : asked);
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
  // `normcheck golden` on the file written under scratch/NAME
  const auto golden = [&](const std::string& name) {
    const std::string path = scratch(name) + "/" + name + ".json";
    write_file_atomic(path, file.dump());
    return run(cli() + " golden " + path);
  };
  const auto good = golden("golden_known");
  EXPECT_EQ(good.code, 0) << good.out;
  EXPECT_NE(good.out.find(std::to_string(known.size()) + " passed, 0 failed"), std::string::npos)
      << good.out;

  auto& victim = file["cases"][20];
  victim["y"][3] = victim["y"][3].get<double>() + 0.01;
  const auto bad = golden("golden_corrupted");
  const std::string& bad_out = bad.out;
  EXPECT_EQ(bad.code, 1) << bad_out;
  EXPECT_NE(bad_out.find(victim["id"].get<std::string>()), std::string::npos) << bad_out;
  EXPECT_NE(bad_out.find("y["), std::string::npos) << bad_out;
  EXPECT_NE(bad_out.find(std::to_string(known.size() - 1) + " passed, 1 failed"), std::string::npos) << bad_out;
}

TEST(Cli, OutWritesTheThreeReportFiles) {
  const std::string dir = scratch("out") + "/report";
  const auto r = run(cli() + " matrix --layer '^batch_norm_train$' --property '^padding' --cases 30 --seed 2 --out " + dir);
  ASSERT_EQ(r.code, 0) << r.err;
  for (const char* f : {"report.md", "report.json", "report.html"})
    EXPECT_GT(std::filesystem::file_size(dir + "/" + f), 100u) << f;
  // and replaces them on the next run
  const auto again = run(cli() + " matrix --layer '^batch_norm_train$' --property '^padding' --cases 30 --seed 3 --out " + dir);
  ASSERT_EQ(again.code, 0) << again.err;
  EXPECT_EQ(nlohmann::json::parse(read_file(dir + "/report.json"))["seed"], 3);
}

TEST(Cli, GoldenOutWritesAGoldenReport) {
  const std::string dir = scratch("golden") + "/golden";
  const auto r = run(cli() + " golden " + std::string(NORMCHECK_SOURCE_DIR) +
                     "/golden/pytorch_golden.json --implementation reference --out " + dir);
  EXPECT_TRUE(r.code == 0 || r.code == 1) << r.err;
  const auto j = nlohmann::json::parse(read_file(dir + "/report.json"));
  EXPECT_EQ(j["format"], "normcheck-golden/1");
  EXPECT_EQ(j["summary"]["passed"].get<int>() + j["summary"]["failed"].get<int>(), j["summary"]["cases"].get<int>());
  EXPECT_EQ(r.code == 0, j["summary"]["failed"] == 0);
  EXPECT_NE(read_file(dir + "/report.md").find("| layer_norm |"), std::string::npos);
  EXPECT_NE(read_file(dir + "/report.html").find("<svg id=\"golden\""), std::string::npos);
}

}  // namespace
}  // namespace normcheck
