#include "norms/tensor.hpp"

#include <cmath>
#include <string>

namespace normcheck {

const char* to_string(Mode m) {
  switch (m) {
    case Mode::none: return "none";
    case Mode::train: return "train";
    case Mode::eval: return "eval";
  }
  return "?";
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

int Batch::valid_tokens() const {
  int n = 0;
  for (int b = 0; b < B; ++b) n += lengths[b];
  return n;
}

void validate_batch(const Batch& in) {
  if (in.B <= 0 || in.T <= 0 || in.D <= 0)
    throw InvalidInput("shape [B, T, D] must be positive, got [" + std::to_string(in.B) + ", " +
                       std::to_string(in.T) + ", " + std::to_string(in.D) + "]");
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

void validate_affine(const Params& p, int D) {
  if (!p.gamma.empty() && p.gamma.size() != std::size_t(D))
    throw InvalidInput("gamma has " + std::to_string(p.gamma.size()) + " values, expected D = " +
                       std::to_string(D));
  if (!p.beta.empty() && p.beta.size() != std::size_t(D))
    throw InvalidInput("beta has " + std::to_string(p.beta.size()) + " values, expected D = " +
                       std::to_string(D));
}

void validate_eps(double eps) {
  if (!(eps > 0) || !std::isfinite(eps))
    throw InvalidInput("eps must be positive and finite, got " + std::to_string(eps));
}

void validate_momentum(double m) {
  if (!(m >= 0 && m <= 1))
    throw InvalidInput("momentum must be in [0, 1], got " + std::to_string(m));
}

void validate_state(const State& s, int D, const char* layer) {
  if (s.running_mean.size() != std::size_t(D) || s.running_var.size() != std::size_t(D))
    throw InvalidInput(std::string(layer) + ": running_mean/running_var must have D = " +
                       std::to_string(D) + " values, got " + std::to_string(s.running_mean.size()) +
                       "/" + std::to_string(s.running_var.size()));
}

}  // namespace normcheck
