// Multi-head attention with PyTorch's parameter layout (nn.MultiheadAttention, batch_first):
//   q = query·W_qᵀ + b_q, k = memory·W_kᵀ + b_k, v = memory·W_vᵀ + b_v   (W_q, W_k, W_v: the
//   rows [0, E), [E, 2E), [2E, 3E) of in_proj_weight [3E, E]; biases in in_proj_bias [3E])
//   heads: column block h·dh .. (h+1)·dh of q, k, v (dh = E/H), scale 1/√dh
//   y = concat(sdpa(q_h, k_h, v_h))·W_oᵀ + b_o   (out_proj_weight [E, E], out_proj_bias [E])
// Self-attention passes the same tensor as query and memory. The key-padding mask and the
// causal mask are those of sdpa.hpp; a query with no visible key gets y = b_o (zero attention
// output; PyTorch returns NaN there).
// Decoding: a KvCache holds the projected keys and values of the tokens fed so far (batch of
// one); each step projects the new tokens, appends them and attends bottom-right.
#pragma once

#include <type_traits>
#include <vector>

#include <normcheck/attention/sdpa.hpp>

namespace normcheck {

struct MhaWeights {
  int E = 0, H = 1;
  std::vector<float> in_proj_weight;   // [3E, E]: rows q, k, v
  std::vector<float> in_proj_bias;     // [3E]
  std::vector<float> out_proj_weight;  // [E, E]
  std::vector<float> out_proj_bias;    // [E]
  int head_dim() const { return H > 0 ? E / H : 0; }
};

// Throws InvalidInput naming the parameter ("heads = 3 must divide E = 16", sizes).
void validate_mha(const MhaWeights& w);

// out [B, Tq, E]; weights (optional) [B, H, Tq, Tk], per head. query [B, Tq, E], memory
// [B, Tk, E]; mask.key_lengths refers to memory tokens.
void mha_reference(std::vector<double>& out, std::vector<double>* weights, const MhaWeights& w,
                   const std::vector<double>& query, const std::vector<double>& memory, int B,
                   int Tq, int Tk, const SdpaMask& mask);
void mha_optimized(std::vector<float>& out, std::vector<float>* weights, const MhaWeights& w,
                   const std::vector<float>& query, const std::vector<float>& memory, int B,
                   int Tq, int Tk, const SdpaMask& mask);

// A cache sized for one sequence of up to `capacity` tokens of this attention.
template <class T>
KvCache<T> mha_cache(const MhaWeights& w, int capacity) {
  return KvCache<T>(1, w.H, w.head_dim(), w.head_dim(), capacity);
}

// One decoding step, batch of one: x [n, E] are the next n tokens; their keys and values are
// appended to `cache` (InvalidInput on overflow, nothing appended), their queries attend to the
// whole cache, causally. out [n, E]; weights (optional) [H, n, cache.size() after the step].
void mha_decode_reference(std::vector<double>& out, std::vector<double>* weights,
                          const MhaWeights& w, const std::vector<double>& x, int n,
                          KvCache<double>& cache);
void mha_decode_optimized(std::vector<float>& out, std::vector<float>* weights,
                          const MhaWeights& w, const std::vector<float>& x, int n,
                          KvCache<float>& cache);

// One body for both precisions (as `linear` below): S = double → the reference, float → the
// optimized, same arguments.
template <class S>
void mha_for(std::vector<S>& out, std::vector<S>* weights, const MhaWeights& w, const std::vector<S>& query,
             const std::vector<S>& memory, int B, int Tq, int Tk, const SdpaMask& mask) {
  if constexpr (std::is_same_v<S, double>)
    mha_reference(out, weights, w, query, memory, B, Tq, Tk, mask);
  else
    mha_optimized(out, weights, w, query, memory, B, Tq, Tk, mask);
}
template <class S>
void mha_decode_for(std::vector<S>& out, std::vector<S>* weights, const MhaWeights& w, const std::vector<S>& x,
                    int n, KvCache<S>& cache) {
  if constexpr (std::is_same_v<S, double>)
    mha_decode_reference(out, weights, w, x, n, cache);
  else
    mha_decode_optimized(out, weights, w, x, n, cache);
}

// The reference's intermediate heads, for tolerance bounds: q [B, H, Tq, dh], k, v
// [B, H, Tk, dh], o [B, H, Tq, dh] (attention output before out_proj).
struct MhaHeads {
  std::vector<double> q, k, v, o;
};
MhaHeads mha_reference_heads(const MhaWeights& w, const std::vector<double>& query,
                             const std::vector<double>& memory, int B, int Tq, int Tk,
                             const SdpaMask& mask);

// y[n, O] = x[n, I]·Wᵀ + b, W [O, I]: the projections of the block's MLP use these too.
// The optimized form runs OpenMP over rows; each output is one dot product in index order.
void linear_reference(double* y, const double* x, const float* W, const float* b, int n, int I,
                      int O);
void linear_optimized(float* y, const float* x, const float* W, const float* b, int n, int I,
                      int O);
// One body for both precisions: double → linear_reference, float → linear_optimized.
template <class S>
void linear(S* y, const S* x, const float* W, const float* b, int n, int I, int O) {
  if constexpr (std::is_same_v<S, double>)
    linear_reference(y, x, W, b, n, I, O);
  else
    linear_optimized(y, x, W, b, n, I, O);
}

}  // namespace normcheck
