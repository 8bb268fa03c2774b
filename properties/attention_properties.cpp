// The attention rows of the matrix: `sdpa` (sdpa_cells.cpp) and `mha` (mha_cells.cpp), both
// implementations, one cell per attention property. The property list and its wording live
// here; each family provides one check per property id.
#include <stdexcept>

#include "attention/cell_support.hpp"
#include "attention/cells.hpp"

namespace normcheck {
namespace {

using attn::CheckFn;
using attn::mha_checks;
using attn::sdpa_checks;

// ---------------------------------------------------------------------------------------------
// the registry of attention properties

struct AttentionProperty {
  PropertyInfo column;   // the matrix column (shared with a norm property when ids match)
  PropertyInfo info;     // what the property means for attention
  bool optimized_only = false;
  CheckFn sdpa, mha;
};

CheckFn find(const std::map<std::string, CheckFn>& checks, const std::string& id) {
  const auto it = checks.find(id);
  if (it == checks.end()) throw std::logic_error("attention property '" + id + "' has no check");
  return it->second;
}

const std::vector<AttentionProperty>& attention_registry() {
  static const std::vector<AttentionProperty> all = [] {
    std::vector<AttentionProperty> p;
    const auto sdpa = sdpa_checks(), mha = mha_checks();
    auto add = [&](PropertyInfo info, bool opt_only) {
      p.push_back({info, info, opt_only, find(sdpa, info.id), find(mha, info.id)});
    };
    add({"row_stochastic", "row_stoch",
         "attention weights are ≥ 0, sum to 1 over the visible keys, are 0 at masked keys; a fully masked row is all zeros",
         "sdpa: V = identity (the output is the weight matrix); mha: the per-head weights it exposes",
         "every weight row", "attention is a convex combination of the visible values"},
        false);
    add({"causality", "causality", "outputs at query positions ≤ s do not depend on tokens after s",
         "queries after s and keys/values after s's absolute position (bottom-right) replaced",
         "outputs of queries ≤ s", "no look-ahead: required for autoregressive training"},
        false);
    add({"key_padding_invariance", "key_pad",
         "poison in padded keys and values and extra padding do not change valid outputs",
         "extra padding appended; padded keys/values (and queries) set to NaN, 1e30, or V = 1000",
         "outputs of valid queries", "the key-padding mask really removes padding"},
        false);
    add({"kv_permutation_invariance", "kv_perm",
         "permuting the visible keys together with their values does not change the output (non-causal)",
         "visible key/value rows of each sequence permuted", "every output",
         "attention is a set operation over its keys"},
        false);
    add({"query_permutation_equivariance", "q_perm",
         "permuting the queries permutes the outputs alike (non-causal)", "queries permuted",
         "outputs permuted alike", "queries are independent"},
        false);
    add({"batch_independence", "batch_ind",
         "a sequence's attention output does not depend on the other sequences of its batch",
         "sequence b placed at any index of a batch of 1 to 4 with fresh neighbours",
         "b's outputs", "a sample's result must not depend on its neighbours"},
        false);
    add({"logit_shift_invariance", "logit_shift",
         "adding the same vector to every key (a per-query constant added to its logits) does not change the output",
         "every key plus one vector c (mha: the key bias plus c)", "every output",
         "softmax is shift invariant: the kernel subtracts a maximum, never an absolute reference"},
        false);
    add({"value_affine_equivariance", "v_affine",
         "v → a·v + b gives a·out + b for every query that sees a key",
         "values mapped v → a·v + b (mha: W_v, b_v changed accordingly)",
         "outputs vs a·out + b (mha: through out_proj)", "weights sum to exactly one convex combination"},
        false);
    add({"kv_cache_equivalence", "kv_cache",
         "prefill + decode and chunked prefill (chunks 1, 2, 3, L) through a KV cache equal one full causal forward",
         "the sequence fed through a KV cache in chunks", "every output",
         "incremental decoding computes what training computed (bottom-right causal alignment)"},
        false);
    add({"large_logit_stability", "big_logits",
         "logits up to ±1e4 give finite outputs that match the reference",
         "q, k with logits up to ±1e4 (sdpa: exact in float32)",
         "every output vs the reference (optimized) or a long double evaluation (reference)",
         "the softmax subtracts the row maximum: no overflow"},
        false);
    add({"reference_agreement", "ref_agree",
         "the optimized kernel agrees with the reference within the tolerance rule (attention cond)",
         "the same input through the double-precision reference (sharper logits, poisoned padding)",
         "every output and every attention weight", "the fast kernel computes the same function"},
        true);
    add({"thread_determinism", "threads",
         "the optimized output is bitwise the same for 1, 2, 3 and 4 OpenMP threads",
         "the same input with another thread count (large cases reach the parallel path)",
         "every output and weight, bitwise", "results never depend on the machine's parallelism"},
        true);
    return p;
  }();
  return all;
}

}  // namespace

std::vector<PropertyInfo> attention_properties() {
  std::vector<PropertyInfo> out;
  for (const auto& p : attention_registry()) out.push_back(p.column);
  return out;
}

std::vector<Cell> attention_cells() {
  std::vector<Cell> cells;
  for (const char* row : {"sdpa", "mha"})
    for (Impl impl : {Impl::reference, Impl::optimized})
      for (const auto& p : attention_registry()) {
        Cell c;
        c.row_id = row;
        c.row_name = row;
        c.layer = row;
        c.impl = impl;
        c.prop = p.info;
        c.expected = p.optimized_only && impl == Impl::reference ? Expect::not_applicable
                                                                 : Expect::holds;
        auto fn = std::string(row) == "sdpa" ? p.sdpa : p.mha;
        c.check_case = [fn, impl] { return fn(impl); };
        cells.push_back(std::move(c));
      }
  return cells;
}

SdpaKernelFn& sdpa_cells_kernel() {
  static SdpaKernelFn kernel = sdpa_optimized;
  return kernel;
}

}  // namespace normcheck
