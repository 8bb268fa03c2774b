// The registries and the catalogue agree with each other: every declared ✗ names a property of
// its family, names are unique, and the cells are what the rows and properties make.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "properties/catalog.hpp"

namespace normcheck {
namespace {

TEST(Registry, EveryProfileNamesAPropertyOfItsFamily) {
  for (const auto& row : all_rows()) {
    for (const auto& p : row.violated)
      EXPECT_NO_THROW(property(row.info.family, p)) << row.info.id << ": " << p;
    for (const auto& p : row.optimized_violates)
      EXPECT_NO_THROW(property(row.info.family, p)) << row.info.id << " (optimized): " << p;
  }
}

TEST(Registry, NamesAreUnique) {
  std::set<std::string> rows, props;
  for (const auto& r : all_rows()) EXPECT_TRUE(rows.insert(r.info.id).second) << r.info.id;
  for (const auto& p : properties())
    EXPECT_TRUE(props.insert(std::string(to_string(p.family)) + "/" + p.id()).second) << p.id();
}

TEST(Registry, PropertiesSharingAnIdShareTheirColumn) {
  for (const auto& p : properties()) EXPECT_EQ(column(p.id()).column, p.info.column) << p.id();
}

TEST(Catalogue, EveryRowHasEveryPropertyOfItsFamilyOnBothImplementations) {
  std::size_t want = 0;
  const auto rows = all_rows();
  for (const auto& r : rows)
    for (const auto& p : properties()) want += p.family == r.info.family ? 2 : 0;
  EXPECT_EQ(all_cells().size(), want);
}

// What a project's test binary instantiates for its layers (layer_cells) is what the whole
// matrix holds for them: the norm rows and the Pre-LN and Post-LN block rows, with the same
// expectations.
TEST(Catalogue, LayerCellsAreTheLayersNormBlockAndGradientCellsOfTheMatrix) {
  std::map<std::string, std::string> want, got;
  for (const auto& c : all_cells())
    if (c.info.row.layer == "layer_norm" && c.info.row.family != Family::attention)
      want[c.id()] = to_string(c.info.expected);
  for (const auto& c : layer_cells({&layer("layer_norm")})) got[c.id()] = to_string(c.info.expected);
  EXPECT_EQ(got, want);
  std::set<Family> families;
  for (const auto& c : layer_cells({&layer("layer_norm")})) families.insert(c.info.row.family);
  EXPECT_EQ(families, (std::set<Family>{Family::norm, Family::block, Family::gradient}));
}

}  // namespace
}  // namespace normcheck
