// normcheck: the command-line tool over the built-in registries.
#include "cli/cli.hpp"

int main(int argc, char** argv) { return normcheck::cli_main(argc, argv); }
