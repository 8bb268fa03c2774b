// A counterexample as a person reads it: small tensors in monospace text, not a JSON dump.
//
// Reads the `counterexample` object of a cell (properties/engine.cpp `evidence()`): per compared
// token pair the input row x, the related input row x′, both outputs y and y′, |y − y′| and the
// tolerance, feature by feature, with the features over tolerance and the worst one marked; the
// whole input batches when tokens that were not compared matter (batch statistics, a replaced
// token); the parameters. A counterexample of another shape (a future op) is printed as compact
// JSON rather than dropped.
#pragma once

#include <cstddef>
#include <string>

#include <nlohmann/json.hpp>

namespace normcheck {

std::string counterexample_text(const nlohmann::json& cx);

// 6 significant digits; "NaN", "inf", "-inf" as the engine stores them.
std::string format_number(double v);
std::string format_number(const nlohmann::json& v);
// The inverse for reading: a JSON number, or "inf"/"-inf" as the engine stores them; NaN for
// "NaN" and anything else.
double value_of(const nlohmann::json& v);

// JSON with objects indented and arrays of scalars kept on one line.
std::string compact_json(const nlohmann::json& j, int indent = 0);

// Columns a UTF-8 string takes in a monospace font (one per code point: ✓ ✗ ′ are narrow).
std::size_t display_width(const std::string& s);

}  // namespace normcheck
