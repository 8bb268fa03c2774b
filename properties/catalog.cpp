#include "properties/catalog.hpp"

#include <algorithm>
#include <stdexcept>

#include "properties/families.hpp"

namespace normcheck {

const std::vector<Property>& properties() {
  static const std::vector<Property> all = [] {
    std::vector<Property> p;
    for (auto family : {norm_properties, attention_properties, block_properties, gradient_properties})
      for (auto& prop : family()) p.push_back(std::move(prop));
    return p;
  }();
  return all;
}

const Property& property(Family family, const std::string& id) {
  for (const auto& p : properties())
    if (p.family == family && p.id() == id) return p;
  throw std::invalid_argument(std::string("unknown ") + to_string(family) + " property '" + id + "'");
}

std::vector<PropertyInfo> columns() {
  std::vector<PropertyInfo> out;
  for (const auto& p : properties())
    if (std::none_of(out.begin(), out.end(), [&](const PropertyInfo& q) { return q.id == p.id(); }))
      out.push_back(p.info);
  return out;
}

const PropertyInfo& column(const std::string& id) {
  static const std::vector<PropertyInfo> all = columns();
  for (const auto& p : all)
    if (p.id == id) return p;
  throw std::invalid_argument("unknown property '" + id + "'");
}

// ---------------------------------------------------------------------------------------------
// rows

std::vector<Row> norm_rows(const LayerEntry& layer) {
  std::vector<Row> rows;
  for (const LayerRow& r : rows_of(layer))
    rows.push_back({.info = {.family = Family::norm,
                             .id = r.id(),
                             .name = r.name(),
                             .layer = layer.name,
                             .mode = r.mode(),
                             .origin = layer.origin},
                    .violated = r.profile->violated,
                    .optimized_violates = r.profile->optimized_violates,
                    .why = r.profile->why,
                    .norm = r});
  return rows;
}

namespace {

// A block property on a norm row, from its Derivation (model.hpp): eval rows run the block by
// decoding, where no batch, padding or future token reaches the norm, so what a norm breaks
// there cannot show; teacher-forced rows break it exactly when the norm breaks one of `from`.
bool block_violates(const LayerRow& norm, Placement placement, const Property& p) {
  if (norm.mode() == Mode::eval) return false;
  if (p.derived.pre_ln_only && placement != Placement::pre) return false;
  return std::any_of(p.derived.from.begin(), p.derived.from.end(),
                     [&](const std::string& id) { return norm.profile->violated.count(id) > 0; });
}

}  // namespace

std::vector<Row> block_rows(const LayerEntry& layer, const BlockEntry& block) {
  std::vector<Row> rows;
  const bool builtin = block.origin == "builtin";
  for (const LayerRow& r : rows_of(layer))
    for (Placement placement : {Placement::pre, Placement::post}) {
      Row row{.info = {.family = Family::block,
                       .id = block.name + "_" + to_string(placement) + "_" + r.id(),
                       .name = r.name() + " [" + to_string(placement) + "-LN " +
                               (builtin ? std::string("block") : block.name) + "]",
                       .layer = layer.name,
                       .mode = r.mode(),
                       .placement = to_string(placement),
                       .origin = builtin ? layer.origin : block.origin},
              .norm = r,
              .placement = placement,
              .block = &block};
      for (const auto& p : properties())
        if (p.family == Family::block && block_violates(r, placement, p)) row.violated.insert(p.id());
      row.why = row.violated.empty() ? "" : "inherited from the norm: " + r.profile->why;
      rows.push_back(std::move(row));
    }
  return rows;
}

// A gradient property on a norm row's backward, from its Derivation: violated exactly when the
// forward violates one of `from` (gradient_properties.cpp says why no row needs an exception).
std::vector<Row> gradient_rows(const LayerEntry& layer) {
  std::vector<Row> rows;
  if (!layer.has_backward()) return rows;
  for (const LayerRow& r : rows_of(layer)) {
    Row row{.info = {.family = Family::gradient,
                     .id = "grad_" + r.id(),
                     .name = r.name() + " [gradient]",
                     .layer = layer.name,
                     .mode = r.mode(),
                     .origin = layer.origin},
            .norm = r};
    for (const auto& p : properties())
      if (p.family == Family::gradient &&
          std::any_of(p.derived.from.begin(), p.derived.from.end(),
                      [&](const std::string& id) { return r.profile->violated.count(id) > 0; }))
        row.violated.insert(p.id());
    row.why = row.violated.empty()
                  ? ""
                  : "dx flows back through the statistics the forward normalizes with (" +
                        r.profile->why + ")";
    rows.push_back(std::move(row));
  }
  return rows;
}

Row attention_row(const AttentionEntry& entry) {
  return {.info = {.family = Family::attention,
                   .id = entry.name,
                   .name = entry.name,
                   .layer = entry.name,
                   .origin = entry.origin},
          .violated = entry.violated,
          .optimized_violates = entry.optimized_violates,
          .why = entry.why,
          .attention = &entry};
}

std::vector<Row> all_rows() {
  std::vector<Row> rows;
  for (const auto& l : layers())
    for (auto& r : norm_rows(l)) rows.push_back(std::move(r));
  for (const auto& e : attention_entries()) rows.push_back(attention_row(e));
  for (const auto& l : layers())
    for (auto& r : block_rows(l)) rows.push_back(std::move(r));
  for (const auto& l : layers())
    for (auto& r : gradient_rows(l)) rows.push_back(std::move(r));
  return rows;
}

// ---------------------------------------------------------------------------------------------
// cells

std::vector<Cell> cells_of(const std::vector<Row>& rows) {
  std::vector<Cell> cells;
  for (const auto& row : rows)
    for (Impl impl : {Impl::reference, Impl::optimized})
      for (const auto& p : properties()) {
        if (p.family != row.info.family) continue;
        cells.push_back({.info = {.row = row.info,
                                  .impl = impl,
                                  .prop = p.info,
                                  .expected = expected(row, impl, p)},
                         .row = row,
                         .property = &p});
      }
  return cells;
}

std::vector<Cell> all_cells() { return cells_of(all_rows()); }

namespace {

// The cells of the rows each layer of the list gives: its norm rows, its block rows (with_blocks)
// and its gradient rows, family by family.
std::vector<Cell> cells_of_layers(const std::vector<const LayerEntry*>& layer_list,
                                  bool with_blocks) {
  std::vector<Row> rows;
  const auto append = [&rows](std::vector<Row> more) {
    for (auto& r : more) rows.push_back(std::move(r));
  };
  for (const LayerEntry* l : layer_list) append(norm_rows(*l));
  if (with_blocks)
    for (const LayerEntry* l : layer_list) append(block_rows(*l));
  for (const LayerEntry* l : layer_list) append(gradient_rows(*l));
  return cells_of(rows);
}

}  // namespace

std::vector<Cell> norm_cells(const std::vector<const LayerEntry*>& layer_list) {
  return cells_of_layers(layer_list, false);
}

std::vector<Cell> layer_cells(const std::vector<const LayerEntry*>& layer_list) {
  return cells_of_layers(layer_list, true);
}

// ---------------------------------------------------------------------------------------------
// golden ops

const std::map<std::string, std::vector<GoldenRow>>& golden_rows() {
  static const std::map<std::string, std::vector<GoldenRow>> rows = [] {
    std::map<std::string, std::vector<GoldenRow>> m;
    for (const auto& row : layer_rows())
      m[golden_op(row)].push_back({row.id(), [row](const nlohmann::json& c, Impl impl) {
                                     return check_norm_golden_case(c, impl, row);
                                   }});
    for (const auto& e : attention_entries()) {
      const AttentionEntry* entry = &e;
      m[e.golden_op()].push_back({e.name, [entry](const nlohmann::json& c, Impl impl) {
                                    return entry->op == AttentionOp::sdpa
                                               ? check_sdpa_golden_case(c, impl, *entry)
                                               : check_mha_golden_case(c, impl, *entry);
                                  }});
    }
    m["block"].push_back({block_entry().name, [](const nlohmann::json& c, Impl impl) {
                            return check_block_golden_case(c, impl, block_entry());
                          }});
    return m;
  }();
  return rows;
}

const std::map<std::string, GoldenFn>& golden_ops() {
  static const std::map<std::string, GoldenFn> ops = [] {
    std::map<std::string, GoldenFn> m;
    for (const auto& [op, rows] : golden_rows()) m.emplace(op, rows.front().check);
    return m;
  }();
  return ops;
}

bool golden_op_known(const std::string& op) { return golden_ops().count(op) > 0; }

GoldenOutcome check_golden_case(const nlohmann::json& c, Impl impl, const std::string& row) {
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
  GoldenFn check = it->second;
  if (!row.empty()) {
    const auto& rows = golden_rows().at(o.op);
    const auto r = std::find_if(rows.begin(), rows.end(), [&](const GoldenRow& g) { return g.row == row; });
    if (r == rows.end()) {
      o.known = false;
      o.error = "row '" + row + "' does not compute op '" + o.op + "'";
      return o;
    }
    check = r->check;
  }
  // A checker must turn any malformed input into an outcome; anything that still escapes is
  // reported as an input error of this case rather than ending the run.
  try {
    return check(c, impl);
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
