#include "mil_kernels.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <limits>
#include <type_traits>

namespace mlrank {
namespace cpu {

namespace {

template <typename scalar_t>
using key_t = std::conditional_t<sizeof(scalar_t) == 4, uint32_t, uint64_t>;

// Rectified value as sortable unsigned bits. Everything <= 0 (including -0.0)
// becomes key 0, i.e. +0.0, so that equal values have equal keys.
template <typename scalar_t>
inline key_t<scalar_t> rectified_key(scalar_t value) {
  key_t<scalar_t> key = 0;
  if (value > scalar_t(0)) std::memcpy(&key, &value, sizeof(key));
  return key;
}

template <typename scalar_t>
inline scalar_t key_value(key_t<scalar_t> key) {
  scalar_t value;
  std::memcpy(&value, &key, sizeof(value));
  return value;
}

// Row-major index of (i, j), i < j, in the strict upper triangle of N x N.
inline int64_t triangle_index(int64_t i, int64_t j, int64_t N) {
  return i * N - i * (i + 1) / 2 + (j - i - 1);
}

constexpr int kDigitBits = 11;
constexpr int kBuckets = 1 << kDigitBits;

template <typename Key>
constexpr int radix_passes() {
  return (int(sizeof(Key)) * 8 + kDigitBits - 1) / kDigitBits;
}

template <typename Key>
using Histograms = std::array<std::array<uint32_t, kBuckets>, radix_passes<Key>()>;

// Copies the rectified strict upper triangle of `similarity` into `keys` in
// row-major order and counts every radix digit on the way, so the sort needs
// no separate counting pass.
template <typename scalar_t>
void extract_triangle(const scalar_t* similarity, int64_t N, key_t<scalar_t>* keys,
                      Histograms<key_t<scalar_t>>& hist) {
  using Key = key_t<scalar_t>;
  constexpr int passes = radix_passes<Key>();
  for (auto& h : hist) h.fill(0);
  Key* out = keys;
  for (int64_t i = 0; i + 1 < N; ++i) {
    const scalar_t* row = similarity + i * N;
    for (int64_t j = i + 1; j < N; ++j) {
      const Key key = rectified_key(row[j]);
      *out++ = key;
      for (int p = 0; p < passes; ++p) ++hist[p][(key >> (p * kDigitBits)) & (kBuckets - 1)];
    }
  }
}

// Keys-only LSD radix sort; returns the buffer holding the sorted keys (either
// `keys` or `scratch`). A pass whose digit is the same for every key is skipped.
template <typename Key>
Key* radix_sort_keys(Key* keys, Key* scratch, int64_t n, Histograms<Key>& hist) {
  constexpr int passes = radix_passes<Key>();
  Key* src = keys;
  Key* dst = scratch;
  std::array<uint32_t, kBuckets> offsets;
  for (int p = 0; p < passes; ++p) {
    const int shift = p * kDigitBits;
    const auto& counts = hist[p];
    if (counts[(src[0] >> shift) & (kBuckets - 1)] == uint32_t(n)) continue;
    uint32_t running = 0;
    for (int b = 0; b < kBuckets; ++b) {
      offsets[b] = running;
      running += counts[b];
    }
    for (int64_t i = 0; i < n; ++i) {
      const Key key = src[i];
      dst[offsets[(key >> shift) & (kBuckets - 1)]++] = key;
    }
    std::swap(src, dst);
  }
  return src;
}

// Position in row-major triangle order of the `occurrence`-th (1-based) value
// whose key equals `key`.
template <typename scalar_t>
int64_t find_occurrence(const scalar_t* similarity, int64_t N, key_t<scalar_t> key,
                        int64_t occurrence) {
  int64_t seen = 0;
  for (int64_t i = 0; i + 1 < N; ++i) {
    const scalar_t* row = similarity + i * N;
    for (int64_t j = i + 1; j < N; ++j) {
      if (rectified_key(row[j]) == key && ++seen == occurrence) return triangle_index(i, j, N);
    }
  }
  return -1;  // unreachable: the key came from this triangle
}

}  // namespace

std::vector<int64_t> candidate_ks(int64_t n, int64_t num_k) {
  std::vector<int64_t> ks;
  if (num_k <= 0 || num_k >= n - 1) return ks;  // all k
  if (num_k == 1) return {1};
  const int64_t span = n - 2, steps = num_k - 1;
  ks.reserve(num_k);
  for (int64_t j = 0; j < num_k; ++j) {
    const int64_t q = j * span / steps, r = j * span % steps;
    // round half to even, as Python's round() and torch.round do
    const bool up = 2 * r > steps || (2 * r == steps && (q % 2 == 1));
    const int64_t k = 1 + q + (up ? 1 : 0);
    if (ks.empty() || ks.back() != k) ks.push_back(k);
  }
  return ks;
}

template <typename scalar_t>
MilImageResult<scalar_t> mil_forward_image(const scalar_t* similarity, int64_t N,
                                           const std::vector<int64_t>& ks) {
  using Key = key_t<scalar_t>;
  const int64_t n = N * (N - 1) / 2;
  std::vector<Key> buffer(2 * n);
  Histograms<Key> hist;
  extract_triangle(similarity, N, buffer.data(), hist);
  const Key* sorted = radix_sort_keys(buffer.data(), buffer.data() + n, n, hist);

  // One pass for the total, one for the argmax: both accumulate sequentially in
  // ascending order, exactly like the reference's float64 cumsum.
  double total = 0.0;
  for (int64_t i = 0; i < n; ++i) total += double(key_value<scalar_t>(sorted[i]));

  MilImageResult<scalar_t> result;
  result.u_sum = total;
  double best = -std::numeric_limits<double>::infinity();
  double prefix = 0.0;
  auto consider = [&](int64_t k) {
    const double delta = (total - prefix) / double(n - k) - prefix / double(k);
    if (delta > best) {  // strict: the smallest k wins an exact tie
      best = delta;
      result.k_star = k;
    }
  };
  if (ks.empty()) {
    for (int64_t k = 1; k < n; ++k) {
      prefix += double(key_value<scalar_t>(sorted[k - 1]));
      consider(k);
    }
  } else {
    int64_t summed = 0;
    for (const int64_t k : ks) {
      for (; summed < k; ++summed) prefix += double(key_value<scalar_t>(sorted[summed]));
      consider(k);
    }
  }
  result.delta = best;

  // Tie rule: the low group holds every value below the k*-th one plus the
  // first few equal to it in row-major order; remember where the last one sits.
  const Key kth_key = sorted[result.k_star - 1];
  const int64_t first_equal = std::lower_bound(sorted, sorted + n, kth_key) - sorted;
  result.kth_value = key_value<scalar_t>(kth_key);
  result.kth_position = find_occurrence(similarity, N, kth_key, result.k_star - first_equal);
  return result;
}

template <typename scalar_t>
void mil_weight_matrix(const scalar_t* similarity, int64_t N, scalar_t kth_value,
                       int64_t kth_position, double low_weight, double high_weight,
                       double mean_weight, scalar_t* weights, int64_t tile,
                       int64_t tile_begin, int64_t tile_end) {
  const scalar_t low = scalar_t(low_weight + mean_weight);
  const scalar_t high = scalar_t(high_weight + mean_weight);
  for (int64_t ti = tile_begin; ti < tile_end; ++ti) {
    const int64_t i0 = ti * tile, i1 = std::min(N, i0 + tile);
    for (int64_t i = i0; i < i1; ++i) weights[i * N + i] = scalar_t(0);
    // Tiles on and right of the diagonal; each also writes its mirror image,
    // which stays inside this tile row's columns, so tile rows never overlap.
    for (int64_t j0 = i0; j0 < N; j0 += tile) {
      const int64_t j1 = std::min(N, j0 + tile);
      for (int64_t i = i0; i < i1; ++i) {
        const scalar_t* row = similarity + i * N;
        const int64_t position0 = triangle_index(i, i + 1, N) - (i + 1);
        for (int64_t j = std::max(j0, i + 1); j < j1; ++j) {
          const scalar_t s = row[j];
          scalar_t g = scalar_t(0);
          if (s > scalar_t(0)) {
            const bool in_low = s < kth_value || (s == kth_value && position0 + j <= kth_position);
            g = in_low ? low : high;
          }
          weights[i * N + j] = g;
          weights[j * N + i] = g;
        }
      }
    }
  }
}

template MilImageResult<float> mil_forward_image<float>(const float*, int64_t,
                                                        const std::vector<int64_t>&);
template MilImageResult<double> mil_forward_image<double>(const double*, int64_t,
                                                          const std::vector<int64_t>&);
template void mil_weight_matrix<float>(const float*, int64_t, float, int64_t, double, double,
                                       double, float*, int64_t, int64_t, int64_t);
template void mil_weight_matrix<double>(const double*, int64_t, double, int64_t, double, double,
                                        double, double*, int64_t, int64_t, int64_t);

}  // namespace cpu
}  // namespace mlrank
