// CUDA kernels of the contrastive-MIL ops, in plain CUDA and CUB.
//
// Nothing here includes a torch header: the ATen glue in contrastive_mil_cuda.cpp
// owns tensors, streams, allocation and dtype dispatch, and hands these launchers
// raw device pointers for a group of images. Keeping torch out of the .cu file
// keeps nvcc quick and away from the headers torch pulls in.
//
// Forward (docs/method.md section 3):
//   extract_triangle: the strict upper triangle of S, rectified, as sort keys with
//     their row-major triangle positions;
//   then per group of images (the sort's buffers are sized for one group):
//   sort_triangles: every image's values ascending, equal values in triangle order
//     (a stable radix sort on the float bits; float32 sorts a whole group at once
//     with the image's index above the value's bits);
//   score_images: float64 prefix sums over chunks of the sorted values, Delta(k)
//     at every candidate k, the first maximum, the per-image outputs, and each
//     pair's code (pair_codes.h) from its rank in the sorted order.
// Backward: backward_weights writes G + G^T from the codes (S is not recomputed).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace mlrank {
namespace cuda {

// One sort key per triangle value: float32 puts the image's index (within the
// group) in the high 32 bits and the value's bits in the low 32; float64 uses the
// value's bits. Values <= 0 rectify to +0.0, key bits 0.
using SortKey = uint64_t;

// Images per launch at most: kernels put the image in a grid dimension of this size.
constexpr int64_t kMaxGridImages = 65535;

// Keys and positions of image b start at b * n; a float32 key carries b's index
// within its group of images_per_group.
template <typename scalar_t>
cudaError_t extract_triangle(const scalar_t* similarity, int64_t images, int64_t N,
                             int64_t images_per_group, SortKey* keys, int32_t* positions,
                             cudaStream_t stream);

// Bytes of CUB temporary storage that sort_triangles needs (images <= kMaxGridImages
// from here on).
template <typename scalar_t>
cudaError_t sort_temp_bytes(int64_t images, int64_t n, size_t* bytes);

// Sorts each image's n keys (with their positions) ascending, stably. The result
// lands in the first or the alternate buffers: *in_alternate says which.
// segment_offsets (images + 1 values: 0, n, 2n, ...) is read by float64 only.
template <typename scalar_t>
cudaError_t sort_triangles(SortKey* keys, SortKey* keys_alternate, int32_t* positions,
                           int32_t* positions_alternate, const int64_t* segment_offsets,
                           int64_t images, int64_t n, void* temp, size_t temp_bytes,
                           bool* in_alternate, cudaStream_t stream);

// Bytes of scratch that score_images needs.
size_t score_scratch_bytes(int64_t images, int64_t n);

// From sorted keys and positions: prob = tanh(Delta(k*) / 2 tau), k* (the first
// maximum over the candidate ks: every k in 1..n-1 when num_ks == 0, else the
// ascending device array ks), u_mean, and the pair codes (code_words(n) int32 per
// image, zeroed by the caller): none for a value <= 0, low for the first k* in the
// sorted (stable) order, high for the rest. An image whose Deltas are all NaN
// (overflowing products) gets k* = 1 and prob NaN, never an index past its values.
template <typename scalar_t>
cudaError_t score_images(const SortKey* sorted_keys, const int32_t* sorted_positions,
                         int64_t images, int64_t n, const int64_t* ks, int64_t num_ks, double tau,
                         void* scratch, scalar_t* prob, int64_t* k_star, scalar_t* u_mean,
                         int32_t* codes, cudaStream_t stream);

// The num_k candidate k of the paper's sampling (candidate_ks.h, round half to even), written on
// the device so that no host copy (a sync, and a host pointer a CUDA graph would capture) is
// needed. Repeated k (when num_k approaches n) are left in: score_images reads the array by
// binary search, which a repeat does not disturb.
cudaError_t fill_candidate_ks(int64_t* ks, int64_t n, int64_t num_k, cudaStream_t stream);

// One thread block per image for small triangles (opt-in: MLRANK_CUDA_BLOCK_PER_IMAGE=1): the
// rectified triangle read from S into shared memory with its positions, a bitonic sort of the
// (value, position) pairs (a total order: the stable order), the float64 prefix sums, the first
// maximum over the candidate k and every output, codes included, in one kernel. Returns
// cudaErrorInvalidValue (launching nothing) when the triangle does not fit in shared memory:
// block_per_image_fits says beforehand.
template <typename scalar_t>
bool block_per_image_fits(int64_t N, size_t shared_bytes_per_block);
template <typename scalar_t>
cudaError_t score_images_block_per_image(const scalar_t* similarity, int64_t images, int64_t N,
                                         const int64_t* ks, int64_t num_ks, double tau, scalar_t* prob,
                                         int64_t* k_star, scalar_t* u_mean, int32_t* codes,
                                         size_t shared_bytes_per_block, cudaStream_t stream);

// Writes each image's symmetric weights M = G + G^T of the backward (row-major N x N)
// from its pair codes, so that d loss / d tokens = M @ tokens: G[i][j] = low or high
// weight (plus the mean's) by the code of pair (i, j), 0 for code none and on the diagonal.
template <typename scalar_t>
cudaError_t backward_weights(scalar_t* weights, int64_t images, int64_t N,
                             const scalar_t* grad_prob, const scalar_t* grad_u_mean,
                             const scalar_t* prob, const int64_t* k_star, const int32_t* codes,
                             double tau, cudaStream_t stream);

}  // namespace cuda
}  // namespace mlrank
