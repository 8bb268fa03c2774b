// What both benchmark programs share: the input data, 64-byte-aligned buffers, the streaming
// copy (the memory ceiling every kernel is measured against) and its two-reads-one-write variant
// (the backward kernels' mix), the interleaved rounds that give same-run ratios, and the CPU
// time other processes took while a group ran.
#pragma once

#include <benchmark/benchmark.h>
#include <immintrin.h>
#include <omp.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "norms/kernels_api.hpp"

namespace normcheck::bench {

inline bool note_kernel_path() {
  benchmark::AddCustomContext("kernel_path", to_string(kernel_path()));
  return true;
}

// n values uniform in [-2, 2) from a 64-bit LCG (filling 16M values must not dominate the run);
// the same seed gives the same values in every program.
inline void fill_random(float* v, std::size_t n, unsigned seed = 1) {
  std::uint64_t state = 0x9E3779B97F4A7C15ULL * (seed + 1);
  for (std::size_t i = 0; i < n; ++i) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    v[i] = float(state >> 40) * (4.0f / 16777216.0f) - 2.0f;
  }
}

inline std::vector<float> random_values(std::size_t n, unsigned seed = 1) {
  std::vector<float> v(n);
  fill_random(v.data(), n, seed);
  return v;
}

// n floats at a 64-byte boundary (every candidate of a group gets the same alignment: glibc's
// large allocations start 16 bytes into a page, which splits every 64-byte vector).
class Buffer {
 public:
  explicit Buffer(std::size_t n, int seed = -1)
      : n_(n), p_(static_cast<float*>(std::aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64))) {
    if (!p_) throw std::bad_alloc();
    if (seed >= 0)
      fill_random(p_.get(), n, unsigned(seed));
    else
      std::fill_n(p_.get(), n, 0.0f);  // touched: no page faults inside a timed call
  }
  float* data() { return p_.get(); }
  const float* data() const { return p_.get(); }
  std::size_t size() const { return n_; }

 private:
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  std::size_t n_;
  std::unique_ptr<float, Free> p_;
};

// ---------------------------------------------------------------------------------------------
// The vector primitives of each width the streaming kernels use — aligned load, add and
// non-temporal store, overloaded on the vector type (__m512: AVX-512, __m256: AVX, __m128: SSE),
// each compiled for its instruction set.
[[gnu::target("avx512f")]] inline __m512 load(const float* p, __m512) { return _mm512_load_ps(p); }
[[gnu::target("avx")]] inline __m256 load(const float* p, __m256) { return _mm256_load_ps(p); }
inline __m128 load(const float* p, __m128) { return _mm_load_ps(p); }
[[gnu::target("avx512f")]] inline __m512 add(__m512 a, __m512 b) { return _mm512_add_ps(a, b); }
[[gnu::target("avx")]] inline __m256 add(__m256 a, __m256 b) { return _mm256_add_ps(a, b); }
inline __m128 add(__m128 a, __m128 b) { return _mm_add_ps(a, b); }
[[gnu::target("avx512f")]] inline void stream(float* p, __m512 v) { _mm512_stream_ps(p, v); }
[[gnu::target("avx")]] inline void stream(float* p, __m256 v) { _mm256_stream_ps(p, v); }
inline void stream(float* p, __m128 v) { _mm_stream_ps(p, v); }

// d[i] = f(i) for i in [0, n) through non-temporal stores, f(i) giving the vector V of the
// values i…i+W−1: U vectors at a time, then one at a time, then fs(i), the value i alone, for
// the tail. d must be aligned to V. f and fs must hold their source pointers by value: with a
// closure capturing them by reference GCC reloaded the pointer from the stack before every load
// and held the U vectors in a stack array, and on the AMD EPYC Zen 5 host the copy then ran at
// 0.73–0.86 of the same loop in registers in 5 of 7 processes, at par in the others: the same
// binary, so most likely where ASLR put the stack (a stack slot 4K-aliasing the stores). With
// the pointers in registers, 0.95–1.01 in 5 of 5.
template <class V, int U, class F, class FS>
inline void stream_range(float* d, std::size_t n, F f, FS fs) {
  constexpr std::size_t W = sizeof(V) / sizeof(float);
  std::size_t i = 0;
  for (; i + U * W <= n; i += U * W)
    for (int u = 0; u < U; ++u) stream(d + i + u * W, f(i + u * W));
  for (; i + W <= n; i += W) stream(d + i, f(i));
  for (; i < n; ++i) d[i] = fs(i);
}

// body(V{}) in a function compiled for V's instruction set, with everything it calls inlined
// into it (flatten): the primitives above are only inlined into code of their own target.
template <class Body>
__attribute__((target("avx512f"), flatten)) inline void with_avx512(Body& body) {
  body(__m512{});
}
template <class Body>
__attribute__((target("avx"), flatten)) inline void with_avx(Body& body) {
  body(__m256{});
}

// The widest streaming-store ISA this CPU has: 2 AVX-512, 1 AVX, 0 SSE.
inline int stream_isa() {
  static const int isa = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") ? 2 : __builtin_cpu_supports("avx") ? 1 : 0;
  }();
  return isa;
}

// Runs range(isa, lo, hi) on each OpenMP thread's share of [0, n), cut at 64-byte lines, then
// fences the streaming stores.
template <class Range>
inline void stream_split(std::size_t n, Range&& range) {
  const int isa = stream_isa();
#pragma omp parallel
  {
    const std::size_t t = std::size_t(omp_get_thread_num()), nt = std::size_t(omp_get_num_threads());
    const std::size_t lines = (n + 15) / 16;  // 64-byte lines
    range(isa, std::min(n, lines * t / nt * 16), std::min(n, lines * (t + 1) / nt * 16));
    _mm_sfence();
  }
}

// Runs body(V{}) with V the widest vector of `isa` (stream_isa).
template <class Body>
inline void with_widest_vector(int isa, Body&& body) {
  if (isa == 2)
    with_avx512(body);
  else if (isa == 1)
    with_avx(body);
  else
    body(__m128{});
}

// The streaming copy: the fastest way this machine moves n floats from src to dst. The whole
// buffer is cut into one contiguous, 64-byte-aligned range per OpenMP thread; each thread reads
// with the widest loads the CPU has and writes with non-temporal stores (no read-for-ownership
// of dst), then fences. Both buffers must be 64-byte aligned.
inline void stream_copy(float* dst, const float* src, std::size_t n) {
  stream_split(n, [&](int isa, std::size_t lo, std::size_t hi) {
    with_widest_vector(isa, [&](auto v) {
      stream_range<decltype(v), 4>(
          dst + lo, hi - lo, [s = src + lo, v](std::size_t i) { return load(s + i, v); },
          [s = src + lo](std::size_t i) { return s[i]; });
    });
  });
}

// The streaming sum dst = a + b (STREAM's "Add"): the same loads, stores, split and fence as
// stream_copy, but two arrays read per array written, the mix of a backward kernel (read dy and
// x, write dx). It checks whether that mix moves bytes faster than the copy's one read per
// write; one add per vector is nothing next to the memory traffic. All three 64-byte aligned.

inline void stream_add(float* dst, const float* a, const float* b, std::size_t n) {
  stream_split(n, [&](int isa, std::size_t lo, std::size_t hi) {
    with_widest_vector(isa, [&](auto v) {
      stream_range<decltype(v), 2>(
          dst + lo, hi - lo,
          [pa = a + lo, pb = b + lo, v](std::size_t i) { return add(load(pa + i, v), load(pb + i, v)); },
          [pa = a + lo, pb = b + lo](std::size_t i) { return pa[i] + pb[i]; });
    });
  });
}

// The streaming read: the fastest way this machine reads n floats, for a kernel that reads far
// more than it writes (decode reads the K and V cache and writes one row). The same split and
// widest loads as stream_copy, summed into 8 accumulators (no dependency chain holds the loads
// back); the sum goes to an atomic sink so that the reads stay. src must be 64-byte aligned.
// Which prefetch reads fastest depends on the CPU, so there are two and a group takes the faster
// of them in each round: ReadPrefetch::l1 fetches two lines of each block 4 KB ahead into L1
// (the Intel host: 24.1 against 22.1 GB/s at 1 thread without, the fastest of 512 B to 16 KB
// ahead), ReadPrefetch::none leaves it to the hardware (the AMD EPYC host, from memory: 20 GB/s
// at 1 thread, 17 with the L1 prefetch).
enum class ReadPrefetch { l1, none };
inline std::atomic<float> stream_read_sink;
inline void stream_read(const float* src, std::size_t n, ReadPrefetch pf = ReadPrefetch::l1) {
  stream_split(n, [&](int isa, std::size_t lo, std::size_t hi) {
    with_widest_vector(isa, [&](auto v) {
      using V = decltype(v);
      constexpr std::size_t W = sizeof(V) / sizeof(float), U = 8;
      V acc[U];
      for (auto& a : acc) a = load(src + lo, v);  // any value: only the reads count
      std::size_t i = lo;
      if (pf == ReadPrefetch::l1)
        for (; i + U * W <= hi; i += U * W) {
          _mm_prefetch(reinterpret_cast<const char*>(src + i + 1024), _MM_HINT_T0);
          _mm_prefetch(reinterpret_cast<const char*>(src + i + 1024 + 64), _MM_HINT_T0);
          for (std::size_t u = 0; u < U; ++u) acc[u] = add(acc[u], load(src + i + u * W, v));
        }
      for (; i + U * W <= hi; i += U * W)
        for (std::size_t u = 0; u < U; ++u) acc[u] = add(acc[u], load(src + i + u * W, v));
      float tail = 0;
      for (; i < hi; ++i) tail += src[i];
      for (std::size_t u = 1; u < U; ++u) acc[0] = add(acc[0], acc[u]);
      float lanes[W];
      std::memcpy(lanes, &acc[0], sizeof lanes);
      stream_read_sink.store(lanes[0] + tail, std::memory_order_relaxed);
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Cold caches. A memory-bound kernel and its ceiling must read the same bytes from the same
// place: memory. A group whose buffers fit in the last-level cache (decode's K and V, 16.8 MB,
// in a 32 MB L3) otherwise measures whatever the previous candidate left there — on the AMD EPYC
// host the copy and the read shared their source and found it in L3 (the read at 38–45 GB/s,
// from memory 20), while the decode kernel's K and V had been evicted by them: decode / copy
// 0.41–0.48, a ratio of cache states, not of kernels. So before every timed call of a
// memory-bound group the caches are emptied, untimed, by reading a buffer of twice the
// last-level cache on the group's threads (clean lines: no write-back lands in the next call).

// The last-level cache of CPU 0 as the kernel reports it (sysfs; sysconf's figure can be the
// whole package's: 320 MB for a VM's 32 MB L3), else sysconf, else 32 MB.
inline std::size_t last_level_cache_bytes() {
  for (int index = 3; index >= 2; --index) {
    std::ifstream f("/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(index) + "/size");
    std::size_t v = 0;
    char unit = 0;
    if (f >> v) {
      f >> unit;
      return v * (unit == 'M' ? 1u << 20 : unit == 'K' ? 1u << 10 : 1u);
    }
  }
  const long v = ::sysconf(_SC_LEVEL3_CACHE_SIZE);
  return v > 0 ? std::size_t(v) : std::size_t(32) << 20;
}

// The bytes read to empty the caches: twice the last-level cache, at least 16 MB, at most 1 GB.
inline std::size_t eviction_bytes() {
  return std::clamp<std::size_t>(2 * last_level_cache_bytes(), std::size_t(16) << 20,
                                 std::size_t(1) << 30);
}

inline void evict_caches() {
  static Buffer e(eviction_bytes() / sizeof(float));
  stream_read(e.data(), e.size(), ReadPrefetch::none);
}

inline bool note_cache_eviction() {
  benchmark::AddCustomContext("cache_eviction_bytes", std::to_string(eviction_bytes()));
  return true;
}

// ---------------------------------------------------------------------------------------------
// CPU time used by other processes: the machine's busy time (/proc/stat) minus this process's
// own (getrusage), in cores, between two samples. Above ~0.05 the group shared the CPU.

struct CpuSample {
  double wall = 0, busy = 0, self = 0;  // seconds
  static CpuSample now() {
    CpuSample s;
    s.wall = std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
    std::ifstream f("/proc/stat");
    std::string cpu;
    unsigned long long v[10] = {};
    f >> cpu;
    for (auto& x : v) f >> x;
    // user nice system idle iowait irq softirq steal: busy = all but idle and iowait
    const double ticks = double(::sysconf(_SC_CLK_TCK));
    s.busy = double(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / ticks;
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    s.self = double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
             1e-6 * double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
    return s;
  }
};
inline double others_cores(const CpuSample& a, const CpuSample& b) {
  const double wall = b.wall - a.wall;
  return wall > 0 ? std::max(0.0, ((b.busy - a.busy) - (b.self - a.self)) / wall) : 0.0;
}

// ---------------------------------------------------------------------------------------------
// Interleaved rounds. A group is a set of candidates (a kernel, its ceiling, its peers) on the
// same shape and thread count. Each round runs every candidate once, back to back, starting
// from a different candidate each round; a ratio is taken within each round (the two calls
// ran seconds apart at most, under the same load) and the report gives the median over the
// rounds with the quartiles. Each candidate runs once untimed first (page faults, oneDNN's
// JIT, the OpenMP team). A memory-bound group (Caches::cold) empties the caches before every
// timed call (evict_caches); a compute-bound one (prefill: a head's Q, K and V are 1.5 MB and
// live in L2 in real use too) runs with whatever the previous call left (Caches::warm).

struct Candidate {
  std::string name;
  double work;  // bytes or flops per call, for its rate
  std::function<void()> run;
};

enum class Caches { cold, warm };

class Rounds {
 public:
  explicit Rounds(std::vector<Candidate> c, Caches caches)
      : c_(std::move(c)), t_(c_.size()), cold_(caches == Caches::cold) {}

  // One round per benchmark iteration; the iteration's manual time is the round's.
  void run(benchmark::State& st) {
    for (auto& c : c_) c.run();
    const CpuSample s0 = CpuSample::now();
    std::size_t round = 0;
    for (auto _ : st) {
      double total = 0;
      for (std::size_t k = 0; k < c_.size(); ++k) {
        const std::size_t i = (round + k) % c_.size();
        if (cold_) evict_caches();
        const auto a = std::chrono::steady_clock::now();
        c_[i].run();
        benchmark::ClobberMemory();
        const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count();
        t_[i].push_back(dt);
        total += dt;
      }
      st.SetIterationTime(total);
      ++round;
    }
    st.counters["others_cores"] = others_cores(s0, CpuSample::now());
    st.counters["rounds"] = double(round);
    for (std::size_t i = 0; i < c_.size(); ++i) {
      std::vector<double> rate;
      for (double dt : t_[i]) rate.push_back(c_[i].work / dt);
      set_quartiles(st, c_[i].name, rate);
    }
  }

  // rate(a) / rate(b) per round, where rate = work / time and rate(b) is the fastest of the
  // candidates b_any in that round (the best sgemm). Rates are per byte moved (or per flop),
  // so batch norm's 3 passes against the 2-pass copy need no extra factor: the copy's rate is
  // the ceiling of any pass count.
  void ratio(benchmark::State& st, const std::string& label, const std::string& a,
             const std::vector<std::string>& b_any) const {
    const std::size_t ia = index(a);
    std::vector<double> r;
    for (std::size_t k = 0; k < t_[ia].size(); ++k) {
      double best = 0;  // the fastest of the b candidates in this round
      for (const auto& b : b_any) {
        const std::size_t ib = index(b);
        best = std::max(best, c_[ib].work / t_[ib][k]);
      }
      r.push_back((c_[ia].work / t_[ia][k]) / best);
    }
    set_quartiles(st, label, r);
  }

 private:
  std::size_t index(const std::string& name) const {
    for (std::size_t i = 0; i < c_.size(); ++i)
      if (c_[i].name == name) return i;
    throw std::logic_error("no candidate " + name);
  }
  static void set_quartiles(benchmark::State& st, const std::string& name, std::vector<double> v) {
    if (v.empty()) return;
    std::sort(v.begin(), v.end());
    auto q = [&](double p) {  // linear interpolation between order statistics
      const double x = p * double(v.size() - 1);
      const std::size_t i = std::size_t(x);
      return i + 1 < v.size() ? v[i] + (x - double(i)) * (v[i + 1] - v[i]) : v[i];
    };
    st.counters[name] = q(0.5);
    st.counters[name + "@q1"] = q(0.25);
    st.counters[name + "@q3"] = q(0.75);
    st.counters[name + "@min"] = v.front();
    st.counters[name + "@max"] = v.back();
  }

  std::vector<Candidate> c_;
  std::vector<std::vector<double>> t_;
  bool cold_;
};

}  // namespace normcheck::bench
