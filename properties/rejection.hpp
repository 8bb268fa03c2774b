// The discard policy shared by every family. A case may be discarded (RapidCheck draws another)
// only when the reference rejects its input too: an implementation that throws InvalidInput on
// an input the other implementation accepts fails the case with that input, so a kernel that
// throws on valid input cannot make its cells "hold" from the few cases it accepts.
//
// A family runs each side of a case through run_or_reject(); a Rejection it returns becomes the
// case's outcome with rejected_outcome() (evidence in the comparison module's schema: the input
// calls of both sides, no compared rows, and `rejected`).
#pragma once

#include <functional>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "norms/tensor.hpp"
#include "properties/compare.hpp"

namespace normcheck {

struct Rejection {
  Impl rejected_by = Impl::optimized;  // the implementation that threw
  std::string message;                 // its InvalidInput message
};

Impl other(Impl impl);

// Runs side(impl). When it throws InvalidInput, runs side(other(impl)) on the same input: if that
// rejects it too, the first InvalidInput is rethrown (the engine discards the case); if it
// accepts, the rejection is returned. `side` must leave nothing behind from a run that threw
// (it is called again); InvalidInput from side(other) is never rethrown.
std::optional<Rejection> run_or_reject(Impl impl, const std::function<void(Impl)>& side);

// The outcome of a case a side of which was rejected. input/related: the sides in the evidence
// schema (side_json), with whatever tensors exist (the rejected side has no output).
CaseOutcome rejected_outcome(const Rejection& r, const std::string& related_input,
                             nlohmann::json params, nlohmann::json input, nlohmann::json related,
                             nlohmann::json labels);

}  // namespace normcheck
