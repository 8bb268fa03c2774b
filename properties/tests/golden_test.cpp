// Golden conformance against PyTorch (golden/pytorch_golden.json and the block's
// golden/pytorch_block_golden.json), one ctest test per (case, implementation), for every op the
// registries know; and the checkers can fail.
#include <gtest/gtest.h>

#include "properties/catalog.hpp"
#include "properties/tests/golden_case_param.hpp"

namespace normcheck {
namespace {

using GoldenParam = test::GoldenCaseParam;

std::vector<nlohmann::json> golden_files() {
  return {load_golden(default_golden_path()), load_golden(default_block_golden_path())};
}

class Golden : public ::testing::TestWithParam<GoldenParam> {};

TEST_P(Golden, MatchesPyTorch) {
  EXPECT_TRUE(test::passed(check_golden_case(GetParam().c, GetParam().impl)));
}

// Every case of both files whose op a registry knows (none when the filter names other tests).
INSTANTIATE_TEST_SUITE_P(PyTorch, Golden,
                         ::testing::ValuesIn(test::golden_case_params(
                             "PyTorch/Golden.", golden_files,
                             [](const nlohmann::json& c) { return golden_op_known(c.value("op", "")); })),
                         test::golden_case_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(Golden);

// The parameters are skipped only for a filter that cannot select the suite's tests.
TEST(GoldenParams, AreSkippedOnlyWhenTheFilterCannotSelectThem) {
  const std::string saved = GTEST_FLAG_GET(filter);
  const auto selects = [](const char* filter) {
    GTEST_FLAG_SET(filter, filter);
    return test::filter_may_select("PyTorch/Golden.");
  };
  EXPECT_FALSE(selects("Matrix/MatrixCell.AsExpected/layer_norm_reference_batch_independence"));
  EXPECT_FALSE(selects("PyTorch/GoldenGrad.MatchesPyTorchAutograd/x_optimized"));
  EXPECT_FALSE(selects("A.B:C.D-PyTorch/Golden.*"));
  EXPECT_TRUE(selects("PyTorch/Golden.MatchesPyTorch/layer_norm_1_optimized"));
  EXPECT_TRUE(selects("A.B:PyTorch/Golden.MatchesPyTorch/x_reference-C.D"));
  EXPECT_TRUE(selects("Py*"));
  EXPECT_TRUE(selects("*"));
  EXPECT_TRUE(selects("-Matrix/*"));
  EXPECT_TRUE(selects(""));
  GTEST_FLAG_SET(filter, saved);
}

nlohmann::json first_case(const std::string& op) { return test::first_case(golden_files(), op, "golden case"); }

TEST(GoldenBlock, EveryCaseOfTheFileIsChecked) {
  const auto file = load_golden(default_block_golden_path());
  ASSERT_EQ(file["cases"].size(), 24u);
  for (const auto& c : file["cases"]) EXPECT_TRUE(golden_op_known(c["op"].get<std::string>())) << c["id"];
}

// The block's golden cases pin its wiring: a block whose residual stream starts from N1(x)
// instead of x (the built-in block fed N1(x): every residual carries the normalized tensor)
// fails them on both implementations, in both placements.
TEST(GoldenBlock, ABlockWiredWrongFails) {
  auto wrong = [](const LayerEntry& norm, Impl impl, Mode mode, const BlockWeights& w, BlockState& st,
                  const Batch& x, bool) {
    Output a;
    norm.forward(impl)(x, w.norm1, mode, &st.norm1, a);
    Batch n1 = x;
    for (std::size_t i = 0; i < a.size(); ++i) n1.x[i] = float(a[i]);
    return block_forward(norm, impl, mode, w, st, n1, false);
  };
  const BlockEntry broken{.name = "block_residual_from_n1", .forward = wrong, .origin = "mutant"};
  // the file outlives the loop: a range over a member of a temporary dangles (C++20)
  const auto file = load_golden(default_block_golden_path());
  for (const auto& c : file["cases"])
    for (Impl impl : {Impl::reference, Impl::optimized}) {
      const auto o = check_block_golden_case(c, impl, broken);
      EXPECT_FALSE(o.passed) << c["id"] << " " << to_string(impl);
      EXPECT_FALSE(o.input_error()) << o.error;
    }
}

// The first case of `op` with its expected y[i] moved by `delta` fails on both implementations,
// its error naming the position `where`.
void expect_moved_y_fails(const std::string& op, int i, double delta, const std::string& where) {
  auto c = first_case(op);
  c["y"][i] = c["y"][i].get<double>() + delta;
  for (Impl impl : {Impl::reference, Impl::optimized}) {
    const auto o = check_golden_case(c, impl);
    EXPECT_FALSE(o.passed) << op << " (" << to_string(impl) << ")";
    EXPECT_NE(o.error.find(where), std::string::npos) << o.error;
  }
}

TEST(GoldenBlock, CorruptedValueFailsAndFieldErrorsNameTheField) {
  expect_moved_y_fails("block", 3, 1e-3, "y[0,0,3]");
  auto d = first_case("block");
  d["norm"] = "batch_norm";
  EXPECT_NE(check_golden_case(d, Impl::optimized).error.find("field 'norm'"), std::string::npos);
  d = first_case("block");
  d["norm2"]["gamma"].erase(0);
  EXPECT_NE(check_golden_case(d, Impl::optimized).error.find("field 'norm2.gamma'"), std::string::npos)
      << check_golden_case(d, Impl::optimized).error;
  d = first_case("block");
  d["w2"].erase(0);
  EXPECT_NE(check_golden_case(d, Impl::optimized).error.find("field 'w2'"), std::string::npos);
}

TEST(GoldenChecker, CorruptedExpectedValueFailsNamingThePosition) {
  expect_moved_y_fails("layer_norm", 5, 1e-3, "y[0,0,5]");
}

TEST(GoldenChecker, CorruptedRunningStatisticFails) {
  auto c = first_case("batch_norm_train");
  c["new_running_var"][2] = c["new_running_var"][2].get<double>() * 1.001;
  const auto o = check_golden_case(c, Impl::optimized);
  EXPECT_FALSE(o.passed);
  EXPECT_NE(o.error.find("new_running_var[2]"), std::string::npos) << o.error;
}

TEST(GoldenChecker, UnknownOpIsReportedNotSkipped) {
  auto c = first_case("layer_norm");
  c["op"] = "no_such_norm";
  const auto o = check_golden_case(c, Impl::reference);
  EXPECT_FALSE(o.known);
  EXPECT_FALSE(o.passed);
  EXPECT_NE(o.error.find("no_such_norm"), std::string::npos);
}

TEST(GoldenChecker, WrongLengthArrayIsAnErrorNamingTheField) {
  auto c = first_case("rms_norm");
  c["x"].erase(c["x"].size() - 1);
  const auto o = check_golden_case(c, Impl::optimized);
  EXPECT_FALSE(o.passed);
  EXPECT_NE(o.error.find("'x'"), std::string::npos) << o.error;
}

TEST(GoldenAttention, CorruptedValuesFailNamingThePosition) {
  expect_moved_y_fails("sdpa", 3, 1e-3, "y[0,0,0,3]");
  expect_moved_y_fails("mha", 1, -1e-3, "y[0,0,1]");
}

TEST(GoldenAttention, HeadsNotDividingEIsAFieldError) {
  auto m = first_case("mha");
  m["heads"] = 3;
  const auto o = check_golden_case(m, Impl::optimized);
  EXPECT_FALSE(o.passed);
  EXPECT_NE(o.error.find("heads = 3 must divide E"), std::string::npos) << o.error;
}


// A built-in layer computing another layer's op passes that op's golden cases through each of
// its rows (sync_batch_norm as one worker is batch_norm: batch_norm_train and _eval cases).
TEST(Golden, BuiltinRowsComputingAnotherOpPassItsCases) {
  const auto checked = test::expect_builtin_rows_of_other_ops_pass(
      load_golden(default_golden_path()), [](const LayerRow&) { return true; }, check_norm_golden_case);
  EXPECT_GT(checked.size(), 0u) << "no built-in row computes another op";
}

}  // namespace
}  // namespace normcheck
