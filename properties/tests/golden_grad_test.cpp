// Golden gradients against PyTorch's autograd (golden/pytorch_grad_golden.json): one ctest test
// per (case, implementation), and the checker's own failure modes.
#include <gtest/gtest.h>

#include <algorithm>

#include "properties/golden_grad.hpp"
#include "properties/tests/golden_case_param.hpp"

namespace normcheck {
namespace {

using GradParam = test::GoldenCaseParam;

std::vector<nlohmann::json> grad_files() { return {load_grad_golden(default_grad_golden_path())}; }

class GoldenGrad : public ::testing::TestWithParam<GradParam> {};

TEST_P(GoldenGrad, MatchesPyTorchAutograd) {
  EXPECT_TRUE(test::passed(check_grad_golden_case(GetParam().c, GetParam().impl)));
}

// Every case of the file, no op skipped: an op without a backward fails here as unknown (none
// when the filter names other tests).
INSTANTIATE_TEST_SUITE_P(PyTorch, GoldenGrad,
                         ::testing::ValuesIn(test::golden_case_params("PyTorch/GoldenGrad.", grad_files)),
                         test::golden_case_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(GoldenGrad);

nlohmann::json first_case(const std::string& op) {
  return test::first_case(grad_files(), op, "golden gradient case");
}

TEST(GoldenGradFile, HasTheDocumentedFormatAndSize) {
  const auto file = load_grad_golden(default_grad_golden_path());
  EXPECT_EQ(file["format"], kGradGoldenFormat);
  EXPECT_EQ(file["cases"].size(), 36u);  // ../shared/golden/README.md
}

// A wrong expected value in each compared field fails on both implementations, naming the field
// and the position: the comparison can fail.
TEST(GoldenGradChecker, CorruptedExpectedValuesFailNamingTheField) {
  struct Corruption {
    std::string op, field;
    std::size_t index;
    std::string position;
  };
  for (const auto& k : {Corruption{"layer_norm", "dx", 5, "dx[0,0,5]"},
                        Corruption{"rms_norm", "dgamma", 3, "dgamma[3]"},
                        Corruption{"group_norm", "dbeta", 0, "dbeta[0]"},
                        Corruption{"batch_norm_train", "dx", 9, "dx[0,1,1]"},
                        Corruption{"masked_batch_norm_train", "dgamma", 2, "dgamma[2]"}}) {
    auto c = first_case(k.op);
    const double tol = c["tolerance"]["atol"].get<double>();
    c[k.field][k.index] = c[k.field][k.index].get<double>() + 10 * tol + 1e-3;
    for (Impl impl : {Impl::reference, Impl::optimized}) {
      const auto o = check_grad_golden_case(c, impl);
      EXPECT_FALSE(o.passed) << k.op << " " << k.field << " " << to_string(impl);
      EXPECT_FALSE(o.input_error()) << o.error;
      EXPECT_NE(o.error.find(k.position), std::string::npos) << o.error;
    }
  }
}

// valid_only: masked_batch_norm's padding is not compared, so a value there does not fail; the
// same value at a valid position does.
TEST(GoldenGradChecker, ValidOnlySkipsPaddingPositions) {
  auto c = first_case("masked_batch_norm_train");
  ASSERT_TRUE(c["valid_only"].get<bool>());
  const int T = c["shape"][1], D = c["shape"][2];
  const int b = 1, t = c["lengths"][1].get<int>();  // the first padding position of sequence 1
  ASSERT_LT(t, T);
  c["dx"][(b * T + t) * D] = 123.0;
  EXPECT_TRUE(check_grad_golden_case(c, Impl::optimized).passed);
  c["dx"][0] = 123.0;
  EXPECT_FALSE(check_grad_golden_case(c, Impl::optimized).passed);
}

TEST(GoldenGradChecker, MalformedCasesAreInputErrorsNamingTheField) {
  auto c = first_case("layer_norm");
  c["dy"].erase(c["dy"].size() - 1);
  auto o = check_grad_golden_case(c, Impl::optimized);
  EXPECT_TRUE(o.malformed);
  EXPECT_NE(o.error.find("'dy'"), std::string::npos) << o.error;

  c = first_case("rms_norm");
  c["dbeta"] = c["dgamma"];  // a dβ for a case without β
  o = check_grad_golden_case(c, Impl::reference);
  EXPECT_TRUE(o.malformed);
  EXPECT_NE(o.error.find("'dbeta'"), std::string::npos) << o.error;

  c = first_case("layer_norm");
  c.erase("dgamma");
  o = check_grad_golden_case(c, Impl::reference);
  EXPECT_TRUE(o.malformed);
  EXPECT_NE(o.error.find("'dgamma'"), std::string::npos) << o.error;
}

TEST(GoldenGradChecker, OpWithoutBackwardIsUnknownNotSkipped) {
  auto c = first_case("layer_norm");
  c["op"] = "dyt";  // a layer, but without a backward pass
  const auto o = check_grad_golden_case(c, Impl::reference);
  EXPECT_FALSE(o.known);
  EXPECT_FALSE(o.passed);
  EXPECT_NE(o.error.find("dyt"), std::string::npos) << o.error;
}

// A built-in layer with a backward that computes another layer's op passes that op's golden
// gradient cases through each of its rows (sync_batch_norm as one worker is batch_norm: the
// batch_norm_train and _eval cases), both implementations. check_grad_golden_case(c, impl) picks
// the op's own layer, so these rows are checked here.
TEST(GoldenGrad, BuiltinRowsComputingAnotherOpPassItsCases) {
  const auto checked = test::expect_builtin_rows_of_other_ops_pass(
      load_grad_golden(default_grad_golden_path()),
      [](const LayerRow& row) { return row.layer->has_backward(); },
      [](const nlohmann::json& c, Impl impl, const LayerRow& row) { return check_grad_golden_case(c, impl, row); });
  EXPECT_NE(std::find(checked.begin(), checked.end(), "sync_batch_norm_train"), checked.end())
      << "no batch_norm_train case ran through sync_batch_norm";
  EXPECT_GT(checked.size(), 0u) << "no built-in row with a backward computes another op";
}

TEST(GoldenGradFile, TheForwardFileIsNotAGradientFile) {
  EXPECT_FALSE(is_grad_golden(load_golden(default_golden_path())));
  EXPECT_THROW(load_grad_golden(default_golden_path()), GoldenFileError);
}

}  // namespace
}  // namespace normcheck
