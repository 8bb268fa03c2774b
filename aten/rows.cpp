// ATen's normalization kernels as normcheck rows, ATen's thread count and the environment that
// decides their bits. One translation unit on purpose: every file that includes ATen's headers
// costs about 10–15 s to compile.
#include <dlfcn.h>
#include <omp.h>

#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <ATen/ops/add.h>
#include <ATen/ops/batch_norm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/group_norm.h>
#include <ATen/ops/instance_norm.h>
#include <ATen/ops/layer_norm.h>
#include <ATen/ops/mean.h>
#include <ATen/ops/mul.h>
#include <ATen/ops/pow.h>
#include <ATen/ops/rsqrt.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "aten/aten.hpp"
#include "norms/batch_norm.hpp"
#include "norms/registry.hpp"

namespace normcheck::aten {

// ---------------------------------------------------------------------------------------------
// threads

void sync_threads() {
  // the count normcheck asks for, read before ATen can touch it
  const int n = omp_get_max_threads();
  // ATen's per-thread lazy init (its first parallel op in a thread) sets OpenMP's count to
  // ATen's default (its stored count, or the machine's cores when none was stored); run it now
  // so it cannot strike later, then put normcheck's count back. ATen's OpenMP backend runs its
  // parallel regions with omp_get_max_threads() threads, so OpenMP's own setting is what drives
  // it. at::set_num_threads is never called: besides storing a count, it starts the
  // pthreadpool of the XNNPACK/QNNPACK ops (which no row uses), a thread that would already run
  // when cli_main forks its workers (README, "a worker forked beside other threads"); calling
  // it at every change of the count also made a shrinking thread_determinism cell take minutes.
  at::internal::lazy_init_num_threads();
  if (omp_get_max_threads() != n) omp_set_num_threads(n);
}

namespace {

// ---------------------------------------------------------------------------------------------
// tensors over normcheck's buffers (from_blob does not copy; ATen's forward ops do not write
// their inputs)

at::Tensor view(const std::vector<float>& v, at::IntArrayRef shape) {
  return at::from_blob(const_cast<float*>(v.data()), shape, at::kFloat);
}

c10::optional<at::Tensor> optional_view(const std::vector<float>& v) {
  if (v.empty()) return c10::nullopt;
  return view(v, {std::int64_t(v.size())});
}

void widen(const at::Tensor& y, Output& out) {
  const at::Tensor c = y.contiguous();
  const float* p = c.data_ptr<float>();
  out.assign(p, p + c.numel());
}

at::Tensor rows_view(const Batch& in) { return view(in.x, {std::int64_t(in.rows()), in.D}); }

// ---------------------------------------------------------------------------------------------
// the rows' optimized forwards

void aten_layer_norm(const Batch& in, const Params& p, Mode, State*, Output& out) {
  validate_affine_norm(in, p);
  sync_threads();
  widen(at::layer_norm(rows_view(in), {in.D}, optional_view(p.gamma), optional_view(p.beta),
                       p.eps),
        out);
}

void aten_group_norm(const Batch& in, const Params& p, Mode, State*, Output& out) {
  validate_affine_norm(in, p);
  const double G = p.get("groups");
  if (!(G >= 1) || G != std::floor(G) || in.D % int(G) != 0)
    throw InvalidInput("aten_group_norm: groups = " + format_value(G) +
                       " must be a positive whole number dividing D = " + std::to_string(in.D));
  sync_threads();
  // tokens as N, features as C, no spatial dimension: G groups of D/G contiguous features
  widen(at::group_norm(rows_view(in), std::int64_t(G), optional_view(p.gamma),
                       optional_view(p.beta), p.eps),
        out);
}

// ATen has no lengths: instance statistics over a sequence's valid tokens only are one call per
// sequence on its [1, D, L_b] slice (C = features, spatial = its valid tokens). Padding gives 0,
// as the built-in row.
void aten_instance_norm(const Batch& in, const Params& p, Mode, State*, Output& out) {
  validate_affine_norm(in, p);
  sync_threads();
  out.assign(in.x.size(), 0.0);
  for (int b = 0; b < in.B; ++b) {
    const int L = in.lengths[b];
    if (L == 0) continue;
    const at::Tensor xb =
        at::from_blob(const_cast<float*>(&in.x[in.index(b, 0, 0)]), {L, in.D}, at::kFloat)
            .t()
            .unsqueeze(0);  // [1, D, L]
    const at::Tensor y =
        at::instance_norm(xb, optional_view(p.gamma), optional_view(p.beta), {}, {},
                          /*use_input_stats=*/true, /*momentum=*/0.0, p.eps, false)
            .squeeze(0)
            .t()
            .contiguous();  // [L, D]
    const float* yp = y.data_ptr<float>();
    std::copy(yp, yp + std::size_t(L) * in.D, out.begin() + std::ptrdiff_t(in.index(b, 0, 0)));
  }
}

// Tokens as N (padding included: the naive use, as the batch_norm row), features as C. ATen
// keeps running statistics in float32 and updates them in place (unbiased variance, PyTorch's
// momentum); normcheck's State holds them in double, so they go through float and back.
void aten_batch_norm(const Batch& in, const Params& p, Mode mode, State* state, Output& out) {
  check_batch_norm_inputs(in, p, mode, state, TokenSet::all_positions, "aten_batch_norm");
  sync_threads();
  at::Tensor rm = at::empty({in.D}, at::kFloat), rv = at::empty({in.D}, at::kFloat);
  for (int d = 0; d < in.D; ++d) {
    rm.data_ptr<float>()[d] = float(state->running_mean[d]);
    rv.data_ptr<float>()[d] = float(state->running_var[d]);
  }
  widen(at::batch_norm(rows_view(in), optional_view(p.gamma), optional_view(p.beta), rm, rv,
                       /*training=*/mode == Mode::train, p.momentum, p.eps,
                       /*cudnn_enabled=*/false),
        out);
  if (mode == Mode::train)
    for (int d = 0; d < in.D; ++d) {
      state->running_mean[d] = rm.data_ptr<float>()[d];
      state->running_var[d] = rv.data_ptr<float>()[d];
    }
}

// RMSNorm as Llama-style PyTorch code writes it (1.13 has no at::rms_norm):
// x * rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight
void aten_rms_norm(const Batch& in, const Params& p, Mode, State*, Output& out) {
  validate_affine_norm(in, p);
  sync_threads();
  const at::Tensor x = rows_view(in);
  at::Tensor y = at::mul(x, at::rsqrt(at::add(at::mean(at::pow(x, 2), {-1}, true), p.eps)));
  if (!p.gamma.empty()) y = at::mul(y, view(p.gamma, {in.D}));
  if (!p.beta.empty()) y = at::add(y, view(p.beta, {in.D}));  // the row draws none
  widen(y, out);
}

// ---------------------------------------------------------------------------------------------
// entries: another implementation of the built-in layer (its reference, conditioning,
// parameters, profile and golden op), ATen's forward

LayerEntry external(const char* builtin, const char* name, const char* formula, ForwardFn f) {
  return implementation_of(normcheck::layer(builtin), name, formula, std::move(f));
}

}  // namespace

void register_rows() {
  sync_threads();
  // What the numerical-range properties find (aten/FINDINGS.md §1): layer_norm and group_norm
  // accumulate a token's moments in float32 (x² included), so a token whose |mean| reaches about
  // √FLT_MAX ≈ 1.9e19 gets NaN for every element (a single token of 1.9e19, D = 1), and a
  // constant token is not β: its float32 mean is rounded and x − μ amplified by 1/√ε
  auto float32_moments = [](LayerEntry e) {
    e.rows[0].violated.insert(
        {"finite_output", "scale_range_invariance", "constant_token", "offset_invariance", "reference_agreement"});
    e.rows[0].why += "; ATen: float32 moments, NaN for a token with |mean| ≥ ~1.9e19 "
                     "(finite_output, scale_range_invariance; PyTorch #162489), a constant token "
                     "≠ β from its rounded mean (constant_token), and a spread of a few ulps at "
                     "a large offset lost: the float32 mean rounds onto one of the values, σ² "
                     "comes out 0 and an output reaches ~1/√ε (offset_invariance; and "
                     "reference_agreement where the generators draw such a token, in most "
                     "seeds, not all)";
    return e;
  };
  register_layer(float32_moments(external("layer_norm", "aten_layer_norm",
                                          "ATen at::layer_norm over [B·T, D] (PyTorch 1.13, CPU)",
                                          aten_layer_norm)));
  register_layer(float32_moments(external("group_norm", "aten_group_norm",
                                          "ATen at::group_norm over [B·T, D]: N = tokens, C = features",
                                          aten_group_norm)));
  // instance_norm and batch_norm [train]: the float32 variance of a sequence (a batch) holding a
  // value past ~1.9e19 overflows to inf, and the outputs come out 0 (the reference: ±1)
  auto float32_variance = [](LayerEntry e, const char* what) {
    e.rows[0].violated.insert({"finite_output", "scale_range_invariance"});
    e.rows[0].why += std::string("; ATen: the float32 variance of ") + what +
                     " overflows past ~1.9e19 (finite_output, scale_range_invariance; PyTorch #162489)";
    return e;
  };
  register_layer(float32_variance(external("instance_norm", "aten_instance_norm",
                                           "ATen at::instance_norm per sequence on its valid tokens [1, D, L_b]",
                                           aten_instance_norm),
                                  "a sequence"));
  LayerEntry bn = external("batch_norm", "aten_batch_norm",
                           "ATen at::batch_norm over [B·T, D]: N = tokens (padding included), "
                           "C = features; ATen updates the running statistics",
                           aten_batch_norm);
  // What the matrix found (aten/FINDINGS.md): the train row's batch variance is accumulated in
  // float32, so a batch holding finite 1e30 values (poison in its padding) gets σ² = inf and
  // every output β, where the double reference gives finite values (and the float32 running
  // variance overflows with it)
  bn.rows[0].violated.insert("reference_agreement");
  bn.rows[0].why += "; ATen's float32 batch variance overflows on 1e30 values, output β "
                    "(reference_agreement; PyTorch #162489)";
  // and its reduction over the N rows is split over the OpenMP threads, so outputs and running
  // statistics change in the last bits with the thread count
  bn.rows[0].violated.insert("thread_determinism");
  bn.rows[0].why += "; its reduction over rows depends on the OpenMP thread count "
                    "(thread_determinism)";
  // and, as oneDNN's, its batch moments at a large offset drift past the tolerance rule once a
  // few thousand rows are summed (float32 accumulation: the error grows about as √N)
  bn.rows[0].violated.insert("offset_invariance");
  bn.rows[0].why += "; its batch moments at a large offset drift with the number of rows summed "
                    "(offset_invariance, from a few thousand rows; about the rule's bound, so "
                    "found in most seeds, not all)";
  register_layer(float32_variance(std::move(bn), "a batch"));
  // the composite squares in float32: x² = inf beyond √FLT_MAX, rsqrt(inf) = 0, every output 0
  LayerEntry rms = external("rms_norm", "aten_rms_norm",
                            "x·rsqrt(mean(x²)+ε)·γ composed of ATen ops (at::pow, mean, add, "
                            "rsqrt, mul)",
                            aten_rms_norm);
  rms.rows[0].violated.insert({"finite_output", "scale_range_invariance"});
  rms.rows[0].why += "; the composite's float32 x² overflows beyond ~1.9e19: rsqrt(inf) = 0, "
                     "outputs 0 (finite_output, scale_range_invariance)";
  register_layer(std::move(rms));
  // Attention (aten/FINDINGS.md §5): the compositions read masked keys and values, so a NaN
  // planted only there (key_padding_invariance's and reference_agreement's poison) reaches valid
  // outputs. Additive mask: NaN + (−inf) = NaN in the scores makes the whole row NaN; masked_fill
  // cleans the scores, but weight 0 · NaN value is NaN.
  // The reference is normcheck's own: only the optimized side (ATen) violates them.
  // The same reads break causality (a NaN in a future key or token) and the key-padding
  // semantic pins (a NaN in a masked position).
  auto leaks = [](AttentionEntry e, const std::string& how) {
    e.optimized_violates = {"key_padding_invariance", "reference_agreement", "causality",
                            "key_padding_semantics"};
    e.why = how + " (PyTorch #101967)";
    return e;
  };
  register_attention(leaks(sdpa_additive_entry(),
                           "reads masked keys: a NaN in one gives NaN + (−inf) = NaN scores, every "
                           "valid output of its sequence NaN"));
  register_attention(leaks(sdpa_masked_fill_entry(),
                           "reads masked values: weight 0 · a NaN value is NaN, in that feature of "
                           "every valid query"));
  AttentionEntry sdpa = leaks(sdpa_aten_entry(),
                              "_scaled_dot_product_attention adds the −inf mask: a NaN masked key "
                              "makes every valid output of its sequence NaN");
  // and its float32 math path at |logits| of 1e3 to 3e3 misses the tolerance rule's bound by a
  // few percent (|out − ref| up to 1.06× the tolerance; 4 of seeds 1–5 find it in 100 cases)
  sdpa.optimized_violates.insert("large_logit_stability");
  sdpa.why += "; its float32 logits at |logits| ~1e3–3e3 exceed the tolerance by a few percent "
              "(large_logit_stability)";
  register_attention(std::move(sdpa));
  register_attention(leaks(mha_aten_entry(),
                           "baddbmm adds the −inf mask to scores of NaN padding tokens: every valid "
                           "output of the sequence NaN"));
}

// ---------------------------------------------------------------------------------------------
// environment

namespace {

// "  - CPU capability usage: AVX2" in at::show_config()
std::string config_line(const std::string& config, const std::string& key) {
  const auto at = config.find(key);
  if (at == std::string::npos) return "unknown";
  const auto start = at + key.size();
  const auto end = config.find_first_of(",\n", start);
  return config.substr(start, end == std::string::npos ? std::string::npos : end - start);
}

// The file the dynamic linker resolved `symbol` to, and what its path's symlinks (the
// alternatives system's libblas.so.3) point at.
std::string library_of(const char* symbol) {
  void* addr = dlsym(RTLD_DEFAULT, symbol);
  Dl_info info;
  if (!addr || !dladdr(addr, &info) || !info.dli_fname) return "not loaded";
  std::string path = info.dli_fname;
  std::error_code ec;
  const auto real = std::filesystem::canonical(path, ec);
  if (!ec && real.string() != path) path += " -> " + real.string();
  return path;
}

}  // namespace

std::vector<std::pair<std::string, std::string>> environment() {
  sync_threads();
  const std::string config = at::show_config();
  const char* cap = std::getenv("ATEN_CPU_CAPABILITY");
  // show_config names the dispatcher's choice (get_cpu_capability is not exported) as AVX2,
  // AVX512, or "NO AVX" for the baseline kernels, which ATEN_CPU_CAPABILITY calls "default"
  std::string used = config_line(config, "CPU capability usage: ");
  if (used == "NO AVX") used = "DEFAULT";
  return {
      {"aten_version", config_line(config, "TORCH_VERSION=")},
      {"aten_cpu_capability", used},
      {"ATEN_CPU_CAPABILITY", cap ? cap : "(not set)"},
      {"aten_library", library_of("_ZN2at11show_configB5cxx11Ev")},
      {"blas_sgemm", library_of("sgemm_")},
      {"omp_max_threads", std::to_string(omp_get_max_threads())},
      {"aten_num_threads", std::to_string(at::get_num_threads())},
      {"aten_interop_threads", std::to_string(at::get_num_interop_threads())},
  };
}

}  // namespace normcheck::aten
