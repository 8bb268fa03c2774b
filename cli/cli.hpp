// The `normcheck` command line: list, matrix, merge, golden and mutants over every registered row.
// The `normcheck` binary is this function alone; a project that registers its own layers before
// calling it gets the same command for its rows.
#pragma once

namespace normcheck {

// Parses argv and runs the subcommand. Returns the exit code: 0 every cell as expected (golden:
// every case passed), 1 a surprise (golden: a failed case), 2 a usage or input error.
int cli_main(int argc, char** argv);

}  // namespace normcheck
