#include "reports/html.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include <fmt/format.h>

#include "properties/counterexample.hpp"
#include "reports/report.hpp"

namespace normcheck {
namespace {

using nlohmann::json;

struct Rgb {
  double r, g, b;
};

std::string hex(const Rgb& c) {
  auto ch = [](double v) { return std::clamp(int(std::lround(v)), 0, 255); };
  return fmt::format("#{:02x}{:02x}{:02x}", ch(c.r), ch(c.g), ch(c.b));
}

Rgb mix(const Rgb& a, const Rgb& b, double t) {
  return {a.r + (b.r - a.r) * t, a.g + (b.g - a.g) * t, a.b + (b.b - a.b) * t};
}

// piecewise-linear colour map through evenly spaced stops, t in [0, 1]
Rgb ramp(const std::vector<Rgb>& stops, double t) {
  t = std::clamp(t, 0.0, 1.0) * double(stops.size() - 1);
  const std::size_t i = std::min(stops.size() - 2, std::size_t(t));
  return mix(stops[i], stops[i + 1], t - double(i));
}

// ✗ cells: dark, by the largest deviation (white ink everywhere); ✓ cells are pale, so the two
// differ in lightness as well as in symbol, without colour.
const std::vector<Rgb> kViolated = {{42, 4, 74}, {92, 18, 110}, {146, 32, 104}, {194, 56, 72}, {214, 88, 30}};
const Rgb kHolds = {230, 244, 234}, kHoldsInk = {19, 115, 51}, kNotApplicable = {241, 241, 241},
          kError = {208, 28, 139};
const std::vector<Rgb> kDiverging = {{33, 102, 172}, {146, 197, 222}, {247, 247, 247}, {244, 165, 130}, {178, 24, 43}};
const std::vector<Rgb> kRatio = {{254, 224, 139}, {253, 174, 97}, {244, 109, 67}, {215, 48, 39}, {120, 0, 30}};
constexpr double kLogMin = -9, kLogMax = 3;

double deviation_t(double dev) {
  if (std::isnan(dev) || std::isinf(dev)) return 1;  // NaN or inf on one side only: the top
  if (!(dev > 0)) return 0;
  return (std::log10(dev) - kLogMin) / (kLogMax - kLogMin);
}

// ✓ and ✗ drawn as paths, so the matrix never depends on the fonts of the viewer
std::string symbol_path(const std::string& observed, double cx, double cy, double s,
                        const std::string& colour, double width) {
  if (observed == "holds")
    return fmt::format(R"~(<path d="M{:.1f} {:.1f} L{:.1f} {:.1f} L{:.1f} {:.1f}" stroke="{}" stroke-width="{}" fill="none" stroke-linecap="round" stroke-linejoin="round"/>)~",
                       cx - s * 0.45, cy, cx - s * 0.1, cy + s * 0.35, cx + s * 0.5, cy - s * 0.4,
                       colour, width);
  if (observed == "violated")
    return fmt::format(R"~(<path d="M{:.1f} {:.1f} L{:.1f} {:.1f} M{:.1f} {:.1f} L{:.1f} {:.1f}" stroke="{}" stroke-width="{}" stroke-linecap="round"/>)~",
                       cx - s * 0.4, cy - s * 0.4, cx + s * 0.4, cy + s * 0.4, cx - s * 0.4,
                       cy + s * 0.4, cx + s * 0.4, cy - s * 0.4, colour, width);
  if (observed == "not_applicable")
    return fmt::format(R"~(<path d="M{:.1f} {:.1f} L{:.1f} {:.1f}" stroke="{}" stroke-width="{}"/>)~",
                       cx - s * 0.35, cy, cx + s * 0.35, cy, colour, width);
  return fmt::format(R"~(<text x="{:.1f}" y="{:.1f}" text-anchor="middle" font-size="{:.0f}" font-weight="bold" fill="{}">E</text>)~",
                     cx, cy + s * 0.35, s, colour);
}

const char* kStyle = R"~(
body{font:14px/1.45 "DejaVu Sans",Arial,sans-serif;color:#1b1b1b;margin:24px auto;max-width:1340px;padding:0 16px;background:#fff}
.scroll{overflow-x:auto;max-width:100%}
.verdict{font-size:18px;margin:6px 0 10px} .legend{margin:4px 0 8px}
h1{font-size:24px;margin:0 0 4px} h2{font-size:19px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:15px;margin:0 0 8px}
.meta{color:#555;font-size:13px} .summary{font-size:16px;margin:10px 0}
.ok{color:#1a7f37} .bad{color:#c62828}
pre{background:#f6f8fa;border:1px solid #e1e4e8;border-radius:4px;padding:8px 10px;overflow-x:auto;font:12px/1.35 "DejaVu Sans Mono",monospace}
code{font:12px "DejaVu Sans Mono",monospace;background:#f6f8fa;padding:1px 3px;border-radius:3px;overflow-wrap:anywhere}
pre code{background:none;padding:0}
pre.cmd{white-space:pre-wrap;word-break:break-all}
table{border-collapse:collapse;font-size:13px} td,th{border:1px solid #ddd;padding:2px 6px;text-align:center}
article.failure{border:1px solid #ddd;border-left:5px solid #8a8a8a;border-radius:4px;padding:10px 14px;margin:14px 0}
article.failure.surprise{border-left-color:#c62828;background:#fff8f8}
.heatmaps{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start;margin:8px 0}
.heatmaps figure{margin:0;max-width:100%;overflow-x:auto} .heatmaps figcaption{font-size:12px;color:#333}
details.failure{border:1px solid #ddd;border-left:5px solid #8a8a8a;border-radius:4px;padding:6px 14px;margin:6px 0}
details.failure>summary{color:#1b1b1b} details.failure[open]>summary{margin-bottom:8px}
svg text{font-family:"DejaVu Sans",Arial,sans-serif}
a{color:#0b57d0}
details summary{cursor:pointer;color:#0b57d0}
)~";

// inline Markdown: `code`, **bold**; `text` is raw (escaped here)
std::string inline_md(const std::string& text) {
  std::string out;
  bool in_code = false;
  std::size_t i = 0;
  while (i < text.size()) {
    const std::size_t tick = text.find('`', i);
    const std::string part = text.substr(i, tick == std::string::npos ? std::string::npos : tick - i);
    if (in_code) {
      out += "<code>" + html_escape(part) + "</code>";
    } else {
      std::string esc = html_escape(part);
      bool open = false;
      for (std::size_t at; (at = esc.find("**")) != std::string::npos; open = !open)
        esc.replace(at, 2, open ? "</strong>" : "<strong>");
      if (open) esc += "</strong>";
      out += esc;
    }
    if (tick == std::string::npos) break;
    in_code = !in_code;
    i = tick + 1;
  }
  return out;
}

std::vector<std::string> split_cells(const std::string& line) {
  std::vector<std::string> cells;
  std::string cur;
  for (std::size_t i = 1; i < line.size(); ++i) {
    if (line[i] == '|') {
      cells.push_back(cur);
      cur.clear();
    } else {
      cur += line[i];
    }
  }
  for (auto& c : cells) {
    c.erase(0, c.find_first_not_of(' '));
    c.erase(c.find_last_not_of(' ') + 1);
  }
  return cells;
}

struct Heatmap {
  std::string caption;
  std::vector<std::vector<double>> v;  // rows × D
  enum Kind { values, ratio } kind = values;
  double limit = 1;                          // values: symmetric colour limit
  std::vector<std::set<int>> marked;         // ratio: features over tolerance, per row
  int worst_row = -1, worst_col = -1;
  std::vector<std::string> row_labels;  // default: 1, 2, …
  std::vector<bool> faded;              // rows drawn pale (padding)
};

std::string heatmap_svg(const Heatmap& h, int cell) {
  const int rows = int(h.v.size());
  const int D = rows ? int(h.v[0].size()) : 0;
  std::size_t label_chars = 2;
  for (const auto& l : h.row_labels) label_chars = std::max(label_chars, l.size());
  const int left = int(label_chars) * 6 + 6, top = 4;
  const int rh = std::max(cell, 12);  // row height: a single token stays visible
  const int w = std::max(left + D * cell + 2, 76), ht = top + rows * rh + 16;
  std::string s = fmt::format(R"~(<svg class="heatmap" xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" viewBox="0 0 {} {}">)~",
                              w, ht, w, ht);
  for (int r = 0; r < rows; ++r) {
    s += fmt::format(R"~(<text x="{}" y="{}" font-size="10" text-anchor="end" fill="#555">{}</text>)~",
                     left - 4, top + r * rh + rh / 2 + 4,
                     r < int(h.row_labels.size()) ? html_escape(h.row_labels[r]) : std::to_string(r + 1));
    const bool pale = r < int(h.faded.size()) && h.faded[r];
    for (int d = 0; d < D; ++d) {
      const double v = h.v[r][d];
      std::string fill;
      std::string label;
      if (h.kind == Heatmap::values) {
        if (std::isnan(v)) fill = "#000000";
        else if (std::isinf(v)) fill = v > 0 ? "#67001f" : "#053061";
        else fill = hex(ramp(kDiverging, 0.5 + 0.5 * v / h.limit));
        label = format_number(v);
      } else {
        const bool over = r < int(h.marked.size()) && h.marked[r].count(d);
        if (std::isnan(v)) fill = "#000000";
        else if (!over) fill = v <= 0 ? "#f4f4f4" : hex(mix({244, 244, 244}, {166, 219, 160}, std::min(1.0, v)));
        else fill = hex(ramp(kRatio, std::isinf(v) ? 1.0 : std::log10(std::max(v, 1.0)) / 6));
        label = (std::isinf(v) ? std::string("differs (must be identical)") : format_number(v) + "× tolerance") +
                (over ? ", over tolerance" : "");
      }
      const int x = left + d * cell, y = top + r * rh;
      s += fmt::format(R"~(<rect x="{}" y="{}" width="{}" height="{}" fill="{}"{}><title>{} {}, d={}: {}{}</title></rect>)~",
                       x, y, cell, rh, fill, pale ? R"~( fill-opacity="0.35")~" : "",
                       h.row_labels.empty() ? "row" : "token",
                       r < int(h.row_labels.size()) ? h.row_labels[r] : std::to_string(r + 1), d,
                       html_escape(label), pale ? " (padding)" : "");
      if (h.kind == Heatmap::ratio && r < int(h.marked.size()) && h.marked[r].count(d)) {
        const bool worst = r == h.worst_row && d == h.worst_col;
        s += fmt::format(R"~(<rect x="{:.1f}" y="{:.1f}" width="{:.1f}" height="{:.1f}" fill="none" stroke="{}" stroke-width="{}"/>)~",
                         x + 0.75, y + 0.75, cell - 1.5, rh - 1.5, worst ? "#00a0ff" : "#111",
                         worst ? 2.5 : 1);
      }
    }
  }
  s += fmt::format(R"~(<text x="{}" y="{}" font-size="10" fill="#555">{}</text>)~", left,
                   top + rows * rh + 12, D == 1 ? std::string("d = 0") : fmt::format("d = 0 … {}", D - 1));
  return s + "</svg>";
}

}  // namespace

std::string html_escape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string deviation_colour(double deviation) { return hex(ramp(kViolated, deviation_t(deviation))); }

std::string markdown_to_html(const std::string& md) {
  std::vector<std::string> lines;
  for (std::size_t i = 0; i <= md.size();) {
    const std::size_t nl = md.find('\n', i);
    lines.push_back(md.substr(i, nl == std::string::npos ? std::string::npos : nl - i));
    if (nl == std::string::npos) break;
    i = nl + 1;
  }
  std::string out, para;
  auto flush_para = [&] {
    if (!para.empty()) out += "<p>" + para + "</p>\n";
    para.clear();
  };
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const std::string& line = lines[i];
    if (line.rfind("```", 0) == 0) {
      flush_para();
      const bool command = line == "```sh";  // commands wrap; tensors keep their columns
      std::string code;
      for (++i; i < lines.size() && lines[i].rfind("```", 0) != 0; ++i) code += lines[i] + "\n";
      out += std::string(command ? "<pre class=\"cmd\">" : "<pre>") + "<code>" + html_escape(code) + "</code></pre>\n";
      continue;
    }
    if (line.empty()) {
      flush_para();
      continue;
    }
    if (line[0] == '#') {
      flush_para();
      const std::size_t level = std::min<std::size_t>(line.find_first_not_of('#'), 6);
      out += fmt::format("<h{0}>{1}</h{0}>\n", level, inline_md(line.substr(std::min(line.size(), level + 1))));
      continue;
    }
    if (line[0] == '|') {
      flush_para();
      out += "<div class=\"scroll\"><table>\n";
      bool header = true;
      for (; i < lines.size() && !lines[i].empty() && lines[i][0] == '|'; ++i) {
        const auto cells = split_cells(lines[i]);
        if (!cells.empty() && cells[0].find("---") != std::string::npos) continue;
        out += "<tr>";
        for (const auto& c : cells) out += (header ? "<th>" : "<td>") + inline_md(c) + (header ? "</th>" : "</td>");
        out += "</tr>\n";
        header = false;
      }
      --i;
      out += "</table></div>\n";
      continue;
    }
    if (line.rfind("- ", 0) == 0) {
      flush_para();
      out += "<ul>\n";
      for (; i < lines.size() && lines[i].rfind("- ", 0) == 0; ++i) out += "<li>" + inline_md(lines[i].substr(2)) + "</li>\n";
      --i;
      out += "</ul>\n";
      continue;
    }
    const bool hard_break = line.size() >= 2 && line.compare(line.size() - 2, 2, "  ") == 0;
    para += (para.empty() ? "" : " ") + inline_md(hard_break ? line.substr(0, line.size() - 2) : line) +
            (hard_break ? "<br>" : "");
  }
  flush_para();
  return out;
}

std::string html_page(const std::string& title, const std::string& body) {
  return "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
         "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>" +
         html_escape(title) + "</title>\n<style>" + kStyle + "</style>\n</head>\n<body>\n" + body +
         "</body>\n</html>\n";
}

namespace {

// One family's heatmap: rows are row label × implementation, columns its properties.
std::string family_svg(Family family, const std::vector<const CellResult*>& results,
                       const std::set<std::string>& with_section) {
  std::vector<std::string> cols;
  for (const auto& p : columns())
    if (std::any_of(results.begin(), results.end(), [&](const CellResult* r) { return r->cell.prop.id == p.id; }))
      cols.push_back(p.id);
  for (const auto* r : results)
    if (std::find(cols.begin(), cols.end(), r->cell.prop.id) == cols.end()) cols.push_back(r->cell.prop.id);
  std::vector<std::pair<std::string, Impl>> rows;
  for (const auto* r : results) {
    const auto key = std::make_pair(row_label(*r), r->cell.impl);
    if (std::find(rows.begin(), rows.end(), key) == rows.end()) rows.push_back(key);
  }
  std::map<std::string, std::string> short_names;
  for (const auto* r : results)
    short_names[r->cell.prop.id] = r->cell.prop.column.empty() ? r->cell.prop.id : r->cell.prop.column;

  const int cell = 34, gap = 2;
  std::size_t label_chars = 10;
  for (const auto& [label, impl] : rows) label_chars = std::max(label_chars, display_width(label) + 12);
  const int left = int(label_chars * 7) + 10, top = 104;
  const int width = left + int(cols.size()) * cell + 40, height = top + int(rows.size()) * cell + 10;
  std::string s = fmt::format(R"~(<svg class="matrix" id="matrix-{}" xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" viewBox="0 0 {} {}" role="img" aria-label="{} matrix">)~",
                              to_string(family), width, height, width, height, family_title(family));
  for (std::size_t c = 0; c < cols.size(); ++c) {
    const double x = left + c * cell + cell / 2.0, y = top - 8;
    s += fmt::format(R"~(<text transform="translate({:.1f},{:.1f}) rotate(-55)" font-size="12" fill="#222"><title>{}</title>{}</text>)~",
                     x, y, html_escape(cols[c]), html_escape(short_names[cols[c]]));
  }
  for (std::size_t r = 0; r < rows.size(); ++r) {
    const double y = top + r * cell;
    const bool new_group = r == 0 || rows[r].first != rows[r - 1].first;
    s += fmt::format(R"~(<text x="{}" y="{:.1f}" font-size="12" text-anchor="end" fill="{}">{}{}</text>)~",
                     left - 8, y + cell / 2.0 + 4, new_group ? "#111" : "#666",
                     new_group ? html_escape(rows[r].first) + " · " : std::string(),
                     rows[r].second == Impl::reference ? "reference" : "optimized");
  }
  for (const CellResult* res : results) {
    const std::size_t r = std::find(rows.begin(), rows.end(), std::make_pair(row_label(*res), res->cell.impl)) - rows.begin();
    const std::size_t c = std::find(cols.begin(), cols.end(), res->cell.prop.id) - cols.begin();
    const double x = left + c * cell, y = top + r * cell;
    const std::string& observed = res->observed;
    const Rgb fill = observed == "holds" ? kHolds
                     : observed == "violated" ? ramp(kViolated, deviation_t(res->max_deviation))
                     : observed == "not_applicable" ? kNotApplicable
                                                    : kError;
    const std::string ink = observed == "holds" ? hex(kHoldsInk) : observed == "not_applicable" ? "#9a9a9a" : "#fff";
    const std::string title = fmt::format("{} / {} / {}: expected {}, observed {}{}, {} case{}, largest deviation {}",
                                          row_label(*res), to_string(res->cell.impl), res->cell.prop.id,
                                          to_string(res->cell.expected), observed,
                                          res->as_expected() ? "" : " (SURPRISE)", res->cases,
                                          res->cases == 1 ? "" : "s", deviation_text(res->max_deviation));
    const bool link = with_section.count(res->id()) > 0;
    if (link) s += fmt::format(R"~(<a href="#cell-{}">)~", gtest_name(res->id()));
    s += fmt::format(R"~(<g><title>{}</title><rect class="cell" data-cell="{}" data-expected="{}" data-observed="{}" x="{:.1f}" y="{:.1f}" width="{}" height="{}" rx="3" fill="{}"/>)~",
                     html_escape(title), html_escape(res->id()), to_string(res->cell.expected), observed,
                     x + gap / 2.0, y + gap / 2.0, cell - gap, cell - gap, hex(fill));
    s += symbol_path(observed, x + cell / 2.0, y + cell / 2.0, 14, ink, 2.6);
    if (!res->as_expected()) {
      s += fmt::format(R"~(<rect class="surprise" x="{:.1f}" y="{:.1f}" width="{}" height="{}" rx="3" fill="none" stroke="#e0001b" stroke-width="3.5"/>)~",
                       x + 2.5, y + 2.5, cell - 5, cell - 5);
      // the expected outcome, small, in the corner
      s += fmt::format(R"~(<rect x="{:.1f}" y="{:.1f}" width="12" height="12" fill="#fff" stroke="#e0001b"/>)~", x + cell - 14, y + 2);
      s += symbol_path(to_string(res->cell.expected), x + cell - 8, y + 8, 7, "#e0001b", 1.6);
    }
    s += "</g>";
    if (link) s += "</a>";
  }
  return s + "</svg>";
}

// The key, shown above the matrices: a swatch per outcome (✓ pale, ✗ dark, by deviation), the
// deviation scale of ✗ cells, the surprise frame.
std::string legend_svg() {
  const int w = 900, h = 62, bar = 240;
  std::string s = fmt::format(R"~(<svg class="legend" xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" viewBox="0 0 {} {}" role="img" aria-label="legend"><defs><linearGradient id="devscale">)~",
                              w, h, w, h);
  for (int i = 0; i <= 8; ++i)
    s += fmt::format(R"~(<stop offset="{:.3f}" stop-color="{}"/>)~", i / 8.0, hex(ramp(kViolated, i / 8.0)));
  s += "</linearGradient></defs>";
  int x = 4;
  auto swatch = [&](const std::string& observed, const Rgb& fill, const std::string& ink, const std::string& text) {
    s += fmt::format(R"~(<rect x="{}" y="6" width="26" height="26" rx="3" fill="{}" stroke="#ccc"/>)~", x, hex(fill));
    s += symbol_path(observed, x + 13, 19, 12, ink, 2.4);
    s += fmt::format(R"~(<text x="{}" y="24" font-size="12" fill="#222">{}</text>)~", x + 32, html_escape(text));
    x += 32 + int(display_width(text)) * 7 + 16;
  };
  swatch("holds", kHolds, hex(kHoldsInk), "holds");
  swatch("violated", ramp(kViolated, 0.5), "#fff", "violated (a counterexample)");
  swatch("not_applicable", kNotApplicable, "#9a9a9a", "not applicable");
  swatch("error", kError, "#fff", "error");
  s += fmt::format(R"~(<rect x="{}" y="6" width="26" height="26" rx="3" fill="{}"/><rect x="{}" y="8.5" width="21" height="21" rx="3" fill="none" stroke="#e0001b" stroke-width="3"/>)~",
                   x, hex(kHolds), x + 2.5);
  s += symbol_path("violated", x + 13, 19, 12, hex(kHoldsInk), 2.4);
  s += fmt::format(R"~(<text x="{}" y="24" font-size="12" fill="#222">surprise (corner: what was expected)</text>)~", x + 32);
  // the deviation scale of ✗ cells
  const int bx = 4, by = 40;
  s += fmt::format(R"~(<text x="{}" y="{}" font-size="12" fill="#222">✗ colour: largest |deviation| seen, 1e-9</text>)~", bx, by + 12);
  const int sx = bx + 270;
  s += fmt::format(R"~(<rect x="{}" y="{}" width="{}" height="14" fill="url(#devscale)"/>)~", sx, by + 1, bar);
  s += fmt::format(R"~(<text x="{}" y="{}" font-size="12" fill="#222">1e3, NaN or inf on one side</text>)~", sx + bar + 6, by + 12);
  return s + "</svg>";
}

}  // namespace

std::string matrix_svg(const std::vector<CellResult>& results) {
  std::set<std::string> with_section;
  for (const auto& s : failure_sections(results)) with_section.insert(s.cell->id());
  std::string out;
  for (Family f : kFamilies) {
    std::vector<const CellResult*> family;
    for (const auto& r : results)
      if (r.cell.row.family == f) family.push_back(&r);
    if (family.empty()) continue;
    out += std::string("<h3>") + family_title(f) + "</h3>\n<div class=\"scroll\">" +
           family_svg(f, family, with_section) + "</div>\n";
  }
  return out;
}

std::string counterexample_svg(const json& cx) {
  if (!cx.is_object() || !cx.contains("compared") || !cx["compared"].is_array() || cx["compared"].empty())
    return "";
  const json& compared = cx["compared"];
  const std::size_t rows = std::min<std::size_t>(compared.size(), 16);
  const int D = int(compared[0]["y_a"].size());
  if (D == 0) return "";
  auto matrix = [&](const char* key) {
    std::vector<std::vector<double>> m;
    for (std::size_t i = 0; i < rows; ++i) {
      std::vector<double> row;
      for (const auto& v : compared[i][key]) row.push_back(value_of(v));
      row.resize(D, NAN);
      m.push_back(row);
    }
    return m;
  };
  auto limit = [](const std::vector<std::vector<double>>& a, const std::vector<std::vector<double>>& b) {
    double l = 0;
    for (const auto* m : {&a, &b})
      for (const auto& row : *m)
        for (double v : row)
          if (std::isfinite(v)) l = std::max(l, std::abs(v));
    return l > 0 ? l : 1.0;
  };
  auto values = [&](const std::string& caption, const char* key) {
    Heatmap h;
    h.caption = caption;
    h.v = matrix(key);
    return h;
  };
  const json labels = cx.value("labels", json::object());
  const std::string in = labels.value("input", std::string()), y = labels.value("output", std::string("y"));
  const bool inputs = compared[0].contains("x_a") && compared[0].contains("x_b");
  Heatmap xa, xb;
  if (inputs) {
    xa = values(in + " (input)", "x_a");
    xb = values(in + "′ (related)", "x_b");
    xa.limit = xb.limit = limit(xa.v, xb.v);
  }
  Heatmap ya = values(y + " (input)", "y_a"), yb = values(y + "′ (related)", "y_b");
  ya.limit = yb.limit = limit(ya.v, yb.v);
  Heatmap ratio;
  ratio.caption = "|" + y + "−" + y + "′| / tolerance";
  ratio.kind = Heatmap::ratio;
  for (std::size_t i = 0; i < rows; ++i) {
    std::vector<double> row(D);
    for (int d = 0; d < D; ++d) {
      const double a = ya.v[i][d], b = yb.v[i][d];
      const double tol = compared[i].contains("tolerance") ? value_of(compared[i]["tolerance"][d]) : 0.0;
      double delta = (std::isnan(a) && std::isnan(b)) || a == b ? 0.0 : std::abs(a - b);
      if (std::isnan(delta)) delta = INFINITY;  // NaN on one side only
      row[d] = delta == 0 ? 0.0 : tol > 0 ? delta / tol : INFINITY;
    }
    ratio.v.push_back(row);
    std::set<int> over;
    for (const auto& d : compared[i].value("mismatch", json::array())) over.insert(d.get<int>());
    ratio.marked.push_back(over);
  }
  if (cx.contains("worst") && cx["worst"].contains("position_a")) {
    const int pair = cx["worst"].value("pair", -1);
    if (pair >= 0 && pair < int(rows)) {
      ratio.worst_row = pair;
      ratio.worst_col = cx["worst"]["position_a"].value("element", -1);
    }
  }
  const int cell = std::clamp(240 / D, 5, 28);
  std::string s = "<div class=\"heatmaps\">";
  std::vector<const Heatmap*> maps = {&ya, &yb, &ratio};
  if (inputs) maps.insert(maps.begin(), {&xa, &xb});
  for (const Heatmap* h : maps)
    s += "<figure>" + heatmap_svg(*h, cell) + "<figcaption>" + html_escape(h->caption) +
         (h->kind == Heatmap::values ? fmt::format(" (±{})", format_number(h->limit)) : std::string()) +
         "</figcaption></figure>";
  // the whole input batches, when they hold tokens that were not compared (batch statistics,
  // padding, a replaced token): rows are tokens "b,t", padding pale, colour limit from the
  // valid tokens so poison (1e30) does not wash the rest out
  auto whole = [&](const char* key, const char* which, const std::string& caption) {
    const json side = cx.value(key, json::object());
    const json calls = side.value("calls", json::array());
    if (calls.size() != 1) return;
    const json tensor = calls[0].value("tensors", json::object()).value(in, json::object());
    const json x = tensor.value("values", json());
    // a [B, T, D] input of token rows
    if (!x.is_array() || tensor.value("shape", json::array()).size() != 3) return;
    const json lengths = calls[0].value("attributes", json::object()).value("lengths", json::array());
    std::set<std::pair<int, int>> compared_tokens;
    for (const auto& p : compared) {
      const json idx = p[which].value("index", json::array());
      if (idx.size() == 2) compared_tokens.insert({idx[0].get<int>(), idx[1].get<int>()});
    }
    Heatmap h;
    h.caption = caption;
    double lim = 0;
    for (int b = 0; b < int(x.size()); ++b)
      for (int t = 0; t < int(x[b].size()); ++t) {
        const bool valid = b < int(lengths.size()) && t < lengths[b].get<int>();
        std::vector<double> row;
        for (const auto& v : x[b][t]) {
          row.push_back(value_of(v));
          if (valid && std::isfinite(row.back())) lim = std::max(lim, std::abs(row.back()));
        }
        row.resize(D, NAN);
        h.v.push_back(row);
        h.row_labels.push_back(fmt::format("{},{}{}", b, t, compared_tokens.count({b, t}) ? "*" : ""));
        h.faded.push_back(!valid);
      }
    if (int(h.v.size()) <= int(compared_tokens.size()) || h.v.size() > 64) return;
    h.limit = lim > 0 ? lim : 1.0;
    s += "<figure>" + heatmap_svg(h, cell) + "<figcaption>" + html_escape(h.caption) +
         fmt::format(" (±{}; b,t; * compared, pale padding)", format_number(h.limit)) + "</figcaption></figure>";
  };
  whole("input", "a", "whole input " + in);
  whole("related", "b", "whole related " + in + "′");
  s += "</div>";
  s += fmt::format("<p class=\"meta\">Rows: the compared token pairs{} (input ↔ related, in the order listed below). "
                   "Blue negative, red positive, black NaN; in the last map features over tolerance "
                   "are framed, the worst in blue.</p>",
                   rows < compared.size() ? fmt::format(" (first {} of {})", rows, compared.size()) : "");
  return s;
}

std::string report_html(const std::vector<CellResult>& results, const RunMeta& meta) {
  const Summary sum = summarize(results);
  auto plural = [](long long n, const char* one, const char* many) {
    return fmt::format("{} {}", n, n == 1 ? one : many);
  };
  const std::string verdict = sum.surprises == 0 ? std::string("0 surprises")
                                                 : plural(sum.surprises, "SURPRISE", "SURPRISES");
  std::string b;
  b += "<header><h1>normcheck matrix — " + verdict + "</h1>\n";
  b += fmt::format("<p class=\"verdict\"><strong>{}: {} as expected, <span class=\"{}\">{}</span></strong> ({}, {} not applicable){}</p>\n",
                   plural(sum.cells, "cell", "cells"), sum.as_expected, sum.surprises ? "bad" : "ok",
                   plural(sum.surprises, "surprise", "surprises"), plural(sum.errors, "error", "errors"),
                   sum.not_applicable,
                   sum.surprises == 0 ? ": every cell is what the spec expects." : ": see Surprises below.");
  b += "<p class=\"meta\">" +
       html_escape(fmt::format("seed {} · {} per cell · {} · {:.2f} s · normcheck {}", meta.seed,
                               plural(meta.cases, "case", "cases"),
                               plural(meta.threads, "OpenMP thread", "OpenMP threads"), meta.seconds,
                               meta.versions.value("normcheck", std::string("?")))) +
       (meta.shard_count > 1 ? html_escape(fmt::format(" · shard {}/{}", meta.shard_index, meta.shard_count)) : "") +
       (meta.merged_from.is_array() ? html_escape(" · merged from " + plural(long(meta.merged_from.size()), "shard", "shards")) : "") +
       (meta.started_at.empty() ? "" : " · " + html_escape(meta.started_at)) + "</p>\n";
  if (!meta.command.empty()) b += "<p class=\"meta\"><code>" + html_escape(meta.command) + "</code></p>\n";
  if (!meta.environment.empty())
    b += "<p class=\"meta\">" + html_escape("environment: " + environment_text(meta.environment)) + "</p>\n";
  b += "</header>\n<section id=\"matrix-section\"><h2>Matrix</h2>\n";
  b += "<div class=\"legend scroll\">" + legend_svg() + "</div>\n";
  b += "<p class=\"meta\">The symbol is the observed outcome; a ✗ cell or a surprise links to its "
       "counterexample. Hover a cell for its numbers.</p>\n";
  b += matrix_svg(results);
  b += "<details><summary>The matrix as tables (as in report.md)</summary>\n" + markdown_to_html(matrix_table(results)) + "</details>\n";
  b += "</section>\n";
  const auto sections = failure_sections(results);
  if (sum.surprises > 0) {
    b += fmt::format("<section id=\"surprises\"><h2>Surprises ({})</h2>\n", sum.surprises);
    for (const auto& s : sections) {
      if (!s.surprise) continue;
      b += fmt::format("<article class=\"failure surprise\" id=\"{}\">\n<h3>{}</h3>\n", s.anchor, html_escape(s.title));
      b += counterexample_svg(s.cell->counterexample);
      b += markdown_to_html(s.body) + "</article>\n";
    }
    b += "</section>\n";
  }
  const std::size_t expected = std::count_if(sections.begin(), sections.end(), [](const FailureSection& s) { return !s.surprise; });
  if (expected > 0) {
    b += fmt::format("<section id=\"violations\"><h2>Expected violations ({})</h2><p class=\"meta\">The ✗ cells, "
                     "each found as the spec expects. Open a line for its minimal counterexample.</p>\n",
                     expected);
    for (const auto& s : sections) {
      if (s.surprise) continue;
      b += fmt::format("<details class=\"failure\" id=\"{}\"><summary><strong>{}</strong>: {}</summary>\n", s.anchor,
                       html_escape(s.title), html_escape(violation_summary(*s.cell)));
      b += counterexample_svg(s.cell->counterexample);
      b += markdown_to_html(s.body) + "</details>\n";
    }
    b += "</section>\n";
  }
  return html_page("normcheck matrix — " + verdict, b);
}

}  // namespace normcheck
