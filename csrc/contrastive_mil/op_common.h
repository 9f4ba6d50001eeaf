// What every backend of the contrastive-MIL ops shares: the argument checks (so
// that the CPU kernels, the ATen implementation and the CUDA kernels fail alike),
// the outputs, the product S = tokens @ tokens^T and its finiteness check.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/bmm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/isfinite.h>
#include <ATen/ops/zeros.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <optional>
#include <tuple>
#include <utility>

#include "pair_codes.h"

namespace mlrank {

// The sort counts with 32-bit integers: n = N(N-1)/2 must stay below 2^31.
constexpr int64_t kMaxTokens = 65536;

inline void check_tokens(const at::Tensor& tokens) {
  TORCH_CHECK_TYPE(tokens.scalar_type() == at::kFloat || tokens.scalar_type() == at::kDouble,
                   "mlrank.contrastive_mil: tokens must be float32 or float64 here, got ",
                   tokens.scalar_type());
  TORCH_CHECK_VALUE(tokens.dim() == 3, "mlrank.contrastive_mil: tokens must be 3-D (B, N, d), got ",
                    tokens.sizes());
  TORCH_CHECK_VALUE(tokens.size(1) >= 3, "mlrank.contrastive_mil: need N >= 3 tokens, got ",
                    tokens.sizes());
  TORCH_CHECK_VALUE(tokens.size(1) <= kMaxTokens, "mlrank.contrastive_mil: at most ", kMaxTokens,
                    " tokens per image are supported, got ", tokens.sizes());
}

inline void check_forward_arguments(const at::Tensor& tokens, double tau,
                                    std::optional<int64_t> num_k) {
  check_tokens(tokens);
  TORCH_CHECK_VALUE(tau > 0, "mlrank.contrastive_mil: tau must be > 0, got ", tau);
  TORCH_CHECK_VALUE(!num_k.has_value() || *num_k >= 1,
                    "mlrank.contrastive_mil: num_k must be >= 1, got ", num_k.value_or(0));
}

inline int64_t triangle_size(const at::Tensor& tokens) { return tokens.size(1) * (tokens.size(1) - 1) / 2; }

// The backward's inputs: one value per image, and each image's pair codes, on the tokens' device.
inline void check_backward_arguments(const at::Tensor& grad_prob, const at::Tensor& grad_u_mean,
                                     const at::Tensor& tokens, const at::Tensor& prob,
                                     const at::Tensor& k_star, const at::Tensor& codes) {
  check_tokens(tokens);
  const int64_t batch = tokens.size(0);
  const std::pair<const at::Tensor*, const char*> per_image[] = {
      {&grad_prob, "grad_prob"}, {&grad_u_mean, "grad_u_mean"}, {&prob, "prob"}, {&k_star, "k_star"}};
  for (const auto& [t, name] : per_image) {
    TORCH_CHECK_VALUE(t->device() == tokens.device(), "mlrank.contrastive_mil: ", name, " is on ",
                      t->device(), " but tokens are on ", tokens.device());
    TORCH_CHECK_VALUE(t->dim() == 1 && t->size(0) == batch, "mlrank.contrastive_mil: ", name,
                      " must have shape (", batch, "), got ", t->sizes());
  }
  const int64_t words = code_words(triangle_size(tokens));
  TORCH_CHECK_VALUE(codes.device() == tokens.device() && codes.scalar_type() == at::kInt && codes.dim() == 2 &&
                        codes.size(0) == batch && codes.size(1) == words,
                    "mlrank.contrastive_mil: codes must be int32 of shape (", batch, ", ", words, ") on ",
                    tokens.device(), " (the forward's), got ", codes.scalar_type(), " ", codes.sizes(), " on ",
                    codes.device());
}

// The forward's outputs: prob, k_star, u_mean (one value per image) and the pair codes
// (int32, code_words(n) per image, zeroed: kernels may OR their codes in).
using ForwardOutputs = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

inline ForwardOutputs empty_forward_outputs(const at::Tensor& tokens) {
  const int64_t batch = tokens.size(0);
  const auto long_options = tokens.options().dtype(at::kLong);
  return {at::empty({batch}, tokens.options()), at::empty({batch}, long_options),
          at::empty({batch}, tokens.options()),
          at::zeros({batch, code_words(triangle_size(tokens))}, tokens.options().dtype(at::kInt))};
}

// S = tokens @ tokens^T, the same batched product as the reference's, so every
// backend sorts the reference's values (on the same device) and the backward's
// recomputation matches the forward.
inline at::Tensor similarity_of(const at::Tensor& tokens) {
  return at::bmm(tokens, tokens.transpose(1, 2));
}

// S[i][i] = |token_i|^2 is finite exactly when token i is (barring overflow, which
// would spoil S anyway): a B x N look instead of a pass over the tokens.
inline at::Tensor diagonal_is_finite(const at::Tensor& similarity) {
  return similarity.diagonal(0, 1, 2).isfinite().all();
}

inline void check_finite(const at::Tensor& diagonal_finite) {
  TORCH_CHECK_VALUE(diagonal_finite.item<bool>(),
                    "mlrank.contrastive_mil: tokens contain NaN or Inf (or values so large "
                    "that tokens @ tokens^T overflows)");
}

}  // namespace mlrank
