// Spreading a deep run over machines: `normcheck matrix --shard I/N` runs cell k of the
// selection (registry order, after --layer/--property/--implementation) when k mod N == I, and
// `normcheck merge` joins the N report.json files back into one run, in the original order.
// Round-robin by index spreads every row over every shard, so shards take about equally long.
#pragma once

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "reports/report.hpp"

namespace normcheck {

struct ShardSpec {
  int index = 0, count = 1;
};

// "I/N" with 0 ≤ I < N; throws std::invalid_argument with a one-line reason.
ShardSpec parse_shard(const std::string& text);

// Whether cell k of the selection belongs to the shard.
inline bool in_shard(std::size_t k, const ShardSpec& s) { return k % std::size_t(s.count) == std::size_t(s.index); }

// Shard results that cannot be joined: overlapping, missing, or from different runs.
struct MergeError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Joins shard reports (path, parsed report.json) into one. Every input must come from the same
// run: same normcheck version, seed, cases per cell, selection and shard count; together they
// must hold every shard exactly once. Throws MergeError naming the file and the reason.
LoadedReport merge_reports(const std::vector<std::pair<std::string, nlohmann::json>>& inputs);

}  // namespace normcheck
