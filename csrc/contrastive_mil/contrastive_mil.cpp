// Schema of the contrastive-MIL ops. Kernels register per backend in cpu/ (and
// cuda/); autograd and the fake (meta) kernels are registered from Python in
// mlrank/ops/contrastive_mil.py.
#include <torch/library.h>

TORCH_LIBRARY(mlrank, m) {
  // prob, k_star and u_mean are the public outputs; kth_value and kth_position
  // (the k*-th smallest value and its row-major triangle index) are what the
  // backward needs to apply the tie rule without storing S or a permutation.
  m.def(
      "contrastive_mil_forward(Tensor tokens, float tau, int? num_k) -> "
      "(Tensor prob, Tensor k_star, Tensor u_mean, Tensor kth_value, Tensor kth_position)");
  m.def(
      "contrastive_mil_backward(Tensor grad_prob, Tensor grad_u_mean, Tensor tokens, "
      "Tensor prob, Tensor k_star, Tensor kth_value, Tensor kth_position, float tau) -> Tensor");
  // Lets Python give a clear error when a CUDA tensor meets a CPU-only build.
  m.def("compiled_with_cuda() -> bool", []() {
#ifdef WITH_CUDA
    return true;
#else
    return false;
#endif
  });
}
