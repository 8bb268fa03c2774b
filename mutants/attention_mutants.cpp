// Mutants of attention and of the Transformer block: the bug classes of public trackers
// (FlashAttention ports, PyTorch, ONNX Runtime, llama.cpp), each an attention entry with two
// implementations or a block entry, run through the same cells as the built-in rows.
#include <cmath>
#include <deque>
#include <limits>
#include <memory>

#include "mutants/mutants.hpp"

namespace normcheck {
namespace {

// ---------------------------------------------------------------------------------------------
// a FlashAttention-style float32 kernel with one defect at a time

enum class FlashBug {
  none,
  // the online softmax rescales the running sum but not the accumulator when a later key tile
  // raises a row's running maximum
  accumulator_not_rescaled,
  // the keys of a partial last key tile are skipped once a row sees more than one tile (a loop
  // over whole tiles only)
  partial_last_tile_dropped,
  // p·v runs over the widest row of the query tile with p = 0 for the keys a row does not see:
  // 0·NaN and 0·inf are NaN
  pv_over_widest_row,
};

// softmax(q·kᵀ·scale + mask)·v, scalar float32, queries in tiles of kSdpaQueryTile rows and keys
// in tiles of kSdpaKeyTile at absolute positions, a running maximum, sum and accumulator per
// row; the masks are the kernels' (visible_keys). Weights from the final maximum and sum.
void flash_sdpa(Output& out, std::vector<double>* weights, const std::vector<float>& q,
                const std::vector<float>& k, const std::vector<float>& v, const SdpaShape& s,
                const SdpaMask& m, double scale, FlashBug bug) {
  start_sdpa(out, weights, q, k, v, s, m, scale);
  const float sc = float(scale), inf = std::numeric_limits<float>::infinity();
  for (int b = 0; b < s.B; ++b)
    for (int h = 0; h < s.H; ++h) {
      const std::size_t bh = std::size_t(b) * s.H + h;
      const float* K = &k[bh * s.kv_rows() * s.dh];
      const float* V = &v[bh * s.kv_rows() * s.dv];
      auto score = [&](int i, int j) {
        float a = 0;
        for (int d = 0; d < s.dh; ++d) a += q[(bh * s.Tq + i) * s.dh + d] * K[std::size_t(j) * s.dh + d];
        return a * sc;
      };
      for (int i0 = 0; i0 < s.Tq; i0 += kSdpaQueryTile) {
        const int rows = std::min(kSdpaQueryTile, s.Tq - i0);
        int widest = 0;
        std::vector<int> n(rows);
        for (int r = 0; r < rows; ++r) widest = std::max(widest, n[r] = visible_keys(s, m, b, i0 + r));
        for (int r = 0; r < rows; ++r) {
          const int i = i0 + r;
          float mx = -inf, sum = 0;
          std::vector<float> acc(s.dv, 0.0f);
          for (int j0 = 0; j0 < n[r]; j0 += kSdpaKeyTile) {
            const int end = std::min(n[r], j0 + kSdpaKeyTile);
            if (bug == FlashBug::partial_last_tile_dropped && j0 > 0 && end - j0 < kSdpaKeyTile) break;
            float tile_max = -inf;
            for (int j = j0; j < end; ++j) tile_max = std::max(tile_max, score(i, j));
            const float new_max = std::max(mx, tile_max);
            const float correction = std::exp(mx - new_max);  // 0 on the first tile
            sum *= correction;
            if (bug != FlashBug::accumulator_not_rescaled || j0 == 0)
              for (auto& a : acc) a *= correction;
            const int pv_end = bug == FlashBug::pv_over_widest_row ? std::min(widest, j0 + kSdpaKeyTile) : end;
            for (int j = j0; j < pv_end; ++j) {
              const float p = j < end ? std::exp(score(i, j) - new_max) : 0.0f;
              if (j < end) sum += p;
              for (int c = 0; c < s.dv; ++c) acc[c] += p * V[std::size_t(j) * s.dv + c];
            }
            mx = new_max;
          }
          if (n[r] == 0) continue;  // fully masked: zeros
          for (int c = 0; c < s.dv; ++c) out[(bh * s.Tq + i) * s.dv + c] = acc[c] / sum;
          if (weights)
            for (int j = 0; j < n[r]; ++j)
              (*weights)[(bh * s.Tq + i) * s.Tk + j] = std::exp(score(i, j) - mx) / sum;
        }
      }
    }
}

SdpaFn flash(FlashBug bug) {
  return [bug](Output& out, std::vector<double>* weights, const std::vector<float>& q, const std::vector<float>& k,
               const std::vector<float>& v, const SdpaShape& s, const SdpaMask& m, double scale) {
    flash_sdpa(out, weights, q, k, v, s, m, scale, bug);
  };
}

// ---------------------------------------------------------------------------------------------
// masks wrong in both implementations

// Which keys query i of sequence b sees, as a (wrong) mask computes it.
using VisibleFn = std::function<int(const SdpaShape& s, const SdpaMask& m, int b, int i)>;

// `real` (a kernel computing the right function) under another mask: each query row, all heads
// at once, against its `visible` keys without a mask; zeros where it sees none.
SdpaFn masked_by(SdpaFn real, VisibleFn visible) {
  return [real, visible](Output& out, std::vector<double>* weights, const std::vector<float>& q,
                         const std::vector<float>& k, const std::vector<float>& v, const SdpaShape& s,
                         const SdpaMask& m, double scale) {
    start_sdpa(out, weights, q, k, v, s, m, scale);
    for (int b = 0; b < s.B; ++b)
      for (int i = 0; i < s.Tq; ++i) {
        const int n = std::clamp(visible(s, m, b, i), 0, s.Tk);
        if (n == 0) continue;
        const SdpaShape one{1, s.H, 1, n, s.dh, s.dv, 0};
        std::vector<float> qq, kk, vv;
        for (int h = 0; h < s.H; ++h) {
          const std::size_t bh = std::size_t(b) * s.H + h;
          qq.insert(qq.end(), q.begin() + (bh * s.Tq + i) * s.dh, q.begin() + (bh * s.Tq + i + 1) * s.dh);
          kk.insert(kk.end(), k.begin() + bh * s.kv_rows() * s.dh, k.begin() + (bh * s.kv_rows() + n) * s.dh);
          vv.insert(vv.end(), v.begin() + bh * s.kv_rows() * s.dv, v.begin() + (bh * s.kv_rows() + n) * s.dv);
        }
        Output o;
        std::vector<double> w;
        real(o, weights ? &w : nullptr, qq, kk, vv, one, SdpaMask{}, scale);
        for (int h = 0; h < s.H; ++h) {
          const std::size_t row = (std::size_t(b) * s.H + h) * s.Tq + i;
          std::copy_n(o.begin() + std::size_t(h) * s.dv, s.dv, out.begin() + row * s.dv);
          if (weights) std::copy_n(w.begin() + std::size_t(h) * n, n, weights->begin() + row * s.Tk);
        }
      }
  };
}

int key_limit(const SdpaMask& m, int b, int Tk) { return m.key_lengths.empty() ? Tk : m.key_lengths[b]; }

// top-left: query i sees keys [0, i] (a decode query against a cache sees only key 0)
int top_left(const SdpaShape& s, const SdpaMask& m, int b, int i) {
  return m.causal ? std::min(i + 1, key_limit(m, b, s.Tk)) : key_limit(m, b, s.Tk);
}

// the causal mask without the diagonal: query i sees keys j < Tk − Tq + i
int diagonal_masked(const SdpaShape& s, const SdpaMask& m, int b, int i) {
  const int limit = key_limit(m, b, s.Tk);
  return m.causal ? std::min(limit, s.Tk - s.Tq + i) : limit;
}

// ---------------------------------------------------------------------------------------------
// multi-head attention bugs

// The key-padding mask applied to the queries: keys unmasked, padded query rows given the
// output of a query that sees nothing (out_proj_bias).
MhaFn padding_on_queries(MhaFn real) {
  return [real](Output& out, std::vector<double>* weights, const MhaWeights& w, const std::vector<float>& query,
                const std::vector<float>& memory, int B, int Tq, int Tk, const SdpaMask& m) {
    SdpaMask keys_unmasked = m;
    keys_unmasked.key_lengths.clear();
    real(out, weights, w, query, memory, B, Tq, Tk, keys_unmasked);
    if (m.key_lengths.empty()) return;
    for (int b = 0; b < B; ++b)
      for (int t = std::min(m.key_lengths[b], Tq); t < Tq; ++t)
        std::copy(w.out_proj_bias.begin(), w.out_proj_bias.end(), out.begin() + (std::size_t(b) * Tq + t) * w.E);
  };
}

// softmax over no key computed as 0/0: a fully masked query's output is NaN.
MhaFn nan_for_fully_masked(MhaFn real) {
  return [real](Output& out, std::vector<double>* weights, const MhaWeights& w, const std::vector<float>& query,
                const std::vector<float>& memory, int B, int Tq, int Tk, const SdpaMask& m) {
    real(out, weights, w, query, memory, B, Tq, Tk, m);
    const SdpaShape s{B, w.H, Tq, Tk, w.head_dim(), w.head_dim(), 0};
    for (int b = 0; b < B; ++b)
      for (int i = 0; i < Tq; ++i)
        if (visible_keys(s, m, b, i) == 0) {
          std::fill_n(out.begin() + (std::size_t(b) * Tq + i) * w.E, w.E, std::numeric_limits<double>::quiet_NaN());
          if (weights)
            for (int h = 0; h < w.H; ++h)
              std::fill_n(weights->begin() + ((std::size_t(b) * w.H + h) * Tq + i) * Tk, Tk,
                          std::numeric_limits<double>::quiet_NaN());
        }
  };
}

// A KV cache not cleared between sequences: each sequence decodes after the previous one's
// tokens, which stay in the cache.
MhaDecodeFn cache_keeps_previous_sequence(MhaDecodeFn real) {
  auto previous = std::make_shared<std::vector<float>>();
  return [real, previous](Output& out, const MhaWeights& w, const std::vector<float>& x,
                          const std::vector<int>& chunks) {
    std::vector<float> tokens = previous->size() % std::size_t(w.E) == 0 ? *previous : std::vector<float>{};
    const int kept = int(tokens.size() / std::size_t(w.E));
    tokens.insert(tokens.end(), x.begin(), x.end());
    std::vector<int> all_chunks = chunks;
    if (kept > 0) all_chunks.insert(all_chunks.begin(), kept);
    Output y;
    real(y, w, tokens, all_chunks);
    out.assign(y.begin() + std::size_t(kept) * w.E, y.end());
    *previous = x;
  };
}

// ---------------------------------------------------------------------------------------------
// the Transformer block wired wrong (both implementations, both ways to run it)

enum class Wiring {
  pre_residual_from_normed,   // Pre-LN h = N1(x) + MHA(N1(x))
  post_residual_from_input,   // Post-LN y = N2(x + MLP(h))
  decode_cache_shared,        // decoding keeps one KV cache for the whole batch
};

// block_step with the bug's wiring where the block's placement has it: the block's own parts
// (block_norm, block_mlp, block_add) composed as the bug composes them; elsewhere block_step.
template <class T>
BlockStepFn<T> miswired(Wiring bug) {
  return [bug](const LayerEntry& norm, Mode mode, const BlockWeights& w, BlockState& st, int B, int Tn,
               const std::vector<int>& lengths, const std::vector<T>& in, const BlockAttend<T>& attend) {
    const int E = w.attn.E, n = B * Tn;
    auto N = [&](const Params& p, State* state, const std::vector<T>& act) {
      return block_norm(norm, mode, p, state, B, Tn, E, lengths, act);
    };
    if (bug == Wiring::pre_residual_from_normed && w.placement == Placement::pre) {  // h = N1(x) + MHA(N1(x))
      const auto a = N(w.norm1, &st.norm1, in);
      const auto h = block_add(a, attend(a));
      return block_add(h, block_mlp(w, N(w.norm2, &st.norm2, h), n));
    }
    if (bug == Wiring::post_residual_from_input && w.placement == Placement::post) {  // y = N2(x + MLP(h))
      const auto h = N(w.norm1, &st.norm1, block_add(in, attend(in)));
      return N(w.norm2, &st.norm2, block_add(in, block_mlp(w, h, n)));
    }
    return block_step(norm, mode, w, st, B, Tn, lengths, in, attend);
  };
}

// The block's two ways to run it (block_forward_with, block_decode_with) wired wrong, or
// (decode_cache_shared) decoding every sequence of the batch into one KV cache.
template <class T>
BlockOutput wired_forward(const LayerEntry& norm, Mode mode, const BlockWeights& w, BlockState& st,
                          const Batch& x, bool want_weights, Wiring bug) {
  return block_forward_with<T>(norm, mode, w, st, x, want_weights, miswired<T>(bug));
}

template <class T>
BlockOutput wired_decode(const LayerEntry& norm, Mode mode, const BlockWeights& w, const BlockState& st,
                         const Batch& x, bool want_weights, Wiring bug) {
  std::unique_ptr<KvCache<T>> shared;  // made for every token of the batch when the first sequence starts
  auto cache_for = [&](KvCache<T>& own) -> KvCache<T>& {
    if (bug != Wiring::decode_cache_shared) return own;
    if (!shared) {
      int total = 0;
      for (int l : x.lengths) total += l;
      shared = std::make_unique<KvCache<T>>(mha_cache<T>(w.attn, total));
    }
    return *shared;
  };
  return block_decode_with<T>(norm, mode, w, st, x, want_weights, miswired<T>(bug), cache_for);
}

BlockEntry wired(const std::string& name, Wiring bug) {
  return {.name = name,
          .forward = [bug](const LayerEntry& norm, Impl impl, Mode mode, const BlockWeights& w, BlockState& st,
                           const Batch& x, bool want_weights) {
            return impl == Impl::reference ? wired_forward<double>(norm, mode, w, st, x, want_weights, bug)
                                           : wired_forward<float>(norm, mode, w, st, x, want_weights, bug);
          },
          .decode = [bug](const LayerEntry& norm, Impl impl, Mode mode, const BlockWeights& w, const BlockState& st,
                          const Batch& x, bool want_weights) {
            return impl == Impl::reference ? wired_decode<double>(norm, mode, w, st, x, want_weights, bug)
                                           : wired_decode<float>(norm, mode, w, st, x, want_weights, bug);
          },
          .origin = "mutant"};
}

// ---------------------------------------------------------------------------------------------
// the list

struct AttentionSpec {
  std::string id, bug;
  AttentionEntry entry;
};

AttentionEntry sdpa_variant(const std::string& id, SdpaFn reference, SdpaFn optimized) {
  AttentionEntry e = sdpa_entry();
  e.name = "mutant_" + id;
  e.origin = "mutant";
  e.computes = "sdpa";
  if (reference) e.sdpa_reference = std::move(reference);
  if (optimized) e.sdpa_optimized = std::move(optimized);
  return e;
}

AttentionEntry mha_variant(const std::string& id, std::function<MhaFn(MhaFn)> both,
                           std::function<MhaDecodeFn(MhaDecodeFn)> both_decode = {}) {
  AttentionEntry e = mha_entry();
  e.name = "mutant_" + id;
  e.origin = "mutant";
  e.computes = "mha";
  if (both) {
    e.mha_reference = both(e.mha_reference);
    e.mha_optimized = both(e.mha_optimized);
  }
  if (both_decode) {
    e.decode_reference = both_decode(e.decode_reference);
    e.decode_optimized = both_decode(e.decode_optimized);
  }
  return e;
}

std::vector<AttentionSpec> attention_specs() {
  const AttentionEntry real = sdpa_entry();
  return {
      {"sdpa_top_left_causal",
       "causal mask aligned top-left in the optimized kernel: a decode query against a cache of L keys sees only key 0",
       sdpa_variant("sdpa_top_left_causal", {}, masked_by(real.sdpa_optimized, top_left))},
      {"sdpa_online_softmax_no_rescale",
       "FlashAttention port: a later key tile raises a row's running max and the accumulator is not rescaled "
       "(the sum is)",
       sdpa_variant("sdpa_online_softmax_no_rescale", {}, flash(FlashBug::accumulator_not_rescaled))},
      {"sdpa_partial_last_key_tile_dropped",
       "tiled kernel that loops over whole key tiles only: keys of a partial last tile are skipped when a row sees "
       "more than one tile (sequence length not a multiple of the block size)",
       sdpa_variant("sdpa_partial_last_key_tile_dropped", {}, flash(FlashBug::partial_last_tile_dropped))},
      {"sdpa_pv_zero_times_nan",
       "p·v over the widest causal row of a query tile with p = 0 for a row's masked keys: 0·NaN leaks poison from "
       "masked positions",
       sdpa_variant("sdpa_pv_zero_times_nan", {}, flash(FlashBug::pv_over_widest_row))},
      {"sdpa_causal_diagonal_masked",
       "causal mask j < i instead of j ≤ i in both implementations (a shared mask helper): a query never sees "
       "itself and the first one sees nothing",
       sdpa_variant("sdpa_causal_diagonal_masked", masked_by(real.sdpa_reference, diagonal_masked),
                    masked_by(real.sdpa_optimized, diagonal_masked))},
      {"mha_key_padding_on_queries",
       "key-padding mask applied along the query axis instead of the key axis, both implementations: padded keys "
       "are attended to",
       mha_variant("mha_key_padding_on_queries", padding_on_queries)},
      {"mha_fully_masked_row_nan",
       "softmax of a fully masked row computed as 0/0, both implementations: NaN instead of zero attention",
       mha_variant("mha_fully_masked_row_nan", nan_for_fully_masked)},
      {"mha_kv_cache_keeps_previous_sequence",
       "KV cache not cleared between sequences, both implementations: a new sequence attends to the previous "
       "one's keys",
       mha_variant("mha_kv_cache_keeps_previous_sequence", {}, cache_keeps_previous_sequence)},
  };
}

struct BlockSpec {
  std::string id, bug;
  Wiring wiring;
};

std::vector<BlockSpec> block_specs() {
  return {
      {"block_pre_ln_residual_from_normed",
       "Pre-LN residual taken from the normalized tensor, both implementations: h = N1(x) + MHA(N1(x))",
       Wiring::pre_residual_from_normed},
      {"block_post_ln_residual_from_input",
       "Post-LN second residual taken from the block's input, both implementations: y = N2(x + MLP(h))",
       Wiring::post_residual_from_input},
      {"block_decode_cache_shared",
       "decoding keeps one KV cache for the whole batch, both implementations: a sequence attends to the previous "
       "sequences' tokens",
       Wiring::decode_cache_shared},
  };
}

}  // namespace

std::vector<Mutant> attention_mutants() {
  static std::deque<AttentionEntry> entries;  // stable addresses: rows point into them
  static std::deque<BlockEntry> blocks;
  std::vector<Mutant> out;
  for (auto& s : attention_specs()) {
    validate_attention_entry(s.entry);
    entries.push_back(std::move(s.entry));
    out.push_back({s.id, to_string(entries.back().op), s.bug, {attention_row(entries.back())}});
  }
  for (const auto& s : block_specs()) {
    blocks.push_back(wired("mutant_" + s.id, s.wiring));
    out.push_back({s.id, "block", s.bug, block_rows(layer("layer_norm"), blocks.back())});
  }
  return out;
}

}  // namespace normcheck
