// The property registry: one entry per property, read by ctest, the CLI and the reports.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "norms/registry.hpp"
#include "properties/scenario.hpp"

namespace normcheck {

enum class Comparison {
  values,       // the tolerance rule: |a − b| ≤ atol + rtol·|b|
  bitwise,      // identical bits
  containment,  // a finite output must stay finite (NaN must not spread)
};

enum class Expect { holds, violated, not_applicable };
const char* to_string(Expect e);

// What a report says about a property (norm, attention and block properties alike).
struct PropertyInfo {
  std::string id;
  std::string short_name;
  std::string statement;
  std::string related_input;
  std::string compared;
  std::string claim;
};

struct PropertyDef {
  std::string id;
  std::string short_name;     // matrix column header
  std::string statement;      // the claim, as a sentence
  std::string related_input;  // how the related input is built
  std::string compared;       // which outputs are compared
  std::string claim;          // what it evidences for Transformers
  Comparison comparison = Comparison::values;
  bool eps_sensitive = false;   // exact only as ε → 0: allow the ε term explicitly
  bool mode_comparing = false;  // compares train with eval: train rows of stateful layers only
  bool optimized_only = false;  // compares the optimized kernel with something else
  bool in_matrix = true;        // false: must hold for every layer, not a profile column
  // Draws one case with RapidCheck (`*gen` inside); only call from inside a property.
  std::function<Scenario(const LayerRow& row)> scenario;
  // only for rows whose batch_independence holds (batch_invariance_bitwise)
  bool needs_batch_independence = false;

  PropertyInfo info() const { return {id, short_name, statement, related_input, compared, claim}; }
};

const std::vector<PropertyDef>& properties();
const PropertyDef& property(const std::string& id);  // throws std::invalid_argument

// What the registries say a cell must show.
Expect expected(const LayerRow& row, Impl impl, const PropertyDef& prop);

}  // namespace normcheck
