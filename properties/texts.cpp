#include "properties/texts.hpp"

#include <algorithm>
#include <stdexcept>
#include <utility>

#include <nlohmann/json.hpp>

namespace normcheck {
namespace {

using nlohmann::json;

[[noreturn]] void fail(const std::string& what) {
  throw std::invalid_argument("property catalogue (properties/catalogue.json): " + what);
}

std::string property_name(Family family, const std::string& id) {
  return std::string(to_string(family)) + " property '" + id + "'";
}

PropertyInfo parse_entry(Family family, std::size_t index, const json& e) {
  const std::string where = std::string(to_string(family)) + " entry " + std::to_string(index);
  if (!e.is_object()) fail(where + ": not an object");
  const std::string named =
      e.contains("id") && e["id"].is_string() ? property_name(family, e["id"].get<std::string>()) : where;
  PropertyInfo info;
  const std::pair<const char*, std::string*> fields[] = {
      {"id", &info.id},           {"column", &info.column},     {"statement", &info.statement},
      {"related_input", &info.related_input}, {"compared", &info.compared}, {"claim", &info.claim}};
  for (const auto& [key, value] : fields) {
    if (!e.contains(key) || !e[key].is_string()) fail(named + ": field '" + key + "' missing or not a string");
    *value = e[key].get<std::string>();
  }
  for (const auto& [key, v] : e.items())
    if (std::none_of(std::begin(fields), std::end(fields), [&](const auto& f) { return key == f.first; }))
      fail(named + ": unknown field '" + key + "'");
  return info;
}

}  // namespace

PropertyTexts parse_property_texts(std::string_view json_text) {
  json j;
  try {
    j = json::parse(json_text);
  } catch (const json::exception& e) {
    fail(std::string("not JSON: ") + e.what());
  }
  if (!j.is_object()) fail("not an object of families");
  PropertyTexts texts;
  for (const auto& [name, entries] : j.items()) {
    const auto family = std::find_if(std::begin(kFamilies), std::end(kFamilies),
                                     [&](Family f) { return name == to_string(f); });
    if (family == std::end(kFamilies)) fail("unknown family '" + name + "'");
    if (!entries.is_array()) fail("family '" + name + "': not an array");
    std::vector<PropertyInfo>& list = texts[*family];
    for (std::size_t i = 0; i < entries.size(); ++i) {
      PropertyInfo info = parse_entry(*family, i, entries[i]);
      if (std::any_of(list.begin(), list.end(), [&](const PropertyInfo& q) { return q.id == info.id; }))
        fail(property_name(*family, info.id) + " is listed twice");
      list.push_back(std::move(info));
    }
  }
  return texts;
}

const PropertyTexts& property_texts() {
  static const PropertyTexts texts = parse_property_texts(catalogue_json());
  return texts;
}

const PropertyInfo& property_text(const PropertyTexts& texts, Family family, const std::string& id) {
  const auto list = texts.find(family);
  if (list != texts.end())
    for (const PropertyInfo& info : list->second)
      if (info.id == id) return info;
  // an id listed under another family only: most likely a text put under the wrong family
  std::string elsewhere;
  for (const auto& [other, infos] : texts)
    if (other != family && std::any_of(infos.begin(), infos.end(), [&](const PropertyInfo& i) { return i.id == id; }))
      elsewhere.append(elsewhere.empty() ? "" : ", ").append(to_string(other));
  fail(property_name(family, id) + " has no text" +
       (elsewhere.empty() ? "" : " under '" + std::string(to_string(family)) + "' (the catalogue lists '" + id +
                                     "' under " + elsewhere + " only: a text under the wrong family?)"));
}

std::vector<Property> declared(Family family, std::vector<Property> code, const PropertyTexts& texts) {
  for (Property& p : code) {
    if (std::count_if(code.begin(), code.end(), [&](const Property& q) { return q.id() == p.id(); }) > 1)
      fail(property_name(family, p.id()) + " is declared twice in code");
    p.family = family;
    p.info = property_text(texts, family, p.id());
  }
  const auto list = texts.find(family);
  const std::vector<PropertyInfo> none;
  const std::vector<PropertyInfo>& listed = list == texts.end() ? none : list->second;
  for (const PropertyInfo& info : listed)
    if (std::none_of(code.begin(), code.end(), [&](const Property& p) { return p.id() == info.id; }))
      fail(property_name(family, info.id) + " has a text but no code declares it");
  // same ids on both sides, each once: the first place they differ is an order difference
  for (std::size_t i = 0; i < code.size(); ++i)
    if (code[i].id() != listed[i].id)
      fail(property_name(family, code[i].id()) + " is declared at position " + std::to_string(i + 1) +
           " of its family in code but listed at another position in the catalogue (list them in the same order)");
  return code;
}

std::vector<Property> declared(Family family, std::vector<Property> code) {
  return declared(family, std::move(code), property_texts());
}

}  // namespace normcheck
