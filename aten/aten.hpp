// PyTorch's ATen CPU kernels (Debian's libtorch 1.13.1) as external rows of normcheck, so the
// suite reports what the kernels people actually run keep. This header names no ATen type:
// whoever includes it does not pay libtorch's compile time.
//
// Norm rows (registered by register_rows(); reference: normcheck's own double reference of the
// layer of the same name, optimized: the ATen call):
//   aten_layer_norm      at::layer_norm over [B·T, D]
//   aten_group_norm      at::group_norm over [B·T, D] (N = tokens, C = features)
//   aten_instance_norm   at::instance_norm per sequence over its valid tokens ([1, D, L_b])
//   aten_batch_norm      at::batch_norm over [B·T, D] (N = tokens, padding included, C =
//                        features), train and eval; running statistics updated by ATen
//   aten_rms_norm        x·rsqrt(mean(x²) + ε)·γ composed of ATen ops (1.13 has no rms_norm)
// Attention rows (registered by register_rows() too; same contract as sdpa_optimized /
// mha_optimized; reference: the built-in sdpa / mha reference):
//   aten_sdpa_additive, aten_sdpa_masked_fill, aten_sdpa, aten_mha
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "attention/mha.hpp"
#include "attention/registry.hpp"
#include "attention/sdpa.hpp"

namespace normcheck::aten {

// Registers the norm rows with normcheck::register_layer and the attention rows with
// normcheck::register_attention, each with the profile of what ATen violates. Call once, before
// the matrix or the tests enumerate rows; it also takes over ATen's thread count (sync_threads).
void register_rows();

// Makes ATen use the OpenMP thread count the calling thread has now (omp_get_max_threads()),
// which is what normcheck's --threads, OMP_NUM_THREADS and the thread_determinism cells set.
// Needed because ATen's first use in a thread resets OpenMP's count to ATen's own default
// (physical cores: 1 on a 2-vCPU machine). Every row and composition calls it on entry.
void sync_threads();

// What decides these rows' results on this machine, as (key, value) pairs: ATen's version,
// the CPU capability its dispatcher uses (and ATEN_CPU_CAPABILITY), the library behind the BLAS
// symbols ATen calls (libblas.so.3's alternative), OpenMP's and ATen's thread counts.
std::vector<std::pair<std::string, std::string>> environment();

// ---------------------------------------------------------------------------------------------
// Attention, with sdpa_optimized's signature and contract (attention/sdpa.hpp): key padding as a
// prefix, causal aligned bottom-right, a query that sees no key gives zeros (and zero weights).
// Each builds normcheck's mask as ATen users do and then zeros the rows that see no key: ATen
// itself returns NaN there (softmax over −inf only). That is the only correction; everything
// else, NaN propagation included, is ATen's.

// softmax(q·kᵀ·scale + M)·v with an additive float mask M (0 visible, −inf masked): the usual
// composition (nn.MultiheadAttention's attn_mask, Hugging Face's extended attention mask).
void sdpa_additive(std::vector<float>& out, std::vector<float>* weights,
                   const std::vector<float>& q, const std::vector<float>& k,
                   const std::vector<float>& v, const SdpaShape& s, const SdpaMask& m,
                   double scale);

// The same with scores.masked_fill(~visible, −inf) instead of adding the mask.
void sdpa_masked_fill(std::vector<float>& out, std::vector<float>* weights,
                      const std::vector<float>& q, const std::vector<float>& k,
                      const std::vector<float>& v, const SdpaShape& s, const SdpaMask& m,
                      double scale);

// at::_scaled_dot_product_attention (1.13's math path on CPU) with an additive mask. 1.13 has
// no scale argument (it divides q by √dh) and its is_causal is aligned top-left, so q is
// pre-multiplied by scale·√dh and causality goes into the mask.
void sdpa_aten(std::vector<float>& out, std::vector<float>* weights, const std::vector<float>& q,
               const std::vector<float>& k, const std::vector<float>& v, const SdpaShape& s,
               const SdpaMask& m, double scale);

// nn.MultiheadAttention's forward as PyTorch 1.13 composes it (F.multi_head_attention_forward,
// not the fast path): at::linear in-projections, q scaled by 1/√dh, baddbmm with the additive
// mask, softmax, bmm, at::linear out-projection. Same contract as mha_optimized: a query with no
// visible key gets y = b_o.
void mha_aten(std::vector<float>& out, std::vector<float>* weights, const MhaWeights& w,
              const std::vector<float>& query, const std::vector<float>& memory, int B, int Tq,
              int Tk, const SdpaMask& mask);

// The compositions as attention rows: the built-in entry's reference (and, for mha, its
// decoding), the composition as the optimized side, computing the built-in golden op. Their
// expected profile is empty here; register_rows() declares what ATen violates.
AttentionEntry sdpa_additive_entry();
AttentionEntry sdpa_masked_fill_entry();
AttentionEntry sdpa_aten_entry();
// decode_optimized: each chunk through mha_aten against the whole prefix, causal (no KV cache)
AttentionEntry mha_aten_entry();

}  // namespace normcheck::aten
