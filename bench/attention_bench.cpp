// Attention prefill and decode against a straightforward Eigen implementation, a oneDNN
// matmul-based one and a same-run sgemm (the practical compute peak), at 1 and 2 OpenMP threads
// (the last argument).
//   prefill GFLOP/s: 4·B·H·T²·dh (q·kᵀ and p·v), halved when causal; B = 1, H = 8, dh = 64
//   decode GB/s:     the K and V cache bytes read (2·H·Tk·dh·4), one query against Tk = 4096
//   sgemm GFLOP/s:   2·N³
#include <benchmark/benchmark.h>
#include <omp.h>

#include <Eigen/Dense>
#include <cmath>
#include <cstring>
#include <limits>
#include <cstdint>

#include "attention/sdpa.hpp"
#include "bench/common.hpp"

#ifdef NORMCHECK_HAVE_DNNL
#include <oneapi/dnnl/dnnl.hpp>
#endif

namespace {

using namespace normcheck;

constexpr int kH = 8, kDh = 64;

using bench::random_values;

struct Prefill {
  int T, causal, threads;
  std::vector<float> q, k, v;
  explicit Prefill(benchmark::State& st)
      : T(int(st.range(0))), causal(int(st.range(1))), threads(int(st.range(2))) {
    omp_set_num_threads(threads);
    Eigen::setNbThreads(threads);
    const std::size_t n = std::size_t(kH) * T * kDh;
    q = random_values(n, 1);
    k = random_values(n, 2);
    v = random_values(n, 3);
  }
  double flops() const { return 4.0 * kH * double(T) * T * kDh * (causal ? 0.5 : 1.0); }
};

void set_flops(benchmark::State& st, double flops) {
  st.counters["FLOPS"] = benchmark::Counter(flops * double(st.iterations()),
                                            benchmark::Counter::kIsRate);
}

void BM_sdpa_optimized(benchmark::State& st) {
  Prefill p(st);
  const SdpaShape s{1, kH, p.T, p.T, kDh, kDh, 0};
  SdpaMask m;
  m.causal = p.causal;
  std::vector<float> out;
  for (auto _ : st) {
    sdpa_optimized(out, nullptr, p.q, p.k, p.v, s, m, default_scale(kDh));
    benchmark::DoNotOptimize(out.data());
  }
  set_flops(st, p.flops());
}

void BM_sdpa_reference(benchmark::State& st) {
  Prefill p(st);
  const SdpaShape s{1, kH, p.T, p.T, kDh, kDh, 0};
  SdpaMask m;
  m.causal = p.causal;
  std::vector<double> out;
  for (auto _ : st) {
    sdpa_reference(out, nullptr, p.q, p.k, p.v, s, m, default_scale(kDh));
    benchmark::DoNotOptimize(out.data());
  }
  set_flops(st, p.flops());
}

// What one writes first with Eigen: per head S = scale·Q·Kᵀ (the full T×T, masked after),
// row softmax, O = P·V; heads in parallel (Eigen's own GEMM threads off inside the region).
void BM_eigen_materialized(benchmark::State& st) {
  Prefill p(st);
  using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const int T = p.T;
  const float scale = float(default_scale(kDh));
  std::vector<float> out(std::size_t(kH) * T * kDh);
  std::vector<Mat> S(kH, Mat(T, T));
  for (auto _ : st) {
#pragma omp parallel for schedule(static)
    for (int h = 0; h < kH; ++h) {
      const std::size_t off = std::size_t(h) * T * kDh;
      Eigen::Map<const Mat> Q(p.q.data() + off, T, kDh), K(p.k.data() + off, T, kDh),
          V(p.v.data() + off, T, kDh);
      Eigen::Map<Mat> O(out.data() + off, T, kDh);
      Mat& s = S[h];
      s.noalias() = scale * (Q * K.transpose());
      for (int i = 0; i < T; ++i) {
        auto row = s.row(i);
        const int n = p.causal ? i + 1 : T;
        if (n < T) row.tail(T - n).setZero();
        const float mx = row.head(n).maxCoeff();
        row.head(n) = (row.head(n).array() - mx).exp();
        row.head(n) /= row.head(n).sum();
      }
      O.noalias() = s * V;
    }
    benchmark::DoNotOptimize(out.data());
  }
  set_flops(st, p.flops());
}

void BM_sgemm_eigen(benchmark::State& st) {
  const int N = int(st.range(0)), threads = int(st.range(1));
  omp_set_num_threads(threads);
  Eigen::setNbThreads(threads);
  Eigen::MatrixXf A = Eigen::MatrixXf::Random(N, N), B = Eigen::MatrixXf::Random(N, N), C(N, N);
  for (auto _ : st) {
    C.noalias() = A * B;
    benchmark::DoNotOptimize(C.data());
  }
  set_flops(st, 2.0 * N * N * N);
}

#ifdef NORMCHECK_HAVE_DNNL
using dnnl::memory;

void BM_sgemm_onednn(benchmark::State& st) {
  const int N = int(st.range(0)), threads = int(st.range(1));
  omp_set_num_threads(threads);
  const std::vector<float> A = random_values(std::size_t(N) * N, 1),
                           B = random_values(std::size_t(N) * N, 2);
  std::vector<float> C(std::size_t(N) * N);
  for (auto _ : st) {
    dnnl::sgemm('N', 'N', N, N, N, 1.0f, A.data(), N, B.data(), N, 0.0f, C.data(), N);
    benchmark::DoNotOptimize(C.data());
  }
  set_flops(st, 2.0 * N * N * N);
}

// oneDNN primitives: batched matmul S = scale·Q·Kᵀ (+ a 0/−inf causal mask, binary add),
// softmax over the last axis, batched matmul O = P·V. Primitives created once.
void BM_onednn_matmul(benchmark::State& st) {
  Prefill p(st);
  const memory::dim H = kH, T = p.T, d = kDh;
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream strm(eng);
  const auto f32 = memory::data_type::f32;
  const memory::desc q_md({H, T, d}, f32, memory::format_tag::abc);
  const memory::desc kt_md({H, d, T}, f32, memory::format_tag::acb);  // K [H, T, d] read as Kᵀ
  const memory::desc s_md({H, T, T}, f32, memory::format_tag::abc);
  const memory::desc v_md({H, T, d}, f32, memory::format_tag::abc);
  const memory::desc mask_md({1, T, T}, f32, memory::format_tag::abc);
  dnnl::primitive_attr attr;
  attr.set_output_scales(0, {float(default_scale(kDh))});
  std::vector<float> mask;
  if (p.causal) {
    mask.assign(std::size_t(T) * T, 0.0f);
    for (memory::dim i = 0; i < T; ++i)
      for (memory::dim j = i + 1; j < T; ++j)
        mask[i * T + j] = -std::numeric_limits<float>::infinity();
  }
  const dnnl::matmul qk(dnnl::matmul::primitive_desc({q_md, kt_md, s_md}, attr, eng));
  // the causal mask as its own binary primitive (as a matmul post-op, oneDNN 2.6 falls back to
  // a reference kernel: 0.1 GFLOP/s, no fair baseline)
  const dnnl::binary add_mask(dnnl::binary::primitive_desc(
      {dnnl::algorithm::binary_add, s_md, mask_md, s_md}, eng));
  const dnnl::softmax_forward softmax(dnnl::softmax_forward::primitive_desc(
      {dnnl::prop_kind::forward_inference, s_md, 2}, eng));
  const dnnl::matmul pv(dnnl::matmul::primitive_desc({s_md, v_md, q_md}, eng));
  std::vector<float> scores(std::size_t(H) * T * T), out(std::size_t(H) * T * d);
  memory mq(q_md, eng, p.q.data()), mk(kt_md, eng, p.k.data()), mv(v_md, eng, p.v.data()),
      ms(s_md, eng, scores.data()), mo(q_md, eng, out.data()),
      mm(mask_md, eng, mask.empty() ? nullptr : mask.data());
  std::unordered_map<int, memory> qk_args{{DNNL_ARG_SRC, mq}, {DNNL_ARG_WEIGHTS, mk},
                                          {DNNL_ARG_DST, ms}};
  for (auto _ : st) {
    qk.execute(strm, qk_args);
    if (p.causal) add_mask.execute(strm, {{DNNL_ARG_SRC_0, ms}, {DNNL_ARG_SRC_1, mm}, {DNNL_ARG_DST, ms}});
    softmax.execute(strm, {{DNNL_ARG_SRC, ms}, {DNNL_ARG_DST, ms}});
    pv.execute(strm, {{DNNL_ARG_SRC, ms}, {DNNL_ARG_WEIGHTS, mv}, {DNNL_ARG_DST, mo}});
    strm.wait();
    benchmark::ClobberMemory();
  }
  set_flops(st, p.flops());
}
#endif

// Decode: one query per head against a full KV cache (the optimized kernel, bottom-right causal
// = every key), and a copy of the same cache bytes as the bandwidth ceiling.
constexpr int kCache = 4096;

void set_cache_bytes(benchmark::State& st, int passes) {
  st.SetBytesProcessed(int64_t(st.iterations()) * passes * 2LL * kH * kCache * kDh * 4);
}

void BM_decode_optimized(benchmark::State& st) {
  omp_set_num_threads(int(st.range(0)));
  KvCache<float> cache(1, kH, kDh, kDh, kCache);
  cache.append(random_values(std::size_t(kH) * kCache * kDh, 2),
               random_values(std::size_t(kH) * kCache * kDh, 3), kCache);
  const std::vector<float> q = random_values(std::size_t(kH) * kDh, 1);
  SdpaMask m;
  m.causal = true;
  std::vector<float> out;
  for (auto _ : st) {
    sdpa_optimized(out, nullptr, q, cache.keys(), cache.values(), cache.shape_for(1), m,
                   default_scale(kDh));
    benchmark::DoNotOptimize(out.data());
  }
  set_cache_bytes(st, 1);
}

void BM_decode_copy(benchmark::State& st) {
  omp_set_num_threads(int(st.range(0)));
  const std::size_t n = 2ULL * kH * kCache * kDh, rows = n / kDh;
  const std::vector<float> x = random_values(n, 1);
  std::vector<float> y(n);
  for (auto _ : st) {
#pragma omp parallel for schedule(static)
    for (long long r = 0; r < (long long)rows; ++r)
      std::memcpy(&y[r * kDh], &x[r * kDh], kDh * 4);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_cache_bytes(st, 2);
}

void prefill_shapes(benchmark::internal::Benchmark* b) {
  for (int threads : {1, 2})
    for (int T : {512, 2048})
      for (int causal : {0, 1}) b->Args({T, causal, threads});
  b->ArgNames({"T", "causal", "threads"})->Unit(benchmark::kMillisecond)->UseRealTime();
}

void threads_only(benchmark::internal::Benchmark* b) {
  b->ArgNames({"threads"})->Arg(1)->Arg(2)->Unit(benchmark::kMicrosecond)->UseRealTime();
}

BENCHMARK(BM_sdpa_optimized)->Apply(prefill_shapes);
BENCHMARK(BM_eigen_materialized)->Apply(prefill_shapes);
#ifdef NORMCHECK_HAVE_DNNL
BENCHMARK(BM_onednn_matmul)->Apply(prefill_shapes);
BENCHMARK(BM_sgemm_onednn)->ArgNames({"N", "threads"})->Args({1024, 1})->Args({1024, 2})
    ->Unit(benchmark::kMillisecond)->UseRealTime();
#endif
BENCHMARK(BM_sgemm_eigen)->ArgNames({"N", "threads"})->Args({1024, 1})->Args({1024, 2})
    ->Unit(benchmark::kMillisecond)->UseRealTime();
// the double reference materializes T×T too: T = 512 only (T = 2048 takes seconds)
BENCHMARK(BM_sdpa_reference)->ArgNames({"T", "causal", "threads"})->Args({512, 0, 1})
    ->Args({512, 1, 1})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_decode_optimized)->Apply(threads_only);
BENCHMARK(BM_decode_copy)->Apply(threads_only);

}  // namespace

BENCHMARK_MAIN();
