// The words of every property (column, statement, related input, what is compared, the claim):
// the catalogue's text, kept apart from the code in properties/catalogue.json, one list per
// family in matrix order. CMake compiles the file into the library as a string
// (properties/CMakeLists.txt), so nothing is read from the source tree at run time; it is
// parsed once. Each family declares its properties in code with their id, check, comparison,
// applicability and derivation only, and passes them through declared(), which gives each its
// text and fails unless code and catalogue name the same properties in the same order.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "properties/model.hpp"

namespace normcheck {

// family → the texts of its properties, in catalogue order
using PropertyTexts = std::map<Family, std::vector<PropertyInfo>>;

// The text of properties/catalogue.json as built into the library (a generated source).
std::string_view catalogue_json();
// Parses a catalogue: an object of families ("norm", "attention", "block", "gradient"), each an
// array of objects with the string fields id, column, statement, related_input, compared and
// claim. Throws std::invalid_argument naming the family and the entry (its id when it has one)
// for an unknown family, a missing or non-string field, an unknown field or an id listed twice.
PropertyTexts parse_property_texts(std::string_view json_text);
// The built-in catalogue (catalogue_json(), parsed on first use).
const PropertyTexts& property_texts();
// The text of property `id` of `family`; throws std::invalid_argument naming both when
// `texts` has none.
const PropertyInfo& property_text(const PropertyTexts& texts, Family family, const std::string& id);

// A family's properties as its code declares them (info.id set, the rest of info empty), each
// given `family` and its text. Throws std::invalid_argument naming the id when a property has no
// text, when the catalogue has a text no property of the family declares, or when the two
// list the family in different orders (the catalogue reads in matrix order).
std::vector<Property> declared(Family family, std::vector<Property> code, const PropertyTexts& texts);
std::vector<Property> declared(Family family, std::vector<Property> code);  // property_texts()

}  // namespace normcheck
