// normcheck's public API in one include, for a project that checks its own kernels:
//
//   register them     normcheck::register_layer(entry) — a LayerEntry (<normcheck/norms/registry.hpp>),
//                     often implementation_of(layer("layer_norm"), name, formula, kernel);
//                     normcheck::register_attention(entry) for an attention variant
//   name its programs normcheck::set_replay_programs({.cli = ..., .tests = ...}): the binaries
//                     that hold the project's cells, which replay commands name
//   get its command   return normcheck::cli_main(argc, argv);  (every `normcheck` subcommand)
//   or run cells      layer_cells(layers), run_matrix(cells, options) → results and run metadata;
//                     write_report(dir, run) writes report.md, report.json and report.html
//
// One ctest test per cell: <normcheck/gtest.hpp>. Only <normcheck/...> headers are installed.
#pragma once

#include <normcheck/attention/registry.hpp>
#include <normcheck/cli/cli.hpp>
#include <normcheck/norms/registry.hpp>
#include <normcheck/properties/catalog.hpp>
#include <normcheck/properties/engine.hpp>
#include <normcheck/reports/report.hpp>
