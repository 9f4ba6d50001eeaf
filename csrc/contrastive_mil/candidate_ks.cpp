#include "candidate_ks.h"

namespace mlrank {

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

}  // namespace mlrank
