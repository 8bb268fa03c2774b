// The layer registry: one entry per layer. Every test, the CLI and the reports read this list;
// there is no second list of layers anywhere. Adding a layer = one file + one line in
// registry.cpp (see README "Adding a layer").
#pragma once

#include <deque>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "norms/tensor.hpp"

namespace normcheck {

// How hard each output is to compute in float32, per output element [B*T*D]:
// `cond` = |mean|/√(var+ε) of the statistics set the element depends on (the tolerance rule's
// conditioning), `eps_rel` = ε/(2·s²) (capped at 1), a bound on how much ε moves that element
// relative to its size, for properties that are exact only as ε → 0.
// `inv_std` (optional: empty when the layer does not say) = 1/√(var+ε) of that set (1/√(ms+ε)
// for RMS-style sets, the running statistics' in eval): how much the normalization amplifies a
// change of x, the scale of a gradient's terms (gradient_scale).
struct Conditioning {
  std::vector<double> cond;
  std::vector<double> eps_rel;
  std::vector<double> inv_std = {};
};

// Forward pass: reads `in`, `p`, and for stateful layers reads (eval) or updates (train) `state`;
// writes out[B*T*D]. Throws InvalidInput for input the layer rejects.
using ForwardFn =
    std::function<void(const Batch& in, const Params& p, Mode mode, State* state, Output& out)>;

// Gradients of a forward call: dx [B*T*D] (widened to double, as Output); dgamma, dbeta [D], or
// empty when the call has no γ / β (Params::gamma / beta empty).
struct Grads {
  Output dx;
  std::vector<double> dgamma, dbeta;
};

// Backward pass of the forward in `mode` at input `in`, for the upstream gradient dy [B*T*D]:
// writes `out`. Reads `state` (eval: the running statistics) but never updates it. Validates
// everything the forward validates, and dy's size, throwing InvalidInput before writing anything.
using BackwardFn = std::function<void(const Batch& in, const Params& p, Mode mode,
                                      const State* state, const std::vector<float>& dy,
                                      Grads& out)>;

// The optimized backward of an affine layer: runs a raw float32 kernel
// kernel(dx, dgamma, dbeta, gamma) over the whole batch — dgamma, dbeta: nullptr when the call
// has no γ / β (nothing to compute), gamma: nullptr when it has none — and widens into `out`.
template <class Kernel>
void run_affine_backward(const Params& p, std::size_t size, Grads& out, Kernel&& kernel) {
  std::vector<float> dx(size), dgamma(p.gamma.size()), dbeta(p.beta.size());
  kernel(dx.data(), p.gamma.empty() ? nullptr : dgamma.data(),
         p.beta.empty() ? nullptr : dbeta.data(), p.gamma.empty() ? nullptr : p.gamma.data());
  out.dx.assign(dx.begin(), dx.end());
  out.dgamma.assign(dgamma.begin(), dgamma.end());
  out.dbeta.assign(dbeta.begin(), dbeta.end());
}

using ConditioningFn =
    std::function<Conditioning(const Batch& in, const Params& p, Mode mode, const State* state)>;

// A scalar parameter of a layer that the fixed Params fields do not name: the generators draw
// it on a grid of 9 values in [min, max] (shrinking towards min); golden files give it in
// "params".
struct ExtraParam {
  std::string name;
  double min = 0, max = 0;
  std::string meaning;
};

// Which parameters a layer takes (the generators draw them, golden files provide them).
struct ParamSpec {
  bool affine = true;       // per-feature γ
  bool bias = true;         // per-feature β (with affine)
  bool scalar_gain = false; // one scalar g (scale_norm), stored in gamma[0]
  bool groups = false;      // G contiguous feature groups (must divide D)
  bool alpha = false;       // dyt's α
  bool momentum = false;    // stateful layers
  std::vector<ExtraParam> extra = {};
};

// The expected profile of one row: the properties that must be violated. Every property not
// listed must hold. Mode-comparing properties are not applicable to eval rows.
struct RowProfile {
  Mode mode = Mode::none;
  std::set<std::string> violated;
  std::string why;  // one line: the mechanism behind the ✗ cells
};

struct LayerEntry {
  std::string name;
  std::string formula;
  std::string statistics_over;
  ParamSpec params;
  std::vector<RowProfile> rows;  // {Mode::none} for stateless layers; {train, eval} otherwise
  ForwardFn reference;
  ForwardFn optimized;
  ConditioningFn conditioning;
  // Optional: the backward of `reference` and of `optimized` (both or neither; empty: the layer
  // has no gradient).
  BackwardFn backward_reference = {};
  BackwardFn backward_optimized = {};
  std::string origin = "builtin";  // builtin | external (registered at run time) | mutant
  bool stateful() const { return rows.size() > 1 || rows.at(0).mode != Mode::none; }
  const ForwardFn& forward(Impl i) const { return i == Impl::reference ? reference : optimized; }
  bool has_backward() const { return bool(backward_reference); }
  const BackwardFn& backward(Impl i) const {
    return i == Impl::reference ? backward_reference : backward_optimized;
  }
};

// A row of the matrix: a layer in one mode.
struct LayerRow {
  const LayerEntry* layer;
  const RowProfile* profile;
  Mode mode() const { return profile->mode; }
  std::string name() const;  // "layer_norm", "batch_norm [train]"
  std::string id() const;    // "layer_norm", "batch_norm_train"
};

// Every registered layer: the built-in catalogue, then layers registered at run time (a deque,
// so registering never moves an entry a LayerRow points to).
const std::deque<LayerEntry>& layers();
const LayerEntry& layer(const std::string& name);  // throws std::invalid_argument
std::vector<LayerRow> layer_rows();
std::vector<LayerRow> rows_of(const LayerEntry& l);

// Adds a layer at run time (an out-of-tree project's kernel, an external library). Call before
// the matrix or the tests are enumerated. Throws std::invalid_argument for a duplicate name, a
// missing forward function or an empty profile list.
const LayerEntry& register_layer(LayerEntry entry);

// The golden-file op name of a row ("layer_norm", "batch_norm_train", "batch_norm_eval").
std::string golden_op(const LayerRow& row);

// Conditioning of token-wise layers: statistics over G contiguous feature groups of each valid
// token (G = 1: the whole token). `centered` = false for RMS-style layers (no mean subtracted).
Conditioning token_group_conditioning(const Batch& in, double eps, int groups, bool centered);

// Conditioning of layers without statistics (elementwise): all zero.
Conditioning no_statistics(const Batch& in, const Params& p, Mode mode, const State* state);

// The tolerance rule for gradients, float32 against double (the rule the golden gradients were
// built with, ../shared/golden/README.md): |a − b| ≤ atol + rtol·|b| with
// atol = 2e-6·(1 + cond)·max_abs_grad, rtol = 1e-4. `cond` is the largest |mean|/std of a
// statistics set the gradients read, `max_abs_grad` the largest |value| over dx, dγ and dβ of
// the double reference. A gradient's error scales with the whole gradient (dx mixes every dy of a
// statistics set), hence an atol relative to its largest value rather than to 1.
struct GradTolerance {
  double atol = 0, rtol = 0;
  double bound(double reference) const;  // atol + rtol·|reference|
  // NaN on both sides agrees; NaN on one side, or further apart than bound(b), does not
  bool agree(double a, double b) const;
};
// Impl::reference: a double computation should agree to 1e-4 of atol, rtol 1e-9 (as the golden
// checkers ask of the reference).
GradTolerance gradient_tolerance(double cond, double max_abs_grad, Impl impl = Impl::optimized);
// The max_abs_grad of the rule for a call: the largest |value| of the reference gradients and of
// the terms dx is made of, inv_std·|γ·dy| (c: the call's conditioning; dy [B*T*D]). dx =
// inv_std·(γ·dy − mean terms) can cancel to 0 exactly (dy in the span of 1 and x̂ of a set)
// while the float32 error of its terms does not, so the largest |grad| alone is no scale for
// its error; the golden cases (random dy) never cancel, and there the two agree.
double gradient_scale(const Grads& reference, const Conditioning& c, const Params& p,
                      const std::vector<float>& dy, int D);


}  // namespace normcheck
