// The registries and the catalogue agree with each other: every declared ✗ names a property of
// its family, names are unique, and the cells are what the rows and properties make.
#include <gtest/gtest.h>

#include <set>

#include "properties/catalog.hpp"

namespace normcheck {
namespace {

TEST(Registry, EveryProfileNamesAPropertyOfItsFamily) {
  for (const auto& row : all_rows()) {
    for (const auto& p : row.violated)
      EXPECT_NO_THROW(property(row.info.family, p)) << row.info.id << ": " << p;
    for (const auto& p : row.optimized_violated)
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

}  // namespace
}  // namespace normcheck
