// report.html: self-contained, escaped, one matrix cell per result (its rendering in a browser:
// cli/tests/html_rendering_test.cpp).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <cmath>
#include <map>
#include <regex>

#include "reports/html.hpp"
#include "reports/report.hpp"
#include "reports/tests/test_util.hpp"

namespace normcheck {
namespace {

namespace fs = std::filesystem;
using testing::count;
using testing::read_file;
using testing::scratch;

CellResult fake(const std::string& prop, Expect expected, const std::string& observed) {
  CellResult r;
  r.cell.row.id = r.cell.row.name = r.cell.row.layer = "layer_norm";
  r.cell.impl = Impl::optimized;
  r.cell.prop = column(prop);
  r.cell.expected = expected;
  r.observed = observed;
  return r;
}

TEST(Html, EscapesEverythingItPrints) {
  CellResult r = fake("padding_invariance", Expect::holds, "violated");
  r.cell.prop.statement = "a <b>bold</b> & \"quoted\" claim";
  r.message = "<script>alert(1)</script>";
  r.reproduce = "reproduce=AAAA";
  r.counterexample = {{"related_input", "<img src=x onerror=alert(1)>"}, {"note", "</pre><script>"}};
  RunMeta meta;
  meta.command = "normcheck matrix --layer '<script>'";
  const std::string html = report_html({r}, meta);
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("<img"), std::string::npos);
  EXPECT_EQ(html.find("<b>bold"), std::string::npos);
  EXPECT_NE(html.find("a &lt;b&gt;bold&lt;/b&gt; &amp; &quot;quoted&quot; claim"), std::string::npos);
  EXPECT_EQ(html_escape("<&>\"'"), "&lt;&amp;&gt;&quot;&#39;");
}

TEST(Html, SelfContainedWithOneMatrixCellPerResult) {
  const std::vector<CellResult> results = {fake("padding_invariance", Expect::holds, "holds"),
                                           fake("causality", Expect::holds, "violated"),
                                           fake("feature_shift_invariance", Expect::violated, "violated"),
                                           fake("reference_agreement", Expect::holds, "error")};
  const std::string html = report_html(results, RunMeta{});
  EXPECT_EQ(count(html, "<svg class=\"matrix\""), 1u) << "one matrix per family";
  EXPECT_EQ(count(html, "class=\"cell\""), results.size());
  EXPECT_EQ(count(html, "class=\"surprise\""), 2u) << "causality and the error";
  EXPECT_EQ(count(html, "<article class=\"failure surprise"), 2u) << "the surprises, open";
  EXPECT_EQ(count(html, "<details class=\"failure\""), 1u) << "the expected ✗, folded";
  EXPECT_LT(html.find("2 SURPRISES"), html.find("<svg class=\"legend\"")) << "the verdict first";
  EXPECT_LT(html.find("<svg class=\"legend\""), html.find("<svg class=\"matrix\"")) << "then the legend";
  EXPECT_LT(html.find("id=\"surprises\""), html.find("id=\"violations\"")) << "surprises before expected ✗";
  for (const char* external : {"src=\"http", "href=\"http", "<link", "<script", "@import"})
    EXPECT_EQ(html.find(external), std::string::npos) << external;
}

// ✓ and ✗ differ without colour: a ✓ cell is pale with a dark symbol, a ✗ cell dark with a white
// one, whatever its deviation (a NaN deviation is the top of the ✗ scale, not the bottom).
TEST(Html, HoldsAndViolatedCellsDifferInLightness) {
  auto lightness = [](const std::string& hex) {
    const int r = std::stoi(hex.substr(1, 2), nullptr, 16), g = std::stoi(hex.substr(3, 2), nullptr, 16),
              b = std::stoi(hex.substr(5, 2), nullptr, 16);
    return (0.299 * r + 0.587 * g + 0.114 * b) / 255;
  };
  std::vector<CellResult> results = {fake("padding_invariance", Expect::holds, "holds"),
                                     fake("feature_shift_invariance", Expect::violated, "violated"),
                                     fake("feature_scale_invariance", Expect::violated, "violated")};
  results[0].max_deviation = 1e-6;
  results[1].max_deviation = 1e3;
  results[2].max_deviation = NAN;
  const std::string html = report_html(results, RunMeta{});
  std::map<std::string, std::string> fill;
  const std::regex cell(R"~(data-cell="[^"]*/([a-z_]+)"[^>]* fill="(#[0-9a-f]{6})")~");
  for (auto it = std::sregex_iterator(html.begin(), html.end(), cell); it != std::sregex_iterator(); ++it)
    fill[(*it)[1]] = (*it)[2];
  ASSERT_EQ(fill.size(), 3u) << html.substr(0, 3000);
  EXPECT_GT(lightness(fill["padding_invariance"]), 0.85);
  EXPECT_LT(lightness(fill["feature_shift_invariance"]), 0.6);
  EXPECT_LT(lightness(fill["feature_scale_invariance"]), 0.6);
  EXPECT_EQ(fill["feature_scale_invariance"], deviation_colour(1e9)) << "NaN: the top of the scale";
}

TEST(Html, MarkdownSubsetConverts) {
  const std::string h = markdown_to_html("# T\n\n**b** `c<d`  \nnext\n\n- item\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n```sh\ncmd <x>\n```\n");
  EXPECT_NE(h.find("<h1>T</h1>"), std::string::npos) << h;
  EXPECT_NE(h.find("<strong>b</strong> <code>c&lt;d</code><br> next"), std::string::npos) << h;
  EXPECT_NE(h.find("<li>item</li>"), std::string::npos) << h;
  EXPECT_NE(h.find("<th>a</th><th>b</th>"), std::string::npos) << h;
  EXPECT_NE(h.find("<td>1</td><td>2</td>"), std::string::npos) << h;
  EXPECT_NE(h.find("<pre class=\"cmd\"><code>cmd &lt;x&gt;\n</code></pre>"), std::string::npos) << h;
}

}  // namespace
}  // namespace normcheck
