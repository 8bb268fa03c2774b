// Attention prefill and decode in interleaved rounds (bench/common.hpp), at 1 and 2 OpenMP
// threads (the last argument). A prefill group runs, once per round each: the optimized kernel,
// oneDNN's matmul + softmax + matmul, an Eigen implementation that materializes the T×T scores,
// and an sgemm of 1024³ by oneDNN and by Eigen (the practical compute peak of the same round);
// a decode group runs the decode kernel, a streaming copy of the same K and V bytes and two
// streaming reads of them (bench/common.hpp). Decode groups start every timed call with empty
// caches (Caches::cold: K and V fit in the L3), prefill groups with warm ones.
//   prefill GFLOP/s: 4·B·H·T²·dh (q·kᵀ and p·v), halved when causal; B = 1, H = 8, dh = 64
//   decode GB/s:     the K and V cache bytes read (2·H·Tk·dh·4), one query against Tk = 4096
//   copy GB/s:       bytes moved (read and written: twice the cache bytes)
//   sgemm GFLOP/s:   2·N³
// Counters: each candidate's median rate and each ratio's median over the rounds, with
// quartiles and extremes (name@q1, @q3, @min, @max), and others_cores (bench/common.hpp).
// The double reference runs alone, T = 512, 1 thread.
#include <benchmark/benchmark.h>
#include <omp.h>

#include <Eigen/Dense>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <unordered_map>

#include "attention/sdpa.hpp"
#include "bench/common.hpp"

#ifdef NORMCHECK_HAVE_DNNL
#include <oneapi/dnnl/dnnl.hpp>
#endif

namespace {

using namespace normcheck;
using bench::Candidate;
using bench::random_values;

// The instruction-set path the kernels run (norms/kernels_api.hpp), in the JSON context.
const bool kPathNoted = bench::note_kernel_path();
const bool kEvictionNoted = bench::note_cache_eviction();

constexpr int kH = 8, kDh = 64, kGemmN = 1024;

int rounds(int fallback) {
  const char* e = std::getenv("NORMCHECK_BENCH_ROUNDS");
  return e && std::atoi(e) > 0 ? std::atoi(e) : fallback;
}

using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

void BM_prefill(benchmark::State& st) {
  const int T = int(st.range(0)), threads = int(st.range(2));
  const bool causal = st.range(1) != 0;
  omp_set_num_threads(threads);
  Eigen::setNbThreads(threads);
  const std::size_t n = std::size_t(kH) * T * kDh;
  const std::vector<float> q = random_values(n, 1), k = random_values(n, 2), v = random_values(n, 3);
  const double flops = 4.0 * kH * double(T) * T * kDh * (causal ? 0.5 : 1.0);
  const float scale = float(default_scale(kDh));
  std::vector<Candidate> cs;

  const SdpaShape s{1, kH, T, T, kDh, kDh, 0};
  SdpaMask mask;
  mask.causal = causal;
  std::vector<float> out;
  cs.push_back({"sdpa", flops, [&] { sdpa_optimized(out, nullptr, q, k, v, s, mask, default_scale(kDh)); }});

  // What one writes first with Eigen: per head S = scale·Q·Kᵀ (the full T×T, masked after),
  // row softmax, O = P·V; heads in parallel (Eigen's own GEMM threads off inside the region).
  std::vector<float> eout(n);
  std::vector<Mat> S(kH, Mat(T, T));
  cs.push_back({"eigen", flops, [&] {
#pragma omp parallel for schedule(static)
                  for (int h = 0; h < kH; ++h) {
                    const std::size_t off = std::size_t(h) * T * kDh;
                    Eigen::Map<const Mat> Q(q.data() + off, T, kDh), K(k.data() + off, T, kDh),
                        V(v.data() + off, T, kDh);
                    Eigen::Map<Mat> O(eout.data() + off, T, kDh);
                    Mat& sc = S[h];
                    sc.noalias() = scale * (Q * K.transpose());
                    for (int i = 0; i < T; ++i) {
                      auto row = sc.row(i);
                      const int nv = causal ? i + 1 : T;
                      if (nv < T) row.tail(T - nv).setZero();
                      const float mx = row.head(nv).maxCoeff();
                      row.head(nv) = (row.head(nv).array() - mx).exp();
                      row.head(nv) /= row.head(nv).sum();
                    }
                    O.noalias() = sc * V;
                  }
                }});

  Eigen::MatrixXf A = Eigen::MatrixXf::Random(kGemmN, kGemmN), Bm = Eigen::MatrixXf::Random(kGemmN, kGemmN),
                  C(kGemmN, kGemmN);
  const double gemm_flops = 2.0 * kGemmN * double(kGemmN) * kGemmN;
  cs.push_back({"sgemm_eigen", gemm_flops, [&] { C.noalias() = A * Bm; }});

#ifdef NORMCHECK_HAVE_DNNL
  using dnnl::memory;
  const std::vector<float> ga = random_values(std::size_t(kGemmN) * kGemmN, 1),
                           gb = random_values(std::size_t(kGemmN) * kGemmN, 2);
  std::vector<float> gc(std::size_t(kGemmN) * kGemmN);
  cs.push_back({"sgemm_onednn", gemm_flops, [&] {
                  dnnl::sgemm('N', 'N', kGemmN, kGemmN, kGemmN, 1.0f, ga.data(), kGemmN, gb.data(),
                              kGemmN, 0.0f, gc.data(), kGemmN);
                }});

  // oneDNN primitives: batched matmul S = scale·Q·Kᵀ (+ a 0/−inf causal mask, binary add),
  // softmax over the last axis, batched matmul O = P·V. Primitives created once.
  const memory::dim H = kH, TT = T, d = kDh;
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream strm(eng);
  const auto f32 = memory::data_type::f32;
  const memory::desc q_md({H, TT, d}, f32, memory::format_tag::abc);
  const memory::desc kt_md({H, d, TT}, f32, memory::format_tag::acb);  // K [H, T, d] read as Kᵀ
  const memory::desc s_md({H, TT, TT}, f32, memory::format_tag::abc);
  const memory::desc v_md({H, TT, d}, f32, memory::format_tag::abc);
  const memory::desc mask_md({1, TT, TT}, f32, memory::format_tag::abc);
  dnnl::primitive_attr attr;
  attr.set_output_scales(0, {scale});
  std::vector<float> tri;
  if (causal) {
    tri.assign(std::size_t(T) * T, 0.0f);
    for (int i = 0; i < T; ++i)
      for (int j = i + 1; j < T; ++j) tri[std::size_t(i) * T + j] = -std::numeric_limits<float>::infinity();
  }
  const dnnl::matmul qk(dnnl::matmul::primitive_desc({q_md, kt_md, s_md}, attr, eng));
  // the causal mask as its own binary primitive (as a matmul post-op, oneDNN 2.6 falls back to
  // a reference kernel: 0.1 GFLOP/s, no fair baseline)
  const dnnl::binary add_mask(dnnl::binary::primitive_desc({dnnl::algorithm::binary_add, s_md, mask_md, s_md}, eng));
  const dnnl::softmax_forward softmax(dnnl::softmax_forward::primitive_desc(
      {dnnl::prop_kind::forward_inference, s_md, 2}, eng));
  const dnnl::matmul pv(dnnl::matmul::primitive_desc({s_md, v_md, q_md}, eng));
  std::vector<float> scores(std::size_t(H) * T * T), dout(n);
  memory mq(q_md, eng, const_cast<float*>(q.data())), mk(kt_md, eng, const_cast<float*>(k.data())),
      mv(v_md, eng, const_cast<float*>(v.data())), ms(s_md, eng, scores.data()), mo(q_md, eng, dout.data()),
      mm(mask_md, eng, tri.empty() ? nullptr : tri.data());
  cs.push_back({"onednn", flops, [&] {
                  qk.execute(strm, {{DNNL_ARG_SRC, mq}, {DNNL_ARG_WEIGHTS, mk}, {DNNL_ARG_DST, ms}});
                  if (causal)
                    add_mask.execute(strm, {{DNNL_ARG_SRC_0, ms}, {DNNL_ARG_SRC_1, mm}, {DNNL_ARG_DST, ms}});
                  softmax.execute(strm, {{DNNL_ARG_SRC, ms}, {DNNL_ARG_DST, ms}});
                  pv.execute(strm, {{DNNL_ARG_SRC, ms}, {DNNL_ARG_WEIGHTS, mv}, {DNNL_ARG_DST, mo}});
                  strm.wait();
                }});
#endif
  bench::Rounds r(std::move(cs), bench::Caches::warm);
  r.run(st);
  r.ratio(st, "sdpa/eigen", "sdpa", {"eigen"});
#ifdef NORMCHECK_HAVE_DNNL
  r.ratio(st, "sdpa/onednn", "sdpa", {"onednn"});
  r.ratio(st, "sdpa/sgemm", "sdpa", {"sgemm_eigen", "sgemm_onednn"});
#else
  r.ratio(st, "sdpa/sgemm", "sdpa", {"sgemm_eigen"});
#endif
}

void prefill_shapes(benchmark::internal::Benchmark* b) {
  for (int threads : {1, 2})
    for (int T : {512, 2048})
      for (int causal : {0, 1}) b->Args({T, causal, threads});
  b->ArgNames({"T", "causal", "threads"})->Iterations(rounds(15))->UseManualTime()
      ->Unit(benchmark::kMillisecond);
}
BENCHMARK(BM_prefill)->Apply(prefill_shapes);

// Decode: one query per head against a full KV cache (bottom-right causal = every key), a
// streaming copy of the same cache bytes as the bandwidth ceiling, and a streaming read of them
// (the faster of the two prefetch variants in each round): decode only reads, so the read says
// how much of the gap to the copy is the reads alone.
constexpr int kCache = 4096;

void BM_decode(benchmark::State& st) {
  omp_set_num_threads(int(st.range(0)));
  KvCache<float> cache(1, kH, kDh, kDh, kCache);
  cache.append(random_values(std::size_t(kH) * kCache * kDh, 2),
               random_values(std::size_t(kH) * kCache * kDh, 3), kCache);
  const std::vector<float> q = random_values(std::size_t(kH) * kDh, 1);
  SdpaMask m;
  m.causal = true;
  std::vector<float> out;
  const double bytes = 2.0 * kH * kCache * kDh * sizeof(float);
  const std::size_t n = 2ULL * kH * kCache * kDh;
  bench::Buffer x(n, 1), y(n);
  std::vector<Candidate> cs;
  cs.push_back({"decode", bytes, [&] {
                  sdpa_optimized(out, nullptr, q, cache.keys(), cache.values(), cache.shape_for(1), m,
                                 default_scale(kDh));
                }});
  cs.push_back({"copy", 2 * bytes, [&] { bench::stream_copy(y.data(), x.data(), n); }});
  cs.push_back({"read", bytes, [&] { bench::stream_read(x.data(), n); }});
  cs.push_back({"read_hw", bytes, [&] { bench::stream_read(x.data(), n, bench::ReadPrefetch::none); }});
  bench::Rounds r(std::move(cs), bench::Caches::cold);
  r.run(st);
  r.ratio(st, "decode/copy", "decode", {"copy"});
  r.ratio(st, "decode/read", "decode", {"read", "read_hw"});
  r.ratio(st, "read/copy", "read", {"copy"});
  r.ratio(st, "read_hw/copy", "read_hw", {"copy"});
}
BENCHMARK(BM_decode)->ArgNames({"threads"})->Arg(1)->Arg(2)->Iterations(rounds(301))->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

// the double reference materializes T×T too: T = 512 only (T = 2048 takes seconds)
void BM_sdpa_reference(benchmark::State& st) {
  omp_set_num_threads(1);
  const int T = 512;
  const std::size_t n = std::size_t(kH) * T * kDh;
  const std::vector<float> q = random_values(n, 1), k = random_values(n, 2), v = random_values(n, 3);
  const SdpaShape s{1, kH, T, T, kDh, kDh, 0};
  SdpaMask m;
  m.causal = st.range(0) != 0;
  std::vector<double> out;
  for (auto _ : st) {
    sdpa_reference(out, nullptr, q, k, v, s, m, default_scale(kDh));
    benchmark::DoNotOptimize(out.data());
  }
  st.counters["FLOPS"] = benchmark::Counter(4.0 * kH * double(T) * T * kDh * (m.causal ? 0.5 : 1.0) *
                                                double(st.iterations()),
                                            benchmark::Counter::kIsRate);
}
BENCHMARK(BM_sdpa_reference)->ArgNames({"causal"})->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
