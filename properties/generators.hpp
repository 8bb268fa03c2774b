// RapidCheck generators for padded batches.
//
// Sizes. B, T and D are integers drawn from distributions that aim at the kernels' own
// thresholds (norms/kernels.hpp: vector lanes, row groups, the parallel and streaming
// thresholds, BatchNorm's statistics blocks — read from the constants, never copied) and that
// shrink as integers towards their smallest value, so a counterexample ends at the smallest
// size that still fails and vector tails are covered by generation, not by a fixed list of
// awkward sizes. Cases grow with RapidCheck's size: medium cases (a row group, a BatchNorm
// block, the parallel threshold) appear from size 50 on, and a property that asks for them gets
// one large case (past the 8 MB streaming threshold) at the largest size, which every run of
// 100 cases reaches exactly once.
//
// Values. Small cases are drawn value by value on readable grids (k/16, k/10) so that
// counterexamples shrink to small numbers; large ones from one drawn seed. Regimes: dyadic k/16
// (exact sums), decimal k/10 and dense values (sums that round in float32, for the bitwise
// properties), large offsets, tiny variance, a large offset with tiny variance, constant tokens,
// and outlier features: the "massive activations" of trained Transformers, a few channels whose
// values are 10²–10⁴ times the others' in every token, at a row's ends (first or last feature, the
// first vector) as often as anywhere: where kernels take a shift, a pivot or a peeled head or tail.
//
// Every draw notes its classes in the case's coverage (properties/coverage.hpp).
#pragma once

#include <string>
#include <vector>

#include <rapidcheck.h>

#include "norms/registry.hpp"

namespace normcheck::gen {

enum class Regime {
  normal,                // k/16 in [-4, 4]: dyadic, sums are exact
  decimal,               // k/10 in [-40, 40]: not dyadic, sums round in float32
  dense,                 // k·2^-18 in [-4, 4] (large cases: any float in [-4, 4])
  large_offset,          // 1e3 ± 0.1
  tiny_variance,         // c ± 2·2^-14
  offset_tiny_variance,  // 1e4…1e6 ± a few sixteenths: E[x²] − E[x]² cancels completely
  constant_rows,         // every feature of a token equal
  outlier_features,      // normal values, plus a few channels 1e2…2e4 in every token of the batch
  ulp_spread,            // c + k·ulp(c), |k| ≤ 4, c in [8192, 2^20): a spread of a few ulps of c
};
enum class Poison { zero, huge, neg_inf, nan };
const char* to_string(Regime r);
const char* to_string(Poison p);
float poison_value(Poison p);

struct Shape {
  int B, T, D;
};

// How large a property's cases may grow: small (at most 4 × 6 × 40 values), medium (from size
// 50 on, a quarter of the cases reach row groups, BatchNorm blocks, the parallel threshold: up
// to a few hundred thousand values), parallel (two thirds of the cases medium, at any size: the
// thread-count properties), large (from size 25 on one case in three a few rows of a large model's
// hidden size, 4096–16384 features, from size 50 half of the others medium; one case a run past the
// streaming threshold: reference_agreement, where a kernel's every regime must agree) and
// long_reduction (from size 50 on, three cases in four reduce along one long axis — 4096 to
// 65536 rows of at most 16 features, or as many features in at most 4 rows — and the others are
// medium: the rounding error of a float32 sum grows about as √N, and passes the tolerance rule's
// 2e-6 relative (~33 ulps) only from a few thousand values, along whichever axis a layer's
// statistics run).
enum class Reach { small, medium, parallel, large, long_reduction };

// B ≥ 1, T ≥ min_T, D ≥ 1 within `reach`, each shrinking towards its minimum.
Shape shape(int min_T = 1, Reach reach = Reach::small);
Regime regime();          // mostly normal; the other regimes weighted in
// Large offsets, tiny variance, constant rows, outlier features and spreads of a few ulps weighted
// up; outlier features in most draws at a large model's hidden size (D ≥ 4096).
Regime hard_regime(int D);
Regime bitwise_regime();  // values whose float32 sums round: for the bitwise properties
Poison poison();

// The large offsets 2^m·(1 + j/8) (offset_invariance draws m in 13…19, j in 0…7, as the
// ulp_spread regime does) and their unit in the last place, 2^(m − 23), for j ≤ 7.
float pow2_offset(int m, int j);
float ulp_of_pow2_offset(int m);

// One token of D features in a regime (drawn value by value).
std::vector<float> token(Regime r, int D);
// A batch with random lengths in [min_len, T] and poison at every padding position; with
// allow_empty, a sequence (of a batch of ≥ 2) is now and then empty (length 0).
Batch batch(const Shape& s, Regime r, Poison p, int min_len = 1, bool allow_empty = false);
Batch batch(const Shape& s, Regime r, Poison p, const std::vector<int>& lengths);
void fill_padding(Batch& x, Poison p);
// Replaces the valid tokens after position s of sequence b with fresh ones (causality).
void replace_after(Batch& x, int b, int s);

// The same batch with each valid token's magnitude drawn on its own: ordinary, 1e-38 (subnormal
// floats), 1e-30, 1e-20, 1e20, 1e25, 1e30 (values up to ±4e30), or ordinary values with some
// ±1e30 among them. Each token's magnitude shrinks towards ordinary. Every value stays finite.
void make_extreme(Batch& x);

// Notes in the case's coverage what a batch is: its sizes relative to every kernel threshold,
// T = 1, empty sequences, the regime and the padding's poison. batch() calls it.
void classify(const Batch& x);
void classify(Regime r);
// The classes a kernel threshold defines, each on both sides of its threshold where both are
// reachable: a default run must draw every one of them (properties/tests/coverage_test.cpp).
std::vector<std::string> threshold_classes();

// γ, β, ε (layer.params.eps_param: log-uniform over 1e-12…1e-2), momentum and the named
// parameters of a layer.
Params params(const LayerEntry& layer, int D);
State state(int D);

// Multipliers k/4 in [0.25, 4] and shifts k/4 in [-4, 4]; n of them at once.
float scale_factor();
float shift_amount();
std::vector<float> scale_factors(int n);
std::vector<float> shift_amounts(int n);

// RapidCheck's current size (0…100 in a default run).
int current_size();
// An integer uniform over [lo, hi] at every size, shrinking towards `toward` (in [lo, hi]).
int integer(int lo, int hi, int toward);
// n integers uniform over [lo, hi], each shrinking towards `toward`: one pick each for a few
// (kFewPicks), else from one drawn seed — a large case must not cost thousands of picks, each
// a shrink candidate that reruns the case.
constexpr int kFewPicks = 16;
std::vector<int> integers(int n, int lo, int hi, int toward);

}  // namespace normcheck::gen
