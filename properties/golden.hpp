// Golden conformance: expected outputs computed by PyTorch (golden/pytorch_golden.json).
#pragma once

#include <functional>
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

// Checks one case of a norm op (a layer row of the registry: "layer_norm", "batch_norm_train")
// with one implementation. The float tolerance is the case's own; the double reference must
// agree to 1e-4 of it (about 1e-9). Every op, norm or attention: catalog.hpp.
GoldenOutcome check_norm_golden_case(const nlohmann::json& c, Impl impl);
// The same case through a given row (a mutant or an external kernel imitating the case's op).
GoldenOutcome check_norm_golden_case(const nlohmann::json& c, Impl impl, const LayerRow& row);
bool norm_golden_op(const std::string& op);

// Helpers for golden checkers of other ops (attention): a numeric array field of the expected
// size (throws InvalidInput naming the field), and the comparison with the case's tolerance.
namespace golden {
std::vector<double> numbers(const nlohmann::json& c, const std::string& field, std::size_t size);
struct Tolerance {
  double atol = 1e-5, rtol = 1e-5;
};
Tolerance tolerance(const nlohmann::json& c, Impl impl);
// Compares got with want at every index `include(i)` accepts; the first failure goes to o.error.
void compare(GoldenOutcome& o, const std::string& field, const std::vector<double>& got,
             const std::vector<double>& want, const Tolerance& tol,
             const std::function<bool(std::size_t)>& include,
             const std::function<std::string(std::size_t)>& position);
}  // namespace golden

// The path of the project's copy of the golden file (set at build time).
std::string default_golden_path();

}  // namespace normcheck
