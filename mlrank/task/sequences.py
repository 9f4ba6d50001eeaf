"""Manipulation sequences and the scores they are read from: the field's format, shared by every method.

A *sequence* is an integer tensor (B, T) of component ids 1..L in the order the components were
manipulated, padded with 0 on the right: Seq-DeepFake's format, T = 5. An all-zero row is a genuine
image. From a sequence Y come the targets of docs/method.md section 1 (eqs. 1-2): y_i = 1 when
component i is in Y, and its rank r_i = j when i is the j-th edit, else L.

Decisions:
- Scores are (B, L) per-component scores, the fused probabilities or, preferably, the fused logits:
  P_i = sigmoid(f_i) rounds to exactly 1.0 in float32 for f_i above about 16.6 (above about 6.2 in
  bfloat16), so two confident components tie on P where the logits keep the model's order. P_i > t
  is decided exactly as f_i > log(t / (1 - t)), computed in float64 (:func:`above_threshold`).
- Ties between equal scores go to the lower component index first, the rule the paper's rank o_i
  needs (docs/method.md section 5); :func:`descending_ranks` is that rule, shared by a method's
  losses and decoding and by the metrics, so they agree on every tie.
- The threshold is strict: P_i == threshold is not a detection.
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



def as_sequences(sequences: object, num_components: int) -> torch.Tensor:
    """(B, T) int64 sequences; a (B,) label vector is accepted in binary mode (L = 1)."""
    if isinstance(sequences, torch.Tensor) and sequences.dim() == 1:
        if num_components != 1:
            raise ValueError(
                f"a 1-D label vector of shape {tuple(sequences.shape)} is only accepted in binary "
                f"mode (L = 1); with L = {num_components} give (B, T) sequences of component ids"
            )
        sequences = sequences.unsqueeze(1)
    return check_sequences(sequences, "sequences", num_components=num_components)


def _check_count(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return int(value)


def sequence_targets(
    sequences: torch.Tensor, L: int = SEQUENCE_LENGTH
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multi-label and rank targets of eqs. (1) and (2).

    Args:
        sequences: (B, T) integer ids 1..L in manipulation order, padded with 0 (T = 5 in
            Seq-DeepFake); in binary mode (L = 1) also a (B,) vector of 0/1 labels.
        L: number of components.

    Returns:
        y: (B, L) float32, y_i = 1 if component i is in Y.
        r: (B, L) int64, r_i = j if i is the j-th manipulated component, else L.

    Raises:
        TypeError / ValueError: not an integer tensor of that shape, an id outside 0..L, an id after
            a 0 padding, or an id repeated in a row.
    """
    L = _check_count(L, "L")
    sequences = as_sequences(sequences, L)
    batch, length = sequences.shape
    positions = torch.arange(1, length + 1, device=sequences.device).expand(batch, length)
    # Column 0 collects the padding and is dropped.
    ranks = torch.full((batch, L + 1), L, dtype=torch.long, device=sequences.device)
    ranks.scatter_(1, sequences, positions)
    labels = torch.zeros(batch, L + 1, device=sequences.device)
    labels.scatter_(1, sequences, 1.0)
    return labels[:, 1:], ranks[:, 1:]
