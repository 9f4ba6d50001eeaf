"""Patch tokens for testing and benchmarking the op, shared by the tests and the benchmarks.

Random unit tokens are the easy case for the op: S is symmetric around 0 and k* lands near the
rectified zeros. Tokens of a trained encoder cluster (the face's patches against the odd ones out),
which puts k* inside the sorted order; :func:`clustered_tokens` imitates that.
"""

from __future__ import annotations

import torch


def unit_tokens(
    batch: int, num_tokens: int, dim: int, dtype: torch.dtype = torch.float64, seed: int = 0,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """(batch, num_tokens, dim) Gaussian tokens with rows of norm 1, from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randn(batch, num_tokens, dim, generator=generator, dtype=dtype)
    return torch.nn.functional.normalize(tokens, dim=-1).to(device)


def clustered_tokens(
    batch: int, num_tokens: int, dim: int, dtype: torch.dtype = torch.float32, seed: int = 0,
    repeat: bool = False, device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Two clusters of noisy unit tokens per image (30% in the second): k* falls inside the order.

    With ``repeat`` the second half of each image repeats the first, so most values of S come in
    equal pairs and neighbouring k can tie.
    """
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(batch, 2, dim, generator=generator, dtype=dtype)
    members = (torch.rand(batch, num_tokens, generator=generator) < 0.3).long()
    noise = torch.randn(batch, num_tokens, dim, generator=generator, dtype=dtype)
    tokens = centres[torch.arange(batch)[:, None], members] + 0.6 * noise
    if repeat:
        tokens[:, num_tokens // 2 :] = tokens[:, : num_tokens - num_tokens // 2].clone()  # may overlap (odd N)
    return torch.nn.functional.normalize(tokens, dim=-1).to(device)
