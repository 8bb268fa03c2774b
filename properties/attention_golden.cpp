// Golden conformance of the attention ops against PyTorch (golden/pytorch_golden.json):
//   sdpa  q, k, v [B, H, T, dh], lengths (key padding), causal, params.scale → y [B, H, T, dh]
//   mha   x [B, T, E], heads, in_proj_weight/bias, out_proj_weight/bias, lengths, causal → y
// `valid_only`: only query positions t < lengths[b] are compared (y is 0 at padding).
#include <cmath>

#include "properties/golden.hpp"

namespace normcheck {
namespace {

using nlohmann::json;
using golden::numbers;

std::vector<float> floats(const std::vector<double>& v) { return {v.begin(), v.end()}; }

std::vector<int> whole_numbers(const json& c, const std::string& field, std::size_t n, double lo,
                               double hi) {
  std::vector<int> r;
  for (double v : numbers(c, field, n)) {
    if (v < lo || v > hi || v != std::floor(v))
      throw InvalidInput("field '" + field + "': entries must be whole numbers in [" +
                         std::to_string(int(lo)) + ", " + std::to_string(int(hi)) + "], got " +
                         std::to_string(v));
    r.push_back(int(v));
  }
  return r;
}

bool causal_flag(const json& c) {
  if (!c.contains("causal")) return false;
  if (!c["causal"].is_boolean()) throw InvalidInput("field 'causal': must be true or false");
  return c["causal"].get<bool>();
}

bool valid_only_flag(const json& c) {
  if (!c.contains("valid_only")) return false;
  if (!c["valid_only"].is_boolean()) throw InvalidInput("field 'valid_only': must be true or false");
  return c["valid_only"].get<bool>();
}

}  // namespace

GoldenOutcome check_sdpa_golden_case(const json& c, Impl impl, const AttentionEntry& e) {
  return golden::run_case(c, impl, [&](GoldenOutcome& o) {
    const auto shape = whole_numbers(c, "shape", 4, 1, 1e5);
    const int B = shape[0], H = shape[1], T = shape[2], dh = shape[3];
    const SdpaShape s{B, H, T, T, dh, dh, 0};
    if (s.q_size() > (std::size_t(1) << 24)) throw InvalidInput("field 'shape': too large");
    SdpaMask m;
    m.key_lengths = whole_numbers(c, "lengths", B, 0, T);
    m.causal = causal_flag(c);
    double scale = default_scale(dh);
    if (c.contains("params") && c["params"].is_object() && c["params"].contains("scale")) {
      if (!c["params"]["scale"].is_number()) throw InvalidInput("field 'params.scale': not a number");
      scale = c["params"]["scale"].get<double>();
      if (!(scale > 0) || !std::isfinite(scale))
        throw InvalidInput("field 'params.scale': must be positive and finite, got " + std::to_string(scale));
    }
    const auto q = floats(numbers(c, "q", s.q_size()));
    const auto k = floats(numbers(c, "k", s.k_size()));
    const auto v = floats(numbers(c, "v", s.v_size()));
    const auto y = numbers(c, "y", s.out_size());
    Output out;
    golden::run_kernel(o.op, [&] {
      (impl == Impl::reference ? e.sdpa_reference : e.sdpa_optimized)(out, nullptr, q, k, v, s, m, scale);
    });
    const bool valid_only = valid_only_flag(c);
    const std::vector<int> dims = {B, H, T, dh};
    golden::compare(
        o, "y", out, y, golden::tolerance(c, impl),
        [&](std::size_t i) { return !valid_only || int(i / dh % T) < m.key_lengths[i / dh / T / H]; },
        [&](std::size_t i) { return golden::position(i, dims); });
  });
}

GoldenOutcome check_mha_golden_case(const json& c, Impl impl, const AttentionEntry& e) {
  return golden::run_case(c, impl, [&](GoldenOutcome& o) {
    const auto shape = whole_numbers(c, "shape", 3, 1, 1e5);
    const int B = shape[0], T = shape[1], E = shape[2];
    if (std::size_t(B) * T * E > (std::size_t(1) << 24)) throw InvalidInput("field 'shape': too large");
    if (!c.contains("heads") || !c["heads"].is_number_integer())
      throw InvalidInput("field 'heads': missing or not an integer");
    MhaWeights w;
    w.E = E;
    w.H = c["heads"].get<int>();
    w.in_proj_weight = floats(numbers(c, "in_proj_weight", 3 * std::size_t(E) * E));
    w.in_proj_bias = floats(numbers(c, "in_proj_bias", 3 * std::size_t(E)));
    w.out_proj_weight = floats(numbers(c, "out_proj_weight", std::size_t(E) * E));
    w.out_proj_bias = floats(numbers(c, "out_proj_bias", E));
    SdpaMask m;
    m.key_lengths = whole_numbers(c, "lengths", B, 0, T);
    m.causal = causal_flag(c);
    const auto xf = floats(numbers(c, "x", std::size_t(B) * T * E));
    const auto y = numbers(c, "y", std::size_t(B) * T * E);
    Output out;
    golden::run_kernel(o.op, [&] {  // heads must divide E: the kernel says so
      (impl == Impl::reference ? e.mha_reference : e.mha_optimized)(out, nullptr, w, xf, xf, B, T, T, m);
    });
    const bool valid_only = valid_only_flag(c);
    const std::vector<int> dims = {B, T, E};
    golden::compare(
        o, "y", out, y, golden::tolerance(c, impl),
        [&](std::size_t i) { return !valid_only || int(i / E % T) < m.key_lengths[i / E / T]; },
        [&](std::size_t i) { return golden::position(i, dims); });
  });
}

}  // namespace normcheck
