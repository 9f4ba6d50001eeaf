"""The contrastive-MIL op: C++ kernels behind the dispatcher, autograd and fake kernels here."""

from __future__ import annotations

import torch

import mlrank._C  # noqa: F401  (loading the library registers torch.ops.mlrank.*)
from mlrank.ops.validation import check_inputs, compute_dtype

_forward = torch.ops.mlrank.contrastive_mil_forward
_backward = torch.ops.mlrank.contrastive_mil_backward


@torch.library.register_fake("mlrank::contrastive_mil_forward")
def _forward_fake(tokens, tau, num_k):
    batch = tokens.shape[0]
    per_image = tokens.new_empty((batch,))
    index = tokens.new_empty((batch,), dtype=torch.long)
    return per_image, index, per_image.clone(), per_image.clone(), index.clone()


@torch.library.register_fake("mlrank::contrastive_mil_backward")
def _backward_fake(grad_prob, grad_u_mean, tokens, prob, k_star, kth_value, kth_position, tau):
    return torch.empty_like(tokens)


def _setup_context(ctx, inputs, output):
    tokens, tau, _ = inputs
    prob, k_star, _, kth_value, kth_position = output
    ctx.mark_non_differentiable(k_star, kth_value, kth_position)
    ctx.tau = tau
    # Tokens and four numbers per image: neither S nor the sort permutation.
    ctx.save_for_backward(tokens, prob, k_star, kth_value, kth_position)


def _backward_formula(ctx, grad_prob, grad_k_star, grad_u_mean, grad_kth_value, grad_kth_position):
    tokens, prob, k_star, kth_value, kth_position = ctx.saved_tensors
    if not ctx.needs_input_grad[0]:
        return None, None, None
    grad_tokens = _backward(
        grad_prob, grad_u_mean, tokens, prob, k_star, kth_value, kth_position, ctx.tau
    )
    return grad_tokens, None, None


torch.library.register_autograd(
    "mlrank::contrastive_mil_forward", _backward_formula, setup_context=_setup_context
)


def compiled_with_cuda() -> bool:
    """Whether this build of mlrank._C holds the CUDA kernels."""
    return bool(torch.ops.mlrank.compiled_with_cuda())


def contrastive_mil(
    tokens: torch.Tensor, tau: float = 0.2, num_k: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Contrastive multiple-instance score of each image (method.md section 3, eqs. 4-9).

    Args:
        tokens: (B, N, d) patch tokens, N >= 3, used as given: normalise the rows
            yourself if S should lie in [0, 1]. float32 and float64 are computed in
            their own precision; float16 and bfloat16 are computed in float32 and
            the outputs returned in the input dtype.
        tau: temperature, > 0.
        num_k: None maximises over every k in 1..n-1 (n = N(N-1)/2); an int uses
            the paper's num_k evenly spaced k (100 in the paper).

    Returns:
        prob: (B,) P(x) = max_k P(x;k), differentiable.
        k_star: (B,) int64, the maximising k (size of the low group), smallest on
            exact ties; not differentiable.
        u_mean: (B,) mean of the n rectified similarities, differentiable
            (l_Reg = 1 - u_mean averaged, or n (1 - u_mean) summed).

    Raises:
        TypeError: tokens is not a floating-point tensor, or tau / num_k has the wrong type.
        ValueError: tokens is not 3-D, N < 3, tokens hold NaN or Inf, tau <= 0,
            num_k < 1, or tensors on different devices.
    """
    tau = check_inputs(tokens, tau, num_k)
    if tokens.is_cuda and not compiled_with_cuda():
        raise RuntimeError(
            "mlrank was built without CUDA support; reinstall it with FORCE_CUDA=1 "
            "(and a CUDA toolkit) to run contrastive_mil on GPU tensors"
        )
    out_dtype = tokens.dtype
    prob, k_star, u_mean, _, _ = _forward(tokens.to(compute_dtype(out_dtype)), tau, num_k)
    return prob.to(out_dtype), k_star, u_mean.to(out_dtype)
