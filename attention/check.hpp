// What the attention and block cells share: the tolerance rules, a comparison that keeps the
// worst differing value, small tensors as nested JSON arrays, and an OpenMP thread scope.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "properties/engine.hpp"

namespace normcheck::check {

// The tolerance rule: |a − b| ≤ atol + rtol·|b|, rtol = 1e-5, atol = 1e-5 + 2e-6·cond.
// For attention, cond is the logit conditioning of the output element (sdpa_cells.cpp).
double rule(double b, double cond);

// Two runs of a Transformer block (same implementation) are compared with rtol = atol = 1e-4:
// the single-layer bound 1e-5 over the ten float32 stages a token passes (norm, q/k/v and out
// projections, softmax·V, residual, norm, two MLP layers, residual), each of which passes an
// error on with gain ≲ 1 for the generated weights (entries ≤ 1/√fan_in in size).
double composite(double b);

class Diff {
 public:
  // The tolerance rule; NaN on both sides agrees, NaN or inf on one side only is a
  // non-finite mismatch (a failure for ✓ cells, never a ✗ counterexample).
  void values(double a, double b, double tol, const std::function<std::string()>& where);
  void bitwise(double a, double b, const std::function<std::string()>& where);
  // A claim about one value that does not hold (a negative weight, a masked key with weight).
  void fail(double a, double b, double tol, const std::string& where);

  bool finite_violation() const { return finite_; }
  bool nonfinite_mismatch() const { return nonfinite_; }
  bool any() const { return finite_ || nonfinite_; }
  double max_dev() const { return max_dev_; }
  int mismatches() const { return mismatches_; }
  nlohmann::json worst() const;

 private:
  void note(double ratio, double a, double b, double tol, const std::function<std::string()>& where);
  bool finite_ = false, nonfinite_ = false;
  int mismatches_ = 0;
  double max_dev_ = 0, worst_ratio_ = -1, a_ = 0, b_ = 0, tol_ = 0;
  std::string where_;
};

// The case's outcome; `evidence` is built only when something differs.
CaseOutcome outcome(const Diff& d, const std::string& note,
                    const std::function<nlohmann::json()>& evidence);

nlohmann::json num(double v);  // NaN and inf as strings
// A flat row-major tensor as nested arrays of the given dims (truncated above 2048 values).
template <class V>
nlohmann::json nested(const V& v, const std::vector<int>& dims, std::size_t offset = 0);

// Sets the OpenMP thread count for a scope and restores it after (n = 0: unchanged).
class ThreadScope {
 public:
  explicit ThreadScope(int n);
  ~ThreadScope();
  ThreadScope(const ThreadScope&) = delete;
  ThreadScope& operator=(const ThreadScope&) = delete;

 private:
  int prev_;
  bool set_;
};

// thread_determinism for an attention layer: `run()` computes the optimized output and weights
// (members .out and .weights) of one fixed case; it runs once with 1 OpenMP thread and once
// with `threads`, and every value of both must agree bitwise. pair_json(one, many) builds the
// evidence of a difference.
template <class RunFn, class PairJson>
CaseOutcome thread_determinism(int threads, RunFn&& run, PairJson&& pair_json) {
  decltype(run()) one, many;
  {
    ThreadScope scope(1);
    one = run();
  }
  {
    ThreadScope scope(threads);
    many = run();
  }
  Diff d;
  for (std::size_t e = 0; e < one.out.size(); ++e)
    d.bitwise(one.out[e], many.out[e], [&] { return "out element " + std::to_string(e); });
  for (std::size_t e = 0; e < one.weights.size(); ++e)
    d.bitwise(one.weights[e], many.weights[e], [&] { return "weight element " + std::to_string(e); });
  return outcome(d, "1 thread (a) vs " + std::to_string(threads) + " threads (b)",
                 [&] { return pair_json(one, many); });
}

}  // namespace normcheck::check
