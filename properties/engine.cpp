#include "properties/engine.hpp"

#include <omp.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <sstream>

#include <rapidcheck.h>
#include <rapidcheck/detail/Configuration.h>
#include <rapidcheck/detail/TestListener.h>

namespace normcheck {
namespace {

// Sets the OpenMP thread count for one side of a scenario and restores it after.
class ThreadScope {
 public:
  explicit ThreadScope(int n) : prev_(omp_get_max_threads()), set_(n > 0) {
    if (set_) omp_set_num_threads(n);
  }
  ~ThreadScope() {
    if (set_) omp_set_num_threads(prev_);
  }

 private:
  int prev_;
  bool set_;
};

struct SideOut {
  std::vector<Output> outs;
  std::vector<Conditioning> conds;
  State state;
};

SideOut run_side(const LayerRow& row, Impl cell_impl, const Scenario& sc, const Side& side) {
  const Impl impl = side.impl.value_or(cell_impl);
  const ForwardFn& f = row.layer->forward(impl);
  SideOut r;
  r.state = sc.state;
  ThreadScope threads(side.threads);
  for (const auto& w : side.warmup) {
    Output tmp;
    f(w, sc.params, Mode::train, &r.state, tmp);
  }
  for (const auto& c : side.calls) {
    const State before = r.state;
    Output o;
    f(c.batch, sc.params, c.mode, &r.state, o);
    r.outs.push_back(std::move(o));
    r.conds.push_back(row.layer->conditioning(c.batch, sc.params, c.mode, &before));
  }
  return r;
}

struct Finding {
  bool finite_violation = false;    // a real, finite counterexample
  bool nonfinite_mismatch = false;  // NaN/inf on one side only (a failure for ✓ cells)
  int mismatches = 0;
  double max_dev = 0;               // largest finite |a − b|
  double worst_ratio = -1;          // of the worst pair: |a − b| / tolerance
  std::string where;
  double va = 0, vb = 0, tol = 0;
  TokenPos pa, pb;
  int d = 0;
  // per compared token pair, for the report: the tolerance of each feature and the features
  // that count as a mismatch
  struct Pair {
    TokenPos pa, pb;
    std::vector<double> tolerance;
    std::vector<int> mismatch;
  };
  std::vector<Pair> pairs;
  bool any() const { return finite_violation || nonfinite_mismatch; }
};

bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

double finite_or_zero(double v) { return std::isfinite(v) ? v : 0.0; }

void note_mismatch(Finding& f, double ratio, double a, double b, double tol, TokenPos pa,
                   TokenPos pb, int d, const std::string& where) {
  ++f.mismatches;
  if (ratio > f.worst_ratio) {
    f.worst_ratio = ratio;
    f.va = a;
    f.vb = b;
    f.tol = tol;
    f.pa = pa;
    f.pb = pb;
    f.d = d;
    f.where = where;
  }
}

// Compares one pair of values under the property's comparison; returns the tolerance used
// (0 for the bitwise and containment comparisons).
double compare_value(Finding& f, const PropertyDef& prop, double a, double b, double cond,
                   double eps_allow, TokenPos pa, TokenPos pb, int d, const std::string& where) {
  if (prop.comparison == Comparison::containment) {
    if (std::isfinite(a) && !std::isfinite(b)) {
      f.finite_violation = true;  // the mechanism is the spread of NaN itself
      f.max_dev += 1;
      note_mismatch(f, f.max_dev, a, b, 0, pa, pb, d, where);
    }
    return 0;
  }
  if (prop.comparison == Comparison::bitwise) {
    if (!same_bits(a, b)) {
      const bool finite = std::isfinite(a) && std::isfinite(b);
      if (finite) f.max_dev = std::max(f.max_dev, std::abs(a - b));
      (finite ? f.finite_violation : f.nonfinite_mismatch) = true;
      note_mismatch(f, finite ? std::abs(a - b) : INFINITY, a, b, 0, pa, pb, d, where);
    }
    return 0;
  }
  // the tolerance rule: |a − b| ≤ atol + rtol·|b|, atol = 1e-5 + 2e-6·cond
  const double tol = 1e-5 + 2e-6 * cond + 1e-5 * finite_or_zero(std::abs(b)) + eps_allow;
  if (a == b || (std::isnan(a) && std::isnan(b))) return tol;
  if (!std::isfinite(a) || !std::isfinite(b)) {
    f.nonfinite_mismatch = true;
    note_mismatch(f, INFINITY, a, b, 0, pa, pb, d, where);
    return tol;
  }
  const double dev = std::abs(a - b);
  f.max_dev = std::max(f.max_dev, dev);
  if (dev > tol) {
    f.finite_violation = true;
    note_mismatch(f, dev / tol, a, b, tol, pa, pb, d, where);
  }
  return tol;
}

Finding compare(const LayerRow& row, const PropertyDef& prop, const Scenario& sc,
                const SideOut& A, const SideOut& B) {
  (void)row;
  Finding f;
  for (const auto& [pa, pb] : sc.pairs) {
    const Batch& xa = sc.a.calls[pa.call].batch;
    const Batch& xb = sc.b.calls[pb.call].batch;
    Finding::Pair rec{pa, pb, std::vector<double>(xa.D), {}};
    for (int d = 0; d < xa.D; ++d) {
      const std::size_t ia = xa.index(pa.b, pa.t, d), ib = xb.index(pb.b, pb.t, d);
      const double a = A.outs[pa.call][ia], b = B.outs[pb.call][ib];
      const double cond = std::max(finite_or_zero(A.conds[pa.call].cond[ia]),
                                   finite_or_zero(B.conds[pb.call].cond[ib]));
      double eps_allow = 0;
      if (prop.eps_sensitive) {
        const double rel = std::max(finite_or_zero(A.conds[pa.call].eps_rel[ia]),
                                    finite_or_zero(B.conds[pb.call].eps_rel[ib]));
        const double beta = sc.params.beta.empty() ? 0.0 : sc.params.beta[d];
        eps_allow = rel * (std::abs(a - beta) + std::abs(b - beta));
      }
      const int before = f.mismatches;
      rec.tolerance[d] = compare_value(f, prop, a, b, cond, eps_allow, pa, pb, d, "output");
      if (f.mismatches > before) rec.mismatch.push_back(d);
    }
    f.pairs.push_back(std::move(rec));
  }
  if (sc.compare_state && !A.state.empty()) {
    for (std::size_t d = 0; d < A.state.running_mean.size(); ++d) {
      compare_value(f, prop, A.state.running_mean[d], B.state.running_mean[d], 0, 0, {}, {},
                    int(d), "running_mean");
      compare_value(f, prop, A.state.running_var[d], B.state.running_var[d], 0, 0, {}, {},
                    int(d), "running_var");
    }
  }
  return f;
}

// ---------------------------------------------------------------------------------------------
// counterexample rendering: small tensors as nested arrays [B][T][D]

nlohmann::json num(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  return v;
}

template <class V>
nlohmann::json tensor(const V& v, int B, int T, int D) {
  if (v.size() > 1024) return {{"truncated", true}, {"size", v.size()}};
  nlohmann::json out = nlohmann::json::array();
  for (int b = 0; b < B; ++b) {
    nlohmann::json seq = nlohmann::json::array();
    for (int t = 0; t < T; ++t) {
      nlohmann::json tok = nlohmann::json::array();
      for (int d = 0; d < D; ++d) tok.push_back(num(v[(std::size_t(b) * T + t) * D + d]));
      seq.push_back(tok);
    }
    out.push_back(seq);
  }
  return out;
}

nlohmann::json side_json(const Side& side, const SideOut& out, Impl cell_impl) {
  nlohmann::json j;
  j["implementation"] = to_string(side.impl.value_or(cell_impl));
  if (side.threads) j["threads"] = side.threads;
  if (!side.warmup.empty()) j["training_batches_before"] = side.warmup.size();
  nlohmann::json calls = nlohmann::json::array();
  const std::size_t shown = std::min<std::size_t>(side.calls.size(), 16);
  for (std::size_t i = 0; i < shown; ++i) {
    const Batch& x = side.calls[i].batch;
    calls.push_back({{"mode", to_string(side.calls[i].mode)},
                     {"shape", {x.B, x.T, x.D}},
                     {"lengths", x.lengths},
                     {"x", tensor(x.x, x.B, x.T, x.D)},
                     {"y", tensor(out.outs[i], x.B, x.T, x.D)}});
  }
  j["calls"] = calls;
  if (shown < side.calls.size()) j["calls_not_shown"] = side.calls.size() - shown;
  return j;
}

nlohmann::json evidence(const Scenario& sc, const SideOut& A, const SideOut& B, const Finding& f,
                        Impl impl) {
  nlohmann::json params = {{"eps", sc.params.eps}};
  if (!sc.params.gamma.empty()) params["gamma"] = sc.params.gamma;
  if (!sc.params.beta.empty()) params["beta"] = sc.params.beta;
  params["momentum"] = sc.params.momentum;
  params["groups"] = sc.params.groups;
  params["alpha"] = sc.params.alpha;
  if (!sc.state.empty()) {
    params["running_mean"] = sc.state.running_mean;
    params["running_var"] = sc.state.running_var;
  }
  nlohmann::json worst = {{"where", f.where}, {"a", num(f.va)}, {"b", num(f.vb)},
                          {"deviation", num(std::abs(f.va - f.vb))}, {"tolerance", f.tol}};
  if (f.where == "output") {
    worst["position_a"] = {f.pa.call, f.pa.b, f.pa.t, f.d};
    worst["position_b"] = {f.pb.call, f.pb.b, f.pb.t, f.d};
  } else {
    worst["feature"] = f.d;
  }
  // every compared token pair with its own values, so a report can print input row, related
  // input row, both outputs and the tolerance side by side whatever the calls look like
  nlohmann::json compared = nlohmann::json::array();
  const std::size_t shown = std::min<std::size_t>(f.pairs.size(), 32);
  for (std::size_t i = 0; i < shown; ++i) {
    const auto& p = f.pairs[i];
    const Batch& xa = sc.a.calls[p.pa.call].batch;
    const Batch& xb = sc.b.calls[p.pb.call].batch;
    auto row = [](const auto& v, std::size_t at, int D) {
      nlohmann::json r = nlohmann::json::array();
      for (int d = 0; d < D; ++d) r.push_back(num(v[at + d]));
      return r;
    };
    compared.push_back({{"a", {p.pa.call, p.pa.b, p.pa.t}},
                        {"b", {p.pb.call, p.pb.b, p.pb.t}},
                        {"x_a", row(xa.x, xa.index(p.pa.b, p.pa.t, 0), xa.D)},
                        {"x_b", row(xb.x, xb.index(p.pb.b, p.pb.t, 0), xb.D)},
                        {"y_a", row(A.outs[p.pa.call], xa.index(p.pa.b, p.pa.t, 0), xa.D)},
                        {"y_b", row(B.outs[p.pb.call], xb.index(p.pb.b, p.pb.t, 0), xb.D)},
                        {"tolerance", row(p.tolerance, 0, xa.D)},
                        {"mismatch", p.mismatch}});
  }
  nlohmann::json j = {{"related_input", sc.note},
                      {"params", params},
                      {"input", side_json(sc.a, A, impl)},
                      {"related", side_json(sc.b, B, impl)},
                      {"compared_tokens", sc.pairs.size()},
                      {"compared", compared},
                      {"mismatches", f.mismatches},
                      {"worst", worst}};
  if (shown < f.pairs.size()) j["compared_not_shown"] = f.pairs.size() - shown;
  if (sc.compare_state && !A.state.empty() && !B.state.empty())
    j["final_state"] = {
        {"input", {{"running_mean", A.state.running_mean}, {"running_var", A.state.running_var}}},
        {"related", {{"running_mean", B.state.running_mean}, {"running_var", B.state.running_var}}}};
  return j;
}

class QuietListener : public rc::detail::TestListener {
 public:
  void onTestCaseFinished(const rc::detail::CaseDescription&) override {}
  void onShrinkTried(const rc::detail::CaseDescription&, bool) override {}
  void onTestFinished(const rc::detail::TestMetadata&, const rc::detail::TestResult&) override {}
};

std::string fmt_double(double v) {
  std::ostringstream s;
  s.precision(6);
  s << v;
  return s.str();
}

}  // namespace

RunOptions options_from_rc_params() {
  const auto& cfg = rc::detail::configuration();
  RunOptions o;
  o.cases = cfg.testParams.maxSuccess;
  o.seed = cfg.testParams.seed;
  o.max_size = cfg.testParams.maxSize;
  return o;
}

std::string gtest_name(const std::string& cell_id) {
  std::string name = cell_id;
  for (auto& ch : name)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return name;
}

std::string Cell::id() const { return row_id + "/" + to_string(impl) + "/" + prop.id; }

namespace {

// One case of a metamorphic norm property: draw the scenario, run both sides, compare.
CaseOutcome check_norm_case(const LayerRow& row, Impl impl, const PropertyDef& prop) {
  const Scenario sc = prop.scenario(row);
  const SideOut A = run_side(row, impl, sc, sc.a);
  const SideOut B = run_side(row, impl, sc, sc.b);
  const Finding f = compare(row, prop, sc, A, B);
  CaseOutcome o;
  o.finite_violation = f.finite_violation;
  o.nonfinite_mismatch = f.nonfinite_mismatch;
  o.max_dev = f.max_dev;
  if (f.any()) {
    o.evidence = evidence(sc, A, B, f, impl);
    o.summary = sc.note + "; " + std::to_string(f.mismatches) + " values differ, worst " +
                o.evidence["worst"].dump();
  }
  return o;
}

}  // namespace

Cell norm_cell(const LayerRow& row, Impl impl, const PropertyDef& p) {
  Cell c;
  c.row_id = row.id();
  c.row_name = row.name();
  c.layer = row.layer->name;
  c.mode = row.mode();
  c.origin = row.layer->origin;
  c.impl = impl;
  c.prop = p.info();
  c.expected = expected(row, impl, p);
  c.check_case = [row, impl, &p] { return check_norm_case(row, impl, p); };
  return c;
}

std::vector<Cell> norm_cells() {
  std::vector<const LayerEntry*> all;
  for (const auto& l : layers()) all.push_back(&l);
  return norm_cells(all);
}

std::vector<Cell> norm_cells(const std::vector<const LayerEntry*>& layer_list) {
  std::vector<Cell> cells;
  std::vector<LayerRow> rows;
  for (const LayerEntry* l : layer_list)
    for (const auto& r : rows_of(*l)) rows.push_back(r);
  for (const auto& row : rows)
    for (Impl impl : {Impl::reference, Impl::optimized})
      for (const auto& p : properties()) cells.push_back(norm_cell(row, impl, p));
  return cells;
}

std::string replay_command(const CellResult& r) {
  if (r.reproduce.empty()) return "";
  return "normcheck matrix --layer '^" + r.row_id + "$' --property '^" + r.property +
         "$' --implementation " + to_string(r.impl) + " --reproduce '" + r.reproduce + "'";
}

std::string rc_params_command(const CellResult& r) {
  if (r.reproduce.empty()) return "";
  return "RC_PARAMS=\"" + r.reproduce + "\" normcheck_property_tests --gtest_filter='*/" +
         gtest_name(r.id()) + "'";
}

std::string CellResult::id() const {
  return row_id + "/" + normcheck::to_string(impl) + "/" + property;
}

bool CellResult::as_expected() const {
  if (expected == Expect::not_applicable) return observed == "not_applicable";
  return observed == to_string(expected);
}

CellResult run_cell(const Cell& cell, const RunOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  CellResult r;
  r.row_id = cell.row_id;
  r.layer = cell.layer;
  r.mode = cell.mode;
  r.placement = cell.placement;
  r.info = cell.prop;
  r.impl = cell.impl;
  r.property = cell.prop.id;
  r.row_name = cell.row_name;
  r.expected = cell.expected;
  if (r.expected == Expect::not_applicable) {
    r.observed = "not_applicable";
    return r;
  }
  const bool want_violation = r.expected == Expect::violated;
  const std::string id = cell.id();

  std::optional<nlohmann::json> last_failure;
  std::string last_summary;
  double max_dev = 0;
  auto body = [&]() {
    CaseOutcome o;
    try {
      o = cell.check_case();
    } catch (const InvalidInput& e) {
      RC_DISCARD(std::string("the layer rejects this input: ") + e.what());
    }
    max_dev = std::max(max_dev, o.max_dev);
    // A ✗ cell counts only a finite counterexample (never one made of NaN alone); a ✓ cell
    // fails on any disagreement.
    const bool counterexample = want_violation ? o.finite_violation : o.any();
    if (counterexample) {
      last_failure = o.evidence;
      last_summary = o.summary;
      RC_FAIL(o.summary);
    }
  };

  rc::detail::TestParams params;
  // a ✗ cell stops at its first counterexample, so a wider search costs only when none exists
  params.maxSuccess = want_violation ? options.cases * options.violation_search_factor : options.cases;
  params.maxSize = options.max_size;
  params.seed = options.seed ? *options.seed : rc::detail::configuration().testParams.seed;
  r.seed = params.seed;
  rc::detail::TestMetadata meta;
  meta.id = id;
  meta.description = id;
  std::unordered_map<std::string, rc::detail::Reproduce> reproduce;
  std::string repro = options.reproduce;
  if (!repro.empty()) {
    if (repro.rfind("reproduce=", 0) != 0) repro = "reproduce=" + repro;
    const auto cfg = rc::detail::configFromString(repro);
    auto it = cfg.reproduce.find(id);
    if (it == cfg.reproduce.end())
      throw std::invalid_argument("the reproduce string is not for cell " + id);
    reproduce[id] = it->second;
  } else if (options.use_rc_params_reproduce) {
    const auto& global = rc::detail::configuration().reproduce;
    if (auto it = global.find(id); it != global.end()) reproduce[id] = it->second;
  }
  QuietListener listener;
  const auto result = rc::detail::checkProperty(rc::detail::toProperty(body), meta, params,
                                                listener, reproduce);
  r.max_deviation = max_dev;

  const std::string cell_name = r.row_name + (r.placement.empty() ? "" : " [" + r.placement + "-LN block]") +
                                " / " + to_string(cell.impl) + " / " + r.property;
  if (result.template is<rc::detail::SuccessResult>()) {
    r.observed = "holds";
    r.cases = result.template get<rc::detail::SuccessResult>().numSuccess;
    if (want_violation)
      r.message = cell_name + ": expected violation not found in " + std::to_string(r.cases) +
                  " cases (largest deviation " + fmt_double(max_dev) +
                  "). Either the layer keeps this invariant or the generators cannot reach the "
                  "inputs that break it.";
  } else if (result.template is<rc::detail::FailureResult>()) {
    const auto& fail = result.template get<rc::detail::FailureResult>();
    r.observed = "violated";
    r.cases = fail.numSuccess + 1;
    rc::detail::Configuration cfg;
    cfg.reproduce[id] = fail.reproduce;
    // keep only the reproduce=... key: it is all a replay needs
    const std::string full = rc::detail::configToMinimalString(cfg);
    const auto at = full.find("reproduce=");
    r.reproduce = full.substr(at, full.find(' ', at) - at);
    if (last_failure) r.counterexample = *last_failure;
    const std::string detail = last_summary;
    if (!want_violation)
      r.message = cell_name + ": expected to hold, but a counterexample was found after " +
                  std::to_string(r.cases) + " cases and shrunk: " + detail +
                  "\n  replay: " + replay_command(r) + "\n      or  " + rc_params_command(r);
  } else if (result.template is<rc::detail::GaveUpResult>()) {
    r.observed = "error";
    r.cases = result.template get<rc::detail::GaveUpResult>().numSuccess;
    r.message = cell_name + ": gave up: " + result.template get<rc::detail::GaveUpResult>().description;
  } else {
    r.observed = "error";
    r.message = cell_name + ": " + result.template get<rc::detail::Error>().description;
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

nlohmann::json to_json(const CellResult& r) {
  nlohmann::json j = {{"layer", r.layer},
                      {"mode", r.mode == Mode::none ? nlohmann::json(nullptr)
                                                    : nlohmann::json(to_string(r.mode))},
                      {"implementation", to_string(r.impl)},
                      {"row", r.row_id},
                      {"property", r.property},
                      {"expected", to_string(r.expected)},
                      {"observed", r.observed},
                      {"as_expected", r.as_expected()},
                      {"cases", r.cases},
                      {"max_deviation", r.max_deviation},
                      {"counterexample", r.counterexample},
                      {"reproduce", r.reproduce},
                      {"seed", r.seed},
                      {"seconds", r.seconds}};
  if (!r.placement.empty()) j["placement"] = r.placement;
  if (!r.message.empty()) j["message"] = r.message;
  return j;
}

}  // namespace normcheck
