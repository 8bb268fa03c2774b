// Every registry row at the widths where kernels change path (vector tails, row groups, the
// parallel threshold), both implementations: the output has B·T·D values and the optimized one
// agrees with the reference where it is specified (valid tokens). Under ASan this also watches
// every Batch-level forward's memory at those widths. A failure prints as a matrix cell's
// section (inherited.hpp).
#include <gtest/gtest.h>

#include <random>
#include <tuple>

#include "norms/kernels.hpp"
#include "norms/tests/test_util.hpp"
#include "properties/tests/inherited.hpp"

namespace normcheck {
namespace {

constexpr int kWidths[] = {1, 7, 15, 17, 31, 33, 63, 65, 100, 1000};

const PropertyInfo kWidthAgreement{
    "width_agreement", "widths",
    "at a width where a kernel changes path, the optimized output agrees with the reference",
    "the same batch through the reference (widths 1 to 1000: vector tails, row groups, the "
    "parallel threshold)",
    "every valid token, under the tolerance rule",
    "the fast kernel computes the same function at every width"};

// The optimized output of `row` on x against the reference's, every valid token under the
// tolerance rule, as a cell of one case (the input is fixed): a failure reads as the matrix's.
CellResult width_agreement(const LayerRow& row, const Batch& x, const Params& p, const State& s) {
  return test::agrees_with_reference(
      row, x, p, s, kWidthAgreement,
      "the same batch through the reference (D = " + std::to_string(x.D) + ")");
}

// Every registry row at every width, both implementations: the output has B·T·D values and the
// optimized one agrees with the reference where it is specified (valid tokens).
class LayerWidths : public ::testing::TestWithParam<int> {};

TEST_P(LayerWidths, EveryRowAgreesWithItsReference) {
  const int D = GetParam();
  std::mt19937 rng(D);
  const int T_par = int(kernels::kParallelMinValues / std::size_t(D)) / 4 + 2;
  for (const auto& row : layer_rows())
    for (auto [B, T, lengths] : {std::tuple{2, 3, std::vector<int>{3, 1}},
                                 std::tuple{4, T_par, std::vector<int>{T_par, 1, 2, T_par - 1}}}) {
      SCOPED_TRACE(row.id() + " B " + std::to_string(B) + " T " + std::to_string(T) + " D " +
                   std::to_string(D));
      const Batch x = test::random_batch(B, T, D, lengths, rng);
      const Params p = test::params_for(*row.layer, D, rng);
      const State s = test::state_for(D);
      // the comparison reads B·T·D values of each side
      ASSERT_EQ(test::run(row, Impl::reference, x, p, s).size(), x.x.size());
      ASSERT_EQ(test::run(row, Impl::optimized, x, p, s).size(), x.x.size());
      EXPECT_INHERITED_HOLDS(width_agreement(row, x, p, s));
    }
}

// The failure a new layer sees: a kernel that forgets its SIMD tail (the last D mod 8 features
// left as x) fails this test with the matrix's section, not a bare "expected ≤" line: the row,
// the shapes, the worst value against its tolerance, the replay command of this test.
void layer_norm_without_tail(const Batch& in, const Params& p, Mode mode, State* s, Output& out) {
  layer("layer_norm").optimized(in, p, mode, s, out);
  for (std::size_t r = 0; r < in.rows(); ++r)
    for (int d = in.D - in.D % 8; d < in.D; ++d) out[r * in.D + d] = in.x[r * in.D + d];
}

TEST(Bounds, AWrongKernelFailsWithTheMatrixCounterexample) {
  LayerEntry broken = layer("layer_norm");
  broken.name = "layer_norm_without_tail";
  broken.optimized = layer_norm_without_tail;
  const LayerRow row = rows_of(broken).at(0);
  std::mt19937 rng(7);
  const Batch x = test::random_batch(2, 3, 7, {3, 1}, rng);
  const Params p = test::params_for(broken, 7, rng);
  const CellResult r = width_agreement(row, x, p, test::state_for(7));
  ASSERT_FALSE(r.as_expected()) << "the tail-less kernel passed:\n" << section_text(r);
  const std::string text = section_text(r);
  const std::vector<std::string> want = {
      "layer_norm_without_tail / optimized / width_agreement — SURPRISE: expected holds, observed violated",
      "a (input) = optimized, one call on x, y [B=2, T=3, D=7]",
      "b (related input) = reference, one call on x, y [B=2, T=3, D=7]",
      "> tolerance ", "RC_PARAMS=\"reproduce=", "--gtest_filter='" + test::current_test_filter() + "'"};
  for (const auto& part : want)
    EXPECT_NE(text.find(part), std::string::npos) << "no \"" << part << "\" in\n" << text;
  // the worst value is the kernel's bug: y = x where the reference normalizes x
  const auto& w = r.counterexample.at("worst");
  const auto& at = w.at("position_a");
  EXPECT_EQ(value_of(w.at("a")),
            x.at(at.at("index").at(0), at.at("index").at(1), at.at("element")))
      << w.dump();
  EXPECT_GT(std::abs(value_of(w.at("a")) - value_of(w.at("b"))), value_of(w.at("tolerance")));
}

INSTANTIATE_TEST_SUITE_P(Bounds, LayerWidths, ::testing::ValuesIn(kWidths),
                         [](const auto& info) { return std::string("D") + std::to_string(info.param); });

}  // namespace
}  // namespace normcheck
