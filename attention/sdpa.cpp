#include "attention/sdpa.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include <Eigen/Dense>

namespace normcheck {

double default_scale(int dh) { return 1.0 / std::sqrt(double(dh)); }

int visible_keys(const SdpaShape& s, const SdpaMask& m, int b, int i) {
  int end = m.key_lengths.empty() ? s.Tk : m.key_lengths[b];
  if (m.causal) end = std::min(end, s.Tk - s.Tq + i + 1);
  return std::max(end, 0);
}

namespace {

std::string str(std::size_t v) { return std::to_string(v); }

void check_size(const char* name, std::size_t got, std::size_t want, const char* formula) {
  if (got != want)
    throw InvalidInput(std::string(name) + " has " + str(got) + " values, expected " + formula +
                       " = " + str(want));
}

}  // namespace

void validate_sdpa(const SdpaShape& s, const SdpaMask& m, double scale, std::size_t q_size,
                   std::size_t k_size, std::size_t v_size) {
  const std::pair<const char*, int> dims[] = {{"B", s.B},   {"H", s.H},   {"Tq", s.Tq},
                                              {"Tk", s.Tk}, {"dh", s.dh}, {"dv", s.dv}};
  for (const auto& [name, v] : dims)
    if (v <= 0) throw InvalidInput(std::string("attention shape: ") + name + " = " +
                                   std::to_string(v) + " must be positive");
  if (s.kv_capacity != 0 && s.kv_capacity < s.Tk)
    throw InvalidInput("attention shape: kv_capacity = " + std::to_string(s.kv_capacity) +
                       " is smaller than Tk = " + std::to_string(s.Tk));
  if (!(scale > 0) || !std::isfinite(scale))
    throw InvalidInput("attention scale must be positive and finite, got " + std::to_string(scale));
  if (!m.key_lengths.empty()) {
    if (m.key_lengths.size() != std::size_t(s.B))
      throw InvalidInput("key lengths has " + str(m.key_lengths.size()) + " entries, expected B = " +
                         std::to_string(s.B));
    for (int b = 0; b < s.B; ++b)
      if (m.key_lengths[b] < 0 || m.key_lengths[b] > s.Tk)
        throw InvalidInput("lengths[" + std::to_string(b) + "] = " +
                           std::to_string(m.key_lengths[b]) + " is outside [0, Tk = " +
                           std::to_string(s.Tk) + "]");
  }
  check_size("q", q_size, s.q_size(), "B*H*Tq*dh");
  check_size("k", k_size, s.k_size(), "B*H*kv_rows*dh");
  check_size("v", v_size, s.v_size(), "B*H*kv_rows*dv");
}

// ---------------------------------------------------------------------------------------------
// reference: double, scores materialized per (b, h), softmax over the visible prefix only

template <class T>
void sdpa_reference(std::vector<double>& out, std::vector<double>* weights,
                    const std::vector<T>& q, const std::vector<T>& k, const std::vector<T>& v,
                    const SdpaShape& s, const SdpaMask& m, double scale) {
  validate_sdpa(s, m, scale, q.size(), k.size(), v.size());
  using Src = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using Mat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  out.assign(s.out_size(), 0.0);
  if (weights) weights->assign(s.weights_size(), 0.0);
  for (int b = 0; b < s.B; ++b)
    for (int h = 0; h < s.H; ++h) {
      const std::size_t bh = std::size_t(b) * s.H + h;
      Eigen::Map<const Src> Q(q.data() + bh * s.Tq * s.dh, s.Tq, s.dh);          // [Tq, dh]
      Eigen::Map<const Src> K(k.data() + bh * s.kv_rows() * s.dh, s.Tk, s.dh);   // [Tk, dh]
      Eigen::Map<const Src> V(v.data() + bh * s.kv_rows() * s.dv, s.Tk, s.dv);   // [Tk, dv]
      // [Tq, Tk]; columns of masked keys may hold anything (NaN poison): never read below
      const Mat S = scale * (Q.template cast<double>() * K.template cast<double>().transpose());
      for (int i = 0; i < s.Tq; ++i) {
        const int n = visible_keys(s, m, b, i);
        if (n == 0) continue;  // fully masked: zeros
        const double mx = S.row(i).head(n).maxCoeff();
        Eigen::RowVectorXd p = (S.row(i).head(n).array() - mx).exp().matrix();
        p /= p.sum();
        Eigen::Map<Eigen::RowVectorXd> o(out.data() + (bh * s.Tq + i) * s.dv, s.dv);
        o = p * V.topRows(n).template cast<double>();
        if (weights)
          Eigen::Map<Eigen::RowVectorXd>(weights->data() + (bh * s.Tq + i) * s.Tk, n) = p;
      }
    }
}

template void sdpa_reference<float>(std::vector<double>&, std::vector<double>*,
                                    const std::vector<float>&, const std::vector<float>&,
                                    const std::vector<float>&, const SdpaShape&, const SdpaMask&,
                                    double);
template void sdpa_reference<double>(std::vector<double>&, std::vector<double>*,
                                     const std::vector<double>&, const std::vector<double>&,
                                     const std::vector<double>&, const SdpaShape&,
                                     const SdpaMask&, double);

// ---------------------------------------------------------------------------------------------
// optimized: float32, tiled, online softmax

namespace {

// Below this many multiply-adds a call runs on the calling thread (results are the same).
constexpr double kParallelMinWork = 1 << 14;

// Eight interleaved partial sums combined in a fixed tree (the order depends on n only), so
// GCC vectorizes the body at any SIMD width with the same bits.
inline float dot(const float* a, const float* b, int n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int d = 0;
  for (; d + 8 <= n; d += 8)
    for (int l = 0; l < 8; ++l) acc[l] += a[d + l] * b[d + l];
  float tail = 0.0f;
  for (; d < n; ++d) tail += a[d] * b[d];
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail;
}

// One tile of up to kSdpaQueryTile query rows of one (b, h). acc: [kSdpaQueryTile, dv] scratch.
// Compiled twice, for AVX2 and for the baseline, chosen at run time: AVX2 without FMA, so the
// same operations in the same order give the same bits on either path.
__attribute__((target_clones("avx2", "default")))
void attention_tile(float* out, float* weights, const float* q, const float* k, const float* v,
                    const SdpaShape& s, const SdpaMask& m, float scale, int b, int h, int i0,
                    float* acc) {
  const std::size_t bh = std::size_t(b) * s.H + h;
  const float* kb = k + bh * s.kv_rows() * s.dh;  // [Tk, dh]
  const float* vb = v + bh * s.kv_rows() * s.dv;  // [Tk, dv]
  const int rows = std::min(kSdpaQueryTile, s.Tq - i0);
  float mx[kSdpaQueryTile], sum[kSdpaQueryTile];
  int end[kSdpaQueryTile];
  float score[kSdpaQueryTile][kSdpaKeyTile];
  int end_max = 0;
  for (int r = 0; r < rows; ++r) {
    end[r] = visible_keys(s, m, b, i0 + r);
    end_max = std::max(end_max, end[r]);
    mx[r] = -std::numeric_limits<float>::infinity();
    sum[r] = 0.0f;
    std::fill(acc + std::size_t(r) * s.dv, acc + std::size_t(r + 1) * s.dv, 0.0f);
  }
  // key tiles in order; each row folds a tile into its running (max, sum, acc)
  for (int j0 = 0; j0 < end_max; j0 += kSdpaKeyTile) {
    for (int r = 0; r < rows; ++r) {
      const int j1 = std::min(j0 + kSdpaKeyTile, end[r]);
      if (j1 <= j0) continue;
      const float* qi = q + (bh * s.Tq + i0 + r) * s.dh;
      float tile_max = -std::numeric_limits<float>::infinity();
      for (int j = j0; j < j1; ++j) {
        score[r][j - j0] = dot(qi, kb + std::size_t(j) * s.dh, s.dh) * scale;
        tile_max = std::max(tile_max, score[r][j - j0]);
      }
      const float new_max = std::max(mx[r], tile_max);
      const float correction = std::exp(mx[r] - new_max);  // 0 on the first tile
      float* a = acc + std::size_t(r) * s.dv;
      for (int c = 0; c < s.dv; ++c) a[c] *= correction;
      float tile_sum = 0.0f;
      for (int j = j0; j < j1; ++j) {
        const float p = std::exp(score[r][j - j0] - new_max);
        tile_sum += p;
        const float* vj = vb + std::size_t(j) * s.dv;
        for (int c = 0; c < s.dv; ++c) a[c] += p * vj[c];
      }
      sum[r] = sum[r] * correction + tile_sum;
      mx[r] = new_max;
    }
  }
  for (int r = 0; r < rows; ++r) {
    if (end[r] == 0) continue;  // fully masked: the output stays zero
    const std::size_t row = bh * s.Tq + i0 + r;
    const float inv = 1.0f / sum[r];
    const float* a = acc + std::size_t(r) * s.dv;
    float* o = out + row * s.dv;
    for (int c = 0; c < s.dv; ++c) o[c] = a[c] * inv;
    if (weights) {
      const float* qi = q + row * s.dh;
      float* w = weights + row * s.Tk;
      for (int j = 0; j < end[r]; ++j)
        w[j] = std::exp(dot(qi, kb + std::size_t(j) * s.dh, s.dh) * scale - mx[r]) * inv;
    }
  }
}

}  // namespace

void sdpa_optimized(std::vector<float>& out, std::vector<float>* weights,
                    const std::vector<float>& q, const std::vector<float>& k,
                    const std::vector<float>& v, const SdpaShape& s, const SdpaMask& m,
                    double scale) {
  validate_sdpa(s, m, scale, q.size(), k.size(), v.size());
  out.assign(s.out_size(), 0.0f);
  if (weights) weights->assign(s.weights_size(), 0.0f);
  float* w = weights ? weights->data() : nullptr;
  const int tiles = (s.Tq + kSdpaQueryTile - 1) / kSdpaQueryTile;
  const long long tasks = (long long)s.B * s.H * tiles;
  const double work = double(s.B) * s.H * s.Tq * s.Tk * (s.dh + s.dv);
  const float fscale = float(scale);
#pragma omp parallel if (tasks > 1 && work >= kParallelMinWork)
  {
    std::vector<float> acc(std::size_t(kSdpaQueryTile) * s.dv);  // per thread, O(dv)
#pragma omp for schedule(static)
    for (long long task = 0; task < tasks; ++task) {
      const int tile = int(task % tiles);
      const int bh = int(task / tiles);
      attention_tile(out.data(), w, q.data(), k.data(), v.data(), s, m, fscale, bh / s.H,
                     bh % s.H, tile * kSdpaQueryTile, acc.data());
    }
  }
}

// ---------------------------------------------------------------------------------------------
// KV cache

template <class T>
KvCache<T>::KvCache(int B, int H, int dh, int dv, int capacity)
    : B_(B), H_(H), dh_(dh), dv_(dv), capacity_(capacity) {
  if (B <= 0 || H <= 0 || dh <= 0 || dv <= 0)
    throw InvalidInput("KV cache: B, H, dh, dv must be positive, got " + std::to_string(B) + ", " +
                       std::to_string(H) + ", " + std::to_string(dh) + ", " + std::to_string(dv));
  if (capacity <= 0)
    throw InvalidInput("KV cache: capacity = " + std::to_string(capacity) + " must be positive");
  k_.assign(std::size_t(B) * H * capacity * dh, T(0));
  v_.assign(std::size_t(B) * H * capacity * dv, T(0));
}

template <class T>
void KvCache<T>::append(const std::vector<T>& k, const std::vector<T>& v, int n) {
  if (n <= 0) throw InvalidInput("KV cache: appending n = " + std::to_string(n) + " tokens");
  if (size_ + n > capacity_)
    throw InvalidInput("KV cache overflow: appending n = " + std::to_string(n) +
                       " tokens to a cache holding " + std::to_string(size_) + " of capacity " +
                       std::to_string(capacity_));
  check_size("k", k.size(), std::size_t(B_) * H_ * n * dh_, "B*H*n*dh");
  check_size("v", v.size(), std::size_t(B_) * H_ * n * dv_, "B*H*n*dv");
  for (int bh = 0; bh < B_ * H_; ++bh) {
    std::copy_n(k.begin() + std::size_t(bh) * n * dh_, std::size_t(n) * dh_,
                k_.begin() + (std::size_t(bh) * capacity_ + size_) * dh_);
    std::copy_n(v.begin() + std::size_t(bh) * n * dv_, std::size_t(n) * dv_,
                v_.begin() + (std::size_t(bh) * capacity_ + size_) * dv_);
  }
  size_ += n;
}

template <class T>
SdpaShape KvCache<T>::shape_for(int Tq) const {
  return {B_, H_, Tq, size_, dh_, dv_, capacity_};
}

template class KvCache<float>;
template class KvCache<double>;

}  // namespace normcheck
