// report.html renders in a real browser (headless Chromium; skipped with a message when Chromium
// is not installed).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "cli/tests/test_util.hpp"

namespace normcheck {
namespace {

namespace fs = std::filesystem;
using testing::count;
using testing::read_file;
using testing::run;
using testing::scratch;

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
