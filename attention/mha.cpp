#include "attention/mha.hpp"
#include "attention/registry.hpp"

#include <string>
#include <type_traits>


namespace normcheck {

void validate_mha(const MhaWeights& w) {
  if (w.E <= 0) throw InvalidInput("embed dim E = " + std::to_string(w.E) + " must be positive");
  if (w.H <= 0) throw InvalidInput("heads = " + std::to_string(w.H) + " must be positive");
  if (w.E % w.H != 0)
    throw InvalidInput("heads = " + std::to_string(w.H) + " must divide E = " + std::to_string(w.E));
  const std::size_t E = w.E;
  auto check = [](const char* name, std::size_t got, std::size_t want, const char* formula) {
    if (got != want)
      throw InvalidInput(std::string(name) + " has " + std::to_string(got) + " values, expected " +
                         formula + " = " + std::to_string(want));
  };
  check("in_proj_weight", w.in_proj_weight.size(), 3 * E * E, "3E*E");
  check("in_proj_bias", w.in_proj_bias.size(), 3 * E, "3E");
  check("out_proj_weight", w.out_proj_weight.size(), E * E, "E*E");
  check("out_proj_bias", w.out_proj_bias.size(), E, "E");
}

// ---------------------------------------------------------------------------------------------
// linear layers

void linear_reference(double* y, const double* x, const float* W, const float* b, int n, int I,
                      int O) {
  for (int r = 0; r < n; ++r)
    for (int o = 0; o < O; ++o) {
      double acc = b ? double(b[o]) : 0.0;
      for (int i = 0; i < I; ++i) acc += double(W[std::size_t(o) * I + i]) * x[std::size_t(r) * I + i];
      y[std::size_t(r) * O + o] = acc;
    }
}

// Below this many multiply-adds a projection runs on the calling thread: a team costs more
// than the work (results are the same either way: each output is computed alike).
constexpr long long kLinearParallelMinWork = 1 << 14;

void linear_optimized(float* y, const float* x, const float* W, const float* b, int n, int I,
                      int O) {
#pragma omp parallel for schedule(static) if ((long long)n * I * O >= kLinearParallelMinWork)
  for (int r = 0; r < n; ++r) {
    const float* xr = x + std::size_t(r) * I;  // [I]
    float* yr = y + std::size_t(r) * O;        // [O]
    for (int o = 0; o < O; ++o) {
      const float* wo = W + std::size_t(o) * I;  // [I]
      float acc = 0.0f;
      for (int i = 0; i < I; ++i) acc += wo[i] * xr[i];
      yr[o] = acc + (b ? b[o] : 0.0f);
    }
  }
}

namespace {

template <class S>
void sdpa(std::vector<S>& out, std::vector<S>* weights, const std::vector<S>& q,
          const std::vector<S>& k, const std::vector<S>& v, const SdpaShape& s,
          const SdpaMask& m) {
  if constexpr (std::is_same_v<S, double>)
    sdpa_reference(out, weights, q, k, v, s, m, default_scale(s.dh));
  else
    sdpa_optimized(out, weights, q, k, v, s, m, default_scale(s.dh));
}

// part 0/1/2 = q/k/v: x [B·T, E] → heads [B, H, T, dh]
template <class S>
std::vector<S> project_heads(const MhaWeights& w, int part, const std::vector<S>& x, int B, int T) {
  const int E = w.E, H = w.H, dh = w.head_dim();
  std::vector<S> y(std::size_t(B) * T * E);
  linear(y.data(), x.data(), w.in_proj_weight.data() + std::size_t(part) * E * E,
         w.in_proj_bias.data() + std::size_t(part) * E, B * T, E, E);
  std::vector<S> heads(y.size());
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T; ++t)
      for (int h = 0; h < H; ++h)
        for (int d = 0; d < dh; ++d)
          heads[((std::size_t(b) * H + h) * T + t) * dh + d] =
              y[(std::size_t(b) * T + t) * E + std::size_t(h) * dh + d];
  return heads;
}

// heads o [B, H, T, dh] → concat [B, T, E] → out_proj
template <class S>
void merge_and_project(std::vector<S>& out, const MhaWeights& w, const std::vector<S>& o, int B,
                       int T) {
  const int E = w.E, H = w.H, dh = w.head_dim();
  std::vector<S> cat(std::size_t(B) * T * E);
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h)
      for (int t = 0; t < T; ++t)
        for (int d = 0; d < dh; ++d)
          cat[(std::size_t(b) * T + t) * E + std::size_t(h) * dh + d] =
              o[((std::size_t(b) * H + h) * T + t) * dh + d];
  out.resize(cat.size());
  linear(out.data(), cat.data(), w.out_proj_weight.data(), w.out_proj_bias.data(), B * T, E, E);
}

void check_input(const char* name, std::size_t got, int B, int T, int E, const char* formula) {
  if (B <= 0 || T <= 0)
    throw InvalidInput(std::string(name) + ": B = " + std::to_string(B) + " and T = " +
                       std::to_string(T) + " must be positive");
  const std::size_t want = std::size_t(B) * T * E;
  if (got != want)
    throw InvalidInput(std::string(name) + " has " + std::to_string(got) + " values, expected " +
                       formula + " = " + std::to_string(want));
}

template <class S>
void mha(std::vector<S>& out, std::vector<S>* weights, const MhaWeights& w,
         const std::vector<S>& query, const std::vector<S>& memory, int B, int Tq, int Tk,
         const SdpaMask& mask, std::vector<S>* heads_o = nullptr) {
  validate_mha(w);
  check_input("query", query.size(), B, Tq, w.E, "B*Tq*E");
  check_input("memory", memory.size(), B, Tk, w.E, "B*Tk*E");
  const int dh = w.head_dim();
  const SdpaShape s{B, w.H, Tq, Tk, dh, dh, 0};
  validate_sdpa(s, mask, default_scale(dh), s.q_size(), s.k_size(), s.v_size());
  const auto q = project_heads(w, 0, query, B, Tq);
  const auto k = project_heads(w, 1, memory, B, Tk);
  const auto v = project_heads(w, 2, memory, B, Tk);
  std::vector<S> o;
  sdpa(o, weights, q, k, v, s, mask);
  merge_and_project(out, w, o, B, Tq);
  if (heads_o) *heads_o = std::move(o);
}

template <class S>
void mha_decode(std::vector<S>& out, std::vector<S>* weights, const MhaWeights& w,
                const std::vector<S>& x, int n, KvCache<S>& cache) {
  validate_mha(w);
  check_input("x", x.size(), 1, n, w.E, "n*E");
  const auto q = project_heads(w, 0, x, 1, n);
  const auto k = project_heads(w, 1, x, 1, n);
  const auto v = project_heads(w, 2, x, 1, n);
  cache.append(k, v, n);
  SdpaMask mask;
  mask.causal = true;  // bottom-right: new token i sees the cache up to itself
  std::vector<S> o;
  sdpa(o, weights, q, cache.keys(), cache.values(), cache.shape_for(n), mask);
  merge_and_project(out, w, o, 1, n);
}

}  // namespace

void mha_reference(std::vector<double>& out, std::vector<double>* weights, const MhaWeights& w,
                   const std::vector<double>& query, const std::vector<double>& memory, int B,
                   int Tq, int Tk, const SdpaMask& mask) {
  mha(out, weights, w, query, memory, B, Tq, Tk, mask);
}

void mha_optimized(std::vector<float>& out, std::vector<float>* weights, const MhaWeights& w,
                   const std::vector<float>& query, const std::vector<float>& memory, int B,
                   int Tq, int Tk, const SdpaMask& mask) {
  mha(out, weights, w, query, memory, B, Tq, Tk, mask);
}

void mha_decode_reference(std::vector<double>& out, std::vector<double>* weights,
                          const MhaWeights& w, const std::vector<double>& x, int n,
                          KvCache<double>& cache) {
  mha_decode(out, weights, w, x, n, cache);
}

void mha_decode_optimized(std::vector<float>& out, std::vector<float>* weights,
                          const MhaWeights& w, const std::vector<float>& x, int n,
                          KvCache<float>& cache) {
  mha_decode(out, weights, w, x, n, cache);
}

namespace {

// One sequence x [L, E] through a KV cache in chunks, in S precision; out [L, E] widened.
template <class S>
void decode_in_chunks(Output& out, const MhaWeights& w, const std::vector<float>& x,
                      const std::vector<int>& chunks) {
  const int E = w.E;
  int L = 0;
  for (int n : chunks) L += n;
  check_input("x", x.size(), 1, L, E, "L*E (the chunk sizes sum to L)");
  KvCache<S> cache = mha_cache<S>(w, L);
  out.clear();
  int t0 = 0;
  for (int n : chunks) {
    const std::vector<S> step(x.begin() + std::size_t(t0) * E, x.begin() + std::size_t(t0 + n) * E);
    std::vector<S> y;
    mha_decode<S>(y, nullptr, w, step, n, cache);
    out.insert(out.end(), y.begin(), y.end());
    t0 += n;
  }
}

template <class S>
void mha_widened(Output& out, std::vector<double>* weights, const MhaWeights& w,
                 const std::vector<float>& query, const std::vector<float>& memory, int B, int Tq,
                 int Tk, const SdpaMask& m) {
  std::vector<S> o, wt;
  mha(o, weights ? &wt : nullptr, w, std::vector<S>(query.begin(), query.end()),
      std::vector<S>(memory.begin(), memory.end()), B, Tq, Tk, m);
  out.assign(o.begin(), o.end());
  if (weights) weights->assign(wt.begin(), wt.end());
}

}  // namespace

AttentionEntry mha_entry() {
  return {.name = "mha",
          .op = AttentionOp::mha,
          .formula = "nn.MultiheadAttention: in_proj [3E, E], heads of E/H, sdpa, out_proj [E, E]",
          .mha_reference = mha_widened<double>,
          .mha_optimized = mha_widened<float>,
          .decode_reference = decode_in_chunks<double>,
          .decode_optimized = decode_in_chunks<float>};
}

MhaHeads mha_reference_heads(const MhaWeights& w, const std::vector<double>& query,
                             const std::vector<double>& memory, int B, int Tq, int Tk,
                             const SdpaMask& mask) {
  MhaHeads r;
  std::vector<double> out;
  mha<double>(out, nullptr, w, query, memory, B, Tq, Tk, mask, &r.o);
  r.q = project_heads(w, 0, query, B, Tq);
  r.k = project_heads(w, 1, memory, B, Tk);
  r.v = project_heads(w, 2, memory, B, Tk);
  return r;
}

}  // namespace normcheck
