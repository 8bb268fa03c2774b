// Norm kernels against the memory-bandwidth ceiling (a row-wise copy of the same bytes), in one
// run. Reports GB/s from the bytes each kernel must move: read x, write y (2·rows·D·4).
#include <benchmark/benchmark.h>

#include <cstring>
#include <random>

#include "norms/registry.hpp"

namespace {

using namespace normcheck;

Batch make_batch(int rows, int D) {
  Batch x(1, rows, D);
  std::mt19937 rng(1);
  std::normal_distribution<float> n(0, 1);
  for (auto& v : x.x) v = n(rng);
  return x;
}

void set_bytes(benchmark::State& st, int rows, int D) {
  st.SetBytesProcessed(int64_t(st.iterations()) * 2 * int64_t(rows) * D * 4);
}

void BM_copy(benchmark::State& st) {
  const int rows = int(st.range(0)), D = int(st.range(1));
  const Batch x = make_batch(rows, D);
  std::vector<float> y(x.x.size());
  for (auto _ : st) {
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; ++r) std::memcpy(&y[std::size_t(r) * D], &x.x[std::size_t(r) * D], D * 4);
    benchmark::DoNotOptimize(y.data());
  }
  set_bytes(st, rows, D);
}

void BM_norm(benchmark::State& st, const char* name, Impl impl) {
  const int rows = int(st.range(0)), D = int(st.range(1));
  const Batch x = make_batch(rows, D);
  Params p;
  p.gamma.assign(D, 1.0f);
  p.beta.assign(D, 0.0f);
  State s{std::vector<double>(D, 0.0), std::vector<double>(D, 1.0)};
  const LayerEntry& l = layer(name);
  const Mode mode = l.stateful() ? Mode::train : Mode::none;
  Output out;
  for (auto _ : st) {
    l.forward(impl)(x, p, mode, &s, out);
    benchmark::DoNotOptimize(out.data());
  }
  set_bytes(st, rows, D);
}

void shapes(benchmark::internal::Benchmark* b) {
  b->Args({4096, 1024})->Args({16384, 128})->Unit(benchmark::kMillisecond)->UseRealTime();
}

BENCHMARK(BM_copy)->Apply(shapes);
BENCHMARK_CAPTURE(BM_norm, layer_norm_optimized, "layer_norm", Impl::optimized)->Apply(shapes);
BENCHMARK_CAPTURE(BM_norm, rms_norm_optimized, "rms_norm", Impl::optimized)->Apply(shapes);
BENCHMARK_CAPTURE(BM_norm, batch_norm_train_optimized, "batch_norm", Impl::optimized)->Apply(shapes);
BENCHMARK_CAPTURE(BM_norm, layer_norm_reference, "layer_norm", Impl::reference)->Apply(shapes);

}  // namespace

BENCHMARK_MAIN();
