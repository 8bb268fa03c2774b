// Scaled dot-product attention softmax(q·kᵀ·scale + mask)·v over [B, H, T, d] heads, with a
// key-padding mask, a causal mask aligned bottom-right and a KV cache for incremental decoding.
//
// Both masks keep a prefix of the keys, so query i of sequence b sees exactly the keys
// [0, visible_keys(b, i)):
//   key padding   keys t >= key_lengths[b] are padding (their contents are never read)
//   causal        bottom-right: a block of Tq queries against Tk keys is the last Tq positions,
//                 so query i sees keys j <= Tk − Tq + i (a single decode query sees every key)
// A query that sees no key (fully masked row) yields zeros, never NaN.
//
// reference: double, the scores of each (b, h) materialized as a [Tq, Tk] Eigen matrix.
// optimized: float32, tiled, online softmax (running max and sum per query row, no [Tq, Tk]
//            buffer), OpenMP over (batch, head, block of queries). Three instruction-set paths
//            (kernel_path(), norms/kernels_api.hpp): AVX-512 with FMA (prefill with the queries
//            along the lanes, packed per block; decode with the keys along the lanes), and an
//            8-lane tile for AVX2 with FMA and the x86-64 baseline. On one path each element's
//            operations and their order depend only on the shapes (including whether Tq is 1)
//            and its own row's visible keys — never on the thread count, on which rows share a
//            tile or block — so the results are bitwise the same for any thread count, batch
//            composition or query split. Different paths, and a decode query against the same
//            position inside a prefill on the AVX-512 path, round differently and agree within
//            the tolerance rule. Keys a row does not see may be multiplied for a neighbouring
//            row of its block (causal) without entering its result, never past the sequence's
//            key_lengths. attention/sdpa.cpp says the order of every operation.
#pragma once

#include <cstddef>
#include <vector>

#include <normcheck/norms/tensor.hpp>

namespace normcheck {

struct SdpaShape {
  int B = 1, H = 1;
  int Tq = 1;           // queries per (b, h)
  int Tk = 1;           // keys and values per (b, h)
  int dh = 1;           // query/key width
  int dv = 1;           // value width
  int kv_capacity = 0;  // rows allocated per (b, h) in k and v (a KV cache's capacity); 0 = Tk

  int kv_rows() const { return kv_capacity > 0 ? kv_capacity : Tk; }
  std::size_t q_size() const { return std::size_t(B) * H * Tq * dh; }
  std::size_t k_size() const { return std::size_t(B) * H * kv_rows() * dh; }
  std::size_t v_size() const { return std::size_t(B) * H * kv_rows() * dv; }
  std::size_t out_size() const { return std::size_t(B) * H * Tq * dv; }
  std::size_t weights_size() const { return std::size_t(B) * H * Tq * Tk; }
};

struct SdpaMask {
  std::vector<int> key_lengths;  // [B]: keys t >= key_lengths[b] are padding; empty = none
  bool causal = false;           // bottom-right aligned
};

double default_scale(int dh);  // 1/√dh

// End of the visible key prefix of query i of sequence b (0 = fully masked row).
int visible_keys(const SdpaShape& s, const SdpaMask& m, int b, int i);

// Throws InvalidInput naming the parameter and its value.
void validate_sdpa(const SdpaShape& s, const SdpaMask& m, double scale, std::size_t q_size,
                   std::size_t k_size, std::size_t v_size);

// What every implementation of the contract below does first: validate_sdpa on its arguments,
// then `out` and, when asked for, `weights` set to zeros of their sizes (the zeros a fully masked
// row and a masked key keep).
template <class O, class T>
void start_sdpa(std::vector<O>& out, std::vector<O>* weights, const std::vector<T>& q,
                const std::vector<T>& k, const std::vector<T>& v, const SdpaShape& s,
                const SdpaMask& m, double scale) {
  validate_sdpa(s, m, scale, q.size(), k.size(), v.size());
  out.assign(s.out_size(), O(0));
  if (weights) weights->assign(s.weights_size(), O(0));
}

// out [B, H, Tq, dv]; weights (optional, for inspection) [B, H, Tq, Tk], 0 at masked keys.
// q [B, H, Tq, dh], k [B, H, kv_rows, dh], v [B, H, kv_rows, dv]. T is float or double.
template <class T>
void sdpa_reference(std::vector<double>& out, std::vector<double>* weights,
                    const std::vector<T>& q, const std::vector<T>& k, const std::vector<T>& v,
                    const SdpaShape& s, const SdpaMask& m, double scale);

// Same contract in float32. `weights`, when asked for, is the caller's [B, H, Tq, Tk] buffer:
// each row is recomputed from the kernel's own logits and final running max/sum after the
// row is done (the kernel itself never holds more than a tile of scores).
void sdpa_optimized(std::vector<float>& out, std::vector<float>* weights,
                    const std::vector<float>& q, const std::vector<float>& k,
                    const std::vector<float>& v, const SdpaShape& s, const SdpaMask& m,
                    double scale);

// The optimized kernel's exp on the active path, exposed for its unit test: y[i] = e^x[i] for
// i < n, within 2 ulp of std::exp (subnormal results included), e^−inf = 0, e^x = +inf past
// ln FLT_MAX, NaN → NaN. A fixed polynomial evaluated lane by lane: the same bits for every n.
void sdpa_exp(const float* x, float* y, std::size_t n);

// Testing hook: the optimized kernel is compiled for AVX-512 (with FMA), AVX2 (with FMA) and the
// x86-64 baseline and runs kernel_path()'s (norms/kernels_api.hpp). Selects a path for the calls
// that follow (not while a call runs); false (nothing changed) if the CPU lacks it; best goes
// back to kernel_path()'s.
enum class SdpaPath { best, avx512, avx2, baseline };
bool sdpa_use_path(SdpaPath path);

// The 8-lane tile's fixed sizes (its only scratch: kSdpaQueryTile·dv floats of accumulators per
// thread, a kSdpaQueryTile × kSdpaKeyTile score tile on the stack). The key tile is part of the
// numerics (the per-tile softmax rescaling and the 8-lane tile sums); the query tile is not
// (rows are independent), it only sets the work per task. The AVX-512 kernel has its own
// (sdpa.cpp, namespace z: 64-key tiles, 48-query blocks, fixed-size stack scratch).
constexpr int kSdpaQueryTile = 8;
constexpr int kSdpaKeyTile = 32;

// ---------------------------------------------------------------------------------------------
// KV cache: keys [B, H, capacity, dh] and values [B, H, capacity, dv] of the tokens seen so far
// (every sequence of the cache advances together: decoding uses B = 1).

template <class T>
class KvCache {
 public:
  KvCache(int B, int H, int dh, int dv, int capacity);

  // Appends n tokens: k [B, H, n, dh], v [B, H, n, dv]. Throws InvalidInput (and appends
  // nothing) if the cache would overflow.
  void append(const std::vector<T>& k, const std::vector<T>& v, int n);

  int size() const { return size_; }
  int capacity() const { return capacity_; }
  const std::vector<T>& keys() const { return k_; }
  const std::vector<T>& values() const { return v_; }
  // The shape of a block of Tq queries attending to everything in the cache.
  SdpaShape shape_for(int Tq) const;

 private:
  int B_, H_, dh_, dv_, capacity_, size_ = 0;
  std::vector<T> k_, v_;
};

}  // namespace normcheck
