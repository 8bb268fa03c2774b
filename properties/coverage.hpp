// What the cases of a cell drew, by class: the generators note the classes a case falls in
// (its sizes relative to each kernel threshold, its data regime, poison, T = 1, empty
// sequences, ...), the engine counts each class once per case and keeps the counts in the
// cell's result (CellResult::drawn, report.json `drawn`), so a test can prove that a default
// run reaches every regime a kernel threshold defines. RapidCheck's RC_TAG/RC_CLASSIFY only
// reach its own listener, and only for passing cases; these counters are read back directly.
#pragma once

#include <map>
#include <string>

namespace normcheck::coverage {

// The engine: before a cell, before and after each of its cases (counting = false for shrink
// candidates: they are not draws of the search), and after the cell.
void start_cell();
void start_case(bool counting);
void end_case();
std::map<std::string, int> cell_counts();

// The generators: the current case drew `cls` (counted once per case however often noted).
void note(const std::string& cls);

}  // namespace normcheck::coverage
