// Attention composed of ATen ops the ways PyTorch code writes it, behind normcheck's sdpa and mha
// signatures (aten.hpp says what each composition is and where ATen's contract differs).
#include <ATen/ops/_scaled_dot_product_attention.h>
#include <ATen/ops/add.h>
#include <ATen/ops/baddbmm.h>
#include <ATen/ops/bmm.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/linear.h>
#include <ATen/ops/masked_fill.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/mul.h>
#include <ATen/ops/softmax.h>
#include <ATen/ops/zeros.h>

#include <cmath>
#include <limits>

#include "aten/aten.hpp"

namespace normcheck::aten {
namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

at::Tensor tensor_view(const std::vector<float>& v, at::IntArrayRef shape) {
  return at::from_blob(const_cast<float*>(v.data()), shape, at::kFloat);
}

// q [B, H, Tq, dh]; k, v: the first Tk of kv_rows rows per (b, h) (a KV cache's capacity)
struct Qkv {
  at::Tensor q, k, v;
};

Qkv views(const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v,
          const SdpaShape& s) {
  return {tensor_view(q, {s.B, s.H, s.Tq, s.dh}),
          tensor_view(k, {s.B, s.H, s.kv_rows(), s.dh}).narrow(2, 0, s.Tk),
          tensor_view(v, {s.B, s.H, s.kv_rows(), s.dv}).narrow(2, 0, s.Tk)};
}

// [B, 1, Tq, Tk] booleans: true where normcheck's masks let query i of sequence b see key j
// (key padding as a prefix, causal aligned bottom-right); and whether some row sees no key.
struct Visibility {
  at::Tensor visible;
  std::vector<char> empty_row;  // [B, Tq]
  bool any_empty = false;
};

Visibility visibility(const SdpaShape& s, const SdpaMask& m) {
  Visibility r;
  r.visible = at::zeros({s.B, 1, s.Tq, s.Tk}, at::kBool);
  r.empty_row.assign(std::size_t(s.B) * s.Tq, 0);
  bool* p = r.visible.data_ptr<bool>();
  for (int b = 0; b < s.B; ++b)
    for (int i = 0; i < s.Tq; ++i) {
      const int n = visible_keys(s, m, b, i);
      for (int j = 0; j < n; ++j) p[(std::size_t(b) * s.Tq + i) * s.Tk + j] = true;
      if (n == 0) r.empty_row[std::size_t(b) * s.Tq + i] = r.any_empty = true;
    }
  return r;
}

// The additive form: 0 where visible, −inf where masked.
at::Tensor additive(const Visibility& vis) {
  return at::zeros(vis.visible.sizes(), at::kFloat).masked_fill(vis.visible.logical_not(), kNegInf);
}

// normcheck's contract for a query that sees no key: zero output and weights. ATen gives NaN
// there (softmax over −inf only); only those rows are overwritten, so a NaN anywhere else
// stays ATen's.
void zero_empty_rows(std::vector<float>& out, std::vector<float>* weights, const SdpaShape& s,
                     const Visibility& vis) {
  if (!vis.any_empty) return;
  for (int b = 0; b < s.B; ++b)
    for (int h = 0; h < s.H; ++h)
      for (int i = 0; i < s.Tq; ++i) {
        if (!vis.empty_row[std::size_t(b) * s.Tq + i]) continue;
        const std::size_t row = (std::size_t(b) * s.H + h) * s.Tq + i;
        std::fill_n(out.begin() + std::ptrdiff_t(row * s.dv), s.dv, 0.0f);
        if (weights) std::fill_n(weights->begin() + std::ptrdiff_t(row * s.Tk), s.Tk, 0.0f);
      }
}

void copy_out(const at::Tensor& t, std::vector<float>& v) {
  const at::Tensor c = t.contiguous();
  v.assign(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

// softmax(scores)·v written into out (and weights), then the empty rows zeroed
void finish(const at::Tensor& scores, const at::Tensor& v, std::vector<float>& out,
            std::vector<float>* weights, const SdpaShape& s, const Visibility& vis) {
  const at::Tensor w = at::softmax(scores, -1);
  copy_out(at::matmul(w, v), out);
  if (weights) copy_out(w, *weights);
  zero_empty_rows(out, weights, s, vis);
}

// One SDPA call's inputs, checked (validate_sdpa), as ATen views, with the mask's visibility.
struct Call {
  Qkv t;
  Visibility vis;
};

Call prepare(const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v,
             const SdpaShape& s, const SdpaMask& m, double scale) {
  validate_sdpa(s, m, scale, q.size(), k.size(), v.size());
  sync_threads();
  return {views(q, k, v, s), visibility(s, m)};
}

// q·kᵀ times the scale, unmasked
at::Tensor scaled_scores(const Qkv& t, double scale) {
  return at::mul(at::matmul(t.q, t.k.transpose(-2, -1)), scale);
}

}  // namespace

void sdpa_additive(std::vector<float>& out, std::vector<float>* weights,
                   const std::vector<float>& q, const std::vector<float>& k,
                   const std::vector<float>& v, const SdpaShape& s, const SdpaMask& m,
                   double scale) {
  const auto& [t, vis] = prepare(q, k, v, s, m, scale);
  finish(at::add(scaled_scores(t, scale), additive(vis)), t.v, out, weights, s, vis);
}

void sdpa_masked_fill(std::vector<float>& out, std::vector<float>* weights,
                      const std::vector<float>& q, const std::vector<float>& k,
                      const std::vector<float>& v, const SdpaShape& s, const SdpaMask& m,
                      double scale) {
  const auto& [t, vis] = prepare(q, k, v, s, m, scale);
  finish(scaled_scores(t, scale).masked_fill(vis.visible.logical_not(), kNegInf), t.v, out, weights,
         s, vis);
}

void sdpa_aten(std::vector<float>& out, std::vector<float>* weights, const std::vector<float>& q,
               const std::vector<float>& k, const std::vector<float>& v, const SdpaShape& s,
               const SdpaMask& m, double scale) {
  const auto& [t, vis] = prepare(q, k, v, s, m, scale);
  // ATen divides q by √dh; any other scale is folded into q (one more rounding of q)
  const double factor = scale * std::sqrt(double(s.dh));
  const at::Tensor qs = scale == default_scale(s.dh) ? t.q : at::mul(t.q, factor);
  const auto [o, w] = at::_scaled_dot_product_attention(qs, t.k, t.v, additive(vis), 0.0,
                                                        /*need_attn_weights=*/weights != nullptr,
                                                        /*is_causal=*/false);
  copy_out(o, out);
  if (weights) copy_out(w, *weights);
  zero_empty_rows(out, weights, s, vis);
}

void mha_aten(std::vector<float>& out, std::vector<float>* weights, const MhaWeights& w,
              const std::vector<float>& query, const std::vector<float>& memory, int B, int Tq,
              int Tk, const SdpaMask& mask) {
  validate_mha(w);
  const int E = w.E, H = w.H, dh = w.head_dim();
  const SdpaShape s{.B = B, .H = H, .Tq = Tq, .Tk = Tk, .dh = dh, .dv = dh};
  validate_sdpa(s, mask, default_scale(dh), std::size_t(B) * H * Tq * dh,
                std::size_t(B) * H * Tk * dh, std::size_t(B) * H * Tk * dh);
  if (query.size() != std::size_t(B) * Tq * E || memory.size() != std::size_t(B) * Tk * E)
    throw InvalidInput("mha_aten: query has " + std::to_string(query.size()) + " and memory " +
                       std::to_string(memory.size()) + " values, expected B*Tq*E = " +
                       std::to_string(std::size_t(B) * Tq * E) + " and B*Tk*E = " +
                       std::to_string(std::size_t(B) * Tk * E));
  sync_threads();
  const at::Tensor W = tensor_view(w.in_proj_weight, {3 * E, E}), bias = tensor_view(w.in_proj_bias, {3 * E});
  const at::Tensor x = tensor_view(query, {B, Tq, E}), mem = tensor_view(memory, {B, Tk, E});
  // in-projections (F._in_projection_packed with distinct query and key/value tensors)
  const at::Tensor q = at::linear(x, W.narrow(0, 0, E), bias.narrow(0, 0, E));
  const at::Tensor k = at::linear(mem, W.narrow(0, E, E), bias.narrow(0, E, E));
  const at::Tensor v = at::linear(mem, W.narrow(0, 2 * E, E), bias.narrow(0, 2 * E, E));
  // [B, T, E] -> [B·H, T, dh]
  auto heads = [&](const at::Tensor& t, int T) {
    return t.reshape({B, T, H, dh}).transpose(1, 2).reshape({B * H, T, dh});
  };
  const Visibility vis = visibility(s, mask);
  // the additive mask per (b, h): [B·H, Tq, Tk]
  const at::Tensor mask_bh = additive(vis).expand({B, H, Tq, Tk}).reshape({B * H, Tq, Tk});
  const at::Tensor qh = at::mul(heads(q, Tq), 1.0 / std::sqrt(double(dh)));
  const at::Tensor attn =
      at::softmax(at::baddbmm(mask_bh, qh, heads(k, Tk).transpose(-2, -1)), -1);  // [B·H, Tq, Tk]
  at::Tensor o = at::bmm(attn, heads(v, Tk));                                    // [B·H, Tq, dh]
  // normcheck's contract: a query with no visible key has zero attention output (y = b_o)
  at::Tensor attn_c = attn;
  if (vis.any_empty) {
    const at::Tensor empty = vis.visible.logical_not().all(-1, true)  // [B, 1, Tq, 1]
                                 .expand({B, H, Tq, 1})
                                 .reshape({B * H, Tq, 1});
    o = o.masked_fill(empty, 0.0);
    attn_c = attn.masked_fill(empty, 0.0);
  }
  const at::Tensor concat = o.reshape({B, H, Tq, dh}).transpose(1, 2).reshape({B, Tq, E});
  copy_out(at::linear(concat, tensor_view(w.out_proj_weight, {E, E}), tensor_view(w.out_proj_bias, {E})), out);
  if (weights) copy_out(attn_c, *weights);
}

}  // namespace normcheck::aten

// ---------------------------------------------------------------------------------------------
// the compositions as attention entries (aten.hpp)

namespace normcheck::aten {
namespace {

// A float32 composition behind the registry's SdpaFn (outputs widened to double).
using SdpaFloatFn = void (*)(std::vector<float>&, std::vector<float>*, const std::vector<float>&,
                             const std::vector<float>&, const std::vector<float>&,
                             const SdpaShape&, const SdpaMask&, double);

SdpaFn widened(SdpaFloatFn f) {
  return [f](Output& out, std::vector<double>* weights, const std::vector<float>& q,
             const std::vector<float>& k, const std::vector<float>& v, const SdpaShape& s,
             const SdpaMask& m, double scale) {
    std::vector<float> o, w;
    f(o, weights ? &w : nullptr, q, k, v, s, m, scale);
    out.assign(o.begin(), o.end());
    if (weights) weights->assign(w.begin(), w.end());
  };
}

AttentionEntry sdpa_composition(const char* name, const char* formula, SdpaFloatFn f) {
  AttentionEntry e = sdpa_entry();  // the built-in reference
  e.name = name;
  e.formula = formula;
  e.sdpa_optimized = widened(f);
  e.origin = "external";
  e.computes = "sdpa";
  return e;
}

// Incremental decoding as PyTorch code without a KV-cache kernel does it: each chunk of n new
// tokens attends, causally, to every token so far (the prefix recomputed, not cached): mha_aten
// with the chunk as queries and the prefix as memory.
void decode_aten(Output& out, const MhaWeights& w, const std::vector<float>& x,
                 const std::vector<int>& chunks) {
  validate_mha(w);
  const int E = w.E;
  int L = 0;
  for (int n : chunks) {
    if (n < 1) throw InvalidInput("decode_aten: chunk size " + std::to_string(n) + " < 1");
    L += n;
  }
  if (x.size() != std::size_t(L) * E)
    throw InvalidInput("decode_aten: x has " + std::to_string(x.size()) +
                       " values, expected L*E = " + std::to_string(std::size_t(L) * E) +
                       " (the chunk sizes sum to L)");
  out.clear();
  int t0 = 0;
  for (int n : chunks) {
    const std::vector<float> query(x.begin() + std::ptrdiff_t(t0) * E,
                                   x.begin() + std::ptrdiff_t(t0 + n) * E);
    const std::vector<float> memory(x.begin(), x.begin() + std::ptrdiff_t(t0 + n) * E);
    std::vector<float> y;
    mha_aten(y, nullptr, w, query, memory, 1, n, t0 + n, SdpaMask{{}, true});
    out.insert(out.end(), y.begin(), y.end());
    t0 += n;
  }
}

}  // namespace

AttentionEntry sdpa_additive_entry() {
  return sdpa_composition(
      "aten_sdpa_additive",
      "ATen: softmax(q·kᵀ·scale + M)·v with an additive −inf mask M (at::matmul, add, softmax)",
      sdpa_additive);
}

AttentionEntry sdpa_masked_fill_entry() {
  return sdpa_composition(
      "aten_sdpa_masked_fill",
      "ATen: softmax((q·kᵀ·scale).masked_fill(~visible, −inf))·v (at::matmul, masked_fill, softmax)",
      sdpa_masked_fill);
}

AttentionEntry sdpa_aten_entry() {
  return sdpa_composition(
      "aten_sdpa",
      "ATen: at::_scaled_dot_product_attention (1.13's CPU math path) with an additive −inf mask",
      sdpa_aten);
}

AttentionEntry mha_aten_entry() {
  AttentionEntry e = mha_entry();  // the built-in reference and its decoding
  e.name = "aten_mha";
  e.formula = "ATen: nn.MultiheadAttention's forward as PyTorch 1.13 composes it (at::linear, "
              "baddbmm with the additive mask, softmax, bmm); decoding recomputes the prefix";
  e.mha_optimized = [](Output& out, std::vector<double>* weights, const MhaWeights& w,
                       const std::vector<float>& query, const std::vector<float>& memory, int B,
                       int Tq, int Tk, const SdpaMask& m) {
    std::vector<float> o, wt;
    mha_aten(o, weights ? &wt : nullptr, w, query, memory, B, Tq, Tk, m);
    out.assign(o.begin(), o.end());
    if (weights) weights->assign(wt.begin(), wt.end());
  };
  e.decode_optimized = decode_aten;
  e.origin = "external";
  e.computes = "mha";
  return e;
}

}  // namespace normcheck::aten
