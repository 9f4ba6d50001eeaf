"""Argument checks shared by the op and its reference, with errors that name the problem."""

from __future__ import annotations

import math
import numbers

import torch

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float16 and bfloat16 are computed in float32; float32 and float64 as they are."""
    return torch.float32 if dtype in _LOW_PRECISION else dtype


def check_inputs(tokens: object, tau: object, num_k: object) -> tuple[float, int | None]:
    """Validate the op's arguments; return ``tau`` as a Python float and ``num_k``.

    ``num_k`` comes back as None (every k) when it asks for at least n - 1 = every
    k, so that any Python int is accepted and none overflows the kernels' int64.
    Raises TypeError for a wrong type or dtype and ValueError for a wrong shape,
    a non-positive tau, a tau that requires grad (it is a constant of the op),
    num_k < 1 or mismatched devices. NaN and Inf are caught later, and for free,
    on the diagonal of S (see :func:`check_finite_diagonal`).
    """
    if not isinstance(tokens, torch.Tensor):
        raise TypeError(f"tokens must be a torch.Tensor, got {type(tokens).__name__}")
    if not tokens.is_floating_point():
        raise TypeError(
            f"tokens must be a floating-point tensor (float16, bfloat16, float32 or float64), "
            f"got dtype {tokens.dtype}"
        )
    if tokens.dim() != 3:
        raise ValueError(
            f"tokens must be 3-D (batch, num_tokens, dim), got shape {tuple(tokens.shape)}"
        )
    if tokens.shape[1] < 3:
        raise ValueError(
            f"tokens must have at least 3 tokens per image (num_tokens = N >= 3), "
            f"got shape {tuple(tokens.shape)}"
        )
    if tokens.shape[0] < 1 or tokens.shape[2] < 1:
        raise ValueError(f"tokens must not be empty, got shape {tuple(tokens.shape)}")

    if isinstance(tau, torch.Tensor):
        if tau.numel() != 1:
            raise ValueError(f"tau must be a scalar, got a tensor of shape {tuple(tau.shape)}")
        if tau.requires_grad:
            raise ValueError(
                "tau is a tensor that requires grad, but contrastive_mil treats tau as a constant "
                "and returns no gradient for it: pass a float or tau.detach()"
            )
        if tau.device != tokens.device:
            raise ValueError(
                f"tau and tokens must be on the same device, got tau on {tau.device} "
                f"and tokens on {tokens.device}"
            )
        tau = tau.item()
    if isinstance(tau, bool) or not isinstance(tau, numbers.Real):
        raise TypeError(f"tau must be a real number, got {type(tau).__name__}")
    tau = float(tau)
    if not math.isfinite(tau) or tau <= 0:
        raise ValueError(f"tau must be a finite number > 0, got {tau}")

    if num_k is not None:
        if isinstance(num_k, bool) or not isinstance(num_k, numbers.Integral):
            raise TypeError(f"num_k must be an int or None, got {type(num_k).__name__}")
        if num_k < 1:
            raise ValueError(f"num_k must be >= 1 (or None for every k), got {num_k}")
        num_tokens = tokens.shape[1]
        if num_k >= num_tokens * (num_tokens - 1) // 2 - 1:
            num_k = None
        else:
            num_k = int(num_k)

    return tau, num_k


NON_FINITE_MESSAGE = (
    "tokens contain NaN or Inf (or values so large that tokens @ tokens^T overflows)"
)


def check_finite_diagonal(similarity: torch.Tensor) -> None:
    """Raise ValueError unless S = tokens @ tokens^T has a finite diagonal.

    S[i, i] = |token_i|^2 is non-finite exactly when token i holds NaN or Inf
    (or overflows), so B x N values stand in for a pass over every token.
    """
    if not bool(torch.isfinite(similarity.diagonal(dim1=-2, dim2=-1)).all()):
        raise ValueError(NON_FINITE_MESSAGE)
