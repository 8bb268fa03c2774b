// masked_batch_norm: BatchNorm whose statistics count valid tokens only (padding excluded), the
// careful way to use BatchNorm on padded sequences. Padding outputs are 0.
// Backward (batch_norm.cpp): statistics and dγ/dβ over valid tokens only; dx is 0 at padding,
// whose output is the constant 0 (dy there reaches nothing), as in PyTorch's autograd of the
// masked computation (golden/pytorch_grad_golden.json).
#include "norms/batch_norm.hpp"

namespace normcheck {

LayerEntry masked_batch_norm_entry() {
  LayerEntry e;
  e.name = "masked_batch_norm";
  e.formula = "γ·(x−μ_d)/√(σ_d²+ε) + β over valid tokens; train: batch μ, σ²; eval: running stats";
  e.statistics_over = "valid tokens of the batch, per feature";
  e.params = {.affine = true, .momentum = true};
  e.rows = {
      {Mode::train,
       {"batch_independence", "token_independence", "causality", "train_inference_equivalence",
        "streaming_equivalence", "token_scale_invariance", "token_shift_invariance",
        "nan_containment"},
       "batch statistics over the valid tokens: padding no longer matters, the neighbours still do"},
      {Mode::eval,
       {"token_scale_invariance", "global_scale_invariance", "token_shift_invariance",
        "feature_shift_invariance", "feature_scale_invariance"},
       "a fixed per-feature affine map: nothing is re-normalized"},
  };
  e.reference = [](const Batch& in, const Params& p, Mode m, State* s, Output& o) {
    batch_norm_reference(in, p, m, s, o, TokenSet::valid_tokens);
  };
  e.optimized = [](const Batch& in, const Params& p, Mode m, State* s, Output& o) {
    batch_norm_optimized(in, p, m, s, o, TokenSet::valid_tokens);
  };
  e.backward_reference = [](const Batch& in, const Params& p, Mode m, const State* s,
                            const std::vector<float>& dy, Grads& g) {
    batch_norm_backward_reference(in, p, m, s, dy, g, TokenSet::valid_tokens);
  };
  e.backward_optimized = [](const Batch& in, const Params& p, Mode m, const State* s,
                            const std::vector<float>& dy, Grads& g) {
    batch_norm_backward_optimized(in, p, m, s, dy, g, TokenSet::valid_tokens);
  };
  e.conditioning = [](const Batch& in, const Params& p, Mode m, const State* s) {
    return batch_norm_conditioning(in, p, m, s, TokenSet::valid_tokens);
  };
  return e;
}

}  // namespace normcheck
