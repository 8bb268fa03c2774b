// Golden conformance: expected outputs computed by PyTorch (golden/pytorch_golden.json).
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "norms/registry.hpp"

namespace normcheck {

// A file that cannot be read as a golden file at all (missing, not JSON, no "cases").
struct GoldenFileError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct GoldenOutcome {
  std::string id;
  std::string op;
  Impl impl = Impl::reference;
  bool known = true;   // an op this build knows
  bool passed = false;
  std::string error;   // why it failed, naming the field and position
  double max_error = 0;
};

// Loads a golden file; throws GoldenFileError.
nlohmann::json load_golden(const std::string& path);

// Checks one case with one implementation. The float tolerance is the case's own; the double
// reference must agree to 1e-9 (relative to the tolerance rule's scale).
GoldenOutcome check_golden_case(const nlohmann::json& c, Impl impl);

// The path of the project's copy of the golden file (set at build time).
std::string default_golden_path();

}  // namespace normcheck
