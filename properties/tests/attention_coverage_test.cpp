// What a default run draws for the attention rows: every regime defined by the optimized kernel's
// thresholds (kSdpaKeyTile, kSdpaQueryTile) and by the data the properties must reach (rising
// maxima across key tiles, fully masked rows, one visible key, poison, a query tile whose rows
// have different causal horizons over non-finite keys) is drawn by the cells that need it. The
// counts come from the cases themselves (attention_cases.hpp: CaseScope, classify); the test
// prints them per cell.
#include <gtest/gtest.h>

#include <iostream>

#include "properties/attention_cases.hpp"
#include "properties/catalog.hpp"

namespace normcheck {
namespace {

namespace regime = attn::regime;

// The regimes a cell of each property must draw (on every attention row, each implementation
// the property runs on).
struct Need {
  std::string property;
  std::vector<std::string> regimes;
};

std::vector<std::string> poisons() {
  return {regime::poison("NaN"), regime::poison("+inf"), regime::poison("-inf"), regime::poison("1e30")};
}

std::vector<Need> needs() {
  auto with = [](std::vector<std::string> a, const std::vector<std::string>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
  };
  std::vector<Need> all = {
      // the tiling against the reference: within one key tile, over two and more, a partial last
      // tile, several query tiles, maxima that a later tile raises, masked rows, poisoned padding
      {"reference_agreement",
       with({regime::T_is_1, regime::Tk_within_tile, regime::Tk_two_tiles, regime::Tk_beyond_two_tiles,
             regime::Tk_partial_last_tile, regime::Tq_beyond_tile, regime::rising_maxima, regime::fully_masked},
            poisons())},
      {"causality", with({regime::Tk_beyond_tile, regime::Tq_beyond_tile, regime::mixed_horizons}, poisons())},
      {"key_padding_invariance", with({regime::Tk_beyond_tile, regime::fully_masked}, poisons())},
      {"causal_mask_semantics",
       {regime::one_visible_key, regime::Tk_beyond_tile, regime::Tq_beyond_tile, regime::Tq_below_Tk}},
      {"key_padding_semantics", with({regime::Tk_beyond_tile, regime::fully_masked}, poisons())},
  };
  // every other value comparison reaches the kernel's tiling too
  for (const char* p : {"row_stochastic", "kv_permutation_invariance", "query_permutation_equivariance",
                        "batch_independence", "logit_shift_invariance", "value_affine_equivariance",
                        "kv_cache_equivalence", "large_logit_stability"})
    all.push_back({p, {regime::Tk_beyond_tile}});
  return all;
}

// "<cell>: never drew <regime>" for every regime a cell of `cells` needs and did not draw.
std::vector<std::string> missing(const attn::Drawn& drawn, const std::vector<Cell>& cells) {
  std::vector<std::string> out;
  for (const auto& cell : cells) {
    if (cell.info.expected == Expect::not_applicable) continue;
    for (const auto& need : needs()) {
      if (need.property != cell.info.prop.id) continue;
      const auto it = drawn.find(cell.id());
      for (const auto& r : need.regimes)
        if (it == drawn.end() || !it->second.count(r)) out.push_back(cell.id() + ": never drew " + r);
    }
  }
  return out;
}

std::vector<Cell> attention_cells() {
  std::vector<Row> rows;
  for (const auto& e : attention_entries())
    if (e.origin == "builtin") rows.push_back(attention_row(e));
  return cells_of(rows);
}

TEST(AttentionCoverage, ADefaultRunDrawsEveryRegimeOfTheKernelsThresholds) {
  const auto cells = attention_cells();
  attn::reset_drawn();
  const RunOptions options = options_from_rc_params();
  for (const auto& cell : cells) {
    const CellResult r = run_cell(cell, options);
    EXPECT_TRUE(r.as_expected()) << r.message;
  }
  const attn::Drawn drawn = attn::drawn();
  for (const auto& [cell, counts] : drawn) {
    std::cout << cell << ":";
    for (const auto& [label, n] : counts) std::cout << " [" << label << "] " << n;
    std::cout << "\n";
  }
  const auto gaps = missing(drawn, cells);
  for (const auto& g : gaps) ADD_FAILURE() << g << " (seed " << options.seed.value_or(0) << ")";
  EXPECT_TRUE(gaps.empty());
}

// The check can fail: a run that never drew a regime is reported, naming the cell and the regime.
TEST(AttentionCoverage, ARegimeNeverDrawnIsReported) {
  const auto cells = attention_cells();
  attn::Drawn drawn;
  for (const auto& cell : cells)
    for (const auto& need : needs())
      if (need.property == cell.info.prop.id)
        for (const auto& r : need.regimes) drawn[cell.id()][r] = 1;
  EXPECT_TRUE(missing(drawn, cells).empty());
  drawn["sdpa/optimized/reference_agreement"].erase(regime::rising_maxima);
  const auto gaps = missing(drawn, cells);
  ASSERT_EQ(gaps.size(), 1u);
  EXPECT_EQ(gaps[0], "sdpa/optimized/reference_agreement: never drew " + regime::rising_maxima);
}

}  // namespace
}  // namespace normcheck
