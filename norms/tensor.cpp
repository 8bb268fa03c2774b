#include "norms/tensor.hpp"

#include <cfloat>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <string>

namespace normcheck {

const char* to_string(Mode m) {
  static constexpr const char* names[] = {"none", "train", "eval"};
  return names[int(m)];
}

const char* to_string(Impl i) { return i == Impl::reference ? "reference" : "optimized"; }

Mode mode_from_string(const std::string& s) {
  if (s == "none" || s.empty()) return Mode::none;
  if (s == "train") return Mode::train;
  if (s == "eval") return Mode::eval;
  throw std::invalid_argument("mode must be train or eval, got '" + s + "'");
}

Impl impl_from_string(const std::string& s) {
  if (s == "reference") return Impl::reference;
  if (s == "optimized") return Impl::optimized;
  throw std::invalid_argument("implementation must be reference or optimized, got '" + s + "'");
}

double Params::get(const std::string& name) const {
  const auto it = named.find(name);
  if (it == named.end()) throw InvalidInput("parameter '" + name + "' is not set");
  return it->second;
}

int Batch::valid_tokens() const {
  int n = 0;
  for (int b = 0; b < B; ++b) n += lengths[b];
  return n;
}

std::string format_value(double v) {
  // shortest text that reads back as the same double: 1e-05, not 0.000010; -1e-300, not -0.000000
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

void validate_batch(const Batch& in) {
  const char* dims[3] = {"B", "T", "D"};
  const int values[3] = {in.B, in.T, in.D};
  for (int i = 0; i < 3; ++i)
    if (values[i] <= 0)
      throw InvalidInput(std::string(dims[i]) + " must be positive, got " + dims[i] + " = " +
                         std::to_string(values[i]) + " (shape [B, T, D] = [" +
                         std::to_string(in.B) + ", " + std::to_string(in.T) + ", " +
                         std::to_string(in.D) + "])");
  // B·T fits (each < 2^31); B·T·D may not: a wrapped product could match a small x
  if (in.rows() > SIZE_MAX / std::size_t(in.D))
    throw InvalidInput("shape [B, T, D] = [" + std::to_string(in.B) + ", " + std::to_string(in.T) +
                       ", " + std::to_string(in.D) + "] overflows the size of x");
  if (in.lengths.size() != std::size_t(in.B))
    throw InvalidInput("lengths has " + std::to_string(in.lengths.size()) +
                       " entries, expected B = " + std::to_string(in.B));
  for (int b = 0; b < in.B; ++b)
    if (in.lengths[b] < 0 || in.lengths[b] > in.T)
      throw InvalidInput("lengths[" + std::to_string(b) + "] = " + std::to_string(in.lengths[b]) +
                         " is outside [0, T = " + std::to_string(in.T) + "]");
  if (in.x.size() != in.rows() * in.D)
    throw InvalidInput("x has " + std::to_string(in.x.size()) + " values, expected B*T*D = " +
                       std::to_string(in.rows() * in.D));
}

void validate_dy(const Batch& in, const std::vector<float>& dy) {
  if (dy.size() != in.rows() * std::size_t(in.D))
    throw InvalidInput("dy has " + std::to_string(dy.size()) + " values, expected B*T*D = " +
                       std::to_string(in.rows() * std::size_t(in.D)));
}

void validate_rows(const char* kernel, const float* out, const float* x, std::size_t rows, int D) {
  if (D <= 0) throw InvalidInput(std::string(kernel) + ": D must be positive, got D = " + std::to_string(D));
  if (rows > SIZE_MAX / std::size_t(D))
    throw InvalidInput(std::string(kernel) + ": rows = " + std::to_string(rows) + " times D = " +
                       std::to_string(D) + " overflows");
  if (rows > 0 && (!out || !x))
    throw InvalidInput(std::string(kernel) + ": " + (!out ? "out" : "x") + " is null");
}

void validate_backward_rows(const char* kernel, const float* dx, const float* dy, const float* x,
                            std::size_t rows, int D) {
  static const float any = 0;  // D and the size as validate_rows checks them; the pointers by name
  validate_rows(kernel, &any, &any, rows, D);
  if (rows > 0 && (!dx || !dy || !x))
    throw InvalidInput(std::string(kernel) + ": " + (!dx ? "dx" : !dy ? "dy" : "x") + " is null");
}

void validate_affine(const Params& p, int D) {
  if (!p.gamma.empty() && p.gamma.size() != std::size_t(D))
    throw InvalidInput("gamma has " + std::to_string(p.gamma.size()) + " values, expected D = " +
                       std::to_string(D));
  if (!p.beta.empty() && p.beta.size() != std::size_t(D))
    throw InvalidInput("beta has " + std::to_string(p.beta.size()) + " values, expected D = " +
                       std::to_string(D));
}

void validate_affine_norm(const Batch& in, const Params& p) {
  validate_batch(in);
  validate_affine(p, in.D);
  validate_eps(p.eps);
}

void validate_eps(double eps) {
  // The optimized kernels add ε in float32: below FLT_MIN it would flush towards 0 (a constant
  // row would divide by 0) or lose its bits, above FLT_MAX it is inf. Both sides of the tolerance
  // rule must compute the same function, so ε must be a normal float32 value.
  if (!(eps >= FLT_MIN && eps <= FLT_MAX))
    throw InvalidInput("eps must be positive, finite and a normal float32 value (in [" +
                       format_value(FLT_MIN) + ", " + format_value(FLT_MAX) + "]), got eps = " +
                       format_value(eps));
}

void validate_finite(const Params& p, const std::string& layer, const std::string& name) {
  const double v = p.get(name);
  if (!std::isfinite(v))
    throw InvalidInput(layer + ": " + name + " must be finite, got " + name + " = " + format_value(v));
}

void validate_momentum(double m) {
  if (!(m >= 0 && m <= 1))  // NaN fails both comparisons
    throw InvalidInput("momentum must be in [0, 1], got momentum = " + format_value(m));
}

void validate_state(const State& s, int D, const char* layer) {
  if (s.running_mean.size() != std::size_t(D))
    throw InvalidInput(std::string(layer) + ": running_mean has " +
                       std::to_string(s.running_mean.size()) + " values, expected D = " +
                       std::to_string(D));
  if (s.running_var.size() != std::size_t(D))
    throw InvalidInput(std::string(layer) + ": running_var has " +
                       std::to_string(s.running_var.size()) + " values, expected D = " +
                       std::to_string(D));
}

}  // namespace normcheck
