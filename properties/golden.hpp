// Golden conformance: expected outputs computed by PyTorch (golden/pytorch_golden.json, and the
// Transformer block's golden/pytorch_block_golden.json).
#pragma once

#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <normcheck/attention/block.hpp>
#include <normcheck/attention/registry.hpp>
#include <normcheck/norms/registry.hpp>

namespace normcheck {

// A file that cannot be read as a golden file at all (missing, not JSON, no "cases").
struct GoldenFileError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// One case checked with one implementation. Three ways not to pass: an unknown op, a malformed
// case (a field missing, of the wrong type, of the wrong size or out of range, or an input the
// layer rejects) — both input errors: the case could not be checked — and a failure: the
// numbers disagree.
struct GoldenOutcome {
  std::string id;
  std::string op;
  Impl impl = Impl::reference;
  bool known = true;       // an op this build knows
  bool malformed = false;  // the case could not be checked; `error` names the field
  bool passed = false;
  std::string error;       // one line: why it failed, naming the field and position
  double max_error = 0;
  bool input_error() const { return !known || malformed; }
};

// Loads a golden file; throws GoldenFileError (missing, a directory, not JSON, no "cases" array,
// or no case in it).
nlohmann::json load_golden(const std::string& path);

// Checks one case through a row: a norm row (its op is the case's op: "layer_norm",
// "batch_norm_train"), or an attention entry computing "sdpa" or "mha". The float tolerance is
// the case's own; the double reference must agree to 1e-4 of it (about 1e-9). Every op, with
// the row that computes it: catalog.hpp.
GoldenOutcome check_norm_golden_case(const nlohmann::json& c, Impl impl, const LayerRow& row);
GoldenOutcome check_sdpa_golden_case(const nlohmann::json& c, Impl impl, const AttentionEntry& e);
GoldenOutcome check_mha_golden_case(const nlohmann::json& c, Impl impl, const AttentionEntry& e);
// Op "block" (golden/pytorch_block_golden.json): the case's norm inside `block` (the built-in
// block, or a variant a mutant row runs), by teacher forcing.
GoldenOutcome check_block_golden_case(const nlohmann::json& c, Impl impl, const BlockEntry& block);

// Helpers for golden checkers of other ops (attention): a numeric array field of the expected
// size (throws InvalidInput naming the field), and the comparison with the case's tolerance.
// A checker reads every field before allocating or computing anything, so a hostile case
// (a declared shape of 1 GB, an array of the wrong length) is rejected cheaply.
namespace golden {
// size == std::size_t(-1): any size. The size is checked before any value is converted.
std::vector<double> numbers(const nlohmann::json& c, const std::string& field, std::size_t size);
// As numbers(), and every value must fit in float32 (inputs of a float32 kernel).
std::vector<float> float32s(const nlohmann::json& c, const std::string& field, std::size_t size);
// A whole number in [lo, hi] (checked before any conversion to an integer type).
long long whole_number(const nlohmann::json& v, const std::string& field, double lo, double hi);
// A norm case's forward input: `shape` [B, T, D] (at most kMaxValues values, checked first),
// `lengths` [B] in [0, T] and `x` (float32 values); throws InvalidInput naming the field.
Batch batch(const nlohmann::json& c);
// Its parameters for `layer` at width D: `gamma`, `beta` (absent or null: none), `params.eps`,
// `params.momentum` and the layer's named parameters (absent: their fallbacks); a parameter the
// layer does not take is an error.
Params params(const nlohmann::json& c, const LayerEntry& layer, int D);
// `valid_only`: compare valid positions only (absent: false).
bool valid_only(const nlohmann::json& c);
// The largest number of values a case may declare (a shape's product): 2^26, 256 MiB of float.
constexpr std::size_t kMaxValues = std::size_t(1) << 26;
struct Tolerance {
  double atol = 1e-5, rtol = 1e-5;
};
// The case's float32 bound; for the reference `reference_share` of it (1e-4: about 1e-9, for a
// reference that is double throughout).
Tolerance tolerance(const nlohmann::json& c, Impl impl, double reference_share = 1e-4);
// Compares got with want at every index `include(i)` accepts; the first failure goes to o.error.
void compare(GoldenOutcome& o, const std::string& field, const std::vector<double>& got,
             const std::vector<double>& want, const Tolerance& tol,
             const std::function<bool(std::size_t)>& include,
             const std::function<std::string(std::size_t)>& position);
// "[b,t,d]" of flat index i of a row-major tensor of these dims.
std::string position(std::size_t i, const std::vector<int>& dims);
// A checker's frame: reads `id` and `op`, runs body(o), and turns what the reading throws
// (InvalidInput naming the field, JSON type errors) into a malformed outcome; o.passed when
// nothing was recorded in o.error.
GoldenOutcome run_case(const nlohmann::json& c, Impl impl,
                       const std::function<void(GoldenOutcome& o)>& body);
// Runs the kernel of `op`; an input it rejects is an input error of the case, said as
// "<op> rejects the input: <why>".
void run_kernel(const std::string& op, const std::function<void()>& kernel);
}  // namespace golden

// The path of the project's copy of the golden file (set at build time; NORMCHECK_GOLDEN
// overrides it), and of the block golden file (NORMCHECK_BLOCK_GOLDEN).
std::string default_golden_path();
std::string default_block_golden_path();

}  // namespace normcheck
