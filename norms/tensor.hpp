// The data every layer and property speaks: a padded [B, T, D] batch, layer parameters and
// running state. Values are float32 (what a real kernel sees); the reference widens them.
#pragma once

#include <cstddef>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace normcheck {

// Mode of a layer row. Stateless layers have one row with Mode::none and ignore the mode they
// are called with; stateful layers (BatchNorm) have a train row and an eval row.
enum class Mode { none, train, eval };
enum class Impl { reference, optimized };

const char* to_string(Mode m);
const char* to_string(Impl i);
Mode mode_from_string(const std::string& s);  // throws std::invalid_argument
Impl impl_from_string(const std::string& s);  // throws std::invalid_argument

// Thrown for input a layer cannot accept (bad shapes, bad parameters, BatchNorm train on one
// value per channel). The message names the parameter and its value.
struct InvalidInput : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

struct Batch {
  int B = 0, T = 0, D = 0;
  std::vector<int> lengths;  // [B]: valid tokens of each sequence; t >= lengths[b] is padding
  std::vector<float> x;      // [B, T, D] row-major

  Batch() = default;
  Batch(int b, int t, int d) : B(b), T(t), D(d), lengths(b, t), x(std::size_t(b) * t * d, 0.f) {}

  std::size_t row(int b, int t) const { return (std::size_t(b) * T + t); }
  std::size_t index(int b, int t, int d) const { return row(b, t) * D + d; }
  float& at(int b, int t, int d) { return x[index(b, t, d)]; }
  float at(int b, int t, int d) const { return x[index(b, t, d)]; }
  bool valid(int b, int t) const { return t < lengths[b]; }
  std::size_t rows() const { return std::size_t(B) * T; }
  int valid_tokens() const;
};

struct Params {
  std::vector<float> gamma;  // [D] per-feature scale, or empty for "no affine"
  std::vector<float> beta;   // [D] per-feature shift, or empty
  double eps = 1e-5;
  double momentum = 0.1;  // stateful layers: new = (1 - momentum) * old + momentum * batch
  // The layer's own parameters by name, as its ParamSpec::named declares them (groups, alpha,
  // gain, rmax, ...).
  std::map<std::string, double> named;
  // The value of a named parameter; throws InvalidInput naming it when it is not set.
  double get(const std::string& name) const;
};

// Running statistics of a stateful layer. Held in double so the reference is exact; the
// optimized kernels round them to float when they read them.
struct State {
  std::vector<double> running_mean;  // [D]
  std::vector<double> running_var;   // [D]
  bool empty() const { return running_mean.empty(); }
};

// Outputs are widened to double so both implementations are compared on one type.
using Output = std::vector<double>;  // [B, T, D]

// Checks shared by every layer's entry point; each throws InvalidInput naming the parameter and
// its value, before anything is written.
void validate_batch(const Batch& in);  // B, T, D > 0; lengths[B] in [0, T]; x has B·T·D values
void validate_affine(const Params& p, int D);
void validate_eps(double eps);         // a normal, finite float32 value (the kernels add it in float)
void validate_state(const State& s, int D, const char* layer);
void validate_momentum(double m);      // in [0, 1]; NaN is rejected
void validate_dy(const Batch& in, const std::vector<float>& dy);  // a backward's dy: B·T·D values
// A named parameter (Params::named) that must be set and finite.
void validate_finite(const Params& p, const std::string& layer, const std::string& name);
// The checks of a per-token affine norm (layer_norm, rms_norm, group_norm, instance_norm):
// validate_batch, validate_affine and validate_eps.
void validate_affine_norm(const Batch& in, const Params& p);

// The optimized forward of an affine layer: runs a raw float32 kernel
// kernel(y, x, gamma, beta) over the whole batch (gamma, beta: nullptr when the layer has none)
// and widens y into `out`.
template <class Kernel>
void run_affine_kernel(const Batch& in, const Params& p, Output& out, Kernel&& kernel) {
  std::vector<float> y(in.x.size());
  kernel(y.data(), in.x.data(), p.gamma.empty() ? nullptr : p.gamma.data(),
         p.beta.empty() ? nullptr : p.beta.data());
  out.assign(y.begin(), y.end());
}

// The raw kernels' checks (kernels_api.hpp): D ≥ 1, rows·D values addressable, and `out`, `x`
// not null when there is a row to compute.
void validate_rows(const char* kernel, const float* out, const float* x, std::size_t rows, int D);

// The backward raw kernels' checks: D ≥ 1, rows·D values addressable, and dx, dy, x not null
// when there is a row to compute.
void validate_backward_rows(const char* kernel, const float* dx, const float* dy, const float* x,
                            std::size_t rows, int D);

// A double as the shortest text that reads back as the same value (for messages).
std::string format_value(double v);

}  // namespace normcheck
