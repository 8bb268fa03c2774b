// What the attention properties of both ops share (sdpa_properties.cpp, mha_properties.cpp):
// values on exact float grids, token counts and masks, KV-cache schedules, the comparison of
// output rows between an input and its related input, row_stochastic's claims about a weight
// row, and the thread-determinism case.
//
// Tolerance: compare.hpp's rule, with the attention's own conditioning in place of |mean|/std:
// the first-order effect of float32 logit rounding on the output (derived at the top of
// sdpa_properties.cpp and mha_properties.cpp). Two runs are compared with the larger of the two
// sides' cond.
#pragma once

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <rapidcheck.h>

#include "attention/registry.hpp"
#include "properties/compare.hpp"
#include "properties/threads.hpp"

namespace normcheck::attn {

using rc::gen::inRange;

inline constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// ---------------------------------------------------------------------------------------------
// the case code of each op

// One function per attention property and op, in attn::sdpa (sdpa_properties.cpp) and attn::mha
// (mha_properties.cpp); attention_properties.cpp pairs them into one Property per id. A case
// runs the row's entry (its reference or optimized function), never a kernel itself, so that a
// mutant or an external library is a row like the built-in kernels. `Case f;` declares
// `CaseOutcome f(const AttentionEntry&, Impl)`.
using Case = CaseOutcome(const AttentionEntry& entry, Impl impl);

// The properties both ops have a case for: one list, declared in each op's namespace.
#define NORMCHECK_ATTENTION_CASES                                                                  \
  row_stochastic, causality, key_padding_invariance, kv_permutation_invariance,                    \
      query_permutation_equivariance, batch_independence, logit_shift_invariance,                  \
      value_affine_equivariance, kv_cache_equivalence, large_logit_stability, reference_agreement, \
      thread_determinism, causal_mask_semantics, key_padding_semantics

namespace sdpa {
Case NORMCHECK_ATTENTION_CASES;
}
namespace mha {
Case NORMCHECK_ATTENTION_CASES;
}

#undef NORMCHECK_ATTENTION_CASES

// ---------------------------------------------------------------------------------------------
// what the cases draw: a readable counter per cell
//
// Each case names the regimes it reaches (classify); the attention family opens a CaseScope
// around every case of a cell, and a case counts once per label. Regimes are defined by the
// optimized kernel's thresholds (attention/sdpa.hpp: kSdpaKeyTile, kSdpaQueryTile) and by the
// data (rising maxima across key tiles, fully masked rows, poison). properties/tests/
// attention_coverage_test.cpp runs a default matrix of the attention rows and fails when a cell never
// drew a regime it must reach.

// The labels (also what attention_coverage_test.cpp requires).
namespace regime {
inline const std::string T_is_1 = "T = 1 (one query, one key)";
inline const std::string Tk_within_tile = "1 < Tk <= key tile";
inline const std::string Tk_beyond_tile = "Tk > key tile";
inline const std::string Tk_two_tiles = "key tile < Tk <= 2 key tiles";
inline const std::string Tk_beyond_two_tiles = "Tk > 2 key tiles";
inline const std::string Tk_partial_last_tile = "Tk > key tile, the last key tile partial";
inline const std::string Tq_beyond_tile = "Tq > query tile";
inline const std::string Tq_below_Tk = "Tq < Tk (bottom-right causal alignment)";
inline const std::string rising_maxima = "rising maxima across key tiles";
inline const std::string fully_masked = "fully masked row";
inline const std::string one_visible_key = "a query that sees one key";
inline const std::string mixed_horizons =
    "a query tile with mixed causal horizons and non-finite keys/values masked for some of its rows";
std::string poison(const std::string& kind);  // "poison NaN", "poison +inf", ...
}  // namespace regime

// Counts the labels of every case run while it lives, for the cell `cell` (a cell id).
class CaseScope {
 public:
  explicit CaseScope(std::string cell);
  ~CaseScope();
  CaseScope(const CaseScope&) = delete;
  CaseScope& operator=(const CaseScope&) = delete;
};
// Marks the current case as reaching a regime (no-op outside a CaseScope).
void classify(const std::string& label);
// The sizes of a case relative to the kernel's tiles, and its fully masked and one-key queries
// (from `visible`, the spec's count below).
void classify_tokens(int B, int Tq, int Tk, const SdpaMask& m);
// cell id → label → cases that reached it, since the last reset.
using Drawn = std::map<std::string, std::map<std::string, long>>;
Drawn drawn();
void reset_drawn();

// Whether a row of logits over keys 0, 1, …, n − 1 (absolute positions) has a key tile whose
// largest logit exceeds the running maximum of the tiles before it by at least `margin`: the
// online softmax must rescale what it accumulated (margin 1: by a factor e^-1 or less).
bool rises_across_key_tiles(const std::vector<double>& logits, double margin = 1.0);

// ---------------------------------------------------------------------------------------------
// the masks, as the spec states them
//
// The number of keys query i of sequence b sees, written from docs/PROPERTIES.md and not with
// attention/sdpa.hpp's visible_keys (which both kernels share): a key-padding length L_b keeps
// keys [0, L_b); the causal mask, bottom-right, keeps keys j <= Tk − Tq + i. The semantic pins
// compare the kernels with these counts, so a mask wrong the same way in both shows.
int spec_visible(int Tq, int Tk, const SdpaMask& m, int b, int i);

// ---------------------------------------------------------------------------------------------
// poison for the positions a property changes (masked, future, padded): NaN, ±inf, 1e30

enum class Poison { nan, pos_inf, neg_inf, huge };
float poison_value(Poison p);
const char* to_string(Poison p);
// one of the four (does not shrink: each kind is its own regime); classified
Poison draw_poison();

// What a case writes where no compared output may read (causality: the future; key padding:
// the padded positions): one time in five something finite (fresh values, or 1000: a finite
// value a leak moves far), else a poison (draw_poison()).
struct Filler {
  bool finite = false;
  Poison poison = Poison::nan;  // when not finite
  // NaN or ±inf are written (not 1e30): a non-finite output read them
  bool non_finite() const { return !finite && poison != Poison::huge; }
  // "fresh values", "1000" (finite_name) or the poison's name
  std::string name(const std::string& finite_name) const {
    return finite ? finite_name : std::string(to_string(poison));
  }
};
Filler draw_filler();

// causality of either op, the future of query s of sequence b written with `future`: marks
// mixed_horizons when s and s + 1 share a query tile and s + 1 sees a key (non-finite) that s
// must not: the rows of a tile share score and p·v blocks over their widest row.
void classify_mixed_horizons(int Tq, int Tk, const SdpaMask& m, int b, int s, const Filler& future);

// key_padding_invariance's related input, for either op: 0 to 3 padding positions appended and
// every padded one (of `unit`: "position", "token") set to `fill` ("1000" or "V = 1000":
// `finite_name`); `note` says so. poisoned: the padding holds NaN, the only non-finite input,
// where no compared output reads (Diff::poisoned_unread).
struct Padding {
  int extra = 0;
  Filler fill = {};
  std::string note = {};
  bool poisoned = false;
};
Padding draw_padding(const std::string& unit, const std::string& finite_name);

// ---------------------------------------------------------------------------------------------
// the semantic pins' prefix comparison: each query against its visible prefix alone

// The queries of sequence b that see the first n keys (spec_visible), compared with one
// unmasked call over those n keys (or its closed form when n ≤ 1).
struct PrefixGroup {
  int b = 0, n = 0;
  std::vector<int> queries = {};
};
// Every sequence's queries that `keep` selects (null: all), grouped by how many keys the spec
// gives them: sequence by sequence, fewest keys first.
std::vector<PrefixGroup> prefix_groups(int B, int Tq, int Tk, const SdpaMask& m,
                                       const std::function<bool(int b, int i)>& keep = {});
// What a group's call is in the evidence: its sequence, its count of visible keys (named
// `visible`: "visible_keys", "visible_tokens"), its queries and what computed it.
nlohmann::json prefix_attributes(const PrefixGroup& g, const std::string& visible, const std::string& computed_by);
// The note of a prefix comparison: the case's, then what is compared with what.
std::string prefix_note(const std::string& note);

// ---------------------------------------------------------------------------------------------
// generators: values on exact float grids, drawn from integers that shrink towards 0

rc::Gen<int> centered(int m);
// true k times in n; shrinks to false (a case drawn on the true branch shrinks off it first)
rc::Gen<bool> chance(int k, int n);
inline rc::Gen<bool> one_in(int n) { return chance(1, n); }
std::vector<int> ints(std::size_t n, int m);
// n values k/16 in [-4, 4]
std::vector<float> values(std::size_t n);
// Pushes values off the dyadic grids (each times 1 + 0.37·sin(i + salt)), so that float32
// rounds at every step as it does on real activations.
void roughen(std::vector<float>& v, int salt);
// One random permutation of n[b] elements for every sequence b (new order: element i of b's
// permuted sequence is its old element p[b][i]).
std::vector<std::vector<int>> permutations(const std::vector<int>& n);
// a = ±k/4, k in [1, 16]: the scale of value_affine_equivariance
float signed_scale();
// Key lengths: 0 (a sequence of padding only) once in 8, Tk twice, else 1 to Tk.
std::vector<int> key_lengths(int B, int Tk);

enum class Causal { never, maybe, always };
// self: Tq = Tk (the queries are the key positions: self-attention); at_most_keys: Tq ≤ Tk
enum class Queries { any, self, at_most_keys };

inline constexpr int kTilesOneIn = 4;

// The batch, the token counts and the mask of a case, for both ops. Ranges are inclusive.
struct TokenRanges {
  std::pair<int, int> B = {1, 3};
  std::pair<int, int> T = {1, 8};  // Tk, and Tq when queries is `any`
  Causal causal = Causal::maybe;
  Queries queries = Queries::any;
  bool padding = true;  // draw key lengths; false: no key-padding mask
  // One case in `tiles_one_in` (0: never) draws Tk over two or three of the optimized kernel's
  // key tiles (kSdpaKeyTile) and Tq over its query tiles (kSdpaQueryTile) instead of from T: the
  // kernel's tiling is then compared with the reference and every property. Such a case shrinks
  // towards the small range first, so a counterexample is large only when it must be.
  int tiles_one_in = kTilesOneIn;
};
// Tk of a large case: 2 or 3 key tiles, the last one holding 1 to kSdpaKeyTile keys (mostly
// partial; its size shrinks towards one key). Tq (queries `any`): 2 or 3 query tiles alike.
int tiled_keys();
int tiled_queries();

struct Tokens {
  int B = 1, Tq = 1, Tk = 1;
  SdpaMask m = {};
};

Tokens draw_tokens(const TokenRanges& r);

// Chunk schedules of a sequence of L tokens: chunks of 1, 2, 3 and L, and a prefill of P
// tokens followed by single-token decoding.
std::vector<std::pair<std::string, std::vector<int>>> schedules(int L, int P);

// ---------------------------------------------------------------------------------------------
// small numerics

// Subtracts the maximum of a row of logits, exponentiates, and returns the sum (the softmax
// behind the cond bounds and the long double oracles).
template <class T>
T exp_shifted(std::vector<T>& s) {
  const T mx = s.empty() ? T(0) : *std::max_element(s.begin(), s.end());
  T sum = 0;
  for (auto& x : s) sum += (x = std::exp(x - mx));
  return sum;
}

using Index = std::vector<int>;
std::string at(const std::string& name, const Index& index);  // "weight[0,2,1]"
std::string list(const std::vector<int>& v);    // "[0, 2, 1]"
std::string list(const std::vector<float>& v);  // "[0.250000, -1.000000]"
std::string list(const std::vector<std::vector<int>>& v);  // "[0, 2, 1], [1, 0]"

// ---------------------------------------------------------------------------------------------
// comparisons

// One run of an entry: its output and, when asked for, its weights [B, H, Tq, Tk].
struct Run {
  Output out;
  std::vector<double> weights;
};

// A call's output seen as rows: the row index runs over `dims` (sdpa [B, H, Tq], mha [B, Tq]),
// each row `width` values of y, with the cond of each value (null or empty: 0) scaled by
// cond_factor, and the input row behind it (q, query) of x_width values.
struct OutRows {
  int call = 0;
  Index dims = {};
  int width = 0;
  const Output* y = nullptr;
  const std::vector<double>* cond = nullptr;
  double cond_factor = 1;
  const std::vector<float>* x = nullptr;
  int x_width = 0;
};

// The row of the input side a row of the related side is compared with, or none.
using From = std::function<std::optional<Index>(const Index& related)>;
std::optional<Index> same_row(const Index& related);
// same_row for the rows `keep` selects.
From rows_where(std::function<bool(const Index& row)> keep);
// same_row for the rows of the queries within their sequence's key length (self-attention: its
// valid tokens); row[0] is the sequence, row[query_axis] the query.
From valid_queries(const SdpaMask& m, int query_axis);

// Every row of b (the related side) with a row in a (the input side), value by value under
// tolerance(b, max(cond_a, cond_b)) (the Diff's comparison).
void compare_rows(Diff& d, const OutRows& a, const OutRows& b, const From& from = same_row);

// Weights [B, H, Tq, Tk] of two runs, value by value ("weight[b,h,i,j]": they are not the
// compared rows) under tolerance(b, row_cond(b, h, i)); keep(b, i): query i of sequence b is
// compared (null: every query).
void compare_weights(Diff& d, const SdpaShape& s, const std::vector<double>& a,
                     const std::vector<double>& b,
                     const std::function<double(int b, int h, int i)>& row_cond = {},
                     const std::function<bool(int b, int i)>& keep = {});

// The outcome of a prefix comparison, for either op: `a` the kernel's output rows over the whole
// case; group k's side gives `rows(k)`, each row compared with the row `from(k, row)` of a;
// `poisoned` as Diff::poisoned_unread. The evidence: `params`, the case's call (`input()`, a
// side of `implementation`) and one call per group (`call(k)`, a side of `impl`).
template <class RowsFn, class FromFn, class InputFn, class CallFn>
CaseOutcome prefix_outcome(const Labels& labels, bool poisoned, const std::string& note, std::size_t groups,
                           const OutRows& a, RowsFn rows, FromFn from, const std::function<nlohmann::json()>& params,
                           const std::string& implementation, InputFn input, Impl impl, CallFn call) {
  Diff d(labels);
  if (poisoned) d.poisoned_unread();
  for (std::size_t k = 0; k < groups; ++k)
    compare_rows(d, a, rows(k), [&](const Index& row) { return from(k, row); });
  return outcome(d, prefix_note(note), [&] {
    nlohmann::json calls = nlohmann::json::array();
    for (std::size_t k = 0; k < groups; ++k) calls.push_back(call(k));
    return CaseRecord{.params = params(),
                      .input = side_json(implementation, nlohmann::json::array({input()})),
                      .related = side_json(to_string(impl), std::move(calls))};
  });
}

// row_stochastic's claims about the weight row of a query that sees the first `visible` keys:
// every weight ≥ 0, 0 at masked keys, and a sum of 1 when it sees any key.
void stochastic_row(Diff& d, RowView w, int visible, const Index& row);

// thread_determinism of either op: run() computes the optimized output and weights of one fixed
// case, once with 1 OpenMP thread (a) and once with 1 to 4 (b); compare(d, a, b) compares every
// output row and weight, bitwise; record(a, b) gives the evidence.
template <class RunFn, class CompareFn, class RecordFn>
CaseOutcome across_threads(const Labels& labels, RunFn run, CompareFn compare, RecordFn record) {
  const int threads = *rc::gen::element(1, 2, 3, 4);
  auto with = [&](int n) {
    ThreadScope scope(n);
    return run();
  };
  const auto one = with(1), many = with(threads);
  Diff d(labels, Comparison::bitwise);
  compare(d, one, many);
  return outcome(d, "1 thread (a) vs " + std::to_string(threads) + " threads (b)", [&] {
    CaseRecord r = record(one, many);
    r.input["threads"] = 1;
    r.related["threads"] = threads;
    return r;
  });
}

}  // namespace normcheck::attn
