// Mutants: deliberately broken variants of real layers, each declaring the profile of the layer
// it imitates. The suite must kill every one — a cell that is not as expected, or a golden case
// of the imitated op that fails. `normcheck mutants` prints the score; ctest fails on a survivor.
#pragma once

#include <string>
#include <vector>

#include "attention/cells.hpp"
#include "properties/engine.hpp"

namespace normcheck {

struct Mutant {
  std::string id;        // "ln_one_pass_variance"
  std::string imitates;  // the real layer whose profile it declares
  std::string bug;       // the real bug it imitates, in words
  const LayerEntry* entry;            // a norm mutant: its rows run every norm property
  SdpaKernelFn sdpa_kernel = nullptr;  // an attention mutant: run by the `sdpa` cells instead
};

const std::vector<Mutant>& mutants();

struct MutantResult {
  std::string id, imitates, bug;
  bool killed = false;
  std::string killed_by = {};  // the first cell id or golden case that caught it
  std::string evidence = {};  // that cell's message or the golden error
};

MutantResult run_mutant(const Mutant& m, const RunOptions& options);

}  // namespace normcheck
