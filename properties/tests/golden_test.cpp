// Golden conformance against PyTorch (golden/pytorch_golden.json), one ctest test per
// (case, implementation), for every op the registries know; and the checkers can fail.
#include <gtest/gtest.h>

#include "properties/catalog.hpp"

namespace normcheck {
namespace {

struct GoldenParam {
  nlohmann::json c;
  Impl impl;
};

std::vector<GoldenParam> golden_params() {
  std::vector<GoldenParam> params;
  const auto file = load_golden(default_golden_path());
  for (const auto& c : file["cases"])
    for (Impl impl : {Impl::reference, Impl::optimized})
      if (golden_op_known(c.value("op", ""))) params.push_back({c, impl});
  return params;
}

void PrintTo(const GoldenParam& p, std::ostream* os) {
  *os << p.c.value("id", "?") << " (" << to_string(p.impl) << ")";
}

class Golden : public ::testing::TestWithParam<GoldenParam> {};

TEST_P(Golden, MatchesPyTorch) {
  const auto o = check_golden_case(GetParam().c, GetParam().impl);
  EXPECT_TRUE(o.passed) << o.id << " (" << to_string(o.impl) << "): " << o.error;
}

std::string golden_name(const ::testing::TestParamInfo<GoldenParam>& info) {
  std::string name = info.param.c["id"].get<std::string>() + "_" + to_string(info.param.impl);
  for (auto& ch : name)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return name;
}

INSTANTIATE_TEST_SUITE_P(PyTorch, Golden, ::testing::ValuesIn(golden_params()), golden_name);

nlohmann::json first_case(const std::string& op) {
  const auto file = load_golden(default_golden_path());
  for (const auto& c : file["cases"])
    if (c["op"] == op) return c;
  throw std::runtime_error("no golden case for " + op);
}

TEST(GoldenChecker, CorruptedExpectedValueFailsNamingThePosition) {
  auto c = first_case("layer_norm");
  c["y"][5] = c["y"][5].get<double>() + 1e-3;
  for (Impl impl : {Impl::reference, Impl::optimized}) {
    const auto o = check_golden_case(c, impl);
    EXPECT_FALSE(o.passed);
    EXPECT_NE(o.error.find("y[0,0,5]"), std::string::npos) << o.error;
  }
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
  auto s = first_case("sdpa");
  s["y"][3] = s["y"][3].get<double>() + 1e-3;
  auto m = first_case("mha");
  m["y"][1] = m["y"][1].get<double>() - 1e-3;
  for (Impl impl : {Impl::reference, Impl::optimized}) {
    const auto os = check_golden_case(s, impl);
    EXPECT_FALSE(os.passed);
    EXPECT_NE(os.error.find("y[0,0,0,3]"), std::string::npos) << os.error;
    const auto om = check_golden_case(m, impl);
    EXPECT_FALSE(om.passed);
    EXPECT_NE(om.error.find("y[0,0,1]"), std::string::npos) << om.error;
  }
}

TEST(GoldenAttention, HeadsNotDividingEIsAFieldError) {
  auto m = first_case("mha");
  m["heads"] = 3;
  const auto o = check_golden_case(m, Impl::optimized);
  EXPECT_FALSE(o.passed);
  EXPECT_NE(o.error.find("heads = 3 must divide E"), std::string::npos) << o.error;
}


}  // namespace
}  // namespace normcheck
