// The parameter of a golden-file test: one case of the file and the implementation that runs it,
// printed and named after the case's id (golden_test.cpp, golden_grad_test.cpp).
#pragma once

#include <gtest/gtest.h>

#include <cctype>
#include <ostream>
#include <string>

#include <nlohmann/json.hpp>

#include "norms/tensor.hpp"

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

}  // namespace normcheck::test
