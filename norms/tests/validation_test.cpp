// Input validation of every layer in the registry, both implementations: each bad input raises
// InvalidInput whose message names the parameter and its value, and a rejected call writes
// nothing (running statistics and the output buffer are as they were).
#include <gtest/gtest.h>

#include <limits>

#include "norms/tests/bad_inputs.hpp"

namespace normcheck {
namespace {

using namespace test::bad_input;

class Rejects : public ::testing::TestWithParam<ValidationParam> {};

TEST_P(Rejects, WithAMessageNamingTheParameterAndNothingWritten) {
  const auto& [row, impl, bad] = GetParam();
  Input in = valid_input(row);
  bad.mutate(in);
  const State before = in.s;
  Output out = {42.0, -7.0};
  const Output out_before = out;
  expect_rejected(GetParam(), [&] {
    row.layer->forward(impl)(in.x, in.p, in.mode, in.with_state ? &in.s : nullptr, out);
  });
  EXPECT_EQ(in.s.running_mean, before.running_mean) << "running statistics changed";
  EXPECT_EQ(in.s.running_var, before.running_var) << "running statistics changed";
  EXPECT_EQ(out, out_before) << "the output was written by a rejected call";
}

INSTANTIATE_TEST_SUITE_P(Validation, Rejects,
                         ::testing::ValuesIn(validation_params(layer_rows(), bad_cases())),
                         validation_test_name);

// The conditioning function is public too (the engine calls it on every input): it must reject a
// batch it cannot index rather than read past x.
TEST(Validation, ConditioningRejectsBatchesItCannotIndex) {
  for (const auto& row : layer_rows())
    for (const auto& bad : bad_cases()) {
      if (bad.name != "B_zero" && bad.name != "length_above_T" && bad.name != "x_too_short" &&
          bad.name != "shape_overflow")
        continue;
      Input in = valid_input(row);
      bad.mutate(in);
      EXPECT_THROW(row.layer->conditioning(in.x, in.p, in.mode, &in.s), InvalidInput)
          << row.id() << " " << bad.name;
    }
}

// Without this the cases above would prove nothing: the input they start from is accepted.
TEST(Validation, TheValidInputIsAcceptedByEveryRow) {
  for (const auto& row : layer_rows())
    for (Impl impl : {Impl::reference, Impl::optimized}) {
      Input in = valid_input(row);
      Output out;
      EXPECT_NO_THROW(row.layer->forward(impl)(in.x, in.p, in.mode, &in.s, out))
          << row.id() << " " << to_string(impl);
      EXPECT_EQ(out.size(), in.x.x.size()) << row.id();
    }
}

// Boundary values that must be accepted: momentum 0 and 1, a sequence of length 0, ε at the
// float32 limits, BatchNorm train on exactly two values per channel.
TEST(Validation, BoundaryValuesAreAccepted) {
  for (const auto& row : layer_rows())
    for (Impl impl : {Impl::reference, Impl::optimized}) {
      for (double m : {0.0, 1.0}) {
        Input in = valid_input(row);
        in.p.momentum = m;
        Output out;
        EXPECT_NO_THROW(row.layer->forward(impl)(in.x, in.p, in.mode, &in.s, out)) << row.id();
      }
      for (double eps : {double(std::numeric_limits<float>::min()), 1.0,
                         double(std::numeric_limits<float>::max())}) {
        Input in = valid_input(row);
        in.p.eps = eps;
        Output out;
        EXPECT_NO_THROW(row.layer->forward(impl)(in.x, in.p, in.mode, &in.s, out))
            << row.id() << " eps " << eps;
      }
      Input in = valid_input(row);
      in.x.lengths = {2, 0};  // an empty sequence is padding only
      Output out;
      EXPECT_NO_THROW(row.layer->forward(impl)(in.x, in.p, in.mode, &in.s, out)) << row.id();
      Input two = valid_input(row);
      two.x = Batch(1, 2, kD);
      two.x.x = {1, 2, 3, 4, 5, 6, 7, 8};
      EXPECT_NO_THROW(row.layer->forward(impl)(two.x, two.p, two.mode, &two.s, out)) << row.id();
    }
}

TEST(Validation, MismatchedShapesAreRejectedWithTheirNames) {
  Batch x(2, 3, 4);
  x.lengths = {3, 4};
  Params p;
  Output out;
  try {
    layer("layer_norm").optimized(x, p, Mode::none, nullptr, out);
    FAIL();
  } catch (const InvalidInput& e) {
    EXPECT_NE(std::string(e.what()).find("lengths[1] = 4"), std::string::npos) << e.what();
  }
  x.lengths = {3, 3};
  p.gamma.assign(5, 1.0f);
  EXPECT_THROW(layer("rms_norm").reference(x, p, Mode::none, nullptr, out), InvalidInput);
  p.gamma.clear();
  p.eps = 0;
  EXPECT_THROW(layer("layer_norm").reference(x, p, Mode::none, nullptr, out), InvalidInput);
}

TEST(Validation, GroupNormRejectsGroupsThatDoNotDivideD) {
  Batch x(1, 2, 6);
  Params p;
  p.named["groups"] = 4;
  Output out;
  for (Impl impl : {Impl::reference, Impl::optimized}) {
    try {
      layer("group_norm").forward(impl)(x, p, Mode::none, nullptr, out);
      FAIL() << "G = 4 does not divide D = 6";
    } catch (const InvalidInput& e) {
      EXPECT_NE(std::string(e.what()).find("groups = 4"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("D = 6"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace normcheck
