// ATen glue of the CUDA kernels: argument checks, the matrix products (cuBLAS
// through ATen), buffers from the caching allocator on the current stream, and
// the images taken in groups so that the sort's buffers stay bounded. The kernels
// are in mil_kernels.cu.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/bmm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdlib>
#include <optional>
#include <tuple>
#include <vector>

#include "../candidate_ks.h"
#include "../op_common.h"
#include "mil_kernels_cuda.h"

namespace mlrank {
namespace {

using at::Tensor;

// Triangle values sorted in one go, at most (unless one image has more): the
// sort's buffers take 24 bytes a value, so the default 2^20 bounds them at 24 MiB
// whatever the batch. MLRANK_CUDA_SORT_VALUES overrides it, for benchmarks.
int64_t max_sort_values() {
  static const int64_t value = [] {
    const char* text = std::getenv("MLRANK_CUDA_SORT_VALUES");
    const long long parsed = text != nullptr ? std::strtoll(text, nullptr, 10) : 0;
    return parsed > 0 ? int64_t(parsed) : int64_t(1) << 20;
  }();
  return value;
}

// Images per group; the forward and the backward group alike, so that the
// backward's recomputed S comes from the same products as the forward's.
int64_t images_per_group(int64_t batch, int64_t n) {
  constexpr int64_t kMaxGridImages = 65535;  // the kernels' images are a grid dimension
  return std::clamp<int64_t>(max_sort_values() / n, 1, std::min(batch, kMaxGridImages));
}

cuda::SortKey* key_pointer(Tensor& keys) {
  return reinterpret_cast<cuda::SortKey*>(keys.mutable_data_ptr<int64_t>());
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> contrastive_mil_forward_cuda(
    const Tensor& tokens, double tau, std::optional<int64_t> num_k) {
  check_forward_arguments(tokens, tau, num_k);
  const c10::cuda::CUDAGuard device_guard(tokens.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  const int64_t batch = tokens.size(0), N = tokens.size(1), n = N * (N - 1) / 2;
  const auto long_options = tokens.options().dtype(at::kLong);

  Tensor prob = at::empty({batch}, tokens.options());
  Tensor k_star = at::empty({batch}, long_options);
  Tensor u_mean = at::empty({batch}, tokens.options());
  Tensor kth_value = at::empty({batch}, tokens.options());
  Tensor kth_position = at::empty({batch}, long_options);

  std::vector<int64_t> candidates = candidate_ks(n, num_k.value_or(0));
  const int64_t num_ks = int64_t(candidates.size());  // 0: every k
  const Tensor ks = num_ks == 0 ? Tensor()
                                : at::from_blob(candidates.data(), {num_ks}, at::kLong)
                                      .to(long_options, false, /*copy=*/true);

  const int64_t group = images_per_group(batch, n);
  Tensor keys = at::empty({group * n}, long_options);
  Tensor positions = at::empty({group * n}, tokens.options().dtype(at::kInt));
  Tensor scratch = at::empty({int64_t(cuda::score_scratch_bytes(group, n))},
                             tokens.options().dtype(at::kByte));
  const Tensor segment_offsets =
      at::arange(0, (group + 1) * n, n, tokens.options().dtype(at::kInt));
  Tensor all_finite;

  AT_DISPATCH_FLOATING_TYPES(tokens.scalar_type(), "contrastive_mil_forward_cuda", [&] {
    for (int64_t first = 0; first < batch; first += group) {
      const int64_t images = std::min(group, batch - first);
      {
        const Tensor similarity = similarity_of(tokens.narrow(0, first, images)).contiguous();
        const Tensor finite = diagonal_is_finite(similarity);
        all_finite = all_finite.defined() ? all_finite.logical_and(finite) : finite;
        C10_CUDA_CHECK(cuda::extract_triangle<scalar_t>(similarity.const_data_ptr<scalar_t>(),
                                                        images, N, key_pointer(keys),
                                                        positions.mutable_data_ptr<int32_t>(),
                                                        stream));
      }  // S is freed here (stream-ordered), so the sort's second buffers can reuse it
      size_t temp_bytes = 0;
      C10_CUDA_CHECK(cuda::sort_temp_bytes<scalar_t>(images, n, &temp_bytes));
      Tensor keys_alternate = at::empty({images * n}, long_options);
      Tensor positions_alternate = at::empty({images * n}, positions.options());
      Tensor temp = at::empty({int64_t(std::max<size_t>(temp_bytes, 1))}, scratch.options());
      bool in_alternate = false;
      C10_CUDA_CHECK(cuda::sort_triangles<scalar_t>(
          key_pointer(keys), key_pointer(keys_alternate), positions.mutable_data_ptr<int32_t>(),
          positions_alternate.mutable_data_ptr<int32_t>(),
          segment_offsets.const_data_ptr<int32_t>(), images, n, temp.mutable_data_ptr(),
          temp_bytes, &in_alternate, stream));
      C10_CUDA_CHECK(cuda::score_images<scalar_t>(
          in_alternate ? key_pointer(keys_alternate) : key_pointer(keys),
          (in_alternate ? positions_alternate : positions).const_data_ptr<int32_t>(), images, n,
          num_ks == 0 ? nullptr : ks.const_data_ptr<int64_t>(), num_ks, tau,
          scratch.mutable_data_ptr(), prob.mutable_data_ptr<scalar_t>() + first,
          k_star.mutable_data_ptr<int64_t>() + first, u_mean.mutable_data_ptr<scalar_t>() + first,
          kth_value.mutable_data_ptr<scalar_t>() + first,
          kth_position.mutable_data_ptr<int64_t>() + first, stream));
    }
  });
  check_finite(all_finite);
  return {prob, k_star, u_mean, kth_value, kth_position};
}

Tensor contrastive_mil_backward_cuda(const Tensor& grad_prob, const Tensor& grad_u_mean,
                                     const Tensor& tokens, const Tensor& prob,
                                     const Tensor& k_star, const Tensor& kth_value,
                                     const Tensor& kth_position, double tau) {
  check_backward_arguments(grad_prob, grad_u_mean, tokens, prob, k_star, kth_value, kth_position);
  const c10::cuda::CUDAGuard device_guard(tokens.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  const int64_t batch = tokens.size(0), N = tokens.size(1), n = N * (N - 1) / 2;
  const auto as_input = [&](const Tensor& t) { return t.to(tokens.scalar_type()).contiguous(); };
  const auto as_long = [](const Tensor& t) { return t.to(at::kLong).contiguous(); };
  const Tensor g_prob = as_input(grad_prob), g_mean = as_input(grad_u_mean), p = as_input(prob);
  const Tensor value = as_input(kth_value);
  const Tensor k = as_long(k_star), position = as_long(kth_position);

  Tensor grad = at::empty(tokens.sizes(), tokens.options());
  const int64_t group = images_per_group(batch, n);
  AT_DISPATCH_FLOATING_TYPES(tokens.scalar_type(), "contrastive_mil_backward_cuda", [&] {
    for (int64_t first = 0; first < batch; first += group) {
      const int64_t images = std::min(group, batch - first);
      const Tensor group_tokens = tokens.narrow(0, first, images);
      // S recomputed as in the forward, then overwritten by the weights G + G^T.
      Tensor weights = similarity_of(group_tokens).contiguous();
      C10_CUDA_CHECK(cuda::backward_weights<scalar_t>(
          weights.mutable_data_ptr<scalar_t>(), images, N,
          g_prob.const_data_ptr<scalar_t>() + first, g_mean.const_data_ptr<scalar_t>() + first,
          p.const_data_ptr<scalar_t>() + first, k.const_data_ptr<int64_t>() + first,
          value.const_data_ptr<scalar_t>() + first, position.const_data_ptr<int64_t>() + first,
          tau, stream));
      Tensor grad_group = grad.narrow(0, first, images);
      at::bmm_out(grad_group, weights, group_tokens);
    }
  });
  return grad;
}

}  // namespace

TORCH_LIBRARY_IMPL(mlrank, CUDA, m) {
  m.impl("contrastive_mil_forward", &contrastive_mil_forward_cuda);
  m.impl("contrastive_mil_backward", &contrastive_mil_backward_cuda);
}

}  // namespace mlrank
