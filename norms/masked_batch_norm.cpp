// masked_batch_norm: BatchNorm whose statistics count valid tokens only (padding excluded), the
// careful way to use BatchNorm on padded sequences. Padding outputs are 0.
// Backward (batch_norm.cpp): statistics and dγ/dβ over valid tokens only; dx is 0 at padding,
// whose output is the constant 0 (dy there reaches nothing), as in PyTorch's autograd of the
// masked computation (golden/pytorch_grad_golden.json).
#include "norms/batch_norm.hpp"

namespace normcheck {

LayerEntry masked_batch_norm_entry() {
  // every batch-statistics ✗ of batch_norm but padding_invariance: padding is not counted
  return batch_norm_family(
      "masked_batch_norm",
      "γ·(x−μ_d)/√(σ_d²+ε) + β over valid tokens; train: batch μ, σ²; eval: running stats",
      "valid tokens of the batch, per feature", TokenSet::valid_tokens,
      {"batch_independence", "token_independence", "causality", "train_inference_equivalence",
       "streaming_equivalence", "token_scale_invariance", "token_shift_invariance", "nan_containment",
       "shard_invariance"},
      "batch statistics over the valid tokens: padding no longer matters, the neighbours (and so "
      "the shard cut) still do");
}

}  // namespace normcheck
