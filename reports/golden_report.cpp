#include "reports/golden_report.hpp"

#include <algorithm>
#include <map>

#include <fmt/format.h>

#include "properties/counterexample.hpp"
#include "reports/html.hpp"

namespace normcheck {
namespace {

struct OpCount {
  int passed = 0, total = 0;
};

// op → implementation → counts, ops in order of appearance
std::vector<std::pair<std::string, std::map<std::string, OpCount>>> per_op(const GoldenRun& run) {
  std::vector<std::pair<std::string, std::map<std::string, OpCount>>> ops;
  for (const auto& o : run.outcomes) {
    const std::string op = o.op.empty() ? "(no op)" : o.op;
    auto it = std::find_if(ops.begin(), ops.end(), [&](const auto& p) { return p.first == op; });
    if (it == ops.end()) it = ops.insert(ops.end(), {op, {}});
    auto& c = it->second[to_string(o.impl)];
    ++c.total;
    if (o.passed) ++c.passed;
  }
  return ops;
}

std::string count_text(const std::map<std::string, OpCount>& m, const std::string& impl) {
  auto it = m.find(impl);
  if (it == m.end()) return "";
  return fmt::format("{}/{} {}", it->second.passed, it->second.total,
                     it->second.passed == it->second.total ? "✓" : "✗");
}

}  // namespace

std::string golden_markdown(const GoldenRun& run) {
  std::string md = "# normcheck golden\n\n";
  std::string files;
  for (const auto& f : run.files) files += (files.empty() ? "`" : ", `") + f + "`";
  md += fmt::format("Golden files {} · normcheck {} · {:.2f} s", files,
                    run.meta.versions.value("normcheck", std::string("?")), run.meta.seconds);
  if (!run.meta.started_at.empty()) md += " · " + run.meta.started_at;
  md += "\n\n";
  if (!run.meta.command.empty()) md += "`" + run.meta.command + "`\n\n";
  if (!run.meta.environment.empty()) md += "Environment: " + environment_text(run.meta.environment) + "\n\n";
  md += fmt::format("**{} cases: {} passed, {} failed.** A case passes when every implementation "
                    "checked matches the expected values within the case's tolerance.\n\n",
                    run.passed + run.failed, run.passed, run.failed);
  md += "| op | reference | optimized |\n|---|---|---|\n";
  for (const auto& [op, m] : per_op(run))
    md += fmt::format("| {} | {} | {} |\n", op, count_text(m, "reference"), count_text(m, "optimized"));
  const bool any_failed = std::any_of(run.outcomes.begin(), run.outcomes.end(),
                                      [](const GoldenOutcome& o) { return !o.passed; });
  if (any_failed) {
    md += "\n## Failures\n\n";
    for (const auto& o : run.outcomes)
      if (!o.passed)
        md += fmt::format("- `{}` ({}, {}): {}\n", o.id, o.op.empty() ? "no op" : o.op,
                          to_string(o.impl), o.error);
  }
  return md;
}

nlohmann::json golden_json(const GoldenRun& run) {
  nlohmann::json outcomes = nlohmann::json::array();
  for (const auto& o : run.outcomes)
    outcomes.push_back({{"id", o.id},
                        {"op", o.op},
                        {"implementation", to_string(o.impl)},
                        {"known", o.known},
                        {"passed", o.passed},
                        {"error", o.error},
                        {"max_error", o.max_error}});
  return {{"format", "normcheck-golden/1"},
          {"files", run.files},
          {"command", run.meta.command},
          {"started_at", run.meta.started_at},
          {"seconds", run.meta.seconds},
          {"versions", run.meta.versions},
          {"environment", run.meta.environment},
          {"summary", {{"cases", run.passed + run.failed}, {"passed", run.passed}, {"failed", run.failed}}},
          {"outcomes", outcomes}};
}

std::string golden_html(const GoldenRun& run) {
  // a grid: one row per op, one square per implementation, green when every case passed
  const auto ops = per_op(run);
  const int cell = 30, left = 200, top = 26;
  const int w = left + 2 * cell + 20, h = top + int(ops.size()) * cell + 8;
  std::string svg = fmt::format(R"~(<svg id="golden" xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" viewBox="0 0 {} {}">)~", w, h, w, h);
  const char* impls[] = {"reference", "optimized"};
  for (int i = 0; i < 2; ++i)
    svg += fmt::format(R"~(<text x="{}" y="18" font-size="11" text-anchor="middle" fill="#222">{}</text>)~",
                       left + i * cell + cell / 2, impls[i][0] == 'r' ? "ref" : "opt");
  for (std::size_t r = 0; r < ops.size(); ++r) {
    const int y = top + int(r) * cell;
    svg += fmt::format(R"~(<text x="{}" y="{}" font-size="12" text-anchor="end" fill="#111">{}</text>)~",
                       left - 8, y + cell / 2 + 4, html_escape(ops[r].first));
    for (int i = 0; i < 2; ++i) {
      auto it = ops[r].second.find(impls[i]);
      if (it == ops[r].second.end()) continue;
      const bool ok = it->second.passed == it->second.total;
      svg += fmt::format(R"~(<rect class="cell" x="{}" y="{}" width="{}" height="{}" rx="3" fill="{}"><title>{} {}: {}/{} passed</title></rect>)~",
                         left + i * cell + 1, y + 1, cell - 2, cell - 2, ok ? "#2e9d4e" : "#d32f2f",
                         html_escape(ops[r].first), impls[i], it->second.passed, it->second.total);
    }
  }
  svg += "</svg>";
  return html_page(fmt::format("normcheck golden — {} failed", run.failed),
                   "<section>" + svg + "</section>\n" + markdown_to_html(golden_markdown(run)));
}

ReportFiles golden_report_files(const GoldenRun& run) {
  return {{"report.md", golden_markdown(run)},
          {"report.json", golden_json(run).dump(1) + "\n"},
          {"report.html", golden_html(run)}};
}

}  // namespace normcheck
