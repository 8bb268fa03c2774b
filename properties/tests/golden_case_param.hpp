// What the golden-file tests share (golden_test.cpp, golden_grad_test.cpp): the parameter of a
// test, one case of a file and the implementation that runs it, printed and named after the
// case's id; the cases of the files as parameters; a file's first case of an op; a case's outcome
// as a gtest assertion; and the built-in rows that compute another layer's op, run through the
// cases of that op.
#pragma once

#include <gtest/gtest.h>

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

// Every case of `files` that `keep` accepts (every case without it), once per implementation.
inline std::vector<GoldenCaseParam> golden_case_params(
    const std::vector<nlohmann::json>& files,
    const std::function<bool(const nlohmann::json&)>& keep = {}) {
  std::vector<GoldenCaseParam> params;
  for (const auto& file : files)
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
