// Autograd of the contrastive-MIL ops in C++, registered for the Autograd key as torchvision
// registers its ops': the forward saves the tokens, P(x), k* and the pair codes (never S or a
// permutation), and the backward runs the backward op of the same implementation. Python's
// torch.library autograd ran a Python function at every call and in every backward; this runs none.
//
// Under create_graph=True (a gradient penalty) the backward must itself be differentiable, which
// the fused backward op is not: it then recomputes the gradient from ATen operations with the
// forward's split into low and high groups held fixed (docs/method.md section 3, "second-order
// gradients"), so that autograd sees how the weights (1 - P^2) / 2 tau move with the tokens.
#include <ATen/TensorOperators.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/bmm.h>
#include <ATen/ops/triu_indices.h>
#include <ATen/ops/zeros.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <optional>

#include "../op_common.h"

namespace mlrank {
namespace {

using at::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

using ForwardSignature = ForwardOutputs(const Tensor&, double, std::optional<int64_t>);
using BackwardSignature = Tensor(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                 const Tensor&, double);

// (B, code_words(n)) int32 pair codes -> (B, N, N) float masks of the strict upper triangle's pairs
// with code `code`.
Tensor pair_mask(const Tensor& codes, int64_t N, int64_t code, const at::TensorOptions& options) {
  const int64_t n = N * (N - 1) / 2;
  const auto long_options = codes.options().dtype(at::kLong);
  const Tensor shifts = at::arange(0, 2 * kCodesPerWord, 2, long_options);
  const Tensor per_pair = codes.to(at::kLong)
                              .bitwise_and(0xFFFFFFFFLL)
                              .unsqueeze(2)
                              .bitwise_right_shift(shifts)
                              .bitwise_and(3)
                              .flatten(1)
                              .narrow(1, 0, n);
  const Tensor rows_cols = at::triu_indices(N, N, 1, long_options);
  const Tensor offsets = rows_cols[0] * N + rows_cols[1];
  return at::zeros({codes.size(0), N * N}, options)
      .index_copy_(1, offsets, per_pair.eq(code).to(options.dtype()))
      .view({-1, N, N});
}

// d(grad_prob . P + grad_u_mean . u_mean) / d tokens from differentiable ATen operations, the
// groups held fixed by the codes; in the tokens' dtype whatever autocast is in force.
Tensor differentiable_backward(const Tensor& grad_prob, const Tensor& grad_u_mean, const Tensor& tokens,
                               const Tensor& k_star, const Tensor& codes, double tau) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(
      c10::DispatchKeySet({c10::DispatchKey::AutocastCPU, c10::DispatchKey::AutocastCUDA}));
  const int64_t N = tokens.size(1), n = N * (N - 1) / 2;
  const Tensor similarity = at::bmm(tokens, tokens.transpose(1, 2));
  const Tensor low = pair_mask(codes, N, kCodeLow, tokens.options());
  const Tensor high = pair_mask(codes, N, kCodeHigh, tokens.options());
  const Tensor k = k_star.to(tokens.scalar_type()).view({-1, 1, 1});
  const Tensor rectified = similarity * (low + high);
  const Tensor low_sum = (rectified * low).sum({1, 2}, /*keepdim=*/true);
  const Tensor high_sum = (rectified * high).sum({1, 2}, /*keepdim=*/true);
  const Tensor prob = ((high_sum / (-k + double(n)) - low_sum / k) / (2 * tau)).tanh();
  const Tensor scale = grad_prob.view({-1, 1, 1}) * (1 - prob * prob) / (2 * tau);
  const Tensor mean_weight = grad_u_mean.view({-1, 1, 1}) / double(n);
  const Tensor weights = low * (mean_weight - scale / k) + high * (mean_weight + scale / (-k + double(n)));
  return at::bmm(weights + weights.transpose(1, 2), tokens);
}

template <const char* forward_name, const char* backward_name>
class ContrastiveMil : public torch::autograd::Function<ContrastiveMil<forward_name, backward_name>> {
 public:
  static variable_list forward(AutogradContext* ctx, const Tensor& tokens, double tau, std::optional<int64_t> num_k) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    static const auto op =
        c10::Dispatcher::singleton().findSchemaOrThrow(forward_name, "").typed<ForwardSignature>();
    auto [prob, k_star, u_mean, codes] = op.call(tokens, tau, num_k);
    ctx->mark_non_differentiable({k_star, codes});
    ctx->save_for_backward({tokens, prob, k_star, codes});
    ctx->saved_data["tau"] = tau;
    return {prob, k_star, u_mean, codes};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const Tensor &tokens = saved[0], &prob = saved[1], &k_star = saved[2], &codes = saved[3];
    const double tau = ctx->saved_data["tau"].toDouble();
    const auto defined = [&](const Tensor& grad) { return grad.defined() ? grad : at::zeros_like(prob); };
    const Tensor grad_prob = defined(grads[0]), grad_u_mean = defined(grads[2]);
    Tensor grad_tokens;
    if (at::GradMode::is_enabled()) {  // create_graph: the gradient must be differentiable
      grad_tokens = differentiable_backward(grad_prob, grad_u_mean, tokens, k_star, codes, tau);
    } else {
      static const auto op =
          c10::Dispatcher::singleton().findSchemaOrThrow(backward_name, "").typed<BackwardSignature>();
      grad_tokens = op.call(grad_prob, grad_u_mean, tokens, prob, k_star, codes, tau);
    }
    return {grad_tokens, Tensor(), Tensor()};
  }
};

constexpr char kForward[] = "mlrank::contrastive_mil_forward";
constexpr char kBackward[] = "mlrank::contrastive_mil_backward";
constexpr char kForwardAten[] = "mlrank::contrastive_mil_forward_aten";
constexpr char kBackwardAten[] = "mlrank::contrastive_mil_backward_aten";

template <const char* forward_name, const char* backward_name>
ForwardOutputs forward_autograd(const Tensor& tokens, double tau, std::optional<int64_t> num_k) {
  const auto outputs = ContrastiveMil<forward_name, backward_name>::apply(tokens, tau, num_k);
  return {outputs[0], outputs[1], outputs[2], outputs[3]};
}

}  // namespace

TORCH_LIBRARY_IMPL(mlrank, Autograd, m) {
  m.impl("contrastive_mil_forward", &forward_autograd<kForward, kBackward>);
  m.impl("contrastive_mil_forward_aten", &forward_autograd<kForwardAten, kBackwardAten>);
}

}  // namespace mlrank
