"""Bootstrap intervals of the sequence metrics, and of the difference between two models on one split.

Every sequence metric of :mod:`mlrank.task.metrics` is a ratio of sums over the images of a split:
Fixed-Acc is right positions over 5 M, Adaptive-Acc right positions over compared positions,
multi-label accuracy right decisions over L M, ordered pairs right pairs over true pairs, Kendall's
tau the sum of per-image taus over the images that have one. :func:`per_image_terms` splits each into
its per-image numerator and denominator (their pooled ratio is the metric, tested); resampling the
images with replacement and taking the ratio of the resampled sums is the bootstrap of the metric.

Decisions:
- Percentile intervals of ``rounds`` resamples (default 2000, 95%): the metrics are bounded ratios
  whose sampling distributions are close to symmetric at the split sizes used (thousands of images).
- A comparison of two models resamples the *same* images for both (a paired bootstrap): the
  difference's interval, not the overlap of two intervals, says whether a gap exceeds the noise of
  the test images. The noise of training (the seed) is a separate spread, measured by training twice.
- The generator is numpy's PCG64 seeded by ``seed``: the same inputs give the same interval.
"""

from __future__ import annotations

import numpy as np
import torch

from mlrank.task.metrics import _true_pairs, kendall_tau
from mlrank.task.sequences import check_sequences, sequence_targets

METRICS = ("fixed_acc", "adaptive_acc", "multilabel_acc", "ordered_pairs", "kendall_tau")


def per_image_terms(pred: torch.Tensor, gt: torch.Tensor, order_scores: torch.Tensor) -> dict[str, np.ndarray]:
    """For each metric of ``METRICS``, an (M, 2) float64 array of each image's numerator and
    denominator: the metric is their column sums' ratio.

    Args:
        pred: (M, T) decoded sequences.
        gt: (M, T) true sequences.
        order_scores: (M, L) the scores the order metrics read (mlrank.ranking.decoding.edit_order_scores).
    """
    pred = check_sequences(pred, "pred").cpu()
    gt = check_sequences(gt, "gt").cpu()
    num_components = order_scores.shape[1]
    same = (pred == gt)
    compared = torch.maximum((gt > 0).sum(dim=1), (pred > 0).sum(dim=1))
    in_window = torch.arange(gt.shape[1]) < compared.unsqueeze(1)
    both_empty = compared == 0
    adaptive_right = torch.where(both_empty, 1, (same & in_window).sum(dim=1))
    predicted_labels = sequence_targets(pred, num_components)[0]
    true_labels = sequence_targets(gt, num_components)[0]
    # ordered pairs: each true pair (a before b) right when pred holds both, a first
    match = (pred.unsqueeze(2) == gt.unsqueeze(1)) & (gt > 0).unsqueeze(1)
    found = match.any(dim=1)
    position = match.long().argmax(dim=1)
    pairs = _true_pairs(gt)
    right = pairs & found.unsqueeze(2) & found.unsqueeze(1) & (position.unsqueeze(2) < position.unsqueeze(1))
    taus = torch.tensor([_tau_of(order_scores[m : m + 1], gt[m : m + 1]) for m in range(gt.shape[0])],
                        dtype=torch.float64)
    has_tau = ~taus.isnan()
    terms = {
        "fixed_acc": (same.sum(dim=1), torch.full_like(compared, gt.shape[1])),
        "adaptive_acc": (adaptive_right, compared.clamp(min=1)),
        "multilabel_acc": ((predicted_labels == true_labels).sum(dim=1), torch.full_like(compared, num_components)),
        "ordered_pairs": (right.sum(dim=(1, 2)), pairs.sum(dim=(1, 2))),
        "kendall_tau": (torch.where(has_tau, taus, 0.0), has_tau.double()),
    }
    return {name: torch.stack([num.double(), den.double()], dim=1).numpy() for name, (num, den) in terms.items()}


def _tau_of(scores: torch.Tensor, sequence: torch.Tensor) -> float:
    return kendall_tau(scores.double(), sequence)


def pooled(terms: np.ndarray) -> float:
    """The metric of an (M, 2) array of per-image terms: its column sums' ratio (NaN when 0/0)."""
    numerator, denominator = terms.sum(axis=0)
    return float(numerator / denominator) if denominator else float("nan")


def resample_indices(count: int, rounds: int, seed: int) -> np.ndarray:
    """(rounds, count) image indices drawn with replacement."""
    return np.random.default_rng(seed).integers(0, count, size=(rounds, count))


def interval(terms: np.ndarray, indices: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The percentile bootstrap interval of the pooled metric over the resamples ``indices``."""
    sums = terms[indices].sum(axis=1)  # (rounds, 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        values = sums[:, 0] / sums[:, 1]
    values = values[~np.isnan(values)]
    tail = (1 - level) / 2
    return float(np.quantile(values, tail)), float(np.quantile(values, 1 - tail))


def difference_interval(terms: np.ndarray, reference: np.ndarray, indices: np.ndarray,
                        level: float = 0.95) -> tuple[float, float]:
    """The paired bootstrap interval of ``pooled(terms) - pooled(reference)``, one model's terms
    against another's on the same images, both resampled with the same ``indices``."""
    if terms.shape != reference.shape:
        raise ValueError(f"the two models' terms cover other images: shapes {terms.shape} and {reference.shape}")
    ours, theirs = terms[indices].sum(axis=1), reference[indices].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        values = ours[:, 0] / ours[:, 1] - theirs[:, 0] / theirs[:, 1]
    values = values[~np.isnan(values)]
    tail = (1 - level) / 2
    return float(np.quantile(values, tail)), float(np.quantile(values, 1 - tail))
