#include "mil_kernels.h"

#include <algorithm>
#include <array>
#include <cfloat>
#include <cstring>
#include <limits>
#include <mutex>
#include <type_traits>

namespace mlrank {
namespace cpu {

namespace {

template <typename scalar_t>
using key_t = std::conditional_t<sizeof(scalar_t) == 4, uint32_t, uint64_t>;

// Rectified value as sortable unsigned bits. Everything <= 0 (including -0.0)
// becomes key 0, i.e. +0.0, so that equal values have equal keys.
// Branch-free: the sign of S is a coin flip for random tokens, and a
// mispredicted branch per value would cost more than everything else here.
template <typename scalar_t>
inline key_t<scalar_t> rectified_key(scalar_t value) {
  key_t<scalar_t> bits;
  std::memcpy(&bits, &value, sizeof(bits));
  return bits & (key_t<scalar_t>(0) - key_t<scalar_t>(value > scalar_t(0)));
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

// 8-bit digits: 256 buckets keep every pass's write streams and counters in L1, and
// the fixed cost per pass stays small for the few thousand values of small N.
constexpr int kDigitBits = 8;
constexpr int kBuckets = 1 << kDigitBits;

template <typename Key>
constexpr int radix_passes() {
  return (int(sizeof(Key)) * 8 + kDigitBits - 1) / kDigitBits;
}

template <typename Key>
using Histograms = std::array<std::array<uint32_t, kBuckets>, radix_passes<Key>()>;

// Scratch memory of one thread, kept between calls so that the multi-megabyte
// buffers of large N are not faulted in again for every image.
template <typename Key>
struct Workspace {
  std::vector<Key> keys, scratch;
  std::vector<double> prefix;
  void reserve(int64_t n) {
    if (int64_t(keys.size()) < n) {
      keys.resize(n);
      scratch.resize(n);
      prefix.resize(n);
    }
  }
};

template <typename Key>
Workspace<Key>& thread_workspace(int64_t n) {
  thread_local Workspace<Key> workspace;
  workspace.reserve(n);
  return workspace;
}

// Copies the positive values of the strict upper triangle into `keys`, in
// row-major order, and returns how many there are. The rest rectify to zero:
// they come first in ascending order and add nothing to any prefix sum, so
// they need neither sorting nor summing, only counting.
template <typename scalar_t>
int64_t extract_positive_keys(const scalar_t* similarity, int64_t N, key_t<scalar_t>* keys) {
  int64_t count = 0;
  for (int64_t i = 0; i + 1 < N; ++i) {
    const scalar_t* row = similarity + i * N;
    for (int64_t j = i + 1; j < N; ++j) {
      const auto key = rectified_key(row[j]);
      keys[count] = key;  // written always, kept only if positive: no branch
      count += key != 0;
    }
  }
  return count;
}

// Digit counts of every radix pass in one read of the keys. Two interleaved
// copies break the store-to-load chains of neighbouring keys that share a digit
// (the exponent-heavy top digit usually does).
template <typename Key>
void count_digits(const Key* keys, int64_t m, Histograms<Key>& hist) {
  constexpr int passes = radix_passes<Key>();
  Histograms<Key> odd;
  for (auto& h : hist) h.fill(0);
  for (auto& h : odd) h.fill(0);
  int64_t i = 0;
  for (; i + 1 < m; i += 2) {
    const Key a = keys[i], b = keys[i + 1];
    for (int p = 0; p < passes; ++p) {
      ++hist[p][(a >> (p * kDigitBits)) & (kBuckets - 1)];
      ++odd[p][(b >> (p * kDigitBits)) & (kBuckets - 1)];
    }
  }
  if (i < m)
    for (int p = 0; p < passes; ++p) ++hist[p][(keys[i] >> (p * kDigitBits)) & (kBuckets - 1)];
  for (int p = 0; p < passes; ++p)
    for (int b = 0; b < kBuckets; ++b) hist[p][b] += odd[p][b];
}

// Keys-only LSD radix sort; returns the buffer holding the sorted keys (either
// `keys` or `scratch`). A pass whose digit is the same for every key is skipped.
template <typename Key>
Key* radix_sort_keys(Key* keys, Key* scratch, int64_t n) {
  constexpr int passes = radix_passes<Key>();
  if (n == 0) return keys;
  Histograms<Key> hist;
  count_digits(keys, n, hist);
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
    // Count a row's matches with a loop the compiler vectorises; only the row
    // holding the wanted occurrence is searched one value at a time.
    int64_t matches = 0;
    for (int64_t j = i + 1; j < N; ++j) matches += rectified_key(row[j]) == key;
    if (seen + matches < occurrence) {
      seen += matches;
      continue;
    }
    for (int64_t j = i + 1; j < N; ++j)
      if (rectified_key(row[j]) == key && ++seen == occurrence) return triangle_index(i, j, N);
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

MilPlan make_plan(int64_t N, int64_t num_k) {
  MilPlan plan;
  plan.n = N * (N - 1) / 2;
  plan.ks = candidate_ks(plan.n, num_k);
  if (plan.ks.empty()) {
    static std::mutex mutex;
    static std::shared_ptr<const std::vector<double>> cached;
    std::lock_guard<std::mutex> lock(mutex);
    if (!cached || int64_t(cached->size()) != plan.n) {
      auto table = std::make_shared<std::vector<double>>(plan.n);
      (*table)[0] = 0.0;
      for (int64_t i = 1; i < plan.n; ++i) (*table)[i] = 1.0 / double(i);
      cached = std::move(table);
    }
    plan.reciprocals = cached;
  }
  return plan;
}

namespace {

// First k in [k_begin, k_end] maximising the exact Delta(k), scanning every k.
// Delta is computed as the reference does, with two divisions; to avoid most of
// them, a first pass bounds each Delta from the reciprocal products
// t1 = (total - c) * (1/(n-k)) and t2 = c * (1/k): those differ from the
// quotients by a few ulps of t1 + t2, so a relative margin of 16 ulps is a
// safe bound, and only the k whose upper bound reaches the largest lower bound
// can hold the exact maximum. The second pass evaluates just those exactly.
// prefix[k - offset] is the sum of the k smallest values.
template <typename Consider>
void argmax_every_k(const double* prefix, int64_t offset, int64_t k_begin, int64_t k_end,
                    int64_t n, double total, const double* reciprocal, Consider&& consider) {
  constexpr double margin = 16 * DBL_EPSILON;
  // widen = -1: a lower bound of Delta(k); widen = +1: an upper bound.
  auto bound_at = [&](int64_t k, double widen) {
    const double c = prefix[k - offset];
    return (total - c) * reciprocal[n - k] * (1 + widen * margin) -
           c * reciprocal[k] * (1 - widen * margin);
  };
  // Four running maxima: one would chain every k on the latency of a max.
  double floors[4];
  std::fill(floors, floors + 4, -std::numeric_limits<double>::infinity());
  int64_t k = k_begin;
  for (; k + 3 <= k_end; k += 4)
    for (int lane = 0; lane < 4; ++lane) floors[lane] = std::max(floors[lane], bound_at(k + lane, -1));
  for (; k <= k_end; ++k) floors[0] = std::max(floors[0], bound_at(k, -1));
  const double floor = std::max(std::max(floors[0], floors[1]), std::max(floors[2], floors[3]));
  for (k = k_begin; k <= k_end; ++k)
    if (bound_at(k, +1) >= floor) consider(k);
}

}  // namespace

template <typename scalar_t>
MilImageResult<scalar_t> mil_forward_image(const scalar_t* similarity, int64_t N,
                                           const MilPlan& plan) {
  const std::vector<int64_t>& ks = plan.ks;
  using Key = key_t<scalar_t>;
  const int64_t n = plan.n;
  Workspace<Key>& ws = thread_workspace<Key>(n);
  const int64_t positives = extract_positive_keys(similarity, N, ws.keys.data());
  const int64_t zeros = n - positives;
  const Key* sorted = radix_sort_keys(ws.keys.data(), ws.scratch.data(), positives);

  // prefix[i] = sum of the i+1 smallest positive values, accumulated one by one
  // in ascending order in double, exactly like the reference's float64 cumsum
  // (the zeros before them leave the running sum at exactly 0).
  double* prefix = ws.prefix.data();
  double running = 0.0;
  for (int64_t i = 0; i < positives; ++i) prefix[i] = running += double(key_value<scalar_t>(sorted[i]));
  const double total = running;
  auto prefix_at = [&](int64_t k) { return k <= zeros ? 0.0 : prefix[k - zeros - 1]; };

  MilImageResult<scalar_t> result;
  result.u_sum = total;
  double best = -std::numeric_limits<double>::infinity();
  auto consider = [&](int64_t k) {
    const double low_sum = prefix_at(k);
    const double delta = (total - low_sum) / double(n - k) - low_sum / double(k);
    if (delta > best) {  // strict: the smallest k wins an exact tie
      best = delta;
      result.k_star = k;
    }
  };
  // Over k <= zeros, Delta(k) = total / (n - k) rises strictly with k (adjacent
  // values differ by a factor 1 + 1/(n-k-1), far above rounding), or is 0 for
  // every k when total is 0; so only one k there can be the first maximum.
  const int64_t k_max = n - 1;
  if (ks.empty()) {
    consider(total > 0.0 ? std::max<int64_t>(1, std::min(zeros, k_max)) : 1);
    argmax_every_k(prefix, zeros + 1, zeros + 1, k_max, n, total, plan.reciprocals->data(),
                   consider);
  } else {
    const auto first_positive = std::upper_bound(ks.begin(), ks.end(), zeros);
    if (first_positive != ks.begin()) consider(total > 0.0 ? *(first_positive - 1) : ks.front());
    for (auto k = first_positive; k != ks.end(); ++k) consider(*k);
  }
  result.delta = best;

  // Tie rule: the low group holds every value below the k*-th one plus the
  // first few equal to it in row-major order; remember where the last one sits.
  Key kth_key = 0;
  int64_t first_equal = 0;  // how many values are below the k*-th one
  if (result.k_star > zeros) {
    const Key* kth = sorted + (result.k_star - zeros - 1);
    kth_key = *kth;
    first_equal = zeros + (std::lower_bound(sorted, kth, kth_key) - sorted);
  }
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
  const scalar_t zero = scalar_t(0);
  // One branch-free loop per tie rule, so the compiler can vectorise it.
  auto fill = [&](const scalar_t* s, scalar_t* w, int64_t count, bool ties_low) {
    for (int64_t c = 0; c < count; ++c) {
      const scalar_t v = s[c];
      const bool in_low = v < kth_value || (ties_low && v == kth_value);
      w[c] = v > zero ? (in_low ? low : high) : zero;
    }
  };
  for (int64_t ti = tile_begin; ti < tile_end; ++ti) {
    const int64_t i0 = ti * tile, i1 = std::min(N, i0 + tile);
    for (int64_t i = i0; i < i1; ++i) weights[i * N + i] = zero;
    // Tiles on and right of the diagonal are filled row by row from the upper
    // triangle of S, then mirrored while still in cache. The mirror stays in
    // this tile row's columns, so tile rows never overlap.
    for (int64_t j0 = i0; j0 < N; j0 += tile) {
      const int64_t j1 = std::min(N, j0 + tile);
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t begin = std::max(j0, i + 1);
        if (begin >= j1) continue;
        // Values equal to the k*-th one are low up to column `split`
        // (triangle position kth_position) and high after it.
        const int64_t split =
            std::clamp<int64_t>(kth_position - triangle_index(i, 0, N), begin - 1, j1 - 1);
        fill(similarity + i * N + begin, weights + i * N + begin, split + 1 - begin, true);
        fill(similarity + i * N + split + 1, weights + i * N + split + 1, j1 - split - 1, false);
      }
      for (int64_t j = j0; j < j1; ++j)
        for (int64_t i = i0; i < std::min(i1, j); ++i) weights[j * N + i] = weights[i * N + j];
    }
  }
}

template MilImageResult<float> mil_forward_image<float>(const float*, int64_t, const MilPlan&);
template MilImageResult<double> mil_forward_image<double>(const double*, int64_t,
                                                          const MilPlan&);
template void mil_weight_matrix<float>(const float*, int64_t, float, int64_t, double, double,
                                       double, float*, int64_t, int64_t, int64_t);
template void mil_weight_matrix<double>(const double*, int64_t, double, int64_t, double, double,
                                        double, double*, int64_t, int64_t, int64_t);

}  // namespace cpu
}  // namespace mlrank
