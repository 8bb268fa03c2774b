// The parameters a layer declares beyond γ, β, ε and momentum, as one table: each ParamDef names
// the parameter, says what it means, where a golden case gives it, and how the generators draw
// it. A layer reads them by name (`p.get("groups")`). A new kind of parameter is one more
// function in norms/params.cpp.
#pragma once

#include <functional>
#include <string>

namespace normcheck {

// The generators' source of randomness, as a parameter's draw sees it: an integer in [lo, hi]
// (inclusive) that shrinks towards lo. Behind it is RapidCheck (properties/generators.cpp), so a
// counterexample's parameters shrink too.
using PickInt = std::function<int(int lo, int hi)>;

struct ParamDef {
  std::string name;     // "groups": Params::named key, golden `params.<name>`
  std::string meaning;  // one line, for `normcheck list` and the reports
  double fallback = 0;  // the value when a golden case does not give it
  // Where a golden case gives the value when not as `params.<name>`: "gamma[0]" (scale_norm's
  // gain, which the golden format stores as a one-element gamma).
  std::string golden_field = {};
  // A whole number (a golden case giving 1.5 or 1e300 is malformed, not a layer input).
  bool whole = false;
  // Draws a value for a token of D features.
  std::function<double(int D, const PickInt& pick)> draw = {};
};

// The kinds of parameter the generators know.
// A real number on `steps` evenly spaced values of [min, max] (shrinks towards min).
ParamDef grid_param(std::string name, double min, double max, std::string meaning, int steps = 9);
// A multiplier k/8 in [1 − spread, 1 + spread] (shrinks towards 1); fallback 1.
ParamDef gain_param(std::string name, std::string meaning, double spread = 0.5);
// A positive real number log-uniform over [min, max], on `steps` points (shrinks towards min).
ParamDef log_uniform_param(std::string name, double min, double max, std::string meaning,
                           int steps = 1001);
// ε over the range real models use, log-uniform over 1e-12…1e-2 (1e-12: BERT-style LayerNorm,
// 1e-5 and 1e-6: PyTorch's and T5's defaults, 1e-2: quantized and low-precision setups). The
// generators draw every layer's ε from it.
ParamDef eps_param();
// A divisor G of D with groups of at least two features where D allows it (G = D normalizes
// single features, which is the constant β); fallback 1.
ParamDef groups_param(std::string name, std::string meaning);

}  // namespace normcheck
