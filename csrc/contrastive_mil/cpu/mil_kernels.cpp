#include "mil_kernels.h"

#include <algorithm>
#include <array>
#include <cfloat>
#include <cstring>
#include <limits>
#include <mutex>
#include <type_traits>
#include <utility>

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
  // The bucketed path's per-bucket state, sized per call.
  std::vector<int64_t> bucket_ends, bucket_starts;
  std::vector<double> bucket_sums, bucket_last, bucket_inner;
  std::vector<uint8_t> bucket_flags;
  std::vector<std::pair<int64_t, double>> scanned;
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

// Tie rule: the low group holds every value below the k*-th one plus the first
// few equal to it in row-major order. Records the k*-th value and where the last
// of those sits. `run` holds, sorted, the values ranked before + 1, before + 2,
// ... up to at least k* (null when k* is among the rectified zeros, all ranked
// first).
template <typename scalar_t>
void record_kth(const scalar_t* similarity, int64_t N, const key_t<scalar_t>* run,
                int64_t before, MilImageResult<scalar_t>& result) {
  key_t<scalar_t> kth_key = 0;
  int64_t first_equal = 0;  // how many values are below the k*-th one
  if (run != nullptr && result.k_star > before) {
    const auto* kth = run + (result.k_star - before - 1);
    kth_key = *kth;
    first_equal = before + (std::lower_bound(run, kth, kth_key) - run);
  }
  result.kth_value = key_value<scalar_t>(kth_key);
  result.kth_position = find_occurrence(similarity, N, kth_key, result.k_star - first_equal);
}

// The forward by a full sort: exact in every case, the fallback of the bucketed path.
template <typename scalar_t>
MilImageResult<scalar_t> forward_by_sorting(const scalar_t* similarity, int64_t N,
                                            const MilPlan& plan, int64_t positives) {
  const std::vector<int64_t>& ks = plan.ks;
  using Key = key_t<scalar_t>;
  const int64_t n = plan.n;
  Workspace<Key>& ws = thread_workspace<Key>(n);
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

  record_kth(similarity, N, sorted, zeros, result);
  return result;
}

// Fewer positive values than this are simply sorted.
constexpr int64_t kMinBucketed = 2048;

// The exact max over every k without sorting every value (k* and Delta as the
// sorted scan, or nothing when it cannot prove that).
//
// Values go into B buckets by value (monotone, so a bucket holds a run of the
// sorted order). From each bucket's count and sum, Delta is evaluated at every
// bucket's last k, and for the k inside a bucket it is bounded above using only
// that each of its values is >= the bucket's lower edge: Delta falls as the low
// group's sum S(k) grows, and S(k) >= S(start) + lower edge. Only buckets whose
// bound reaches the best value so far are sorted and scanned k by k.
//
// Sums here are added in another order than the reference's ascending cumsum,
// so they differ by rounding. Both are within g T of the exact sums (g =
// (terms + 64) 2^-53, T the total), which moves Delta(k) by at most
// err(k) = 4 g T (1/k + 1/(n-k)) for either. The result is returned only when
// the best k beats every other k by more than the two errors combined, so the
// reference's rounded Deltas have the same first maximum; otherwise the caller
// sorts.
template <typename scalar_t>
bool forward_by_buckets(const scalar_t* similarity, int64_t N, const MilPlan& plan,
                        int64_t positives, MilImageResult<scalar_t>& result) {
  using Key = key_t<scalar_t>;
  const int64_t n = plan.n, zeros = n - positives, k_max = n - 1;
  const double* recip = plan.reciprocals->data();  // recip[i] = 1 / i
  Workspace<Key>& ws = thread_workspace<Key>(n);
  const Key* keys = ws.keys.data();

  Key max_key = 0;
  for (int64_t i = 0; i < positives; ++i) max_key = std::max(max_key, keys[i]);
  int64_t buckets = 64;
  while (buckets < positives / 16 && buckets < (int64_t(1) << 13)) buckets *= 2;
  // b = floor(v * scale), clamped: monotone in v, so equal values share a bucket.
  const double scale = double(buckets) / double(key_value<scalar_t>(max_key));
  auto bucket_of = [&](Key key) {
    return std::min<int64_t>(buckets - 1, int64_t(double(key_value<scalar_t>(key)) * scale));
  };
  // ends[b] and sums[b]: k and the low group's sum once bucket b - 1 is in (ends[0] = zeros).
  std::vector<int64_t>& ends = ws.bucket_ends;
  std::vector<double>& sums = ws.bucket_sums;
  ends.assign(buckets + 1, 0);
  sums.assign(buckets + 1, 0.0);
  for (int64_t i = 0; i < positives; ++i) {
    const int64_t b = bucket_of(keys[i]) + 1;
    ++ends[b];
    sums[b] += double(key_value<scalar_t>(keys[i]));
  }
  ends[0] = zeros;
  for (int64_t b = 0; b < buckets; ++b) {
    ends[b + 1] += ends[b];
    sums[b + 1] += sums[b];
  }
  const double total = sums[buckets];
  if (!(total > 0.0)) return false;
  const double g4t = 4 * double(positives + buckets + 64) * (DBL_EPSILON / 2) * 1.01 * total;
  auto err = [&](int64_t k) { return g4t * (recip[k] + recip[n - k]); };
  // Delta with reciprocals: within an ulp or two of the quotients, well inside err.
  auto delta_at = [&](int64_t k, double low_sum) {
    return (total - low_sum) * recip[n - k] - low_sum * recip[k];
  };
  constexpr double none = -std::numeric_limits<double>::infinity();

  // Every k to consider: k <= zeros (where Delta = total / (n - k) rises, so only
  // the last can win), each bucket's last k, and the k inside candidate buckets.
  int64_t best_k = 0;
  double best = none;
  auto consider = [&](int64_t k, double delta) {
    if (delta > best || (delta == best && k < best_k)) {
      best = delta;
      best_k = k;
    }
  };
  const int64_t zero_k = std::min(zeros, k_max);
  if (zero_k >= 1) consider(zero_k, delta_at(zero_k, 0.0));
  // last[b]: Delta at bucket b's last k (+ its error); inner[b]: an upper bound
  // of Delta over the k strictly inside bucket b, errors included.
  std::vector<double>& last = ws.bucket_last;
  std::vector<double>& inner = ws.bucket_inner;
  last.assign(buckets, none);
  inner.assign(buckets, none);
  for (int64_t b = 0; b < buckets; ++b) {
    const int64_t k_end = ends[b + 1];
    if (k_end == ends[b]) continue;
    if (k_end <= k_max) {
      const double d = delta_at(k_end, sums[b + 1]);
      consider(k_end, d);
      last[b] = d + err(k_end);
    }
    const int64_t first = ends[b] + 1, k_last = std::min(k_end - 1, k_max);
    if (first <= k_last) {
      // Every value here is >= the bucket's lower edge (rounded down a little),
      // so S(k) >= sums[b] + edge over these k, and Delta falls as S(k) grows.
      const double low = sums[b] + double(b) / scale * (1 - 1e-12);
      inner[b] = (total - low) * recip[n - k_last] - low * recip[k_last] + err(first) + err(k_last);
    }
  }
  std::vector<uint8_t>& candidate = ws.bucket_flags;
  candidate.assign(buckets, 0);
  int64_t gathered = 0;
  const double floor = best - err(best_k);
  for (int64_t b = 0; b < buckets; ++b)
    if (inner[b] >= floor) {
      candidate[b] = 1;
      gathered += ends[b + 1] - ends[b];
    }
  if (gathered > positives / 4) return false;  // not worth it: sort everything instead

  // Copies the wanted buckets' values into scratch, each run sorted, at start[b].
  std::vector<int64_t>& start = ws.bucket_starts;
  start.assign(buckets + 1, 0);
  auto gather = [&](auto&& wanted) {
    int64_t offset = 0;
    for (int64_t b = 0; b < buckets; ++b) {
      start[b] = offset;
      if (wanted(b)) offset += ends[b + 1] - ends[b];
    }
    std::vector<int64_t> fill(start.begin(), start.begin() + buckets);
    Key* out = ws.scratch.data();
    if (offset > 0)
      for (int64_t i = 0; i < positives; ++i) {
        const int64_t b = bucket_of(keys[i]);
        if (wanted(b)) out[fill[b]++] = keys[i];
      }
    for (int64_t b = 0; b < buckets; ++b)
      if (wanted(b)) std::sort(out + start[b], out + start[b] + (ends[b + 1] - ends[b]));
  };
  const Key* sorted = ws.scratch.data();
  std::vector<std::pair<int64_t, double>>& scanned = ws.scanned;
  scanned.clear();
  if (gathered > 0) {
    gather([&](int64_t b) { return candidate[b] != 0; });
    for (int64_t b = 0; b < buckets; ++b) {
      if (!candidate[b]) continue;
      double running = sums[b];
      for (int64_t k = ends[b] + 1; k < ends[b + 1] && k <= k_max; ++k) {
        running += double(key_value<scalar_t>(sorted[start[b] + (k - ends[b] - 1)]));
        const double d = delta_at(k, running);
        scanned.emplace_back(k, d);
        consider(k, d);
      }
    }
  }

  // Certificate: every other k is beaten by more than both rounding errors.
  const double lead = best - err(best_k);
  if (zero_k >= 1 && zero_k != best_k && delta_at(zero_k, 0.0) + err(zero_k) >= lead) return false;
  for (int64_t b = 0; b < buckets; ++b) {
    if (ends[b + 1] != best_k && last[b] >= lead) return false;
    if (!candidate[b] && inner[b] >= lead) return false;
  }
  for (const auto& [k, d] : scanned)
    if (k != best_k && d + err(k) >= lead) return false;

  result.k_star = best_k;
  result.delta = best;
  result.u_sum = total;
  if (best_k <= zeros) {
    record_kth<scalar_t>(similarity, N, nullptr, zeros, result);
  } else {
    // The bucket holding the k*-th value: its run of the sorted order.
    const int64_t b = std::upper_bound(ends.begin() + 1, ends.end(), best_k - 1) - ends.begin() - 1;
    if (!candidate[b]) gather([&](int64_t other) { return other == b; });
    record_kth(similarity, N, sorted + start[b], ends[b], result);
  }
  return true;
}

template <typename scalar_t>
MilImageResult<scalar_t> mil_forward_image(const scalar_t* similarity, int64_t N,
                                           const MilPlan& plan) {
  using Key = key_t<scalar_t>;
  Workspace<Key>& ws = thread_workspace<Key>(plan.n);
  const int64_t positives = extract_positive_keys(similarity, N, ws.keys.data());
  if (plan.ks.empty() && positives >= kMinBucketed) {
    MilImageResult<scalar_t> result;
    if (forward_by_buckets(similarity, N, plan, positives, result)) return result;
  }
  return forward_by_sorting(similarity, N, plan, positives);
}

template <typename scalar_t>
void mil_codes(const scalar_t* similarity, int64_t N, scalar_t kth_value, int64_t kth_position,
               int32_t* codes) {
  const scalar_t zero = scalar_t(0);
  uint32_t word = 0;
  int shift = 0;
  int64_t position = 0;
  for (int64_t i = 0; i + 1 < N; ++i) {
    const scalar_t* row = similarity + i * N;
    for (int64_t j = i + 1; j < N; ++j, ++position) {
      const scalar_t v = row[j];
      const bool in_low = v < kth_value || (v == kth_value && position <= kth_position);
      const uint32_t code = v > zero ? (in_low ? kCodeLow : kCodeHigh) : kCodeNone;
      word |= code << shift;
      shift += 2;
      if (shift == 2 * kCodesPerWord) {
        codes[position / kCodesPerWord] = int32_t(word);
        word = 0;
        shift = 0;
      }
    }
  }
  if (shift != 0) codes[position / kCodesPerWord] = int32_t(word);
}

template <typename scalar_t>
void mil_weights_from_codes(const int32_t* codes, int64_t N, double low_weight, double high_weight,
                            double mean_weight, scalar_t* weights, int64_t tile, int64_t tile_begin,
                            int64_t tile_end) {
  // The weight of each code: none, low, high (code 3 does not occur).
  const scalar_t value[4] = {scalar_t(0), scalar_t(low_weight + mean_weight),
                             scalar_t(high_weight + mean_weight), scalar_t(0)};
  for (int64_t ti = tile_begin; ti < tile_end; ++ti) {
    const int64_t i0 = ti * tile, i1 = std::min(N, i0 + tile);
    for (int64_t i = i0; i < i1; ++i) weights[i * N + i] = scalar_t(0);
    // Tiles on and right of the diagonal are filled row by row from the codes, then mirrored
    // while still in cache. The mirror stays in this tile row's columns, so tile rows never overlap.
    for (int64_t j0 = i0; j0 < N; j0 += tile) {
      const int64_t j1 = std::min(N, j0 + tile);
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t begin = std::max(j0, i + 1);
        int64_t position = triangle_index(i, begin, N);
        scalar_t* w = weights + i * N;
        for (int64_t j = begin; j < j1; ++j, ++position) w[j] = value[code_at(codes, position)];
      }
      for (int64_t j = j0; j < j1; ++j)
        for (int64_t i = i0; i < std::min(i1, j); ++i) weights[j * N + i] = weights[i * N + j];
    }
  }
}

template MilImageResult<float> mil_forward_image<float>(const float*, int64_t, const MilPlan&);
template MilImageResult<double> mil_forward_image<double>(const double*, int64_t,
                                                          const MilPlan&);
template void mil_codes<float>(const float*, int64_t, float, int64_t, int32_t*);
template void mil_codes<double>(const double*, int64_t, double, int64_t, int32_t*);
template void mil_weights_from_codes<float>(const int32_t*, int64_t, double, double, double, float*,
                                            int64_t, int64_t, int64_t);
template void mil_weights_from_codes<double>(const int32_t*, int64_t, double, double, double, double*,
                                             int64_t, int64_t, int64_t);

}  // namespace cpu
}  // namespace mlrank
