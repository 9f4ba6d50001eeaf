"""The field's metrics, shared by every method: Seq-DeepFake's sequence accuracies, multi-label
accuracy, order metrics (ordered pairs, Kendall's tau, per-component R^2), and binary detection
metrics (AUC, EER, AP, accuracy, video-level AUC). They compare predicted sequences and scores with
the truth; how a model's outputs become those is its method's business (the multi-label ranking
model's: :mod:`mlrank.ranking.metrics`).

Sequence metrics follow SeqDeepFake's ``test.py`` (Shao et al., ECCV 2022) exactly, so our numbers
compare with the published tables; both are pooled over the data set (total correct positions over
total compared positions), not averaged per row:
- Fixed-Acc compares all 5 positions of every row, padding included.
- Adaptive-Acc compares, per row, the first max(#non-zero in truth, #non-zero in prediction)
  positions; a row where both are empty (a genuine image predicted genuine) has nothing to compare
  and counts as 1 correct out of 1, as the reference code's ``cmp_len == 0`` branch does.

Decisions:
- Scores: every function that decides or ranks components takes the fused logits (``from_logits``
  where it thresholds), so that components whose probabilities both round to 1.0 are still ordered
  by the model and not by the tie rule (mlrank.task.sequences's docstring); probabilities are accepted for
  callers that have nothing else. Exact ties of the logits themselves follow each metric's rule
  below.
- Multi-label accuracy is the per-entry (Hamming) accuracy: the fraction of the M x L component
  decisions (P_i > threshold versus y_i) that are right.
- Ordered pairs, the order of the decoded sequence: every pair of truly manipulated components
  (a before b in the truth: a sequence (a, b, c) has the pairs (a, b), (a, c), (b, c)) is right when
  the predicted sequence holds both and a before b; a component missing from the prediction makes
  its pairs wrong, and extra predicted components change nothing (multi-label accuracy counts them).
  Pooled over the data set: right pairs over all pairs. Images with fewer than two manipulated
  components have no pair and do not count. Undefined (NaN) when no image has a pair.
- Kendall's tau, the order of the scores regardless of the threshold: per image with k >= 2
  manipulated components, over its k(k - 1)/2 true pairs (a before b), concordant when f_a > f_b,
  discordant when f_a < f_b, and neither when the logits are exactly equal;
  tau = (concordant - discordant) / (k(k - 1)/2) (tau-a; the truth has no ties), in [-1, 1]: 0 in
  expectation for a random order, exactly 0 for a constant one. Averaged over those images; undefined (NaN) when there is none.
  Unlike decoding, it does not break score ties by component id: that rule would reward a constant
  model whenever the edits happen to follow the id order.
- Order R^2 (the paper's Table 4), per component i: over the samples where i was manipulated, the
  coefficient of determination of the true rank r_i (eq. 2) by the predicted rank o_i of f_i among
  the L fused logits (ties to the lower index, as in decoding):
  R^2 = 1 - sum (r_i - o_i)^2 / sum (r_i - mean r_i)^2. Restricting to manipulated samples measures
  the order alone; whether i is found at all is multi-label accuracy's business, and genuine images
  would otherwise inflate R^2 with trivially matching ranks. When i was never manipulated, or always
  at the same position (zero variance), R^2 is undefined and reported as NaN.
- Binary metrics are computed in float64 numpy with scikit-learn's conventions (scikit-learn is a
  test dependency only; tests/test_metrics.py checks AUC and AP equal to its roc_auc_score and
  average_precision_score on random cases with ties): ROC points at every distinct score, AUC by the
  trapezoid rule over them (ties give a diagonal segment), AP = sum_k (R_k - R_{k-1}) P_k over
  distinct thresholds in decreasing order, and EER where FNR = 1 - TPR and FPR cross along the ROC
  polyline, linearly interpolated inside the segment. DeepfakeBench instead reports the FPR of the
  ROC vertex nearest the crossing (``fpr[argmin |fnr - fpr|]`` on sklearn's curve with collinear
  points dropped). Both lie on the segment that crosses, so they agree to within its width (one
  score's step on large test sets); the crossing is the EER by definition and the vertex rule is
  not: a constant score, which knows nothing, gets 1/2 here and 0 from the vertex rule.
  Accuracy predicts fake when score > threshold (strict, as in decoding).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mlrank.data.vocab import SEQUENCE_LENGTH
from mlrank.task.sequences import above_threshold, check_scores, check_sequences, descending_ranks, sequence_targets

ArrayLike = torch.Tensor | np.ndarray | Sequence


# --- sequences ---------------------------------------------------------------------------------


def _sequence_pair(pred: ArrayLike, gt: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    pred = check_sequences(torch.as_tensor(pred), "pred", distinct=False)
    gt = check_sequences(torch.as_tensor(gt), "gt", distinct=False)
    if pred.shape != gt.shape:
        raise ValueError(
            f"pred and gt must have the same shape, got {tuple(pred.shape)} and {tuple(gt.shape)}"
        )
    return pred, gt.to(pred.device)


def fixed_acc(pred: ArrayLike, gt: ArrayLike) -> float:
    """Fixed-Acc: matching positions over all positions of all M rows, padding included.

    ``pred`` and ``gt`` are (M, 5) integer sequences (ids padded with 0 on the right).
    """
    pred, gt = _sequence_pair(pred, gt)
    return (pred == gt).double().mean().item()


def adaptive_acc(pred: ArrayLike, gt: ArrayLike) -> float:
    """Adaptive-Acc: per row, the first max(#non-zero in gt, #non-zero in pred) positions compared.

    Correct positions and compared positions are pooled over the rows; a row with both sequences
    empty counts 1 correct of 1 (SeqDeepFake's ``test.py``).
    """
    pred, gt = _sequence_pair(pred, gt)
    compared = torch.maximum((gt > 0).sum(dim=1), (pred > 0).sum(dim=1))
    in_window = torch.arange(gt.shape[1], device=gt.device) < compared.unsqueeze(1)
    correct = ((pred == gt) & in_window).sum(dim=1)
    both_empty = compared == 0
    correct = torch.where(both_empty, torch.ones_like(correct), correct)
    compared = torch.where(both_empty, torch.ones_like(compared), compared)
    return correct.sum().item() / compared.sum().item()


def multilabel_acc(
    probs_or_pred: torch.Tensor, y: torch.Tensor, threshold: float = 0.5, *, from_logits: bool = False
) -> float:
    """Per-entry (Hamming) multi-label accuracy over all M x L component decisions.

    Args:
        probs_or_pred: (M, L) probabilities (floating, thresholded: P_i > threshold), logits (with
            ``from_logits``), or 0/1 predictions (bool or integer).
        y: (M, L) 0/1 targets (see :func:`mlrank.task.sequences.sequence_targets`).
        threshold: used for probabilities and logits only.
        from_logits: floating scores are the fused logits.
    """
    if not isinstance(probs_or_pred, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError("probs_or_pred and y must be torch.Tensors")
    if probs_or_pred.is_floating_point():
        check_scores(probs_or_pred, "probs_or_pred", probabilities=not from_logits)
        predicted = above_threshold(probs_or_pred, threshold, from_logits)
    else:
        predicted = _check_binary(probs_or_pred, "probs_or_pred")
    truth = _check_binary(y, "y")
    if predicted.shape != truth.shape or predicted.dim() != 2 or predicted.numel() == 0:
        raise ValueError(
            f"probs_or_pred and y must be non-empty (M, L) tensors of the same shape, got "
            f"{tuple(probs_or_pred.shape)} and {tuple(y.shape)}"
        )
    return (predicted == truth.to(predicted.device)).double().mean().item()


def _check_binary(values: torch.Tensor, name: str) -> torch.Tensor:
    if not bool(((values == 0) | (values == 1)).all()):
        raise ValueError(f"{name} must hold only 0 and 1")
    return values.bool()


def order_r2(scores: torch.Tensor, sequences: torch.Tensor, L: int = SEQUENCE_LENGTH) -> torch.Tensor:
    """Per component, R^2 of the true rank r_i by the predicted rank o_i, over the samples where i
    was manipulated (see the module docstring); NaN where undefined.

    Args:
        scores: (M, L) fused logits (or probabilities, which may tie where the logits do not).
        sequences: (M, T) ground-truth sequences.
        L: number of components; must match ``scores``.

    Returns:
        (L,) float64.
    """
    check_scores(scores, "scores", probabilities=False)
    if scores.shape[1] != L:
        raise ValueError(f"scores has {scores.shape[1]} components but L = {L}")
    labels, true_ranks = sequence_targets(sequences, L)
    if labels.shape[0] != scores.shape[0]:
        raise ValueError(f"scores has {scores.shape[0]} rows but sequences has {labels.shape[0]}")
    predicted_ranks = descending_ranks(scores).cpu().double()
    labels, true_ranks = labels.cpu().bool(), true_ranks.cpu().double()
    r2 = torch.full((L,), float("nan"), dtype=torch.float64)
    for component in range(L):
        manipulated = labels[:, component]
        truth = true_ranks[manipulated, component]
        if truth.numel() == 0:
            continue
        total = ((truth - truth.mean()) ** 2).sum()
        if total > 0:
            residual = ((truth - predicted_ranks[manipulated, component]) ** 2).sum()
            r2[component] = 1 - residual / total
    return r2


def _true_pairs(gt: torch.Tensor) -> torch.Tensor:
    """(M, T, T) bool: [m, j, j'] when positions j < j' of row m both hold manipulated components."""
    present = gt > 0
    later = torch.ones(gt.shape[1], gt.shape[1], dtype=torch.bool, device=gt.device).triu(diagonal=1)
    return present.unsqueeze(2) & present.unsqueeze(1) & later


def ordered_pairs(pred: ArrayLike, gt: ArrayLike) -> float:
    """Share of the truly ordered pairs of manipulated components that ``pred`` puts in the same
    order, pooled over the rows; a component missing from ``pred`` makes its pairs wrong (see the
    module docstring). NaN when no row of ``gt`` has two manipulated components.

    ``pred`` and ``gt`` are (M, T) sequences of distinct ids, padded with 0 on the right.
    """
    pred, gt = _sequence_pair(pred, gt)
    check_sequences(pred, "pred")
    check_sequences(gt, "gt")
    # match[m, p, j]: the prediction's p-th id is the j-th manipulated component (ids are distinct).
    match = (pred.unsqueeze(2) == gt.unsqueeze(1)) & (gt > 0).unsqueeze(1)
    found = match.any(dim=1)
    true_position = match.long().argmax(dim=1)  # where each true component stands in the prediction
    right_order = true_position.unsqueeze(2) < true_position.unsqueeze(1)
    pairs = _true_pairs(gt)
    total = int(pairs.sum())
    if total == 0:
        return float("nan")
    right = pairs & found.unsqueeze(2) & found.unsqueeze(1) & right_order
    return int(right.sum()) / total


def kendall_tau(scores: torch.Tensor, sequences: torch.Tensor) -> float:
    """Kendall's tau between the true order and the fused scores of the manipulated components, per
    image with at least two of them, averaged (see the module docstring); NaN when there is none.

    Args:
        scores: (M, L) fused logits (or probabilities, which tie where the logits do not).
        sequences: (M, T) ground-truth sequences.
    """
    check_scores(scores, "scores", probabilities=False)
    sequences = check_sequences(sequences, "sequences", num_components=scores.shape[1])
    if sequences.shape[0] != scores.shape[0]:
        raise ValueError(f"scores has {scores.shape[0]} rows but sequences has {sequences.shape[0]}")
    sequences = sequences.to(scores.device)
    # edited[m, j]: the score of the component edited j-th (padding reads component 1, masked below).
    edited = scores.double().gather(1, (sequences - 1).clamp(min=0))
    pairs = _true_pairs(sequences)
    # +1 concordant (edited earlier, scored higher), -1 discordant, 0 for equal scores.
    agreement = torch.sign(edited.unsqueeze(2) - edited.unsqueeze(1)) * pairs
    num_pairs = pairs.sum(dim=(1, 2))
    ranked = num_pairs > 0
    if not bool(ranked.any()):
        return float("nan")
    tau = agreement.sum(dim=(1, 2))[ranked] / num_pairs[ranked]
    return tau.mean().item()


# --- binary detection --------------------------------------------------------------------------


def _as_numpy(values: ArrayLike) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


def _binary_inputs(
    scores: ArrayLike, labels: ArrayLike, need_both_classes: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Scores as float64 and labels as int64, both 1-D of the same non-zero length."""
    scores, labels = _as_numpy(scores), _as_numpy(labels)
    if scores.ndim != 1 or labels.ndim != 1 or scores.shape != labels.shape or scores.size == 0:
        raise ValueError(
            f"scores and labels must be non-empty 1-D arrays of the same length, got shapes "
            f"{scores.shape} and {labels.shape}"
        )
    if not (np.issubdtype(scores.dtype, np.number) or scores.dtype == bool):
        raise TypeError(f"scores must be numeric, got dtype {scores.dtype}")
    scores = scores.astype(np.float64)
    if not np.isfinite(scores).all():
        first = int(np.flatnonzero(~np.isfinite(scores))[0])
        raise ValueError(f"scores contain NaN or Inf (at index {first})")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError(
            f"labels must be 0 (real) or 1 (fake), got values {np.unique(labels).tolist()}"
        )
    labels = labels.astype(np.int64)
    if need_both_classes and labels.min() == labels.max():
        raise ValueError(
            f"labels hold only class {int(labels[0])}; AUC, EER and AP need both real (0) and "
            f"fake (1) samples"
        )
    return scores, labels


def _roc_counts(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative (false positives, true positives) at each distinct score, highest first."""
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_labels = scores[order], labels[order]
    # Last index of each run of equal scores: ties enter the curve together.
    run_ends = np.r_[np.flatnonzero(np.diff(sorted_scores)), sorted_scores.size - 1]
    true_positives = np.cumsum(sorted_labels)[run_ends]
    false_positives = run_ends + 1 - true_positives
    return false_positives.astype(np.float64), true_positives.astype(np.float64)


def _roc(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, TPR) from (0, 0) to (1, 1), one point per distinct score."""
    false_positives, true_positives = _roc_counts(scores, labels)
    num_fake = labels.sum()
    num_real = labels.size - num_fake
    return np.r_[0.0, false_positives / num_real], np.r_[0.0, true_positives / num_fake]


def auc(scores: ArrayLike, labels: ArrayLike) -> float:
    """Area under the ROC curve (trapezoid rule over distinct scores; label 1 = fake = positive)."""
    fpr, tpr = _roc(*_binary_inputs(scores, labels))
    return float(np.trapezoid(tpr, fpr))


def eer(scores: ArrayLike, labels: ArrayLike) -> float:
    """Equal error rate: where FPR and FNR = 1 - TPR cross on the ROC polyline, interpolated."""
    fpr, tpr = _roc(*_binary_inputs(scores, labels))
    gap = (1 - tpr) - fpr  # +1 at (0, 0), -1 at (1, 1), non-increasing along the curve
    cross = int(np.flatnonzero(gap <= 0)[0])
    if gap[cross] == 0:
        return float(fpr[cross])
    before = cross - 1
    fraction = gap[before] / (gap[before] - gap[cross])
    return float(fpr[before] + fraction * (fpr[cross] - fpr[before]))


def average_precision(scores: ArrayLike, labels: ArrayLike) -> float:
    """AP as scikit-learn computes it: sum_k (R_k - R_{k-1}) P_k over distinct thresholds."""
    scores, labels = _binary_inputs(scores, labels)
    false_positives, true_positives = _roc_counts(scores, labels)
    precision = true_positives / (true_positives + false_positives)
    recall = true_positives / labels.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def accuracy_at(scores: ArrayLike, labels: ArrayLike, threshold: float = 0.5) -> float:
    """Fraction of samples classified right when fake is predicted for score > threshold."""
    scores, labels = _binary_inputs(scores, labels, need_both_classes=False)
    return float(np.mean((scores > threshold) == (labels == 1)))


def video_auc(scores: ArrayLike, labels: ArrayLike, video_ids: ArrayLike) -> float:
    """AUC over videos: each video's score is the mean of its frame scores.

    Raises ValueError if a video has frames with different labels.
    """
    scores, labels = _binary_inputs(scores, labels, need_both_classes=False)
    video_ids = _as_numpy(video_ids)
    if video_ids.shape != scores.shape:
        raise ValueError(
            f"video_ids must have the shape of scores {scores.shape}, got {video_ids.shape}"
        )
    videos, video_of_frame = np.unique(video_ids, return_inverse=True)
    frames = np.bincount(video_of_frame)
    fake_frames = np.bincount(video_of_frame, weights=labels)
    mixed = np.flatnonzero((fake_frames > 0) & (fake_frames < frames))
    if mixed.size:
        video = videos[mixed[:1]].tolist()[0]  # a Python value, not a numpy scalar, in the message
        raise ValueError(f"video {video!r} has frames labelled both real and fake")
    mean_scores = np.bincount(video_of_frame, weights=scores) / frames
    return auc(mean_scores, (fake_frames > 0).astype(np.int64))


def binary_metrics(
    scores: ArrayLike, labels: ArrayLike, video_ids: ArrayLike | None = None, threshold: float = 0.5
) -> dict[str, float]:
    """{"auc", "eer", "ap", "acc"} at frame level, plus "video_auc" when ``video_ids`` is given."""
    results = {
        "auc": auc(scores, labels),
        "eer": eer(scores, labels),
        "ap": average_precision(scores, labels),
        "acc": accuracy_at(scores, labels, threshold),
    }
    if video_ids is not None:
        results["video_auc"] = video_auc(scores, labels, video_ids)
    return results


def binary_metrics_of_any_split(
    scores: ArrayLike, labels: ArrayLike, video_ids: ArrayLike | None = None, threshold: float = 0.5
) -> dict[str, float | None]:
    """:func:`binary_metrics`, with AUC, EER, AP and video AUC None (undefined) where the labels hold
    one class only (a test set of real faces alone, say); accuracy is defined either way."""
    labels_array = _as_numpy(labels)
    if labels_array.size and labels_array.min() != labels_array.max():
        return binary_metrics(scores, labels, video_ids, threshold)
    results: dict[str, float | None] = {"auc": None, "eer": None, "ap": None,
                                        "acc": accuracy_at(scores, labels, threshold)}
    if video_ids is not None:
        results["video_auc"] = None
    return results
