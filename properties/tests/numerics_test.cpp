// Defined numerics of every registry layer, both implementations (RapidCheck properties, one
// gtest test per row; RC_PARAMS sets the budget and replays a failure):
// - a NaN or ±inf in one valid token reaches no other token of a token-wise row (a row whose
//   profile does not list token_independence as violated);
// - a constant token gives exactly β in every mean-subtracting token-wise row (token_shift_invariance
//   and token_independence both hold);
// - extreme finite inputs (±1e30, subnormals, mixtures; up to ±FLT_MAX for token-wise rows) give
//   finite outputs that agree with the double reference wherever the exact result fits in float.
#include <gtest/gtest.h>
#include <rapidcheck.h>

#include <cfloat>
#include <limits>

#include "norms/tests/test_util.hpp"
#include "properties/compare.hpp"

namespace normcheck {

void PrintTo(const LayerRow& r, std::ostream* os) { *os << r.id(); }

namespace {

using rc::gen::element;
using rc::gen::inRange;

bool token_wise(const LayerRow& r) { return !r.profile->violated.count("token_independence"); }
bool mean_subtracting(const LayerRow& r) {
  return token_wise(r) && !r.profile->violated.count("token_shift_invariance");
}

struct RowImpl {
  LayerRow row;
  Impl impl;
};

void PrintTo(const RowImpl& p, std::ostream* os) { *os << p.row.id() << "/" << to_string(p.impl); }

std::vector<RowImpl> rows_where(bool (*keep)(const LayerRow&)) {
  std::vector<RowImpl> out;
  for (const auto& r : layer_rows())
    if (keep(r))
      for (Impl impl : {Impl::reference, Impl::optimized}) out.push_back({r, impl});
  return out;
}

std::string row_impl_name(const ::testing::TestParamInfo<RowImpl>& info) {
  return test::test_name(info.param.row.id() + "_" + to_string(info.param.impl));
}

int width() { return *element(1, 2, 3, 4, 7, 8, 16, 17, 31, 33, 64, 100); }

// A padded batch drawn by RapidCheck: every sequence has at least one valid token.
// min_len 2 for train rows of stateful layers: RapidCheck's sized ranges start at one token,
// which BatchNorm rightly rejects in train mode, and a property that only discards gives up.
Batch draw_batch(int D, int min_len = 1) {
  const int B = *inRange(1, 5), T = *inRange(min_len, 7);
  std::vector<int> lengths(B);
  for (auto& l : lengths) l = *inRange(min_len, T + 1);
  const auto k = *rc::gen::container<std::vector<int>>(std::size_t(B) * T * D, inRange(-64, 65));
  Batch x(B, T, D);
  x.lengths = lengths;
  for (std::size_t i = 0; i < x.x.size(); ++i) x.x[i] = float(k[i]) / 16.0f;
  return x;
}

Params draw_params(const LayerEntry& l, int D) {
  std::mt19937 rng(*inRange(0, 1 << 20));
  return test::params_for(l, D, rng);
}

// ---------------------------------------------------------------------------------------------

class PoisonedToken : public ::testing::TestWithParam<RowImpl> {};

TEST_P(PoisonedToken, PoisonsOnlyItsOwnToken) {
  const LayerRow& row = GetParam().row;
  const Impl impl = GetParam().impl;
  const bool ok = rc::check(row.id() + " " + to_string(impl) + ": NaN/inf stays in its token", [&] {
    const int D = width();
    Batch x = draw_batch(D);
    const Params p = draw_params(*row.layer, D);
    const State s = test::state_for(D);
    const int b = *inRange(0, x.B), t = *inRange(0, x.lengths[b]), d = *inRange(0, D);
    const float poison = *element(std::numeric_limits<float>::quiet_NaN(),
                                  std::numeric_limits<float>::infinity(),
                                  -std::numeric_limits<float>::infinity());
    const Output clean = test::run(row, impl, x, p, s);
    x.at(b, t, d) = poison;
    const Output dirty = test::run(row, impl, x, p, s);
    RC_LOG() << "poison " << poison << " at (" << b << ", " << t << ", " << d << ")\n";
    for (int b2 = 0; b2 < x.B; ++b2)
      for (int t2 = 0; t2 < x.lengths[b2]; ++t2) {
        if (b2 == b && t2 == t) continue;
        for (int d2 = 0; d2 < D; ++d2) {
          const std::size_t i = x.index(b2, t2, d2);
          RC_ASSERT(std::isfinite(clean[i]));
          if (!test::same_bits(clean[i], dirty[i]))
            RC_FAIL("token (" + std::to_string(b2) + ", " + std::to_string(t2) + ") changed: " +
                    std::to_string(clean[i]) + " -> " + std::to_string(dirty[i]));
        }
      }
  });
  EXPECT_TRUE(ok) << "the counterexample and its RC_PARAMS=\"reproduce=...\" are printed above";
}

INSTANTIATE_TEST_SUITE_P(Numerics, PoisonedToken, ::testing::ValuesIn(rows_where(token_wise)),
                         row_impl_name);

// ---------------------------------------------------------------------------------------------

class ConstantToken : public ::testing::TestWithParam<RowImpl> {};

// x − μ is exactly 0 for a constant token when μ is computed exactly (both implementations
// shift or sum so that it is), so the output is exactly β, whatever the constant.
TEST_P(ConstantToken, GivesExactlyBeta) {
  const LayerRow& row = GetParam().row;
  const Impl impl = GetParam().impl;
  if (row.layer->origin != "builtin")  // reported by the matrix and README, not held here
    GTEST_SKIP() << row.layer->name << " is an external kernel: these numerics are normcheck's own "
                 << "guarantees (oneDNN's findings: README, External kernels)";
  const bool ok = rc::check(row.id() + " " + to_string(impl) + ": constant token gives beta", [&] {
    const int D = width();
    Batch x = draw_batch(D);
    const Params p = draw_params(*row.layer, D);
    const float c = *element(0.0f, 1.0f, -3.5f, 1000.1f, 1e30f, -1e30f, FLT_MAX, -FLT_MAX, 1e-40f,
                             -FLT_TRUE_MIN, FLT_MIN);
    const int b = *inRange(0, x.B), t = *inRange(0, x.lengths[b]);
    for (int d = 0; d < D; ++d) x.at(b, t, d) = c;
    RC_LOG() << "constant " << c << " at token (" << b << ", " << t << ")\n";
    const Output y = test::run(row, impl, x, p, test::state_for(D));
    for (int d = 0; d < D; ++d) {
      const double beta = p.beta.empty() ? 0.0 : double(p.beta[d]);
      if (!test::same_bits(y[x.index(b, t, d)], beta))
        RC_FAIL("feature " + std::to_string(d) + ": " + std::to_string(y[x.index(b, t, d)]) +
                ", expected beta = " + std::to_string(beta));
    }
  });
  EXPECT_TRUE(ok) << "the counterexample and its RC_PARAMS=\"reproduce=...\" are printed above";
}

INSTANTIATE_TEST_SUITE_P(Numerics, ConstantToken, ::testing::ValuesIn(rows_where(mean_subtracting)),
                         row_impl_name);

// ---------------------------------------------------------------------------------------------

enum class Extreme { huge, mixed, subnormal, float_max };

const char* to_string(Extreme e) {
  switch (e) {
    case Extreme::huge: return "±1e30";
    case Extreme::mixed: return "ordinary values with some ±1e30";
    case Extreme::subnormal: return "subnormals";
    case Extreme::float_max: return "up to ±FLT_MAX";
  }
  return "?";
}

void make_extreme(Batch& x, Extreme e) {
  for (auto& v : x.x) {
    const float k = v * 16.0f;  // the drawn integer in [-64, 64]
    switch (e) {
      case Extreme::huge: v = k * 1e30f / 64.0f; break;
      case Extreme::mixed:
        if (std::abs(k) >= 48) v = (k > 0 ? 1e30f : -1e30f);
        break;
      case Extreme::subnormal: v = k * 1e-40f / 64.0f; break;
      case Extreme::float_max: v = k * (FLT_MAX / 64.0f); break;
    }
  }
}

class ExtremeInput : public ::testing::TestWithParam<LayerRow> {};

TEST_P(ExtremeInput, FiniteAndAgreesWithTheReference) {
  const LayerRow& row = GetParam();
  if (row.layer->origin != "builtin")  // reported by the matrix and README, not held here
    GTEST_SKIP() << row.layer->name << " is an external kernel: these numerics are normcheck's own "
                 << "guarantees (oneDNN's findings: README, External kernels)";
  const bool ok = rc::check(row.id() + ": extreme finite inputs", [&] {
    const int D = width();
    Batch x = draw_batch(D, row.mode() == Mode::train ? 2 : 1);
    const Params p = draw_params(*row.layer, D);
    const State s = test::state_for(D);
    // up to ±FLT_MAX only for token-wise rows: batch statistics of ±3e38 put x − μ out of float
    // range in BatchNorm's float apply step (documented in README)
    const Extreme e = token_wise(row)
                          ? *element(Extreme::huge, Extreme::mixed, Extreme::subnormal, Extreme::float_max)
                          : *element(Extreme::huge, Extreme::mixed, Extreme::subnormal);
    make_extreme(x, e);
    RC_TAG(to_string(e));
    Output ref, opt;
    try {
      ref = test::run(row, Impl::reference, x, p, s);
      opt = test::run(row, Impl::optimized, x, p, s);
    } catch (const InvalidInput&) {
      RC_DISCARD("the row rejects this input (BatchNorm train on one value per channel)");
    }
    const Conditioning c = row.layer->conditioning(x, p, row.mode(), &s);
    for (int b = 0; b < x.B; ++b)
      for (int t = 0; t < x.lengths[b]; ++t)
        for (int d = 0; d < D; ++d) {
          const std::size_t i = x.index(b, t, d);
          const std::string at = std::string("(") + std::to_string(b) + ", " + std::to_string(t) +
                                 ", " + std::to_string(d) + ") on " + to_string(e);
          if (!std::isfinite(ref[i])) RC_FAIL("reference not finite at " + at);
          // the exact result does not fit in float32: inf is the right float answer
          if (std::abs(ref[i]) > double(FLT_MAX) * (1 - 1e-5)) continue;
          if (!std::isfinite(opt[i]))
            RC_FAIL("optimized not finite at " + at + ": " + std::to_string(opt[i]) +
                    ", reference " + std::to_string(ref[i]));
          if (std::abs(opt[i] - ref[i]) > tolerance(ref[i], c.cond[i]))
            RC_FAIL("optimized " + std::to_string(opt[i]) + " vs reference " +
                    std::to_string(ref[i]) + " at " + at);
        }
  });
  EXPECT_TRUE(ok) << "the counterexample and its RC_PARAMS=\"reproduce=...\" are printed above";
}

INSTANTIATE_TEST_SUITE_P(Numerics, ExtremeInput, ::testing::ValuesIn(layer_rows()),
                         [](const auto& info) { return test::test_name(info.param.id()); });

// ---------------------------------------------------------------------------------------------
// The two cases issue 8 names, spelled out.

Output run_token(const char* layer_name, Impl impl, const std::vector<float>& token) {
  Batch x(1, 1, int(token.size()));
  x.x = token;
  Params p;
  Output y;
  layer(layer_name).forward(impl)(x, p, Mode::none, nullptr, y);
  return y;
}

TEST(Numerics, LayerNormOnPlusMinus1e30IsFiniteAndExact) {
  for (Impl impl : {Impl::reference, Impl::optimized}) {
    const Output y = run_token("layer_norm", impl, {1e30f, -1e30f, 1e30f, -1e30f});
    for (int d = 0; d < 4; ++d) EXPECT_NEAR(y[d], d % 2 ? -1.0 : 1.0, 1e-6) << to_string(impl);
  }
}

TEST(Numerics, RmsNormOn1e30AndFloatMaxIsFiniteAndExact) {
  // x² overflows float beyond ~1.8e19; x/rms(x) does not (|y| ≤ √D)
  for (Impl impl : {Impl::reference, Impl::optimized}) {
    for (float v : {1e30f, -1e30f, FLT_MAX}) {
      const Output y = run_token("rms_norm", impl, std::vector<float>(7, v));
      for (double e : y) EXPECT_NEAR(e, v > 0 ? 1.0 : -1.0, 1e-6) << to_string(impl) << " " << v;
    }
    const Output y = run_token("rms_norm", impl, {FLT_MAX, -FLT_MAX, 0.0f, 0.0f});
    EXPECT_NEAR(y[0], std::sqrt(2.0), 1e-6);
    EXPECT_NEAR(y[1], -std::sqrt(2.0), 1e-6);
    EXPECT_EQ(y[2], 0.0);
  }
}

}  // namespace
}  // namespace normcheck
