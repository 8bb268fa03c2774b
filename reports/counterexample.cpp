#include "reports/counterexample.hpp"

#include <algorithm>
#include <cmath>
#include <set>
#include <vector>

#include <fmt/format.h>

namespace normcheck {
namespace {

using nlohmann::json;

constexpr int kBlock = 8;         // features per block of a token table
constexpr int kAllFeatures = 32;  // up to this D every feature is shown
constexpr int kDetailedPairs = 3; // token pairs shown feature by feature
constexpr int kContextTokens = 32;
constexpr int kContextFeatures = 16;

std::string pad_left(const std::string& s, std::size_t w) {
  const std::size_t n = display_width(s);
  return n >= w ? s : std::string(w - n, ' ') + s;
}

std::string pad_right(const std::string& s, std::size_t w) {
  const std::size_t n = display_width(s);
  return n >= w ? s : s + std::string(w - n, ' ');
}

std::string short_number(const json& v) {
  if (!v.is_number()) return v.is_string() ? v.get<std::string>() : v.dump();
  return fmt::format("{:.4g}", v.get<double>());
}

// "1 (all 31)", "[0.5, 1, 2]", "[0.5, 1, 2, 3, 4, 5, … 31 values]"
std::string vector_summary(const json& a) {
  if (!a.is_array()) return compact_json(a);
  if (a.empty()) return "[]";
  if (a.size() > 1 && std::all_of(a.begin(), a.end(), [&](const json& v) { return v == a[0]; }))
    return format_number(a[0]) + " (all " + std::to_string(a.size()) + ")";
  std::string s = "[";
  const std::size_t shown = a.size() <= 8 ? a.size() : 6;
  for (std::size_t i = 0; i < shown; ++i) s += (i ? ", " : "") + format_number(a[i]);
  if (shown < a.size()) s += ", … " + std::to_string(a.size()) + " values";
  return s + "]";
}

// "[0.000000, 0.000000, 0.250000]" → "[0 ×2, 0.25]": the scenario notes print every value with
// std::to_string; runs of equal values are folded so a 65-feature note stays one short line.
std::string compress_lists(const std::string& note) {
  std::string out;
  std::size_t i = 0;
  while (i < note.size()) {
    const std::size_t open = note.find('[', i);
    const std::size_t close = open == std::string::npos ? open : note.find(']', open);
    if (close == std::string::npos) {
      out += note.substr(i);
      break;
    }
    out += note.substr(i, open - i);
    std::vector<std::string> items;
    bool numeric = true;
    std::size_t at = open + 1;
    while (at <= close) {
      std::size_t comma = note.find(',', at);
      if (comma == std::string::npos || comma > close) comma = close;
      std::string item = note.substr(at, comma - at);
      item.erase(0, item.find_first_not_of(' '));
      try {
        std::size_t used = 0;
        const double v = std::stod(item, &used);
        if (used != item.size()) numeric = false;
        items.push_back(format_number(v));
      } catch (const std::exception&) {
        numeric = false;
      }
      at = comma + 1;
    }
    if (!numeric || items.empty()) {
      out += note.substr(open, close - open + 1);
    } else {
      std::string list;
      for (std::size_t k = 0; k < items.size();) {
        std::size_t run = 1;
        while (k + run < items.size() && items[k + run] == items[k]) ++run;
        list += (list.empty() ? "" : ", ") + items[k] + (run > 1 ? " ×" + std::to_string(run) : "");
        k += run;
      }
      out += "[" + list + "]";
    }
    i = close + 1;
  }
  return out;
}

std::string magnitude(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return "inf";
  if (v == 0) return "0";
  return fmt::format("{:.3g}", v);
}

struct SideInfo {
  int calls = 0;
};

std::string position(const json& p, const SideInfo& side) {
  // p = [call, b, t]
  std::string s = fmt::format("b={}, t={}", p.at(1).get<int>(), p.at(2).get<int>());
  if (side.calls > 1) s = fmt::format("call {}: ", p.at(0).get<int>()) + s;
  return "(" + s + ")";
}

// Which features of a D-wide row to show: all of them for small D, else the first block, the
// block of `focus` and the last block. Returns block start indices.
std::vector<int> blocks_to_show(int D, int focus) {
  std::vector<int> starts;
  const int nblocks = (D + kBlock - 1) / kBlock;
  for (int k = 0; k < nblocks; ++k) {
    const int s = k * kBlock;
    if (D <= kAllFeatures || k == 0 || k == nblocks - 1 || (focus >= s && focus < s + kBlock))
      starts.push_back(s);
  }
  return starts;
}

struct TableRow {
  std::string label;
  std::vector<std::string> cells;  // one per feature
};

// Prints rows feature by feature in blocks of kBlock columns.
std::string feature_table(const std::vector<TableRow>& rows, int D, int focus) {
  std::size_t width = 10;
  for (const auto& r : rows)
    for (const auto& c : r.cells) width = std::max(width, display_width(c) + 2);
  std::size_t label_w = 0;
  for (const auto& r : rows) label_w = std::max(label_w, display_width(r.label));
  label_w += 4;
  std::string out;
  int next = 0;
  for (int start : blocks_to_show(D, focus)) {
    if (start > next)
      out += fmt::format("{}⋯ features {}–{} not shown (report.json has them)\n",
                         std::string(label_w, ' '), next, start - 1);
    const int end = std::min(D, start + kBlock);
    std::string header = pad_right("  d", label_w);
    for (int d = start; d < end; ++d) header += pad_left(std::to_string(d), width);
    out += header + "\n";
    for (const auto& r : rows) {
      std::string line = pad_right("  " + r.label, label_w);
      for (int d = start; d < end; ++d) line += pad_left(r.cells[d], width);
      while (!line.empty() && line.back() == ' ') line.pop_back();
      out += line + "\n";
    }
    next = end;
  }
  return out;
}

std::vector<std::string> numbers(const json& row) {
  std::vector<std::string> v;
  for (const auto& x : row) v.push_back(format_number(x));
  return v;
}

// One compared token pair, feature by feature.
std::string pair_detail(const json& p, int index, int total, const SideInfo& sa,
                        const SideInfo& sb, int worst_d) {
  const json& ya = p.at("y_a");
  const json& yb = p.at("y_b");
  const int D = int(ya.size());
  std::set<int> over;
  for (const auto& d : p.value("mismatch", json::array())) over.insert(d.get<int>());
  TableRow dev{"|y−y′|", {}}, mark{"", {}};
  int local_worst = -1;
  double local_max = -1;
  for (int d = 0; d < D; ++d) {
    const double a = value_of(ya[d]), b = value_of(yb[d]);
    const bool both_nan = std::isnan(a) && std::isnan(b);
    const double delta = both_nan ? 0.0 : (a == b ? 0.0 : std::abs(a - b));
    dev.cells.push_back(magnitude(delta));
    if (over.count(d) && (std::isnan(delta) || delta > local_max)) {
      local_max = std::isnan(delta) ? INFINITY : delta;
      local_worst = d;
    }
  }
  if (worst_d >= 0) local_worst = worst_d;
  for (int d = 0; d < D; ++d)
    mark.cells.push_back(d == local_worst ? "✗ worst" : over.count(d) ? "✗" : "");
  std::vector<TableRow> rows = {{"x   input", numbers(p.at("x_a"))},
                                {"x′  related", numbers(p.at("x_b"))},
                                {"y   input", numbers(ya)},
                                {"y′  related", numbers(yb)},
                                dev};
  // the tolerance row, unless every tolerance is 0 (bitwise and containment comparisons)
  if (p.contains("tolerance") && std::any_of(p["tolerance"].begin(), p["tolerance"].end(),
                                             [](const json& t) { return value_of(t) > 0; })) {
    TableRow tol{"tolerance", {}};
    for (const auto& t : p["tolerance"]) tol.cells.push_back(magnitude(value_of(t)));
    rows.push_back(tol);
  }
  rows.push_back({"over tol.", mark.cells});
  std::string out = fmt::format("token pair {} of {}: input {} ↔ related {} — {} of {} features over tolerance\n",
                                index + 1, total, position(p.at("a"), sa), position(p.at("b"), sb),
                                over.size(), D);
  return out + feature_table(rows, D, local_worst);
}

// The whole input batch of one side (first call), token per line; * marks compared tokens.
std::string whole_batch(const json& side, const std::string& title,
                        const std::set<std::pair<int, int>>& compared) {
  const json& call = side.at("calls").at(0);
  const json& x = call.at("x");
  if (!x.is_array()) return "";
  const json& lengths = call.at("lengths");
  const auto shape = call.at("shape");
  std::string out = fmt::format("{}: x [B={}, T={}, D={}], lengths {}   (* compared token, · padding)\n",
                                title, shape[0].get<int>(), shape[1].get<int>(), shape[2].get<int>(),
                                compact_json(lengths));
  int shown = 0;
  for (int b = 0; b < int(x.size()); ++b)
    for (int t = 0; t < int(x[b].size()); ++t) {
      if (shown++ == kContextTokens) {
        out += "    ⋯ more tokens in report.json\n";
        return out;
      }
      const bool valid = t < lengths.at(b).get<int>();
      const char* tag = !valid ? "·" : compared.count({b, t}) ? "*" : " ";
      std::string line = fmt::format("  b={} t={} {} ", b, t, tag);
      const json& tok = x[b][t];
      const int D = int(tok.size());
      for (int d = 0; d < std::min(D, kContextFeatures); ++d)
        line += pad_left(short_number(tok[d]), 10);
      if (D > kContextFeatures) line += fmt::format("  … +{} features", D - kContextFeatures);
      out += line + "\n";
    }
  return out;
}

std::string side_summary(const json& side, const std::string& name) {
  const json& calls = side.value("calls", json::array());
  std::string s = fmt::format("{} = {}", name, side.value("implementation", "?"));
  if (calls.size() == 1) {
    const auto& sh = calls[0].at("shape");
    const std::string mode = calls[0].value("mode", "none");
    s += fmt::format(", one call{} on x [B={}, T={}, D={}], lengths {}",
                     mode == "none" ? "" : " in " + mode + " mode", sh[0].get<int>(), sh[1].get<int>(),
                     sh[2].get<int>(), compact_json(calls[0].value("lengths", json::array())));
  } else {
    std::size_t n = calls.size() + side.value("calls_not_shown", std::size_t(0));
    s += fmt::format(", {} calls", n);
    if (!calls.empty() && calls[0].value("mode", "none") != "none")
      s += fmt::format(" in {} mode", calls[0].value("mode", "?"));
  }
  if (side.contains("training_batches_before"))
    s += fmt::format(", after {} training batches", side["training_batches_before"].dump());
  if (side.contains("threads")) s += fmt::format(", {} OpenMP threads", side["threads"].dump());
  return s;
}

}  // namespace

std::size_t display_width(const std::string& s) {
  std::size_t n = 0;
  for (unsigned char c : s)
    if ((c & 0xC0) != 0x80) ++n;
  return n;
}

double value_of(const nlohmann::json& v) {
  if (v.is_number()) return v.get<double>();
  if (v.is_string()) {
    const auto s = v.get<std::string>();
    if (s == "inf") return INFINITY;
    if (s == "-inf") return -INFINITY;
  }
  return NAN;
}

std::string format_number(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  if (v == 0) return "0";
  return fmt::format("{:.6g}", v);
}

std::string format_number(const json& v) {
  if (v.is_number_integer()) return std::to_string(v.get<long long>());
  if (v.is_number()) return format_number(v.get<double>());
  if (v.is_string()) return v.get<std::string>();
  return v.dump();
}

std::string compact_json(const json& j, int indent) {
  const std::string in(std::size_t(indent) * 2, ' '), in2(std::size_t(indent + 1) * 2, ' ');
  if (j.is_array()) {
    const bool flat = std::all_of(j.begin(), j.end(), [](const json& e) { return e.is_primitive(); });
    if (flat) {
      std::string s = "[";
      for (std::size_t i = 0; i < j.size(); ++i) s += (i ? ", " : "") + format_number(j[i]);
      return s + "]";
    }
    std::string s = "[\n";
    for (std::size_t i = 0; i < j.size(); ++i)
      s += in2 + compact_json(j[i], indent + 1) + (i + 1 < j.size() ? ",\n" : "\n");
    return s + in + "]";
  }
  if (j.is_object()) {
    if (j.empty()) return "{}";
    std::string s = "{\n";
    std::size_t i = 0;
    for (auto it = j.begin(); it != j.end(); ++it, ++i)
      s += in2 + json(it.key()).dump() + ": " + compact_json(it.value(), indent + 1) +
           (i + 1 < j.size() ? ",\n" : "\n");
    return s + in + "}";
  }
  if (j.is_number()) return format_number(j);
  return j.dump();
}

std::string counterexample_text(const json& cx) {
  if (cx.is_null()) return "(no counterexample)\n";
  const bool known = cx.is_object() && cx.contains("compared") && cx["compared"].is_array() &&
                     cx.contains("input") && cx.contains("related");
  if (!known) return compact_json(cx) + "\n";
  std::string out;
  const json& in = cx["input"];
  const json& rel = cx["related"];
  const SideInfo sa{int(in.value("calls", json::array()).size() + in.value("calls_not_shown", 0))};
  const SideInfo sb{int(rel.value("calls", json::array()).size() + rel.value("calls_not_shown", 0))};

  out += "related input: " + compress_lists(cx.value("related_input", std::string("?"))) + "\n";
  out += "sides:  " + side_summary(in, "a (input)") + "\n";
  out += "        " + side_summary(rel, "b (related input)") + "\n";
  if (cx.contains("params")) {
    const json& p = cx["params"];
    std::string line = "parameters: ε = " + format_number(p.value("eps", json(nullptr)));
    if (p.contains("gamma")) line += " · γ = " + vector_summary(p["gamma"]);
    if (p.contains("beta")) line += " · β = " + vector_summary(p["beta"]);
    out += line + "\n";
    // running statistics matter only to a layer called in train or eval mode
    bool moded = false;
    for (const json* side : {&in, &rel})
      for (const auto& c : side->value("calls", json::array()))
        if (c.value("mode", "none") != "none") moded = true;
    if (moded && p.contains("running_mean"))
      out += "running statistics before: mean " + vector_summary(p["running_mean"]) + " · var " +
             vector_summary(p["running_var"]) + " · momentum " + format_number(p.value("momentum", json(nullptr))) + "\n";
    // parameters of other layers are drawn too; name them only when not at their defaults
    std::string other;
    if (p.contains("groups") && p["groups"] != json(1)) other += "groups " + format_number(p["groups"]);
    if (p.contains("alpha") && p["alpha"] != json(0.5))
      other += std::string(other.empty() ? "" : " · ") + "α " + format_number(p["alpha"]);
    if (!other.empty()) out += "also: " + other + " (read only by the layers that take them)\n";
  }

  const json& compared = cx["compared"];
  const std::size_t total_pairs = cx.value("compared_tokens", compared.size());
  out += fmt::format("compared: {} token pair{}, {} value{} over tolerance\n", total_pairs,
                     total_pairs == 1 ? "" : "s", cx.value("mismatches", 0),
                     cx.value("mismatches", 0) == 1 ? "" : "s");

  // the worst value, in words
  int worst_pair = -1, worst_d = -1;
  if (cx.contains("worst")) {
    const json& w = cx["worst"];
    const std::string where = w.value("where", "output");
    if (where == "output" && w.contains("position_a")) {
      const json& pa = w["position_a"];
      const json& pb = w["position_b"];
      worst_d = pa.at(3).get<int>();
      for (std::size_t i = 0; i < compared.size(); ++i)
        if (compared[i]["a"] == json{pa[0], pa[1], pa[2]} && compared[i]["b"] == json{pb[0], pb[1], pb[2]})
          worst_pair = int(i);
      out += fmt::format("worst: y = {} at input {} d={} vs y′ = {} at related {} d={}: |y−y′| = {}",
                         format_number(w["a"]), position(json{pa[0], pa[1], pa[2]}, sa),
                         worst_d, format_number(w["b"]), position(json{pb[0], pb[1], pb[2]}, sb),
                         worst_d, magnitude(value_of(w.value("deviation", json(nullptr)))));
    } else {
      out += fmt::format("worst: {}[{}] = {} (input) vs {} (related): |a−b| = {}", where,
                         w.value("feature", -1), format_number(w["a"]), format_number(w["b"]),
                         format_number(w.value("deviation", json(nullptr))));
    }
    const double tol = value_of(w.value("tolerance", json(0)));
    const double wa = value_of(w["a"]), wb = value_of(w["b"]);
    if (std::isfinite(wa) != std::isfinite(wb))
      out += ": " + format_number(std::isfinite(wa) ? w["b"] : w["a"]) + " on one side only\n";
    else if (tol > 0) out += " > tolerance " + magnitude(tol) + "\n";
    else out += " (must be bitwise identical)\n";
  }

  // every pair on one line when there are several
  if (compared.size() > 1) {
    out += "\ncompared token pairs (input ↔ related): features over tolerance, largest |y−y′|\n";
    for (std::size_t i = 0; i < compared.size(); ++i) {
      const json& p = compared[i];
      double m = 0;
      for (std::size_t d = 0; d < p["y_a"].size(); ++d) {
        const double a = value_of(p["y_a"][d]), b = value_of(p["y_b"][d]);
        if (std::isnan(a) && std::isnan(b)) continue;
        if (a != b) m = std::isnan(std::abs(a - b)) || std::isnan(m) ? NAN : std::max(m, std::abs(a - b));
      }
      out += fmt::format("  {:>2}. {} ↔ {}   {:>3}/{}   {}{}\n", i + 1, position(p["a"], sa),
                         position(p["b"], sb), p.value("mismatch", json::array()).size(),
                         p["y_a"].size(), format_number(m), int(i) == worst_pair ? "   ◀ worst" : "");
    }
    if (cx.contains("compared_not_shown"))
      out += fmt::format("  ⋯ {} more pairs not stored\n", cx["compared_not_shown"].dump());
  }

  // the worst pair and the next failing ones, feature by feature
  std::vector<int> detail;
  if (worst_pair >= 0) detail.push_back(worst_pair);
  for (std::size_t i = 0; i < compared.size() && detail.size() < std::size_t(kDetailedPairs); ++i)
    if (int(i) != worst_pair && !compared[i].value("mismatch", json::array()).empty())
      detail.push_back(int(i));
  if (detail.empty() && !compared.empty()) detail.push_back(0);
  for (int i : detail)
    out += "\n" + pair_detail(compared[i], i, int(compared.size()), sa, sb, i == worst_pair ? worst_d : -1);
  const std::size_t failing = std::count_if(compared.begin(), compared.end(), [](const json& p) {
    return !p.value("mismatch", json::array()).empty();
  });
  if (failing > detail.size())
    out += fmt::format("({} more failing pairs: see the list above and report.json)\n",
                       failing - detail.size());

  // running statistics, when they were compared
  if (cx.contains("final_state")) {
    const json& fs = cx["final_state"];
    const json& ma = fs["input"]["running_mean"];
    const int D = int(ma.size());
    out += "\nrunning statistics after the calls:\n";
    out += feature_table({{"mean  input", numbers(ma)},
                          {"mean  related", numbers(fs["related"]["running_mean"])},
                          {"var   input", numbers(fs["input"]["running_var"])},
                          {"var   related", numbers(fs["related"]["running_var"])}},
                         D, cx.contains("worst") ? cx["worst"].value("feature", 0) : 0);
  }

  // the whole batches, when they hold tokens that were not compared: they take part through
  // batch statistics, padding, the replaced token of token_independence, the future of causality
  auto context = [&](const json& side, const char* name, const char* which) {
    const json& calls = side.value("calls", json::array());
    if (calls.size() != 1 || !calls[0].contains("lengths")) return;
    std::set<std::pair<int, int>> compared_tokens;
    for (const auto& p : compared) compared_tokens.insert({p[which][1].get<int>(), p[which][2].get<int>()});
    const auto& shape = calls[0]["shape"];
    const int tokens = shape[0].get<int>() * shape[1].get<int>();
    if (tokens > int(compared_tokens.size()) || total_pairs > compared.size())
      out += "\n" + whole_batch(side, name, compared_tokens);
  };
  context(in, "whole input (a)", "a");
  context(rel, "whole related input (b)", "b");
  return out;
}

}  // namespace normcheck
