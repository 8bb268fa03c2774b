// The Transformer block: its two implementations and its two ways to run (teacher forcing,
// decoding) agree.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "attention/tests/test_util.hpp"

namespace normcheck {
namespace {

using namespace test;

NORMCHECK_BOTH_IMPLS(Block);

// A frozen BatchNorm (eval mode) is a fixed per-feature affine map: teacher forcing over a
// padded batch and decoding token by token must agree. (The matrix's decode_equivalence
// compares train with eval and is not applicable to eval rows; this covers that path.)
TEST_P(Block, BlockWithFrozenBatchNormDecodesLikeTeacherForcing) {
  const auto& bn = layer("batch_norm");
  for (Placement p : {Placement::pre, Placement::post}) {
    BlockWeights w = small_block(8, 2, p, 11);
    w.norm1.gamma = random_values(8, 20);
    w.norm2.beta = random_values(8, 21);
    BlockState st;
    for (State* s : {&st.norm1, &st.norm2}) {
      s->running_mean = std::vector<double>(8, 0.25);
      s->running_var = std::vector<double>(8, 1.5);
    }
    const Batch x = random_batch(3, 5, 8, {5, 2, 4}, 30);
    BlockState forced = st;
    const auto a = block_forward(bn, GetParam(), Mode::eval, w, forced, x, false);
    const auto b = block_decode(bn, GetParam(), Mode::eval, w, st, x, false);
    for (int s = 0; s < x.B; ++s)
      for (int t = 0; t < x.lengths[s]; ++t)
        for (int e = 0; e < 8; ++e) {
          const std::size_t i = x.index(s, t, e);
          EXPECT_NEAR(a.y[i], b.y[i], 1e-4 + 1e-4 * std::abs(b.y[i])) << to_string(p) << " " << i;
        }
  }
}

// The reference and optimized blocks compute the same function (LayerNorm, both placements).
TEST(Block, OptimizedAgreesWithReference) {
  const auto& ln = layer("layer_norm");
  for (Placement p : {Placement::pre, Placement::post}) {
    const BlockWeights w = small_block(12, 3, p, 40);
    const Batch x = random_batch(2, 6, 12, {6, 3}, 50);
    BlockState s1, s2;
    const auto ref = block_forward(ln, Impl::reference, Mode::none, w, s1, x, true);
    const auto opt = block_forward(ln, Impl::optimized, Mode::none, w, s2, x, true);
    for (int b = 0; b < 2; ++b)
      for (int t = 0; t < x.lengths[b]; ++t)
        for (int e = 0; e < 12; ++e) {
          const std::size_t i = x.index(b, t, e);
          EXPECT_NEAR(opt.y[i], ref.y[i], 1e-4 + 1e-4 * std::abs(ref.y[i])) << to_string(p) << " " << i;
        }
    ASSERT_EQ(ref.attn_weights.size(), std::size_t(2 * 3 * 6 * 6));
    for (std::size_t i = 0; i < ref.attn_weights.size(); ++i)
      EXPECT_NEAR(opt.attn_weights[i], ref.attn_weights[i], 1e-5) << i;
  }
}


}  // namespace
}  // namespace normcheck
