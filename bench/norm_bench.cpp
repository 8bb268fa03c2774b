// Norm kernels against the streaming copy and oneDNN, in interleaved rounds (bench/common.hpp),
// at 1 and 2 OpenMP threads (the last argument); their backward kernels against the copy in
// groups of their own (BM_backward, below). One benchmark per shape and thread count runs
// every candidate once per round; its counters are each candidate's median rate and each ratio's
// median, with quartiles and extremes (name@q1, @q3, @min, @max) and the CPU other processes
// used meanwhile (others_cores). The optimized kernels are the raw float32 ones
// (norms/kernels_api.hpp), not the registry's double-widening adapters.
// Rates are bytes moved per second, from the minimum bytes a kernel must move (rows·D·4 = one
// pass over x):
//   copy, layer_norm, rms_norm, oneDNN LN:  read x, write y                     = 2 passes
//   batch_norm train:  read x (statistics), read x again (normalize: the statistics must be
//                      complete before the first output, and x does not fit in L2), write y
//                                                                               = 3 passes
// so batch_norm / copy is batch norm against the copy scaled to its 3 passes. (γ, β and the
// running statistics are O(D): not counted.) The double references run alone, 1 thread.
#include <benchmark/benchmark.h>
#include <omp.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "bench/common.hpp"
#include "norms/batch_norm.hpp"
#include "norms/kernels_api.hpp"
#include "norms/registry.hpp"

#ifdef NORMCHECK_HAVE_DNNL
#include <oneapi/dnnl/dnnl.hpp>
#endif

namespace {

using namespace normcheck;
using bench::Buffer;
using bench::Candidate;

// The instruction-set path the kernels run (norms/kernels_api.hpp), in the JSON context.
const bool kPathNoted = bench::note_kernel_path();
const bool kEvictionNoted = bench::note_cache_eviction();

// Rounds per group: NORMCHECK_BENCH_ROUNDS, else the default (the smoke test uses 2).
int rounds(int fallback) {
  const char* e = std::getenv("NORMCHECK_BENCH_ROUNDS");
  return e && std::atoi(e) > 0 ? std::atoi(e) : fallback;
}

void BM_norms(benchmark::State& st) {
  const int rows = int(st.range(0)), D = int(st.range(1)), threads = int(st.range(2));
  omp_set_num_threads(threads);
  const std::size_t n = std::size_t(rows) * D;
  const double pass = double(n) * sizeof(float);
  Buffer x(n, 1), y(n), g(D, 2), b(D, 3);
  std::vector<double> rm(D, 0.0), rv(D, 1.0);
  std::vector<Candidate> cs;
  cs.push_back({"copy", 2 * pass, [&] { bench::stream_copy(y.data(), x.data(), n); }});
  cs.push_back({"layer_norm", 2 * pass, [&] {
                  layer_norm_kernel(y.data(), x.data(), g.data(), b.data(), std::size_t(rows), D, 1e-5f);
                }});
  cs.push_back({"rms_norm", 2 * pass, [&] {
                  rms_norm_kernel(y.data(), x.data(), g.data(), b.data(), std::size_t(rows), D, 1e-5f);
                }});
  cs.push_back({"batch_norm", 3 * pass, [&] {
                  batch_norm_train_kernel(y.data(), rm.data(), rv.data(), x.data(), g.data(),
                                          b.data(), std::size_t(rows), D, 1e-5, 0.1);
                }});
#ifdef NORMCHECK_HAVE_DNNL
  // oneDNN layer_normalization_forward, forward_inference, scale and shift; the primitive is
  // created once, only execute() is timed.
  using dnnl::memory;
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream strm(eng);
  const memory::desc data({rows, D}, memory::data_type::f32, memory::format_tag::ab);
  const memory::desc vec({D}, memory::data_type::f32, memory::format_tag::a);
  const auto flags = dnnl::normalization_flags::use_scale | dnnl::normalization_flags::use_shift;
  const dnnl::layer_normalization_forward prim(dnnl::layer_normalization_forward::primitive_desc(
      {dnnl::prop_kind::forward_inference, data, 1e-5f, flags}, eng));
  memory mx(data, eng, x.data()), my(data, eng, y.data()), mg(vec, eng, g.data()),
      mb(vec, eng, b.data());
  cs.push_back({"onednn_ln", 2 * pass, [&] {
                  prim.execute(strm, {{DNNL_ARG_SRC, mx}, {DNNL_ARG_DST, my}, {DNNL_ARG_SCALE, mg},
                                      {DNNL_ARG_SHIFT, mb}});
                  strm.wait();
                }});
#endif
  bench::Rounds r(std::move(cs), bench::Caches::cold);
  r.run(st);
  r.ratio(st, "layer_norm/copy", "layer_norm", {"copy"});
  r.ratio(st, "rms_norm/copy", "rms_norm", {"copy"});
  r.ratio(st, "batch_norm/copy", "batch_norm", {"copy"});
#ifdef NORMCHECK_HAVE_DNNL
  r.ratio(st, "layer_norm/onednn_ln", "layer_norm", {"onednn_ln"});
  r.ratio(st, "rms_norm/onednn_ln", "rms_norm", {"onednn_ln"});
#endif
}

constexpr std::pair<int, int> kShapes[] = {{16384, 1024}, {4096, 4096}, {65536, 128}, {262144, 64}};

void shapes(benchmark::internal::Benchmark* b) {
  for (int threads : {1, 2})
    for (auto [rows, D] : kShapes) b->Args({rows, D, threads});
  b->ArgNames({"rows", "D", "threads"})->Iterations(rounds(41))->UseManualTime()
      ->Unit(benchmark::kMillisecond);
}
BENCHMARK(BM_norms)->Apply(shapes);

// The backward kernels (norms/kernels_api.hpp) against the same streaming copy, in groups of their
// own at the forward's shapes and thread counts. Bytes counted (pass = rows·D·4, as above):
//   copy:                          read x, write dx                                 = 2 passes
//   stream_add:                    read dy and x, write dx (the backward's own mix) = 3 passes
//   layer_norm_bw, rms_norm_bw:    read dy and x, write dx (a token's statistics, its reductions
//                                  over dy·x̂ and its output pass work on a row in cache)
//                                                                                   = 3 passes
//   batch_norm_bw (train):         read dy and x (Σ dy, Σ dy·(x − μ) per feature over all rows),
//                                  read them again (dx needs the complete sums, and dy and x do
//                                  not fit in L2), write dx                         = 5 passes
// so a ratio against the copy is the kernel against the copy scaled to its passes, as batch_norm's
// 3 passes above. γ, dγ, dβ and the per-segment double accumulators are O(D): not counted.
// batch_norm's mean and var (the forward's batch statistics, an input of its backward) are
// computed once, untimed.
void BM_backward(benchmark::State& st) {
  const int rows = int(st.range(0)), D = int(st.range(1)), threads = int(st.range(2));
  omp_set_num_threads(threads);
  const std::size_t n = std::size_t(rows) * D;
  const double pass = double(n) * sizeof(float);
  Buffer dy(n, 4), x(n, 1), dx(n), g(D, 2), dg(D), db(D);
  std::vector<double> mean(D), var(D);
  batch_norm_statistics_kernel(mean.data(), var.data(), x.data(), 1, rows, D, nullptr);
  std::vector<Candidate> cs;
  cs.push_back({"copy", 2 * pass, [&] { bench::stream_copy(dx.data(), x.data(), n); }});
  cs.push_back({"stream_add", 3 * pass, [&] { bench::stream_add(dx.data(), dy.data(), x.data(), n); }});
  cs.push_back({"layer_norm_bw", 3 * pass, [&] {
                  layer_norm_backward_kernel(dx.data(), dg.data(), db.data(), dy.data(), x.data(),
                                             g.data(), std::size_t(rows), D, 1e-5f);
                }});
  cs.push_back({"rms_norm_bw", 3 * pass, [&] {
                  rms_norm_backward_kernel(dx.data(), dg.data(), db.data(), dy.data(), x.data(),
                                           g.data(), std::size_t(rows), D, 1e-5f);
                }});
  cs.push_back({"batch_norm_bw", 5 * pass, [&] {
                  batch_norm_backward_kernel(dx.data(), dg.data(), db.data(), dy.data(), x.data(),
                                             g.data(), 1, rows, D, nullptr, mean.data(), var.data(),
                                             1e-5, true);
                }});
  bench::Rounds r(std::move(cs), bench::Caches::cold);
  r.run(st);
  for (const char* k : {"layer_norm_bw", "rms_norm_bw", "batch_norm_bw"}) {
    r.ratio(st, std::string(k) + "/copy", k, {"copy"});
    r.ratio(st, std::string(k) + "/stream_add", k, {"stream_add"});
  }
  r.ratio(st, "stream_add/copy", "stream_add", {"copy"});
}
BENCHMARK(BM_backward)->Apply(shapes);

// The double references, through the registry (Output is double: they write 2× the bytes).
void BM_reference(benchmark::State& st, const char* name) {
  const int rows = int(st.range(0)), D = int(st.range(1));
  omp_set_num_threads(1);
  Batch in(1, rows, D);
  in.x = bench::random_values(std::size_t(rows) * D);
  Params p;
  p.gamma = bench::random_values(D, 2);
  p.beta = bench::random_values(D, 3);
  const LayerEntry& l = layer(name);
  const Mode mode = l.stateful() ? Mode::train : Mode::none;
  State state{std::vector<double>(D, 0.0), std::vector<double>(D, 1.0)};
  Output out;
  for (auto _ : st) {
    l.forward(Impl::reference)(in, p, mode, &state, out);
    benchmark::DoNotOptimize(out.data());
  }
  st.SetBytesProcessed(int64_t(st.iterations()) * (l.stateful() ? 3 : 2) * int64_t(in.x.size()) * 4);
}
void one_thread(benchmark::internal::Benchmark* b) {
  for (auto [rows, D] : kShapes) b->Args({rows, D});
  b->ArgNames({"rows", "D"})->Unit(benchmark::kMillisecond)->UseRealTime();
}
BENCHMARK_CAPTURE(BM_reference, layer_norm, "layer_norm")->Apply(one_thread);
BENCHMARK_CAPTURE(BM_reference, rms_norm, "rms_norm")->Apply(one_thread);
BENCHMARK_CAPTURE(BM_reference, batch_norm_train, "batch_norm")->Apply(one_thread);

}  // namespace

BENCHMARK_MAIN();
