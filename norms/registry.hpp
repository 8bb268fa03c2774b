// The layer registry: one entry per layer. Every test, the CLI and the reports read this list;
// there is no second list of layers anywhere. Adding a layer = one file + one line in
// registry.cpp (see README "Adding a layer").
#pragma once

#include <deque>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include <normcheck/norms/params.hpp>
#include <normcheck/norms/tensor.hpp>

namespace normcheck {

// How hard each output is to compute in float32, per output element [B*T*D]:
// `cond` = |mean|/√(var+ε) of the statistics set the element depends on (the tolerance rule's
// conditioning), `eps_rel` = ε/(2·s²) (capped at 1), a bound on how much ε moves that element
// relative to its size, for properties that are exact only as ε → 0.
// `inv_std` (optional: empty when the layer does not say) = 1/√(var+ε) of that set (1/√(ms+ε)
// for RMS-style sets, the running statistics' in eval): how much the normalization amplifies a
// change of x, the scale of a gradient's terms (gradient_scale, properties/compare.hpp).
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
  Output dx = {};
  std::vector<double> dgamma = {}, dbeta = {};
};

// Backward pass of the forward in `mode` at input `in`, for the upstream gradient dy [B*T*D]:
// writes `out`. Reads `state` (eval: the running statistics) but never updates it. Validates
// everything the forward validates, and dy's size, throwing InvalidInput before writing anything.
using BackwardFn = std::function<void(const Batch& in, const Params& p, Mode mode,
                                      const State* state, const std::vector<float>& dy,
                                      Grads& out)>;

// The optimized forward of a token-wise layer whose raw kernel (kernels_api.hpp) is
// kernel(out, x, gamma, beta, rows, D, eps): validate_affine_norm, then the kernel over the whole
// batch (run_affine_kernel).
using AffineKernelFn = void (*)(float* out, const float* x, const float* gamma, const float* beta,
                                std::size_t rows, int D, float eps);
ForwardFn affine_kernel_forward(AffineKernelFn kernel);

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

// The backward of a per-token normalization over G contiguous groups of D/G features —
// LayerNorm: G = 1, center; GroupNorm; RMSNorm: G = 1, !center (μ = 0, σ² the mean square) —
// as a registry entry's backward_reference / backward_optimized. With x̂ = (x − μ)·rstd and
// dx̂ = γ·dy: dx = rstd·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂)) (the mean(dx̂) term only when center),
// dγ = Σ dy·x̂, dβ = Σ dy over every position. The reference computes it in double, two passes
// (llm.c's layernorm_backward); the optimized one is kernels::token_groups_backward, `kernel`
// the public raw kernel's name for its messages. validate runs first (the forward's input
// checks), then validate_dy; groups(p) gives G (nullptr: 1). Defined in token_backward.cpp.
BackwardFn token_groups_backward(Impl impl, const char* kernel, bool center,
                                 void (*validate)(const Batch&, const Params&),
                                 int (*groups)(const Params&) = nullptr);

// A cut of a batch along B (the sequences) into consecutive shards, as data-parallel workers
// hold it: the shards' sizes, each ≥ 1, summing to B. {B}: one shard, the whole batch.
using ShardCut = std::vector<int>;

// Forward pass of a batch cut into shards, as the workers of one data-parallel step run it:
// writes out[B*T*D] in the whole batch's layout; `state` (stateful layers) is each worker's
// replica, the same before the step, and after it holds what the step leaves in every replica.
using ShardedForwardFn = std::function<void(const Batch& in, const ShardCut& shards,
                                            const Params& p, Mode mode, State* state, Output& out)>;

// Backward pass of a batch cut into shards, as the workers of one data-parallel step run it:
// dx [B*T*D] in the whole batch's layout, each worker's for its shard; dγ, dβ summed over the
// workers (what DDP's all-reduce of the parameter gradients adds up, before it divides by the
// world size). Reads `state` (eval) but never updates it.
using ShardedBackwardFn =
    std::function<void(const Batch& in, const ShardCut& shards, const Params& p, Mode mode,
                       const State* state, const std::vector<float>& dy, Grads& out)>;

using ConditioningFn =
    std::function<Conditioning(const Batch& in, const Params& p, Mode mode, const State* state)>;

// Which parameters a layer takes (the generators draw them, golden files provide them).
struct ParamSpec {
  bool affine = true;     // per-feature γ
  bool bias = true;       // per-feature β (with affine)
  bool momentum = false;  // stateful layers
  std::vector<ParamDef> named = {};  // the layer's own parameters (norms/params.hpp)
};

// The expected profile of one row: the properties that must be violated. Every property not
// listed must hold. Mode-comparing properties are not applicable to eval rows.
struct RowProfile {
  Mode mode = Mode::none;
  std::set<std::string> violated;
  std::string why;  // one line: the mechanism behind the ✗ cells
  // Violated by the optimized implementation only: an external kernel's finding, where the
  // reference (normcheck's own) keeps the property.
  std::set<std::string> optimized_violates = {};
};

struct LayerEntry {
  std::string name = {};
  std::string formula = {};
  std::string statistics_over = {};
  ParamSpec params = {};
  std::vector<RowProfile> rows = {};  // {Mode::none} for stateless layers; {train, eval} otherwise
  ForwardFn reference = {};
  ForwardFn optimized = {};
  ConditioningFn conditioning = {};
  // Optional: the backward of `reference` and of `optimized` (both or neither; empty: the layer
  // has no gradient).
  BackwardFn backward_reference = {};
  BackwardFn backward_optimized = {};
  // Optional: the forward on a batch cut into shards (a layer whose workers communicate:
  // sync_batch_norm). Empty: each shard alone with its own statistics (forward_on_shards).
  ShardedForwardFn sharded_reference = {};
  ShardedForwardFn sharded_optimized = {};
  // Optional: the backward on a batch cut into shards, for a layer whose workers communicate in
  // the backward too (sync_batch_norm all-reduces Σ dy and Σ dy·(x − μ)). Empty: each shard's
  // backward alone (backward_on_shards).
  ShardedBackwardFn sharded_backward_reference = {};
  ShardedBackwardFn sharded_backward_optimized = {};
  std::string origin = "builtin";  // builtin | external (registered at run time) | mutant
  // The op this layer computes, for golden files: its own name unless it is another
  // implementation of a built-in layer (an external library's, a mutant's).
  std::string computes = {};
  const std::string& op() const { return computes.empty() ? name : computes; }
  bool stateful() const { return rows.size() > 1 || rows.at(0).mode != Mode::none; }
  const ForwardFn& forward(Impl i) const { return i == Impl::reference ? reference : optimized; }
  bool has_backward() const { return bool(backward_reference); }
  // The forward of `impl` on `in` cut into `shards`: the layer's sharded forward, or by default
  // each shard run alone (local statistics, as local BatchNorm on k workers) from its own copy of
  // `state`; the state afterwards is shard 0's replica (what DDP broadcasts from rank 0 before
  // the next step). Throws InvalidInput for a cut that is not of B, or what the layer rejects.
  void forward_on_shards(Impl impl, const Batch& in, const ShardCut& shards, const Params& p,
                         Mode mode, State* state, Output& out) const;
  const BackwardFn& backward(Impl i) const {
    return i == Impl::reference ? backward_reference : backward_optimized;
  }
  // The backward of `impl` on `in` cut into `shards`, as one data-parallel step runs it: the
  // layer's sharded backward, or by default each shard's backward alone (its own statistics, as
  // forward_on_shards), its dx in place and the shards' dγ, dβ added in shard order. Throws
  // InvalidInput for a cut that is not of B, or what the layer rejects.
  void backward_on_shards(Impl impl, const Batch& in, const ShardCut& shards, const Params& p,
                          Mode mode, const State* state, const std::vector<float>& dy,
                          Grads& out) const;
};

// A row of the matrix: a layer in one mode.
struct LayerRow {
  const LayerEntry* layer = nullptr;
  const RowProfile* profile = nullptr;
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

// Another implementation of a layer (an external library's kernel, a mutant, a user's own): the
// base's reference, parameters, conditioning and profile, computing the base's golden op, with
// its own name, formula and optimized forward, and no backward pass (the base's would not be the
// backward of this forward; set both backward functions, and the sharded ones where the base has
// them, to give it one). Its optimized sharded forward is the default (each shard alone through
// the new optimized forward) unless set again.
LayerEntry implementation_of(const LayerEntry& base, std::string name, std::string formula,
                             ForwardFn optimized, std::string origin = "external");

// Adds a layer at run time (an out-of-tree project's kernel, an external library). Call before
// the matrix or the tests are enumerated. Throws std::invalid_argument for a duplicate name, a
// missing forward function or an empty profile list.
const LayerEntry& register_layer(LayerEntry entry);

// The golden-file op name of a row: the op its layer computes, with the mode ("layer_norm",
// "batch_norm_train", "batch_norm_eval"; onednn_layer_norm: "layer_norm").
std::string golden_op(const LayerRow& row);

// Checks that `shards` cuts B (sizes ≥ 1, sum B); throws InvalidInput naming the cut.
void validate_shard_cut(const Batch& in, const ShardCut& shards);
// Sequences [first, first + count) of `in` as a batch of their own (same T and D).
Batch sequences(const Batch& in, int first, int count);

// Conditioning of token-wise layers: statistics over G contiguous feature groups of each valid
// token (G = 1: the whole token). `centered` = false for RMS-style layers (no mean subtracted).
Conditioning token_group_conditioning(const Batch& in, double eps, int groups, bool centered);
// The same as a layer's ConditioningFn: over whole tokens, or over the groups its named parameter
// `groups_param` says.
ConditioningFn token_conditioning(bool centered, std::string groups_param = {});

// The implementations of a per-token norm over whole tokens — layer_norm (center) and rms_norm
// (!center: μ = 0, σ² the mean square) — filled into `e`, which gives the rest (name, formula,
// params, rows): the reference in double (per token μ, rstd = 1/√(mean((x − μ)²) + ε),
// y = γ·(x − μ)·rstd + β, after validate_affine_norm), the optimized forward
// affine_kernel_forward(kernel), token_conditioning(center) and the backward pair
// token_groups_backward(…, backward_kernel, center, validate_affine_norm). Defined in
// token_norm.cpp.
LayerEntry token_norm_entry(bool center, AffineKernelFn kernel, const char* backward_kernel,
                            LayerEntry e);

// The five scale and shift invariances (token and global scale, token shift, feature shift and
// scale): what a map that normalizes nothing, or a fixed one, keeps none of.
const std::set<std::string>& scale_and_shift_invariances();

// Conditioning of layers without statistics (elementwise): all zero.
Conditioning no_statistics(const Batch& in, const Params& p, Mode mode, const State* state);


}  // namespace normcheck
