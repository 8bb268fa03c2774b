// The attention family: every attention entry of the registry (catalog.cpp's attention rows), on
// both implementations. One property per id; its check runs the case code of the row's op
// (sdpa_properties.cpp, mha_properties.cpp) on the row's entry. Properties that share an id
// with a norm property (batch_independence, causality, reference_agreement, thread_determinism)
// share its matrix column; their PropertyInfo here says what they mean for attention.
#include "properties/attention_cases.hpp"
#include "properties/families.hpp"

namespace normcheck {
namespace {

// The check of a property: the case code of the row's op, inside a CaseScope that counts what
// the case drew for its cell (attention_cases.hpp).
CheckFn by_op(attn::Case* sdpa, attn::Case* mha) {
  return [sdpa, mha](const Row& row, Impl impl) {
    return (row.attention->op == AttentionOp::sdpa ? sdpa : mha)(*row.attention, impl);
  };
}

CheckFn counted(std::string property, CheckFn check) {
  return [property = std::move(property), check = std::move(check)](const Row& row, Impl impl) {
    attn::CaseScope scope(row.info.id + "/" + to_string(impl) + "/" + property);
    return check(row, impl);
  };
}

}  // namespace

std::vector<Property> attention_properties() {
  namespace sdpa = attn::sdpa;
  namespace mha = attn::mha;
  std::vector<Property> all = {
      {.info = {"row_stochastic", "row_stoch",
                "attention weights are ≥ 0, sum to 1 over the visible keys, are 0 at masked keys; a fully "
                "masked row is all zeros",
                "sdpa: V = identity (the output is the weight matrix); mha: the per-head weights it exposes",
                "every weight row", "attention is a convex combination of the visible values"},
       .family = Family::attention, .check = by_op(sdpa::row_stochastic, mha::row_stochastic)},
      {.info = {"causality", "causality", "outputs at query positions ≤ s do not depend on tokens after s",
                "queries after s and keys/values after s's absolute position (bottom-right) replaced",
                "outputs of queries ≤ s", "no look-ahead: required for autoregressive training"},
       .family = Family::attention, .check = by_op(sdpa::causality, mha::causality)},
      {.info = {"key_padding_invariance", "key_pad",
                "poison in padded keys and values and extra padding do not change valid outputs",
                "extra padding appended; padded keys/values (and queries) set to NaN, 1e30, or V = 1000",
                "outputs of valid queries", "the key-padding mask really removes padding"},
       .family = Family::attention, .check = by_op(sdpa::key_padding_invariance, mha::key_padding_invariance)},
      {.info = {"kv_permutation_invariance", "kv_perm",
                "permuting the visible keys together with their values does not change the output (non-causal)",
                "visible key/value rows of each sequence permuted", "every output",
                "attention is a set operation over its keys"},
       .family = Family::attention,
       .check = by_op(sdpa::kv_permutation_invariance, mha::kv_permutation_invariance)},
      {.info = {"query_permutation_equivariance", "q_perm",
                "permuting the queries permutes the outputs alike (non-causal)", "queries permuted",
                "outputs permuted alike", "queries are independent"},
       .family = Family::attention,
       .check = by_op(sdpa::query_permutation_equivariance, mha::query_permutation_equivariance)},
      {.info = {"batch_independence", "batch_ind",
                "a sequence's attention output does not depend on the other sequences of its batch",
                "sequence b placed at any index of a batch of 1 to 4 with fresh neighbours", "b's outputs",
                "a sample's result must not depend on its neighbours"},
       .family = Family::attention, .check = by_op(sdpa::batch_independence, mha::batch_independence)},
      {.info = {"logit_shift_invariance", "logit_shift",
                "adding the same vector to every key (a per-query constant added to its logits) does not "
                "change the output", "every key plus one vector c (mha: the key bias plus c)", "every output",
                "softmax is shift invariant: the kernel subtracts a maximum, never an absolute reference"},
       .family = Family::attention,
       .check = by_op(sdpa::logit_shift_invariance, mha::logit_shift_invariance)},
      {.info = {"value_affine_equivariance", "v_affine",
                "v → a·v + b gives a·out + b for every query that sees a key",
                "values mapped v → a·v + b (mha: W_v, b_v changed accordingly)",
                "outputs vs a·out + b (mha: through out_proj)", "weights sum to exactly one convex combination"},
       .family = Family::attention,
       .check = by_op(sdpa::value_affine_equivariance, mha::value_affine_equivariance)},
      {.info = {"kv_cache_equivalence", "kv_cache",
                "prefill + decode and chunked prefill (chunks 1, 2, 3, L) through a KV cache equal one full "
                "causal forward", "the sequence fed through a KV cache in chunks", "every output",
                "incremental decoding computes what training computed (bottom-right causal alignment)"},
       .family = Family::attention, .check = by_op(sdpa::kv_cache_equivalence, mha::kv_cache_equivalence)},
      {.info = {"large_logit_stability", "big_logits",
                "logits up to ±1e4 give finite outputs that match the reference",
                "q, k with logits up to ±1e4 (sdpa: exact in float32)",
                "every output vs the reference (optimized) or a long double evaluation (reference)",
                "the softmax subtracts the row maximum: no overflow"},
       .family = Family::attention, .check = by_op(sdpa::large_logit_stability, mha::large_logit_stability)},
      {.info = {"reference_agreement", "ref_agree",
                "the optimized kernel agrees with the reference within the tolerance rule (attention cond)",
                "the same input through the double-precision reference (sharper logits, poisoned padding)",
                "every output and every attention weight", "the fast kernel computes the same function"},
       .family = Family::attention, .applies = {.optimized_only = true},
       .check = by_op(sdpa::reference_agreement, mha::reference_agreement)},
      {.info = {"thread_determinism", "threads",
                "the optimized output is bitwise the same for 1, 2, 3 and 4 OpenMP threads",
                "the same input with another thread count (large cases reach the parallel path)",
                "every output and weight, bitwise", "results never depend on the machine's parallelism"},
       .family = Family::attention, .comparison = Comparison::bitwise, .applies = {.optimized_only = true},
       .check = by_op(sdpa::thread_determinism, mha::thread_determinism)},
      // Semantic pins: each implementation against the masks' own formulas (attention_cases.hpp,
      // spec_visible), so that a mask wrong the same way in both implementations fails.
      {.info = {"causal_mask_semantics", "causal_sem",
                "query i of causal attention (Tq queries, Tk keys) equals non-causal attention over keys "
                "0 to Tk − Tq + i alone: the last query sees every key, a query that sees one key returns "
                "its value",
                "each query alone, without a mask, against its visible prefix of keys (counted from the "
                "spec, not by the kernels); v_0 itself (mha: out_proj(v_0)) for a query that sees one key",
                "every query's output",
                "the causal mask is aligned bottom-right, includes the diagonal and masks nothing else"},
       .family = Family::attention, .check = by_op(sdpa::causal_mask_semantics, mha::causal_mask_semantics)},
      {.info = {"key_padding_semantics", "pad_sem",
                "with key lengths L_b, every query equals unmasked attention over the first L_b keys; L_b = 0 "
                "gives zeros (mha: out_proj_bias)",
                "padded keys/values poisoned (NaN, ±inf, 1e30); compared with each sequence's queries "
                "against its first L_b keys only, without a mask (causal: each query's prefix)",
                "every query's output",
                "the key-padding mask removes exactly the padded keys"},
       .family = Family::attention, .check = by_op(sdpa::key_padding_semantics, mha::key_padding_semantics)},
  };
  for (auto& p : all) p.check = counted(p.id(), std::move(p.check));
  return all;
}

}  // namespace normcheck
