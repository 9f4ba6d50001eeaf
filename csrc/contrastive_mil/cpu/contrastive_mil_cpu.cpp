// ATen glue of the CPU kernels: argument checks, the two matrix products (S in
// the forward, the weights times the tokens in the backward), threading over
// images, and dtype dispatch. The per-image work is in mil_kernels.cpp.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/bmm.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <cmath>
#include <optional>
#include <tuple>

#include "../op_common.h"
#include "mil_kernels.h"

namespace mlrank {
namespace {

using at::Tensor;

// Square tiles of the backward's weight matrix; 64 x 64 floats keep a tile and
// its mirror in L1/L2 while still giving enough work items to share threads.
constexpr int64_t kWeightTile = 64;

ForwardOutputs contrastive_mil_forward_cpu(
    const Tensor& tokens, double tau, std::optional<int64_t> num_k) {
  check_forward_arguments(tokens, tau, num_k);
  const int64_t batch = tokens.size(0), N = tokens.size(1), n = N * (N - 1) / 2;
  const cpu::MilPlan plan = cpu::make_plan(N, num_k.value_or(0));

  const Tensor similarity = similarity_of(tokens).contiguous();
  check_finite(diagonal_is_finite(similarity));
  ForwardOutputs outputs = empty_forward_outputs(tokens);
  // Named references, not a structured binding: lambdas may capture these in C++17 too.
  Tensor &prob = std::get<0>(outputs), &k_star = std::get<1>(outputs), &u_mean = std::get<2>(outputs);
  Tensor& codes = std::get<3>(outputs);
  const int64_t words = code_words(n);

  AT_DISPATCH_FLOATING_TYPES(tokens.scalar_type(), "contrastive_mil_forward_cpu", [&] {
    const scalar_t* s = similarity.const_data_ptr<scalar_t>();
    scalar_t* prob_out = prob.mutable_data_ptr<scalar_t>();
    int64_t* k_out = k_star.mutable_data_ptr<int64_t>();
    scalar_t* mean_out = u_mean.mutable_data_ptr<scalar_t>();
    int32_t* codes_out = codes.mutable_data_ptr<int32_t>();
    at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        const auto r = cpu::mil_forward_image<scalar_t>(s + b * N * N, N, plan);
        prob_out[b] = scalar_t(std::tanh(r.delta / (2.0 * tau)));
        k_out[b] = r.k_star;
        mean_out[b] = scalar_t(r.u_sum / double(n));
        cpu::mil_codes<scalar_t>(s + b * N * N, N, r.kth_value, r.kth_position, codes_out + b * words);
      }
    });
  });
  return outputs;
}

Tensor contrastive_mil_backward_cpu(const Tensor& grad_prob, const Tensor& grad_u_mean,
                                    const Tensor& tokens, const Tensor& prob,
                                    const Tensor& k_star, const Tensor& codes, double tau) {
  check_backward_arguments(grad_prob, grad_u_mean, tokens, prob, k_star, codes);
  const int64_t batch = tokens.size(0), N = tokens.size(1), n = N * (N - 1) / 2;
  const auto as_double = [](const Tensor& t) { return t.to(at::kDouble).contiguous(); };
  const Tensor g_prob = as_double(grad_prob), g_mean = as_double(grad_u_mean), p = as_double(prob);
  const Tensor k = k_star.to(at::kLong).contiguous(), pair_codes = codes.contiguous();
  const int64_t words = code_words(n);

  // The weights from the forward's pair codes: no recomputation of S, so they follow the
  // groups the forward chose whatever matmul precision is in force now.
  Tensor weights = at::empty({batch, N, N}, tokens.options());
  const int64_t tiles = (N + kWeightTile - 1) / kWeightTile;

  AT_DISPATCH_FLOATING_TYPES(tokens.scalar_type(), "contrastive_mil_backward_cpu", [&] {
    scalar_t* w = weights.mutable_data_ptr<scalar_t>();
    const double* gp = g_prob.const_data_ptr<double>();
    const double* gm = g_mean.const_data_ptr<double>();
    const double* pr = p.const_data_ptr<double>();
    const int64_t* ks = k.const_data_ptr<int64_t>();
    const int32_t* c = pair_codes.const_data_ptr<int32_t>();
    at::parallel_for(0, batch * tiles, 1, [&](int64_t begin, int64_t end) {
      for (int64_t item = begin; item < end; ++item) {
        const int64_t b = item / tiles, tile = item % tiles;
        // dP/dDelta = (1 - P^2) / (2 tau); dDelta/du_i = -1/k* (low) or 1/(n-k*) (high)
        const double scale = gp[b] * (1.0 - pr[b] * pr[b]) / (2.0 * tau);
        const double kb = double(ks[b]);
        cpu::mil_weights_from_codes<scalar_t>(c + b * words, N, -scale / kb, scale / (double(n) - kb),
                                              gm[b] / double(n), w + b * N * N, kWeightTile, tile, tile + 1);
      }
    });
  });
  return at::bmm(weights, tokens);
}

}  // namespace

TORCH_LIBRARY_IMPL(mlrank, CPU, m) {
  m.impl("contrastive_mil_forward", &contrastive_mil_forward_cpu);
  m.impl("contrastive_mil_backward", &contrastive_mil_backward_cpu);
}

}  // namespace mlrank
