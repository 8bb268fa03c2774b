// Norm kernels against the memory-bandwidth ceiling and against oneDNN, in one run, at 1 and 2
// OpenMP threads (the last argument). The optimized kernels are the raw float32 ones
// (norms/kernels_api.hpp), not the registry's double-widening adapters; the references go
// through the registry (they exist only in that form).
// GB/s counts the bytes a kernel must move at minimum (rows·D·4 = one pass over x):
//   copy, layer_norm, rms_norm, oneDNN LN:  read x, write y                     = 2 passes
//   batch_norm train:  read x (statistics), read x again (normalize: the statistics must be
//                      complete before the first output, and x does not fit in cache), write y
//                                                                               = 3 passes
// (γ, β and the running statistics are O(D): not counted.)
#include <benchmark/benchmark.h>
#include <omp.h>

#include <cstring>
#include <cstdint>

#include "bench/common.hpp"
#include "norms/batch_norm.hpp"
#include "norms/kernels_api.hpp"
#include "norms/registry.hpp"

#ifdef NORMCHECK_HAVE_DNNL
#include <oneapi/dnnl/dnnl.hpp>
#endif

namespace {

using namespace normcheck;

using bench::random_values;

struct Shape {
  int rows, D, threads;
  explicit Shape(benchmark::State& st)
      : rows(int(st.range(0))), D(int(st.range(1))), threads(int(st.range(2))) {
    omp_set_num_threads(threads);
  }
  std::size_t n() const { return std::size_t(rows) * D; }
};

void set_bytes(benchmark::State& st, const Shape& s, int passes) {
  st.SetBytesProcessed(int64_t(st.iterations()) * passes * int64_t(s.n()) * 4);
  st.counters["passes"] = passes;
}

// A row-wise copy of the same bytes, rows split over the threads like the kernels'.
void BM_copy(benchmark::State& st) {
  const Shape s(st);
  const std::vector<float> x = random_values(s.n());
  std::vector<float> y(s.n());
  const int D = s.D;
  for (auto _ : st) {
#pragma omp parallel for schedule(static)
    for (int r = 0; r < s.rows; ++r)
      std::memcpy(&y[std::size_t(r) * D], &x[std::size_t(r) * D], std::size_t(D) * 4);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_bytes(st, s, 2);
}

using TokenKernel = void (*)(float*, const float*, const float*, const float*, std::size_t, int,
                             float);

void BM_token_norm(benchmark::State& st, TokenKernel kernel) {
  const Shape s(st);
  const std::vector<float> x = random_values(s.n()), g = random_values(s.D, 2),
                           b = random_values(s.D, 3);
  std::vector<float> y(s.n());
  for (auto _ : st) {
    kernel(y.data(), x.data(), g.data(), b.data(), std::size_t(s.rows), s.D, 1e-5f);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_bytes(st, s, 2);
}

void BM_batch_norm_train(benchmark::State& st) {
  const Shape s(st);
  const std::vector<float> x = random_values(s.n()), g = random_values(s.D, 2),
                           b = random_values(s.D, 3);
  std::vector<float> y(s.n());
  std::vector<double> rm(s.D, 0.0), rv(s.D, 1.0);
  for (auto _ : st) {
    batch_norm_train_kernel(y.data(), rm.data(), rv.data(), x.data(), g.data(), b.data(),
                            std::size_t(s.rows), s.D, 1e-5, 0.1);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_bytes(st, s, 3);
}

// The double references, through the registry (Output is double: they write 2× the bytes).
void BM_reference(benchmark::State& st, const char* name) {
  const Shape s(st);
  Batch in(1, s.rows, s.D);
  in.x = random_values(s.n());
  Params p;
  p.gamma = random_values(s.D, 2);
  p.beta = random_values(s.D, 3);
  const LayerEntry& l = layer(name);
  const Mode mode = l.stateful() ? Mode::train : Mode::none;
  State state{std::vector<double>(s.D, 0.0), std::vector<double>(s.D, 1.0)};
  Output out;
  for (auto _ : st) {
    l.forward(Impl::reference)(in, p, mode, &state, out);
    benchmark::DoNotOptimize(out.data());
  }
  set_bytes(st, s, l.stateful() ? 3 : 2);
}

#ifdef NORMCHECK_HAVE_DNNL
// oneDNN layer_normalization_forward, forward_inference, scale and shift; the primitive is
// created once, only execute() is timed.
void BM_onednn_layer_norm(benchmark::State& st) {
  using dnnl::memory;
  const Shape s(st);
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream strm(eng);
  const memory::desc data({s.rows, s.D}, memory::data_type::f32, memory::format_tag::ab);
  const memory::desc vec({s.D}, memory::data_type::f32, memory::format_tag::a);
  const auto flags = dnnl::normalization_flags::use_scale | dnnl::normalization_flags::use_shift;
  const dnnl::layer_normalization_forward::primitive_desc pd(
      {dnnl::prop_kind::forward_inference, data, 1e-5f, flags}, eng);
  std::vector<float> x = random_values(s.n()), y(s.n()), g = random_values(s.D, 2),
                     b = random_values(s.D, 3);
  const dnnl::layer_normalization_forward prim(pd);
  memory mx(data, eng, x.data()), my(data, eng, y.data()), mg(vec, eng, g.data()),
      mb(vec, eng, b.data());
  for (auto _ : st) {
    prim.execute(strm, {{DNNL_ARG_SRC, mx}, {DNNL_ARG_DST, my}, {DNNL_ARG_SCALE, mg},
                        {DNNL_ARG_SHIFT, mb}});
    strm.wait();
    benchmark::ClobberMemory();
  }
  set_bytes(st, s, 2);
}
#endif

void shapes(benchmark::internal::Benchmark* b) {
  for (int threads : {1, 2})
    for (auto [rows, D] : {std::pair{16384, 1024}, {4096, 4096}, {65536, 128}})
      b->Args({rows, D, threads});
  b->ArgNames({"rows", "D", "threads"})->Unit(benchmark::kMillisecond)->UseRealTime();
}

BENCHMARK(BM_copy)->Apply(shapes);
BENCHMARK_CAPTURE(BM_token_norm, layer_norm, layer_norm_kernel)->Apply(shapes);
BENCHMARK_CAPTURE(BM_token_norm, rms_norm, rms_norm_kernel)->Apply(shapes);
BENCHMARK(BM_batch_norm_train)->Apply(shapes);
#ifdef NORMCHECK_HAVE_DNNL
BENCHMARK(BM_onednn_layer_norm)->Apply(shapes);
#endif
// the references are serial (double, obviously right): 1 thread only
void one_thread(benchmark::internal::Benchmark* b) {
  for (auto [rows, D] : {std::pair{16384, 1024}, {4096, 4096}, {65536, 128}}) b->Args({rows, D, 1});
  b->ArgNames({"rows", "D", "threads"})->Unit(benchmark::kMillisecond)->UseRealTime();
}
BENCHMARK_CAPTURE(BM_reference, layer_norm, "layer_norm")->Apply(one_thread);
BENCHMARK_CAPTURE(BM_reference, rms_norm, "rms_norm")->Apply(one_thread);
BENCHMARK_CAPTURE(BM_reference, batch_norm_train, "batch_norm")->Apply(one_thread);

}  // namespace

BENCHMARK_MAIN();
