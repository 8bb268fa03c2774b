#include "properties/compare.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "properties/counterexample.hpp"

namespace normcheck {

using nlohmann::json;

double tolerance(double b, double cond) {
  const double mag = std::isfinite(b) ? std::abs(b) : 0.0;
  const double c = std::isfinite(cond) ? cond : 0.0;
  return 1e-5 + 2e-6 * c + 1e-5 * mag;
}

double composite_tolerance(double b) { return 1e-4 + 1e-4 * (std::isfinite(b) ? std::abs(b) : 0.0); }

bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

double GradTolerance::bound(double b) const { return atol + rtol * std::abs(b); }

bool GradTolerance::agree(double a, double b) const {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  return std::abs(a - b) <= bound(b);
}

GradTolerance gradient_tolerance(double cond, double scale, Impl impl) {
  const double atol = 2e-6 * (1 + cond) * scale;
  if (impl == Impl::reference) return {.atol = 1e-4 * atol, .rtol = 1e-9};
  return {.atol = atol, .rtol = 1e-4};
}

double gradient_scale(const Grads& reference, const Conditioning& c, const Params& p,
                      const std::vector<float>& dy, int D) {
  double m = 0;
  for (const auto* v : {&reference.dx, &reference.dgamma, &reference.dbeta})
    for (double e : *v) m = std::max(m, std::abs(e));
  for (std::size_t i = 0; i < c.inv_std.size() && i < dy.size(); ++i) {
    const double g = p.gamma.size() == std::size_t(D) ? std::abs(double(p.gamma[i % D])) : 1.0;
    m = std::max(m, c.inv_std[i] * g * std::abs(double(dy[i])));
  }
  return m;
}

double worse_deviation(double a, double b) {
  if (std::isnan(a) || std::isnan(b)) return NAN;
  return std::max(a, b);
}

GradientTerms& GradientTerms::operator|=(const GradientTerms& o) {
  cond = std::max(cond, o.cond);
  scale = std::max(scale, o.scale);
  param_scale = std::max(param_scale, o.param_scale);
  return *this;
}

namespace {

// The largest Σ |dy·x̂_f| (dγ's terms) and Σ |dy| (dβ's) over the features, on the positions
// `counted` says; non-finite terms (poisoned padding a row reads) are skipped.
template <class Counted>
double param_term_sums(const LayerRow& row, const Batch& x, const Params& p, const State& s,
                       const Grads& g, const std::vector<float>& dy, Counted&& counted) {
  const std::size_t D = std::size_t(x.D);
  std::vector<double> gamma_terms(D, 0.0), beta_terms(D, 0.0);
  Output xhat;
  if (g.dgamma.size() == D) {
    Params unit = p;
    unit.gamma.assign(D, 1.0f);
    if (!unit.beta.empty()) unit.beta.assign(D, 0.0f);
    State st = s;  // a train-mode forward updates its running statistics
    row.layer->forward(Impl::reference)(x, unit, row.mode(), &st, xhat);
  }
  for (int b = 0; b < x.B; ++b)
    for (int t = 0; t < x.T; ++t) {
      if (!counted(b, t)) continue;
      const std::size_t at = x.index(b, t, 0);
      for (std::size_t f = 0; f < D && at + f < dy.size(); ++f) {
        const double d = std::abs(double(dy[at + f]));
        if (!std::isfinite(d)) continue;
        beta_terms[f] += d;
        if (!xhat.empty() && std::isfinite(xhat[at + f])) gamma_terms[f] += d * std::abs(xhat[at + f]);
      }
    }
  double m = 0;
  if (g.dbeta.size() == D) m = *std::max_element(beta_terms.begin(), beta_terms.end());
  if (!xhat.empty()) m = std::max(m, *std::max_element(gamma_terms.begin(), gamma_terms.end()));
  return m;
}

}  // namespace

GradientTerms gradient_terms(const LayerRow& row, const Batch& x, const Params& p, const State& s,
                             const Grads& g, const std::vector<float>& dy, bool padding_too) {
  const bool token_wise = !row.profile->violated.count("token_independence");
  Batch every = x;
  for (auto& l : every.lengths) l = x.T;
  std::vector<const Batch*> sets = {&x};
  if (padding_too && token_wise) sets.push_back(&every);
  Grads compared = g;
  if (!padding_too)  // padding's dx is not compared: it does not set the scale
    for (int b = 0; b < x.B; ++b)
      for (int t = x.lengths[b]; t < x.T; ++t)
        std::fill_n(compared.dx.begin() + std::ptrdiff_t(x.index(b, t, 0)), x.D, 0.0);
  GradientTerms terms;
  for (const Batch* b : sets) {
    const Conditioning c = row.layer->conditioning(*b, p, row.mode(), &s);
    for (double v : c.cond)
      if (std::isfinite(v)) terms.cond = std::max(terms.cond, v);
    terms.scale = std::max(terms.scale, gradient_scale(compared, c, p, dy, x.D));
  }
  if (!g.dgamma.empty() || !g.dbeta.empty())
    terms.param_scale = param_term_sums(row, x, p, s, g, dy, [&](int b, int t) {
      return t < x.lengths[b] || padding_too || !token_wise;
    });
  return terms;
}

GradTolerance gradient_tolerance(const GradientTerms& terms, Impl impl) {
  return gradient_tolerance(terms.cond, terms.scale, impl);
}

GradTolerance param_gradient_tolerance(const GradientTerms& terms, Impl impl) {
  return gradient_tolerance(terms.cond, std::max(terms.scale, terms.param_scale), impl);
}

double finite_difference_tolerance(double terms, double rounding, double h) {
  return 1e-7 * terms + 3e-13 * rounding / h;
}

json number_json(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  return v;
}

namespace {

template <class V>
json nested(const V& v, const std::vector<int>& shape, std::size_t level, std::size_t offset) {
  json a = json::array();
  std::size_t stride = 1;
  for (std::size_t i = level + 1; i < shape.size(); ++i) stride *= std::size_t(shape[i]);
  for (int i = 0; i < shape[level]; ++i) {
    if (level + 1 == shape.size())
      a.push_back(number_json(double(v[offset + i])));
    else
      a.push_back(nested(v, shape, level + 1, offset + i * stride));
  }
  return a;
}

json row_json(const RowView& r) {
  json a = json::array();
  for (int k = 0; k < r.n; ++k) a.push_back(number_json(r[k]));
  return a;
}

json pos_json(const RowPos& p, int element = -1) {
  json j = {{"call", p.call}, {"index", p.index}};
  if (element >= 0) j["element"] = element;
  return j;
}

}  // namespace

template <class V>
json tensor_json(const V& v, const std::vector<std::string>& dims, const std::vector<int>& shape,
                 std::size_t offset) {
  std::size_t n = 1;
  for (int d : shape) n *= std::size_t(d);
  json t = {{"dims", dims}, {"shape", shape}};
  if (n > 2048)
    t["values"] = {{"truncated", true}, {"size", n}};
  else
    t["values"] = shape.empty() ? number_json(double(v[offset])) : nested(v, shape, 0, offset);
  return t;
}

template json tensor_json(const std::vector<float>&, const std::vector<std::string>&,
                          const std::vector<int>&, std::size_t);
template json tensor_json(const std::vector<double>&, const std::vector<std::string>&,
                          const std::vector<int>&, std::size_t);

// ---------------------------------------------------------------------------------------------
// Diff

void Diff::note(double ratio, double a, double b, double tol, int pair, int element,
                const std::function<std::string()>& where) {
  ++mismatches_;
  if (ratio > worst_.ratio) worst_ = {ratio, a, b, tol, where(), pair, element};
}

bool Diff::compare(double a, double b, double tol, int pair, int element,
                   const std::function<std::string()>& where) {
  switch (how_) {
    case Comparison::containment:
      if (std::isfinite(a) && !std::isfinite(b)) {
        finite_ = true;  // the mechanism is the spread of NaN itself
        nonfinite_dev_ = worse_deviation(nonfinite_dev_, std::abs(a - b));
        note(double(mismatches_ + 1), a, b, 0, pair, element, where);  // the latest is the worst
        return true;
      }
      return false;
    case Comparison::bitwise: {
      if (same_bits(a, b)) return false;
      const bool finite = std::isfinite(a) && std::isfinite(b);
      if (finite) max_dev_ = std::max(max_dev_, std::abs(a - b));
      else nonfinite_dev_ = worse_deviation(nonfinite_dev_, std::abs(a - b));
      (finite ? finite_ : nonfinite_) = true;
      note(finite ? std::abs(a - b) : INFINITY, a, b, 0, pair, element, where);
      return true;
    }
    case Comparison::values:
    case Comparison::range: break;
  }
  if (a == b || (std::isnan(a) && std::isnan(b))) return false;
  if (!std::isfinite(a) || !std::isfinite(b)) {
    // a finite value lost to overflow is what a range property looks for; a leak of poison the
    // output must not read (poisoned_unread) is a real violation
    ((how_ == Comparison::range || leaks_count_) && std::isfinite(a) != std::isfinite(b) ? finite_
                                                                                          : nonfinite_) = true;
    nonfinite_dev_ = worse_deviation(nonfinite_dev_, std::abs(a - b));
    note(INFINITY, a, b, tol, pair, element, where);
    return true;
  }
  const double dev = std::abs(a - b);
  max_dev_ = std::max(max_dev_, dev);
  if (dev <= tol) return false;
  finite_ = true;
  note(dev / tol, a, b, tol, pair, element, where);
  return true;
}

void Diff::rows(const RowPos& pa, const RowPos& pb, RowView ya, RowView yb,
                const std::function<double(int k)>& tol, RowView xa, RowView xb) {
  Pair p{pa, pb, xa, xb, ya, yb, std::vector<double>(std::size_t(ya.n), 0.0), {}};
  const int index = int(count_++);
  for (int k = 0; k < ya.n; ++k) {
    if (how_ == Comparison::values || how_ == Comparison::range) p.tol[k] = tol(k);
    if (compare(ya[k], yb[k], p.tol[k], index, k, [&] { return labels_.output; }))
      p.mismatch.push_back(k);
  }
  if (pairs_.size() < kKeptPairs)
    pairs_.push_back(std::move(p));
  else if (worst_.pair == index)
    worst_pair_.assign(1, std::move(p));
}

void Diff::value(const std::string& where, double a, double b, double tol) {
  compare(a, b, tol, -1, -1, [&] { return where; });
}

void Diff::fail(const std::string& where, double a, double b) {
  const bool finite = std::isfinite(a) && std::isfinite(b);
  if (finite) max_dev_ = std::max(max_dev_, std::abs(a - b));
  else nonfinite_dev_ = worse_deviation(nonfinite_dev_, std::abs(a - b));
  (finite ? finite_ : nonfinite_) = true;
  note(INFINITY, a, b, 0, -1, -1, [&] { return where; });
}

json Diff::worst_json(std::size_t max_pairs) const {
  json w = {{"where", worst_.where},
            {"a", number_json(worst_.a)},
            {"b", number_json(worst_.b)},
            {"deviation", number_json(std::abs(worst_.a - worst_.b))},
            {"tolerance", worst_.tol}};
  if (worst_.pair >= 0) {
    const Pair& p = pair_at(worst_.pair);
    w["position_a"] = pos_json(p.pa, worst_.element);
    w["position_b"] = pos_json(p.pb, worst_.element);
    // its place in compared_json(max_pairs), which appends it when it is not among the first
    w["pair"] = std::min<std::size_t>(std::size_t(worst_.pair), max_pairs);
  }
  return w;
}

json Diff::labels_json() const {
  return {{"index", labels_.index}, {"element", labels_.element}, {"input", labels_.input},
          {"output", labels_.output}};
}

json Diff::compared_json(std::size_t max_pairs) const {
  // the worst pair first among those shown, then the others in order
  json out = json::array();
  auto add = [&](const Pair& p) {
    json j = {{"a", pos_json(p.pa)}, {"b", pos_json(p.pb)}, {"y_a", row_json(p.ya)},
              {"y_b", row_json(p.yb)}, {"tolerance", p.tol}, {"mismatch", p.mismatch}};
    if (p.xa.n) j["x_a"] = row_json(p.xa);
    if (p.xb.n) j["x_b"] = row_json(p.xb);
    out.push_back(std::move(j));
  };
  for (std::size_t i = 0; i < pairs_.size() && out.size() < max_pairs; ++i) add(pairs_[i]);
  if (worst_.pair >= int(max_pairs)) add(pair_at(worst_.pair));
  return out;
}

CaseOutcome outcome(const Diff& d, const std::string& related_input,
                    const std::function<CaseRecord()>& record) {
  CaseOutcome o;
  o.finite_violation = d.finite_violation();
  o.nonfinite_mismatch = d.nonfinite_mismatch();
  o.max_dev = d.max_dev();
  if (!d.any()) return o;
  CaseRecord r = record();
  o.evidence = {{"related_input", related_input},
                {"params", std::move(r.params)},
                {"labels", d.labels_json()},
                {"input", std::move(r.input)},
                {"related", std::move(r.related)},
                {"compared", d.compared_json()},
                {"compared_count", d.compared_count()},
                {"mismatches", d.mismatches()},
                {"worst", d.worst_json()}};
  o.summary = related_input + "; " + std::to_string(d.mismatches()) +
              (d.mismatches() == 1 ? " value differs" : " values differ") + "; worst " +
              worst_text(o.evidence);
  return o;
}

json side_json(const std::string& implementation, json calls) {
  return {{"implementation", implementation}, {"calls", std::move(calls)}};
}

json call_json(json shape, json tensors, json attributes) {
  return {{"shape", std::move(shape)}, {"attributes", std::move(attributes)},
          {"tensors", std::move(tensors)}};
}

}  // namespace normcheck
