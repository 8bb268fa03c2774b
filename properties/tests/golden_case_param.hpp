// What the golden-file tests share (golden_test.cpp, golden_grad_test.cpp): the parameter of a
// test, one case of a file and the implementation that runs it, printed and named after the
// case's id; the cases of the files as parameters; a file's first case of an op; a case's outcome
// as a gtest assertion; and the built-in rows that compute another layer's op, run through the
// cases of that op.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <functional>
#include <ostream>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "norms/registry.hpp"
#include "norms/tensor.hpp"
#include "properties/golden.hpp"

namespace normcheck::test {

struct GoldenCaseParam {
  nlohmann::json c;
  Impl impl;
};

inline void PrintTo(const GoldenCaseParam& p, std::ostream* os) {
  *os << p.c.value("id", "?") << " (" << to_string(p.impl) << ")";
}

// <id>_<implementation>, every other character than a letter or digit as '_'
inline std::string golden_case_name(const ::testing::TestParamInfo<GoldenCaseParam>& info) {
  std::string name = info.param.c["id"].get<std::string>() + "_" + to_string(info.param.impl);
  for (auto& ch : name)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return name;
}

// Whether --gtest_filter may select a test whose full name starts with `prefix` (e.g.
// "PyTorch/Golden."): true for a positive pattern with a wildcard or one that starts with the
// prefix. ctest runs every test in a process of its own with the test's exact name as the filter,
// and reading the golden files (2.5 MB of JSON) for the parameters cost each of the binary's
// 2,200 processes 0.1 s (several times that under ASan) whatever test it ran.
inline bool filter_may_select(const std::string& prefix) {
  const std::string filter = GTEST_FLAG_GET(filter);
  const std::string positive = filter.substr(0, filter.find('-'));
  if (positive.empty()) return true;  // only negative patterns: everything else runs
  std::size_t start = 0;
  while (start <= positive.size()) {
    const std::size_t end = std::min(positive.find(':', start), positive.size());
    const std::string pattern = positive.substr(start, end - start);
    if (pattern.find_first_of("*?") != std::string::npos || pattern.rfind(prefix, 0) == 0) return true;
    start = end + 1;
  }
  return false;
}

// Every case of `files()` that `keep` accepts (every case without it), once per implementation,
// when the filter may select a test named `prefix`…; no parameter (and no file read) otherwise.
inline std::vector<GoldenCaseParam> golden_case_params(
    const std::string& prefix, const std::function<std::vector<nlohmann::json>()>& files,
    const std::function<bool(const nlohmann::json&)>& keep = {}) {
  std::vector<GoldenCaseParam> params;
  if (!filter_may_select(prefix)) return params;
  for (const auto& file : files())
    for (const auto& c : file["cases"])
      for (Impl impl : {Impl::reference, Impl::optimized})
        if (!keep || keep(c)) params.push_back({c, impl});
  return params;
}

// The first case of `op` in `files`; throws naming `what` (the kind of case) if there is none.
inline nlohmann::json first_case(const std::vector<nlohmann::json>& files, const std::string& op,
                                 const std::string& what) {
  for (const auto& file : files)
    for (const auto& c : file["cases"])
      if (c["op"] == op) return c;
  throw std::runtime_error("no " + what + " for " + op);
}

// Success when the case passed; otherwise a failure naming the case, its implementation and why.
inline ::testing::AssertionResult passed(const GoldenOutcome& o) {
  if (o.passed) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << o.id << " (" << to_string(o.impl) << "): " << o.error;
}

// The built-in rows that `keep` accepts and whose layer computes another layer's op (sync_batch_norm
// as one worker is batch_norm): every case of `file` whose op is the row's golden op, run
// through the row by `check` with both implementations, must pass. Returns the id of the row of
// every case run.
inline std::vector<std::string> expect_builtin_rows_of_other_ops_pass(
    const nlohmann::json& file, const std::function<bool(const LayerRow&)>& keep,
    const std::function<GoldenOutcome(const nlohmann::json&, Impl, const LayerRow&)>& check) {
  std::vector<std::string> checked;
  for (const auto& row : layer_rows()) {
    if (row.layer->origin != "builtin" || row.layer->op() == row.layer->name || !keep(row)) continue;
    for (const auto& c : file["cases"])
      if (c.value("op", "") == golden_op(row))
        for (Impl impl : {Impl::reference, Impl::optimized}) {
          EXPECT_TRUE(passed(check(c, impl, row))) << row.id();
          checked.push_back(row.id());
        }
  }
  return checked;
}

}  // namespace normcheck::test
