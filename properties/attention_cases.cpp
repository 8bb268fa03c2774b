#include "properties/attention_cases.hpp"

#include <mutex>
#include <numeric>
#include <set>

#include "properties/generators.hpp"

namespace normcheck::attn {

// ---------------------------------------------------------------------------------------------
// generators

rc::Gen<int> centered(int m) {
  return rc::gen::map(inRange(0, 2 * m + 1), [](int k) { return k % 2 ? (k + 1) / 2 : -(k / 2); });
}

rc::Gen<bool> chance(int k, int n) {
  return rc::Gen<bool>([k, n](const rc::Random& random, int) {
    if (rc::Random(random).next() % std::uint64_t(n) >= std::uint64_t(k)) return rc::shrinkable::just(false);
    return rc::shrinkable::just(true, rc::seq::just(rc::shrinkable::just(false)));
  });
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

namespace {

// (tiles − 1) full tiles and a last one of 1 to `tile` elements, tiles 2 or 3 (the count does
// not scale with RapidCheck's size, so large cases come at every size)
int over_tiles(int tile) {
  const int tiles = *rc::gen::element(2, 3);
  return (tiles - 1) * tile + *inRange(1, tile + 1);
}

}  // namespace

int tiled_keys() { return over_tiles(kSdpaKeyTile); }
int tiled_queries() { return over_tiles(kSdpaQueryTile); }

Tokens draw_tokens(const TokenRanges& r) {
  Tokens t;
  const bool tiled = r.tiles_one_in > 0 && *one_in(r.tiles_one_in);
  t.B = *inRange(r.B.first, r.B.second + 1);
  t.Tk = tiled ? tiled_keys() : *inRange(r.T.first, r.T.second + 1);
  switch (r.queries) {
    case Queries::self: t.Tq = t.Tk; break;
    case Queries::at_most_keys: t.Tq = *inRange(1, t.Tk + 1); break;
    case Queries::any: t.Tq = tiled ? tiled_queries() : *inRange(r.T.first, r.T.second + 1); break;
  }
  t.m.causal = r.causal == Causal::always || (r.causal == Causal::maybe && *rc::gen::arbitrary<bool>());
  if (r.padding) t.m.key_lengths = key_lengths(t.B, t.Tk);
  classify_tokens(t.B, t.Tq, t.Tk, t.m);
  return t;
}

// ---------------------------------------------------------------------------------------------
// what the cases draw

std::string regime::poison(const std::string& kind) { return "poison " + kind; }

namespace {

struct Counter {
  std::mutex lock;
  Drawn counts;
};
Counter& counter() {
  static Counter c;
  return c;
}
// the current case: its cell and the labels it reached so far (cells run one at a time; a
// thread_local keeps two threads' cases apart all the same)
struct Current {
  bool open = false;
  std::string cell;
  std::set<std::string> labels;
};
thread_local Current current;

}  // namespace

CaseScope::CaseScope(std::string cell) {
  current.open = true;
  current.cell = std::move(cell);
  current.labels.clear();
}

CaseScope::~CaseScope() {
  {
    std::lock_guard<std::mutex> guard(counter().lock);
    auto& row = counter().counts[current.cell];
    for (const auto& l : current.labels) ++row[l];
  }
  current.open = false;
  current.labels.clear();
}

void classify(const std::string& label) {
  if (current.open) current.labels.insert(label);
}

void classify_tokens(int B, int Tq, int Tk, const SdpaMask& m) {
  if (!current.open) return;
  if (Tq == 1 && Tk == 1) classify(regime::T_is_1);
  if (Tk > 1 && Tk <= kSdpaKeyTile) classify(regime::Tk_within_tile);
  if (Tk > kSdpaKeyTile) {
    classify(regime::Tk_beyond_tile);
    classify(Tk <= 2 * kSdpaKeyTile ? regime::Tk_two_tiles : regime::Tk_beyond_two_tiles);
    if (Tk % kSdpaKeyTile != 0) classify(regime::Tk_partial_last_tile);
  }
  if (Tq > kSdpaQueryTile) classify(regime::Tq_beyond_tile);
  if (Tq < Tk) classify(regime::Tq_below_Tk);
  for (int b = 0; b < B; ++b)
    for (int i = 0; i < Tq; ++i) {
      const int n = spec_visible(Tq, Tk, m, b, i);
      if (n == 0) classify(regime::fully_masked);
      if (n == 1) classify(regime::one_visible_key);
    }
}

Drawn drawn() {
  std::lock_guard<std::mutex> guard(counter().lock);
  return counter().counts;
}

void reset_drawn() {
  std::lock_guard<std::mutex> guard(counter().lock);
  counter().counts.clear();
}

bool rises_across_key_tiles(const std::vector<double>& logits, double margin) {
  double running = -std::numeric_limits<double>::infinity();
  for (std::size_t j0 = 0; j0 < logits.size(); j0 += kSdpaKeyTile) {
    double tile = -std::numeric_limits<double>::infinity();
    for (std::size_t j = j0; j < std::min(logits.size(), j0 + kSdpaKeyTile); ++j) tile = std::max(tile, logits[j]);
    if (j0 > 0 && tile >= running + margin) return true;
    running = std::max(running, tile);
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// the masks, as the spec states them

int spec_visible(int Tq, int Tk, const SdpaMask& m, int b, int i) {
  int n = Tk;
  if (!m.key_lengths.empty()) n = std::min(n, m.key_lengths[b]);
  if (m.causal) n = std::min(n, Tk - Tq + i + 1);
  return std::max(n, 0);
}

// ---------------------------------------------------------------------------------------------
// poison

float poison_value(Poison p) {
  switch (p) {
    case Poison::nan: return kNaN;
    case Poison::pos_inf: return std::numeric_limits<float>::infinity();
    case Poison::neg_inf: return -std::numeric_limits<float>::infinity();
    case Poison::huge: return 1e30f;
  }
  return kNaN;
}

const char* to_string(Poison p) {
  static constexpr const char* names[] = {"NaN", "+inf", "-inf", "1e30"};
  return names[int(p)];
}

Poison draw_poison() {
  const Poison p = *rc::gen::element(Poison::nan, Poison::pos_inf, Poison::neg_inf, Poison::huge);
  classify(regime::poison(to_string(p)));
  return p;
}

Filler draw_filler() {
  Filler f;
  f.finite = *one_in(5);
  if (!f.finite) f.poison = draw_poison();
  return f;
}

void classify_mixed_horizons(int Tq, int Tk, const SdpaMask& m, int b, int s, const Filler& future) {
  if (future.non_finite() && s + 1 < Tq && s / kSdpaQueryTile == (s + 1) / kSdpaQueryTile &&
      spec_visible(Tq, Tk, m, b, s + 1) > std::max(1, spec_visible(Tq, Tk, m, b, s)))
    classify(regime::mixed_horizons);
}

Padding draw_padding(const std::string& unit, const std::string& finite_name) {
  Padding p;
  p.extra = *inRange(0, 4);
  p.fill = draw_filler();
  p.note = std::to_string(p.extra) + " padding " + unit + "s appended, every padded " + unit + " set to " +
           p.fill.name(finite_name);
  p.poisoned = !p.fill.finite && p.fill.poison == Poison::nan;
  return p;
}

std::vector<PrefixGroup> prefix_groups(int B, int Tq, int Tk, const SdpaMask& m,
                                       const std::function<bool(int b, int i)>& keep) {
  std::vector<PrefixGroup> groups;
  for (int b = 0; b < B; ++b) {
    std::map<int, std::vector<int>> by_count;
    for (int i = 0; i < Tq; ++i)
      if (!keep || keep(b, i)) by_count[spec_visible(Tq, Tk, m, b, i)].push_back(i);
    for (auto& [n, queries] : by_count) groups.push_back({b, n, std::move(queries)});
  }
  return groups;
}

nlohmann::json prefix_attributes(const PrefixGroup& g, const std::string& visible, const std::string& computed_by) {
  return {{"sequence", g.b}, {visible, g.n}, {"queries", g.queries}, {"computed_by", computed_by}};
}

std::string prefix_note(const std::string& note) {
  return note + "; the kernel (a) vs each query against its visible prefix alone, no mask (b)";
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

From valid_queries(const SdpaMask& m, int query_axis) {
  return rows_where([lengths = m.key_lengths, query_axis](const Index& r) { return r[query_axis] < lengths[r[0]]; });
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
