// A counterexample and a cell as a person reads them: small tensors in monospace text, not a
// JSON dump. The one rendering of the evidence schema (properties/compare.hpp): report.md,
// report.html, `normcheck show`, `normcheck matrix --reproduce` and a failing ctest test all print
// this text.
//
// counterexample_text reads the `counterexample` object of a cell: per compared row pair the
// input rows x, x′, both outputs y, y′, |y − y′| and the tolerance, element by element, with the
// elements over tolerance and the worst one marked; the whole input batches when rows that were
// not compared matter (batch statistics, a replaced token); the parameters. A counterexample of
// another shape (a future op) is printed as compact JSON rather than dropped.
#pragma once

#include <cstddef>
#include <string>

#include <nlohmann/json.hpp>

#include <normcheck/properties/engine.hpp>

namespace normcheck {

std::string counterexample_text(const nlohmann::json& cx);

// The worst value of a counterexample in one line: "y = NaN at input (b=0, t=0) d=0 vs y′ = 0 at
// related (b=0, t=0): |y−y′| = NaN, NaN on one side only".
std::string worst_text(const nlohmann::json& cx);

// A deviation as the reports print it: a number, or "NaN (a value NaN on one side only)",
// "inf (a value infinite on one side only)".
std::string deviation_text(double deviation);

// The section of one cell (Markdown): the property and the claim it evidences, expected vs
// observed, the two commands that replay it, the minimal counterexample as small tensors.
std::string section_title(const CellResult& r);  // "✗ batch_norm [train] / optimized / padding_invariance"
std::string section_body(const CellResult& r);
std::string section_text(const CellResult& r);   // "### <title>\n\n<body>"
// One line for a cell whose ✗ is expected: "found after 3 cases: worst |y−y′| = 1.9 > tolerance 2e-05 (5 values)".
std::string violation_summary(const CellResult& r);
// "✓", "✗", "–", "E" for holds, violated, not_applicable, anything else (error).
const char* outcome_symbol(const std::string& observed);

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
