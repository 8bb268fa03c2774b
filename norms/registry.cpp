#include "norms/registry.hpp"

#include <algorithm>
#include <cmath>
#include <optional>
#include <stdexcept>

namespace normcheck {

ForwardFn affine_kernel_forward(AffineKernelFn kernel) {
  return [kernel](const Batch& in, const Params& p, Mode, State*, Output& out) {
    validate_affine_norm(in, p);
    run_affine_kernel(in, p, out, [&](float* y, const float* x, const float* g, const float* b) {
      kernel(y, x, g, b, in.rows(), in.D, float(p.eps));
    });
  };
}

// The one list of layers. Adding a layer: write norms/<name>.cpp with `LayerEntry
// <name>_entry()`, then declare it and list it here (README: "Adding a layer").
LayerEntry layer_norm_entry();
LayerEntry rms_norm_entry();
LayerEntry batch_norm_entry();
LayerEntry masked_batch_norm_entry();
LayerEntry group_norm_entry();
LayerEntry instance_norm_entry();
LayerEntry scale_norm_entry();
LayerEntry dyt_entry();
LayerEntry identity_entry();
LayerEntry batch_renorm_entry();
LayerEntry sync_batch_norm_entry();
#ifdef NORMCHECK_HAVE_DNNL
LayerEntry onednn_layer_norm_entry();  // external kernels, when oneDNN is found (norms/onednn.cpp)
LayerEntry onednn_batch_norm_entry();
#endif

namespace {

std::deque<LayerEntry>& registry() {
  static std::deque<LayerEntry> all = {
      layer_norm_entry(),
      rms_norm_entry(),
      batch_norm_entry(),
      masked_batch_norm_entry(),
      group_norm_entry(),
      instance_norm_entry(),
      scale_norm_entry(),
      dyt_entry(),
      identity_entry(),
      batch_renorm_entry(),
      sync_batch_norm_entry(),
#ifdef NORMCHECK_HAVE_DNNL
      onednn_layer_norm_entry(),
      onednn_batch_norm_entry(),
#endif
  };
  return all;
}

}  // namespace

const std::deque<LayerEntry>& layers() { return registry(); }

const LayerEntry& register_layer(LayerEntry entry) {
  if (entry.name.empty()) throw std::invalid_argument("register_layer: the layer needs a name");
  for (const auto& l : registry())
    if (l.name == entry.name)
      throw std::invalid_argument("register_layer: a layer named '" + entry.name + "' exists");
  if (!entry.reference || !entry.optimized || !entry.conditioning)
    throw std::invalid_argument("register_layer: '" + entry.name +
                                "' needs reference, optimized and conditioning functions");
  if (bool(entry.backward_reference) != bool(entry.backward_optimized))
    throw std::invalid_argument("register_layer: '" + entry.name +
                                "' needs both backward functions (reference and optimized) or neither");
  if ((entry.sharded_backward_reference || entry.sharded_backward_optimized) &&
      !entry.backward_reference)
    throw std::invalid_argument("register_layer: '" + entry.name +
                                "' has a sharded backward but no backward functions");
  if (entry.rows.empty())
    throw std::invalid_argument("register_layer: '" + entry.name + "' declares no row profile");
  if (entry.origin == "builtin") entry.origin = "external";
  registry().push_back(std::move(entry));
  return registry().back();
}

LayerEntry implementation_of(const LayerEntry& base, std::string name, std::string formula,
                             ForwardFn optimized, std::string origin) {
  LayerEntry e = base;
  e.name = std::move(name);
  e.formula = std::move(formula);
  e.optimized = std::move(optimized);
  e.backward_reference = e.backward_optimized = {};
  e.sharded_backward_reference = e.sharded_backward_optimized = {};
  e.sharded_optimized = {};
  e.origin = std::move(origin);
  e.computes = base.op();
  return e;
}

const LayerEntry& layer(const std::string& name) {
  for (const auto& l : layers())
    if (l.name == name) return l;
  throw std::invalid_argument("unknown layer '" + name + "'");
}

std::vector<LayerRow> rows_of(const LayerEntry& l) {
  std::vector<LayerRow> rows;
  for (const auto& r : l.rows) rows.push_back({&l, &r});
  return rows;
}

std::vector<LayerRow> layer_rows() {
  std::vector<LayerRow> rows;
  for (const auto& l : layers())
    for (const auto& r : rows_of(l)) rows.push_back(r);
  return rows;
}

std::string LayerRow::name() const {
  if (mode() == Mode::none) return layer->name;
  return layer->name + " [" + to_string(mode()) + "]";
}

std::string LayerRow::id() const {
  if (mode() == Mode::none) return layer->name;
  return layer->name + "_" + to_string(mode());
}

void validate_shard_cut(const Batch& in, const ShardCut& shards) {
  long long sum = 0;
  std::string cut;
  for (int s : shards) {
    cut += (cut.empty() ? "" : ", ") + std::to_string(s);
    if (s < 1) throw InvalidInput("shard cut [" + cut + "…]: every shard needs a sequence, got " + std::to_string(s));
    sum += s;
  }
  if (shards.empty() || sum != in.B)
    throw InvalidInput("shard cut [" + cut + "] does not cut the batch: its sizes sum to " +
                       std::to_string(sum) + ", B = " + std::to_string(in.B));
}

Batch sequences(const Batch& in, int first, int count) {
  Batch s(count, in.T, in.D);
  const std::size_t per = std::size_t(in.T) * in.D;
  std::copy(in.x.begin() + first * per, in.x.begin() + (first + count) * per, s.x.begin());
  std::copy(in.lengths.begin() + first, in.lengths.begin() + first + count, s.lengths.begin());
  return s;
}

void LayerEntry::forward_on_shards(Impl impl, const Batch& in, const ShardCut& shards,
                                   const Params& p, Mode mode, State* state, Output& out) const {
  validate_batch(in);
  validate_shard_cut(in, shards);
  const ShardedForwardFn& sharded = impl == Impl::reference ? sharded_reference : sharded_optimized;
  if (sharded) return sharded(in, shards, p, mode, state, out);
  // each worker alone: its shard, its own replica of the state
  Output all(in.x.size(), 0.0);
  std::optional<State> first;
  int start = 0;
  for (int size : shards) {
    State replica = state ? *state : State{};
    Output o;
    forward(impl)(sequences(in, start, size), p, mode, state ? &replica : nullptr, o);
    std::copy(o.begin(), o.end(), all.begin() + std::size_t(start) * in.T * in.D);
    if (!first) first = std::move(replica);
    start += size;
  }
  if (state) *state = std::move(*first);
  out = std::move(all);
}

void LayerEntry::backward_on_shards(Impl impl, const Batch& in, const ShardCut& shards,
                                    const Params& p, Mode mode, const State* state,
                                    const std::vector<float>& dy, Grads& out) const {
  validate_batch(in);
  validate_shard_cut(in, shards);
  validate_dy(in, dy);
  const ShardedBackwardFn& sharded =
      impl == Impl::reference ? sharded_backward_reference : sharded_backward_optimized;
  if (sharded) return sharded(in, shards, p, mode, state, dy, out);
  // each worker alone: its shard and its dy; dγ, dβ added up over the workers in shard order
  Grads all;
  all.dx.assign(in.x.size(), 0.0);
  const std::size_t per = std::size_t(in.T) * in.D;
  int start = 0;
  for (int size : shards) {
    const std::vector<float> dy_shard(dy.begin() + std::ptrdiff_t(start * per),
                                      dy.begin() + std::ptrdiff_t((start + size) * per));
    Grads g;
    backward(impl)(sequences(in, start, size), p, mode, state, dy_shard, g);
    std::copy(g.dx.begin(), g.dx.end(), all.dx.begin() + std::ptrdiff_t(start * per));
    for (auto [sum, part] : {std::pair{&all.dgamma, &g.dgamma}, std::pair{&all.dbeta, &g.dbeta}}) {
      if (sum->empty()) *sum = std::vector<double>(part->size(), 0.0);
      for (std::size_t f = 0; f < part->size(); ++f) (*sum)[f] += (*part)[f];
    }
    start += size;
  }
  out = std::move(all);
}

std::string golden_op(const LayerRow& row) {
  const std::string& op = row.layer->op();
  return row.mode() == Mode::none ? op : op + "_" + to_string(row.mode());
}

}  // namespace normcheck

namespace normcheck {

ConditioningFn token_conditioning(bool centered, std::string groups_param) {
  return [centered, groups_param](const Batch& in, const Params& p, Mode, const State*) {
    return token_group_conditioning(in, p.eps, groups_param.empty() ? 1 : int(p.get(groups_param)),
                                    centered);
  };
}

const std::set<std::string>& scale_and_shift_invariances() {
  static const std::set<std::string> all = {"token_scale_invariance", "global_scale_invariance",
                                            "token_shift_invariance", "feature_shift_invariance",
                                            "feature_scale_invariance"};
  return all;
}

Conditioning token_group_conditioning(const Batch& in, double eps, int groups, bool centered) {
  validate_batch(in);
  if (groups < 1 || in.D % groups != 0)
    throw InvalidInput("groups must divide D = " + std::to_string(in.D) + ", got groups = " +
                       std::to_string(groups));
  Conditioning c;
  c.cond.assign(in.x.size(), 0.0);
  c.eps_rel.assign(in.x.size(), 0.0);
  c.inv_std.assign(in.x.size(), 0.0);
  const int gs = in.D / groups;
  for (int b = 0; b < in.B; ++b)
    for (int t = 0; t < in.lengths[b]; ++t)
      for (int g = 0; g < groups; ++g) {
        const std::size_t base = in.index(b, t, g * gs);
        double mean = 0, sq = 0;
        for (int i = 0; i < gs; ++i) mean += in.x[base + i];
        mean /= gs;
        for (int i = 0; i < gs; ++i) {
          const double d = in.x[base + i] - (centered ? mean : 0.0);
          sq += d * d;
        }
        sq /= gs;
        const double cond = centered ? std::abs(mean) / std::sqrt(sq + eps) : 0.0;
        const double eps_rel = sq > 0 ? std::min(1.0, eps / (2 * sq)) : 1.0;
        const double inv_std = 1.0 / std::sqrt(sq + eps);
        for (int i = 0; i < gs; ++i) {
          c.cond[base + i] = cond;
          c.eps_rel[base + i] = eps_rel;
          c.inv_std[base + i] = inv_std;
        }
      }
  return c;
}

}  // namespace normcheck
