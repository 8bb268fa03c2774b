#include "properties/golden_grad.hpp"

#include <cstdlib>
#include <fstream>
#include <optional>

namespace normcheck {
namespace {

using nlohmann::json;

std::string grad_field_error(const std::string& field, const std::string& what) {
  return "field '" + field + "': " + what;
}

std::string grad_string_field(const json& c, const char* name) {
  return c.is_object() && c.contains(name) && c[name].is_string() ? c[name].get<std::string>()
                                                                  : std::string();
}

// Every field of a gradient case, read and checked before anything is computed.
struct GradCase {
  Batch x;
  Params p;
  State state;
  std::vector<float> dy;
  std::vector<double> dx;
  std::optional<std::vector<double>> dgamma, dbeta;  // nullopt: null in the file
  bool valid_only = false;
};

// An expected per-feature gradient: null (the layer has none) or [D] numbers; it must be given
// exactly when the case has the parameter.
std::optional<std::vector<double>> grad_feature_field(const json& c, const std::string& field,
                                                      bool has_param, const char* param, int D) {
  if (!c.contains(field))
    throw InvalidInput(grad_field_error(field, std::string("missing (null when the case has no ") + param + ")"));
  if (c[field].is_null()) {
    if (has_param) throw InvalidInput(grad_field_error(field, std::string("null, but the case has ") + param));
    return std::nullopt;
  }
  if (!has_param) throw InvalidInput(grad_field_error(field, std::string("given, but the case has no ") + param));
  return golden::numbers(c, field, D);
}

GradCase read_grad_case(const json& c, const LayerRow& row) {
  GradCase g;
  g.x = golden::batch(c);
  const std::size_t n = g.x.x.size();
  const int D = g.x.D;
  g.p = golden::params(c, *row.layer, D);
  g.dy = golden::float32s(c, "dy", n);
  g.dx = golden::numbers(c, "dx", n);
  g.dgamma = grad_feature_field(c, "dgamma", !g.p.gamma.empty(), "gamma", D);
  g.dbeta = grad_feature_field(c, "dbeta", !g.p.beta.empty(), "beta", D);
  if (row.layer->stateful()) {
    // eval normalizes with the running statistics; train reads none (the forward would update
    // them), so the file need not carry them
    if (row.mode() == Mode::eval || c.contains("running_mean") || c.contains("running_var")) {
      g.state.running_mean = golden::numbers(c, "running_mean", D);
      g.state.running_var = golden::numbers(c, "running_var", D);
    } else {
      g.state.running_mean.assign(D, 0.0);
      g.state.running_var.assign(D, 1.0);
    }
  }
  g.valid_only = golden::valid_only(c);
  return g;
}

const LayerRow* backward_row_for_op(const std::string& op) {
  static const auto rows = layer_rows();
  for (const auto& r : rows)
    if (r.layer->has_backward() && golden_op(r) == op) return &r;
  return nullptr;
}

}  // namespace

bool is_grad_golden(const json& file) {
  return file.is_object() && grad_string_field(file, "format") == kGradGoldenFormat;
}

json load_grad_golden(const std::string& path) {
  json j = load_golden(path);
  if (!is_grad_golden(j))
    throw GoldenFileError(path + ": \"format\" is not \"" + std::string(kGradGoldenFormat) + "\"");
  return j;
}

std::string default_grad_golden_path() {
  if (const char* env = std::getenv("NORMCHECK_GRAD_GOLDEN")) return env;
  if (std::ifstream(NORMCHECK_GRAD_GOLDEN_PATH)) return NORMCHECK_GRAD_GOLDEN_PATH;
  return NORMCHECK_GRAD_GOLDEN_INSTALLED;
}

GoldenOutcome check_grad_golden_case(const json& c, Impl impl) {
  const std::string op = grad_string_field(c, "op");
  if (const LayerRow* row = backward_row_for_op(op)) return check_grad_golden_case(c, impl, *row);
  GoldenOutcome o;
  o.impl = impl;
  o.op = op;
  o.id = grad_string_field(c, "id");
  if (!c.is_object()) {
    o.malformed = true;
    o.error = std::string("a case must be a JSON object, got ") + c.type_name();
  } else if (op.empty()) {
    o.malformed = true;
    o.error = "field 'op': missing or not a string";
  } else {
    o.known = false;
    o.error = "field 'op': unknown op '" + op + "' (no layer row with a backward pass)";
  }
  return o;
}

GoldenOutcome check_grad_golden_case(const json& c, Impl impl, const LayerRow& row) {
  return golden::run_case(c, impl, [&](GoldenOutcome& o) {
    if (!row.layer->has_backward())
      throw InvalidInput(row.layer->name + " has no backward pass in this build");
    const GradCase g = read_grad_case(c, row);
    const auto tol = golden::tolerance(c, impl);
    Grads out;
    golden::run_kernel(o.op, [&] { row.layer->backward(impl)(g.x, g.p, row.mode(), &g.state, g.dy, out); });
    const Batch& x = g.x;
    const int T = x.T, D = x.D;
    golden::compare(
        o, "dx", out.dx, g.dx, tol,
        [&](std::size_t i) { return !g.valid_only || x.valid(int(i / D / T), int(i / D % T)); },
        [&](std::size_t i) { return golden::position(i, {x.B, T, D}); });
    const auto all = [](std::size_t) { return true; };
    const auto at = [D](std::size_t i) { return golden::position(i, {D}); };
    if (g.dgamma) golden::compare(o, "dgamma", out.dgamma, *g.dgamma, tol, all, at);
    if (g.dbeta) golden::compare(o, "dbeta", out.dbeta, *g.dbeta, tol, all, at);
  });
}

}  // namespace normcheck
