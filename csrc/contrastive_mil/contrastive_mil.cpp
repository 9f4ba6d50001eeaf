// Schemas of the contrastive-MIL ops. Kernels register per backend: cpu/ (the C++
// kernels), cuda/ (the CUDA kernels, in builds with CUDA) and aten/ (the
// device-generic implementation from ATen operations). Autograd and the fake
// (meta) kernels are registered from Python in mlrank/ops/contrastive_mil.py.
#include <torch/library.h>

#include <string>

TORCH_LIBRARY(mlrank, m) {
  // prob, k_star and u_mean are the public outputs; codes (int32, two bits for each
  // pair of the strict upper triangle: no gradient, low group or high group;
  // pair_codes.h) are what the backward needs, without storing S or a permutation
  // and without recomputing S.
  //
  // contrastive_mil_forward/_backward run the hand-written kernels: C++ on the
  // CPU, CUDA on GPUs (builds without them register the ATen implementation for
  // CUDA). The _aten pair is the same contract on any device torch supports.
  for (const char* suffix : {"", "_aten"}) {
    const std::string forward = std::string("contrastive_mil_forward") + suffix +
        "(Tensor tokens, float tau, int? num_k) -> "
        "(Tensor prob, Tensor k_star, Tensor u_mean, Tensor codes)";
    const std::string backward = std::string("contrastive_mil_backward") + suffix +
        "(Tensor grad_prob, Tensor grad_u_mean, Tensor tokens, Tensor prob, Tensor k_star, "
        "Tensor codes, float tau) -> Tensor";
    m.def(forward.c_str());
    m.def(backward.c_str());
  }
  // Whether this build holds the hand-written CUDA kernels.
  m.def("compiled_with_cuda() -> bool", []() {
#ifdef WITH_CUDA
    return true;
#else
    return false;
#endif
  });
}
