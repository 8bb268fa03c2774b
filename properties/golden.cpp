#include "properties/golden.hpp"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdlib>
#include <filesystem>
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
      throw InvalidInput(field_error(field + "[" + std::to_string(i) + "]",
                                     std::string("not a number (") + a[i].type_name() + ")"));
    v.push_back(a[i].get<double>());
  }
  return v;
}

std::vector<float> float32s(const json& c, const std::string& field, std::size_t size) {
  const auto v = numbers(c, field, size);
  for (std::size_t i = 0; i < v.size(); ++i)
    if (!(std::abs(v[i]) <= double(FLT_MAX)))
      throw InvalidInput(field_error(field + "[" + std::to_string(i) + "]",
                                     format_value(v[i]) + " is outside the float32 range"));
  return {v.begin(), v.end()};
}

long long whole_number(const json& v, const std::string& field, double lo, double hi) {
  if (!v.is_number()) throw InvalidInput(field_error(field, std::string("not a number (") + v.type_name() + ")"));
  const double d = v.get<double>();
  if (!(d >= lo && d <= hi) || d != std::floor(d))
    throw InvalidInput(field_error(field, format_value(d) + " is not a whole number in [" +
                                              format_value(lo) + ", " + format_value(hi) + "]"));
  return (long long)d;
}

Tolerance tolerance(const json& c, Impl impl, double reference_share) {
  Tolerance t;
  if (c.contains("tolerance")) {
    const json& j = c["tolerance"];
    if (!j.is_object())
      throw InvalidInput(field_error("tolerance", "must be an object {\"atol\", \"rtol\"}"));
    for (auto [name, value] : {std::pair{"atol", &t.atol}, std::pair{"rtol", &t.rtol}}) {
      if (!j.contains(name)) continue;
      const json& v = j[name];
      if (!v.is_number() || !(v.get<double>() >= 0))
        throw InvalidInput(field_error(std::string("tolerance.") + name, "must be a number >= 0"));
      *value = v.get<double>();
    }
  }
  if (impl == Impl::reference) {  // double precision: 1e-4 of the float bound (about 1e-9)
    t.atol *= reference_share;
    t.rtol = reference_share == 1e-4 ? 1e-9 : t.rtol * reference_share;
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

std::string position(std::size_t i, const std::vector<int>& dims) {
  std::string s;
  for (int k = int(dims.size()) - 1; k >= 0; --k) {
    s = std::to_string(i % std::size_t(dims[k])) + (s.empty() ? "" : "," + s);
    i /= std::size_t(dims[k]);
  }
  return "[" + s + "]";
}

GoldenOutcome run_case(const json& c, Impl impl, const std::function<void(GoldenOutcome& o)>& body) {
  GoldenOutcome o;
  o.impl = impl;
  try {
    if (!c.is_object()) throw InvalidInput("a case must be a JSON object");
    if (!c.contains("id")) throw InvalidInput(field_error("id", "missing"));
    if (!c["id"].is_string()) throw InvalidInput(field_error("id", "must be a string"));
    o.id = c["id"].get<std::string>();
    if (!c.contains("op") || !c["op"].is_string())
      throw InvalidInput(field_error("op", "missing or not a string"));
    o.op = c["op"].get<std::string>();
    body(o);
    o.passed = o.error.empty();
  } catch (const InvalidInput& e) {
    o.passed = false;
    o.malformed = true;
    o.error = e.what();
  } catch (const json::exception& e) {
    o.passed = false;
    o.malformed = true;
    o.error = std::string("malformed case: ") + e.what();
  }
  return o;
}

void run_kernel(const std::string& op, const std::function<void()>& kernel) {
  try {
    kernel();
  } catch (const InvalidInput& e) {
    throw InvalidInput(op + " rejects the input: " + e.what());
  }
}

}  // namespace golden

namespace {

using golden::numbers;
using golden::whole_number;

// params.<name>: absent (or no params) gives the fallback; otherwise a number.
double param(const json& c, const std::string& name, double fallback) {
  if (!c.contains("params") || c["params"].is_null()) return fallback;
  if (!c["params"].is_object()) throw InvalidInput(field_error("params", "must be an object"));
  if (!c["params"].contains(name)) return fallback;
  const json& v = c["params"][name];
  if (!v.is_number()) throw InvalidInput(field_error("params." + name, "not a number"));
  return v.get<double>();
}

}  // namespace

namespace golden {

Batch batch(const json& c) {
  if (!c.contains("shape")) throw InvalidInput(field_error("shape", "missing"));
  const json& shape = c["shape"];
  if (!shape.is_array() || shape.size() != 3)
    throw InvalidInput(field_error("shape", "must be an array [B, T, D]"));
  const long long B = whole_number(shape[0], "shape[0]", 1, 1e6);
  const long long T = whole_number(shape[1], "shape[1]", 1, 1e6);
  const long long D = whole_number(shape[2], "shape[2]", 1, 1e6);
  const std::size_t n = std::size_t(B) * std::size_t(T) * std::size_t(D);  // < 2^60
  if (n > kMaxValues)
    throw InvalidInput(field_error("shape", "[" + std::to_string(B) + ", " + std::to_string(T) +
                                                ", " + std::to_string(D) + "] declares " +
                                                std::to_string(n) + " values, more than the limit " +
                                                std::to_string(kMaxValues)));
  if (!c.contains("lengths")) throw InvalidInput(field_error("lengths", "missing"));
  const json& l = c["lengths"];
  if (!l.is_array() || l.size() != std::size_t(B))
    throw InvalidInput(field_error("lengths", "must be an array of B = " + std::to_string(B) +
                                                  " whole numbers"));
  std::vector<int> lengths(B);
  for (long long b = 0; b < B; ++b)
    lengths[b] = int(whole_number(l[b], "lengths[" + std::to_string(b) + "]", 0, double(T)));
  auto x = float32s(c, "x", n);  // the size is checked before anything is allocated
  Batch in = Batch(int(B), int(T), int(D));
  in.lengths = lengths;
  in.x = std::move(x);
  return in;
}

Params params(const json& c, const LayerEntry& layer, int D) {
  Params p;
  const auto& spec = layer.params;
  // a parameter stored in gamma[0] (scale_norm's gain) makes gamma a one-element field
  bool gain_in_gamma = false;
  for (const auto& def : spec.named) gain_in_gamma |= def.golden_field == "gamma[0]";
  if (c.contains("gamma") && !c["gamma"].is_null()) {
    const auto gamma = float32s(c, "gamma", gain_in_gamma ? 1 : std::size_t(D));
    if (!gain_in_gamma) p.gamma = gamma;
  }
  if (c.contains("beta") && !c["beta"].is_null()) p.beta = float32s(c, "beta", D);
  // every parameter a case gives must be one the layer takes: a misnamed or misplaced one would
  // otherwise be ignored and the case checked with a default
  if (c.contains("params") && c["params"].is_object())
    for (auto it = c["params"].begin(); it != c["params"].end(); ++it) {
      const std::string& k = it.key();
      const bool known = k == "eps" || (k == "momentum" && spec.momentum) ||
                         std::any_of(spec.named.begin(), spec.named.end(),
                                     [&](const ParamDef& d) { return d.name == k && d.golden_field.empty(); });
      if (!known)
        throw InvalidInput(field_error("params." + k, layer.op() + " takes no parameter '" + k + "'"));
    }
  p.eps = param(c, "eps", p.eps);
  p.momentum = param(c, "momentum", p.momentum);
  for (const auto& def : spec.named) {
    double v = def.fallback;
    if (def.golden_field == "gamma[0]") {
      if (c.contains("gamma") && !c["gamma"].is_null()) v = float32s(c, "gamma", 1)[0];
    } else if (def.whole && c.contains("params") && c["params"].is_object() &&
               c["params"].contains(def.name)) {
      v = double(whole_number(c["params"][def.name], "params." + def.name, 1, 1e6));
    } else {
      v = param(c, def.name, def.fallback);
    }
    p.named[def.name] = v;
  }
  return p;
}

bool valid_only(const json& c) {
  if (!c.contains("valid_only")) return false;
  if (!c["valid_only"].is_boolean())
    throw InvalidInput(field_error("valid_only", "must be true or false"));
  return c["valid_only"].get<bool>();
}

}  // namespace golden

// The source tree's copy when it is there (a build tree), else the installed one.
std::string default_golden_path() {
  if (const char* env = std::getenv("NORMCHECK_GOLDEN")) return env;
  if (std::ifstream(NORMCHECK_GOLDEN_PATH)) return NORMCHECK_GOLDEN_PATH;
  return NORMCHECK_GOLDEN_INSTALLED;
}

std::string default_block_golden_path() {
  if (const char* env = std::getenv("NORMCHECK_BLOCK_GOLDEN")) return env;
  if (std::ifstream(NORMCHECK_BLOCK_GOLDEN_PATH)) return NORMCHECK_BLOCK_GOLDEN_PATH;
  return NORMCHECK_BLOCK_GOLDEN_INSTALLED;
}

json load_golden(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    throw GoldenFileError(path + ": is a directory, not a golden file");
  std::ifstream in(path);
  if (!in) throw GoldenFileError(path + ": cannot open the file");
  json j;
  try {
    j = json::parse(in);
  } catch (const json::exception& e) {  // parse errors, and numbers beyond double (1e999)
    throw GoldenFileError(path + ": not valid JSON (" + std::string(e.what()) + ")");
  }
  if (!j.is_object() || !j.contains("cases") || !j["cases"].is_array())
    throw GoldenFileError(path + ": no \"cases\" array at the top level");
  if (j["cases"].empty()) throw GoldenFileError(path + ": \"cases\" is empty: nothing to check");
  return j;
}

namespace {

// Every field of a norm case, read and checked before anything is allocated or computed.
struct NormCase {
  Batch x;
  std::vector<double> y;
  Params p;
  State state;
  std::vector<double> new_mean, new_var;
  bool valid_only = false;
};

NormCase read_norm_case(const json& c, const LayerRow& row) {
  NormCase nc;
  nc.x = golden::batch(c);
  nc.y = numbers(c, "y", nc.x.x.size());
  nc.p = golden::params(c, *row.layer, nc.x.D);
  const int D = nc.x.D;
  if (row.layer->stateful()) {
    nc.state.running_mean = numbers(c, "running_mean", D);
    nc.state.running_var = numbers(c, "running_var", D);
  }
  if (row.mode() == Mode::train) {
    nc.new_mean = numbers(c, "new_running_mean", D);
    nc.new_var = numbers(c, "new_running_var", D);
  }
  nc.valid_only = golden::valid_only(c);
  return nc;
}

}  // namespace

GoldenOutcome check_norm_golden_case(const json& c, Impl impl, const LayerRow& row) {
  return golden::run_case(c, impl, [&](GoldenOutcome& o) {
    NormCase nc = read_norm_case(c, row);
    const auto tol = golden::tolerance(c, impl);
    Output out;
    golden::run_kernel(o.op, [&] { row.layer->forward(impl)(nc.x, nc.p, row.mode(), &nc.state, out); });
    const Batch& x = nc.x;
    const int T = x.T, D = x.D;
    golden::compare(
        o, "y", out, nc.y, tol,
        [&](std::size_t i) { return !nc.valid_only || x.valid(int(i / D / T), int(i / D % T)); },
        [&](std::size_t i) { return golden::position(i, {x.B, T, D}); });
    if (row.mode() == Mode::train) {
      const auto all = [](std::size_t) { return true; };
      const auto at = [](std::size_t i) { return std::string("[") + std::to_string(i) + "]"; };
      golden::compare(o, "new_running_mean", nc.state.running_mean, nc.new_mean, tol, all, at);
      golden::compare(o, "new_running_var", nc.state.running_var, nc.new_var, tol, all, at);
    }
  });
}

}  // namespace normcheck
