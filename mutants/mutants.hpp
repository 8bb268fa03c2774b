// Mutants: deliberately broken variants of real layers, each declaring the profile of the layer
// it imitates. The suite must kill every one — a cell that is not as expected, or a golden case
// of the imitated op that fails. `normcheck mutants` prints the score; ctest fails on a survivor.
#pragma once

#include <string>
#include <vector>

#include "properties/catalog.hpp"

namespace normcheck {

// A mutant is a row like any other (a norm entry, an attention entry) that is not in the
// registries: its cells run through the same engine.
struct Mutant {
  std::string id;        // "ln_one_pass_variance"
  std::string imitates;  // the real layer or op whose profile it declares
  std::string bug;       // the real bug it imitates, in words
  std::vector<Row> rows; // its rows (a norm layer's modes, one attention row, or block rows)
};

const std::vector<Mutant>& mutants();
// The attention and block mutants (attention_mutants.cpp), part of mutants().
std::vector<Mutant> attention_mutants();

struct MutantResult {
  std::string id, imitates, bug;
  bool killed = false;
  std::string killed_by = {};  // the first cell id or golden case that caught it
  std::string evidence = {};  // that cell's message or the golden error
};

MutantResult run_mutant(const Mutant& m, const RunOptions& options);

}  // namespace normcheck
