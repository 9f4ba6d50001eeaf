"""A small workload of the CUDA kernels for compute-sanitizer (benchmarks/gpu_check.sh).

    compute-sanitizer --tool memcheck python benchmarks/sanitizer_case.py

Forward and backward in float32 and float64, every k and sampled k, N = 3 (the smallest
triangle), N that are not multiples of the kernels' tiles, the sort in groups that hold several
images (so the image-index bits of the float32 sort keys are exercised), the block-per-image
kernel, bfloat16 tokens under autocast, an empty batch, and an image whose products all overflow
(every Delta NaN: the finishing kernel's guard). Results are checked by the CUDA tests; this only
runs the kernels under the sanitizer.
"""

import os

# Sort groups of 5000 values (read at the kernels' first call): with N = 37 (666 triangle values)
# seven images share a group, with N = 70 (2415) two, and N = 3 puts a whole batch in one.
os.environ.setdefault("MLRANK_CUDA_SORT_VALUES", "5000")

import torch  # noqa: E402

from mlrank.ops import compiled_with_cuda, contrastive_mil  # noqa: E402

SHAPES = ((1, 3, 4), (4, 3, 4), (9, 37, 8), (5, 70, 16))


def unit_tokens(shape, dtype, generator):
    tokens = torch.randn(*shape, generator=generator, dtype=dtype)
    return torch.nn.functional.normalize(tokens, dim=-1).cuda().requires_grad_()


def run_all(generator) -> None:
    for dtype in (torch.float32, torch.float64):
        for shape in SHAPES:
            for num_k in (None, 7):
                tokens = unit_tokens(shape, dtype, generator)
                prob, _, u_mean = contrastive_mil(tokens, num_k=num_k, impl="kernels")
                (prob.sum() + u_mean.sum()).backward()
    tokens = unit_tokens((9, 37, 8), torch.float32, generator)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        prob, _, u_mean = contrastive_mil(tokens.bfloat16(), impl="kernels")
    (prob.sum() + u_mean.sum()).backward()
    empty = torch.empty(0, 5, 4, device="cuda", requires_grad=True)
    prob, _, u_mean = contrastive_mil(empty, impl="kernels")
    (prob.sum() + u_mean.sum()).backward()
    # Every product +inf: the kernels score the image NaN without reading out of bounds.
    huge = (unit_tokens((2, 40, 8), torch.float32, generator).detach() * 1e20).requires_grad_()
    prob, _, _ = contrastive_mil(huge, impl="kernels", check_finite=False)
    assert torch.isnan(prob).all(), prob


def main() -> None:
    if not (torch.cuda.is_available() and compiled_with_cuda()):
        raise SystemExit("needs a CUDA device and a build of mlrank with its CUDA kernels")
    generator = torch.Generator().manual_seed(0)
    run_all(generator)
    os.environ["MLRANK_CUDA_BLOCK_PER_IMAGE"] = "1"  # read at every call
    run_all(generator)
    torch.cuda.synchronize()
    print("sanitizer case done")


if __name__ == "__main__":
    main()
