"""Manipulation sequences: their format, checks, and decoding from the fused scores.

A *sequence* is an integer tensor (B, T) of component ids 1..L in the order the components were
manipulated, padded with 0 on the right: Seq-DeepFake's format, T = 5. An all-zero row is a genuine
image. Decoding (docs/method.md section 7) keeps the components with P_i > threshold, ordered by
decreasing P_i.

Decisions:
- Decode from the fused logits f (``from_logits=True``) whenever they are at hand. P_i = sigmoid(f_i)
  rounds to exactly 1.0 in float32 for f_i above about 16.6 (above about 6.2 in bfloat16), so two
  confident components tie on P and the tie rule, not the model, would pick their order. The logits
  keep that order, and P_i > t is decided exactly as f_i > log(t / (1 - t)), computed in float64.
  Probabilities are still accepted (the default), for callers that have nothing else.
- Ties between equal scores go to the lower component index first, the rule the paper's rank o_i
  needs (docs/method.md section 5); :func:`descending_ranks` is that rule, shared by the rank loss and
  the metrics, so decoding and training agree on every tie.
- The threshold is strict: P_i == threshold is not a detection.
- If L exceeds the output length the call fails instead of truncating: a sequence that silently loses
  detected components would understate every metric.
"""

from __future__ import annotations

import math
import numbers

import torch

from mlrank.data.vocab import SEQUENCE_LENGTH


def check_scores(scores: object, name: str = "probs", probabilities: bool = True) -> torch.Tensor:
    """Validate a (B, L) floating tensor of finite scores (in [0, 1] when ``probabilities``)."""
    if not isinstance(scores, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(scores).__name__}")
    if not scores.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {scores.dtype}")
    if scores.dim() != 2 or scores.shape[1] < 1:
        raise ValueError(
            f"{name} must be 2-D (batch, num_components) with num_components >= 1, "
            f"got shape {tuple(scores.shape)}"
        )
    if not bool(torch.isfinite(scores).all()):
        raise ValueError(f"{name} contains NaN or Inf")
    if probabilities and scores.numel() and not bool(((scores >= 0) & (scores <= 1)).all()):
        low, high = scores.min().item(), scores.max().item()
        raise ValueError(
            f"{name} must be probabilities in [0, 1], got values in [{low}, {high}] "
            f"(logits? pass from_logits=True)"
        )
    return scores


def check_sequences(
    sequences: object,
    name: str = "sequences",
    num_components: int | None = None,
    distinct: bool = True,
) -> torch.Tensor:
    """Validate a (B, T) integer tensor of sequences and return it as int64.

    Checks that ids are >= 0 (and <= ``num_components`` when given), that no id follows a 0
    padding, and, when ``distinct``, that no id repeats within a row (eq. 2 gives each manipulated
    component one position). Errors name the first bad row.
    """
    if not isinstance(sequences, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(sequences).__name__}")
    if sequences.dtype == torch.bool or sequences.is_floating_point() or sequences.is_complex():
        raise TypeError(
            f"{name} must be an integer tensor of component ids, got dtype {sequences.dtype}"
        )
    if sequences.dim() != 2 or sequences.shape[0] < 1 or sequences.shape[1] < 1:
        raise ValueError(
            f"{name} must be 2-D (batch, length) and non-empty, got shape {tuple(sequences.shape)}"
        )
    sequences = sequences.long()
    out_of_range = sequences < 0
    problem = "has a negative id"
    if num_components is not None:
        out_of_range |= sequences > num_components
        problem = f"has an id outside 0..{num_components}"
    _raise_on_first_bad_row(out_of_range, sequences, name, problem)
    padded = sequences == 0
    # A non-zero id after a 0 means the padding is not only on the right.
    after_padding = (padded.long().cummax(dim=1).values.bool()) & ~padded
    _raise_on_first_bad_row(after_padding, sequences, name, "has a non-zero id after a 0 padding")
    if distinct:
        same = sequences.unsqueeze(2) == sequences.unsqueeze(1)
        later_duplicate = same.triu(diagonal=1) & ~padded.unsqueeze(2)
        _raise_on_first_bad_row(later_duplicate, sequences, name, "repeats a component id")
    return sequences


def _raise_on_first_bad_row(
    bad: torch.Tensor, sequences: torch.Tensor, name: str, problem: str
) -> None:
    flat = bad.reshape(bad.shape[0], -1).any(dim=1)
    if bool(flat.any()):
        row = int(flat.nonzero()[0, 0])
        raise ValueError(f"{name} row {row} {problem}: {sequences[row].tolist()}")


def descending_ranks(scores: torch.Tensor) -> torch.Tensor:
    """o_i: the 1-based rank of each score in its row, largest first, ties to the lower index first.

    o_i = 1 + #{j : s_j > s_i} + #{j < i : s_j == s_i}; a (B, L) int64 tensor, a permutation of
    1..L in every row. Pass the fused logits where they exist: probabilities that saturate to 1.0
    tie where the logits do not (module docstring).
    """
    scores = scores.detach()
    score_i = scores.unsqueeze(-1)  # (B, L, 1): the ranked component
    score_j = scores.unsqueeze(-2)  # (B, 1, L): the components it is compared with
    num_components = scores.shape[-1]
    lower_index = torch.ones(
        num_components, num_components, dtype=torch.bool, device=scores.device
    ).tril(diagonal=-1)  # [i, j] = j < i
    ahead = (score_j > score_i) | ((score_j == score_i) & lower_index)
    return 1 + ahead.sum(dim=-1)


def logit_threshold(threshold: float) -> float:
    """The logit cut equivalent to P > ``threshold``: log(t / (1 - t)), -inf for t <= 0, +inf for t >= 1."""
    if threshold <= 0:
        return -math.inf
    if threshold >= 1:
        return math.inf
    return math.log(threshold) - math.log1p(-threshold)


def above_threshold(scores: torch.Tensor, threshold: float = 0.5, from_logits: bool = False) -> torch.Tensor:
    """(B, L) bool: P_i > ``threshold``, decided on the logits when ``from_logits`` (module docstring)."""
    _check_threshold(threshold)
    if from_logits:
        return scores.double() > logit_threshold(threshold)
    return scores > threshold


def _check_threshold(threshold: object) -> None:
    is_real = isinstance(threshold, numbers.Real) and not isinstance(threshold, bool)
    if not is_real or not math.isfinite(threshold):
        raise ValueError(f"threshold must be a finite real number, got {threshold!r}")


def reverse_edit_order(sequences: torch.Tensor) -> torch.Tensor:
    """Each sequence's manipulations in reverse order, the padding kept at the end: (4, 2, 0) -> (2, 4, 0).

    The order a model trained with ``model.last_edit_highest`` ranks its logits in (the most
    recent edit first), turned into edit order, and back (docs/method.md section 5).
    """
    lengths = (sequences != 0).sum(dim=1, keepdim=True)
    positions = torch.arange(sequences.shape[1], device=sequences.device).expand_as(sequences)
    source = torch.where(positions < lengths, lengths - 1 - positions, positions)
    return sequences.gather(1, source)


def edit_order_scores(
    scores: torch.Tensor, threshold: float = 0.5, *, from_logits: bool = False, last_edit_highest: bool = False
) -> torch.Tensor:
    """Scores whose decreasing order is the predicted edit order, the earliest edit first.

    That is ``scores`` themselves (the paper: the first edit scores highest), or, when the model
    scores the most recent edit highest (``last_edit_highest``), the detected components' scores
    mirrored within their own range, so that they keep their place above the undetected ones and
    the lowest-scored detected component comes first. Detection (the threshold) is unchanged.
    """
    if not last_edit_highest:
        return scores
    detected = above_threshold(scores, threshold, from_logits)
    infinity = torch.full_like(scores, float("inf"))
    highest = torch.where(detected, scores, -infinity).amax(dim=1, keepdim=True)
    lowest = torch.where(detected, scores, infinity).amin(dim=1, keepdim=True)
    return torch.where(detected, highest + lowest - scores, scores)


def decode(
    scores: torch.Tensor,
    threshold: float = 0.5,
    length: int = SEQUENCE_LENGTH,
    *,
    from_logits: bool = False,
    last_edit_highest: bool = False,
) -> torch.Tensor:
    """Predicted sequences from the fused scores (docs/method.md section 7).

    Args:
        scores: (B, L) fused probabilities P_i in [0, 1], or with ``from_logits`` the fused logits
            f_i (preferred: they do not saturate).
        threshold: a component is predicted manipulated when P_i > threshold (strictly), i.e.
            f_i > log(threshold / (1 - threshold)).
        length: width of the output; must be >= L.
        from_logits: ``scores`` are logits.
        last_edit_highest: the model scores the most recent edit highest (``model.last_edit_highest``):
            the detected components are listed by increasing score instead, the earliest edit first.

    Returns:
        (B, length) int64: ids 1..L of the predicted components by decreasing score (ties: lower
        id first), or in reverse with ``last_edit_highest``, padded with 0.

    Raises:
        TypeError / ValueError: scores is not a 2-D floating tensor of finite values (in [0, 1]
            unless ``from_logits``), the threshold is not a finite real number, or L > length.
    """
    check_scores(scores, "logits" if from_logits else "probs", probabilities=not from_logits)
    is_detected = above_threshold(scores, threshold, from_logits)
    if last_edit_highest:
        scores = edit_order_scores(scores, threshold, from_logits=from_logits, last_edit_highest=True)
    batch, num_components = scores.shape
    if isinstance(length, bool) or not isinstance(length, numbers.Integral) or length < num_components:
        raise ValueError(
            f"length must be an int >= the number of components L = {num_components}, got {length!r}"
        )
    ranks = descending_ranks(scores)
    ids = torch.arange(1, num_components + 1, device=scores.device).expand(batch, num_components)
    detected_ids = torch.where(is_detected, ids, torch.zeros_like(ids))
    # Detected components hold the top ranks, so placing every id at its rank leaves them as a
    # prefix followed by zeros.
    sequences = torch.zeros(batch, length, dtype=torch.long, device=scores.device)
    sequences[:, :num_components].scatter_(1, ranks - 1, detected_ids)
    return sequences
