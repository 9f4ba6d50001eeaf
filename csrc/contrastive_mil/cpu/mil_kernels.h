// Per-image CPU kernels of the contrastive-MIL op, in plain C++.
//
// Nothing here includes a torch header: the ATen glue in contrastive_mil_cpu.cpp
// owns tensors, threads and dtype dispatch, and hands these functions raw
// pointers to one image's similarity matrix. Keeping the heavy headers out of
// this translation unit keeps it quick to compile.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "../candidate_ks.h"
#include "../pair_codes.h"

namespace mlrank {
namespace cpu {

// What every image of one call shares: the triangle size, the candidate k and,
// when every k is a candidate, a table of reciprocals 1/i (cached between calls
// with the same n) that lets the argmax skip most divisions.
struct MilPlan {
  int64_t n = 0;
  std::vector<int64_t> ks;  // candidate_ks(): ascending; empty means every k in 1..n-1
  std::shared_ptr<const std::vector<double>> reciprocals;
};
MilPlan make_plan(int64_t N, int64_t num_k);

// What the forward of one image hands to the backward and to the caller.
template <typename scalar_t>
struct MilImageResult {
  double delta = 0.0;        // Delta(k*) = mean of the high group - mean of the low group
  int64_t k_star = 1;        // size of the low group, smallest on exact ties
  double u_sum = 0.0;        // sum of the n triangle values, in ascending order
  scalar_t kth_value = 0;    // the k*-th smallest value (rectified)
  int64_t kth_position = 0;  // its row-major index in the strict upper triangle
};

// Forward for one image. `similarity` is the row-major N x N matrix
// tokens @ tokens^T before rectification; only its strict upper triangle is
// read.
//
// Values are rectified (max(s, 0), -0 becomes +0). With every k a candidate and
// thousands of positive values, they are first counted and summed in buckets of
// value: Delta is evaluated at bucket ends and bounded inside buckets, and only
// the buckets that may hold the maximum are sorted. That result is kept only
// when k* beats every other k by more than the rounding of both this and the
// reference's summation order can move Delta. Otherwise (and for sampled k)
// all values are sorted ascending with a keys-only LSD radix sort over their
// IEEE bits (non-negative floats order like unsigned integers) and scanned once
// in double in ascending order, the summation order of torch.cumsum, so k*
// matches the reference bit for bit.
template <typename scalar_t>
MilImageResult<scalar_t> mil_forward_image(const scalar_t* similarity, int64_t N,
                                           const MilPlan& plan);

// The image's pair codes (pair_codes.h) from its similarity matrix and the forward's k*-th value
// and position: for i < j with s = similarity[i][j] > 0, low when s is among the k* smallest under
// the stable order (s < kth_value, or s == kth_value at a triangle position <= kth_position), else
// high; none where s <= 0. `codes` holds code_words(n) words, all written.
template <typename scalar_t>
void mil_codes(const scalar_t* similarity, int64_t N, scalar_t kth_value, int64_t kth_position,
               int32_t* codes);

// Weights of the backward for one image from its codes, written as the symmetric N x N matrix
// M = G + G^T (zero diagonal) so that d loss / d tokens = M @ tokens, with
// G[i][j] = low_weight + mean_weight (code low), high_weight + mean_weight (code high), 0 (none).
// Only tile rows [tile_begin, tile_end) of `tile` x `tile` blocks are written, so callers can
// split one image across threads without overlap.
template <typename scalar_t>
void mil_weights_from_codes(const int32_t* codes, int64_t N, double low_weight, double high_weight,
                            double mean_weight, scalar_t* weights, int64_t tile, int64_t tile_begin,
                            int64_t tile_end);

}  // namespace cpu
}  // namespace mlrank
