// normcheck: the command-line tool over the built-in registries, written as a project of its own
// would write it (only the public API).
#include <normcheck/normcheck.hpp>

int main(int argc, char** argv) { return normcheck::cli_main(argc, argv); }
