// Writing reports so that a reader never sees half of one.
//
// A report is several files (report.md, report.json, report.html) that must agree with each
// other, so the unit of atomicity is the directory, not the file: every file is written and
// fsync'ed into a fresh temporary directory next to DIR (same filesystem), which then takes
// DIR's place in one step — renameat2(RENAME_EXCHANGE) when DIR already holds a report, a plain
// rename when it does not. An interrupted run leaves the previous report untouched (plus, at
// worst, a hidden `.DIR.tmp-*` directory); it never leaves a new report.md beside an old
// report.json.
#pragma once

#include <functional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace normcheck {

// Thrown for an output path normcheck must not write to (exit code 2).
struct OutputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

using ReportFiles = std::vector<std::pair<std::string, std::string>>;  // file name → content

// Replaces directory `dir` by one holding exactly `files` (plain file names, no '/').
// Refuses (OutputError) when `dir` exists and holds anything that is not a report file, so a
// mistyped `--out .` or `--out $HOME` cannot replace a directory of someone's files.
// `before_commit` runs after every file is written and before DIR is replaced (tests use it to
// simulate an interruption).
void write_report_dir(const std::string& dir, const ReportFiles& files,
                      const std::function<void()>& before_commit = {});

// The checks write_report_dir makes before it writes, and that its directory can be written
// (a directory is created and removed beside DIR), for callers that want to fail before a long
// run rather than after it. Throws OutputError.
void check_report_dir(const std::string& dir);
// The same for a single file (write_file_atomic): not a directory, and its directory writable.
void check_output_file(const std::string& path);

// The file names a report directory may hold (what write_report_dir may replace).
const std::vector<std::string>& report_file_names();

// Writes one file atomically: a unique temporary file beside it, fsync, rename.
void write_file_atomic(const std::string& path, const std::string& content);

}  // namespace normcheck
