// The contrastive-MIL ops from ATen operations only, so they run on every device
// torch supports: the reference's forward (product, rectified strict upper
// triangle, stable sort, float64 prefix sums, first maximum over k) with the pair
// codes of the kernels (pair_codes.h), and the kernels' lean backward (the tokens,
// three numbers per image and the codes saved; the weights G + G^T built from the
// codes, one product). Registered for every backend under the _aten names, and for
// CUDA under the kernels' names in builds without CUDA kernels.
#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/bmm.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/triu_indices.h>
#include <ATen/ops/bitwise_and.h>
#include <ATen/ops/bitwise_left_shift.h>
#include <ATen/ops/bitwise_right_shift.h>
#include <ATen/ops/constant_pad_nd.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <limits>
#include <optional>
#include <tuple>
#include <vector>

#include "../candidate_ks.h"
#include "../op_common.h"

namespace mlrank {
namespace {

using at::Tensor;

// (B, n) int64 codes -> (B, code_words(n)) int32 words, sixteen two-bit codes a word.
Tensor pack_codes(const Tensor& codes_by_pair) {
  const int64_t batch = codes_by_pair.size(0), n = codes_by_pair.size(1), words = code_words(n);
  const Tensor padded = at::constant_pad_nd(codes_by_pair, {0, words * kCodesPerWord - n}, 0);
  const Tensor shifts = at::arange(0, 2 * kCodesPerWord, 2, codes_by_pair.options());
  // Disjoint bit fields: their sum is their OR; int64 holds it, int32 keeps its bits.
  return padded.view({batch, words, kCodesPerWord}).bitwise_left_shift(shifts).sum(2).to(at::kInt);
}

// (B, code_words(n)) int32 words -> (B, n) int64 codes.
Tensor unpack_codes(const Tensor& codes, int64_t n) {
  const Tensor shifts = at::arange(0, 2 * kCodesPerWord, 2, codes.options().dtype(at::kLong));
  const Tensor words = codes.to(at::kLong).bitwise_and(0xFFFFFFFFLL).unsqueeze(2);
  return words.bitwise_right_shift(shifts).bitwise_and(3).flatten(1).narrow(1, 0, n);
}

ForwardOutputs contrastive_mil_forward_aten(
    const Tensor& tokens, double tau, std::optional<int64_t> num_k) {
  check_forward_arguments(tokens, tau, num_k);
  const int64_t batch = tokens.size(0), N = tokens.size(1), n = N * (N - 1) / 2;
  const auto long_options = tokens.options().dtype(at::kLong);

  Tensor u;  // the strict upper triangle of max(S, 0), row-major (eq. 4)
  Tensor diagonal_finite;
  {
    const Tensor similarity = similarity_of(tokens);
    diagonal_finite = similarity.diagonal(0, 1, 2).isfinite().all(1);
    if (tokens.is_cpu()) check_finite(diagonal_finite.all());  // free on the CPU; a device would sync
    const Tensor rows_cols = at::triu_indices(N, N, 1, long_options);
    const Tensor offsets = rows_cols[0] * N + rows_cols[1];
    u = similarity.reshape({batch, N * N}).index_select(1, offsets).relu_();
  }
  // Stable: equal values keep their row-major order, which is the tie rule (eq. 5).
  const auto [sorted, order] = u.sort(std::optional<bool>(true), /*dim=*/1, /*descending=*/false);
  const Tensor prefix = sorted.cumsum(1, at::kDouble);
  const Tensor total = prefix.narrow(1, n - 1, 1);

  std::vector<int64_t> candidates = candidate_ks(n, num_k.value_or(0));
  Tensor ks, low_sums;  // low_sums[:, i] = sum of the ks[i] smallest values
  if (candidates.empty()) {
    ks = at::arange(1, n, long_options);
    low_sums = prefix.narrow(1, 0, n - 1);
  } else {
    const int64_t count = int64_t(candidates.size());
    ks = at::from_blob(candidates.data(), {count}, at::kLong).to(long_options, false, /*copy=*/true);
    low_sums = prefix.index_select(1, ks - 1);
  }
  // P(x;k) = tanh(Delta(k) / 2 tau), Delta(k) = mean of the n - k largest minus mean
  // of the k smallest; max() returns the first maximum, so the smallest k on ties.
  const Tensor delta = (total - low_sums) / (-ks + n) - low_sums / ks;
  const auto [best_delta, best_index] = delta.max(1);

  // A non-finite image (NaN or Inf tokens, overflowing products) gets a NaN score, not an
  // error that would need a host sync (the CPU raised above).
  Tensor prob = (best_delta / (2 * tau)).tanh().to(tokens.scalar_type());
  prob = at::where(diagonal_finite, prob, std::numeric_limits<double>::quiet_NaN());
  Tensor k_star = ks.index_select(0, best_index);
  Tensor u_mean = u.mean(1);
  // The low group is the first k* of the stable sorted order: code each pair by its rank.
  const Tensor rank = at::arange(n, long_options).unsqueeze(0);
  const Tensor sorted_codes = at::where(sorted.gt(0), at::where(rank.lt(k_star.unsqueeze(1)), int64_t(kCodeLow),
                                                                int64_t(kCodeHigh)), int64_t(kCodeNone));
  const Tensor codes_by_pair = at::empty_like(sorted_codes).scatter_(1, order, sorted_codes);
  return {prob, k_star, u_mean, pack_codes(codes_by_pair)};
}

Tensor contrastive_mil_backward_aten(const Tensor& grad_prob, const Tensor& grad_u_mean,
                                     const Tensor& tokens, const Tensor& prob,
                                     const Tensor& k_star, const Tensor& codes, double tau) {
  check_backward_arguments(grad_prob, grad_u_mean, tokens, prob, k_star, codes);
  const int64_t N = tokens.size(1), n = N * (N - 1) / 2;
  const auto dtype = tokens.scalar_type();
  const auto long_options = tokens.options().dtype(at::kLong);
  const auto per_image = [](const Tensor& t, at::ScalarType type) {
    return t.to(type).view({-1, 1, 1});
  };

  // The CPU kernels' weights, in the same order of operations:
  // dP/dDelta = (1 - P^2) / (2 tau); dDelta/du_i = -1/k* (low group) or 1/(n - k*).
  const Tensor p = per_image(prob, at::kDouble), k = per_image(k_star, at::kDouble);
  const Tensor scale = per_image(grad_prob, at::kDouble) * (1 - p * p) / (2 * tau);
  const Tensor mean_weight = per_image(grad_u_mean, at::kDouble) / double(n);
  const Tensor low = (-scale / k + mean_weight).to(dtype);
  const Tensor high = (scale / (n - k) + mean_weight).to(dtype);

  // Each pair's weight from the forward's code (none: the kink of max(S, 0)), in the strict
  // upper triangle of an N x N matrix, then mirrored.
  const Tensor pair_codes = unpack_codes(codes, n).unsqueeze(2);  // (B, n, 1)
  const Tensor pair_weights = at::where(pair_codes.eq(int64_t(kCodeLow)), low.view({-1, 1, 1}),
                                        at::where(pair_codes.eq(int64_t(kCodeHigh)), high.view({-1, 1, 1}), 0))
                                  .squeeze(2);
  const Tensor rows_cols = at::triu_indices(N, N, 1, long_options);
  const Tensor offsets = rows_cols[0] * N + rows_cols[1];
  const Tensor weights = at::zeros({tokens.size(0), N * N}, tokens.options())
                             .index_copy_(1, offsets, pair_weights)
                             .view({-1, N, N});
  return at::bmm(weights + weights.transpose(1, 2), tokens);
}

}  // namespace

TORCH_LIBRARY_IMPL(mlrank, CompositeExplicitAutograd, m) {
  m.impl("contrastive_mil_forward_aten", &contrastive_mil_forward_aten);
  m.impl("contrastive_mil_backward_aten", &contrastive_mil_backward_aten);
}

#ifndef WITH_CUDA
// Without hand-written CUDA kernels, CUDA tensors still get a working op.
TORCH_LIBRARY_IMPL(mlrank, CUDA, m) {
  m.impl("contrastive_mil_forward", &contrastive_mil_forward_aten);
  m.impl("contrastive_mil_backward", &contrastive_mil_backward_aten);
}
#endif

}  // namespace mlrank
