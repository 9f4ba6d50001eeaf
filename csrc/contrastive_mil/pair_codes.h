// Which side of the sorted order each pair of the strict upper triangle of S fell on, two bits a
// pair, sixteen pairs to a 32-bit word: what the forward hands the backward in place of S.
//
// The backward's weight of pair p is a function of its code alone (docs/method.md section 3):
// none (s <= 0: the rectification's kink, no gradient), low (among the k* smallest in the stable
// order) or high. Storing the codes (n / 4 bytes an image) instead of recomputing S in the
// backward costs no matrix product, and makes the backward read exactly the groups the forward
// chose, whatever matmul precision is in force when it runs. Plain C++, shared by every backend.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define MLRANK_HOST_DEVICE __host__ __device__
#else
#define MLRANK_HOST_DEVICE
#endif

namespace mlrank {

constexpr uint32_t kCodeNone = 0;  // s <= 0
constexpr uint32_t kCodeLow = 1;   // among the k* smallest
constexpr uint32_t kCodeHigh = 2;  // the rest
constexpr int64_t kCodesPerWord = 16;

// Words of an image's codes, for a triangle of n pairs.
MLRANK_HOST_DEVICE constexpr int64_t code_words(int64_t n) { return (n + kCodesPerWord - 1) / kCodesPerWord; }

// The code of pair p (row-major triangle index) in an image's words.
MLRANK_HOST_DEVICE inline uint32_t code_at(const int32_t* words, int64_t p) {
  return (uint32_t(words[p / kCodesPerWord]) >> (2 * (p % kCodesPerWord))) & 3u;
}

}  // namespace mlrank
