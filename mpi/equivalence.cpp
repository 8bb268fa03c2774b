// `normcheck-mpi equivalence`: the distributed forward against the in-process sync_batch_norm on
// the same cut, bit for bit (mpi/distributed.hpp).
#include <cmath>
#include <cstdio>
#include <random>
#include <string>

#include "mpi/distributed.hpp"

namespace normcheck::mpi {
namespace equivalence_detail {

// A case of sync_batch_norm's domain: B·T > 1 positions, a cut of B into 1 to min(B, 4) shards,
// values at a random scale and offset (so the shards' means differ and Chan's merge matters),
// γ/β present or not, random running statistics.
struct Case {
  Batch in;
  ShardCut cut;
  Params p;
  Mode mode = Mode::train;
  State state;
};

Case draw(std::mt19937_64& rng) {
  auto uniform = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  std::normal_distribution<double> normal;
  Case c;
  int B = uniform(1, 9), T = uniform(1, 6);
  if (B * T < 2) T = 2;
  const int D = uniform(1, 70);
  c.in = Batch(B, T, D);
  const double scale = std::pow(10.0, uniform(-3, 3)), offset = uniform(0, 3) == 0 ? 1e3 : 0.0;
  for (int b = 0; b < B; ++b) {
    const double shift = normal(rng) * scale;  // each sequence its own level: uneven shard means
    for (int i = 0; i < T * D; ++i)
      c.in.x[std::size_t(b) * T * D + i] = float(offset + shift + normal(rng) * scale);
  }
  const int k = uniform(1, std::min(B, 4));
  int left = B;
  for (int s = 0; s < k; ++s) {
    const int size = s == k - 1 ? left : uniform(1, left - (k - 1 - s));
    c.cut.push_back(size);
    left -= size;
  }
  c.mode = uniform(0, 3) == 0 ? Mode::eval : Mode::train;
  c.p.eps = std::pow(10.0, -uniform(2, 12));
  c.p.momentum = uniform(1, 9) / 10.0;
  if (uniform(0, 1)) c.p.gamma.resize(D), c.p.beta.resize(D);
  for (auto& g : c.p.gamma) g = float(normal(rng));
  for (auto& b : c.p.beta) b = float(normal(rng));
  for (int d = 0; d < D; ++d) {
    c.state.running_mean.push_back(normal(rng));
    c.state.running_var.push_back(std::abs(normal(rng)) + 0.1);
  }
  return c;
}

std::string describe(const Case& c) {
  std::string cut;
  for (int s : c.cut) cut += (cut.empty() ? "" : ", ") + std::to_string(s);
  return "[B, T, D] = [" + std::to_string(c.in.B) + ", " + std::to_string(c.in.T) + ", " +
         std::to_string(c.in.D) + "], cut [" + cut + "], " + to_string(c.mode);
}

// The first position where two vectors differ in their bits (NaN equal to NaN), or -1.
long first_difference(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size()) return 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (!(a[i] == b[i] || (std::isnan(a[i]) && std::isnan(b[i])))) return long(i);
  return -1;
}

}  // namespace equivalence_detail

int equivalence(long long cases, unsigned long long seed) {
  using namespace equivalence_detail;
  const LayerEntry& local = layer("sync_batch_norm");
  const LayerEntry distributed = sync_batch_norm_entry();
  std::mt19937_64 rng(seed);
  for (long long i = 1; i <= cases; ++i) {
    const Case c = draw(rng);
    State s_local = c.state, s_mpi = c.state;
    Output y_local, y_mpi;
    local.forward_on_shards(Impl::optimized, c.in, c.cut, c.p, c.mode, &s_local, y_local);
    distributed.forward_on_shards(Impl::optimized, c.in, c.cut, c.p, c.mode, &s_mpi, y_mpi);
    struct Compared {
      const char* what;
      const std::vector<double>&in_process, &over_ranks;
    };
    for (const Compared& v : {Compared{"output", y_local, y_mpi},
                              Compared{"running mean", s_local.running_mean, s_mpi.running_mean},
                              Compared{"running var", s_local.running_var, s_mpi.running_var}}) {
      const long at = first_difference(v.in_process, v.over_ranks);
      if (at < 0) continue;
      auto value = [at](const std::vector<double>& x) { return at < long(x.size()) ? x[at] : NAN; };
      std::printf("equivalence: case %lld of seed %llu (%s): %s [%ld] is %.17g in process, %.17g "
                  "over %d ranks\n",
                  i, seed, describe(c).c_str(), v.what, at, value(v.in_process), value(v.over_ranks), size());
      return 1;
    }
  }
  std::printf("equivalence: %lld cases (seed %llu) over %d ranks: outputs and running statistics "
              "bitwise equal to the in-process sync_batch_norm on the same cut\n",
              cases, seed, size());
  return 0;
}

}  // namespace normcheck::mpi
