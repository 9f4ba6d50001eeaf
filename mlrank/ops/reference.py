"""Pure-PyTorch contrastive MIL: the specification of the op.

This is the implementation a user would write from the paper (docs/method.md section 3):
materialise the similarity matrix, gather its strict upper triangle, sort it
stably, take cumulative sums and maximise over k. The C++ kernels must agree with
it on k*, on the values to float tolerance and on the gradients, including ties.
Autograd differentiates it end to end, which is exactly why it is slow and keeps
so much memory alive; it is the baseline in the benchmarks.
"""

from __future__ import annotations

import torch

from mlrank.ops.validation import check_finite_diagonal, check_inputs, compute_dtype


def candidate_ks(n: int, num_k: int | None) -> list[int]:
    """The k over which P(x;k) is maximised for a triangle of ``n`` values.

    All of 1..n-1 when ``num_k`` is None or at least n-1; otherwise the paper's
    evenly spaced k_j = round(1 + j (n-2) / (num_k-1)), j = 0..num_k-1, rounded
    half to even (Python's ``round``) and deduplicated; num_k = 1 means k = 1.
    """
    if num_k is None or num_k >= n - 1:
        return list(range(1, n))
    if num_k == 1:
        return [1]
    from fractions import Fraction

    ks = [1 + round(Fraction(j * (n - 2), num_k - 1)) for j in range(num_k)]
    return sorted(set(ks))


def contrastive_mil(
    tokens: torch.Tensor, tau: float = 0.2, num_k: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Reference ``(prob, k_star, u_mean)``; same contract as :func:`mlrank.ops.contrastive_mil`."""
    tau, num_k = check_inputs(tokens, tau, num_k)
    # In float32 (float64) even inside torch.autocast, as the op computes.
    with torch.autocast(tokens.device.type, enabled=False):
        return _contrastive_mil(tokens, tau, num_k)


def _contrastive_mil(tokens: torch.Tensor, tau: float, num_k: int | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    out_dtype = tokens.dtype
    x = tokens.to(compute_dtype(tokens.dtype))
    num_tokens = x.shape[1]

    products = x @ x.transpose(-1, -2)
    check_finite_diagonal(products)
    similarity = products.relu()  # eq. 4
    rows, cols = torch.triu_indices(num_tokens, num_tokens, offset=1, device=x.device)
    u = similarity[:, rows, cols]  # row-major order of the strict upper triangle
    u_sorted = torch.sort(u, dim=-1, stable=True).values  # eq. 5, ties by position
    n = u.shape[-1]

    # P(x;k) = tanh(Delta(k) / 2tau), Delta(k) = mean_{i>k} u_i - mean_{i<=k} u_i
    # (eqs. 6-8 with a = 1 cancelled); prefix sums in float64 so that k* is
    # well defined for large n in float32.
    prefix = torch.cumsum(u_sorted, dim=-1, dtype=torch.float64)
    total = prefix[:, -1:]
    if num_k is None:  # every k: made on the device, not from n Python ints
        ks = torch.arange(1, n, device=x.device)
    else:
        ks = torch.tensor(candidate_ks(n, num_k), device=x.device)
    prefix_k = prefix[:, ks - 1]
    delta = (total - prefix_k) / (n - ks) - prefix_k / ks
    best_delta, best_index = delta.max(dim=-1)  # first maximum: the smallest k on ties
    prob = torch.tanh(best_delta / (2 * tau))  # eq. 9

    return prob.to(out_dtype), ks[best_index], u.mean(dim=-1)
