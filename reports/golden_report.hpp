// The report of `normcheck golden --out DIR`: the same three files as a matrix report
// (report.md, report.json, report.html), written by the same directory writer and page
// template.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "properties/golden.hpp"
#include "reports/output_dir.hpp"
#include "reports/report.hpp"

namespace normcheck {

struct GoldenRun {
  std::vector<std::string> files;
  std::vector<GoldenOutcome> outcomes;  // one per (case, implementation) checked
  int passed = 0, failed = 0;           // cases (a case passes when every implementation does)
  RunMeta meta;                         // command, versions, started_at, seconds
};

std::string golden_markdown(const GoldenRun& run);
nlohmann::json golden_json(const GoldenRun& run);
std::string golden_html(const GoldenRun& run);
ReportFiles golden_report_files(const GoldenRun& run);

}  // namespace normcheck
