// A scenario is one generated case of a metamorphic property: two sides (the input and the
// related input), each a sequence of layer calls, and the pairs of positions to compare.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "norms/registry.hpp"

namespace normcheck {

struct Call {
  Batch batch;
  Mode mode = Mode::none;
};

struct Side {
  std::optional<Impl> impl;  // default: the cell's implementation
  int threads = 0;           // OpenMP threads for this side; 0 = the process default
  std::vector<Batch> warmup; // run in train mode first (state carried over), not compared
  std::vector<Call> calls;   // outputs of these are compared
};

// A token position: call index, sequence, token. All D features of it are compared.
struct TokenPos {
  int call = 0, b = 0, t = 0;
};

struct Scenario {
  Params params;
  State state;  // initial running statistics (stateful layers)
  Side a, b;
  std::vector<std::pair<TokenPos, TokenPos>> pairs;
  bool compare_state = false;  // also compare the final running statistics
  std::string note;            // what the related input is, in words and numbers
};

}  // namespace normcheck
