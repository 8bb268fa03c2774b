// A non-finite value planted only where no compared output may read it (masked keys and values,
// padding tokens) and found in a compared output is a leak: a real counterexample that a ✗ cell
// may declare (Diff::poisoned_unread), where NaN on one side is otherwise never a ✗ cell's
// counterexample (compare.hpp). Shown on the Diff itself and on an attention row that reads its
// masked keys the way an additive −inf mask does (PyTorch's usual composition).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "properties/catalog.hpp"
#include "properties/compare.hpp"
#include "properties/engine.hpp"

namespace normcheck {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

Diff one_value(double a, double b, bool poisoned) {
  Diff d({{"i"}, "c", "", "y"});
  if (poisoned) d.poisoned_unread();
  d.value("y", a, b, 1e-5);
  return d;
}

TEST(PoisonLeak, NonFiniteOnOneSideIsAMismatchOnlyUnlessPoisonedUnread) {
  for (double bad : {kNaN, kInf, -kInf}) {
    const Diff plain = one_value(0.5, bad, false);
    EXPECT_TRUE(plain.nonfinite_mismatch());
    EXPECT_FALSE(plain.finite_violation()) << "NaN alone is never a ✗ counterexample";
    const Diff leak = one_value(0.5, bad, true), leak_a = one_value(bad, 0.5, true);
    EXPECT_TRUE(leak.finite_violation()) << bad;
    EXPECT_FALSE(leak.nonfinite_mismatch()) << bad;
    EXPECT_TRUE(leak_a.finite_violation()) << "either side may be the poisoned one: " << bad;
  }
}

TEST(PoisonLeak, PoisonedUnreadChangesNothingElse) {
  EXPECT_FALSE(one_value(kNaN, kNaN, true).any()) << "NaN on both sides agrees";
  const Diff both = one_value(kNaN, kInf, true);  // non-finite on both sides: no finite side
  EXPECT_TRUE(both.nonfinite_mismatch());
  EXPECT_FALSE(both.finite_violation());
  EXPECT_FALSE(one_value(0.5, 0.5 + 1e-6, true).any());
  EXPECT_TRUE(one_value(0.5, 0.6, true).finite_violation());
}

// softmax(q·kᵀ·scale + M)·v in double with an additive mask M (0 visible, −inf masked) over all
// Tk keys, masked ones included (a query that sees no key gets zeros, the registry's contract):
// finite keys give the reference's answer, a NaN in a masked key makes the row NaN.
void additive_mask_sdpa(Output& out, std::vector<double>* weights, const std::vector<float>& q,
                        const std::vector<float>& k, const std::vector<float>& v, const SdpaShape& s,
                        const SdpaMask& m, double scale) {
  start_sdpa(out, weights, q, k, v, s, m, scale);
  for (int b = 0; b < s.B; ++b)
    for (int h = 0; h < s.H; ++h)
      for (int i = 0; i < s.Tq; ++i) {
        const int visible = visible_keys(s, m, b, i);
        if (visible == 0) continue;
        const std::size_t bh = std::size_t(b) * s.H + h, row = bh * s.Tq + i;
        std::vector<double> w(std::size_t(s.Tk));
        double max = -kInf;
        for (int j = 0; j < s.Tk; ++j) {
          double dot = 0;
          for (int d = 0; d < s.dh; ++d)
            dot += double(q[row * s.dh + d]) * k[(bh * s.kv_rows() + j) * s.dh + d];
          w[j] = dot * scale + (j < visible ? 0.0 : -kInf);
          max = std::isnan(w[j]) ? w[j] : std::max(max, w[j]);
        }
        double sum = 0;
        for (auto& x : w) sum += (x = std::exp(x - max));
        for (int j = 0; j < s.Tk; ++j) {
          w[j] /= sum;
          for (int c = 0; c < s.dv; ++c) out[row * s.dv + c] += w[j] * v[(bh * s.kv_rows() + j) * s.dv + c];
          if (weights) (*weights)[row * s.Tk + j] = w[j];
        }
      }
}

CellResult run(const AttentionEntry& e, const std::string& property) {
  for (const auto& cell : cells_of({attention_row(e)}))
    if (cell.info.impl == Impl::optimized && cell.info.prop.id == property)
    {
      RunOptions options;
      options.seed = 1;
      options.use_rc_params_reproduce = false;
      return run_cell(cell, options);
    }
  ADD_FAILURE() << "no cell " << property;
  return {};
}

AttentionEntry leaky(std::set<std::string> violated) {
  AttentionEntry e = sdpa_entry();
  e.name = "additive_mask_sdpa";
  e.sdpa_optimized = additive_mask_sdpa;
  e.optimized_violates = std::move(violated);
  e.why = "reads masked keys: NaN + (−inf) = NaN";
  return e;
}

// The leak is found, as a violation with a counterexample, by both properties that poison
// masked keys with NaN; declared ✗ they are as expected, declared ✓ they are surprises.
TEST(PoisonLeak, AdditiveMaskLeakIsADeclarableViolation) {
  for (const char* property : {"key_padding_invariance", "reference_agreement"}) {
    const CellResult declared = run(leaky({property}), property);
    EXPECT_TRUE(declared.as_expected()) << property << ": " << declared.message;
    EXPECT_EQ(declared.observed, "violated") << property;
    EXPECT_FALSE(declared.counterexample.is_null()) << property;
    const CellResult undeclared = run(leaky({}), property);
    EXPECT_FALSE(undeclared.as_expected()) << property;
  }
  // and it reads nothing else wrongly: with finite inputs it is the reference
  EXPECT_TRUE(run(leaky({}), "kv_permutation_invariance").as_expected());
}

}  // namespace
}  // namespace normcheck
