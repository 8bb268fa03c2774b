#include "properties/golden.hpp"

#include <cmath>
#include <fstream>
#include <sstream>

namespace normcheck {
namespace {

using nlohmann::json;

std::string field_error(const std::string& field, const std::string& what) {
  return "field '" + field + "': " + what;
}

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

std::string default_golden_path() { return NORMCHECK_GOLDEN_PATH; }

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

GoldenOutcome check_golden_case(const json& c, Impl impl) {
  GoldenOutcome o;
  o.impl = impl;
  try {
    if (!c.is_object()) throw InvalidInput("a case must be a JSON object");
    o.id = c.value("id", std::string("<no id>"));
    if (!c.contains("op") || !c["op"].is_string()) throw InvalidInput(field_error("op", "missing"));
    o.op = c["op"].get<std::string>();
    const LayerRow* row = row_for_op(o.op);
    if (!row) {
      o.known = false;
      o.error = "unknown op '" + o.op + "'";
      return o;
    }
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
    State st;
    if (row->layer->stateful()) {
      st.running_mean = numbers(c, "running_mean", D);
      st.running_var = numbers(c, "running_var", D);
    }

    double atol = 1e-5, rtol = 1e-5;
    if (c.contains("tolerance") && c["tolerance"].is_object()) {
      atol = c["tolerance"].value("atol", atol);
      rtol = c["tolerance"].value("rtol", rtol);
    }
    if (impl == Impl::reference) {  // double precision: 1e-9 relative to the float bound
      atol *= 1e-4;
      rtol = 1e-9;
    }
    Output out;
    row->layer->forward(impl)(x, p, row->mode(), &st, out);

    const bool valid_only = c.value("valid_only", false);
    auto check = [&](const std::string& field, double got, double want, const std::string& pos) {
      const double err = std::abs(got - want);
      const bool ok = (std::isnan(got) && std::isnan(want)) || err <= atol + rtol * std::abs(want);
      if (std::isfinite(err)) o.max_error = std::max(o.max_error, err);
      if (!ok && o.error.empty()) {
        std::ostringstream s;
        s.precision(9);
        s << field << pos << " = " << got << ", expected " << want << " (|diff| " << err
          << " > " << atol + rtol * std::abs(want) << ")";
        o.error = s.str();
      }
    };
    for (int b = 0; b < B; ++b)
      for (int t = 0; t < T; ++t) {
        if (valid_only && !x.valid(b, t)) continue;
        for (int d = 0; d < D; ++d) {
          const std::size_t i = x.index(b, t, d);
          check("y", out[i], y[i],
                "[" + std::to_string(b) + "," + std::to_string(t) + "," + std::to_string(d) + "]");
        }
      }
    if (row->mode() == Mode::train) {
      const auto rm = numbers(c, "new_running_mean", D), rv = numbers(c, "new_running_var", D);
      for (int d = 0; d < D; ++d) {
        check("new_running_mean", st.running_mean[d], rm[d], "[" + std::to_string(d) + "]");
        check("new_running_var", st.running_var[d], rv[d], "[" + std::to_string(d) + "]");
      }
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
