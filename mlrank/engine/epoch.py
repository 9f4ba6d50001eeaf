"""One training epoch, shared by every method: progress bar, loss check, optimiser and schedule steps.

A method supplies ``losses_of(batch) -> (losses, images)``: a dict of scalar loss tensors with a
"total" to minimise, and how many images the batch held (for images/s).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import torch
from tqdm import tqdm

from mlrank.engine.config import Config
from mlrank.engine.distributed import DistContext


def run_epoch(
    cfg: Config,
    model: torch.nn.Module,
    loader: Iterable,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    ctx: DistContext,
    epoch: int,
    steps: int,
    losses_of: Callable[[Any], tuple[dict[str, torch.Tensor], int]],
) -> dict[str, float]:
    """``steps`` optimiser steps; returns the mean of every loss term and this rank's images/s."""
    model.train()
    sums: dict[str, float] = {}
    images_seen, started, step = 0, time.perf_counter(), 0
    # Closed on any exit, Ctrl-C included: a bar left open is torn down at interpreter exit, where
    # it can print a traceback after the clean message the command line gave.
    with tqdm(total=steps, desc=f"epoch {epoch}", disable=not ctx.is_main, dynamic_ncols=True, leave=False) as bar:
        for step, batch in enumerate(loader):
            if step >= steps:
                break
            losses, batch_images = losses_of(batch)
            if not torch.isfinite(losses["total"]):
                raise FloatingPointError(f"epoch {epoch} step {step}: the loss is {losses['total'].item()}")
            optimizer.zero_grad(set_to_none=True)
            losses["total"].backward()
            if cfg.optim.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
            optimizer.step()
            scheduler.step()
            for key, value in losses.items():
                sums[key] = sums.get(key, 0.0) + value.item()
            images_seen += batch_images
            if ctx.is_main and (step % cfg.train.log_every == 0 or step == steps - 1):
                rate = images_seen / (time.perf_counter() - started)
                bar.set_postfix(loss=f"{losses['total'].item():.4f}", img_s=f"{rate:.1f}")
            bar.update(1)
    count = max(1, min(steps, step + 1))
    return {f"loss_{key}": value / count for key, value in sums.items()} | {
        "images_per_s": images_seen / (time.perf_counter() - started)
    }
