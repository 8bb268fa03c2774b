// report.html renders in a real browser (headless Chromium; skipped with a message when Chromium
// is not installed).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <utility>

#include <nlohmann/json.hpp>

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

// The page's layout at a given window width, measured by Chromium: a copy of the page with a
// script that writes the document's scroll width into the title ("widths 1398 1400"); the
// report itself has no script.
std::pair<int, int> page_and_window_width(const std::string& browser, const std::string& dir,
                                          const std::string& html_path, int width) {
  std::string html = read_file(html_path);
  const auto end = html.rfind("</body>");
  html.insert(end, "<script>document.title = 'widths ' + document.documentElement.scrollWidth + ' ' + "
                   "window.innerWidth;</script>");
  const std::string probe = dir + "/probe_" + std::to_string(width) + ".html";
  std::ofstream(probe) << html;
  const auto dom = run(chromium(browser, dir + "/profile_probe_" + std::to_string(width),
                                "--window-size=" + std::to_string(width) + ",1000 --dump-dom file://" + probe));
  std::smatch m;
  if (!std::regex_search(dom.out, m, std::regex("<title>widths ([0-9]+) ([0-9]+)</title>"))) return {-1, -1};
  return {std::stoi(m[1]), std::stoi(m[2])};
}

TEST(HtmlRendering, ChromiumRendersTheMatrixAndTheHeatmapsWithoutOverflowAt1400px) {
  const std::string browser = find_chromium();
  if (browser.empty())
    GTEST_SKIP() << "Chromium is not installed, so report.html is not rendered: install it with "
                    "`scripts/install-deps chromium fonts-dejavu-core` (CI does) or point NORMCHECK_CHROMIUM at a browser";
  const std::string dir = scratch("render");
  // every column of every family, the longest row names, ✓ and ✗ cells with counterexamples
  const auto r = run(testing::cli() + " matrix --layer '^masked_batch_norm_train$|^sdpa$|^block_post_masked_batch_norm_train$' "
                                      "--cases 20 --seed 7 --out " + dir + "/report");
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string page = dir + "/report/report.html";
  const std::string url = "file://" + page;

  // the DOM Chromium built: one matrix per family, the legend before them, the expected ✗ cells
  // folded into <details> with their heatmaps
  const auto dom = run(chromium(browser, dir + "/profile_dom", "--dump-dom " + url));
  ASSERT_EQ(dom.code, 0) << dom.err;
  EXPECT_EQ(count(dom.out, "<svg class=\"matrix\""), 3u) << dom.out.substr(0, 2000);
  const auto json = nlohmann::json::parse(read_file(dir + "/report/report.json"));
  EXPECT_EQ(count(dom.out, "class=\"cell\""), json["cells"].size());
  EXPECT_LT(dom.out.find("class=\"legend"), dom.out.find("<svg class=\"matrix\"")) << "the legend comes first";
  const std::size_t violations = count(read_file(dir + "/report/report.md"), "\n- `");
  EXPECT_GT(violations, 10u);
  EXPECT_EQ(count(dom.out, "<details class=\"failure\""), violations);
  EXPECT_GE(count(dom.out, "class=\"heatmap\""), 3 * violations) << "heatmaps in every counterexample";
  EXPECT_NE(dom.out.find("0 surprises"), std::string::npos);

  // no horizontal overflow of the page at 1400 px: wide content scrolls inside its container.
  // A page made wider than the window must be measured as such (the measurement can fail).
  const auto [page_width, window] = page_and_window_width(browser, dir, page, 1400);
  ASSERT_GT(window, 1000) << "Chromium did not report the widths";
  EXPECT_LE(page_width, window) << "report.html is " << page_width << " px wide in a " << window << " px window";
  {
    std::string wide = read_file(page);
    wide.insert(wide.rfind("</body>"), "<div style=\"width:1700px\">wide</div>");
    std::ofstream(dir + "/wide.html") << wide;
    const auto [wide_width, wide_window] = page_and_window_width(browser, dir, dir + "/wide.html", 1400);
    EXPECT_GT(wide_width, wide_window) << "the overflow measurement cannot see an overflowing page";
  }

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
