#include "reports/shard.hpp"

#include <algorithm>
#include <map>
#include <regex>

#include <fmt/format.h>

namespace normcheck {

ShardSpec parse_shard(const std::string& text) {
  static const std::regex re(R"((\d{1,6})/(\d{1,6}))");
  std::smatch m;
  if (!std::regex_match(text, m, re))
    throw std::invalid_argument("--shard: expected I/N (e.g. 0/8), got '" + text + "'");
  ShardSpec s{std::stoi(m[1]), std::stoi(m[2])};
  if (s.count < 1 || s.index >= s.count)
    throw std::invalid_argument("--shard " + text + ": need 0 ≤ I < N (shards are numbered from 0)");
  return s;
}

LoadedReport merge_reports(const std::vector<std::pair<std::string, nlohmann::json>>& inputs) {
  if (inputs.empty()) throw MergeError("nothing to merge");
  std::vector<LoadedReport> shards;
  for (const auto& [path, j] : inputs) {
    try {
      shards.push_back(report_from_json(j));
    } catch (const std::exception& e) {
      throw MergeError(path + ": not a normcheck matrix report: " + e.what());
    }
  }
  const RunMeta& first = shards[0].meta;
  const std::string& first_path = inputs[0].first;
  auto version = [](const RunMeta& m) { return m.versions.value("normcheck", std::string("?")); };
  for (std::size_t i = 1; i < shards.size(); ++i) {
    const RunMeta& m = shards[i].meta;
    auto differ = [&](const std::string& what, const std::string& a, const std::string& b,
                      const std::string& why) {
      if (a != b)
        throw MergeError(fmt::format("{} and {} come from different runs: {} {} vs {} ({})",
                                     first_path, inputs[i].first, what, a, b, why));
    };
    differ("normcheck version", version(first), version(m), "build every shard from one commit");
    differ("seed", std::to_string(first.seed), std::to_string(m.seed), "pass the same --seed to every shard");
    differ("cases per cell", std::to_string(first.cases), std::to_string(m.cases), "pass the same --cases to every shard");
    differ("--layer", first.layer_filter, m.layer_filter, "use the same filters in every shard");
    differ("--property", first.property_filter, m.property_filter, "use the same filters in every shard");
    differ("--implementation", first.implementation, m.implementation, "use the same filters in every shard");
    differ("shard count", std::to_string(first.shard_count), std::to_string(m.shard_count), "use the same N in --shard I/N");
    differ("selected cells", std::to_string(first.total_cells), std::to_string(m.total_cells), "the registries differ");
  }
  const int n = first.shard_count;
  std::map<int, std::size_t> by_index;
  for (std::size_t i = 0; i < shards.size(); ++i) {
    const int idx = shards[i].meta.shard_index;
    if (idx < 0 || idx >= n)
      throw MergeError(fmt::format("{}: shard {}/{} is out of range", inputs[i].first, idx, n));
    if (auto it = by_index.find(idx); it != by_index.end())
      throw MergeError(fmt::format("shard {}/{} is given twice: {} and {} (overlapping inputs)", idx, n,
                                   inputs[it->second].first, inputs[i].first));
    by_index[idx] = i;
  }
  std::vector<int> missing;
  for (int k = 0; k < n; ++k)
    if (!by_index.count(k)) missing.push_back(k);
  if (!missing.empty()) {
    std::string list;
    for (int k : missing) list += (list.empty() ? "" : ", ") + fmt::format("{}/{}", k, n);
    throw MergeError("missing shard" + std::string(missing.size() > 1 ? "s " : " ") + list +
                     ": every shard 0.." + std::to_string(n - 1) + " must be given once");
  }
  // each shard must hold exactly its cells: k mod n == index, so shard i has ⌈(total − i)/n⌉
  const int total = first.total_cells;
  for (const auto& [idx, i] : by_index) {
    const int want = total > idx ? (total - idx + n - 1) / n : 0;
    if (int(shards[i].cells.size()) != want)
      throw MergeError(fmt::format("{}: shard {}/{} holds {} cells, a complete one holds {} of the {} selected",
                                   inputs[i].first, idx, n, shards[i].cells.size(), want, total));
  }
  std::map<std::string, std::string> seen;  // cell id → file
  for (const auto& [idx, i] : by_index)
    for (const auto& c : shards[i].cells)
      if (auto [it, fresh] = seen.emplace(c.id(), inputs[i].first); !fresh)
        throw MergeError(fmt::format("cell {} is in both {} and {} (overlapping inputs)", c.id(),
                                     it->second, inputs[i].first));

  LoadedReport out;
  out.meta = first;
  out.meta.shard_index = 0;
  out.meta.shard_count = 1;
  out.meta.seconds = 0;
  out.meta.started_at.clear();
  out.meta.merged_from = nlohmann::json::array();
  for (const auto& [idx, i] : by_index) {
    const RunMeta& m = shards[i].meta;
    out.meta.seconds = std::max(out.meta.seconds, m.seconds);
    if (out.meta.started_at.empty() || (!m.started_at.empty() && m.started_at < out.meta.started_at))
      out.meta.started_at = m.started_at;
    out.meta.merged_from.push_back({{"file", inputs[i].first},
                                    {"shard", {{"index", idx}, {"count", n}}},
                                    {"cells", shards[i].cells.size()},
                                    {"seconds", m.seconds},
                                    {"threads", m.threads},
                                    {"started_at", m.started_at},
                                    {"command", m.command}});
  }
  // cell k of the selection sits at position k / n of shard k mod n
  for (int k = 0; k < total; ++k) out.cells.push_back(shards[by_index[k % n]].cells[k / n]);
  return out;
}

}  // namespace normcheck
