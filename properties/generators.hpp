// RapidCheck generators for padded batches. Values are drawn on exact float32 grids from
// integers, so counterexamples shrink to small readable numbers (k/16) and every related input
// (a shift by k/4, a scale by k/4 or a power of two) is computed exactly where it can be.
#pragma once

#include <rapidcheck.h>

#include "norms/registry.hpp"

namespace normcheck::gen {

// dense: values on a fine 2^-18 grid, so that sums round and any change of reduction order
// shows in the last bits (thread and batch determinism)
enum class Regime { normal, large_offset, tiny_variance, constant_rows, dense };
enum class Poison { zero, huge, neg_inf, nan };
const char* to_string(Regime r);
const char* to_string(Poison p);
float poison_value(Poison p);

struct Shape {
  int B, T, D;
};

// Shapes: B in [1, 4], T in [1, 6], D biased to odd and awkward sizes (1, 7, 31, 33, 100).
Shape shape(int min_T = 1);
int features();
Regime regime();        // mostly normal; hard regimes weighted in
Regime hard_regime();   // large offsets, tiny variance and constant rows weighted up
Poison poison();

// One token of D features in a regime.
std::vector<float> token(Regime r, int D);
// A batch with random lengths in [min_len, T] and poison at every padding position.
Batch batch(const Shape& s, Regime r, Poison p, int min_len = 1);
Batch batch(const Shape& s, Regime r, Poison p, const std::vector<int>& lengths);
void fill_padding(Batch& x, Poison p);
// Replaces the valid tokens after position s of sequence b with fresh ones (causality).
void replace_after(Batch& x, int b, int s);

Params params(const LayerEntry& layer, int D);
State state(int D);

// Multipliers k/4 in [0.25, 4] and shifts k/4 in [-4, 4].
float scale_factor();
float shift_amount();

}  // namespace normcheck::gen
