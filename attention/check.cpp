#include "attention/check.hpp"

#include <omp.h>

#include <cmath>
#include <cstring>

namespace normcheck::check {

double rule(double b, double cond) { return 1e-5 + 2e-6 * cond + 1e-5 * std::abs(b); }

double composite(double b) { return 1e-4 + 1e-4 * std::abs(b); }

void Diff::note(double ratio, double a, double b, double tol,
                const std::function<std::string()>& where) {
  ++mismatches_;
  if (ratio > worst_ratio_) {
    worst_ratio_ = ratio;
    a_ = a;
    b_ = b;
    tol_ = tol;
    where_ = where();
  }
}

void Diff::values(double a, double b, double tol, const std::function<std::string()>& where) {
  if (a == b || (std::isnan(a) && std::isnan(b))) return;
  if (!std::isfinite(a) || !std::isfinite(b)) {
    nonfinite_ = true;
    note(INFINITY, a, b, tol, where);
    return;
  }
  const double dev = std::abs(a - b);
  max_dev_ = std::max(max_dev_, dev);
  if (dev > tol) {
    finite_ = true;
    note(dev / tol, a, b, tol, where);
  }
}

void Diff::bitwise(double a, double b, const std::function<std::string()>& where) {
  if (std::memcmp(&a, &b, sizeof a) == 0) return;
  const bool finite = std::isfinite(a) && std::isfinite(b);
  if (finite) max_dev_ = std::max(max_dev_, std::abs(a - b));
  (finite ? finite_ : nonfinite_) = true;
  note(finite ? std::abs(a - b) : INFINITY, a, b, 0, where);
}

void Diff::fail(double a, double b, double tol, const std::string& where) {
  const bool finite = std::isfinite(a) && std::isfinite(b);
  if (finite) max_dev_ = std::max(max_dev_, std::abs(a - b));
  (finite ? finite_ : nonfinite_) = true;
  note(INFINITY, a, b, tol, [&] { return where; });
}

nlohmann::json Diff::worst() const {
  return {{"where", where_}, {"a", num(a_)}, {"b", num(b_)},
          {"deviation", num(std::abs(a_ - b_))}, {"tolerance", tol_}};
}

CaseOutcome outcome(const Diff& d, const std::string& note,
                    const std::function<nlohmann::json()>& evidence) {
  CaseOutcome o;
  o.finite_violation = d.finite_violation();
  o.nonfinite_mismatch = d.nonfinite_mismatch();
  o.max_dev = d.max_dev();
  if (d.any()) {
    o.evidence = evidence();
    o.evidence["related_input"] = note;
    o.evidence["mismatches"] = d.mismatches();
    o.evidence["worst"] = d.worst();
    o.summary = note + "; " + std::to_string(d.mismatches()) + " values differ, worst " +
                d.worst().dump();
  }
  return o;
}

nlohmann::json num(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  return v;
}

namespace {

template <class V>
nlohmann::json nested_at(const V& v, const std::vector<int>& dims, std::size_t level,
                         std::size_t offset) {
  nlohmann::json a = nlohmann::json::array();
  std::size_t stride = 1;
  for (std::size_t i = level + 1; i < dims.size(); ++i) stride *= dims[i];
  for (int i = 0; i < dims[level]; ++i) {
    if (level + 1 == dims.size())
      a.push_back(num(double(v[offset + i])));
    else
      a.push_back(nested_at(v, dims, level + 1, offset + i * stride));
  }
  return a;
}

}  // namespace

template <class V>
nlohmann::json nested(const V& v, const std::vector<int>& dims, std::size_t offset) {
  std::size_t n = 1;
  for (int d : dims) n *= d;
  if (n > 2048) return {{"truncated", true}, {"size", n}};
  if (dims.empty()) return num(double(v[offset]));
  return nested_at(v, dims, 0, offset);
}

template nlohmann::json nested(const std::vector<float>&, const std::vector<int>&, std::size_t);
template nlohmann::json nested(const std::vector<double>&, const std::vector<int>&, std::size_t);

ThreadScope::ThreadScope(int n) : prev_(omp_get_max_threads()), set_(n > 0) {
  if (set_) omp_set_num_threads(n);
}

ThreadScope::~ThreadScope() {
  if (set_) omp_set_num_threads(prev_);
}

}  // namespace normcheck::check
