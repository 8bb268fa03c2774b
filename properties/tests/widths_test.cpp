// Every registry row at the widths where kernels change path (vector tails, row groups, the
// parallel threshold), both implementations: the output has B·T·D values and the optimized one
// agrees with the reference where it is specified (valid tokens). Under ASan this also watches
// every Batch-level forward's memory at those widths.
#include <gtest/gtest.h>

#include <random>
#include <tuple>

#include "norms/kernels.hpp"
#include "norms/tests/test_util.hpp"
#include "properties/compare.hpp"

namespace normcheck {
namespace {

constexpr int kWidths[] = {1, 7, 15, 17, 31, 33, 63, 65, 100, 1000};

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
      const Output ref = test::run(row, Impl::reference, x, p, s);
      const Output opt = test::run(row, Impl::optimized, x, p, s);
      ASSERT_EQ(ref.size(), x.x.size());
      ASSERT_EQ(opt.size(), x.x.size());
      const Conditioning c = row.layer->conditioning(x, p, row.mode(), &s);
      for (int b = 0; b < B; ++b)
        for (int t = 0; t < lengths[b]; ++t)
          for (int d = 0; d < D; ++d) {
            const std::size_t i = x.index(b, t, d);
            ASSERT_LE(std::abs(opt[i] - ref[i]), tolerance(ref[i], c.cond[i]))
                << "(" << b << ", " << t << ", " << d << "): optimized " << opt[i]
                << ", reference " << ref[i];
          }
    }
}

INSTANTIATE_TEST_SUITE_P(Bounds, LayerWidths, ::testing::ValuesIn(kWidths),
                         [](const auto& info) { return std::string("D") + std::to_string(info.param); });

}  // namespace
}  // namespace normcheck
