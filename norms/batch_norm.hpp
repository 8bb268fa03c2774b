// BatchNorm over a padded [B, T, D] batch: per-feature statistics over tokens. The naive use
// (batch_norm) counts every B·T position, padding included; masked_batch_norm counts valid
// tokens only. Train mode normalizes with the batch's biased variance and updates the running
// statistics with the unbiased one (PyTorch); eval mode uses the running statistics.
#pragma once

#include "norms/registry.hpp"

namespace normcheck {

enum class TokenSet { all_positions, valid_tokens };

void batch_norm_reference(const Batch& in, const Params& p, Mode mode, State* state, Output& out,
                          TokenSet tokens);
void batch_norm_optimized(const Batch& in, const Params& p, Mode mode, State* state, Output& out,
                          TokenSet tokens);
// Backward of the two above: train through the batch statistics over the selected tokens, eval
// elementwise; dx = 0 at positions not selected, dγ/dβ over the selected ones. Never updates
// `state`.
void batch_norm_backward_reference(const Batch& in, const Params& p, Mode mode, const State* state,
                                   const std::vector<float>& dy, Grads& out, TokenSet tokens);
void batch_norm_backward_optimized(const Batch& in, const Params& p, Mode mode, const State* state,
                                   const std::vector<float>& dy, Grads& out, TokenSet tokens);
// The optimized backward's two halves (batch_norm_backward_kernel is the one after the other),
// for a layer whose workers all-reduce the sums between them (sync_batch_norm). No validation.
// sums: [2·D] written: Σ dy·(x − μ), then Σ dy, per feature over the selected positions of a
// [B, T, D] batch (lengths: nullptr for every position), in double over fixed row segments
// (kernels::reduce_row_segments: the same bits at any thread count).
void batch_norm_backward_sums(double* sums, const float* dy, const float* x, int B, int T, int D,
                              const int* lengths, const double* mean);
// dx at every position from such sums over n selected positions (the gradient through the
// statistics when `train`; 0 at positions not selected), elementwise in float, OpenMP over rows;
// dγ = Σ dy·x̂ and dβ = Σ dy from the sums (nullptr: not written). gamma: [D] or nullptr (1).
void batch_norm_backward_apply(float* dx, float* dgamma, float* dbeta, const double* sums,
                               long long n, const float* dy, const float* x, const float* gamma,
                               int B, int T, int D, const int* lengths, const double* mean,
                               const double* var, double eps, bool train);
// Validates a BatchNorm-family call (shapes, γ/β, ε, momentum, mode, state, more than one
// selected token in train mode) and returns the number of selected tokens. Nothing is written.
long long check_batch_norm_inputs(const Batch& in, const Params& p, Mode mode, const State* state,
                                  TokenSet tokens, const char* layer_name);

// Per-feature mean and biased variance over the selected tokens (n of them), accumulated in
// double in a fixed order; OpenMP over feature blocks. Shared by the BatchNorm family.
void batch_feature_stats(const Batch& in, TokenSet tokens, long long n, std::vector<double>& mean,
                         std::vector<double>& var);

Conditioning batch_norm_conditioning(const Batch& in, const Params& p, Mode mode,
                                     const State* state, TokenSet tokens);

// The entry pieces of a BatchNorm-family layer over `tokens`: its forward and backward
// functions, its conditioning, and the eval row every member shares (a fixed per-feature affine
// map).
ForwardFn batch_norm_forward(Impl impl, TokenSet tokens);
ConditioningFn batch_norm_conditioning(TokenSet tokens);
BackwardFn batch_norm_backward(Impl impl, TokenSet tokens);
RowProfile frozen_affine_eval_row();
// A BatchNorm over `tokens` whose train row violates `train` for the reason `why`; its eval row
// is the frozen affine map.
LayerEntry batch_norm_family(std::string name, std::string formula, std::string statistics_over,
                             TokenSet tokens, std::set<std::string> train, std::string why);

}  // namespace normcheck
