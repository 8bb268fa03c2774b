// The norm family's scenarios (norm_properties.cpp), shared with the gradient family
// (gradient_properties.cpp), which runs the same input and related input through the backward
// pass: a gradient property that makes the claim of a norm property draws its case with that
// property's scenario, so the two check one relation.
//
// A scenario is two sides, each a sequence of layer calls (an input and a related input), and
// the pairs of token positions whose outputs must agree.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "properties/compare.hpp"
#include "properties/generators.hpp"

namespace normcheck::norm_scenario {

struct Call {
  Batch batch = {};
  Mode mode = Mode::none;
  ShardCut shards = {};  // non-empty: the call runs on the batch cut into these shards
};

struct Side {
  std::optional<Impl> impl = {};  // default: the cell's implementation
  int threads = 0;                // OpenMP threads for this side; 0 = the process default
  std::vector<Batch> warmup = {}; // run in train mode first (state carried over), not compared
  std::vector<Call> calls = {};   // outputs of these are compared
};

// A token position: call index, sequence, token. All D features of it are compared.
struct TokenPos {
  int call = 0, b = 0, t = 0;
};

struct Scenario {
  Params params = {};
  State state = {};  // initial running statistics (stateful layers)
  Side a = {}, b = {};
  std::vector<std::pair<TokenPos, TokenPos>> pairs = {};
  bool compare_state = false;  // also compare the final running statistics
  std::string note = {};       // what the related input is, in words and numbers
  // Outputs of side a compared with fixed values instead of side b's (a constant token's β).
  std::vector<std::pair<TokenPos, std::vector<double>>> expected = {};
};

// A case's input before any related input is built: its shape, batch, parameters and running
// statistics, drawn for the row (its parameter kinds, its minimal sequence length).
struct Base {
  int min_len = 1;  // 2 for train rows of stateful layers (one value per channel is an error)
  gen::Shape shape;
  Batch x;
  Params params;
  State state;
};

int min_len(const LayerRow& row);
// A base case: its shape within `reach`, parameters, running statistics and a padded batch
// (with empty sequences now and then when `allow_empty`), in a drawn regime unless
// `draw_regime` is false (then `regime`); `external_medium`: medium cases for external rows too.
Base draw_base(const LayerRow& row, gen::Reach reach = gen::Reach::small, int min_B = 1,
               bool allow_empty = false, gen::Regime regime = gen::Regime::normal,
               bool draw_regime = true, bool external_medium = false);
// Every valid token of `x` (call ca) paired with the same token of call cb.
std::vector<std::pair<TokenPos, TokenPos>> valid_pairs(const Batch& x, int ca = 0, int cb = 0);

// A cut of a batch of B ≥ 2 sequences into k consecutive parts, 2 ≤ k ≤ min(B, 4), of uneven
// sizes (shard_invariance's shards, grad_microbatch_equivalence's micro-batches).
ShardCut draw_cut(int B);

// The scenarios of the norm properties of the same names (norm_properties.cpp says what each
// related input is).
Scenario batch_independence(const LayerRow& row);
Scenario padding_invariance(const LayerRow& row);
Scenario reference_agreement(const LayerRow& row);
Scenario batch_invariance_bitwise(const LayerRow& row);

// The case's parameters and initial running statistics, for the evidence.
nlohmann::json params_json(const Scenario& sc);

// Runs both sides of a scenario (each with its own implementation, or `impl`) and compares the
// pairs (and `expected`) under `how`, the ε term allowed when `eps_sensitive`: a norm
// property's check, with the evidence the reports print. The registry-wide tests of
// properties/tests run their own scenarios through it, so their failures read like the matrix's.
CaseOutcome run_scenario(const LayerRow& row, Impl impl, Comparison how, bool eps_sensitive,
                         const Scenario& sc);

}  // namespace normcheck::norm_scenario
