// Tests of the ATen component: ATen's thread count follows OpenMP's, the attention compositions
// keep normcheck's sdpa/mha contract (checked against sdpa_reference / mha_reference), the
// environment names what decides the bits, and the behaviours of ATen 1.13 that the rows'
// profiles and aten/FINDINGS.md state, each on its minimal input (AtenFinding.*: if a libtorch
// update changes one, its test fails and the profile and FINDINGS.md must follow).
// One translation unit: each file including ATen's headers costs 10–15 s to compile.
#include <gtest/gtest.h>
#include <omp.h>
#include <unistd.h>

#include <ATen/Parallel.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/linear.h>
#include <ATen/ops/softmax.h>

#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>

#include "aten/aten.hpp"
#include "properties/compare.hpp"
#include "norms/registry.hpp"

namespace nc = normcheck;

namespace {

const float kNaN = std::numeric_limits<float>::quiet_NaN();

// The rows are registered once for the whole binary (register_layer refuses duplicates).
const nc::LayerEntry& row(const std::string& name) {
  static const bool registered = (nc::aten::register_rows(), true);
  (void)registered;
  return nc::layer(name);
}

std::vector<float> uniform(std::size_t n, unsigned seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = u(g);
  return v;
}

nc::Batch batch(int B, int T, int D, std::vector<float> x) {
  nc::Batch in(B, T, D);
  in.x = std::move(x);
  return in;
}

// One call of a row (optimized = ATen, or the reference) on a copy of `state`; group_norm's
// `groups` is 1 (the whole token) unless `p` names it.
nc::Output run(const std::string& name, nc::Impl impl, const nc::Batch& in, nc::Params p = {},
               nc::Mode mode = nc::Mode::none, nc::State* state = nullptr) {
  if (name == "aten_group_norm") p.named.try_emplace("groups", 1.0);
  nc::Output out;
  row(name).forward(impl)(in, p, mode, state, out);
  return out;
}

bool same_bits(const nc::Output& a, const nc::Output& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0;
}

nc::State fresh_state(int D) {
  nc::State s;
  s.running_mean.assign(D, 0.0);
  s.running_var.assign(D, 1.0);
  return s;
}

// ---------------------------------------------------------------------------------------------
// threads

// batch_norm train on [N, 7]: a shape where ATen's reduction over rows splits over threads
nc::Output batch_norm_train(const nc::Batch& in) {
  nc::State s = fresh_state(in.D);
  return run("aten_batch_norm", nc::Impl::optimized, in, {}, nc::Mode::train, &s);
}

TEST(AtenThreads, OpenMPCountDrivesATen) {
  const nc::Batch in = batch(1, 100000, 7, uniform(700000, 1, 0.0f, 1.0f));
  omp_set_num_threads(1);
  const nc::Output one = batch_norm_train(in);
  EXPECT_EQ(at::get_num_threads(), 1);
  omp_set_num_threads(2);
  const nc::Output two = batch_norm_train(in);
  EXPECT_EQ(at::get_num_threads(), 2);
  EXPECT_EQ(omp_get_max_threads(), 2) << "an ATen call changed OpenMP's thread count";
  // the bits differ only if ATen really ran its reduction on two threads (AtenFinding below)
  EXPECT_FALSE(same_bits(one, two)) << "2 OpenMP threads gave 1 thread's bits: ATen did not "
                                       "follow omp_set_num_threads";
  omp_set_num_threads(1);
  EXPECT_TRUE(same_bits(one, batch_norm_train(in)));
}

// ATen's first op in a thread runs its lazy init, which sets that thread's OpenMP count to
// ATen's stored one; the rows must still use the count the calling thread set.
TEST(AtenThreads, FreshThreadKeepsItsOpenMPCount) {
  const nc::Batch in = batch(1, 100000, 7, uniform(700000, 1, 0.0f, 1.0f));
  int stored = 0;
  std::thread([&] {
    at::internal::lazy_init_num_threads();
    stored = omp_get_max_threads();
  }).join();
  const int n = stored == 1 ? 2 : 1;  // a count ATen's init would overwrite
  omp_set_num_threads(n);
  const nc::Output expected = batch_norm_train(in);
  nc::Output got;
  int after = 0;
  std::thread([&] {
    omp_set_num_threads(n);
    got = batch_norm_train(in);
    after = omp_get_max_threads();
  }).join();
  EXPECT_EQ(after, n);
  EXPECT_TRUE(same_bits(expected, got)) << "a fresh thread ran ATen with another thread count";
}

// ---------------------------------------------------------------------------------------------
// attention compositions against normcheck's reference

using SdpaFn = void (*)(std::vector<float>&, std::vector<float>*, const std::vector<float>&,
                        const std::vector<float>&, const std::vector<float>&, const nc::SdpaShape&,
                        const nc::SdpaMask&, double);

struct Composition {
  const char* name;
  SdpaFn fn;
};
const Composition kCompositions[] = {{"sdpa_additive", nc::aten::sdpa_additive},
                                     {"sdpa_masked_fill", nc::aten::sdpa_masked_fill},
                                     {"sdpa_aten", nc::aten::sdpa_aten}};

struct AttnCase {
  const char* what;
  nc::SdpaShape s;
  nc::SdpaMask m;
  double scale;  // 0: default 1/√dh
};

std::vector<AttnCase> attention_cases() {
  return {
      {"self, no mask", {.B = 2, .H = 2, .Tq = 5, .Tk = 5, .dh = 4, .dv = 3}, {}, 0},
      {"key padding", {.B = 2, .H = 2, .Tq = 5, .Tk = 5, .dh = 4, .dv = 3}, {{5, 3}, false}, 0},
      {"causal", {.B = 1, .H = 3, .Tq = 6, .Tk = 6, .dh = 8, .dv = 8}, {{}, true}, 0},
      // bottom-right: 3 queries are the last 3 of 7 positions (top-left would show here)
      {"causal, Tq < Tk", {.B = 2, .H = 1, .Tq = 3, .Tk = 7, .dh = 5, .dv = 2}, {{}, true}, 0},
      {"decode from a cache", {.B = 1, .H = 2, .Tq = 1, .Tk = 6, .dh = 4, .dv = 4, .kv_capacity = 9},
       {{}, true}, 0},
      // key_lengths 0 and causal cuts: rows that see no key give zeros
      {"fully masked rows", {.B = 3, .H = 2, .Tq = 4, .Tk = 4, .dh = 3, .dv = 3}, {{0, 2, 4}, true}, 0},
      {"causal Tq > Tk", {.B = 1, .H = 1, .Tq = 5, .Tk = 3, .dh = 2, .dv = 2}, {{}, true}, 0},
      {"other scale", {.B = 2, .H = 1, .Tq = 4, .Tk = 6, .dh = 6, .dv = 5}, {{6, 2}, false}, 0.3},
  };
}

// |a − b| ≤ the tolerance rule with cond = 0 (inputs in [−1, 1], dh ≤ 8: logits of a few units,
// float32 error far below it); NaN or inf on either side fails
void expect_close(const std::vector<float>& a, const std::vector<double>& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  int bad = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const bool ok = std::isfinite(a[i]) && std::abs(a[i] - b[i]) <= nc::tolerance(b[i], 0);
    if (!ok && ++bad <= 3)
      ADD_FAILURE() << what << ": element " << i << ": " << a[i] << " vs reference " << b[i];
  }
  EXPECT_EQ(bad, 0) << what;
}

TEST(AtenAttention, CompositionsMatchReference) {
  for (const auto& c : attention_cases())
    for (const auto& comp : kCompositions) {
      const auto& s = c.s;
      const double scale = c.scale > 0 ? c.scale : nc::default_scale(s.dh);
      const auto q = uniform(s.q_size(), 1), k = uniform(s.k_size(), 2), v = uniform(s.v_size(), 3);
      std::vector<float> out, w;
      std::vector<double> rout, rw;
      comp.fn(out, &w, q, k, v, s, c.m, scale);
      nc::sdpa_reference(rout, &rw, q, k, v, s, c.m, scale);
      expect_close(out, rout, std::string(comp.name) + ", " + c.what + ": out");
      expect_close(w, rw, std::string(comp.name) + ", " + c.what + ": weights");
      std::vector<float> out2;
      comp.fn(out2, nullptr, q, k, v, s, c.m, scale);  // without weights: the same output
      EXPECT_EQ(out, out2) << comp.name << ", " << c.what;
    }
}

TEST(AtenAttention, MhaMatchesReference) {
  struct Case {
    const char* what;
    int B, Tq, Tk, E, H;
    nc::SdpaMask m;
  };
  const Case cases[] = {{"self", 2, 5, 5, 8, 2, {}},
                        {"self, padding + causal", 2, 5, 5, 8, 2, {{5, 2}, true}},
                        {"cross, Tq < Tk, causal", 1, 2, 6, 6, 3, {{}, true}},
                        {"fully masked rows: y = b_o", 2, 3, 3, 4, 1, {{0, 3}, false}}};
  for (const auto& c : cases) {
    nc::MhaWeights w;
    w.E = c.E;
    w.H = c.H;
    const float r = 1.0f / std::sqrt(float(c.E));
    w.in_proj_weight = uniform(std::size_t(3) * c.E * c.E, 4, -r, r);
    w.in_proj_bias = uniform(std::size_t(3) * c.E, 5, -0.1f, 0.1f);
    w.out_proj_weight = uniform(std::size_t(c.E) * c.E, 6, -r, r);
    w.out_proj_bias = uniform(c.E, 7, -0.1f, 0.1f);
    const auto query = uniform(std::size_t(c.B) * c.Tq * c.E, 8);
    const auto memory = c.Tq == c.Tk ? query : uniform(std::size_t(c.B) * c.Tk * c.E, 9);
    std::vector<float> out, wts;
    nc::aten::mha_aten(out, &wts, w, query, memory, c.B, c.Tq, c.Tk, c.m);
    std::vector<double> rout, rw;
    const std::vector<double> qd(query.begin(), query.end()), md(memory.begin(), memory.end());
    nc::mha_reference(rout, &rw, w, qd, md, c.B, c.Tq, c.Tk, c.m);
    expect_close(out, rout, std::string("mha_aten, ") + c.what + ": out");
    expect_close(wts, rw, std::string("mha_aten, ") + c.what + ": weights");
  }
}

// The shapes and masks the compositions refuse, as the optimized kernel does.
TEST(AtenAttention, RejectsWhatSdpaRejects) {
  const nc::SdpaShape s{.B = 1, .H = 1, .Tq = 2, .Tk = 2, .dh = 2, .dv = 2};
  const auto x = uniform(4, 1);
  std::vector<float> out;
  for (const auto& comp : kCompositions) {
    EXPECT_THROW(comp.fn(out, nullptr, x, x, uniform(3, 1), s, {}, 1.0), nc::InvalidInput);
    EXPECT_THROW(comp.fn(out, nullptr, x, x, x, s, {{3}, false}, 1.0), nc::InvalidInput);
    EXPECT_THROW(comp.fn(out, nullptr, x, x, x, s, {}, 0.0), nc::InvalidInput);
  }
}

// ---------------------------------------------------------------------------------------------
// environment

TEST(AtenEnvironment, NamesVersionCapabilityBlasThreads) {
  omp_set_num_threads(2);
  std::map<std::string, std::string> env;
  for (const auto& [k, v] : nc::aten::environment()) env[k] = v;
  EXPECT_EQ(env["aten_version"].rfind("1.", 0), 0u) << env["aten_version"];
  EXPECT_TRUE(std::set<std::string>({"DEFAULT", "AVX2", "AVX512"}).count(env["aten_cpu_capability"]))
      << env["aten_cpu_capability"];
  // sgemm_ resolved to a loaded file (libblas.so.3, followed to the installed alternative when
  // it is the alternatives system's symlink)
  EXPECT_EQ(env["blas_sgemm"].rfind('/', 0), 0u) << env["blas_sgemm"];
  EXPECT_NE(env["blas_sgemm"].find("libblas.so.3"), std::string::npos) << env["blas_sgemm"];
  EXPECT_EQ(env["omp_max_threads"], "2");
  EXPECT_EQ(env["aten_num_threads"], "2");
}

// ATEN_CPU_CAPABILITY is read once per process: each value runs this binary again with the
// hidden test below, which prints what environment() reports.
TEST(AtenEnvironment, ReportsTheCapabilityAsked) {
  char self[4096] = {};
  ASSERT_GT(readlink("/proc/self/exe", self, sizeof self - 1), 0);  // the shell's would be /bin/sh
  for (const char* cap : {"default", "avx2", "avx512"}) {
    const std::string cmd = std::string("ATEN_CPU_CAPABILITY=") + cap + " " + self +
                            " --gtest_also_run_disabled_tests "
                            "--gtest_filter=AtenEnvironment.DISABLED_PrintCapability 2>/dev/null";
    FILE* p = popen(cmd.c_str(), "r");
    ASSERT_NE(p, nullptr);
    std::string text;
    char buf[256];
    while (std::fgets(buf, sizeof buf, p)) text += buf;
    pclose(p);
    std::string want = std::string("capability=") + cap;
    for (auto& c : want) c = char(std::toupper(c));
    // a CPU without AVX-512 falls back to the best it has: only the others must match exactly
    if (want != "CAPABILITY=AVX512" || text.find("CAPABILITY=AVX2") == std::string::npos) {
      EXPECT_NE(text.find(want), std::string::npos) << cap << ": " << text;
    }
  }
}

TEST(AtenEnvironment, DISABLED_PrintCapability) {
  for (const auto& [k, v] : nc::aten::environment())
    if (k == "aten_cpu_capability") std::printf("CAPABILITY=%s\n", v.c_str());
}

// ---------------------------------------------------------------------------------------------
// ATEN_CPU_CAPABILITY and the bits: the hidden test prints every op's outputs on fixed inputs;
// the test runs it under each capability and reports the largest difference in ulps per op.

// Runs this binary's hidden test `name` with `env` prepended; its stdout.
std::string run_self(const std::string& env, const std::string& name) {
  char self[4096] = {};
  if (readlink("/proc/self/exe", self, sizeof self - 1) <= 0) return {};
  const std::string cmd = env + " " + self + " --gtest_also_run_disabled_tests --gtest_filter=" +
                          name + " 2>/dev/null";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return {};
  std::string text;
  char buf[4096];
  while (std::fgets(buf, sizeof buf, p)) text += buf;
  pclose(p);
  return text;
}

std::map<std::string, std::vector<float>> parse_ops(const std::string& text) {
  std::map<std::string, std::vector<float>> ops;
  std::size_t at = 0;
  while ((at = text.find("op ", at)) != std::string::npos) {
    const std::size_t end = text.find('\n', at);
    const std::string line = text.substr(at + 3, end - at - 3);
    const std::size_t sp = line.find(' ');
    std::vector<float>& v = ops[line.substr(0, sp)];
    for (std::size_t i = sp; i != std::string::npos && i + 1 < line.size(); i = line.find(' ', i + 1)) {
      std::uint32_t u = std::uint32_t(std::stoul(line.substr(i + 1, 8), nullptr, 16));
      float f;
      std::memcpy(&f, &u, 4);
      v.push_back(f);
    }
    at = end;
  }
  return ops;
}

// |a − b| in units of the last place of the larger of the two (a plain ulp distance between the
// bit patterns would count thousands of ulps for a last-bit change of an output near 0)
std::int64_t ulps(float a, float b) {
  if (a == b) return 0;
  const float m = std::max(std::abs(a), std::abs(b));
  return std::int64_t(std::ceil(std::abs(double(a) - double(b)) /
                                (double(std::nextafter(m, INFINITY)) - double(m))));
}

TEST(AtenProbe, DISABLED_OpBits) {
  omp_set_num_threads(1);
  auto print = [](const char* op, const std::vector<float>& v) {
    std::printf("op %s", op);
    for (float x : v) {
      std::uint32_t u;
      std::memcpy(&u, &x, 4);
      std::printf(" %08x", u);
    }
    std::printf("\n");
  };
  auto narrow = [](const nc::Output& o) { return std::vector<float>(o.begin(), o.end()); };
  const nc::Batch in = batch(4, 16, 33, uniform(4 * 16 * 33, 21, -3.0f, 5.0f));
  nc::Params p;
  p.gamma = uniform(33, 22, 0.5f, 1.5f);
  p.beta = uniform(33, 23);
  p.named["groups"] = 3;
  nc::Params rms;  // γ only, as the row draws it
  rms.gamma = p.gamma;
  for (const char* name : {"aten_layer_norm", "aten_group_norm", "aten_instance_norm"})
    print(name, narrow(run(name, nc::Impl::optimized, in, p)));
  print("aten_rms_norm", narrow(run("aten_rms_norm", nc::Impl::optimized, in, rms)));
  nc::State st = fresh_state(33);
  print("aten_batch_norm_train", narrow(run("aten_batch_norm", nc::Impl::optimized, in, p, nc::Mode::train, &st)));
  auto logits = uniform(8 * 37, 24, -6.0f, 6.0f);
  const at::Tensor sm = at::softmax(at::from_blob(logits.data(), {8, 37}, at::kFloat), -1);
  print("softmax", std::vector<float>(sm.data_ptr<float>(), sm.data_ptr<float>() + sm.numel()));
  const nc::SdpaShape s{.B = 2, .H = 2, .Tq = 9, .Tk = 9, .dh = 8, .dv = 8};
  const auto q = uniform(s.q_size(), 25), k = uniform(s.k_size(), 26), v = uniform(s.v_size(), 27);
  for (const auto& comp : kCompositions) {
    std::vector<float> out;
    comp.fn(out, nullptr, q, k, v, s, {{9, 5}, true}, nc::default_scale(8));
    print(comp.name, out);
  }
  auto x = uniform(16 * 64, 28), W = uniform(32 * 64, 29);
  const at::Tensor y = at::linear(at::from_blob(x.data(), {16, 64}, at::kFloat),
                                  at::from_blob(W.data(), {32, 64}, at::kFloat));
  print("linear", std::vector<float>(y.data_ptr<float>(), y.data_ptr<float>() + y.numel()));
}

// The largest ulp difference per op between the capabilities this CPU has. On x86 with AVX2,
// the baseline ("default") and AVX2 kernels of softmax differ (ATen's vectorized exp): a
// row's bits depend on the machine it runs on.
TEST(AtenFinding, CpuCapabilityChangesBits) {
  std::map<std::string, std::map<std::string, std::vector<float>>> by_cap;
  for (const char* cap : {"default", "avx2", "avx512"})
    by_cap[cap] = parse_ops(run_self(std::string("OMP_NUM_THREADS=1 ATEN_CPU_CAPABILITY=") + cap,
                                     "AtenProbe.DISABLED_OpBits"));
  ASSERT_FALSE(by_cap["default"].empty());
  std::printf("%-22s %26s %26s\n", "op", "default vs avx2", "avx2 vs avx512");
  std::map<std::string, std::int64_t> d_a2;
  for (const auto& [op, ref] : by_cap["default"]) {
    std::int64_t a = 0, b = 0;
    double da = 0, db = 0;  // largest |difference|
    const auto& v2 = by_cap["avx2"][op];
    const auto& v5 = by_cap["avx512"][op];
    for (std::size_t i = 0; i < ref.size() && i < v2.size(); ++i) {
      a = std::max(a, ulps(ref[i], v2[i]));
      da = std::max(da, std::abs(double(ref[i]) - v2[i]));
    }
    for (std::size_t i = 0; i < v2.size() && i < v5.size(); ++i) {
      b = std::max(b, ulps(v2[i], v5[i]));
      db = std::max(db, std::abs(double(v2[i]) - v5[i]));
    }
    d_a2[op] = a;
    std::printf("%-22s %8lld ulp, |d| %8.2g %8lld ulp, |d| %8.2g\n", op.c_str(), (long long)a, da,
                (long long)b, db);
  }
  if (__builtin_cpu_supports("avx2")) {
    EXPECT_GT(d_a2["softmax"], 0);
  }
}

// ---------------------------------------------------------------------------------------------
// What ATen 1.13.1 does (aten/FINDINGS.md), on minimal inputs

// layer_norm and group_norm: NaN for a token whose |mean| is beyond about √FLT_MAX ≈ 1.84e19
// (float32 Welford: the squared deviations overflow), where the answer is finite (β for a
// constant token). PyTorch #162489.
TEST(AtenFinding, LayerNormAndGroupNormNaNBeyondSqrtFltMax) {
  for (const char* name : {"aten_layer_norm", "aten_group_norm"})
    for (int D : {1, 2, 7, 64, 4096}) {
      nc::Params p;
      p.gamma.assign(D, 1.0f);
      p.beta.assign(D, 0.5f);
      const nc::Output ok = run(name, nc::Impl::optimized, batch(1, 1, D, std::vector<float>(D, 1.8e19f)), p);
      const nc::Output bad = run(name, nc::Impl::optimized, batch(1, 1, D, std::vector<float>(D, 1.9e19f)), p);
      const nc::Output ref = run(name, nc::Impl::reference, batch(1, 1, D, std::vector<float>(D, 1e30f)), p);
      EXPECT_TRUE(std::isfinite(ok[0])) << name << " D=" << D;
      EXPECT_TRUE(std::isnan(bad[0])) << name << " D=" << D << ": " << bad[0];
      EXPECT_EQ(ref[0], 0.5) << "the reference gives β";
    }
  // one 1e20 in an ordinary token
  const nc::Output y = run("aten_layer_norm", nc::Impl::optimized, batch(1, 1, 4, {1, 2, 1e20f, 3}));
  for (double v : y) EXPECT_TRUE(std::isnan(v)) << v;
  const nc::Output r = run("aten_layer_norm", nc::Impl::reference, batch(1, 1, 4, {1, 2, 1e20f, 3}));
  EXPECT_NEAR(r[2], std::sqrt(3.0), 1e-6);
}

// A constant token below the NaN threshold is not β either: float32 Welford leaves a variance
// of rounding noise that dwarfs ε (built-in layer_norm: exactly β up to ±FLT_MAX).
// Already at 1000.1: ATen writes y = x·a + b with a = γ·rstd ≈ 1/√ε and b = β − μ·a in float32,
// so x·a and μ·a (about 3e5) cancel to a rounding error of 0.008, where the answer is β
// (instance_norm, through batch_norm's kernel, likewise on a single token).
TEST(AtenFinding, LayerNormConstantTokenIsNotBeta) {
  const nc::Output y = run("aten_layer_norm", nc::Impl::optimized, batch(1, 1, 4, std::vector<float>(4, 1e18f)));
  EXPECT_GT(std::abs(y[0]), 1.0) << y[0];
  const nc::Output c = run("aten_layer_norm", nc::Impl::optimized, batch(1, 1, 2, {1000.1f, 1000.1f}));
  EXPECT_GT(std::abs(c[0]), 1e-3) << c[0];
  const nc::Output i = run("aten_instance_norm", nc::Impl::optimized, batch(1, 1, 1, {1000.1f}));
  EXPECT_GT(std::abs(i[0]), 1e-3) << i[0];
  EXPECT_EQ(run("aten_layer_norm", nc::Impl::reference, batch(1, 1, 2, {1000.1f, 1000.1f}))[0], 0.0);
  const nc::Output g = run("aten_group_norm", nc::Impl::optimized, batch(1, 1, 4, std::vector<float>(4, 1e18f)));
  EXPECT_EQ(g[0], 0.0) << "group_norm's constant token below the threshold is exact";
}

// batch_norm train: a finite 1e30 in the batch overflows the float32 variance: every output is β
TEST(AtenFinding, BatchNormTrainOverflowGivesBeta) {
  nc::Batch in = batch(1, 3, 1, {1000, 1001, 1e30f});
  nc::State s = fresh_state(1), sr = fresh_state(1);
  nc::Params p;
  p.gamma = {1.0f};
  p.beta = {0.25f};
  const nc::Output y = run("aten_batch_norm", nc::Impl::optimized, in, p, nc::Mode::train, &s);
  const nc::Output r = run("aten_batch_norm", nc::Impl::reference, in, p, nc::Mode::train, &sr);
  EXPECT_EQ(y[0], 0.25);
  EXPECT_NEAR(r[0], 0.25 - 1 / std::sqrt(2.0), 1e-6);
  EXPECT_TRUE(std::isinf(s.running_var[0])) << "float32 running variance";
  EXPECT_TRUE(std::isfinite(sr.running_var[0]));
}

// RMSNorm composite: x² overflows beyond √FLT_MAX, rsqrt(inf) = 0, the token becomes 0 (×γ)
TEST(AtenFinding, RmsCompositeZeroBeyondSqrtFltMax) {
  const nc::Output y = run("aten_rms_norm", nc::Impl::optimized, batch(1, 1, 2, {2e19f, 1.0f}));
  const nc::Output r = run("aten_rms_norm", nc::Impl::reference, batch(1, 1, 2, {2e19f, 1.0f}));
  EXPECT_EQ(y[0], 0.0);
  EXPECT_NEAR(r[0], std::sqrt(2.0), 1e-6);
}

// batch_norm train's reduction over rows depends on the thread count; layer_norm, group_norm,
// instance_norm and batch_norm eval do not on the same shape.
TEST(AtenFinding, OnlyBatchNormTrainDependsOnThreads) {
  const nc::Batch in = batch(1, 1000, 7, uniform(7000, 3, 0.0f, 1.0f));
  auto both = [&](auto f) {
    omp_set_num_threads(1);
    const nc::Output one = f();
    omp_set_num_threads(2);
    const nc::Output two = f();
    return same_bits(one, two);
  };
  EXPECT_FALSE(both([&] { return batch_norm_train(in); }));
  nc::Params g;
  g.named["groups"] = 7;
  for (const char* name : {"aten_layer_norm", "aten_instance_norm", "aten_rms_norm"})
    EXPECT_TRUE(both([&] { return run(name, nc::Impl::optimized, in); })) << name;
  EXPECT_TRUE(both([&] { return run("aten_group_norm", nc::Impl::optimized, in, g); }));
  EXPECT_TRUE(both([&] {
    nc::State s = fresh_state(7);
    return run("aten_batch_norm", nc::Impl::optimized, in, {}, nc::Mode::eval, &s);
  }));
}

// Masked attention built the usual ways, one sequence of 3 keys whose last is padding:
// additive −inf mask: a NaN in the padding key makes every valid output NaN (NaN + −inf = NaN);
// masked_fill cleans the scores, but a NaN in the padding value still leaks through 0·NaN into
// that feature of every query; at::_scaled_dot_product_attention behaves as the additive form.
// PyTorch #101967 (scaled_dot_product_attention NaN in masked-out positions).
TEST(AtenFinding, MaskedAttentionNaNLeaks) {
  const nc::SdpaShape s{.B = 1, .H = 1, .Tq = 2, .Tk = 3, .dh = 2, .dv = 2};
  const nc::SdpaMask m{{2}, false};
  const auto q = uniform(s.q_size(), 1), v = uniform(s.v_size(), 3);
  auto k_nan = uniform(s.k_size(), 2), v_nan = v;
  k_nan[2 * 2 + 0] = kNaN;  // key 2, feature 0
  v_nan[2 * 2 + 1] = kNaN;  // value 2, feature 1
  std::vector<double> ref;
  nc::sdpa_reference(ref, nullptr, q, k_nan, v_nan, s, m, 0.5);
  for (double r : ref) EXPECT_TRUE(std::isfinite(r)) << "the reference never reads masked keys";
  auto count_nan = [](const std::vector<float>& o) {
    int n = 0;
    for (float x : o) n += std::isnan(x);
    return n;
  };
  std::vector<float> out;
  for (const auto& comp : kCompositions) {
    const bool additive = std::string(comp.name) != "sdpa_masked_fill";
    comp.fn(out, nullptr, q, k_nan, v, s, m, 0.5);
    EXPECT_EQ(count_nan(out), additive ? 4 : 0) << comp.name << ": NaN key";
    comp.fn(out, nullptr, q, uniform(s.k_size(), 2), v_nan, s, m, 0.5);
    EXPECT_EQ(count_nan(out), 2) << comp.name << ": NaN value";
    EXPECT_TRUE(std::isnan(out[1]) && std::isnan(out[3]) && !std::isnan(out[0])) << comp.name;
  }
}

// A fully masked row: ATen's softmax over −inf only is NaN; the compositions return normcheck's
// zeros only because they overwrite those rows (aten.hpp). Shown on ATen's softmax itself.
TEST(AtenFinding, SoftmaxOfAllMinusInfIsNaN) {
  float row[3] = {-INFINITY, -INFINITY, -INFINITY};
  const at::Tensor y = at::softmax(at::from_blob(row, {3}, at::kFloat), 0);
  EXPECT_TRUE(std::isnan(y.data_ptr<float>()[0]));
}

// at::linear with the installed BLAS: a row alone vs inside a batch, 1 vs 2 threads. With
// Debian's reference BLAS (libblas3) every output is bitwise the same; OpenBLAS differs
// (FINDINGS.md). The test states which BLAS it saw and checks the reference BLAS claim.
TEST(AtenFinding, LinearBatchAndThreadInvarianceFollowsBlas) {
  std::string blas;
  for (const auto& [k, v] : nc::aten::environment())
    if (k == "blas_sgemm") blas = v;
  const int n = 64, I = 256, O = 96;
  auto x = uniform(std::size_t(n) * I, 10), W = uniform(std::size_t(O) * I, 11), b = uniform(O, 12);
  auto linear = [&](int rows, int threads) {
    omp_set_num_threads(threads);
    nc::aten::sync_threads();
    const at::Tensor y = at::linear(at::from_blob(x.data(), {rows, I}, at::kFloat),
                                    at::from_blob(W.data(), {O, I}, at::kFloat),
                                    at::from_blob(b.data(), {O}, at::kFloat));
    return std::vector<float>(y.data_ptr<float>(), y.data_ptr<float>() + O);  // row 0
  };
  const auto alone = linear(1, 1), batched = linear(n, 1), threaded = linear(n, 2);
  const bool batch_invariant = alone == batched, thread_invariant = batched == threaded;
  std::printf("BLAS: %s\n  at::linear batch-invariant: %s, thread-deterministic: %s\n", blas.c_str(),
              batch_invariant ? "yes" : "no", thread_invariant ? "yes" : "no");
  if (blas.find("/blas/libblas.so.3") != std::string::npos) {  // Debian's reference BLAS
    EXPECT_TRUE(batch_invariant);
    EXPECT_TRUE(thread_invariant);
  }
}

}  // namespace
