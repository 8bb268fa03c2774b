// The project's command line: every normcheck subcommand (matrix, show, golden, ...), its layer included.
#include <normcheck/normcheck.hpp>
std::vector<const normcheck::LayerEntry*> my_layers();
int main(int argc, char** argv) { my_layers(); return normcheck::cli_main(argc, argv); }
