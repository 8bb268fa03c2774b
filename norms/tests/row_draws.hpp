// What the registry-wide tests of norms/ and properties/ run over (gradient_test.cpp,
// numerics_test.cpp, gradient_numerics_test.cpp): registry rows as GoogleTest parameters, alone or
// with an implementation, and their test names; and RapidCheck draws of a width and of a padded
// batch on the k/16 grid.
#pragma once

#include <gtest/gtest.h>
#include <rapidcheck.h>

#include <ostream>
#include <string>
#include <vector>

#include "norms/tests/test_util.hpp"

namespace normcheck::test {

// A registry row and the implementation a test runs on it.
struct RowImpl {
  LayerRow row;
  Impl impl;
};

inline void PrintTo(const RowImpl& p, std::ostream* os) { *os << p.row.id() << "/" << to_string(p.impl); }

// A token's outputs depend on that token alone: the row's profile does not list
// token_independence as violated.
inline bool keeps_token_independence(const LayerRow& r) {
  return !r.profile->violated.count("token_independence");
}

inline std::vector<LayerRow> rows_where(bool (*keep)(const LayerRow&)) {
  std::vector<LayerRow> out;
  for (const auto& r : layer_rows())
    if (keep(r)) out.push_back(r);
  return out;
}

// The rows `keep` accepts, each with `impl` (a test named after the row alone: row_name).
inline std::vector<RowImpl> rows_with(bool (*keep)(const LayerRow&), Impl impl) {
  std::vector<RowImpl> out;
  for (const auto& r : rows_where(keep)) out.push_back({r, impl});
  return out;
}

// The rows `keep` accepts, each with both implementations (named <row>_<impl>: row_impl_name).
inline std::vector<RowImpl> row_impls_where(bool (*keep)(const LayerRow&)) {
  std::vector<RowImpl> out;
  for (const auto& r : rows_where(keep))
    for (Impl impl : {Impl::reference, Impl::optimized}) out.push_back({r, impl});
  return out;
}

inline std::string row_name(const ::testing::TestParamInfo<RowImpl>& info) {
  return test_name(info.param.row.id());
}
inline std::string row_impl_name(const ::testing::TestParamInfo<RowImpl>& info) {
  return test_name(info.param.row.id() + "_" + to_string(info.param.impl));
}

inline int width() { return *rc::gen::element(1, 2, 3, 4, 7, 8, 16, 17, 31, 33, 64, 100); }

// A padded batch of 1 to max_b sequences of min_length to max_t tokens (every sequence has at
// least min_length valid tokens), every value k/16 with |k| ≤ 64, padding included: a row that
// computes padding like any token (and sums its dγ, dβ terms) sees ordinary values there too.
// min_length 2 for train rows of stateful layers: RapidCheck's sized ranges start at one token,
// which BatchNorm rightly rejects in train mode, and a property that only discards gives up.
inline Batch draw_batch(int D, int min_length, int max_b = 5, int max_t = 7) {
  using rc::gen::inRange;
  const int B = *inRange(1, max_b + 1), T = *inRange(min_length, max_t + 1);
  std::vector<int> lengths(B);
  for (auto& l : lengths) l = *inRange(min_length, T + 1);
  const auto k = *rc::gen::container<std::vector<int>>(std::size_t(B) * T * D, inRange(-64, 65));
  Batch x(B, T, D);
  x.lengths = lengths;
  for (std::size_t i = 0; i < x.x.size(); ++i) x.x[i] = float(k[i]) / 16.0f;
  return x;
}

}  // namespace normcheck::test
