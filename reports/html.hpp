// report.html: one self-contained file (inline CSS and SVG, no script, no external asset).
// The matrix is an SVG heatmap (symbol = observed outcome, colour = largest deviation seen, a red
// frame and the expected symbol where observed differs from expected); each failure section has
// small SVG heatmaps of the tensors that differ (x, x′, y, y′ and |y − y′|/tolerance per compared
// token) above the text of its report.md section.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "properties/engine.hpp"

namespace normcheck {

struct RunMeta;

std::string html_escape(const std::string& s);

// The Markdown this project writes (headings, paragraphs, lists, pipe tables, ``` fences,
// `code`, **bold**, trailing-double-space line breaks) as HTML; everything else is text,
// escaped.
std::string markdown_to_html(const std::string& md);

// A complete page around `body` with the shared stylesheet.
std::string html_page(const std::string& title, const std::string& body);

// The matrix heatmap: one <rect class="cell" data-cell="<id>"> per cell, in <svg id="matrix">.
std::string matrix_svg(const std::vector<CellResult>& results);
// Heatmaps of one counterexample (empty when it has no compared token pairs).
std::string counterexample_svg(const nlohmann::json& cx);

std::string report_html(const std::vector<CellResult>& results, const RunMeta& meta);

// Colour of a deviation on the matrix's scale (log10, 1e-9 … 1e3, viridis).
std::string deviation_colour(double deviation);

}  // namespace normcheck
