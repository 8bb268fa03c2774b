// Helpers of the gradient tests (norms/tests/gradient_test.cpp, properties/tests/
// gradient_numerics_test.cpp): the rows with a backward pass, RapidCheck generators of
// parameters and upstream gradients (padded batches: row_draws.hpp), and bitwise comparison of
// gradients.
#pragma once

#include <gtest/gtest.h>
#include <omp.h>
#include <rapidcheck.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "norms/tests/row_draws.hpp"
#include "norms/tests/test_util.hpp"

namespace normcheck::test::grad {

using rc::gen::element;
using rc::gen::inRange;

// row_draws.hpp's rows, test names and batches, for the tests using this namespace.
using test::draw_batch;
using test::row_impl_name;
using test::row_impls_where;
using test::row_name;
using test::RowImpl;
using test::rows_where;
using test::rows_with;
using test::width;

inline bool has_gradient(const LayerRow& r) { return r.layer->has_backward(); }
// Rows with a backward whose tokens' outputs depend on the token alone.
inline bool token_wise(const LayerRow& r) { return has_gradient(r) && keeps_token_independence(r); }
// Rows whose forward is invariant under x → αx (with ε scaled by α², see ScaleCovariance).
inline bool scale_invariant(const LayerRow& r) {
  return has_gradient(r) && !r.profile->violated.count("global_scale_invariance");
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

// BatchNorm train rejects one value per channel: train rows draw at least two tokens per
// sequence, so no case is discarded.
inline int min_len(const LayerRow& r) { return r.mode() == Mode::train ? 2 : 1; }

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
