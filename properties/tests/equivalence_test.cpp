// Cross-layer equivalences of the spec (each must hold, on both implementations).
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <tuple>

#include <omp.h>

#include "properties/compare.hpp"
#include "properties/generators.hpp"

namespace normcheck {
namespace {

// The tolerance rule between two implementations' outputs on valid positions.
void assert_close(const Batch& x, const Output& a, const Output& b, double cond, bool valid_only = true) {
  for (int bb = 0; bb < x.B; ++bb)
    for (int t = 0; t < x.T; ++t) {
      if (valid_only && !x.valid(bb, t)) continue;
      for (int d = 0; d < x.D; ++d) {
        const std::size_t i = x.index(bb, t, d);
        RC_ASSERT(std::abs(a[i] - b[i]) <= tolerance(b[i], cond));
      }
    }
}

double max_cond(const Conditioning& c) {
  double m = 0;
  for (double v : c.cond)
    if (std::isfinite(v)) m = std::max(m, v);
  return m;
}

Impl any_impl() { return *rc::gen::element(Impl::reference, Impl::optimized); }

// A case of layer `l` to cut into two shards: a batch of at least two sequences of at least two
// tokens (batch_norm's train mode rejects one value per channel), `l`'s parameters and running
// statistics at its width, an implementation, and the cut {first, B − first}.
struct ShardCase {
  gen::Shape shape;
  Batch x;
  Params p;
  State s0;
  Impl impl;
  int first;

  ShardCut cut() const { return {first, shape.B - first}; }
};

ShardCase draw_shard_case(const LayerEntry& l) {
  auto shape = gen::shape(2);
  shape.B = std::max(shape.B, 2);
  Batch x = gen::batch(shape, gen::regime(), gen::Poison::zero, 2);
  Params p = gen::params(l, shape.D);
  State s0 = gen::state(shape.D);
  const Impl impl = any_impl();
  const int first = *rc::gen::inRange(1, shape.B);
  return {shape, std::move(x), std::move(p), std::move(s0), impl, first};
}

RC_GTEST_PROP(Equivalence, GroupNormWithOneGroupIsLayerNorm, ()) {
  const auto shape = gen::shape();
  const Batch x = gen::batch(shape, gen::regime(), gen::Poison::zero);
  Params p = gen::params(layer("layer_norm"), shape.D);
  p.named["groups"] = 1;
  const Impl impl = any_impl();
  Output gn, ln;
  layer("group_norm").forward(impl)(x, p, Mode::none, nullptr, gn);
  layer("layer_norm").forward(impl)(x, p, Mode::none, nullptr, ln);
  assert_close(x, gn, ln, max_cond(layer("layer_norm").conditioning(x, p, Mode::none, nullptr)));
}

RC_GTEST_PROP(Equivalence, LayerNormOnZeroMeanTokensWithoutBetaIsRmsNorm, ()) {
  // tokens [v, −v]: the mean is exactly 0, so LN's variance is RMSNorm's mean square
  const int half = *rc::gen::inRange(1, 20);
  auto shape = gen::shape();
  shape.D = 2 * half;
  Batch x = gen::batch(shape, gen::Regime::normal, gen::Poison::zero);
  for (std::size_t r = 0; r < x.rows(); ++r)
    for (int d = 0; d < half; ++d) x.x[r * x.D + half + d] = -x.x[r * x.D + d];
  Params p = gen::params(layer("rms_norm"), shape.D);
  const Impl impl = any_impl();
  Output ln, rms;
  layer("layer_norm").forward(impl)(x, p, Mode::none, nullptr, ln);
  layer("rms_norm").forward(impl)(x, p, Mode::none, nullptr, rms);
  assert_close(x, ln, rms, 0.0);
}

RC_GTEST_PROP(Equivalence, MaskedBatchNormIsBatchNormOnAnUnpaddedBatch, ()) {
  auto shape = gen::shape(2);
  Batch x = gen::batch(shape, gen::regime(), gen::Poison::nan, shape.T);  // every length = T
  Params p = gen::params(layer("batch_norm"), shape.D);
  const State s0 = gen::state(shape.D);
  const Impl impl = any_impl();
  const Mode mode = *rc::gen::element(Mode::train, Mode::eval);
  State s1 = s0, s2 = s0;
  Output masked, naive;
  layer("masked_batch_norm").forward(impl)(x, p, mode, &s1, masked);
  layer("batch_norm").forward(impl)(x, p, mode, &s2, naive);
  assert_close(x, masked, naive, max_cond(layer("batch_norm").conditioning(x, p, mode, &s0)));
  for (int d = 0; d < shape.D; ++d) {
    RC_ASSERT(std::abs(s1.running_mean[d] - s2.running_mean[d]) <= 1e-12 * (1 + std::abs(s2.running_mean[d])));
    RC_ASSERT(std::abs(s1.running_var[d] - s2.running_var[d]) <= 1e-12 * (1 + std::abs(s2.running_var[d])));
  }
}

RC_GTEST_PROP(Equivalence, InstanceNormIsMaskedBatchNormOnEachSequenceAlone, ()) {
  auto shape = gen::shape(2);
  const Batch x = gen::batch(shape, gen::regime(), gen::poison(), 2);  // lengths ≥ 2
  Params p = gen::params(layer("instance_norm"), shape.D);
  const Impl impl = any_impl();
  Output in;
  layer("instance_norm").forward(impl)(x, p, Mode::none, nullptr, in);
  for (int b = 0; b < x.B; ++b) {
    Batch one(1, x.T, x.D);
    one.lengths = {x.lengths[b]};
    std::copy(&x.x[x.index(b, 0, 0)], &x.x[x.index(b, 0, 0)] + std::size_t(x.T) * x.D, one.x.begin());
    State s{std::vector<double>(x.D, 0.0), std::vector<double>(x.D, 1.0)};
    Output mbn;
    layer("masked_batch_norm").forward(impl)(one, p, Mode::train, &s, mbn);
    Output mine(in.begin() + x.index(b, 0, 0), in.begin() + x.index(b, 0, 0) + one.x.size());
    assert_close(one, mine, mbn,
                 max_cond(layer("instance_norm").conditioning(one, p, Mode::none, nullptr)));
  }
}

// The sharded forward's default (LayerEntry::forward_on_shards): a cut into one shard is the
// plain forward, bit for bit, state included; and each shard of a cut is its own plain forward
// (batch_norm in train mode: its own statistics), the state after it shard 0's.
RC_GTEST_PROP(Equivalence, DefaultShardedForwardRunsEachShardAlone, ()) {
  const LayerEntry& bn = layer(*rc::gen::element<std::string>("batch_norm", "masked_batch_norm", "layer_norm"));
  const ShardCase c = draw_shard_case(bn);
  const auto& [shape, x, p, s0, impl, first] = c;
  const Mode mode = *rc::gen::element(Mode::train, Mode::eval);
  State whole_s = s0, one_s = s0;
  Output whole, one;
  bn.forward(impl)(x, p, mode, &whole_s, whole);
  bn.forward_on_shards(impl, x, {shape.B}, p, mode, &one_s, one);
  RC_ASSERT(std::memcmp(whole.data(), one.data(), whole.size() * sizeof(double)) == 0);
  RC_ASSERT(whole_s.running_mean == one_s.running_mean);
  RC_ASSERT(whole_s.running_var == one_s.running_var);
  State cut_s = s0, first_s = s0, second_s = s0;
  Output cut, y0, y1;
  bn.forward_on_shards(impl, x, c.cut(), p, mode, &cut_s, cut);
  bn.forward(impl)(sequences(x, 0, first), p, mode, &first_s, y0);
  bn.forward(impl)(sequences(x, first, shape.B - first), p, mode, &second_s, y1);
  y0.insert(y0.end(), y1.begin(), y1.end());
  RC_ASSERT(std::memcmp(cut.data(), y0.data(), cut.size() * sizeof(double)) == 0);
  RC_ASSERT(cut_s.running_mean == first_s.running_mean);
  RC_ASSERT(cut_s.running_var == first_s.running_var);
}

TEST(Shards, ACutThatIsNotOfTheBatchIsRejected) {
  Batch x(3, 2, 4);
  Params p;
  Output y;
  for (const ShardCut& cut : {ShardCut{}, ShardCut{1, 1}, ShardCut{2, 2}, ShardCut{3, 0}, ShardCut{4, -1}})
    EXPECT_THROW(layer("layer_norm").forward_on_shards(Impl::optimized, x, cut, p, Mode::none, nullptr, y),
                 InvalidInput);
}

// sync_batch_norm as one worker is batch_norm; on any cut it is the whole batch's batch_norm
// within the tolerance rule (the merged statistics are the whole batch's), running statistics
// included; and with a fixed cut its optimized bits do not depend on the thread count.
RC_GTEST_PROP(Equivalence, SyncBatchNormIsBatchNormOnAnyCut, ()) {
  const LayerEntry& sync = layer("sync_batch_norm");
  const ShardCase c = draw_shard_case(sync);
  const auto& [shape, x, p, s0, impl, first] = c;
  const Mode mode = *rc::gen::element(Mode::train, Mode::eval);
  State s_bn = s0, s_one = s0, s_cut = s0;
  Output bn, one, cut;
  layer("batch_norm").forward(impl)(x, p, mode, &s_bn, bn);
  sync.forward(impl)(x, p, mode, &s_one, one);
  sync.forward_on_shards(impl, x, c.cut(), p, mode, &s_cut, cut);
  const double cond = max_cond(sync.conditioning(x, p, mode, &s0));
  assert_close(x, one, bn, cond, false);
  assert_close(x, cut, bn, cond, false);
  for (int d = 0; d < shape.D; ++d) {
    RC_ASSERT(std::abs(s_cut.running_mean[d] - s_bn.running_mean[d]) <= tolerance(s_bn.running_mean[d], 0));
    RC_ASSERT(std::abs(s_cut.running_var[d] - s_bn.running_var[d]) <= tolerance(s_bn.running_var[d], 0));
  }
}

TEST(Shards, SyncBatchNormBitsDoNotDependOnThreadsForAFixedCut) {
  // wide and tall enough for the statistics kernel's parallel path; decimals round in float32
  Batch x(7, 300, 96);
  for (std::size_t i = 0; i < x.x.size(); ++i) x.x[i] = float(int(i * 7919 % 2001) - 1000) / 10.0f;
  Params p;
  const ShardCut cut{3, 1, 3};
  Output ref;
  State s_ref{std::vector<double>(96, 0.0), std::vector<double>(96, 1.0)};
  {
    omp_set_num_threads(1);
    layer("sync_batch_norm").forward_on_shards(Impl::optimized, x, cut, p, Mode::train, &s_ref, ref);
  }
  for (int threads : {2, 3, 4}) {
    omp_set_num_threads(threads);
    State s{std::vector<double>(96, 0.0), std::vector<double>(96, 1.0)};
    Output y;
    layer("sync_batch_norm").forward_on_shards(Impl::optimized, x, cut, p, Mode::train, &s, y);
    EXPECT_EQ(0, std::memcmp(ref.data(), y.data(), y.size() * sizeof(double))) << threads << " threads";
    EXPECT_EQ(s_ref.running_var, s.running_var) << threads << " threads";
  }
  omp_set_num_threads(2);
}

// sync_batch_norm's backward as one worker is batch_norm's, and on any cut (its workers
// all-reducing Σ dy and Σ dy·(x − μ)) it is the whole batch's batch_norm backward, dx at every
// position, dγ and dβ, under the gradient tolerance rule; eval too.
RC_GTEST_PROP(Equivalence, SyncBatchNormBackwardIsBatchNormsOnAnyCut, ()) {
  const LayerEntry& sync = layer("sync_batch_norm");
  const ShardCase c = draw_shard_case(sync);
  const auto& [shape, x, p, s0, impl, first] = c;
  const LayerRow bn_row = rows_of(layer("batch_norm")).at(*rc::gen::inRange(0, 2));
  const Mode mode = bn_row.mode();
  std::vector<float> dy(x.x.size());
  for (auto& v : dy) v = float(*rc::gen::inRange(-64, 65)) / 16.0f;
  Grads bn, one, cut;
  bn_row.layer->backward(impl)(x, p, mode, &s0, dy, bn);
  sync.backward(impl)(x, p, mode, &s0, dy, one);
  sync.backward_on_shards(impl, x, c.cut(), p, mode, &s0, dy, cut);
  GradientTerms terms = gradient_terms(bn_row, x, p, s0, bn, dy, true);
  terms |= gradient_terms(bn_row, x, p, s0, cut, dy, true);
  const GradTolerance tol = gradient_tolerance(terms, impl), param_tol = param_gradient_tolerance(terms, impl);
  for (const Grads* g : {&one, &cut})
    for (const auto& [got, want, t] : {std::tuple{&g->dx, &bn.dx, &tol}, std::tuple{&g->dgamma, &bn.dgamma, &param_tol},
                                       std::tuple{&g->dbeta, &bn.dbeta, &param_tol}}) {
      RC_ASSERT(got->size() == want->size());
      for (std::size_t i = 0; i < want->size(); ++i) RC_ASSERT(t->agree((*got)[i], (*want)[i]));
    }
}

TEST(Shards, SyncBatchNormBackwardBitsDoNotDependOnThreadsForAFixedCut) {
  Batch x(7, 300, 96);
  for (std::size_t i = 0; i < x.x.size(); ++i) x.x[i] = float(int(i * 7919 % 2001) - 1000) / 10.0f;
  std::vector<float> dy(x.x.size());
  for (std::size_t i = 0; i < dy.size(); ++i) dy[i] = float(int(i * 104729 % 257) - 128) / 10.0f;
  Params p;
  p.gamma.assign(96, 1.5f);
  p.beta.assign(96, 0.25f);
  const State s{std::vector<double>(96, 0.0), std::vector<double>(96, 1.0)};
  const ShardCut cut{3, 1, 3};
  Grads ref;
  omp_set_num_threads(1);
  layer("sync_batch_norm").backward_on_shards(Impl::optimized, x, cut, p, Mode::train, &s, dy, ref);
  for (int threads : {2, 3, 4}) {
    omp_set_num_threads(threads);
    Grads g;
    layer("sync_batch_norm").backward_on_shards(Impl::optimized, x, cut, p, Mode::train, &s, dy, g);
    EXPECT_EQ(0, std::memcmp(ref.dx.data(), g.dx.data(), g.dx.size() * sizeof(double))) << threads << " threads";
    EXPECT_EQ(ref.dgamma, g.dgamma) << threads << " threads";
    EXPECT_EQ(ref.dbeta, g.dbeta) << threads << " threads";
  }
  omp_set_num_threads(2);
}

// The property itself can fail: batch_norm (each shard its own statistics) on a cut of a batch
// whose sequences differ gives other outputs than the whole batch.
TEST(Shards, LocalBatchNormOnShardsIsNotTheWholeBatch) {
  Batch x(2, 2, 1);
  x.x = {0.f, 1.f, 10.f, 12.f};
  Params p;
  State s{{0.0}, {1.0}}, s2 = s;
  Output whole, cut;
  layer("batch_norm").forward(Impl::reference)(x, p, Mode::train, &s, whole);
  layer("batch_norm").forward_on_shards(Impl::reference, x, {1, 1}, p, Mode::train, &s2, cut);
  EXPECT_NEAR(whole[0], -5.75 / std::sqrt(28.1875), 1e-4);  // μ = 5.75, σ² = 28.1875
  EXPECT_NEAR(cut[0], -1.0, 1e-4);                          // shard 0 alone: μ = 0.5, σ² = 0.25
  EXPECT_NE(s.running_mean, s2.running_mean);
}

}  // namespace
}  // namespace normcheck
