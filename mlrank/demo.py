"""Demo of the contrastive-MIL op on synthetic patch tokens: ``python -m mlrank.demo``.

Until the training entry point lands, this is mlrank's main job. It
1. checks the C++ op against the pure-PyTorch reference on a batch of tokens,
2. times both, forward + backward, and
3. trains a small token projection with the paper's classification loss
   (l_MIL + l_Reg on real images, eqs. 10-12) on synthetic "faces": real images
   have homogeneous tokens, fake ones a block of tokens from a manipulated
   component, which the contrastive score should learn to separate.
"""

from __future__ import annotations

import argparse
import functools
import time

import torch
from tqdm import tqdm

from mlrank.ops import contrastive_mil
from mlrank.ops import reference


@functools.lru_cache(maxsize=None)
def nuisance_basis(dim: int) -> torch.Tensor:
    """A fixed (dim, dim // 2) orthonormal basis, the same for every batch."""
    basis = torch.linalg.qr(torch.randn(dim, dim, generator=torch.Generator().manual_seed(7)))[0]
    return basis[:, : dim // 2]


def synthetic_batch(batch: int, grid: int, dim: int, generator: torch.Generator):
    """Raw token features (batch, grid*grid, dim) and labels (1 = fake).

    Every image has its own identity vector; each token adds noise that lives in a
    fixed nuisance subspace (think lighting and texture), which a good projection
    learns to discard. A fake image has a random rectangle of tokens pulled towards
    a second, foreign vector: the manipulated component.
    """
    labels = torch.arange(batch) % 2
    identity = torch.randn(batch, 1, dim, generator=generator)
    noise = torch.randn(batch, grid * grid, dim // 2, generator=generator) @ nuisance_basis(dim).T
    tokens = identity + noise
    for b in torch.nonzero(labels).flatten().tolist():
        top, left = torch.randint(0, grid // 2, (2,), generator=generator).tolist()
        height, width = torch.randint(2, grid // 2 + 1, (2,), generator=generator).tolist()
        mask = torch.zeros(grid, grid, dtype=torch.bool)
        mask[top : top + height, left : left + width] = True
        foreign = torch.randn(dim, generator=generator)
        tokens[b, mask.flatten()] += 1.5 * foreign
    return tokens, labels.float()


def auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Probability that a fake image scores above a real one (ties count half)."""
    fake, real = scores[labels == 1], scores[labels == 0]
    greater = (fake[:, None] > real[None, :]).float().mean()
    equal = (fake[:, None] == real[None, :]).float().mean()
    return float(greater + 0.5 * equal)


def classification_loss(prob, u_mean, labels):
    """L_CLS averaged over the batch: l_MIL (eq. 10) + l_Reg (eq. 11, mean form) on real images."""
    prob = prob.clamp(1e-6, 1 - 1e-6)
    mil = -(labels * prob.log() + (1 - labels) * (1 - prob).log())
    return (mil + (1 - labels) * (1 - u_mean)).mean()


def check_against_reference(tokens: torch.Tensor, tau: float) -> None:
    tokens = tokens.double()
    op_leaf, ref_leaf = tokens.clone().requires_grad_(), tokens.clone().requires_grad_()
    prob, k_star, u_mean = contrastive_mil(op_leaf, tau)
    prob_r, k_star_r, u_mean_r = reference.contrastive_mil(ref_leaf, tau)
    (prob.sum() + u_mean.sum()).backward()
    (prob_r.sum() + u_mean_r.sum()).backward()
    print(
        f"op vs reference (float64): max |dP| = {(prob - prob_r).abs().max():.1e}, "
        f"k* equal: {bool(torch.equal(k_star, k_star_r))}, "
        f"max |d grad| = {(op_leaf.grad - ref_leaf.grad).abs().max():.1e}"
    )


def time_forward_backward(fn, tokens: torch.Tensor, repeats: int = 5) -> float:
    leaf = tokens.clone().requires_grad_()
    timings = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        prob, _, u_mean = fn(leaf)
        (prob.sum() + u_mean.sum()).backward()
        timings.append(time.perf_counter() - start)
    return sorted(timings[1:])[repeats // 2]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--grid", type=int, default=12, help="tokens per image = grid * grid")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--tau", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    generator = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)
    features, _ = synthetic_batch(args.batch, args.grid, args.dim, generator)
    tokens = torch.nn.functional.normalize(features, dim=-1)
    check_against_reference(tokens, args.tau)

    op_time = time_forward_backward(lambda x: contrastive_mil(x, args.tau), tokens)
    ref_time = time_forward_backward(lambda x: reference.contrastive_mil(x, args.tau), tokens)
    print(
        f"forward + backward, B={args.batch}, N={args.grid**2}, d={args.dim}: "
        f"op {op_time * 1e3:.2f} ms, reference {ref_time * 1e3:.2f} ms "
        f"({ref_time / op_time:.1f}x)"
    )

    projection = torch.nn.Linear(args.dim, args.dim)
    optimizer = torch.optim.AdamW(projection.parameters(), lr=1e-2)
    progress = tqdm(range(args.steps), desc="training", unit="step", mininterval=1.0)
    for _ in progress:
        features, labels = synthetic_batch(args.batch, args.grid, args.dim, generator)
        tokens = torch.nn.functional.normalize(projection(features), dim=-1)
        prob, _, u_mean = contrastive_mil(tokens, args.tau)
        loss = classification_loss(prob, u_mean, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        progress.set_postfix(loss=f"{loss.item():.3f}")

    with torch.no_grad():
        features, labels = synthetic_batch(4 * args.batch, args.grid, args.dim, generator)
        tokens = torch.nn.functional.normalize(projection(features), dim=-1)
        prob, k_star, _ = contrastive_mil(tokens, args.tau)
    accuracy = ((prob > 0.5).float() == labels).float().mean().item()
    print(
        f"held-out synthetic images: AUC {auc(prob, labels):.3f}, accuracy {accuracy:.3f} "
        f"at P > 0.5; "
        f"mean P real {prob[labels == 0].mean():.3f}, fake {prob[labels == 1].mean():.3f}"
    )


if __name__ == "__main__":
    main()
