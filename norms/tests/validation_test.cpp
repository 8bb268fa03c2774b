// Input validation of every layer in the registry, both implementations: each bad input raises
// InvalidInput whose message names the parameter and its value, and a rejected call writes
// nothing (running statistics and the output buffer are as they were).
#include <gtest/gtest.h>

#include <functional>
#include <limits>

#include "norms/tests/test_util.hpp"

namespace normcheck {
namespace {

constexpr int kB = 2, kT = 3, kD = 4;

struct Input {
  Batch x;
  Params p;
  State s;
  Mode mode = Mode::none;
  bool with_state = true;  // false: call with state == nullptr
};

Input valid_input(const LayerRow& row) {
  std::mt19937 rng(11);
  Input in;
  in.x = test::random_batch(kB, kT, kD, {3, 2}, rng);
  in.p = test::params_for(*row.layer, kD, rng);
  in.s = test::state_for(kD);
  in.mode = row.mode();
  return in;
}

// A layer that has an ε: its output on a low-variance token moves when ε does. (dyt and identity
// have none, so they have no ε to reject.)
bool uses_eps(const LayerRow& row) {
  Input in = valid_input(row);
  for (auto& v : in.x.x) v *= 1e-3f;
  const Output a = test::run(row, Impl::reference, in.x, in.p, in.s);
  in.p.eps = 0.5;
  const Output b = test::run(row, Impl::reference, in.x, in.p, in.s);
  return a != b;
}

struct BadCase {
  std::string name;
  std::function<bool(const LayerRow&)> applies;
  std::function<void(Input&)> mutate;
  std::vector<std::string> message_has;  // the parameter and its value
};

bool always(const LayerRow&) { return true; }
bool stateful(const LayerRow& r) { return r.layer->stateful(); }
bool train_row(const LayerRow& r) { return r.mode() == Mode::train; }
bool per_feature_gamma(const LayerRow& r) { return r.layer->params.affine; }
bool per_feature_beta(const LayerRow& r) { return per_feature_gamma(r) && r.layer->params.bias; }
bool has_momentum(const LayerRow& r) { return r.layer->params.momentum; }

void set_eps(Input& in, double eps) { in.p.eps = eps; }

std::vector<BadCase> bad_cases() {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<BadCase> c;
  c.push_back({"B_zero", always, [](Input& in) { in.x = Batch(0, kT, kD); }, {"B = 0"}});
  c.push_back({"T_zero", always, [](Input& in) { in.x = Batch(kB, 0, kD); }, {"T = 0"}});
  c.push_back({"D_zero", always, [](Input& in) { in.x = Batch(kB, kT, 0); }, {"D = 0"}});
  c.push_back({"B_negative", always, [](Input& in) { in.x.B = -1; }, {"B = -1"}});
  c.push_back({"D_negative", always, [](Input& in) { in.x.D = -4; }, {"D = -4"}});
  // a product that wraps around 2^64 to the (empty) size of x must not pass the size check
  c.push_back({"shape_overflow", always,
               [](Input& in) {
                 in.x = Batch();
                 in.x.B = 1 << 21;
                 in.x.T = 1 << 21;
                 in.x.D = 1 << 22;
                 in.x.lengths.assign(std::size_t(1) << 21, 0);
               },
               {"[2097152, 2097152, 4194304]", "overflows"}});
  c.push_back({"lengths_count", always, [](Input& in) { in.x.lengths = {3}; },
               {"lengths has 1 entries", "B = 2"}});
  c.push_back({"length_above_T", always, [](Input& in) { in.x.lengths = {3, 4}; },
               {"lengths[1] = 4", "T = 3"}});
  c.push_back({"length_negative", always, [](Input& in) { in.x.lengths = {-1, 2}; },
               {"lengths[0] = -1"}});
  c.push_back({"x_too_short", always, [](Input& in) { in.x.x.pop_back(); },
               {"x has 23 values", "24"}});
  c.push_back({"x_too_long", always, [](Input& in) { in.x.x.push_back(0); },
               {"x has 25 values", "24"}});
  c.push_back({"gamma_size", per_feature_gamma, [](Input& in) { in.p.gamma.push_back(1); },
               {"gamma has 5 values", "D = 4"}});
  // a layer without per-feature γ (scale_norm's gain is a named parameter) refuses one
  c.push_back({"gamma_not_taken", [](const LayerRow& r) { return !r.layer->params.affine; },
               [](Input& in) { in.p.gamma = {1, 1}; }, {"2 gamma"}});
  c.push_back({"beta_size", per_feature_beta, [](Input& in) { in.p.beta.pop_back(); },
               {"beta has 3 values", "D = 4"}});
  c.push_back({"eps_zero", uses_eps, [](Input& in) { set_eps(in, 0); }, {"eps = 0"}});
  c.push_back({"eps_negative", uses_eps, [](Input& in) { set_eps(in, -1e-5); }, {"eps = -1e-05"}});
  c.push_back({"eps_nan", uses_eps, [=](Input& in) { set_eps(in, nan); }, {"eps = nan"}});
  c.push_back({"eps_inf", uses_eps, [=](Input& in) { set_eps(in, inf); }, {"eps = inf"}});
  // positive, but 0 in float32 where the optimized kernel adds it
  c.push_back({"eps_below_float", uses_eps, [](Input& in) { set_eps(in, 1e-300); },
               {"eps = 1e-300"}});
  c.push_back({"momentum_negative", has_momentum, [](Input& in) { in.p.momentum = -0.1; },
               {"momentum = -0.1"}});
  c.push_back({"momentum_above_one", has_momentum, [](Input& in) { in.p.momentum = 1.5; },
               {"momentum = 1.5"}});
  c.push_back({"momentum_nan", has_momentum, [=](Input& in) { in.p.momentum = nan; },
               {"momentum = nan"}});
  c.push_back({"running_mean_size", stateful, [](Input& in) { in.s.running_mean.pop_back(); },
               {"running_mean has 3 values", "D = 4"}});
  c.push_back({"running_var_size", stateful, [](Input& in) { in.s.running_var.push_back(1); },
               {"running_var has 5 values", "D = 4"}});
  c.push_back({"state_missing", stateful, [](Input& in) { in.with_state = false; },
               {"state"}});
  c.push_back({"mode_missing", stateful, [](Input& in) { in.mode = Mode::none; },
               {"mode"}});
  c.push_back({"train_single_token", train_row,
               [](Input& in) {
                 in.x = Batch(1, 1, kD);
                 in.x.x = {1, 2, 3, 4};
               },
               {"expected more than 1 value per channel when training", "got 1"}});
  return c;
}

struct ValidationParam {
  LayerRow row;
  Impl impl;
  BadCase bad;
};

std::vector<ValidationParam> validation_params() {
  std::vector<ValidationParam> out;
  for (const auto& row : layer_rows())
    for (Impl impl : {Impl::reference, Impl::optimized})
      for (const auto& c : bad_cases())
        if (c.applies(row)) out.push_back({row, impl, c});
  return out;
}

void PrintTo(const ValidationParam& v, std::ostream* os) {
  *os << v.row.id() << "/" << to_string(v.impl) << "/" << v.bad.name;
}

class Rejects : public ::testing::TestWithParam<ValidationParam> {};

TEST_P(Rejects, WithAMessageNamingTheParameterAndNothingWritten) {
  const auto& [row, impl, bad] = GetParam();
  Input in = valid_input(row);
  bad.mutate(in);
  const State before = in.s;
  Output out = {42.0, -7.0};
  const Output out_before = out;
  try {
    row.layer->forward(impl)(in.x, in.p, in.mode, in.with_state ? &in.s : nullptr, out);
    FAIL() << row.id() << " (" << to_string(impl) << ") accepted " << bad.name;
  } catch (const InvalidInput& e) {
    const std::string msg = e.what();
    for (const auto& part : bad.message_has)
      EXPECT_NE(msg.find(part), std::string::npos) << "message \"" << msg << "\" lacks \"" << part << "\"";
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "one line: " << msg;
  } catch (const std::exception& e) {
    FAIL() << bad.name << ": expected InvalidInput, got another exception: " << e.what();
  }
  EXPECT_EQ(in.s.running_mean, before.running_mean) << "running statistics changed";
  EXPECT_EQ(in.s.running_var, before.running_var) << "running statistics changed";
  EXPECT_EQ(out, out_before) << "the output was written by a rejected call";
}

INSTANTIATE_TEST_SUITE_P(Validation, Rejects, ::testing::ValuesIn(validation_params()),
                         [](const auto& info) {
                           return test::test_name(info.param.row.id() + "_" +
                                                  to_string(info.param.impl) + "_" +
                                                  info.param.bad.name);
                         });

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
