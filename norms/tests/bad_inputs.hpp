// The bad inputs every entry point must reject, one per parameter, with the text its message
// must contain (the parameter and its value): shared by the forward's validation tests and the
// backward's (gradient_test.cpp), which must reject everything the forward rejects.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <limits>
#include <ostream>
#include <string>
#include <vector>

#include "norms/tests/test_util.hpp"

namespace normcheck::test::bad_input {

inline constexpr int kB = 2, kT = 3, kD = 4;

struct Input {
  Batch x;
  Params p;
  State s;
  Mode mode = Mode::none;
  bool with_state = true;  // false: call with state == nullptr
};

inline Input valid_input(const LayerRow& row) {
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
inline bool uses_eps(const LayerRow& row) {
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

inline bool always(const LayerRow&) { return true; }
inline bool stateful(const LayerRow& r) { return r.layer->stateful(); }
inline bool train_row(const LayerRow& r) { return r.mode() == Mode::train; }
inline bool per_feature_gamma(const LayerRow& r) { return r.layer->params.affine; }
inline bool per_feature_beta(const LayerRow& r) { return per_feature_gamma(r) && r.layer->params.bias; }
inline bool has_momentum(const LayerRow& r) { return r.layer->params.momentum; }

inline void set_eps(Input& in, double eps) { in.p.eps = eps; }

inline std::vector<BadCase> bad_cases() {
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

// One parameterized validation test: a row, an implementation and a bad input it must reject.
struct ValidationParam {
  LayerRow row;
  Impl impl;
  BadCase bad;
};

// Every (row, implementation, case) where the case applies to the row.
inline std::vector<ValidationParam> validation_params(const std::vector<LayerRow>& rows,
                                                      const std::vector<BadCase>& cases) {
  std::vector<ValidationParam> out;
  for (const auto& row : rows)
    for (Impl impl : {Impl::reference, Impl::optimized})
      for (const auto& c : cases)
        if (c.applies(row)) out.push_back({row, impl, c});
  return out;
}

inline void PrintTo(const ValidationParam& v, std::ostream* os) {
  *os << v.row.id() << "/" << to_string(v.impl) << "/" << v.bad.name;
}

// The test name of a ValidationParam (INSTANTIATE_TEST_SUITE_P's last argument).
inline std::string validation_test_name(const ::testing::TestParamInfo<ValidationParam>& info) {
  return test::test_name(info.param.row.id() + "_" + to_string(info.param.impl) + "_" +
                         info.param.bad.name);
}

// Runs call(), which must throw InvalidInput with a one-line message containing each text of
// v.bad.message_has; accepting the input or throwing anything else fails the test.
template <class Call>
void expect_rejected(const ValidationParam& v, Call&& call) {
  try {
    call();
    ADD_FAILURE() << v.row.id() << " (" << to_string(v.impl) << ") accepted " << v.bad.name;
  } catch (const InvalidInput& e) {
    const std::string msg = e.what();
    for (const auto& part : v.bad.message_has)
      EXPECT_NE(msg.find(part), std::string::npos) << "message \"" << msg << "\" lacks \"" << part << "\"";
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "one line: " << msg;
  } catch (const std::exception& e) {
    ADD_FAILURE() << v.bad.name << ": expected InvalidInput, got another exception: " << e.what();
  }
}

}  // namespace normcheck::test::bad_input
