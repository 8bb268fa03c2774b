// report.html: self-contained, escaped, one matrix cell per result, and it renders in a real
// browser (headless Chromium; skipped with a message when Chromium is not installed).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <regex>

#include "reports/html.hpp"
#include "reports/report.hpp"
#include "reports/tests/test_util.hpp"

namespace normcheck {
namespace {

namespace fs = std::filesystem;
using testing::count;
using testing::read_file;
using testing::run;
using testing::scratch;

CellResult fake(const std::string& prop, Expect expected, const std::string& observed) {
  CellResult r;
  r.row_id = r.row_name = r.layer = "layer_norm";
  r.impl = Impl::optimized;
  r.property = prop;
  r.info = property_info(prop);
  r.expected = expected;
  r.observed = observed;
  return r;
}

TEST(Html, EscapesEverythingItPrints) {
  CellResult r = fake("padding_invariance", Expect::holds, "violated");
  r.info.statement = "a <b>bold</b> & \"quoted\" claim";
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
  EXPECT_EQ(count(html, "<svg id=\"matrix\""), 1u);
  EXPECT_EQ(count(html, "class=\"cell\""), results.size());
  EXPECT_EQ(count(html, "class=\"surprise\""), 2u) << "causality and the error";
  EXPECT_EQ(count(html, "<article class=\"failure"), 3u) << "two ✗ cells and the error";
  for (const char* external : {"src=\"http", "href=\"http", "<link", "<script", "@import"})
    EXPECT_EQ(html.find(external), std::string::npos) << external;
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

// ---------------------------------------------------------------------------------------------
// rendering in Chromium

std::string find_chromium() {
  if (const char* env = std::getenv("NORMCHECK_CHROMIUM"); env && *env) return env;
  for (const char* name : {"chromium", "chromium-browser", "google-chrome"}) {
    const auto r = run(std::string("command -v ") + name);
    if (r.code == 0 && !r.out.empty()) return r.out.substr(0, r.out.find('\n'));
  }
  return "";
}

std::string chromium(const std::string& binary, const std::string& profile, const std::string& args) {
  return "timeout 120 " + binary +
         " --headless --no-sandbox --disable-gpu --disable-quic --no-first-run"
         " --disable-background-networking --disable-component-update --disable-sync"
         " --user-data-dir=" + profile + " " + args;
}

TEST(HtmlRendering, ChromiumRendersTheMatrixAndTheHeatmaps) {
  const std::string browser = find_chromium();
  if (browser.empty())
    GTEST_SKIP() << "Chromium is not installed, so report.html is not rendered: install it with "
                    "`scripts/install-deps chromium` (CI does) or point NORMCHECK_CHROMIUM at a browser";
  const std::string dir = scratch("render");
  // two ✗ cells with counterexamples, two ✓ cells
  const auto r = run(testing::cli() + " matrix --layer '^batch_norm_train$' --property 'batch_ind|glob' "
                                      "--cases 50 --seed 7 --out " + dir + "/report");
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string url = "file://" + dir + "/report/report.html";

  // the DOM Chromium built: the matrix SVG with its 4 cells, two failure articles with heatmaps
  const auto dom = run(chromium(browser, dir + "/profile_dom", "--dump-dom " + url));
  ASSERT_EQ(dom.code, 0) << dom.err;
  EXPECT_EQ(count(dom.out, "<svg id=\"matrix\""), 1u) << dom.out.substr(0, 2000);
  EXPECT_EQ(count(dom.out, "class=\"cell\""), 4u);
  EXPECT_EQ(count(dom.out, "<article class=\"failure"), 2u);
  EXPECT_GE(count(dom.out, "class=\"heatmap\""), 10u) << "five heatmaps per counterexample";
  EXPECT_NE(dom.out.find("4 cells: 4 as expected"), std::string::npos);

  // a screenshot that is not blank: compared with the screenshot of an empty page of the same
  // size (a uniform PNG compresses to almost nothing; a page of text and heatmaps does not)
  std::ofstream(dir + "/blank.html") << "<!DOCTYPE html><html><body></body></html>";
  const std::string size = " --window-size=1400,2000 ";
  const auto shot = run(chromium(browser, dir + "/profile_shot", "--screenshot=" + dir + "/report.png" + size + url));
  const auto blank = run(chromium(browser, dir + "/profile_blank", "--screenshot=" + dir + "/blank.png" + size +
                                                                       "file://" + dir + "/blank.html"));
  ASSERT_TRUE(fs::exists(dir + "/report.png")) << shot.err;
  ASSERT_TRUE(fs::exists(dir + "/blank.png")) << blank.err;
  const std::string png = read_file(dir + "/report.png");
  ASSERT_GT(png.size(), 8u);
  EXPECT_EQ(png.substr(1, 3), "PNG");
  const auto report_bytes = fs::file_size(dir + "/report.png"), blank_bytes = fs::file_size(dir + "/blank.png");
  EXPECT_GT(report_bytes, 5 * blank_bytes) << "report.png " << report_bytes << " bytes vs blank page "
                                           << blank_bytes << ": the page looks empty";
}

}  // namespace
}  // namespace normcheck
