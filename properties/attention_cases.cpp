#include "properties/attention_cases.hpp"

#include <numeric>

#include "properties/generators.hpp"

namespace normcheck::attn {

// ---------------------------------------------------------------------------------------------
// generators

rc::Gen<int> centered(int m) {
  return rc::gen::map(inRange(0, 2 * m + 1), [](int k) { return k % 2 ? (k + 1) / 2 : -(k / 2); });
}

std::vector<int> ints(std::size_t n, int m) {
  return *rc::gen::container<std::vector<int>>(n, centered(m));
}

std::vector<float> values(std::size_t n) {
  std::vector<float> v;
  v.reserve(n);
  for (int k : ints(n, 64)) v.push_back(float(k) / 16.0f);
  return v;
}

void roughen(std::vector<float>& v, int salt) {
  for (std::size_t i = 0; i < v.size(); ++i) v[i] *= float(1.0 + 0.37 * std::sin(double(i) + salt));
}

std::vector<std::vector<int>> permutations(const std::vector<int>& n) {
  std::vector<std::vector<int>> all;
  for (int size : n) {
    std::vector<int> p(size);
    std::iota(p.begin(), p.end(), 0);
    for (int i = 0; i + 1 < size; ++i) std::swap(p[i], p[*inRange(i, size)]);
    all.push_back(std::move(p));
  }
  return all;
}

float signed_scale() { return (*rc::gen::arbitrary<bool>() ? -1.0f : 1.0f) * gen::scale_factor(); }

std::vector<int> key_lengths(int B, int Tk) {
  std::vector<int> l(B);
  for (auto& x : l)
    x = *rc::gen::weightedOneOf<int>(
        {{1, rc::gen::just(0)}, {2, rc::gen::just(Tk)}, {5, inRange(1, Tk + 1)}});
  return l;
}

Tokens draw_tokens(const TokenRanges& r) {
  Tokens t;
  t.B = *inRange(r.B.first, r.B.second + 1);
  t.Tk = *inRange(r.T.first, r.T.second + 1);
  switch (r.queries) {
    case Queries::self: t.Tq = t.Tk; break;
    case Queries::at_most_keys: t.Tq = *inRange(1, t.Tk + 1); break;
    case Queries::any: t.Tq = *inRange(r.T.first, r.T.second + 1); break;
  }
  t.m.causal = r.causal == Causal::always || (r.causal == Causal::maybe && *rc::gen::arbitrary<bool>());
  if (r.padding) t.m.key_lengths = key_lengths(t.B, t.Tk);
  return t;
}

std::vector<std::pair<std::string, std::vector<int>>> schedules(int L, int P) {
  std::vector<std::pair<std::string, std::vector<int>>> all;
  for (int size : {1, 2, 3, L}) {
    std::vector<int> s;
    for (int t = 0; t < L; t += size) s.push_back(std::min(size, L - t));
    all.push_back({"chunks of " + std::to_string(size), s});
  }
  std::vector<int> s = {P};
  for (int t = P; t < L; ++t) s.push_back(1);
  all.push_back({"prefill " + std::to_string(P) + " + decode", s});
  return all;
}

std::string at(const std::string& name, const Index& index) {
  std::string s = name;
  for (std::size_t k = 0; k < index.size(); ++k) s.append(k ? "," : "[").append(std::to_string(index[k]));
  return s.append("]");
}

namespace {

template <class T>
std::string list_of(const std::vector<T>& v) {
  std::string s = "[";
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

}  // namespace

std::string list(const std::vector<int>& v) { return list_of(v); }
std::string list(const std::vector<float>& v) { return list_of(v); }

std::string list(const std::vector<std::vector<int>>& v) {
  std::string s;
  for (const auto& p : v) s.append(s.empty() ? "" : ", ").append(list(p));
  return s;
}

// ---------------------------------------------------------------------------------------------
// comparisons

std::optional<Index> same_row(const Index& related) { return related; }

From rows_where(std::function<bool(const Index& row)> keep) {
  return [keep = std::move(keep)](const Index& row) -> std::optional<Index> {
    if (!keep(row)) return std::nullopt;
    return row;
  };
}

namespace {

std::size_t flat(const Index& dims, const Index& index) {
  std::size_t r = 0;
  for (std::size_t k = 0; k < dims.size(); ++k) r = r * std::size_t(dims[k]) + std::size_t(index[k]);
  return r;
}

double cond_at(const OutRows& r, std::size_t e) {
  return r.cond && !r.cond->empty() ? r.cond_factor * (*r.cond)[e] : 0.0;
}

}  // namespace

void compare_rows(Diff& d, const OutRows& a, const OutRows& b, const From& from) {
  std::size_t rows = 1;
  for (int n : b.dims) rows *= std::size_t(n);
  Index index(b.dims.size(), 0);
  for (std::size_t rb = 0; rb < rows; ++rb) {
    for (std::size_t k = b.dims.size(), rest = rb; k-- > 0; rest /= std::size_t(b.dims[k]))
      index[k] = int(rest % std::size_t(b.dims[k]));
    const std::optional<Index> ia = from(index);
    if (!ia) continue;
    const std::size_t ea = flat(a.dims, *ia) * a.width, eb = rb * b.width;
    const auto x_row = [](const OutRows& r, const Index& i) {
      return r.x ? RowView(&(*r.x)[flat(r.dims, i) * r.x_width], r.x_width) : RowView();
    };
    d.rows({a.call, *ia}, {b.call, index}, RowView(&(*a.y)[ea], a.width), RowView(&(*b.y)[eb], b.width),
           [&](int k) {
             return tolerance((*b.y)[eb + k], std::max(cond_at(a, ea + k), cond_at(b, eb + k)));
           },
           x_row(a, *ia), x_row(b, index));
  }
}

void compare_weights(Diff& d, const SdpaShape& s, const std::vector<double>& a,
                     const std::vector<double>& b,
                     const std::function<double(int b, int h, int i)>& row_cond,
                     const std::function<bool(int b, int i)>& keep) {
  for (int bi = 0; bi < s.B; ++bi)
    for (int h = 0; h < s.H; ++h)
      for (int i = 0; i < s.Tq; ++i) {
        if (keep && !keep(bi, i)) continue;
        const double cond = row_cond ? row_cond(bi, h, i) : 0.0;
        const std::size_t row = ((std::size_t(bi) * s.H + h) * s.Tq + i) * s.Tk;
        for (int j = 0; j < s.Tk; ++j) {
          const double wa = a[row + j], wb = b[row + j];
          // identical bits compare equal under every comparison: the name is built only for
          // the values that may differ
          if (!same_bits(wa, wb)) d.value(at("weight", {bi, h, i, j}), wa, wb, tolerance(wb, cond));
        }
      }
}

void stochastic_row(Diff& d, RowView w, int visible, const Index& row) {
  double sum = 0;
  for (int j = 0; j < w.n; ++j) {
    Index key = row;
    key.push_back(j);
    if (j < visible && !(w[j] >= 0)) d.fail(at("weight", key) + " is negative", w[j], 0);
    if (j >= visible && w[j] != 0) d.fail(at("weight", key) + " of a masked key is not 0", w[j], 0);
    sum += w[j];
  }
  if (visible > 0) d.value(at("sum of weight row", row), sum, 1.0, tolerance(1.0, 0));
}

}  // namespace normcheck::attn
