// identity: y = x. The control row: it keeps every token-wise and batch invariance trivially and
// none of the scale or shift invariances.
#include <algorithm>
#include <string>

#include "norms/registry.hpp"

namespace normcheck {
namespace {

// identity takes no parameter: a γ or β given to it is a mistake, not something to ignore
void check_identity_inputs(const Batch& in, const Params& p) {
  validate_batch(in);
  if (!p.gamma.empty() || !p.beta.empty())
    throw InvalidInput("identity takes no gamma or beta; got " + std::to_string(p.gamma.size()) +
                       " gamma and " + std::to_string(p.beta.size()) + " beta values");
}

void identity_forward(const Batch& in, const Params& p, Mode, State*, Output& out) {
  check_identity_inputs(in, p);
  out.assign(in.x.begin(), in.x.end());
}

// The "optimized" identity copies float32 rows, as a kernel would.
void identity_optimized(const Batch& in, const Params& p, Mode, State*, Output& out) {
  check_identity_inputs(in, p);
  std::vector<float> y(in.x.size());
  std::copy(in.x.begin(), in.x.end(), y.begin());
  out.assign(y.begin(), y.end());
}

}  // namespace

LayerEntry identity_entry() {
  // formula: std::string(1, 'x'), not "x": GCC 12 warns falsely (-Wrestrict, PR 105329)
  return {.name = "identity", .formula = std::string(1, 'x'), .statistics_over = "none (control row)",
          .params = {.affine = false, .bias = false},
          .rows = {{Mode::none, scale_and_shift_invariances(), "the control: nothing is normalized"}},
          .reference = identity_forward, .optimized = identity_optimized,
          .conditioning = no_statistics};
}

}  // namespace normcheck
