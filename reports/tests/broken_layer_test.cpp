// Deliberately broken kernels: can a reader of report.md see the bug? Each test builds a Cell by
// hand around a broken copy of a real layer (nothing is added to the registry), runs it like
// the matrix does, and reads the failure section the way a person would.
#include <gtest/gtest.h>

#include <cmath>
#include <sstream>

#include "properties/counterexample.hpp"
#include "reports/report.hpp"

namespace normcheck {
namespace {

using nlohmann::json;

// The classic bug the spec names: variance as E[x²] − E[x]² in float, one pass. On a token far
// from 0 the two terms cancel and the variance is noise (or negative: NaN).
void layer_norm_one_pass(const Batch& in, const Params& p, Mode, State*, Output& out) {
  const int D = in.D;
  out.assign(in.x.size(), 0.0);
  for (std::size_t r = 0; r < in.rows(); ++r) {
    const float* x = &in.x[r * D];
    float s = 0, s2 = 0;
    for (int d = 0; d < D; ++d) {
      s += x[d];
      s2 += x[d] * x[d];
    }
    const float mean = s / D, var = s2 / D - mean * mean;
    const float rstd = 1.0f / std::sqrt(var + float(p.eps));
    for (int d = 0; d < D; ++d)
      out[r * D + d] = (x[d] - mean) * rstd * (p.gamma.empty() ? 1.0f : p.gamma[d]) +
                       (p.beta.empty() ? 0.0f : p.beta[d]);
  }
}

// An off-by-one: token r normalizes with the statistics of row r + 1 (when there is one), so
// a token's output depends on its neighbour.
void layer_norm_neighbour_stats(const Batch& in, const Params& p, Mode, State*, Output& out) {
  const int D = in.D;
  out.assign(in.x.size(), 0.0);
  for (std::size_t r = 0; r < in.rows(); ++r) {
    const std::size_t sr = r + 1 < in.rows() ? r + 1 : r;
    const float* s = &in.x[sr * D];
    double mean = 0, var = 0;
    for (int d = 0; d < D; ++d) mean += s[d];
    mean /= D;
    for (int d = 0; d < D; ++d) var += (s[d] - mean) * (s[d] - mean);
    var /= D;
    for (int d = 0; d < D; ++d)
      out[r * D + d] = (in.x[r * D + d] - mean) / std::sqrt(var + p.eps) * (p.gamma.empty() ? 1.0 : p.gamma[d]) +
                       (p.beta.empty() ? 0.0 : p.beta[d]);
  }
}

// A kernel right everywhere but at D = 1, where it divides 0 by 0: NaN where the reference says
// 0 (β). A bias made of NaN alone: it must not be summarised as "deviation 0".
void layer_norm_nan_at_one_feature(const Batch& in, const Params& p, Mode mode, State* s, Output& out) {
  layer("layer_norm").optimized(in, p, mode, s, out);
  if (in.D != 1) return;
  for (std::size_t r = 0; r < in.rows(); ++r) {
    const double centred = in.x[r] - in.x[r], spread = std::abs(in.x[r] - in.x[r]);
    out[r] = centred / spread;  // 0/0
  }
}

struct Broken {
  LayerEntry entry;
  Cell cell;
};

// A copy of layer_norm with a broken optimized kernel, as a cell of `prop`. The entry lives as
// long as the test (the cell's check_case points into it).
std::unique_ptr<Broken> broken_layer_norm(const std::string& name, ForwardFn kernel, const std::string& prop) {
  auto b = std::make_unique<Broken>();
  b->entry = layer("layer_norm");
  b->entry.name = name;
  b->entry.optimized = std::move(kernel);
  for (auto& c : norm_cells({&b->entry}))
    if (c.info.impl == Impl::optimized && c.info.prop.id == prop) b->cell = c;
  return b;
}

CellResult run(const Cell& c, uint64_t seed, int cases) {
  RunOptions o;
  o.seed = seed;
  o.cases = cases;
  o.use_rc_params_reproduce = false;
  return run_cell(c, o);
}

std::string section_of(const std::string& md, const std::string& title_part) {
  const auto at = md.find("### " + title_part);
  if (at == std::string::npos) return "";
  const auto end = md.find("\n### ", at + 1);
  return md.substr(at, end == std::string::npos ? std::string::npos : end - at);
}

// The numbers on the first line of `sec` that starts with `label` (after the label).
std::vector<std::string> row_values(const std::string& sec, const std::string& label) {
  std::istringstream lines(sec);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("  " + label, 0) != 0) continue;
    std::istringstream words(line.substr(2 + label.size()));
    std::vector<std::string> v;
    for (std::string w; words >> w;) v.push_back(w);
    return v;
  }
  return {};
}

std::vector<std::string> formatted(const json& values, std::size_t n) {
  std::vector<std::string> v;
  for (std::size_t i = 0; i < std::min(n, values.size()); ++i) v.push_back(format_number(values[i]));
  return v;
}

// The compared pair the worst value belongs to.
const json& worst_pair(const json& cx) { return cx.at("compared").at(cx.at("worst").value("pair", 0)); }

TEST(BrokenLayer, OnePassVarianceIsVisibleInTheReport) {
  const std::size_t cells_before = all_cells().size();
  auto b = broken_layer_norm("layer_norm_one_pass", layer_norm_one_pass, "reference_agreement");
  const CellResult r = run(b->cell, 12345, 300);
  ASSERT_EQ(r.observed, "violated") << "the one-pass variance must fail reference_agreement: " << r.message;
  EXPECT_FALSE(r.as_expected()) << "expected to hold: a surprise";
  EXPECT_EQ(all_cells().size(), cells_before) << "nothing may be registered";

  const std::string md = report_markdown({r}, RunMeta{});
  const std::string sec = section_of(md, "✗ layer_norm_one_pass / optimized / reference_agreement — SURPRISE");
  ASSERT_FALSE(sec.empty()) << md;
  // the replay command
  EXPECT_NE(sec.find(replay_command(r)), std::string::npos) << sec;
  EXPECT_NE(sec.find("--reproduce 'reproduce="), std::string::npos);
  // the input row and both outputs of the worst token, value by value, in the first block
  const json& p = worst_pair(r.counterexample);
  EXPECT_EQ(row_values(sec, "x   input"), formatted(p["x_a"], 8)) << sec;
  EXPECT_EQ(row_values(sec, "y   input"), formatted(p["y_a"], 8)) << sec;
  EXPECT_EQ(row_values(sec, "y′  related"), formatted(p["y_b"], 8)) << sec;
  // what makes the bug recognisable: a token far from zero (the large-offset regime), and
  // outputs that disagree beyond tolerance
  bool large_offset = false;
  for (const auto& v : p["x_a"])
    if (v.is_number() && std::abs(v.get<double>()) >= 100) large_offset = true;
  EXPECT_TRUE(large_offset) << "the shrunk input should keep the offset that breaks E[x²]−E[x]²:\n" << sec;
  EXPECT_NE(sec.find("worst: y = "), std::string::npos) << sec;
  EXPECT_TRUE(sec.find("> tolerance") != std::string::npos || sec.find("NaN on one side only") != std::string::npos)
      << "the report says why the worst value fails:\n" << sec;
  EXPECT_NE(sec.find("optimized (a) vs reference (b)"), std::string::npos) << "what the two sides are";
}

TEST(BrokenLayer, NeighbourStatisticsShowTheReplacedToken) {
  auto b = broken_layer_norm("layer_norm_off_by_one", layer_norm_neighbour_stats, "token_independence");
  const CellResult r = run(b->cell, 777, 300);
  ASSERT_EQ(r.observed, "violated") << r.message;
  const std::string md = report_markdown({r}, RunMeta{});
  const std::string sec = section_of(md, "✗ layer_norm_off_by_one / optimized / token_independence — SURPRISE");
  ASSERT_FALSE(sec.empty()) << md;
  EXPECT_NE(sec.find(replay_command(r)), std::string::npos);
  // the replaced token is not compared, so the report must show the whole batches: that is
  // where a reader sees which neighbour changed
  EXPECT_NE(sec.find("whole input (a)"), std::string::npos) << sec;
  EXPECT_NE(sec.find("whole related input (b)"), std::string::npos) << sec;
  EXPECT_NE(sec.find("token ("), std::string::npos) << "the related input says which token was replaced";
  const json& p = worst_pair(r.counterexample);
  EXPECT_EQ(row_values(sec, "x   input"), formatted(p["x_a"], 8)) << sec;
  EXPECT_EQ(row_values(sec, "y′  related"), formatted(p["y_b"], 8)) << sec;
}

TEST(BrokenLayer, ANanOnlyBiasIsShownAsNanEverywhere) {
  auto b = broken_layer_norm("layer_norm_nan_at_d1", layer_norm_nan_at_one_feature, "reference_agreement");
  const CellResult r = run(b->cell, 4242, 300);
  ASSERT_EQ(r.observed, "violated") << r.message;
  EXPECT_TRUE(std::isnan(r.max_deviation)) << "largest deviation " << r.max_deviation;
  EXPECT_EQ(to_json(r)["max_deviation"], "NaN");
  EXPECT_NE(r.message.find("NaN on one side only"), std::string::npos) << r.message;
  const std::string sec = section_text(r);
  EXPECT_NE(sec.find("|y−y′| = NaN: NaN on one side only"), std::string::npos) << sec;
  EXPECT_EQ(sec.find("deviation 0"), std::string::npos) << sec;
}

}  // namespace
}  // namespace normcheck
