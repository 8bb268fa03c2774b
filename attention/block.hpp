// A Transformer block with a pluggable norm: any layer of the norm registry, read only through
// its LayerEntry::forward(impl).
//
//   Pre-LN:   h = x + MHA(N1(x));      y = h + MLP(N2(h))
//   Post-LN:  h = N1(x + MHA(x));      y = N2(h + MLP(h))
//   MLP(u) = W2·relu(W1·u + b1) + b2, hidden width F; MHA is causal self-attention with the
//   batch's key-padding mask.
//
// Two ways to run it:
//   block_forward  train mode: teacher forcing over a padded batch [B, T, E]; each norm runs on
//                  the whole padded batch, padding included (what a norm does with padding is
//                  the norm's business: batch_norm counts it, masked_batch_norm does not).
//   block_decode   eval mode: each sequence alone (batch of one), its valid tokens fed one at a
//                  time, keys and values kept in a KV cache; each norm sees one token [1, 1, E].
// Reference: double activations; a norm's input is rounded to float32 because the norm API
// takes float32 (Batch), and its double output is used as is. Optimized: float32 throughout.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <normcheck/attention/mha.hpp>
#include <normcheck/norms/registry.hpp>

namespace normcheck {

enum class Placement { pre, post };
const char* to_string(Placement p);

struct BlockWeights {
  Placement placement = Placement::pre;
  MhaWeights attn;
  int F = 0;                  // MLP hidden width
  std::vector<float> w1, b1;  // [F, E], [F]
  std::vector<float> w2, b2;  // [E, F], [E]
  Params norm1, norm2;        // parameters of the two norms (same layer)
};

struct BlockState {
  State norm1, norm2;  // running statistics of stateful norms
};

struct BlockOutput {
  Output y;                         // [B, T, E]; padding positions: unspecified (decode: 0)
  std::vector<double> attn_weights; // [B, H, T, T], the first attention's weights (if asked)
};

// Throws InvalidInput naming the parameter (E, heads, F, sizes).
void validate_block(const BlockWeights& w, const Batch& x);

// `norm_mode` is passed to both norms: Mode::train for the train row of a stateful layer (it
// updates `state`), Mode::none for stateless layers.
BlockOutput block_forward(const LayerEntry& norm, Impl impl, Mode norm_mode,
                          const BlockWeights& w, BlockState& state, const Batch& x,
                          bool want_weights);

// `norm_mode`: Mode::eval for a stateful layer (running statistics, unchanged), Mode::none
// for stateless layers. Padding positions of x are never read; their outputs are 0.
BlockOutput block_decode(const LayerEntry& norm, Impl impl, Mode norm_mode,
                         const BlockWeights& w, const BlockState& state, const Batch& x,
                         bool want_weights);

// The parts block_forward and block_decode compose, in the implementation's precision
// (T = double: the reference, float: the optimized), for variants that wire them differently
// (mutants/). Defined for float and double.
// N(act) through the norm's registry entry only; act [B, Tn, E] is rounded to float32 (the norm API).
template <class T>
std::vector<T> block_norm(const LayerEntry& norm, Mode mode, const Params& p, State* state, int B,
                          int Tn, int E, const std::vector<int>& lengths, const std::vector<T>& act);
// u [n, E] → W2·relu(W1·u + b1) + b2
template <class T>
std::vector<T> block_mlp(const BlockWeights& w, const std::vector<T>& u, int n);
// a + b, element by element
template <class T>
std::vector<T> block_add(const std::vector<T>& a, const std::vector<T>& b);

// The block's attention on act [B, Tn, E] (its queries, keys and values), as one way to run it
// computes it: MHA over the whole batch (block_forward) or one decoding step (block_decode).
template <class T>
using BlockAttend = std::function<std::vector<T>(const std::vector<T>& act)>;
// The block's wiring, the formulas at the top, on act [B, Tn, E] (`lengths` for its norms), the
// attention from `attend`; updates the norms' `state` as their mode says.
template <class T>
std::vector<T> block_step(const LayerEntry& norm, Mode mode, const BlockWeights& w, BlockState& state,
                          int B, int Tn, const std::vector<int>& lengths, const std::vector<T>& act,
                          const BlockAttend<T>& attend);
// A wiring: block_step, or a variant's with the same arguments.
template <class T>
using BlockStepFn = std::function<std::vector<T>(const LayerEntry& norm, Mode mode, const BlockWeights& w,
                                                 BlockState& state, int B, int Tn, const std::vector<int>& lengths,
                                                 const std::vector<T>& act, const BlockAttend<T>& attend)>;
// The KV cache a sequence decodes into, given `own`, a new one for its tokens alone.
template <class T>
using BlockCacheFn = std::function<KvCache<T>&(KvCache<T>& own)>;

// The two ways to run the block with a given wiring: block_forward and block_decode are these
// with block_step and (decode) each sequence's own cache; a variant passes its own.
template <class T>
BlockOutput block_forward_with(const LayerEntry& norm, Mode mode, const BlockWeights& w, BlockState& state,
                               const Batch& x, bool want_weights, const BlockStepFn<T>& step);
template <class T>
BlockOutput block_decode_with(const LayerEntry& norm, Mode mode, const BlockWeights& w, const BlockState& state,
                              const Batch& x, bool want_weights, const BlockStepFn<T>& step,
                              const BlockCacheFn<T>& cache_for);

// A block implementation a row runs: the built-in one (block_entry()), or a variant with its own
// functions (mutants/: a block wired wrong), so a block row can be mutated without a global seam.
// Each function serves both implementations (its `impl` argument) with the contracts above.
using BlockForwardFn = std::function<BlockOutput(const LayerEntry& norm, Impl impl, Mode norm_mode,
                                                 const BlockWeights& w, BlockState& state,
                                                 const Batch& x, bool want_weights)>;
using BlockDecodeFn = std::function<BlockOutput(const LayerEntry& norm, Impl impl, Mode norm_mode,
                                                const BlockWeights& w, const BlockState& state,
                                                const Batch& x, bool want_weights)>;

struct BlockEntry {
  std::string name = "block";  // the prefix of its rows' ids: "block_pre_layer_norm"
  BlockForwardFn forward = block_forward;
  BlockDecodeFn decode = block_decode;
  std::string origin = "builtin";  // builtin | mutant
};

const BlockEntry& block_entry();  // the built-in block: block_forward, block_decode

}  // namespace normcheck
