// report.md and report.json: the matrix, the failure sections a person reads, and the JSON that
// `normcheck merge` reads back.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <sstream>

#include <fmt/format.h>

#include "properties/counterexample.hpp"
#include "reports/report.hpp"
#include "reports/tests/test_util.hpp"

namespace normcheck {
namespace {

using nlohmann::json;

Cell find_cell(const std::string& id) {
  for (const auto& c : all_cells())
    if (c.id() == id) return c;
  throw std::invalid_argument("no cell " + id);
}

CellResult run(const std::string& id, uint64_t seed, int cases = 100) {
  RunOptions o;
  o.seed = seed;
  o.cases = cases;
  o.violation_search_factor = 1;  // the budget is exactly `cases` (tests of "not found")
  o.use_rc_params_reproduce = false;
  return run_cell(find_cell(id), o);
}

CellResult fake(const std::string& row, Impl impl, const std::string& prop, Expect expected,
                const std::string& observed) {
  CellResult r;
  r.cell.row.id = r.cell.row.name = r.cell.row.layer = row;
  r.cell.impl = impl;
  r.cell.prop = column(prop);
  r.cell.expected = expected;
  r.observed = observed;
  return r;
}

TEST(Markdown, MatrixShowsOneSymbolWhenImplementationsAgreeAndBothWhenNot) {
  const std::vector<CellResult> results = {
      fake("layer_norm", Impl::reference, "padding_invariance", Expect::holds, "holds"),
      fake("layer_norm", Impl::optimized, "padding_invariance", Expect::holds, "violated"),
      fake("layer_norm", Impl::reference, "causality", Expect::holds, "holds"),
      fake("layer_norm", Impl::optimized, "causality", Expect::holds, "holds"),
      fake("layer_norm", Impl::reference, "reference_agreement", Expect::not_applicable, "not_applicable"),
      fake("layer_norm", Impl::optimized, "reference_agreement", Expect::holds, "holds"),
  };
  const std::string table = matrix_table(results);
  EXPECT_NE(table.find("| layer [mode] | padding | causality | ref_agree |"), std::string::npos) << table;
  EXPECT_NE(table.find("| layer_norm | ref ✓ opt ✗! | ✓ | ✓ |"), std::string::npos) << table;
}

TEST(Markdown, ViolatedCellSectionCarriesClaimReplayAndTensors) {
  const CellResult r = run("batch_norm_train/optimized/batch_independence", 7);
  ASSERT_EQ(r.observed, "violated");
  RunMeta meta;
  meta.seed = 7;
  meta.cases = 100;
  // report.md folds an expected ✗ into one line: the cell and its worst value
  const std::string md = report_markdown({r}, meta);
  const std::string line = "- `batch_norm_train/optimized/batch_independence`: found after " +
                           std::to_string(r.cases) + " case";
  ASSERT_NE(md.find(line), std::string::npos) << md;
  EXPECT_NE(md.find(worst_text(r.counterexample)), std::string::npos) << md;
  EXPECT_EQ(md.find("**Minimal counterexample**"), std::string::npos) << "folded, not in full:\n" << md;
  // its section (`normcheck show`, report.html, --reproduce) has everything
  const std::string sec = section_text(r);
  ASSERT_EQ(sec.rfind("### ✗ batch_norm [train] / optimized / batch_independence\n", 0), 0u) << sec;
  EXPECT_EQ(sec.find("SURPRISE"), std::string::npos) << "an expected ✗ is not a surprise";
  EXPECT_NE(sec.find(r.cell.prop.statement), std::string::npos);
  EXPECT_NE(sec.find(r.cell.prop.claim), std::string::npos);
  EXPECT_NE(sec.find(replay_command(r)), std::string::npos);
  EXPECT_NE(sec.find(rc_params_command(r)), std::string::npos);
  EXPECT_EQ(sec.find("\"compared\""), std::string::npos) << "tensors, not a JSON dump:\n" << sec;
  for (const char* row : {"x   input", "x′  related", "y   input", "y′  related", "|y−y′|", "tolerance", "✗ worst"})
    EXPECT_NE(sec.find(row), std::string::npos) << row << "\n" << sec;
  // the worst values, as numbers a person reads
  const json& w = r.counterexample["worst"];
  EXPECT_NE(sec.find(format_number(w["a"])), std::string::npos);
  EXPECT_NE(sec.find(format_number(w["b"])), std::string::npos);
  // batch statistics: the other sequences of the related batch are shown
  EXPECT_NE(sec.find("whole related input (b)"), std::string::npos) << sec;
}

TEST(Markdown, SurprisesComeFirstAndSayWhy) {
  CellResult not_found = run("batch_norm_eval/reference/token_scale_invariance", 1, 1);
  ASSERT_EQ(not_found.observed, "holds") << "one case should be too few to find it";
  const CellResult found = run("batch_norm_train/reference/padding_invariance", 3);
  const std::string md = report_markdown({found, not_found}, RunMeta{});
  const auto surprise = md.find("### ✓ batch_norm [eval] / reference / token_scale_invariance — SURPRISE: expected violated, observed holds");
  const auto ordinary = md.find("- `batch_norm_train/reference/padding_invariance`: found after");
  ASSERT_NE(surprise, std::string::npos) << md;
  ASSERT_NE(ordinary, std::string::npos) << md;
  EXPECT_LT(surprise, ordinary);
  EXPECT_NE(md.find("## Surprises (1)"), std::string::npos);
  EXPECT_NE(md.find("expected violation not found in 1 case "), std::string::npos) << md;
  EXPECT_EQ(md.rfind("# normcheck matrix — 1 SURPRISE\n", 0), 0u) << md.substr(0, 400);
  EXPECT_NE(md.find("**2 cells: 1 as expected, 1 surprise**"), std::string::npos) << md.substr(0, 400);
}

// Every cell of the catalogue, as the spec expects (a green run): the report leads with the
// verdict, its first screen is the verdict and the matrix, and it stays short.
std::vector<CellResult> green_run() {
  std::vector<CellResult> results;
  for (const auto& c : all_cells()) {
    CellResult r{.cell = c.info, .observed = to_string(c.info.expected), .cases = 100};
    if (c.info.expected == Expect::violated) {
      r.cases = 3;
      r.reproduce = "reproduce=AAAA";
    }
    results.push_back(r);
  }
  return results;
}

TEST(Markdown, AGreenRunLeadsWithTheVerdictAndStaysShort) {
  const std::vector<CellResult> results = green_run();
  const std::string md = report_markdown(results, RunMeta{});
  EXPECT_EQ(md.rfind("# normcheck matrix — 0 surprises\n", 0), 0u) << md.substr(0, 300);
  const std::string first_screen = md.substr(0, md.find("## Matrix"));
  EXPECT_NE(first_screen.find(fmt::format("**{} cells: {} as expected, 0 surprises**", results.size(), results.size())),
            std::string::npos) << first_screen;
  EXPECT_LT(std::count(first_screen.begin(), first_screen.end(), '\n'), 10) << first_screen;
  EXPECT_EQ(md.find("## Surprises"), std::string::npos);
  for (const char* family : {"### Norm layers\n", "### Attention\n", "### Norm layers inside a Transformer block\n"})
    EXPECT_NE(md.find(family), std::string::npos) << family;
  std::size_t violated = 0;
  for (const auto& r : results) violated += r.observed == "violated";
  EXPECT_NE(md.find(fmt::format("## Expected violations ({})", violated)), std::string::npos);
  EXPECT_LT(std::count(md.begin(), md.end(), '\n'), 2000);
}

// The terminal matrix: one table per family, each line at most 160 columns, with the legend.
TEST(Terminal, OneTablePerFamilyWithinA160ColumnTerminal) {
  std::vector<CellResult> results = green_run();
  results[0].observed = results[0].observed == "holds" ? "violated" : "holds";  // a surprise: "✗!"
  const std::string text = matrix_text(results, false);
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) EXPECT_LE(display_width(line), 160u) << line;
  for (const char* title : {"Norm layers (", "Attention (", "Norm layers inside a Transformer block ("})
    EXPECT_EQ(testing::count(text, std::string("\n") + title) + (text.rfind(title, 0) == 0), 1u) << title << "\n" << text;
  EXPECT_NE(text.find("✓ holds · ✗ violated"), std::string::npos);
  EXPECT_NE(text.find("!"), std::string::npos);
  // coloured: the same table with escapes around the symbols
  const std::string colour = matrix_text(results, true);
  EXPECT_NE(colour.find("\033["), std::string::npos);
  EXPECT_EQ(text.find("\033["), std::string::npos);
}

// A deviation made of NaN or inf is never summarised as a smaller number: not in the cell's
// max_deviation, not in report.json, not in the text.
TEST(Deviation, NanAndInfOnOneSideAreNeverSummarisedAsANumber) {
  Diff d(Labels{{"b", "t"}, "d", "x", "y"});
  const float ya[] = {1.0f, NAN}, yb[] = {1.0f, 0.0f};
  d.rows({0, {0, 0}}, {0, {0, 0}}, RowView(ya, 2), RowView(yb, 2), [](int) { return 1e-5; });
  EXPECT_TRUE(std::isnan(d.max_dev())) << d.max_dev();
  EXPECT_TRUE(std::isnan(worse_deviation(0.5, NAN)));
  EXPECT_TRUE(std::isnan(worse_deviation(INFINITY, NAN)));
  EXPECT_EQ(worse_deviation(2.0, INFINITY), INFINITY);
  EXPECT_EQ(worse_deviation(2.0, 1.0), 2.0);

  CellResult r = fake("layer_norm", Impl::optimized, "reference_agreement", Expect::holds, "violated");
  r.max_deviation = NAN;
  const json j = to_json(r);
  EXPECT_EQ(j["max_deviation"], "NaN");
  r.cell.row.name = "layer_norm";
  EXPECT_TRUE(std::isnan(cell_from_json(report_json({r}, RunMeta{})["cells"][0]).max_deviation));
  EXPECT_EQ(deviation_text(NAN), "NaN (a value NaN on one side only)");
  r.observed = "holds";
  r.cell.expected = Expect::violated;
  EXPECT_NE(section_body(r).find("largest deviation seen NaN"), std::string::npos) << section_body(r);
}

TEST(Markdown, CounterexampleOfAnUnknownShapeIsCompactJsonNotDropped) {
  const json cx = {{"queries", {{1.5, 2}, {3, "NaN"}}}, {"note", "attention"}};
  const std::string text = counterexample_text(cx);
  EXPECT_NE(text.find("\"queries\": [\n"), std::string::npos) << text;
  EXPECT_NE(text.find("[1.5, 2]"), std::string::npos) << text;
  EXPECT_NE(text.find("[3, NaN]"), std::string::npos) << text;
}

TEST(Markdown, LongNumberListsInNotesAreFolded) {
  json cx = json::parse(R"({"related_input": "features shifted by [0.000000, 0.000000, 0.000000, 0.250000, 0.000000] at every position",
    "input": {"implementation": "reference", "calls": []}, "related": {"implementation": "reference", "calls": []},
    "labels": {"index": ["b", "t"], "element": "d", "input": "x", "output": "y"},
    "compared": [], "compared_count": 0, "mismatches": 0})");
  EXPECT_NE(counterexample_text(cx).find("features shifted by [0 ×3, 0.25, 0] at every position"), std::string::npos)
      << counterexample_text(cx);
}

TEST(ReportJson, ReadsBackWhatItWrites) {
  const CellResult r = run("batch_norm_train/optimized/padding_invariance", 5);
  RunMeta meta;
  meta.seed = 5;
  meta.cases = 100;
  meta.threads = 2;
  meta.total_cells = 1;
  meta.versions = build_versions();
  const json j = report_json({r}, meta);
  const LoadedReport back = report_from_json(json::parse(j.dump()));
  ASSERT_EQ(back.cells.size(), 1u);
  const CellResult& c = back.cells[0];
  EXPECT_EQ(c.id(), r.id());
  EXPECT_EQ(c.cell.row.name, r.cell.row.name);
  EXPECT_EQ(c.cell.row.family, r.cell.row.family);
  EXPECT_EQ(c.observed, r.observed);
  EXPECT_EQ(c.cell.expected, r.cell.expected);
  EXPECT_EQ(c.counterexample, json::parse(r.counterexample.dump()));
  EXPECT_EQ(c.reproduce, r.reproduce);
  EXPECT_EQ(c.cell.prop.statement, r.cell.prop.statement);
  EXPECT_EQ(back.meta.seed, 5u);
  EXPECT_EQ(back.meta.versions["normcheck"], NORMCHECK_EXPECTED_VERSION);
  // the same report.md from the JSON as from the run
  EXPECT_EQ(report_markdown(back.cells, back.meta), report_markdown({r}, back.meta));
  EXPECT_THROW(report_from_json(json{{"format", "something-else"}}), std::invalid_argument);
}

}  // namespace
}  // namespace normcheck
