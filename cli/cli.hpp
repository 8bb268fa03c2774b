// The `normcheck` command line: list, matrix, merge, golden and mutants over every registered row.
// The `normcheck` binary is this function alone; a project that registers its own layers before
// calling it gets the same command for its rows.
#pragma once

namespace normcheck {

// Parses argv and runs the subcommand. Returns the exit code: 0 every cell as expected (golden:
// every case passed), 1 a surprise (golden: a failed case), 2 a usage or input error.
int cli_main(int argc, char** argv);

// What a program that embeds the command changes of it.
struct CliOptions {
  // `matrix` runs cells in forked worker processes (--jobs). A program whose rows cannot run in
  // a forked child (they call MPI, hold a GPU context, ...) sets this: every cell runs in the
  // calling process, and --jobs above 1 is a usage error naming `why`.
  bool in_process = false;
  const char* why = "";
};
int cli_main(int argc, char** argv, const CliOptions& options);

}  // namespace normcheck
