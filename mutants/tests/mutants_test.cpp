// Every mutant must be killed: ctest fails on a survivor, naming it.
#include <gtest/gtest.h>

#include <algorithm>

#include "mutants/mutants.hpp"

namespace normcheck {
namespace {

class MutantIsKilled : public ::testing::TestWithParam<Mutant> {};

TEST_P(MutantIsKilled, BySomeCellOrGoldenCase) {
  const Mutant& m = GetParam();
  const MutantResult r = run_mutant(m, options_from_rc_params());
  ASSERT_TRUE(r.killed) << "mutant '" << m.id << "' (" << m.bug << ", imitating " << m.imitates
                        << ") survived every cell and golden case";
  std::cout << m.id << " killed by " << r.killed_by << "\n";
}

// The gradient mutants are killed by the first surprising cell; each property below must catch
// its bug on its own too (every implementation the bug is in), so that no gradient property is
// one that cannot fail: the geometry identities and finite differences see a dropped term or a
// wrong variance even where reference and optimized agree, finite differences a dβ over padding,
// thread determinism a reduction that follows the threads. And reference_agreement must catch
// the shifted-data variance by itself: only its outlier features put an outlier at x₀ (without
// them no cell of the matrix kills that mutant).
struct Catch {
  std::string mutant, property;
  std::vector<Impl> impls;
  bool train_only = false;  // the bug is in the train backward (eval: the real one)
};

class GradientBugIsCaught : public ::testing::TestWithParam<Catch> {};

TEST_P(GradientBugIsCaught, ByTheCellMeantForIt) {
  const Catch& want = GetParam();
  const auto m = std::find_if(mutants().begin(), mutants().end(),
                              [&](const Mutant& x) { return x.id == want.mutant; });
  ASSERT_NE(m, mutants().end()) << "no mutant " << want.mutant;
  int checked = 0;
  for (const Cell& cell : cells_of(m->rows)) {
    if (cell.info.prop.id != want.property ||
        std::find(want.impls.begin(), want.impls.end(), cell.info.impl) == want.impls.end() ||
        cell.info.expected != Expect::holds || (want.train_only && cell.info.row.mode == Mode::eval))
      continue;
    const CellResult r = run_cell(cell, options_from_rc_params());
    ++checked;
    EXPECT_EQ(r.observed, "violated") << cell.id() << " did not catch '" << m->bug << "'";
  }
  EXPECT_GT(checked, 0) << want.mutant << " has no ✓ cell of " << want.property;
}

const Impl ref = Impl::reference, opt = Impl::optimized;
INSTANTIATE_TEST_SUITE_P(
    Mutants, GradientBugIsCaught,
    ::testing::Values(Catch{"ln_grad_mean_term_dropped", "grad_finite_difference", {ref, opt}},
                      Catch{"ln_grad_mean_term_dropped", "grad_token_shift_orthogonality", {ref, opt}},
                      Catch{"bn_grad_variance_term_n_minus_1", "grad_finite_difference", {ref, opt}, true},
                      Catch{"bn_grad_variance_term_n_minus_1", "grad_feature_scale_orthogonality", {ref, opt}, true},
                      Catch{"masked_bn_grad_dbeta_over_padding", "grad_finite_difference", {ref, opt}},
                      Catch{"rms_grad_thread_partials", "grad_thread_determinism", {opt}},
                      Catch{"sync_bn_grad_unweighted_shard_mean", "grad_shard_invariance", {opt}, true},
                      Catch{"ln_shift_by_first_value", "reference_agreement", {opt}}),
    [](const auto& info) { return info.param.mutant + "_" + info.param.property; });

}  // namespace

void PrintTo(const Mutant& m, std::ostream* os) { *os << m.id; }

namespace {
INSTANTIATE_TEST_SUITE_P(Mutants, MutantIsKilled, ::testing::ValuesIn(mutants()),
                         [](const auto& info) { return info.param.id; });
}  // namespace
}  // namespace normcheck
