// Hostile golden input, in process: every case of the corpus (tests/hostile/) is an input error,
// and a RapidCheck property mutates valid golden cases and asserts a clean outcome: pass, a
// failure that is a comparison, or an input error with a one-line reason. (The command line on
// the same corpus: cli/tests/hostile_cli_test.cpp.)
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "properties/catalog.hpp"
#include "properties/tests/hostile_corpus.hpp"

namespace normcheck {
namespace {

namespace fs = std::filesystem;

using hostile::golden_case;
using hostile::hostile_files;

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
