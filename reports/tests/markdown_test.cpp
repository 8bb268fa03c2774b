// report.md and report.json: the matrix, the failure sections a person reads, and the JSON that
// `normcheck merge` reads back.
#include <gtest/gtest.h>

#include "reports/counterexample.hpp"
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

std::string section_of(const std::string& md, const std::string& title_part) {
  const auto at = md.find("### " + title_part);
  if (at == std::string::npos) return "";
  const auto end = md.find("\n### ", at + 1);
  return md.substr(at, end == std::string::npos ? std::string::npos : end - at);
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
  const std::string md = report_markdown({r}, meta);
  const std::string sec = section_of(md, "✗ batch_norm [train] / optimized / batch_independence");
  ASSERT_FALSE(sec.empty()) << md;
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
  const auto ordinary = md.find("### ✗ batch_norm [train] / reference / padding_invariance");
  ASSERT_NE(surprise, std::string::npos) << md;
  ASSERT_NE(ordinary, std::string::npos) << md;
  EXPECT_LT(surprise, ordinary);
  EXPECT_NE(md.find("## Surprises"), std::string::npos);
  EXPECT_NE(md.find("expected violation not found"), std::string::npos);
  EXPECT_NE(md.find("1 surprise**"), std::string::npos) << md.substr(0, 400);
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
