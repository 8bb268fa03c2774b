// The properties' words (properties/catalogue.json, texts.hpp) and the code that declares the
// properties name the same properties: one text per property, one property per text, in the
// same order, and every mismatch is an error naming the property.
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

#include "properties/catalog.hpp"
#include "properties/texts.hpp"

namespace normcheck {
namespace {

std::string entry(const std::string& id) {
  return R"({"id": ")" + id +
         R"(", "column": "c", "statement": "s", "related_input": "r", "compared": "o", "claim": "w"})";
}

// A catalogue of norm properties with the given ids.
PropertyTexts norm_texts(const std::vector<std::string>& ids) {
  std::string list;
  for (const auto& id : ids) list += (list.empty() ? "" : ", ") + entry(id);
  return parse_property_texts(R"({"norm": [)" + list + "]}");
}

std::vector<Property> code(const std::vector<std::string>& ids) {
  std::vector<Property> props;
  for (const auto& id : ids) props.push_back({.info = {.id = id}});
  return props;
}

// The message of the std::invalid_argument `f` throws ("" when it throws nothing).
template <class F>
std::string error_of(F f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

TEST(PropertyTexts, TheBuiltInCatalogueHasOneTextPerPropertyInMatrixOrder) {
  for (Family family : kFamilies) {
    std::vector<std::string> declared_ids, listed_ids;
    for (const auto& p : properties())
      if (p.family == family) declared_ids.push_back(p.id());
    for (const auto& info : property_texts().at(family)) {
      listed_ids.push_back(info.id);
      for (const std::string* field : {&info.column, &info.statement, &info.related_input, &info.compared, &info.claim})
        EXPECT_FALSE(field->empty()) << to_string(family) << " " << info.id;
    }
    EXPECT_EQ(declared_ids, listed_ids) << to_string(family);
  }
}

TEST(PropertyTexts, EachPropertyCarriesItsOwnFamilysText) {
  // causality is a norm and an attention property, each with its own words
  EXPECT_EQ(property(Family::norm, "causality").info.statement,
            property_text(property_texts(), Family::norm, "causality").statement);
  EXPECT_EQ(property(Family::attention, "causality").info.statement,
            property_text(property_texts(), Family::attention, "causality").statement);
  EXPECT_NE(property(Family::norm, "causality").info.statement,
            property(Family::attention, "causality").info.statement);
}

TEST(PropertyTexts, AnUnknownIdIsAnErrorNamingIt) {
  const std::string e = error_of([] { property_text(property_texts(), Family::norm, "no_such_property"); });
  EXPECT_NE(e.find("norm property 'no_such_property'"), std::string::npos) << e;
  // an attention id is not a norm id
  EXPECT_NE(error_of([] { property_text(property_texts(), Family::norm, "row_stochastic"); }), "");
}

TEST(PropertyTexts, DeclaredGivesEachPropertyItsFamilyAndText) {
  const auto props = declared(Family::norm, code({"a", "b"}), norm_texts({"a", "b"}));
  ASSERT_EQ(props.size(), 2u);
  EXPECT_EQ(props[1].family, Family::norm);
  EXPECT_EQ(props[1].info.id, "b");
  EXPECT_EQ(props[1].info.statement, "s");
  EXPECT_EQ(props[1].info.claim, "w");
}

TEST(PropertyTexts, APropertyWithoutTextIsAnErrorNamingIt) {
  const std::string e = error_of([] { declared(Family::norm, code({"a", "b"}), norm_texts({"a"})); });
  EXPECT_NE(e.find("norm property 'b' has no text"), std::string::npos) << e;
  // another family's text does not count
  const std::string other = error_of([] { declared(Family::block, code({"a"}), norm_texts({"a"})); });
  EXPECT_NE(other.find("block property 'a' has no text"), std::string::npos) << other;
  // and the error says where that text is: under the wrong family, most likely
  EXPECT_NE(other.find("lists 'a' under norm only"), std::string::npos) << other;
  EXPECT_EQ(e.find("under norm only"), std::string::npos) << e;  // 'b' is nowhere
}

TEST(PropertyTexts, ATextWithoutPropertyIsAnErrorNamingIt) {
  const std::string e = error_of([] { declared(Family::norm, code({"a"}), norm_texts({"a", "b"})); });
  EXPECT_NE(e.find("norm property 'b' has a text but no code declares it"), std::string::npos) << e;
}

TEST(PropertyTexts, AnotherOrderOrATwiceDeclaredPropertyIsAnError) {
  const std::string order = error_of([] { declared(Family::norm, code({"b", "a"}), norm_texts({"a", "b"})); });
  EXPECT_NE(order.find("norm property 'b' is declared at position 1"), std::string::npos) << order;
  const std::string twice = error_of([] { declared(Family::norm, code({"a", "a"}), norm_texts({"a"})); });
  EXPECT_NE(twice.find("norm property 'a' is declared twice"), std::string::npos) << twice;
}

TEST(PropertyTexts, AMalformedCatalogueIsAnErrorNamingTheEntry) {
  const auto parse = [](const std::string& text) { return error_of([&] { parse_property_texts(text); }); };
  EXPECT_NE(parse("[").find("not JSON"), std::string::npos);
  EXPECT_NE(parse(R"({"norms": []})").find("unknown family 'norms'"), std::string::npos);
  EXPECT_NE(parse(R"({"norm": [)" + entry("a") + ", " + entry("a") + "]}").find("norm property 'a' is listed twice"),
            std::string::npos);
  const std::string missing = parse(R"({"norm": [{"id": "a", "column": "c"}]})");
  EXPECT_NE(missing.find("norm property 'a': field 'statement' missing"), std::string::npos) << missing;
  const std::string no_id = parse(R"({"norm": [{"column": "c"}]})");
  EXPECT_NE(no_id.find("norm entry 0: field 'id' missing"), std::string::npos) << no_id;
  const std::string extra = parse(R"({"block": [)" + entry("a").substr(0, entry("a").size() - 1) + R"(, "note": "x"}]})");
  EXPECT_NE(extra.find("block property 'a': unknown field 'note'"), std::string::npos) << extra;
}

}  // namespace
}  // namespace normcheck
