// The k over which P(x;k) is maximised, shared by every backend. Plain C++.
#pragma once

#include <cstdint>
#include <vector>

namespace mlrank {

// For a triangle of n values: every k in 1..n-1 when num_k <= 0 ("all"), otherwise
// the deduplicated k_j = round_half_even(1 + j (n - 2) / (num_k - 1)), j = 0..num_k-1,
// computed in exact integer arithmetic (num_k == 1 gives k = 1; num_k >= n - 1 gives
// all). An empty result means "all k" so that the common case allocates nothing.
std::vector<int64_t> candidate_ks(int64_t n, int64_t num_k);

}  // namespace mlrank
