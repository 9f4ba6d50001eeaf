"""The supervised method (the multi-label ranking model) as the training loop drives it.

The loop in :mod:`mlrank.train` calls a method module's ``train_dataset``, ``train_batch_size``,
``build_model``, ``train_one_epoch``, ``evaluation_dataset``, ``evaluate`` and ``selection_metric``;
this module provides them for the paper's model (SeeABLE's are in :mod:`mlrank.seeable.training`).
``train_one_epoch`` runs one pass with a progress bar (loss, images/s); ``predict_split`` returns the
model's outputs for a whole split in data-set order on every rank; ``split_metrics`` turns them into
the field's numbers. Decisions:
- The fake score of a Seq-DeepFake image is the contrastive-MIL probability P(x) (eq. 9), the
  paper's classification output; components and their order come from the fused logits f_i
  (P_i > 0.5 is f_i > 0; the logits order components whose P_i both round to 1.0). In binary mode
  (L = 1) the score is the fused P_1, and the MIL probability is reported beside it.
- The checkpoint kept as "best" maximises Fixed-Acc on the validation split (AUC in binary mode).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from mlrank import builders
from mlrank.config import Config
from mlrank.epoch import run_epoch
from mlrank.distributed import DistContext, all_gather_tensors, autocast, make_sampler
from mlrank.losses import total_loss
from mlrank.metrics import auc, binary_metrics, sequence_metrics
from mlrank.ops import contrastive_mil

PSEUDO_FAKE = 1  # kinds of BalancedTriplets: 0 real, 1 pseudo-fake, 2 fake

build_model = builders.build_model
train_batch_size = builders.train_batch_size


def train_dataset(cfg: Config) -> Dataset:
    return builders.build_train_dataset(cfg, builders.build_dataset(cfg, "train"))


def evaluation_dataset(cfg: Config, split: str) -> Dataset:
    return builders.build_dataset(cfg, split)


def evaluate(cfg: Config, model: torch.nn.Module, dataset: Dataset, ctx: DistContext, desc: str) -> dict[str, Any]:
    """All metrics of ``model`` on ``dataset`` (computed on every rank from the gathered outputs)."""
    predictions = predict_split(cfg, model, dataset, ctx, desc)
    video_ids = list(dataset.video_ids()) if hasattr(dataset, "video_ids") else None
    return split_metrics(predictions, video_ids, cfg.model.last_edit_highest)


def unpack_batch(batch: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(images, labels, component_mask) from a plain batch or a batch of triplets."""
    images, labels, *rest = batch
    if images.dim() == 5:  # triplets: (B, 3, C, H, W)
        kinds = rest[0]
        images, labels, kinds = images.flatten(0, 1), labels.flatten(0, 1), kinds.flatten(0, 1)
        mask = (kinds != PSEUDO_FAKE).float().to(device)
    else:
        mask = None
    return images.to(device, non_blocking=True), labels.to(device, non_blocking=True), mask


def train_one_epoch(
    cfg: Config,
    model: torch.nn.Module,
    loader: Iterable,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    ctx: DistContext,
    epoch: int,
    steps: int,
) -> dict[str, float]:
    """One epoch of L_Total (eq. 15); the mean of every loss term and this rank's images/s."""

    def losses_of(batch: Any) -> tuple[dict[str, torch.Tensor], int]:
        images, labels, mask = unpack_batch(batch, ctx.device)
        with autocast(cfg.train.amp, ctx.device):
            outputs = model(images)
        outputs = {key: value.float() if torch.is_tensor(value) else value for key, value in outputs.items()}
        losses = total_loss(
            outputs,
            labels,
            lambda1=cfg.loss.lambda1,
            lambda2=cfg.loss.lambda2,
            tau=cfg.loss.tau,
            alpha=cfg.loss.alpha,
            num_k=cfg.loss.num_k,
            reg=cfg.loss.reg,
            component_mask=mask,
            lambda_cls=cfg.loss.lambda_cls,
            lambda_bce_patch=cfg.loss.lambda_bce_patch,
            lambda_bce_class=cfg.loss.lambda_bce_class,
            lambda_order=cfg.loss.lambda_order,
            last_edit_highest=cfg.model.last_edit_highest,
        )
        return losses, images.shape[0]

    return run_epoch(cfg, model, loader, optimizer, scheduler, ctx, epoch, steps, losses_of)


def evaluation_loader(cfg: Config, dataset: Dataset, ctx: DistContext) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=cfg.data.batch_size,
        sampler=make_sampler(dataset, ctx, shuffle=False, seed=cfg.seed),
        num_workers=cfg.data.num_workers,
        pin_memory=ctx.device.type == "cuda",
    )


@torch.no_grad()
def predict_split(
    cfg: Config, model: torch.nn.Module, dataset: Dataset, ctx: DistContext, desc: str = "eval"
) -> dict[str, torch.Tensor]:
    """Fused logits (M, L), MIL probabilities (M,) and labels, in data-set order, on all ranks."""
    model.eval()
    logits, mil_probs, labels = [], [], []
    for batch in tqdm(evaluation_loader(cfg, dataset, ctx), desc=desc, disable=not ctx.is_main, leave=False):
        images, label, _ = unpack_batch(batch, ctx.device)
        with autocast(cfg.train.amp, ctx.device):
            outputs = model(images)
        logits.append(outputs["logits"].float())
        mil_probs.append(contrastive_mil(outputs["tokens"].float(), cfg.loss.tau, cfg.loss.num_k)[0])
        labels.append(label)
    gathered = {
        "logits": torch.cat(logits),
        "mil_probs": torch.cat(mil_probs),
        "labels": torch.cat(labels),
    }
    return {key: all_gather_tensors(value, ctx, len(dataset)).cpu() for key, value in gathered.items()}


def split_metrics(
    predictions: dict[str, torch.Tensor], video_ids: list[str] | None = None, last_edit_highest: bool = False
) -> dict[str, Any]:
    """Sequence metrics (Fixed/Adaptive-Acc, ...) and real-vs-fake metrics, or binary metrics."""
    logits, mil_probs, labels = predictions["logits"], predictions["mil_probs"], predictions["labels"]
    if labels.dim() == 1:  # binary detection
        metrics = binary_metrics(logits[:, 0].sigmoid(), labels, video_ids)
        metrics["mil_auc"] = _auc_or_none(mil_probs, labels)
        return metrics
    metrics = sequence_metrics(logits, labels, from_logits=True, last_edit_highest=last_edit_highest)
    # Undefined metrics (NaN) are JSON null: R^2 of a component never manipulated, or always at one
    # position; the order metrics of a split without an image of two manipulated components.
    metrics["order_r2"] = [_none_if_nan(r2) for r2 in metrics["order_r2"]]
    for key in ("ordered_pairs", "kendall_tau"):
        metrics[key] = _none_if_nan(metrics[key])
    is_fake = (labels != 0).any(dim=1).long()
    metrics["fake_auc"] = _auc_or_none(mil_probs, is_fake)
    if metrics["fake_auc"] is not None:
        metrics |= {f"fake_{key}": value for key, value in binary_metrics(mil_probs, is_fake).items() if key != "auc"}
    return metrics


def _none_if_nan(value: float) -> float | None:
    return None if math.isnan(value) else value


def _auc_or_none(scores: torch.Tensor, labels: torch.Tensor) -> float | None:
    if labels.min() == labels.max():
        return None  # one class only: no AUC
    return auc(scores, labels)


def selection_metric(metrics: dict[str, Any]) -> float:
    """The validation number the best checkpoint maximises."""
    value = metrics.get("fixed_acc", metrics.get("auc"))
    return float("-inf") if value is None else float(value)
