// The one property model, read by everything (ctest, the CLI, the reports):
//   Property  one entry per property, whatever family it checks: statement, related input,
//             comparison, applicability, what it is derived from, and its check
//   Row       one row of the matrix: a norm layer in a mode, an attention entry, a norm row
//             inside a Transformer block, a norm row's backward pass; with its expected profile
//   Cell      a row × an implementation × a property of the row's family, with what it must show
// The families are written in properties/*_properties.cpp (each property's id and code); the
// words of every property are in properties/catalogue.json (texts.hpp); properties/catalog.cpp
// joins them.
#pragma once

#include <functional>
#include <set>
#include <string>
#include <vector>

#include <normcheck/attention/block.hpp>
#include <normcheck/attention/registry.hpp>
#include <normcheck/norms/registry.hpp>
#include <normcheck/properties/compare.hpp>

namespace normcheck {

enum class Family { norm, attention, block, gradient };
// Every family, in the order the reports show them.
inline constexpr Family kFamilies[] = {Family::norm, Family::attention, Family::block, Family::gradient};
const char* to_string(Family f);

enum class Expect { holds, violated, not_applicable };
const char* to_string(Expect e);

// What a row is, in plain values (what a report keeps, and reads back from report.json).
struct RowInfo {
  Family family = Family::norm;
  std::string id = {};    // "batch_norm_train", "sdpa", "block_pre_batch_norm_train", "grad_batch_norm_train"
  std::string name = {};  // "batch_norm [train]", "sdpa", "batch_norm [train] [pre-LN block]",
                          // "batch_norm [train] [gradient]"
  std::string layer = {}; // the entry: "batch_norm", "sdpa" (a block row: its norm)
  Mode mode = Mode::none;
  std::string placement = {};  // block rows: "pre" | "post"
  std::string origin = "builtin";  // builtin | external | mutant
};

// A row of the matrix and what it runs: `norm` for norm, block and gradient rows, `attention`
// for attention rows. The expected profile lists the properties that must be violated (block
// and gradient rows: derived from the norm row's profile by each property's Derivation), and
// those only the optimized implementation must violate (an external kernel's defects: its
// reference keeps them).
struct Row {
  RowInfo info;
  std::set<std::string> violated = {};
  std::set<std::string> optimized_violates = {};  // RowProfile::optimized_violates
  std::string why = {};
  LayerRow norm = {};
  Placement placement = Placement::pre;
  const AttentionEntry* attention = nullptr;
  const BlockEntry* block = nullptr;  // block rows: the block they run (null: the built-in one)
};

// What a report says about a property: its id and its words, from properties/catalogue.json.
struct PropertyInfo {
  std::string id = {};
  std::string column = {};         // matrix column header
  std::string statement = {};      // the claim, as a sentence
  std::string related_input = {};  // how the related input is built
  std::string compared = {};       // which outputs are compared
  std::string claim = {};          // what it evidences for Transformers
};

// Which cells of a family a property has.
struct Applicability {
  bool optimized_only = false;  // compares the optimized kernel with something else
  bool mode_comparing = false;  // compares train with eval: not for eval rows
  std::string needs = {};       // only for rows that keep this property ("batch_independence")
  std::vector<std::string> needs_one_of = {};  // only for rows that keep one of these at least
  // gradient rows: only where the norm row (the forward) keeps this norm property — the
  // gradient identity a forward invariance implies ("token_scale_invariance": dx·x = 0)
  std::string forward_keeps = {};
};

// A block property inherits its expectation from the norm inside the block: it is violated
// exactly when the norm row violates one of `from` (for rows that run the block by teacher
// forcing; eval rows decode, alone and token by token, where no batch, padding or future token
// reaches the norm). pre_ln_only: Post-LN reads x before any norm, so the property holds there.
// A gradient property likewise: violated exactly when the forward violates one of `from`
// (catalog.cpp).
struct Derivation {
  std::vector<std::string> from = {};
  bool pre_ln_only = false;
};

// One generated case of a cell: draws its input with RapidCheck (`*gen` inside), runs the
// row's implementation and compares. Throws InvalidInput when the row rejects the drawn input.
using CheckFn = std::function<CaseOutcome(const Row& row, Impl impl)>;

struct Property {
  // the family's code sets info.id; texts.hpp's declared() the family and the rest of info
  PropertyInfo info = {};
  Family family = Family::norm;
  Comparison comparison = Comparison::values;
  // exact only as ε → 0: the comparison allows the ε term explicitly (norm scale invariances)
  bool eps_sensitive = false;
  Applicability applies = {};
  Derivation derived = {};
  CheckFn check = {};
  const std::string& id() const { return info.id; }
};

// What the registries say a cell must show.
Expect expected(const Row& row, Impl impl, const Property& prop);

// What a cell is, in plain values (kept by its result).
struct CellInfo {
  RowInfo row = {};
  Impl impl = Impl::reference;
  PropertyInfo prop = {};
  Expect expected = Expect::holds;
  std::string id() const;  // "batch_norm_train/optimized/padding_invariance"
};

struct Cell {
  CellInfo info = {};
  Row row = {};
  const Property* property = nullptr;
  std::string id() const { return info.id(); }
};

// The ctest/GoogleTest name of a cell: its id with every non-alphanumeric character as '_'.
std::string gtest_name(const std::string& cell_id);

}  // namespace normcheck
