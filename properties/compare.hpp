// The one comparison module: the tolerance rule, the comparison of two outputs (Diff), and the
// evidence schema every family's counterexample uses, so the reports render every ✗ cell alike.
//
// Evidence (CaseOutcome::evidence, a cell's `counterexample` in report.json), for every family:
//   related_input   the related input, in words and numbers
//   params          the parameters of the case (layer parameters, attention weights, ...)
//   labels          {"index": ["b", "t"], "element": "d", "input": "x", "output": "y"}: how to
//                   read a compared row (a token's features, a query's columns)
//   input, related  the two sides: {"implementation", "calls": [call, ...], ...}; a call is
//                   {"shape": {"B": 2, "T": 3, "D": 4}, "attributes": {...}, "tensors":
//                   {"x": tensor, "y": tensor, ...}} and a tensor {"dims", "shape", "values"}
//   compared        the compared row pairs (at most 32): {"a": {"call", "index"}, "b": ...,
//                   "x_a", "x_b" (input rows, when the rows have one), "y_a", "y_b", "tolerance",
//                   "mismatch" (elements over tolerance)}
//   compared_count  how many pairs were compared in all
//   mismatches      how many values differ
//   worst           the worst value: {"where", "a", "b", "deviation", "tolerance",
//                   "position_a", "position_b" ({"call", "index", "element"}, for row values),
//                   "pair" (its index in `compared`)}
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <normcheck/norms/registry.hpp>

namespace normcheck {

// The tolerance rule of docs/PROPERTIES.md: |a − b| ≤ atol + rtol·|b| with rtol = 1e-5 and
// atol = 1e-5 + 2e-6·cond, cond the conditioning of the value (|mean|/std of its statistics set;
// attention: the logit conditioning). `b` is the expected side.
double tolerance(double b, double cond);
// Two runs of a Transformer block (same implementation): rtol = atol = 1e-4, the single-layer
// bound over the ten float32 stages a token passes, each passing an error on with gain ≲ 1.
double composite_tolerance(double b);
bool same_bits(double a, double b);
// The worse of two deviations |a − b|: NaN (a value NaN on one side only) above inf (infinite on
// one side only) above any number. A deviation is never summarised as smaller than it was.
double worse_deviation(double a, double b);

// The tolerance rule for gradients, float32 against double (the rule the golden gradients were
// built with, golden/README.md): |a − b| ≤ atol + rtol·|b| with atol = 2e-6·(1 + cond)·scale,
// rtol = 1e-4. `cond` is the largest |mean|/std of a statistics set the gradients read, `scale`
// the gradients' (gradient_scale). A gradient's error scales with the whole gradient (dx mixes
// every dy of a statistics set), hence an atol relative to its largest terms rather than to 1.
// Impl::reference: a double computation agrees to 1e-4 of atol, rtol 1e-9 (as the golden
// checkers ask of the reference).
struct GradTolerance {
  double atol = 0, rtol = 0;
  double bound(double b) const;  // atol + rtol·|b|
  // NaN on both sides agrees; NaN on one side, or further apart than bound(b), does not
  bool agree(double a, double b) const;
};
GradTolerance gradient_tolerance(double cond, double scale, Impl impl = Impl::optimized);
// The scale of a call's gradients: the largest |value| of the reference gradients and of the
// terms dx is made of, inv_std·|γ·dy| (c: the call's conditioning; dy [B*T*D]). dx =
// inv_std·(γ·dy − mean terms) cancels to exactly 0 for dy in the span of 1 and x̂ of a set
// while the float32 error of its terms does not, so the largest |grad| alone is no scale for its
// error; for the golden cases (random dy) the two agree.
double gradient_scale(const Grads& reference, const Conditioning& c, const Params& p,
                      const std::vector<float>& dy, int D);
// What the rule reads of one backward call of a row at input x: cond, the largest conditioning
// of a statistics set the compared gradients read (the forward's conditioning of x, whose sets
// are those of its valid outputs), and scale, gradient_scale over the call's gradients g. A row
// whose forward keeps token_independence (token-wise) computes dx at padding like any token's
// and sums its dγ, dβ terms there: with `padding_too` its padding positions count as tokens
// (their sets, their dx, their γ·dy terms); without it, only valid positions' dx and terms
// enter (for comparisons of valid tokens' dx alone, whose padding may hold poison). dγ, dβ always
// enter the scale.
// param_scale: dγ_f = Σ dy·x̂_f and dβ_f = Σ dy are sums over positions; when the terms cancel
// (dy of opposite signs on equal x̂, as D = 1 RMSNorm gives x̂ = ±1 at every token) the float32
// sum's error is a few ulps of Σ |terms| however small the sum, so a sum's scale is Σ |dy·x̂_f|
// and Σ |dy| (x̂ = the reference forward at γ = 1, β = 0: every row's forward is γ·x̂ + β), over
// the positions whose dx enter scale (all finite ones for a row that is not token-wise). It
// applies to dγ and dβ only (param_gradient_tolerance): dx's scale stays its own terms'.
struct GradientTerms {
  double cond = 0, scale = 0, param_scale = 0;
  GradientTerms& operator|=(const GradientTerms& o);  // the larger of each (two sides compared)
};
GradientTerms gradient_terms(const LayerRow& row, const Batch& x, const Params& p, const State& s,
                             const Grads& g, const std::vector<float>& dy, bool padding_too);
GradTolerance gradient_tolerance(const GradientTerms& terms, Impl impl);            // dx
GradTolerance param_gradient_tolerance(const GradientTerms& terms, Impl impl);      // dγ, dβ

// Central differences of a double forward against a directional derivative (the reference's
// gradients, properties/gradient_properties.cpp): F(t) = Σ dy·y(x + t·v, γ + t·u, β + t·w),
// R = (4·D(h/2) − D(h))/3 with D(h) = (F(h) − F(−h))/2h, against Σ dx·v + Σ dγ·u + Σ dβ·w.
// Truncation: R's error is h⁴/480·|F⁽⁵⁾|, of relative size ((step)²/(σ² + ε))² with the steps
// t·|v| ≤ 8·2^-20 = 7.6e-6 and σ² + ε ≥ ε ≥ 1e-6: below 4e-9 of `terms` = Σ|dx·v| + Σ|dγ·u| +
// Σ|dβ·w|, the size of what the derivative adds up. Rounding: F is a double sum whose error is
// about 1e-15·`rounding` with rounding = Σ(1 + |dy·y|); dividing by 2h and extrapolating makes
// it about 3e-15·rounding/h. The bound allows 100 times the rounding and 1e-7 of `terms` (25
// times the truncation): the bugs it is for change the derivative by 1/n or more (n − 1 for n in
// a variance, a dropped term). Gradient/FiniteDifferences (properties/tests/
// gradient_numerics_test.cpp) applies the same bound to its steps of 2^-19 (ε = 1e-5).
double finite_difference_tolerance(double terms, double rounding, double h);

enum class Comparison {
  values,       // the tolerance rule
  bitwise,      // identical bits
  containment,  // a finite output must stay finite (the spread of NaN is the subject)
  range,        // the tolerance rule, and a finite value on one side that is NaN or ±inf on the
                // other is a counterexample too (the numerical range is the subject)
};

// JSON of a number: NaN and ±inf as the strings "NaN", "inf", "-inf".
nlohmann::json number_json(double v);
// A flat row-major tensor: {"dims": names, "shape": sizes, "values": nested arrays}, values
// starting at `offset`; above 2048 values {"truncated": true, "size": n} instead of the values.
template <class V>
nlohmann::json tensor_json(const V& v, const std::vector<std::string>& dims,
                           const std::vector<int>& shape, std::size_t offset = 0);

// A row of values in one side's buffers (float or double), for the evidence; n = 0: none.
struct RowView {
  const void* data = nullptr;
  bool is_float = false;
  int n = 0;
  RowView() = default;
  RowView(const float* p, int count) : data(p), is_float(true), n(count) {}
  RowView(const double* p, int count) : data(p), is_float(false), n(count) {}
  double operator[](int k) const {
    return is_float ? double(static_cast<const float*>(data)[k]) : static_cast<const double*>(data)[k];
  }
};

// Where a compared row sits in a side: the call (a side may make several) and the row's index
// (every dimension but the last: [b, t] of a token, [b, h, i] of an sdpa query).
struct RowPos {
  int call = 0;
  std::vector<int> index;
};

// How to read a compared row in the report.
struct Labels {
  std::vector<std::string> index;  // names of RowPos::index
  std::string element;             // the last dimension
  std::string input, output;       // the row tensors' names (input may be empty: no input rows)
};

// Compares two outputs row by row under one comparison and keeps what a report needs: every
// compared pair (with its rows, while the case's buffers live), the count of differing values
// and the worst one. Values NaN on both sides agree; NaN or ±inf on one side only is a
// non-finite mismatch (a failure of a ✓ cell, never a ✗ cell's counterexample) — unless the
// case declared poisoned_unread().
class Diff {
 public:
  explicit Diff(Labels labels, Comparison how = Comparison::values)
      : labels_(std::move(labels)), how_(how) {}

  // Row a against row b, element by element; tol(k) is the tolerance of element k (used by the
  // values comparison only). xa, xb: the input rows behind them, when there are such rows.
  void rows(const RowPos& pa, const RowPos& pb, RowView ya, RowView yb,
            const std::function<double(int k)>& tol, RowView xa = {}, RowView xb = {});
  // One value outside the rows (a running statistic, a row's sum), under the comparison.
  void value(const std::string& where, double a, double b, double tol);
  // A claim about one value that does not hold (a negative weight, a masked key with weight).
  void fail(const std::string& where, double a, double b);
  // Declares that the case's only non-finite inputs sit where no compared output may read them
  // (masked keys and values, padding tokens), while every input they may read is finite: a
  // non-finite value on one side against a finite one on the other is then that poison leaking
  // into the output, a real counterexample (a violation), not an overflow or NaN artefact.
  void poisoned_unread() { leaks_count_ = true; }

  bool finite_violation() const { return finite_; }
  bool nonfinite_mismatch() const { return nonfinite_; }
  bool any() const { return finite_ || nonfinite_; }
  // The largest deviation of any compared value: NaN or inf when a value was NaN or infinite on
  // one side only (worse_deviation), else the largest finite |a − b|.
  double max_dev() const { return worse_deviation(max_dev_, nonfinite_dev_); }
  int mismatches() const { return mismatches_; }
  Comparison comparison() const { return how_; }

  // The evidence keeps the first kKeptPairs pairs and the worst one: a large case (millions of
  // values) costs no more memory than a small one.
  static constexpr std::size_t kKeptPairs = 32;
  nlohmann::json worst_json(std::size_t max_pairs = kKeptPairs) const;
  nlohmann::json labels_json() const;
  nlohmann::json compared_json(std::size_t max_pairs = kKeptPairs) const;
  std::size_t compared_count() const { return count_; }

 private:
  struct Worst {
    double ratio = -1, a = 0, b = 0, tol = 0;
    std::string where;
    int pair = -1, element = -1;
  };
  struct Pair {
    RowPos pa, pb;
    RowView xa, xb, ya, yb;
    std::vector<double> tol;
    std::vector<int> mismatch;
  };
  // Compares one value; returns true when it counts as a mismatch. `where` is built lazily.
  bool compare(double a, double b, double tol, int pair, int element,
               const std::function<std::string()>& where);
  void note(double ratio, double a, double b, double tol, int pair, int element,
            const std::function<std::string()>& where);

  Labels labels_;
  Comparison how_;
  bool finite_ = false, nonfinite_ = false, leaks_count_ = false;
  int mismatches_ = 0;
  double max_dev_ = 0;        // finite deviations
  double nonfinite_dev_ = 0;  // deviations with NaN or ±inf on one side: NaN or inf
  Worst worst_;
  std::vector<Pair> pairs_;       // the first kKeptPairs
  std::vector<Pair> worst_pair_;  // the worst pair when it is not among them (0 or 1)
  std::size_t count_ = 0;
  const Pair& pair_at(int index) const {
    return std::size_t(index) < pairs_.size() ? pairs_[index] : worst_pair_.at(0);
  }
};

// The outcome of one generated case of a cell.
struct CaseOutcome {
  bool finite_violation = false;    // a real counterexample (finite, or a poison's leak)
  bool nonfinite_mismatch = false;  // NaN/inf on one side only (a failure for ✓ cells only)
  double max_dev = 0;               // largest deviation in this case (Diff::max_dev: NaN or inf
                                    // when a value was NaN or infinite on one side only)
  std::string summary;              // one line: what differs, where
  nlohmann::json evidence;          // the case in the schema above; filled when anything differs
  // non-empty: an implementation threw InvalidInput on an input the other accepts (rejection.hpp);
  // a failure of every cell, never a demonstration of a ✗ cell's property
  std::string rejection = {};
  bool any() const { return finite_violation || nonfinite_mismatch || !rejection.empty(); }
};

// What a case shows besides the comparison: filled only when something differs.
struct CaseRecord {
  nlohmann::json params = nlohmann::json::object();
  nlohmann::json input = nlohmann::json::object();    // side: {"implementation", "calls": [...]}
  nlohmann::json related = nlohmann::json::object();
};

// The case's outcome: the Diff's verdict, and when anything differs the evidence in the schema
// above (record() is called only then).
CaseOutcome outcome(const Diff& d, const std::string& related_input,
                    const std::function<CaseRecord()>& record);

// A side of the evidence: {"implementation": impl, "calls": calls} (calls built by the caller).
nlohmann::json side_json(const std::string& implementation, nlohmann::json calls);
// A call of a side: {"shape": shape, "attributes": attributes, "tensors": tensors}.
nlohmann::json call_json(nlohmann::json shape, nlohmann::json tensors,
                         nlohmann::json attributes = nlohmann::json::object());

}  // namespace normcheck
