// ATen glue of the CUDA kernels: argument checks, the matrix products (cuBLAS
// through ATen, over the whole batch as the reference computes them, so the
// kernels sort the reference's values), buffers from the caching allocator on the
// current stream, and the sort taken in groups of images so that its buffers stay
// bounded. The kernels are in mil_kernels.cu.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/bmm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <optional>
#include <string>
#include <tuple>

#include "../op_common.h"
#include "mil_kernels_cuda.h"

namespace mlrank {
namespace {

using at::Tensor;

// Triangle values sorted in one go, at most (unless one image has more). Every
// image's keys and positions take 12 bytes a value; the sort's second buffers
// take 12 bytes a value of one group, which the default 2^20 bounds at 12 MiB
// whatever the batch. MLRANK_CUDA_SORT_VALUES overrides it, for benchmarks.
int64_t max_sort_values() {
  static const int64_t value = [] {
    const char* text = std::getenv("MLRANK_CUDA_SORT_VALUES");
    const long long parsed = text != nullptr ? std::strtoll(text, nullptr, 10) : 0;
    return parsed > 0 ? int64_t(parsed) : int64_t(1) << 20;
  }();
  return value;
}

// One thread block per image for small N, opt-in until it has passed the CUDA tests on a GPU:
// MLRANK_CUDA_BLOCK_PER_IMAGE=1, read at every call so that one process can time both paths.
bool block_per_image_enabled() {
  const char* text = std::getenv("MLRANK_CUDA_BLOCK_PER_IMAGE");
  return text != nullptr && std::string(text) == "1";
}

// The dynamic shared memory a block may opt into on this device, less room for the kernel's own.
size_t shared_bytes_per_block(int device) {
  int bytes = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  return bytes > 8192 ? size_t(bytes - 8192) : 0;
}

// Images sorted together: as many as max_sort_values allows, at least one, and few enough that
// CUB's int item count (images * n) and the grid's image dimension cannot overflow.
int64_t images_per_group(int64_t batch, int64_t n) {
  const int64_t limit = std::min({batch, cuda::kMaxGridImages, int64_t(std::numeric_limits<int32_t>::max()) / n});
  return std::clamp<int64_t>(max_sort_values() / n, 1, std::max<int64_t>(limit, 1));
}

cuda::SortKey* key_pointer(Tensor& keys) {
  return reinterpret_cast<cuda::SortKey*>(keys.mutable_data_ptr<int64_t>());
}

ForwardOutputs contrastive_mil_forward_cuda(
    const Tensor& tokens, double tau, std::optional<int64_t> num_k) {
  check_forward_arguments(tokens, tau, num_k);
  const c10::cuda::CUDAGuard device_guard(tokens.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  const int64_t batch = tokens.size(0), N = tokens.size(1), n = N * (N - 1) / 2;
  const auto long_options = tokens.options().dtype(at::kLong);

  ForwardOutputs outputs = empty_forward_outputs(tokens);
  if (batch == 0) return outputs;
  // Named references, not a structured binding: lambdas may capture these in C++17 too.
  Tensor &prob = std::get<0>(outputs), &k_star = std::get<1>(outputs), &u_mean = std::get<2>(outputs);
  Tensor& codes = std::get<3>(outputs);
  const int64_t words = code_words(n);

  // The paper's sampled k are computed on the device: no host copy, so nothing to sync on and no
  // host buffer for a CUDA graph to capture. 0: every k.
  const int64_t requested = num_k.value_or(0);
  const int64_t num_ks = requested <= 0 || requested >= n - 1 ? 0 : requested;
  Tensor ks;
  if (num_ks > 0) {
    ks = at::empty({num_ks}, long_options);
    C10_CUDA_CHECK(cuda::fill_candidate_ks(ks.mutable_data_ptr<int64_t>(), n, num_ks, stream));
  }
  if (block_per_image_enabled()) {
    bool scored = false;
    AT_DISPATCH_FLOATING_TYPES(tokens.scalar_type(), "contrastive_mil_forward_cuda_block", [&] {
      const size_t shared = shared_bytes_per_block(tokens.device().index());
      if (!cuda::block_per_image_fits<scalar_t>(N, shared)) return;
      const Tensor similarity = similarity_of(tokens).contiguous();
      const Tensor image_finite = similarity.diagonal(0, 1, 2).isfinite().all(1);
      C10_CUDA_CHECK(cuda::score_images_block_per_image<scalar_t>(
          similarity.const_data_ptr<scalar_t>(), batch, N, num_ks == 0 ? nullptr : ks.const_data_ptr<int64_t>(),
          num_ks, tau, prob.mutable_data_ptr<scalar_t>(), k_star.mutable_data_ptr<int64_t>(),
          u_mean.mutable_data_ptr<scalar_t>(), codes.mutable_data_ptr<int32_t>(), shared, stream));
      prob.masked_fill_(image_finite.logical_not(), std::numeric_limits<double>::quiet_NaN());
      scored = true;
    });
    if (scored) return outputs;
  }

  const int64_t group = images_per_group(batch, n);
  Tensor keys = at::empty({batch * n}, long_options);
  Tensor positions = at::empty({batch * n}, tokens.options().dtype(at::kInt));
  Tensor scratch = at::empty({int64_t(cuda::score_scratch_bytes(group, n))},
                             tokens.options().dtype(at::kByte));
  const Tensor segment_offsets = at::arange(0, (group + 1) * n, n, long_options);
  Tensor image_finite;

  AT_DISPATCH_FLOATING_TYPES(tokens.scalar_type(), "contrastive_mil_forward_cuda", [&] {
    {
      const Tensor similarity = similarity_of(tokens).contiguous();
      image_finite = similarity.diagonal(0, 1, 2).isfinite().all(1);
      C10_CUDA_CHECK(cuda::extract_triangle<scalar_t>(similarity.const_data_ptr<scalar_t>(),
                                                      batch, N, group, key_pointer(keys),
                                                      positions.mutable_data_ptr<int32_t>(),
                                                      stream));
    }  // S is freed here (stream-ordered): the sort's second buffers can reuse it
    Tensor keys_alternate = at::empty({group * n}, long_options);
    Tensor positions_alternate = at::empty({group * n}, positions.options());
    size_t temp_bytes = 0;
    C10_CUDA_CHECK(cuda::sort_temp_bytes<scalar_t>(group, n, &temp_bytes));
    Tensor temp = at::empty({int64_t(std::max<size_t>(temp_bytes, 1))}, scratch.options());
    for (int64_t first = 0; first < batch; first += group) {
      const int64_t images = std::min(group, batch - first);
      cuda::SortKey* group_keys = key_pointer(keys) + first * n;
      int32_t* group_positions = positions.mutable_data_ptr<int32_t>() + first * n;
      bool in_alternate = false;
      C10_CUDA_CHECK(cuda::sort_triangles<scalar_t>(
          group_keys, key_pointer(keys_alternate), group_positions,
          positions_alternate.mutable_data_ptr<int32_t>(),
          segment_offsets.const_data_ptr<int64_t>(), images, n, temp.mutable_data_ptr(),
          temp_bytes, &in_alternate, stream));
      C10_CUDA_CHECK(cuda::score_images<scalar_t>(
          in_alternate ? key_pointer(keys_alternate) : group_keys,
          in_alternate ? positions_alternate.const_data_ptr<int32_t>() : group_positions, images,
          n, num_ks == 0 ? nullptr : ks.const_data_ptr<int64_t>(), num_ks, tau,
          scratch.mutable_data_ptr(), prob.mutable_data_ptr<scalar_t>() + first,
          k_star.mutable_data_ptr<int64_t>() + first, u_mean.mutable_data_ptr<scalar_t>() + first,
          codes.mutable_data_ptr<int32_t>() + first * words, stream));
    }
  });
  // A non-finite image (NaN or Inf tokens, overflowing products) gets a NaN score, on the device:
  // raising here would need a host sync (contrastive_mil(check_finite=True) raises, with one).
  prob.masked_fill_(image_finite.logical_not(), std::numeric_limits<double>::quiet_NaN());
  return outputs;
}

Tensor contrastive_mil_backward_cuda(const Tensor& grad_prob, const Tensor& grad_u_mean,
                                     const Tensor& tokens, const Tensor& prob,
                                     const Tensor& k_star, const Tensor& codes, double tau) {
  check_backward_arguments(grad_prob, grad_u_mean, tokens, prob, k_star, codes);
  if (tokens.size(0) == 0) return at::empty_like(tokens);
  const c10::cuda::CUDAGuard device_guard(tokens.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  const int64_t batch = tokens.size(0), N = tokens.size(1);
  const auto as_input = [&](const Tensor& t) { return t.to(tokens.scalar_type()).contiguous(); };
  const auto as_long = [](const Tensor& t) { return t.to(at::kLong).contiguous(); };
  const Tensor g_prob = as_input(grad_prob), g_mean = as_input(grad_u_mean), p = as_input(prob);
  const Tensor k = as_long(k_star), pair_codes = codes.contiguous();

  // The weights G + G^T from the forward's pair codes: S is not recomputed.
  Tensor weights = at::empty({batch, N, N}, tokens.options());
  AT_DISPATCH_FLOATING_TYPES(tokens.scalar_type(), "contrastive_mil_backward_cuda", [&] {
    C10_CUDA_CHECK(cuda::backward_weights<scalar_t>(
        weights.mutable_data_ptr<scalar_t>(), batch, N, g_prob.const_data_ptr<scalar_t>(),
        g_mean.const_data_ptr<scalar_t>(), p.const_data_ptr<scalar_t>(),
        k.const_data_ptr<int64_t>(), pair_codes.const_data_ptr<int32_t>(), tau, stream));
  });
  return at::bmm(weights, tokens);
}

}  // namespace

TORCH_LIBRARY_IMPL(mlrank, CUDA, m) {
  m.impl("contrastive_mil_forward", &contrastive_mil_forward_cuda);
  m.impl("contrastive_mil_backward", &contrastive_mil_backward_cuda);
}

}  // namespace mlrank
