#include <cub/block/block_load.cuh>
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_segmented_radix_sort.cuh>
#include <cuda/std/limits>
#include <cuda_runtime.h>

#include <cstdint>

#include "../pair_codes.h"
#include "mil_kernels_cuda.h"

namespace mlrank {
namespace cuda {

namespace {

// --- keys ---------------------------------------------------------------------------------------

// Non-negative IEEE floats order like their bits read as unsigned integers.
// Everything <= 0 (-0.0 too, and NaN, which the glue rejects anyway) becomes
// +0.0, so that equal rectified values have equal keys.
__device__ __forceinline__ SortKey sort_key(float value, int64_t image) {
  const uint32_t bits = value > 0.0f ? __float_as_uint(value) : 0u;
  return (SortKey(image) << 32) | bits;
}

__device__ __forceinline__ SortKey sort_key(double value, int64_t /*image*/) {
  return value > 0.0 ? SortKey(__double_as_longlong(value)) : SortKey(0);
}

template <typename scalar_t>
__device__ __forceinline__ scalar_t value_of(SortKey key);

template <>
__device__ __forceinline__ float value_of<float>(SortKey key) {
  return __uint_as_float(uint32_t(key));  // the low 32 bits; the image index is above them
}

template <>
__device__ __forceinline__ double value_of<double>(SortKey key) {
  return __longlong_as_double(static_cast<long long>(key));
}

// Row-major index of (i, j), i < j, in the strict upper triangle of N x N.
__device__ __forceinline__ int64_t triangle_index(int64_t i, int64_t j, int64_t N) {
  return i * N - i * (i + 1) / 2 + (j - i - 1);
}

int bits_for(int64_t count) {
  int bits = 0;
  while ((int64_t(1) << bits) < count) ++bits;
  return bits;
}

// --- rectify and compact the triangle ----------------------------------------------------------

constexpr int kExtractThreads = 256;

// Block (x, i, image) handles up to kExtractThreads columns j > i of row i: reads
// and writes are both contiguous along the row. Images are sorted in groups of
// images_per_group, so a float32 key carries the image's index within its group.
template <typename scalar_t>
__global__ void extract_triangle_kernel(const scalar_t* __restrict__ similarity, int64_t N,
                                        int64_t n, int64_t first_image, int64_t images_per_group,
                                        SortKey* __restrict__ keys,
                                        int32_t* __restrict__ positions) {
  const int64_t image = first_image + blockIdx.z, i = blockIdx.y;
  const int64_t j = i + 1 + int64_t(blockIdx.x) * kExtractThreads + threadIdx.x;
  if (j >= N) return;
  const int64_t t = triangle_index(i, j, N);
  keys[image * n + t] = sort_key(similarity[(image * N + i) * N + j], image % images_per_group);
  positions[image * n + t] = int32_t(t);
}

// --- prefix sums and the maximum over k ----------------------------------------------------------

// Each block scores one chunk of one image's sorted values, each thread a run
// of kItems consecutive ones (the order the prefix sums are taken in).
constexpr int kScoreThreads = 256;
constexpr int kItems = 8;
constexpr int64_t kChunk = int64_t(kScoreThreads) * kItems;

// The best (Delta, k) so far: the larger Delta, and the smaller k on exact ties.
struct Best {
  double delta;
  int64_t k;
};

struct TakeBest {
  __device__ __forceinline__ Best operator()(const Best& a, const Best& b) const {
    return (a.delta > b.delta || (a.delta == b.delta && a.k < b.k)) ? a : b;
  }
};

__device__ __forceinline__ Best no_best() {
  return {-::cuda::std::numeric_limits<double>::infinity(), ::cuda::std::numeric_limits<int64_t>::max()};
}

int64_t chunks_of(int64_t n) { return (n + kChunk - 1) / kChunk; }

// The scratch of score_images, carved out of one buffer.
struct ScoreScratch {
  double* chunk_sums;     // images x chunks
  double* chunk_offsets;  // images x chunks: the sum of the chunks before
  double* totals;         // images
  Best* chunk_best;       // images x chunks

  ScoreScratch(void* base, int64_t images, int64_t chunks) {
    chunk_best = static_cast<Best*>(base);
    chunk_sums = reinterpret_cast<double*>(chunk_best + images * chunks);
    chunk_offsets = chunk_sums + images * chunks;
    totals = chunk_offsets + images * chunks;
  }
  static size_t bytes(int64_t images, int64_t chunks) {
    return size_t(images * chunks) * (sizeof(Best) + 2 * sizeof(double)) +
           size_t(images) * sizeof(double);
  }
};

using ChunkLoad = cub::BlockLoad<SortKey, kScoreThreads, kItems, cub::BLOCK_LOAD_WARP_TRANSPOSE>;

template <typename scalar_t>
__device__ __forceinline__ void load_chunk_values(const SortKey* image_keys, int64_t n,
                                                  int64_t begin,
                                                  typename ChunkLoad::TempStorage& storage,
                                                  double (&values)[kItems]) {
  SortKey keys[kItems];
  const int valid = int(n - begin < kChunk ? n - begin : kChunk);
  ChunkLoad(storage).Load(image_keys + begin, keys, valid, SortKey(0));  // key 0 is +0.0
  for (int item = 0; item < kItems; ++item) values[item] = double(value_of<scalar_t>(keys[item]));
}

template <typename scalar_t>
__global__ void chunk_sums_kernel(const SortKey* __restrict__ keys, int64_t n, int64_t chunks,
                                  double* __restrict__ chunk_sums) {
  using BlockReduce = cub::BlockReduce<double, kScoreThreads>;
  __shared__ union {
    typename ChunkLoad::TempStorage load;
    typename BlockReduce::TempStorage reduce;
  } storage;
  const int64_t image = blockIdx.y, chunk = blockIdx.x;
  double values[kItems];
  load_chunk_values<scalar_t>(keys + image * n, n, chunk * kChunk, storage.load, values);
  double sum = 0.0;
  for (int item = 0; item < kItems; ++item) sum += values[item];
  __syncthreads();  // the union's load storage is reused
  const double chunk_sum = BlockReduce(storage.reduce).Sum(sum);
  if (threadIdx.x == 0) chunk_sums[image * chunks + chunk] = chunk_sum;
}

// One block per image: the exclusive scan of its chunk sums, and its total.
__global__ void chunk_offsets_kernel(const double* __restrict__ chunk_sums, int64_t chunks,
                                     double* __restrict__ chunk_offsets,
                                     double* __restrict__ totals) {
  using BlockScan = cub::BlockScan<double, kScoreThreads>;
  __shared__ typename BlockScan::TempStorage storage;
  const int64_t image = blockIdx.x;
  double carry = 0.0;
  for (int64_t base = 0; base < chunks; base += kScoreThreads) {
    const int64_t chunk = base + threadIdx.x;
    const double sum = chunk < chunks ? chunk_sums[image * chunks + chunk] : 0.0;
    double before, aggregate;
    BlockScan(storage).ExclusiveSum(sum, before, aggregate);
    if (chunk < chunks) chunk_offsets[image * chunks + chunk] = carry + before;
    carry += aggregate;
    __syncthreads();  // storage is reused by the next round
  }
  if (threadIdx.x == 0) totals[image] = carry;
}

// Whether k is one of the num_ks ascending candidates (every k when num_ks == 0).
__device__ __forceinline__ bool is_candidate(int64_t k, const int64_t* ks, int64_t num_ks) {
  if (num_ks == 0) return true;
  int64_t low = 0, high = num_ks;
  while (low < high) {
    const int64_t middle = (low + high) / 2;
    if (ks[middle] < k)
      low = middle + 1;
    else
      high = middle;
  }
  return low < num_ks && ks[low] == k;
}

// Delta(k) = (total - S(k)) / (n - k) - S(k) / k at every candidate k of the chunk,
// S(k) being the sum of the k smallest values, and the chunk's best.
template <typename scalar_t>
__global__ void chunk_argmax_kernel(const SortKey* __restrict__ keys, int64_t n, int64_t chunks,
                                    const double* __restrict__ chunk_offsets,
                                    const double* __restrict__ totals,
                                    const int64_t* __restrict__ ks, int64_t num_ks,
                                    Best* __restrict__ chunk_best) {
  using BlockScan = cub::BlockScan<double, kScoreThreads>;
  using BlockReduce = cub::BlockReduce<Best, kScoreThreads>;
  __shared__ union {
    typename ChunkLoad::TempStorage load;
    typename BlockScan::TempStorage scan;
    typename BlockReduce::TempStorage reduce;
  } storage;
  const int64_t image = blockIdx.y, chunk = blockIdx.x;
  const int64_t first = chunk * kChunk + int64_t(threadIdx.x) * kItems;  // index of values[0]
  double values[kItems];
  load_chunk_values<scalar_t>(keys + image * n, n, chunk * kChunk, storage.load, values);
  double run_sum = 0.0;
  for (int item = 0; item < kItems; ++item) run_sum += values[item];
  __syncthreads();
  double before;
  BlockScan(storage.scan).ExclusiveSum(run_sum, before);
  __syncthreads();

  const double total = totals[image];
  double low_sum = chunk_offsets[image * chunks + chunk] + before;
  Best best = no_best();
  for (int item = 0; item < kItems; ++item) {
    low_sum += values[item];
    const int64_t k = first + item + 1;  // the low group holds values[0..item]
    if (k < n && is_candidate(k, ks, num_ks)) {
      const double delta = (total - low_sum) / double(n - k) - low_sum / double(k);
      if (delta > best.delta) best = {delta, k};  // strict: the smallest k within the run
    }
  }
  const Best chunk_result = BlockReduce(storage.reduce).Reduce(best, TakeBest());
  if (threadIdx.x == 0) chunk_best[image * chunks + chunk] = chunk_result;
}

// One block per image: the best over its chunks, and the outputs.
template <typename scalar_t>
__global__ void finish_kernel(const Best* __restrict__ chunk_best, int64_t chunks,
                              const double* __restrict__ totals, int64_t n, double tau,
                              scalar_t* prob, int64_t* k_star, scalar_t* u_mean) {
  using BlockReduce = cub::BlockReduce<Best, kScoreThreads>;
  __shared__ typename BlockReduce::TempStorage storage;
  const int64_t image = blockIdx.x;
  Best best = no_best();
  for (int64_t chunk = threadIdx.x; chunk < chunks; chunk += kScoreThreads)
    best = TakeBest()(best, chunk_best[image * chunks + chunk]);
  best = BlockReduce(storage).Reduce(best, TakeBest());
  if (threadIdx.x != 0) return;
  // Every Delta NaN (products overflowed to inf): no k wins. Report NaN at k = 1, a real k.
  const bool none = best.k == ::cuda::std::numeric_limits<int64_t>::max();
  prob[image] = none ? scalar_t(nan("")) : scalar_t(tanh(best.delta / (2.0 * tau)));
  k_star[image] = none ? 1 : best.k;
  u_mean[image] = scalar_t(totals[image] / double(n));
}

// One thread per sorted value: its pair's code from its rank (the low group is the first k* of
// the stable order), OR-ed into the pair's word (sixteen pairs share a word).
template <typename scalar_t>
__global__ void codes_kernel(const SortKey* __restrict__ sorted_keys,
                             const int32_t* __restrict__ sorted_positions, int64_t n,
                             const int64_t* __restrict__ k_star, int32_t* __restrict__ codes) {
  const int64_t image = blockIdx.y, rank = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (rank >= n) return;
  const SortKey key = sorted_keys[image * n + rank];
  if (!(value_of<scalar_t>(key) > scalar_t(0))) return;  // code none: nothing to set
  const int64_t pair = sorted_positions[image * n + rank];
  const uint32_t code = rank < k_star[image] ? kCodeLow : kCodeHigh;
  unsigned int* word = reinterpret_cast<unsigned int*>(codes + image * code_words(n) + pair / kCodesPerWord);
  atomicOr(word, code << (2 * (pair % kCodesPerWord)));
}

// --- backward ---------------------------------------------------------------------------------

constexpr int kTile = 32;
constexpr int kTileRows = 8;

// Block (tile_col, tile_row, image) writes one kTile x kTile tile of the image's weights: each
// entry (i, j) off the diagonal takes the weight of the code of pair (min, max). No S is read.
template <typename scalar_t>
__global__ void backward_weights_kernel(scalar_t* __restrict__ weights, int64_t N,
                                        const scalar_t* __restrict__ grad_prob,
                                        const scalar_t* __restrict__ grad_u_mean,
                                        const scalar_t* __restrict__ prob,
                                        const int64_t* __restrict__ k_star,
                                        const int32_t* __restrict__ codes, double tau) {
  const int64_t tile_row = blockIdx.y, tile_col = blockIdx.x, image = blockIdx.z;
  // The per-image weights in double, rounded once, as the CPU kernels do:
  // dP/dDelta = (1 - P^2) / (2 tau); dDelta/du_i = -1/k* (low group) or 1/(n - k*).
  const int64_t n = N * (N - 1) / 2;
  const double p = double(prob[image]), k = double(k_star[image]);
  const double scale = double(grad_prob[image]) * (1.0 - p * p) / (2.0 * tau);
  const double mean_weight = double(grad_u_mean[image]) / double(n);
  const scalar_t value[4] = {scalar_t(0), scalar_t(-scale / k + mean_weight),
                             scalar_t(scale / (double(n) - k) + mean_weight), scalar_t(0)};
  const int32_t* image_codes = codes + image * code_words(n);
  scalar_t* matrix = weights + image * N * N;
  const int64_t row0 = tile_row * kTile, col0 = tile_col * kTile;
  for (int r = threadIdx.y; r < kTile; r += kTileRows) {
    const int64_t i = row0 + r, j = col0 + threadIdx.x;
    if (i >= N || j >= N) continue;
    const int64_t a = i < j ? i : j, b = i < j ? j : i;
    const uint32_t code = a == b ? kCodeNone : code_at(image_codes, triangle_index(a, b, N));
    matrix[i * N + j] = value[code];
  }
}

// --- the paper's sampled k ----------------------------------------------------------------------

__global__ void candidate_ks_kernel(int64_t* ks, int64_t n, int64_t num_k) {
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= num_k) return;
  if (num_k == 1) {
    ks[0] = 1;
    return;
  }
  const int64_t span = n - 2, steps = num_k - 1;
  const int64_t q = j * span / steps, r = j * span % steps;
  const bool up = 2 * r > steps || (2 * r == steps && (q % 2 == 1));  // half to even
  ks[j] = 1 + q + (up ? 1 : 0);
}

// --- one thread block per image ----------------------------------------------------------------

constexpr int kBlockThreads = 1024;

__host__ __device__ inline int64_t next_power_of_two(int64_t value) {
  int64_t power = 1;
  while (power < value) power *= 2;
  return power;
}

template <typename scalar_t>
__device__ __forceinline__ bool pair_less(scalar_t a, uint16_t pa, scalar_t b, uint16_t pb) {
  return a < b || (a == b && pa < pb);
}

// Shared memory: the padded triangle's values (scalar_t) and their positions (uint16_t).
template <typename scalar_t>
__global__ void __launch_bounds__(kBlockThreads)
    block_per_image_kernel(const scalar_t* __restrict__ similarity, int64_t N, int64_t n, int64_t padded,
                           const int64_t* __restrict__ ks, int64_t num_ks, double tau, scalar_t* prob,
                           int64_t* k_star, scalar_t* u_mean, int32_t* __restrict__ codes) {
  using BlockScan = cub::BlockScan<double, kBlockThreads>;
  using BlockSum = cub::BlockReduce<double, kBlockThreads>;
  using BlockBest = cub::BlockReduce<Best, kBlockThreads>;
  __shared__ union {
    typename BlockScan::TempStorage scan;
    typename BlockSum::TempStorage sum;
    typename BlockBest::TempStorage best;
  } storage;
  __shared__ int64_t shared_k;
  extern __shared__ unsigned char shared_bytes[];
  scalar_t* values = reinterpret_cast<scalar_t*>(shared_bytes);
  uint16_t* positions = reinterpret_cast<uint16_t*>(values + padded);
  const int64_t image = blockIdx.x;
  const scalar_t* matrix = similarity + image * N * N;

  // The rectified strict upper triangle (max(s, 0), -0 and NaN to +0, as the other paths), padded
  // with +inf at the largest positions, which sort last.
  for (int64_t index = threadIdx.x; index < N * N; index += kBlockThreads) {
    const int64_t i = index / N, j = index % N;
    if (j <= i) continue;
    const scalar_t s = matrix[index];
    const int64_t t = triangle_index(i, j, N);
    values[t] = s > scalar_t(0) ? s : scalar_t(0);
    positions[t] = uint16_t(t);
  }
  for (int64_t t = n + threadIdx.x; t < padded; t += kBlockThreads) {
    values[t] = ::cuda::std::numeric_limits<scalar_t>::infinity();
    positions[t] = uint16_t(0xFFFF);
  }
  __syncthreads();

  // Bitonic sort, ascending by (value, position): equal values keep their triangle order.
  for (int64_t size = 2; size <= padded; size *= 2) {
    for (int64_t stride = size / 2; stride > 0; stride /= 2) {
      for (int64_t t = threadIdx.x; t < padded; t += kBlockThreads) {
        const int64_t partner = t ^ stride;
        if (partner <= t) continue;
        const bool ascending = (t & size) == 0;
        const bool swap = ascending ? pair_less(values[partner], positions[partner], values[t], positions[t])
                                    : pair_less(values[t], positions[t], values[partner], positions[partner]);
        if (swap) {
          const scalar_t value = values[t];
          values[t] = values[partner];
          values[partner] = value;
          const uint16_t position = positions[t];
          positions[t] = positions[partner];
          positions[partner] = position;
        }
      }
      __syncthreads();
    }
  }

  // Each thread owns a contiguous run of ranks: its sum in ascending order, then a block scan.
  const int64_t run = (n + kBlockThreads - 1) / kBlockThreads;
  const int64_t first = int64_t(threadIdx.x) * run, last = first + run < n ? first + run : n;
  double run_sum = 0.0;
  for (int64_t r = first; r < last; ++r) run_sum += double(values[r]);
  double before, total;
  BlockScan(storage.scan).ExclusiveSum(run_sum, before, total);
  __syncthreads();

  Best best = no_best();
  double low_sum = before;
  for (int64_t r = first; r < last; ++r) {
    low_sum += double(values[r]);
    const int64_t k = r + 1;  // the low group holds ranks 0..r
    if (k < n && is_candidate(k, ks, num_ks)) {
      const double delta = (total - low_sum) / double(n - k) - low_sum / double(k);
      if (delta > best.delta) best = {delta, k};
    }
  }
  best = BlockBest(storage.best).Reduce(best, TakeBest());
  if (threadIdx.x == 0) {
    const bool none = best.k == ::cuda::std::numeric_limits<int64_t>::max();  // every Delta NaN
    shared_k = none ? 1 : best.k;
    prob[image] = none ? scalar_t(nan("")) : scalar_t(tanh(best.delta / (2.0 * tau)));
    k_star[image] = shared_k;
    u_mean[image] = scalar_t(total / double(n));
  }
  __syncthreads();

  const int64_t k = shared_k;
  int32_t* image_codes = codes + image * code_words(n);
  for (int64_t r = threadIdx.x; r < n; r += kBlockThreads) {
    if (!(values[r] > scalar_t(0))) continue;  // code none
    const int64_t pair = positions[r];
    const uint32_t code = r < k ? kCodeLow : kCodeHigh;
    atomicOr(reinterpret_cast<unsigned int*>(image_codes + pair / kCodesPerWord), code << (2 * (pair % kCodesPerWord)));
  }
}

}  // namespace

// --- launchers ---------------------------------------------------------------------------------

template <typename scalar_t>
cudaError_t extract_triangle(const scalar_t* similarity, int64_t images, int64_t N,
                             int64_t images_per_group, SortKey* keys, int32_t* positions,
                             cudaStream_t stream) {
  const int64_t n = N * (N - 1) / 2;
  for (int64_t first = 0; first < images; first += kMaxGridImages) {
    const int64_t count = images - first < kMaxGridImages ? images - first : kMaxGridImages;
    const dim3 grid(unsigned((N - 1 + kExtractThreads - 1) / kExtractThreads), unsigned(N - 1),
                    unsigned(count));
    extract_triangle_kernel<scalar_t><<<grid, kExtractThreads, 0, stream>>>(
        similarity, N, n, first, images_per_group, keys, positions);
  }
  return cudaGetLastError();
}

template <typename scalar_t>
cudaError_t sort_temp_bytes(int64_t images, int64_t n, size_t* bytes) {
  cub::DoubleBuffer<SortKey> keys(nullptr, nullptr);
  cub::DoubleBuffer<int32_t> positions(nullptr, nullptr);
  const int count = int(images * n);
  if constexpr (sizeof(scalar_t) == 4) {
    return cub::DeviceRadixSort::SortPairs(nullptr, *bytes, keys, positions, count, 0,
                                           32 + bits_for(images));
  } else {
    const int64_t* offsets = nullptr;
    return cub::DeviceSegmentedRadixSort::SortPairs(nullptr, *bytes, keys, positions, count,
                                                    int(images), offsets, offsets + 1, 0, 63);
  }
}

template <typename scalar_t>
cudaError_t sort_triangles(SortKey* keys, SortKey* keys_alternate, int32_t* positions,
                           int32_t* positions_alternate, const int64_t* segment_offsets,
                           int64_t images, int64_t n, void* temp, size_t temp_bytes,
                           bool* in_alternate, cudaStream_t stream) {
  cub::DoubleBuffer<SortKey> key_buffers(keys, keys_alternate);
  cub::DoubleBuffer<int32_t> position_buffers(positions, positions_alternate);
  const int count = int(images * n);
  cudaError_t status;
  if constexpr (sizeof(scalar_t) == 4) {
    // One sort for the whole group: the image index above the value's 32 bits
    // keeps images apart and every pass uses the whole GPU (few, large segments
    // would get one thread block each from a segmented sort).
    status = cub::DeviceRadixSort::SortPairs(temp, temp_bytes, key_buffers, position_buffers,
                                             count, 0, 32 + bits_for(images), stream);
  } else {
    // Rectified float64 bits use 63 bits; no room for the image above them.
    status = cub::DeviceSegmentedRadixSort::SortPairs(
        temp, temp_bytes, key_buffers, position_buffers, count, int(images), segment_offsets,
        segment_offsets + 1, 0, 63, stream);
  }
  *in_alternate = key_buffers.Current() == keys_alternate;
  return status;
}

size_t score_scratch_bytes(int64_t images, int64_t n) {
  return ScoreScratch::bytes(images, chunks_of(n));
}

template <typename scalar_t>
cudaError_t score_images(const SortKey* sorted_keys, const int32_t* sorted_positions,
                         int64_t images, int64_t n, const int64_t* ks, int64_t num_ks, double tau,
                         void* scratch, scalar_t* prob, int64_t* k_star, scalar_t* u_mean,
                         int32_t* codes, cudaStream_t stream) {
  const int64_t chunks = chunks_of(n);
  ScoreScratch s(scratch, images, chunks);
  const dim3 chunk_grid{unsigned(chunks), unsigned(images)};
  chunk_sums_kernel<scalar_t><<<chunk_grid, kScoreThreads, 0, stream>>>(sorted_keys, n, chunks,
                                                                       s.chunk_sums);
  chunk_offsets_kernel<<<unsigned(images), kScoreThreads, 0, stream>>>(s.chunk_sums, chunks,
                                                                        s.chunk_offsets, s.totals);
  chunk_argmax_kernel<scalar_t><<<chunk_grid, kScoreThreads, 0, stream>>>(
      sorted_keys, n, chunks, s.chunk_offsets, s.totals, ks, num_ks, s.chunk_best);
  finish_kernel<scalar_t><<<unsigned(images), kScoreThreads, 0, stream>>>(
      s.chunk_best, chunks, s.totals, n, tau, prob, k_star, u_mean);
  const dim3 codes_grid{unsigned((n + kScoreThreads - 1) / kScoreThreads), unsigned(images)};
  codes_kernel<scalar_t><<<codes_grid, kScoreThreads, 0, stream>>>(sorted_keys, sorted_positions, n,
                                                                   k_star, codes);
  return cudaGetLastError();
}

template <typename scalar_t>
cudaError_t backward_weights(scalar_t* weights, int64_t images, int64_t N,
                             const scalar_t* grad_prob, const scalar_t* grad_u_mean,
                             const scalar_t* prob, const int64_t* k_star, const int32_t* codes,
                             double tau, cudaStream_t stream) {
  const unsigned tiles = unsigned((N + kTile - 1) / kTile);
  const dim3 block(kTile, kTileRows);
  const int64_t words = code_words(N * (N - 1) / 2);
  for (int64_t first = 0; first < images; first += kMaxGridImages) {
    const int64_t count = images - first < kMaxGridImages ? images - first : kMaxGridImages;
    const dim3 grid(tiles, tiles, unsigned(count));
    backward_weights_kernel<scalar_t><<<grid, block, 0, stream>>>(
        weights + first * N * N, N, grad_prob + first, grad_u_mean + first, prob + first,
        k_star + first, codes + first * words, tau);
  }
  return cudaGetLastError();
}

cudaError_t fill_candidate_ks(int64_t* ks, int64_t n, int64_t num_k, cudaStream_t stream) {
  if (num_k <= 0) return cudaSuccess;
  candidate_ks_kernel<<<unsigned((num_k + 255) / 256), 256, 0, stream>>>(ks, n, num_k);
  return cudaGetLastError();
}

template <typename scalar_t>
bool block_per_image_fits(int64_t N, size_t shared_bytes_per_block) {
  const int64_t n = N * (N - 1) / 2;
  // positions are 16-bit: the padded triangle must hold fewer than 2^16 values
  const int64_t padded = next_power_of_two(n);
  return padded <= 65536 && size_t(padded) * (sizeof(scalar_t) + sizeof(uint16_t)) <= shared_bytes_per_block;
}

template <typename scalar_t>
cudaError_t score_images_block_per_image(const scalar_t* similarity, int64_t images, int64_t N,
                                         const int64_t* ks, int64_t num_ks, double tau, scalar_t* prob,
                                         int64_t* k_star, scalar_t* u_mean, int32_t* codes,
                                         size_t shared_bytes_per_block, cudaStream_t stream) {
  if (!block_per_image_fits<scalar_t>(N, shared_bytes_per_block)) return cudaErrorInvalidValue;
  const int64_t n = N * (N - 1) / 2, padded = next_power_of_two(n);
  const size_t bytes = size_t(padded) * (sizeof(scalar_t) + sizeof(uint16_t));
  cudaError_t status = cudaFuncSetAttribute(block_per_image_kernel<scalar_t>,
                                            cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes));
  if (status != cudaSuccess) return status;
  for (int64_t first = 0; first < images; first += kMaxGridImages) {
    const int64_t count = images - first < kMaxGridImages ? images - first : kMaxGridImages;
    block_per_image_kernel<scalar_t><<<unsigned(count), kBlockThreads, bytes, stream>>>(
        similarity + first * N * N, N, n, padded, ks, num_ks, tau, prob + first, k_star + first, u_mean + first,
        codes + first * code_words(n));
  }
  return cudaGetLastError();
}

#define MLRANK_INSTANTIATE(scalar_t)                                                              \
  template cudaError_t extract_triangle<scalar_t>(const scalar_t*, int64_t, int64_t, int64_t,     \
                                                  SortKey*, int32_t*, cudaStream_t);              \
  template cudaError_t sort_temp_bytes<scalar_t>(int64_t, int64_t, size_t*);                      \
  template cudaError_t sort_triangles<scalar_t>(SortKey*, SortKey*, int32_t*, int32_t*,           \
                                                const int64_t*, int64_t, int64_t, void*, size_t, \
                                                bool*, cudaStream_t);                             \
  template cudaError_t score_images<scalar_t>(const SortKey*, const int32_t*, int64_t, int64_t,   \
                                              const int64_t*, int64_t, double, void*, scalar_t*, \
                                              int64_t*, scalar_t*, int32_t*, cudaStream_t);      \
  template cudaError_t backward_weights<scalar_t>(scalar_t*, int64_t, int64_t, const scalar_t*,   \
                                                  const scalar_t*, const scalar_t*,              \
                                                  const int64_t*, const int32_t*, double,        \
                                                  cudaStream_t);

MLRANK_INSTANTIATE(float)
MLRANK_INSTANTIATE(double)

template bool block_per_image_fits<float>(int64_t, size_t);
template bool block_per_image_fits<double>(int64_t, size_t);
template cudaError_t score_images_block_per_image<float>(const float*, int64_t, int64_t, const int64_t*, int64_t,
                                                        double, float*, int64_t*, float*, int32_t*, size_t,
                                                        cudaStream_t);
template cudaError_t score_images_block_per_image<double>(const double*, int64_t, int64_t, const int64_t*, int64_t,
                                                         double, double*, int64_t*, double*, int32_t*, size_t,
                                                         cudaStream_t);
#undef MLRANK_INSTANTIATE

}  // namespace cuda
}  // namespace mlrank
