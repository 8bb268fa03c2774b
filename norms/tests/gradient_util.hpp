// Helpers of the gradient tests (norms/tests/gradient_test.cpp, properties/tests/
// gradient_numerics_test.cpp): the rows with a backward pass, RapidCheck generators of padded
// batches, parameters and upstream gradients, and bitwise comparison of gradients.
#pragma once

#include <gtest/gtest.h>
#include <omp.h>
#include <rapidcheck.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "norms/tests/test_util.hpp"

namespace normcheck::test::grad {

using rc::gen::element;
using rc::gen::inRange;

struct RowImpl {
  LayerRow row;
  Impl impl;
};

inline void PrintTo(const RowImpl& p, std::ostream* os) { *os << p.row.id() << "/" << to_string(p.impl); }

inline bool has_gradient(const LayerRow& r) { return r.layer->has_backward(); }
// A token's outputs depend on that token alone (the same rule as numerics_test.cpp).
inline bool token_wise(const LayerRow& r) {
  return has_gradient(r) && !r.profile->violated.count("token_independence");
}
// Rows whose forward is invariant under x → αx (with ε scaled by α², see ScaleCovariance).
inline bool scale_invariant(const LayerRow& r) {
  return has_gradient(r) && !r.profile->violated.count("global_scale_invariance");
}

inline std::vector<LayerRow> rows_where(bool (*keep)(const LayerRow&)) {
  std::vector<LayerRow> out;
  for (const auto& r : layer_rows())
    if (keep(r)) out.push_back(r);
  return out;
}

inline std::vector<RowImpl> row_impls_where(bool (*keep)(const LayerRow&)) {
  std::vector<RowImpl> out;
  for (const auto& r : rows_where(keep))
    for (Impl impl : {Impl::reference, Impl::optimized}) out.push_back({r, impl});
  return out;
}

inline std::string row_name(const ::testing::TestParamInfo<LayerRow>& info) {
  return test::test_name(info.param.id());
}
inline std::string row_impl_name(const ::testing::TestParamInfo<RowImpl>& info) {
  return test::test_name(info.param.row.id() + "_" + to_string(info.param.impl));
}

// Sets the OpenMP thread count for a scope.
struct Threads {
  int previous;
  explicit Threads(int n) : previous(omp_get_max_threads()) { omp_set_num_threads(n); }
  ~Threads() { omp_set_num_threads(previous); }
};

inline Grads backward(const LayerRow& row, Impl impl, const Batch& x, const Params& p, const State& s,
               const std::vector<float>& dy) {
  Grads g;
  row.layer->backward(impl)(x, p, row.mode(), &s, dy, g);
  return g;
}

// ---------------------------------------------------------------------------------------------
// Generators

inline int width() { return *element(1, 2, 3, 4, 7, 8, 16, 17, 31, 33, 64, 100); }
// BatchNorm train rejects one value per channel: train rows draw at least two tokens per
// sequence (as numerics_test.cpp does), so no case is discarded.
inline int min_len(const LayerRow& r) { return r.mode() == Mode::train ? 2 : 1; }

// A padded batch of values k/16, |k| ≤ 64, padding included: token-wise rows compute padding
// like any token and sum its dγ, dβ terms, so it must hold ordinary values too.
inline Batch draw_batch(int D, int min_length, int max_b = 5, int max_t = 7) {
  const int B = *inRange(1, max_b + 1), T = *inRange(min_length, max_t + 1);
  std::vector<int> lengths(B);
  for (auto& l : lengths) l = *inRange(min_length, T + 1);
  const auto k = *rc::gen::container<std::vector<int>>(std::size_t(B) * T * D, inRange(-64, 65));
  Batch x(B, T, D);
  x.lengths = lengths;
  for (std::size_t i = 0; i < x.x.size(); ++i) x.x[i] = float(k[i]) / 16.0f;
  return x;
}

// The layer's parameters at width D (which of γ, β it takes; groups), with γ = m/64 in
// [0.5, 1.5] and β = m/64 in [-1, 1] on grids (finite differences stay exact, see below), or
// (in some cases) no γ, β at all.
inline Params draw_params(const LayerEntry& l, int D) {
  std::mt19937 rng(0);
  Params p = test::params_for(l, D, rng);
  if (*inRange(0, 4) == 0) {
    p.gamma.clear();
    p.beta.clear();
    return p;
  }
  for (auto& g : p.gamma) g = float(*inRange(32, 97)) / 64.0f;
  for (auto& b : p.beta) b = float(*inRange(-64, 65)) / 64.0f;
  return p;
}

// dy = j/8 in [-2, 2] at every position (padding included: where the forward ignores it, the
// gradient must too).
inline std::vector<float> draw_dy(std::size_t n) {
  const auto j = *rc::gen::container<std::vector<int>>(n, inRange(-16, 17));
  std::vector<float> dy(n);
  for (std::size_t i = 0; i < n; ++i) dy[i] = float(j[i]) / 8.0f;
  return dy;
}

inline Batch all_valid(Batch x) {
  for (auto& l : x.lengths) l = x.T;
  return x;
}

inline bool same_bits(const std::vector<double>& a, const std::vector<double>& b) {
  // memcmp with a null pointer is undefined even for 0 bytes (an empty dγ has data() == nullptr)
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0);
}
inline bool same_bits(const Grads& a, const Grads& b) {
  return same_bits(a.dx, b.dx) && same_bits(a.dgamma, b.dgamma) && same_bits(a.dbeta, b.dbeta);
}

}  // namespace normcheck::test::grad
