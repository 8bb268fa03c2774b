#include "properties/counterexample.hpp"

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

// Row positions as the labels name them: "(b=0, t=1)", "(call 2: b=0, t=0)".
struct Positions {
  std::vector<std::string> names;
  bool calls_a = false, calls_b = false;  // a side makes several calls
  std::string text(const json& p, bool several) const {
    std::string s;
    const json idx = p.value("index", json::array());
    for (std::size_t i = 0; i < idx.size(); ++i) {
      if (i) s += ", ";
      s += i < names.size() ? names[i] : fmt::format("i{}", i);
      s.append("=").append(idx[i].dump());
    }
    if (several) s = fmt::format("call {}: ", p.value("call", 0)) + s;
    return "(" + s + ")";
  }
};

// Which features of a row to show: all of them for short rows, else the first block, the block
// of `focus` and the last block. Returns block start indices.
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
  std::vector<std::string> cells;  // one per element
};

// Prints rows element by element in blocks of kBlock columns.
std::string element_table(const std::vector<TableRow>& rows, int D, int focus, const std::string& element) {
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
      out += fmt::format("{}⋯ {} {}–{} not shown (report.json has them)\n", std::string(label_w, ' '),
                         element, next, start - 1);
    const int end = std::min(D, start + kBlock);
    std::string header = pad_right("  " + element, label_w);
    for (int d = start; d < end; ++d) header += pad_left(std::to_string(d), width);
    out += header + "\n";
    for (const auto& r : rows) {
      std::string line = pad_right("  " + r.label, label_w);
      for (int d = start; d < end; ++d) line += pad_left(d < int(r.cells.size()) ? r.cells[d] : "", width);
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

// One compared row pair, element by element.
std::string pair_detail(const json& p, int index, int total, const Positions& pos,
                        const json& labels, int worst_element) {
  const json& ya = p.at("y_a");
  const json& yb = p.at("y_b");
  const int D = int(ya.size());
  const std::string in = labels.value("input", std::string()), out_name = labels.value("output", std::string("y"));
  std::set<int> over;
  for (const auto& d : p.value("mismatch", json::array())) over.insert(d.get<int>());
  TableRow dev{"|" + out_name + "−" + out_name + "′|", {}}, mark{"", {}};
  int local_worst = worst_element;
  double local_max = -1;
  for (int d = 0; d < D; ++d) {
    const double a = value_of(ya[d]), b = value_of(yb[d]);
    const double delta = (std::isnan(a) && std::isnan(b)) || a == b ? 0.0 : std::abs(a - b);
    dev.cells.push_back(magnitude(delta));
    if (worst_element < 0 && over.count(d) && (std::isnan(delta) || delta > local_max)) {
      local_max = std::isnan(delta) ? INFINITY : delta;
      local_worst = d;
    }
  }
  for (int d = 0; d < D; ++d)
    mark.cells.push_back(d == local_worst ? "✗ worst" : over.count(d) ? "✗" : "");
  std::vector<TableRow> rows;
  if (p.contains("x_a")) rows.push_back({in + "   input", numbers(p["x_a"])});
  if (p.contains("x_b")) rows.push_back({in + "′  related", numbers(p["x_b"])});
  rows.push_back({out_name + "   input", numbers(ya)});
  rows.push_back({out_name + "′  related", numbers(yb)});
  rows.push_back(dev);
  // the tolerance row, unless every tolerance is 0 (bitwise and containment comparisons)
  if (p.contains("tolerance") && std::any_of(p["tolerance"].begin(), p["tolerance"].end(),
                                             [](const json& t) { return value_of(t) > 0; })) {
    TableRow tol{"tolerance", {}};
    for (const auto& t : p["tolerance"]) tol.cells.push_back(magnitude(value_of(t)));
    rows.push_back(tol);
  }
  rows.push_back({"over tol.", mark.cells});
  std::string out = fmt::format("pair {} of {}: input {} ↔ related {} — {} of {} over tolerance\n",
                                index + 1, total, pos.text(p.at("a"), pos.calls_a),
                                pos.text(p.at("b"), pos.calls_b), over.size(), D);
  return out + element_table(rows, D, local_worst, labels.value("element", std::string("k")));
}

// "{beta: [0], eps: 1e-06}": an object on one line
std::string inline_json(const json& j) {
  if (!j.is_object()) return j.is_array() ? vector_summary(j) : format_number(j);
  std::string s;
  for (auto it = j.begin(); it != j.end(); ++it)
    s += fmt::format("{}{}: {}", s.empty() ? "" : ", ", it.key(), inline_json(it.value()));
  return "{" + s + "}";
}

// "[B=1, T=2, D=4]", in the order of the call's first tensor's dims
std::string shape_text(const json& call) {
  const json shape = call.value("shape", json::object());
  std::vector<std::string> order;
  const json tensors = call.value("tensors", json::object());
  if (!tensors.empty())
    for (const auto& d : tensors.begin()->value("dims", json::array()))
      if (d.is_string() && shape.contains(d.get<std::string>())) order.push_back(d.get<std::string>());
  for (auto it = shape.begin(); it != shape.end(); ++it)
    if (std::find(order.begin(), order.end(), it.key()) == order.end()) order.push_back(it.key());
  std::string s;
  for (const auto& k : order) s += fmt::format("{}{}={}", s.empty() ? "" : ", ", k, shape[k].dump());
  return "[" + s + "]";
}

std::string attributes_text(const json& attributes) {
  std::string s;
  for (auto it = attributes.begin(); it != attributes.end(); ++it) {
    if (it.key() == "mode") continue;
    s += fmt::format(", {} {}", it.key(), it.value().is_array() ? compact_json(it.value()) : format_number(it.value()));
  }
  return s;
}

std::string side_summary(const json& side, const std::string& name) {
  const json& calls = side.value("calls", json::array());
  std::string s = fmt::format("{} = {}", name, side.value("implementation", std::string("?")));
  const std::size_t n = calls.size() + side.value("calls_not_shown", std::size_t(0));
  if (n == 1) {
    const json& c = calls[0];
    const json attributes = c.value("attributes", json::object());
    const std::string mode = attributes.value("mode", std::string());
    std::string tensors;
    const json all = c.value("tensors", json::object());
    for (auto it = all.begin(); it != all.end(); ++it) tensors += (tensors.empty() ? "" : ", ") + it.key();
    s += fmt::format(", one call{} on {} {}{}", mode.empty() ? "" : " in " + mode + " mode", tensors,
                     shape_text(c), attributes_text(attributes));
  } else {
    s += fmt::format(", {} calls", n);
    if (!calls.empty()) {
      const std::string mode = calls[0].value("attributes", json::object()).value("mode", std::string());
      if (!mode.empty()) s += " in " + mode + " mode";
      s += " on " + shape_text(calls[0]) + " …";
    }
  }
  if (side.contains("training_batches_before"))
    s += fmt::format(", after {} training batches", side["training_batches_before"].dump());
  if (side.contains("threads")) s += fmt::format(", {} OpenMP threads", side["threads"].dump());
  return s;
}

// "ε = 1e-05 · γ = [0.5, 1, …] · momentum 0.1 · groups 2": every parameter on one line each
// kind; objects (a block's norm parameters) compactly.
std::string params_text(const json& p) {
  std::string out = "parameters:";
  std::string line;
  auto add = [&](const std::string& k, const json& v) {
    const std::string name = k == "eps" ? "ε" : k == "gamma" ? "γ" : k == "beta" ? "β" : k;
    std::string text;
    if (v.is_array()) text = vector_summary(v);
    else if (v.is_object()) text = compact_json(v);
    else text = format_number(v);
    line += fmt::format("{}{} = {}", line.empty() ? " " : " · ", name, text);
  };
  for (const char* k : {"eps", "gamma", "beta"})
    if (p.contains(k)) add(k, p[k]);
  for (auto it = p.begin(); it != p.end(); ++it)
    if (it.key() != "eps" && it.key() != "gamma" && it.key() != "beta" && !it.value().is_object())
      add(it.key(), it.value());
  out += line + "\n";
  for (auto it = p.begin(); it != p.end(); ++it)
    if (it.value().is_object()) out += fmt::format("  {}: {}\n", it.key(), inline_json(it.value()));
  return out;
}

// Every tensor of a side's single call, row per line (at most kContextTokens rows), when it holds
// rows that were not compared: they take part through batch statistics, padding, a replaced
// token, the future of a causal sequence. `*` marks a compared row of the input tensor, `·` a
// padded position (t ≥ lengths[b]).
std::string whole_tensors(const json& side, const std::string& title, const json& labels,
                          const std::set<std::vector<int>>& compared, std::size_t total_pairs) {
  const json& calls = side.value("calls", json::array());
  if (calls.size() != 1) return "";
  const json& call = calls[0];
  const json lengths = call.value("attributes", json::object()).value("lengths", json());
  const json tensors = call.value("tensors", json::object());
  auto rows_of = [](const json& t) {
    std::size_t rows = 1;
    const json& shape = t.value("shape", json::array());
    for (std::size_t i = 0; i + 1 < shape.size(); ++i) rows *= shape[i].get<std::size_t>();
    return rows;
  };
  // nothing hidden: every row of the input tensor was compared and shown
  const std::string input_name = labels.value("input", std::string());
  if (tensors.contains(input_name) && rows_of(tensors[input_name]) <= compared.size() &&
      total_pairs <= compared.size())
    return "";
  std::string out;
  for (auto it = tensors.begin(); it != tensors.end(); ++it) {
    // the input the rows come from (or, with none named, the first tensor)
    if (tensors.contains(input_name) ? it.key() != input_name : it != tensors.begin()) continue;
    const json& t = it.value();
    const json& values = t.value("values", json());
    const json& shape = t.value("shape", json::array());
    if (!values.is_array() || shape.size() < 2) continue;
    const std::size_t rows = rows_of(t);
    const bool input = it.key() == input_name;
    out += fmt::format("{}: {} {} ({})\n", title, it.key(), compact_json(shape), compact_json(t.value("dims", json::array())));
    // walk the leading indices in order
    std::vector<int> idx(shape.size() - 1, 0);
    for (std::size_t r = 0; r < rows; ++r) {
      if (r == std::size_t(kContextTokens)) {
        out += "    ⋯ more rows in report.json\n";
        break;
      }
      const json* row = &values;
      for (int i : idx) row = &(*row)[i];
      const bool padded = lengths.is_array() && idx.size() >= 2 && idx[0] < int(lengths.size()) &&
                          idx[1] >= lengths[idx[0]].get<int>();
      const char* tag = padded ? "·" : input && compared.count(idx) ? "*" : " ";
      std::string line = "  " + compact_json(idx) + " " + tag + " ";
      for (int d = 0; d < std::min(int(row->size()), kContextFeatures); ++d)
        line += pad_left(short_number((*row)[d]), 10);
      if (int(row->size()) > kContextFeatures) line += fmt::format("  … +{}", int(row->size()) - kContextFeatures);
      out += line + "\n";
      for (int k = int(idx.size()) - 1; k >= 0; --k) {  // next index, row-major
        if (++idx[k] < shape[k].get<int>()) break;
        idx[k] = 0;
      }
    }
  }
  return out;
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

namespace {

bool known_shape(const json& cx) {
  return cx.is_object() && cx.contains("compared") && cx["compared"].is_array() &&
         cx.contains("input") && cx.contains("related") && cx.contains("labels");
}

Positions positions_of(const json& cx) {
  Positions pos;
  for (const auto& n : cx["labels"].value("index", json::array())) pos.names.push_back(n.get<std::string>());
  const json& in = cx["input"];
  const json& rel = cx["related"];
  pos.calls_a = in.value("calls", json::array()).size() + in.value("calls_not_shown", 0) > 1;
  pos.calls_b = rel.value("calls", json::array()).size() + rel.value("calls_not_shown", 0) > 1;
  return pos;
}

}  // namespace

std::string worst_text(const json& cx) {
  if (!known_shape(cx) || !cx.contains("worst")) return "?";
  const json& w = cx["worst"];
  const json& labels = cx["labels"];
  const std::string y = labels.value("output", std::string("y")), element = labels.value("element", std::string("k"));
  std::string out;
  if (w.contains("position_a")) {
    const Positions pos = positions_of(cx);
    out = fmt::format("{} = {} at input {} {}={} vs {}′ = {} at related {}: |{}−{}′| = {}", y,
                      format_number(w["a"]), pos.text(w["position_a"], pos.calls_a), element,
                      w["position_a"].value("element", -1), y, format_number(w["b"]),
                      pos.text(w["position_b"], pos.calls_b), y, y,
                      magnitude(value_of(w.value("deviation", json(nullptr)))));
  } else {
    out = fmt::format("{} = {} (input) vs {} (related): |a−b| = {}", w.value("where", std::string("?")),
                      format_number(w["a"]), format_number(w["b"]),
                      format_number(w.value("deviation", json(nullptr))));
  }
  const double tol = value_of(w.value("tolerance", json(0)));
  const double wa = value_of(w["a"]), wb = value_of(w["b"]);
  if (std::isfinite(wa) != std::isfinite(wb))
    return out + ": " + format_number(std::isfinite(wa) ? w["b"] : w["a"]) + " on one side only";
  if (tol > 0) return out + " > tolerance " + magnitude(tol);
  return out + " (must be identical)";
}

std::string counterexample_text(const json& cx) {
  if (cx.is_null()) return "(no counterexample)\n";
  if (!known_shape(cx)) return compact_json(cx) + "\n";
  std::string out;
  const json& in = cx["input"];
  const json& rel = cx["related"];
  const json& labels = cx["labels"];
  const Positions pos = positions_of(cx);
  const std::string y = labels.value("output", std::string("y")), element = labels.value("element", std::string("k"));

  out += "related input: " + compress_lists(cx.value("related_input", std::string("?"))) + "\n";
  out += "sides:  " + side_summary(in, "a (input)") + "\n";
  if (!rel.value("calls", json::array()).empty())
    out += "        " + side_summary(rel, "b (related input)") + "\n";
  if (cx.contains("params") && cx["params"].is_object() && !cx["params"].empty())
    out += params_text(cx["params"]);
  if (cx.contains("rejected") && cx["rejected"].is_object()) {
    const json& rj = cx["rejected"];
    out += fmt::format("rejected: the {} implementation throws InvalidInput on this input, which the {} accepts: {}\n",
                       rj.value("implementation", std::string("?")), rj.value("accepted_by", std::string("?")),
                       rj.value("message", std::string("?")));
  }

  const json& compared = cx["compared"];
  const std::size_t total_pairs = cx.value("compared_count", compared.size());
  const int mismatches = cx.value("mismatches", 0);
  out += fmt::format("compared: {} row pair{}, {} value{} over tolerance\n", total_pairs,
                     total_pairs == 1 ? "" : "s", mismatches, mismatches == 1 ? "" : "s");

  // the worst value, in words
  int worst_pair = -1, worst_element = -1;
  if (cx.contains("worst")) {
    const json& w = cx["worst"];
    if (w.contains("position_a")) {
      worst_pair = w.value("pair", -1);
      worst_element = w["position_a"].value("element", -1);
    }
    out += "worst: " + worst_text(cx) + "\n";
  }

  // every pair on one line when there are several
  if (compared.size() > 1) {
    out += fmt::format("\ncompared row pairs (input ↔ related): {} over tolerance, largest |{}−{}′|\n",
                       element, y, y);
    for (std::size_t i = 0; i < compared.size(); ++i) {
      const json& p = compared[i];
      double m = 0;
      for (std::size_t d = 0; d < p["y_a"].size(); ++d) {
        const double a = value_of(p["y_a"][d]), b = value_of(p["y_b"][d]);
        if (std::isnan(a) && std::isnan(b)) continue;
        if (a != b) m = std::isnan(std::abs(a - b)) || std::isnan(m) ? NAN : std::max(m, std::abs(a - b));
      }
      out += fmt::format("  {:>2}. {} ↔ {}   {:>3}/{}   {}{}\n", i + 1, pos.text(p["a"], pos.calls_a),
                         pos.text(p["b"], pos.calls_b), p.value("mismatch", json::array()).size(),
                         p["y_a"].size(), format_number(m), int(i) == worst_pair ? "   ◀ worst" : "");
    }
    if (total_pairs > compared.size())
      out += fmt::format("  ⋯ {} more pairs not stored\n", total_pairs - compared.size());
  }

  // the worst pair and the next failing ones, element by element
  std::vector<int> detail;
  if (worst_pair >= 0 && worst_pair < int(compared.size())) detail.push_back(worst_pair);
  for (std::size_t i = 0; i < compared.size() && detail.size() < std::size_t(kDetailedPairs); ++i)
    if (int(i) != worst_pair && !compared[i].value("mismatch", json::array()).empty())
      detail.push_back(int(i));
  if (detail.empty() && !compared.empty()) detail.push_back(0);
  for (int i : detail)
    out += "\n" + pair_detail(compared[i], i, int(total_pairs), pos, labels,
                              i == worst_pair ? worst_element : -1);
  const std::size_t failing = std::count_if(compared.begin(), compared.end(), [](const json& p) {
    return !p.value("mismatch", json::array()).empty();
  });
  if (failing > detail.size())
    out += fmt::format("({} more failing pairs: see the list above and report.json)\n",
                       failing - detail.size());

  // state after the calls (running statistics), when the sides carry it
  if (in.contains("final_state") && rel.contains("final_state")) {
    const json& fa = in["final_state"];
    const json& fb = rel["final_state"];
    std::vector<TableRow> rows;
    for (auto it = fa.begin(); it != fa.end(); ++it) {
      rows.push_back({it.key() + "  input", numbers(it.value())});
      rows.push_back({it.key() + "  related", numbers(fb.value(it.key(), json::array()))});
    }
    if (!rows.empty())
      out += "\nstate after the calls:\n" + element_table(rows, int(rows[0].cells.size()), 0, "d");
  }

  // the whole inputs, when they hold rows that were not compared
  auto context = [&](const json& side, const char* name, const char* which) {
    std::set<std::vector<int>> rows;
    for (const auto& p : compared) rows.insert(p[which].value("index", std::vector<int>()));
    const std::string t = whole_tensors(side, name, labels, rows, total_pairs);
    if (!t.empty()) out += "\n" + t;
  };
  context(in, "whole input (a)", "a");
  context(rel, "whole related input (b)", "b");
  return out;
}

// ---------------------------------------------------------------------------------------------
// a cell's section

const char* outcome_symbol(const std::string& observed) {
  if (observed == "holds") return "✓";
  if (observed == "violated") return "✗";
  if (observed == "not_applicable") return "–";
  return "E";
}

std::string deviation_text(double deviation) {
  if (std::isnan(deviation)) return "NaN (a value NaN on one side only)";
  if (std::isinf(deviation)) return "inf (a value infinite on one side only)";
  return format_number(deviation);
}

namespace {

// "1 case", "2 cases" (not `plural`: engine.cpp has one, and the library is a unity build)
std::string counted(long long n, const char* one, const char* many) {
  return fmt::format("{} {}", n, n == 1 ? one : many);
}

std::string seconds_text(double s) {
  return s < 10 ? fmt::format("{:.2f} s", s) : fmt::format("{:.1f} s", s);
}

std::string outcome_sentence(const CellResult& r) {
  if (r.observed == "violated")
    return "counterexample found after " + counted(r.cases, "case", "cases") +
           " and shrunk to the minimal one below";
  if (r.observed == "holds")
    return "no counterexample in " + counted(r.cases, "case", "cases") + ", largest deviation seen " +
           deviation_text(r.max_deviation);
  if (r.observed == "error") return "the cell could not be run";
  return "not applicable";
}

}  // namespace

std::string section_title(const CellResult& r) {
  std::string title = fmt::format("{} {} / {} / {}", outcome_symbol(r.observed), r.cell.row.name,
                                  to_string(r.cell.impl), r.cell.prop.id);
  if (!r.as_expected())
    title += fmt::format(" — SURPRISE: expected {}, observed {}", to_string(r.cell.expected), r.observed);
  return title;
}

std::string section_body(const CellResult& r) {
  const bool surprise = !r.as_expected();
  const PropertyInfo& p = r.cell.prop;
  std::string b;
  b += fmt::format("**Property** `{}`: {}.  \n", p.id, p.statement.empty() ? "?" : p.statement);
  if (!p.claim.empty()) b += fmt::format("**Claim it evidences:** {}.  \n", p.claim);
  if (!p.related_input.empty()) b += fmt::format("**Related input:** {}.  \n", p.related_input);
  if (!p.compared.empty()) b += fmt::format("**Compared:** {}.\n", p.compared);
  b += fmt::format("\n**Expected** {}, **observed** {}{}: {} (seed {}, {}).\n",
                   to_string(r.cell.expected), r.observed,
                   surprise ? " — a surprise" : r.cell.expected == Expect::violated ? ", as the spec says" : "",
                   outcome_sentence(r), r.seed, seconds_text(r.seconds));
  if (surprise && r.observed != "violated" && !r.message.empty()) b += "\n" + r.message + "\n";
  if (!r.reproduce.empty()) {
    b += "\n**Replay** exactly this case:\n\n```sh\n" + replay_command(r) + "\n```\n\n";
    b += "or in the test binary:\n\n```sh\n" + rc_params_command(r) + "\n```\n";
  }
  if (!r.counterexample.is_null())
    b += "\n**Minimal counterexample** (a = the input, b = the related input; y = output):\n\n```text\n" +
         counterexample_text(r.counterexample) + "```\n";
  return b;
}

std::string section_text(const CellResult& r) { return "### " + section_title(r) + "\n\n" + section_body(r); }

std::string violation_summary(const CellResult& r) {
  std::string s = "found after " + counted(r.cases, "case", "cases");
  if (known_shape(r.counterexample) && r.counterexample.contains("worst"))
    s += "; worst " + worst_text(r.counterexample);
  return s;
}

}  // namespace normcheck
