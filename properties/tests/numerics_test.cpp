// Defined numerics of every registry layer, both implementations, that the matrix does not hold
// (RapidCheck properties, one gtest test per row; RC_PARAMS sets the budget and replays a
// failure): a NaN or ±inf in one valid token reaches no other token of a token-wise row (a row
// whose profile does not list token_independence as violated), and the issue-8 cases at ±1e30
// and ±FLT_MAX spelled out. Finite outputs for finite inputs of any magnitude, scale invariance
// from 1e-20 to 1e25, a constant token giving β and a large offset are matrix properties
// (finite_output, scale_range_invariance, constant_token, offset_invariance), held against every
// row, external ones included.
#include <gtest/gtest.h>
#include <rapidcheck.h>

#include <cfloat>
#include <limits>

#include "norms/tests/test_util.hpp"
#include "properties/compare.hpp"

namespace normcheck {
namespace {

using rc::gen::element;
using rc::gen::inRange;

bool token_wise(const LayerRow& r) { return !r.profile->violated.count("token_independence"); }

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
