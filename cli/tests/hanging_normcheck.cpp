// The normcheck command with one more row whose optimized kernel never returns (a test-only
// entry): the watchdog must stop the run, report the cell as an error and exit 1.
#include <chrono>
#include <thread>

#include "cli/cli.hpp"
#include "properties/catalog.hpp"

int main(int argc, char** argv) {
  const normcheck::LayerEntry& ln = normcheck::layer("layer_norm");
  normcheck::register_layer(normcheck::implementation_of(
      ln, "hanging_layer_norm", "layer_norm whose optimized kernel never returns",
      [](const normcheck::Batch&, const normcheck::Params&, normcheck::Mode, normcheck::State*,
         normcheck::Output&) {
        for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
      },
      "external"));
  return normcheck::cli_main(argc, argv);
}
