// The attention family: every attention entry of the registry (catalog.cpp's attention rows), on
// both implementations. One property per id; its check runs the case code of the row's op
// (sdpa_properties.cpp, mha_properties.cpp) on the row's entry. Properties that share an id
// with a norm property (batch_independence, causality, reference_agreement, thread_determinism)
// share its matrix column; their text in catalogue.json says what they mean for attention.
#include "properties/attention_cases.hpp"
#include "properties/families.hpp"
#include "properties/texts.hpp"

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
  // a property's id and the case code of each op (its words are in catalogue.json)
  struct Declared {
    const char* id;
    attn::Case *sdpa, *mha;
    Comparison comparison = Comparison::values;
    Applicability applies = {};
  };
  const Applicability optimized = {.optimized_only = true};
  std::vector<Property> code;
  for (const Declared& p : std::initializer_list<Declared>{
           {"row_stochastic", sdpa::row_stochastic, mha::row_stochastic},
           {"causality", sdpa::causality, mha::causality},
           {"key_padding_invariance", sdpa::key_padding_invariance, mha::key_padding_invariance},
           {"kv_permutation_invariance", sdpa::kv_permutation_invariance, mha::kv_permutation_invariance},
           {"query_permutation_equivariance", sdpa::query_permutation_equivariance,
            mha::query_permutation_equivariance},
           {"batch_independence", sdpa::batch_independence, mha::batch_independence},
           {"logit_shift_invariance", sdpa::logit_shift_invariance, mha::logit_shift_invariance},
           {"value_affine_equivariance", sdpa::value_affine_equivariance, mha::value_affine_equivariance},
           {"kv_cache_equivalence", sdpa::kv_cache_equivalence, mha::kv_cache_equivalence},
           {"large_logit_stability", sdpa::large_logit_stability, mha::large_logit_stability},
           {.id = "reference_agreement", .sdpa = sdpa::reference_agreement, .mha = mha::reference_agreement,
            .applies = optimized},
           {.id = "thread_determinism", .sdpa = sdpa::thread_determinism, .mha = mha::thread_determinism,
            .comparison = Comparison::bitwise, .applies = optimized},
           // Semantic pins: each implementation against the masks' own formulas
           // (attention_cases.hpp, spec_visible), so that a mask wrong the same way in both
           // implementations fails.
           {"causal_mask_semantics", sdpa::causal_mask_semantics, mha::causal_mask_semantics},
           {"key_padding_semantics", sdpa::key_padding_semantics, mha::key_padding_semantics},
       })
    code.push_back({.info = {.id = p.id},
                    .comparison = p.comparison,
                    .applies = p.applies,
                    .check = counted(p.id, by_op(p.sdpa, p.mha))});
  return declared(Family::attention, std::move(code));
}

}  // namespace normcheck
