"""The contrastive-MIL op (docs/method.md section 3): kernels and autograd behind the dispatcher.

One contract, two registered implementations:

- ``"kernels"``: ``torch.ops.mlrank.contrastive_mil_forward`` / ``_backward``, hand-written C++ on
  the CPU and hand-written CUDA kernels on GPUs in builds that compiled them.
- ``"aten"``: ``torch.ops.mlrank.contrastive_mil_forward_aten`` / ``_backward_aten``, the same
  contract from ATen operations only, on any device torch supports. Builds without CUDA kernels also
  register it as the CUDA backend of the kernels' names.

``impl="auto"`` takes the kernels on the CPU and the ATen implementation elsewhere. On CUDA it
takes the kernels only with ``MLRANK_CUDA_KERNELS=1`` in the environment: the CUDA kernels as they
are now (pair codes, device-side sampled k, the overflow guard) compile in CI but have not yet
passed ``benchmarks/gpu_check.sh`` on a GPU (docs/op.md), so they are opt-in until they do.

Both pairs have their autograd (tokens, P(x), k* and two-bit pair codes saved; the fused backward
op, or under create_graph a differentiable recomputation) and their autocast behaviour (float32
inside torch.autocast) registered in C++; only the fake kernels, for torch.compile, are here.
"""

from __future__ import annotations

import os

import torch

import mlrank._C  # noqa: F401  (loading the library registers torch.ops.mlrank.*)
from mlrank.ops.validation import NON_FINITE_MESSAGE, check_inputs, compute_dtype

IMPLEMENTATIONS = ("auto", "kernels", "aten")

#: Whether ``impl="auto"`` takes the CUDA kernels (read once, at import): opt-in with
#: MLRANK_CUDA_KERNELS=1 until the present kernels pass benchmarks/gpu_check.sh on a GPU.
AUTO_TAKES_CUDA_KERNELS = os.environ.get("MLRANK_CUDA_KERNELS", "0") == "1"

_OPS = {
    "kernels": (torch.ops.mlrank.contrastive_mil_forward, torch.ops.mlrank.contrastive_mil_backward),
    "aten": (torch.ops.mlrank.contrastive_mil_forward_aten, torch.ops.mlrank.contrastive_mil_backward_aten),
}


CODES_PER_WORD = 16  # two-bit pair codes in int32 words (csrc/contrastive_mil/pair_codes.h)


def code_words(num_tokens: int) -> int:
    """Words of one image's pair codes."""
    return (num_tokens * (num_tokens - 1) // 2 + CODES_PER_WORD - 1) // CODES_PER_WORD


def _forward_fake(tokens, tau, num_k):
    batch = tokens.shape[0]
    per_image = tokens.new_empty((batch,))
    index = tokens.new_empty((batch,), dtype=torch.long)
    codes = tokens.new_empty((batch, code_words(tokens.shape[1])), dtype=torch.int32)
    return per_image, index, per_image.clone(), codes


def _backward_fake(grad_prob, grad_u_mean, tokens, prob, k_star, codes, tau):
    return torch.empty_like(tokens)


for _forward, _backward in _OPS.values():
    # Autograd is registered in C++ (csrc/contrastive_mil/autograd/); the fake kernels here let
    # torch.compile trace the ops.
    torch.library.register_fake(_forward.default)(_forward_fake)
    torch.library.register_fake(_backward.default)(_backward_fake)


_COMPILED_WITH_CUDA = bool(torch.ops.mlrank.compiled_with_cuda())


def compiled_with_cuda() -> bool:
    """Whether this build of mlrank._C holds the hand-written CUDA kernels."""
    return _COMPILED_WITH_CUDA  # read once: torch.compile traces a constant, not an op call


def select_implementation(device: torch.device, impl: str = "auto") -> str:
    """The implementation (``"kernels"`` or ``"aten"``) that ``impl`` means on ``device``.

    Raises:
        ValueError: ``impl`` is not one of :data:`IMPLEMENTATIONS`.
        RuntimeError: ``impl="kernels"`` where no hand-written kernels exist for the device.
    """
    if not isinstance(impl, str) or impl not in IMPLEMENTATIONS:
        raise ValueError(f"impl must be one of {IMPLEMENTATIONS}, got {impl!r}")
    if impl == "aten":
        return "aten"
    if device.type == "cpu":
        return "kernels"
    if device.type == "cuda":
        if compiled_with_cuda() and (impl == "kernels" or AUTO_TAKES_CUDA_KERNELS):
            return "kernels"
        if impl == "kernels":
            raise RuntimeError(
                "impl='kernels' asks for mlrank's CUDA kernels, but this build of mlrank has none: "
                "reinstall it where a CUDA toolkit is found (or with FORCE_CUDA=1 and CUDA_HOME set), "
                "or use impl='aten' / 'auto', which run on any GPU"
            )
        return "aten"
    if impl == "kernels":
        raise RuntimeError(
            f"mlrank has no hand-written kernels for {device.type} tensors; use impl='aten' or 'auto'"
        )
    return "aten"


def contrastive_mil(
    tokens: torch.Tensor, tau: float = 0.2, num_k: int | None = None, impl: str = "auto", *,
    check_finite: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Contrastive multiple-instance score of each image (docs/method.md section 3, eqs. 4-9).

    Args:
        tokens: (B, N, d) patch tokens, N >= 3, used as given: normalise the rows
            yourself if S should lie in [0, 1]. float32 and float64 are computed in
            their own precision; float16 and bfloat16 are computed in float32 and
            the outputs returned in the input dtype.
        tau: temperature, > 0: a number, or a one-element tensor that does not require grad.
        num_k: None maximises over every k in 1..n-1 (n = N(N-1)/2); an int uses
            the paper's num_k evenly spaced k (100 in the paper).
        impl: ``"auto"`` (the best validated implementation for the tensors' device),
            ``"kernels"`` (the hand-written C++ or CUDA kernels) or ``"aten"`` (ATen
            operations only, any device).
        check_finite: raise ValueError for tokens holding NaN or Inf (or whose products
            overflow) on any device. On the CPU the op always does, at no cost; on a GPU that
            needs a host sync, so by default such an image gets prob NaN instead (the loss
            then is NaN, which training stops on), and the op stays sync-free (CUDA graphs,
            torch.compile).

    Returns:
        prob: (B,) P(x) = max_k P(x;k), differentiable (twice, through a slower path).
        k_star: (B,) int64, the maximising k (size of the low group), smallest on
            exact ties; not differentiable.
        u_mean: (B,) mean of the n rectified similarities, differentiable
            (l_Reg = 1 - u_mean averaged, or n (1 - u_mean) summed), in the computation's dtype
            (float32 for float16 and bfloat16 tokens: the products of unnormalised tokens can pass
            float16's largest value, 65504).

    Raises:
        TypeError: tokens is not a floating-point tensor, or tau / num_k has the wrong type.
        ValueError: tokens is not 3-D, N < 3, tokens hold NaN or Inf (on the CPU, or with
            ``check_finite``), tau <= 0 or requires grad, num_k < 1, tensors on different
            devices, or an unknown ``impl``.
        RuntimeError: ``impl="kernels"`` where this build has no kernels for the device.
    """
    tau, num_k = check_inputs(tokens, tau, num_k)
    forward = _OPS[select_implementation(tokens.device, impl)][0]
    out_dtype = tokens.dtype
    prob, k_star, u_mean, _ = forward(tokens.to(compute_dtype(out_dtype)), tau, num_k)
    if check_finite and not bool(torch.isfinite(prob).all()):
        raise ValueError(NON_FINITE_MESSAGE)
    return prob.to(out_dtype), k_star, u_mean
