"""The multi-label ranking model's numbers on a split: its fused scores decoded into sequences and
read in edit order, then scored by the field's metrics (:mod:`mlrank.task.metrics`).

Decisions:
- The fake score of a Seq-DeepFake image is the contrastive-MIL probability P(x) (eq. 9), the
  paper's classification output; components and their order come from the fused logits f_i. In
  binary mode (L = 1) the score is the fused P_1, and the MIL probability's AUC is reported beside it.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from mlrank.ranking.decoding import decode, edit_order_scores
from mlrank.task.metrics import (
    adaptive_acc,
    auc,
    binary_metrics,
    binary_metrics_of_any_split,
    fixed_acc,
    kendall_tau,
    multilabel_acc,
    order_r2,
    ordered_pairs,
)
from mlrank.task.sequences import check_scores, sequence_targets


def sequence_metrics(
    scores: torch.Tensor,
    sequences: torch.Tensor,
    threshold: float = 0.5,
    *,
    from_logits: bool = False,
    last_edit_highest: bool = False,
    order_scores: torch.Tensor | None = None,
    predicted: torch.Tensor | None = None,
) -> dict:
    """All sequence metrics from the fused scores (M, L) and ground-truth sequences (M, T), T >= L;
    predictions are decoded with :func:`mlrank.ranking.decoding.decode` at the same width T, unless
    given as ``predicted``.

    Args:
        scores: fused probabilities, or with ``from_logits`` the fused logits (preferred: the
            probabilities saturate, and tie, where the logits do not).
        sequences: ground-truth sequences.
        threshold: P_i above which a component is predicted manipulated.
        from_logits: ``scores`` are logits.
        last_edit_highest: the scores rank the most recent edit highest (``model.last_edit_highest``):
            decoding and the order metrics read :func:`mlrank.ranking.decoding.edit_order_scores`.
        order_scores: (M, L) the scores of a model's order head, which order the detected
            components (see :func:`mlrank.ranking.decoding.decode`).
        predicted: (M, T) the decoded sequences, where a rule other than the threshold decided
            them (``model.seen_sequences_only``): Fixed- and Adaptive-Acc, multi-label accuracy and
            ordered pairs read them; Kendall's tau and R^2 read the scores either way.

    Returns {"fixed_acc", "adaptive_acc", "multilabel_acc", "ordered_pairs", "kendall_tau": float
    (the last two NaN when no image has two manipulated components), "order_r2": list of L floats}.
    """
    check_scores(scores, "logits" if from_logits else "probs", probabilities=not from_logits)
    num_components = scores.shape[1]
    labels, _ = sequence_targets(sequences, num_components)
    if predicted is None:
        pred = decode(scores, threshold, length=sequences.shape[1], from_logits=from_logits,
                      last_edit_highest=last_edit_highest, order_scores=order_scores)
        detected: torch.Tensor = scores
    else:
        pred = predicted
        detected = sequence_targets(predicted, num_components)[0].long()  # 0/1 decisions
    order_scores = edit_order_scores(scores, threshold, from_logits=from_logits, last_edit_highest=last_edit_highest,
                                     order_scores=order_scores)
    return {
        "fixed_acc": fixed_acc(pred, sequences),
        "adaptive_acc": adaptive_acc(pred, sequences),
        "multilabel_acc": multilabel_acc(detected, labels, threshold, from_logits=from_logits),
        "ordered_pairs": ordered_pairs(pred, sequences),
        "kendall_tau": kendall_tau(order_scores, sequences),
        "order_r2": order_r2(order_scores, sequences, num_components).tolist(),
    }


def split_metrics(
    predictions: dict[str, torch.Tensor], video_ids: list[str] | None = None, last_edit_highest: bool = False
) -> dict[str, Any]:
    """Sequence metrics (Fixed/Adaptive-Acc, ...) and real-vs-fake metrics, or binary metrics."""
    logits, mil_probs, labels = predictions["logits"], predictions["mil_probs"], predictions["labels"]
    if labels.dim() == 1:  # binary detection; a set of one class has no AUC, EER or AP (None)
        metrics = binary_metrics_of_any_split(logits[:, 0].sigmoid(), labels, video_ids)
        metrics["mil_auc"] = _auc_or_none(mil_probs, labels)
        return metrics
    metrics = sequence_metrics(logits, labels, from_logits=True, last_edit_highest=last_edit_highest,
                               order_scores=predictions.get("order_scores"), predicted=predictions.get("sequences"))
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
