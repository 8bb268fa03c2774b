#include "properties/golden.hpp"

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace normcheck {
namespace {

using nlohmann::json;

std::string field_error(const std::string& field, const std::string& what) {
  return "field '" + field + "': " + what;
}

}  // namespace

namespace golden {

std::vector<double> numbers(const json& c, const std::string& field, std::size_t expect_size) {
  if (!c.contains(field)) throw InvalidInput(field_error(field, "missing"));
  const json& a = c.at(field);
  if (!a.is_array()) throw InvalidInput(field_error(field, "must be an array of numbers"));
  if (expect_size != std::size_t(-1) && a.size() != expect_size)
    throw InvalidInput(field_error(field, "has " + std::to_string(a.size()) + " values, expected " +
                                              std::to_string(expect_size)));
  std::vector<double> v;
  v.reserve(a.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (!a[i].is_number())
      throw InvalidInput(field_error(field + "[" + std::to_string(i) + "]", "not a number"));
    v.push_back(a[i].get<double>());
  }
  return v;
}

Tolerance tolerance(const json& c, Impl impl) {
  Tolerance t;
  if (c.contains("tolerance") && c["tolerance"].is_object()) {
    const json& j = c["tolerance"];
    if (j.contains("atol") && j["atol"].is_number()) t.atol = j["atol"].get<double>();
    if (j.contains("rtol") && j["rtol"].is_number()) t.rtol = j["rtol"].get<double>();
  }
  if (impl == Impl::reference) {  // double precision: 1e-4 of the float bound (about 1e-9)
    t.atol *= 1e-4;
    t.rtol = 1e-9;
  }
  return t;
}

void compare(GoldenOutcome& o, const std::string& field, const std::vector<double>& got,
             const std::vector<double>& want, const Tolerance& tol,
             const std::function<bool(std::size_t)>& include,
             const std::function<std::string(std::size_t)>& position) {
  for (std::size_t i = 0; i < want.size(); ++i) {
    if (!include(i)) continue;
    const double err = std::abs(got[i] - want[i]);
    const double bound = tol.atol + tol.rtol * std::abs(want[i]);
    const bool ok = (std::isnan(got[i]) && std::isnan(want[i])) || err <= bound;
    if (std::isfinite(err)) o.max_error = std::max(o.max_error, err);
    if (!ok && o.error.empty()) {
      std::ostringstream s;
      s.precision(9);
      s << field << position(i) << " = " << got[i] << ", expected " << want[i] << " (|diff| "
        << err << " > " << bound << ")";
      o.error = s.str();
    }
  }
}

}  // namespace golden

namespace {

using golden::numbers;

std::vector<float> floats(const std::vector<double>& v) { return {v.begin(), v.end()}; }

const LayerRow* row_for_op(const std::string& op) {
  static const auto rows = layer_rows();
  for (const auto& r : rows)
    if (golden_op(r) == op) return &r;
  return nullptr;
}

double param(const json& c, const std::string& name, double fallback) {
  if (!c.contains("params") || !c["params"].is_object() || !c["params"].contains(name))
    return fallback;
  const json& v = c["params"][name];
  if (!v.is_number()) throw InvalidInput(field_error("params." + name, "not a number"));
  return v.get<double>();
}

}  // namespace

bool norm_golden_op(const std::string& op) { return row_for_op(op) != nullptr; }

// The source tree's copy when it is there (a build tree), else the installed one.
std::string default_golden_path() {
  if (const char* env = std::getenv("NORMCHECK_GOLDEN")) return env;
  if (std::ifstream(NORMCHECK_GOLDEN_PATH)) return NORMCHECK_GOLDEN_PATH;
  return NORMCHECK_GOLDEN_INSTALLED;
}

json load_golden(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw GoldenFileError(path + ": cannot open the file");
  json j;
  try {
    j = json::parse(in);
  } catch (const json::parse_error& e) {
    throw GoldenFileError(path + ": not valid JSON (" + std::string(e.what()) + ")");
  }
  if (!j.is_object() || !j.contains("cases") || !j["cases"].is_array())
    throw GoldenFileError(path + ": no \"cases\" array at the top level");
  return j;
}

GoldenOutcome check_norm_golden_case(const json& c, Impl impl) {
  const std::string op = c.is_object() && c.contains("op") && c["op"].is_string()
                             ? c["op"].get<std::string>()
                             : std::string();
  const LayerRow* row = row_for_op(op);
  if (!row) {
    GoldenOutcome o;
    o.impl = impl;
    o.op = op;
    o.id = c.is_object() && c.contains("id") && c["id"].is_string() ? c["id"].get<std::string>() : "<no id>";
    o.known = false;
    o.error = op.empty() ? "field 'op': missing or not a string" : "unknown op '" + op + "'";
    return o;
  }
  return check_norm_golden_case(c, impl, *row);
}

GoldenOutcome check_norm_golden_case(const json& c, Impl impl, const LayerRow& row_ref) {
  GoldenOutcome o;
  o.impl = impl;
  const LayerRow* row = &row_ref;
  try {
    if (!c.is_object()) throw InvalidInput("a case must be a JSON object");
    o.id = c.value("id", std::string("<no id>"));
    o.op = c.value("op", std::string());
    const auto shape = numbers(c, "shape", 3);
    for (double s : shape)
      if (s < 1 || s > 1e6 || s != std::floor(s))
        throw InvalidInput(field_error("shape", "entries must be whole numbers in [1, 1e6]"));
    const int B = int(shape[0]), T = int(shape[1]), D = int(shape[2]);
    const std::size_t n = std::size_t(B) * T * D;
    if (n > (std::size_t(1) << 26)) throw InvalidInput(field_error("shape", "too large"));
    Batch x(B, T, D);
    const auto lengths = numbers(c, "lengths", B);
    for (int b = 0; b < B; ++b) x.lengths[b] = int(lengths[b]);
    x.x = floats(numbers(c, "x", n));
    const auto y = numbers(c, "y", n);

    Params p;
    if (c.contains("gamma") && !c["gamma"].is_null())
      p.gamma = floats(numbers(c, "gamma", row->layer->params.scalar_gain ? 1 : D));
    if (c.contains("beta") && !c["beta"].is_null()) p.beta = floats(numbers(c, "beta", D));
    p.eps = param(c, "eps", p.eps);
    p.momentum = param(c, "momentum", p.momentum);
    p.groups = int(param(c, "groups", p.groups));
    p.alpha = param(c, "alpha", p.alpha);
    for (const auto& e : row->layer->params.extra) p.extra[e.name] = param(c, e.name, e.min);
    State st;
    if (row->layer->stateful()) {
      st.running_mean = numbers(c, "running_mean", D);
      st.running_var = numbers(c, "running_var", D);
    }

    const auto tol = golden::tolerance(c, impl);
    Output out;
    row->layer->forward(impl)(x, p, row->mode(), &st, out);

    const bool valid_only = c.value("valid_only", false);
    golden::compare(
        o, "y", out, y, tol, [&](std::size_t i) { return !valid_only || x.valid(int(i / D / T), int(i / D % T)); },
        [&](std::size_t i) {
          return "[" + std::to_string(i / D / T) + "," + std::to_string(i / D % T) + "," +
                 std::to_string(i % D) + "]";
        });
    if (row->mode() == Mode::train) {
      const auto all = [](std::size_t) { return true; };
      const auto at = [](std::size_t i) { return "[" + std::to_string(i) + "]"; };
      golden::compare(o, "new_running_mean", st.running_mean, numbers(c, "new_running_mean", D), tol, all, at);
      golden::compare(o, "new_running_var", st.running_var, numbers(c, "new_running_var", D), tol, all, at);
    }
    o.passed = o.error.empty();
  } catch (const InvalidInput& e) {
    o.passed = false;
    o.error = e.what();
  } catch (const json::exception& e) {
    o.passed = false;
    o.error = std::string("malformed case: ") + e.what();
  }
  return o;
}

}  // namespace normcheck
