#include "attention/block.hpp"

#include <algorithm>
#include <string>
#include <type_traits>

namespace normcheck {

const char* to_string(Placement p) { return p == Placement::pre ? "pre" : "post"; }

void validate_block(const BlockWeights& w, const Batch& x) {
  validate_batch(x);
  validate_mha(w.attn);
  if (x.D != w.attn.E)
    throw InvalidInput("block input has D = " + std::to_string(x.D) +
                       " features, the block's embed dim is E = " + std::to_string(w.attn.E));
  if (w.F <= 0) throw InvalidInput("MLP width F = " + std::to_string(w.F) + " must be positive");
  const std::size_t E = w.attn.E, F = w.F;
  auto check = [](const char* name, std::size_t got, std::size_t want, const char* formula) {
    if (got != want)
      throw InvalidInput(std::string(name) + " has " + std::to_string(got) + " values, expected " +
                         formula + " = " + std::to_string(want));
  };
  check("w1", w.w1.size(), F * E, "F*E");
  check("b1", w.b1.size(), F, "F");
  check("w2", w.w2.size(), E * F, "E*F");
  check("b2", w.b2.size(), E, "E");
}

namespace {

template <class T>
constexpr Impl impl_of() {
  return std::is_same_v<T, double> ? Impl::reference : Impl::optimized;
}

}  // namespace

// The parts of a block (block.hpp), for float and double.

template <class T>
std::vector<T> block_norm(const LayerEntry& norm, Mode mode, const Params& p, State* state, int B,
                          int Tn, int E, const std::vector<int>& lengths, const std::vector<T>& act) {
  Batch in(B, Tn, E);
  in.lengths = lengths;
  for (std::size_t i = 0; i < act.size(); ++i) in.x[i] = float(act[i]);
  Output out;
  norm.forward(impl_of<T>())(in, p, mode, state, out);
  return std::vector<T>(out.begin(), out.end());
}

template <class T>
std::vector<T> block_mlp(const BlockWeights& w, const std::vector<T>& u, int n) {
  const int E = w.attn.E;
  std::vector<T> hidden(std::size_t(n) * w.F), y(std::size_t(n) * E);
  linear(hidden.data(), u.data(), w.w1.data(), w.b1.data(), n, E, w.F);
  for (auto& v : hidden) v = std::max(v, T(0));
  linear(y.data(), hidden.data(), w.w2.data(), w.b2.data(), n, w.F, E);
  return y;
}

template <class T>
std::vector<T> block_add(const std::vector<T>& a, const std::vector<T>& b) {
  std::vector<T> r(a.size());
  for (std::size_t i = 0; i < a.size(); ++i) r[i] = a[i] + b[i];
  return r;
}

template std::vector<double> block_norm(const LayerEntry&, Mode, const Params&, State*, int, int,
                                        int, const std::vector<int>&, const std::vector<double>&);
template std::vector<float> block_norm(const LayerEntry&, Mode, const Params&, State*, int, int,
                                       int, const std::vector<int>&, const std::vector<float>&);
template std::vector<double> block_mlp(const BlockWeights&, const std::vector<double>&, int);
template std::vector<float> block_mlp(const BlockWeights&, const std::vector<float>&, int);
template std::vector<double> block_add(const std::vector<double>&, const std::vector<double>&);
template std::vector<float> block_add(const std::vector<float>&, const std::vector<float>&);

template <class T>
std::vector<T> block_step(const LayerEntry& norm, Mode mode, const BlockWeights& w, BlockState& st, int B,
                          int Tn, const std::vector<int>& lengths, const std::vector<T>& in,
                          const BlockAttend<T>& attend) {
  const int E = w.attn.E, n = B * Tn;
  if (w.placement == Placement::pre) {
    const auto a = block_norm(norm, mode, w.norm1, &st.norm1, B, Tn, E, lengths, in);
    const auto h = block_add(in, attend(a));
    const auto u = block_norm(norm, mode, w.norm2, &st.norm2, B, Tn, E, lengths, h);
    return block_add(h, block_mlp(w, u, n));
  }
  const auto h = block_norm(norm, mode, w.norm1, &st.norm1, B, Tn, E, lengths, block_add(in, attend(in)));
  return block_norm(norm, mode, w.norm2, &st.norm2, B, Tn, E, lengths, block_add(h, block_mlp(w, h, n)));
}

template <class T>
BlockOutput block_forward_with(const LayerEntry& norm, Mode mode, const BlockWeights& w, BlockState& st,
                               const Batch& x, bool want_weights, const BlockStepFn<T>& step) {
  validate_block(w, x);
  const SdpaMask mask{x.lengths, true};
  const std::vector<T> in(x.x.begin(), x.x.end());
  std::vector<T> weights;
  std::vector<T>* wp = want_weights ? &weights : nullptr;
  const auto y = step(norm, mode, w, st, x.B, x.T, x.lengths, in, [&](const std::vector<T>& a) {
    std::vector<T> attn;
    mha_for(attn, wp, w.attn, a, a, x.B, x.T, x.T, mask);
    return attn;
  });
  BlockOutput out;
  out.y.assign(y.begin(), y.end());
  out.attn_weights.assign(weights.begin(), weights.end());
  return out;
}

template <class T>
BlockOutput block_decode_with(const LayerEntry& norm, Mode mode, const BlockWeights& w, const BlockState& st,
                              const Batch& x, bool want_weights, const BlockStepFn<T>& step,
                              const BlockCacheFn<T>& cache_for) {
  validate_block(w, x);
  const int E = x.D, H = w.attn.H, Tn = x.T;
  BlockOutput out;
  out.y.assign(x.x.size(), 0.0);
  if (want_weights) out.attn_weights.assign(std::size_t(x.B) * H * Tn * Tn, 0.0);
  const std::vector<int> one = {1};
  for (int b = 0; b < x.B; ++b) {
    const int len = x.lengths[b];
    if (len == 0) continue;
    KvCache<T> own = mha_cache<T>(w.attn, len);
    KvCache<T>& cache = cache_for(own);
    BlockState s = st;  // eval mode reads the running statistics; a copy keeps `st` untouched
    for (int t = 0; t < len; ++t) {
      const std::vector<T> xt(&x.x[x.index(b, t, 0)], &x.x[x.index(b, t, 0)] + E);
      std::vector<T> weights;
      std::vector<T>* wp = want_weights ? &weights : nullptr;
      const auto y = step(norm, mode, w, s, 1, 1, one, xt, [&](const std::vector<T>& a) {
        std::vector<T> attn;
        mha_decode_for(attn, wp, w.attn, a, 1, cache);
        return attn;
      });
      std::copy(y.begin(), y.end(), out.y.begin() + x.index(b, t, 0));
      if (want_weights) {  // step weights [H, 1, cache size]; the sequence's keys are the last t + 1
        const std::size_t size = cache.size(), first = size - t - 1;
        for (int h = 0; h < H; ++h)
          for (int j = 0; j <= t; ++j)
            out.attn_weights[((std::size_t(b) * H + h) * Tn + t) * Tn + j] = weights[h * size + first + j];
      }
    }
  }
  return out;
}

#define NORMCHECK_BLOCK_WIRING(T)                                                                          \
  template std::vector<T> block_step(const LayerEntry&, Mode, const BlockWeights&, BlockState&, int, int,  \
                                     const std::vector<int>&, const std::vector<T>&, const BlockAttend<T>&); \
  template BlockOutput block_forward_with(const LayerEntry&, Mode, const BlockWeights&, BlockState&,       \
                                          const Batch&, bool, const BlockStepFn<T>&);                      \
  template BlockOutput block_decode_with(const LayerEntry&, Mode, const BlockWeights&, const BlockState&,  \
                                         const Batch&, bool, const BlockStepFn<T>&, const BlockCacheFn<T>&);
NORMCHECK_BLOCK_WIRING(double)
NORMCHECK_BLOCK_WIRING(float)
#undef NORMCHECK_BLOCK_WIRING

namespace {

template <class T>
KvCache<T>& own_cache(KvCache<T>& own) {
  return own;
}

}  // namespace

BlockOutput block_forward(const LayerEntry& norm, Impl impl, Mode norm_mode,
                          const BlockWeights& w, BlockState& state, const Batch& x,
                          bool want_weights) {
  return impl == Impl::reference
             ? block_forward_with<double>(norm, norm_mode, w, state, x, want_weights, block_step<double>)
             : block_forward_with<float>(norm, norm_mode, w, state, x, want_weights, block_step<float>);
}

BlockOutput block_decode(const LayerEntry& norm, Impl impl, Mode norm_mode,
                         const BlockWeights& w, const BlockState& state, const Batch& x,
                         bool want_weights) {
  return impl == Impl::reference ? block_decode_with<double>(norm, norm_mode, w, state, x, want_weights,
                                                             block_step<double>, own_cache<double>)
                                 : block_decode_with<float>(norm, norm_mode, w, state, x, want_weights,
                                                            block_step<float>, own_cache<float>);
}

const BlockEntry& block_entry() {
  static const BlockEntry builtin;
  return builtin;
}

}  // namespace normcheck
