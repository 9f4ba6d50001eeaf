// The contrastive-MIL ops from ATen operations only, so they run on every device
// torch supports: the reference's forward (product, rectified strict upper
// triangle, stable sort, float64 prefix sums, first maximum over k) and the
// kernels' lean backward (tokens and four numbers per image saved; S recomputed,
// the weights G + G^T built, one product). Registered for every backend under the
// _aten names, and for CUDA under the kernels' names in builds without CUDA kernels.
#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/bmm.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/triu_indices.h>
#include <ATen/ops/where.h>
#include <torch/library.h>

#include <optional>
#include <tuple>
#include <vector>

#include "../candidate_ks.h"
#include "../op_common.h"

namespace mlrank {
namespace {

using at::Tensor;

ForwardOutputs contrastive_mil_forward_aten(
    const Tensor& tokens, double tau, std::optional<int64_t> num_k) {
  check_forward_arguments(tokens, tau, num_k);
  const int64_t batch = tokens.size(0), N = tokens.size(1), n = N * (N - 1) / 2;
  const auto long_options = tokens.options().dtype(at::kLong);

  Tensor u;  // the strict upper triangle of max(S, 0), row-major (eq. 4)
  {
    const Tensor similarity = similarity_of(tokens);
    check_finite(diagonal_is_finite(similarity));
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

  Tensor prob = (best_delta / (2 * tau)).tanh().to(tokens.scalar_type());
  Tensor k_star = ks.index_select(0, best_index);
  const Tensor kth_index = (k_star - 1).unsqueeze(1);
  Tensor kth_value = sorted.gather(1, kth_index).squeeze(1);
  Tensor kth_position = order.gather(1, kth_index).squeeze(1);
  Tensor u_mean = u.mean(1);
  return {prob, k_star, u_mean, kth_value, kth_position};
}

Tensor contrastive_mil_backward_aten(const Tensor& grad_prob, const Tensor& grad_u_mean,
                                     const Tensor& tokens, const Tensor& prob,
                                     const Tensor& k_star, const Tensor& kth_value,
                                     const Tensor& kth_position, double tau) {
  check_backward_arguments(grad_prob, grad_u_mean, tokens, prob, k_star, kth_value, kth_position);
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

  // The low group: values below the k*-th one, and those equal to it up to its
  // row-major triangle position.
  const Tensor similarity = similarity_of(tokens);
  const Tensor row = at::arange(N, long_options).unsqueeze(1);
  const Tensor col = at::arange(N, long_options).unsqueeze(0);
  const Tensor position = row * N - (row * (row + 1)).div(2, "floor") + (col - row - 1);
  const Tensor kth = per_image(kth_value, dtype);
  const Tensor in_low = similarity.lt(kth).logical_or_(
      similarity.eq(kth).logical_and_(position.le(kth_position.view({-1, 1, 1}))));
  // Only the strict upper triangle's positive values carry gradient (the kink of max(S, 0)).
  const Tensor carries = col.gt(row).logical_and(similarity.gt(0));
  const Tensor weights = at::where(carries, at::where(in_low, low, high), 0);
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
