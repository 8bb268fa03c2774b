// normcheck-aten: the normcheck command (every subcommand) with PyTorch's ATen rows registered
// next to the built-in ones. The environment that decides their bits goes to stderr first, and
// into the reports (their environment block).
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "aten/aten.hpp"
#include "cli/cli.hpp"
#include "reports/report.hpp"

int main(int argc, char** argv) {
  // cli_main starts the process again when OMP_WAIT_POLICY is unset (libgomp reads it only at
  // load); do it here, before ATen is initialized and the environment printed, not after
  if (!std::getenv("OMP_WAIT_POLICY")) {
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    execv("/proc/self/exe", argv);  // on failure, cli_main carries on with the default policy
  }
  normcheck::aten::register_rows();
  for (const auto& [key, value] : normcheck::aten::environment())
    std::fprintf(stderr, "aten: %s = %s\n", key.c_str(), value.c_str());
  // and into every report's environment block, asked when the run ends (thread counts as run)
  normcheck::add_environment_source([] {
    nlohmann::json env = nlohmann::json::object();
    for (const auto& [key, value] : normcheck::aten::environment()) env[key] = value;
    return env;
  });
  return normcheck::cli_main(argc, argv);
}
