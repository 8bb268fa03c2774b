#include "properties/catalog.hpp"

#include <algorithm>
#include <stdexcept>

#include "attention/cells.hpp"

namespace normcheck {

std::vector<Cell> all_cells() {
  std::vector<Cell> cells = norm_cells();
  for (auto& c : attention_cells()) cells.push_back(std::move(c));
  for (auto& c : block_cells()) cells.push_back(std::move(c));
  return cells;
}

std::vector<PropertyInfo> all_properties() {
  std::vector<PropertyInfo> out;
  for (const auto& p : properties()) out.push_back(p.info());
  // attention properties that share an id with a norm property share its column
  auto add_new = [&](const std::vector<PropertyInfo>& more) {
    for (const auto& p : more)
      if (std::none_of(out.begin(), out.end(), [&](const PropertyInfo& q) { return q.id == p.id; }))
        out.push_back(p);
  };
  add_new(attention_properties());
  add_new(block_properties());
  return out;
}

const PropertyInfo& property_info(const std::string& id) {
  static const std::vector<PropertyInfo> all = all_properties();
  for (const auto& p : all)
    if (p.id == id) return p;
  throw std::invalid_argument("unknown property '" + id + "'");
}

const std::map<std::string, GoldenFn>& golden_ops() {
  static const std::map<std::string, GoldenFn> ops = [] {
    std::map<std::string, GoldenFn> m;
    for (const auto& row : layer_rows())
      m[golden_op(row)] = [row](const nlohmann::json& c, Impl impl) {
        return check_norm_golden_case(c, impl, row);
      };
    m["sdpa"] = check_sdpa_golden_case;
    m["mha"] = check_mha_golden_case;
    return m;
  }();
  return ops;
}

bool golden_op_known(const std::string& op) { return golden_ops().count(op) > 0; }

GoldenOutcome check_golden_case(const nlohmann::json& c, Impl impl) {
  GoldenOutcome o;
  o.impl = impl;
  o.id = c.is_object() && c.contains("id") && c["id"].is_string() ? c["id"].get<std::string>()
                                                                  : "";
  if (!c.is_object()) {
    o.malformed = true;
    o.error = std::string("a case must be a JSON object, got ") + c.type_name();
    return o;
  }
  if (!c.contains("op") || !c["op"].is_string()) {
    o.malformed = true;
    o.error = "field 'op': missing or not a string";
    return o;
  }
  o.op = c["op"].get<std::string>();
  auto it = golden_ops().find(o.op);
  if (it == golden_ops().end()) {
    o.known = false;
    o.error = "field 'op': unknown op '" + o.op + "'";
    return o;
  }
  // A checker must turn any malformed input into an outcome; anything that still escapes is
  // reported as an input error of this case rather than ending the run.
  try {
    return it->second(c, impl);
  } catch (const nlohmann::json::exception& e) {
    o.malformed = true;
    o.error = std::string("malformed case: ") + e.what();
  } catch (const std::exception& e) {
    o.malformed = true;
    o.error = std::string("cannot check the case: ") + e.what();
  }
  return o;
}

}  // namespace normcheck
