// Autocast for the contrastive-MIL ops: inside torch.autocast they compute as outside it.
//
// Without a kernel of their own for the Autocast keys, the ops' inner products (S = tokens @
// tokens^T, the weights times the tokens) would be autocast like any matmul: bfloat16 or float16
// inside the kernels, which the CPU and CUDA kernels refuse and the ATen path would sort at that
// precision. As torchvision does for its ops, this kernel runs first under autocast, takes
// autocast off for what follows (the op's own kernels included), and casts the floating inputs
// that autocast would lower to float32 (float64 stays float64). The outputs are float32: the
// Python wrapper returns P(x) in the tokens' dtype, as outside autocast.
#include <ATen/autocast_mode.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/library.h>

#include <optional>

#include "../op_common.h"

namespace mlrank {
namespace {

using at::Tensor;
using ForwardSignature = ForwardOutputs(const Tensor&, double, std::optional<int64_t>);
using BackwardSignature = Tensor(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                 const Tensor&, double);

template <typename Signature>
c10::TypedOperatorHandle<Signature> find_op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Signature>();
}

template <c10::DispatchKey key, c10::DeviceType device, const char* name>
ForwardOutputs forward_autocast(const Tensor& tokens, double tau, std::optional<int64_t> num_k) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(key);
  static const auto op = find_op<ForwardSignature>(name);
  return op.call(at::autocast::cached_cast(at::kFloat, tokens, device), tau, num_k);
}

template <c10::DispatchKey key, c10::DeviceType device, const char* name>
Tensor backward_autocast(const Tensor& grad_prob, const Tensor& grad_u_mean, const Tensor& tokens,
                         const Tensor& prob, const Tensor& k_star, const Tensor& codes, double tau) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(key);
  static const auto op = find_op<BackwardSignature>(name);
  const auto cast = [](const Tensor& t) { return at::autocast::cached_cast(at::kFloat, t, device); };
  return op.call(cast(grad_prob), cast(grad_u_mean), cast(tokens), cast(prob), k_star, codes, tau);
}

constexpr char kForward[] = "mlrank::contrastive_mil_forward";
constexpr char kBackward[] = "mlrank::contrastive_mil_backward";
constexpr char kForwardAten[] = "mlrank::contrastive_mil_forward_aten";
constexpr char kBackwardAten[] = "mlrank::contrastive_mil_backward_aten";

template <c10::DispatchKey key, c10::DeviceType device>
void register_autocast(torch::Library& m) {
  m.impl("contrastive_mil_forward", &forward_autocast<key, device, kForward>);
  m.impl("contrastive_mil_backward", &backward_autocast<key, device, kBackward>);
  m.impl("contrastive_mil_forward_aten", &forward_autocast<key, device, kForwardAten>);
  m.impl("contrastive_mil_backward_aten", &backward_autocast<key, device, kBackwardAten>);
}

}  // namespace

TORCH_LIBRARY_IMPL(mlrank, AutocastCPU, m) {
  register_autocast<c10::DispatchKey::AutocastCPU, c10::DeviceType::CPU>(m);
}

TORCH_LIBRARY_IMPL(mlrank, AutocastCUDA, m) {
  register_autocast<c10::DispatchKey::AutocastCUDA, c10::DeviceType::CUDA>(m);
}

}  // namespace mlrank
