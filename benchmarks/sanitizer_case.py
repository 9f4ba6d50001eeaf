"""A small workload of the CUDA kernels for compute-sanitizer (benchmarks/gpu_check.sh).

    compute-sanitizer --tool memcheck python benchmarks/sanitizer_case.py

Forward and backward in float32 and float64, every k and sampled k, N = 3 (the smallest
triangle), N that are not multiples of the kernels' tiles, and the sort in several groups of
images. Results are checked by the CUDA tests; this only runs the kernels under the sanitizer.
"""

import os

# Small sort groups, so the grouped path runs too (read at the kernels' first call).
os.environ.setdefault("MLRANK_CUDA_SORT_VALUES", "1000")

import torch  # noqa: E402

from mlrank.ops import compiled_with_cuda, contrastive_mil  # noqa: E402


def main() -> None:
    if not (torch.cuda.is_available() and compiled_with_cuda()):
        raise SystemExit("needs a CUDA device and a build of mlrank with its CUDA kernels")
    generator = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        for batch, num_tokens, dim in ((1, 3, 4), (3, 37, 8), (5, 70, 16)):
            tokens = torch.randn(batch, num_tokens, dim, generator=generator, dtype=dtype)
            tokens = torch.nn.functional.normalize(tokens, dim=-1).cuda().requires_grad_()
            for num_k in (None, 7):
                prob, _, u_mean = contrastive_mil(tokens, num_k=num_k, impl="kernels")
                (prob.sum() + u_mean.sum()).backward()
    torch.cuda.synchronize()
    print("sanitizer case done")


if __name__ == "__main__":
    main()
