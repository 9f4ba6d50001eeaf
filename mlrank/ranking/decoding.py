"""Decoding: the multi-label ranking model's fused scores turned into manipulation sequences.

Decoding (docs/method.md section 7) keeps the components with P_i > threshold, ordered by decreasing
score; the sequence format, the threshold and the tie rule are the field's (:mod:`mlrank.task.sequences`).

Decisions:
- Decode from the fused logits f (``from_logits=True``) whenever they are at hand: the probabilities
  saturate, and tie, where the logits do not (:mod:`mlrank.task.sequences`). Probabilities are still
  accepted (the default), for callers that have nothing else.
- With ``model.last_edit_highest`` the logits rank the most recent edit highest, so the detected
  components are listed by increasing score, the earliest edit first (docs/method.md section 5).
- A model with an order head (``model.order_head``, beyond the paper) gives separate order scores:
  the fused logits still decide which components were edited, the order scores in which order.
- A model with a count head (``model.count_head``, beyond the paper) says how many components were
  edited; its decision logits are the fused logits shifted per image so that exactly the top k are
  positive, k the count on which the head's scores and the logits agree best (:func:`joint_counts`:
  the most probable set under both; the head's argmax alone dropped edited components that the
  logits were sure of, docs/method.md section 5). Every reader of the logits
  (decoding at the default threshold 0.5, the order metrics, predict's probabilities) then sees
  the count head's decision without knowing of it; another threshold moves away from it.
- ``model.decode_from: patch`` decodes the patch branch's logits f^U instead of the fused ones: the
  paper's ablation ranks by them where only L_BCE^U trains (Table 3, row I).
- Beyond the paper, ``model.seen_sequences_only`` decodes the most probable sequence among those
  of the training annotations (:func:`decode_seen_sequences`): Seq-DeepFake has 28 component and
  26 attribute sequences, where thresholding may return any of 326.
- If L exceeds the output length the call fails instead of truncating: a sequence that silently loses
  detected components would understate every metric.
"""

from __future__ import annotations

import numbers

import torch

from mlrank.data.vocab import SEQUENCE_LENGTH
from mlrank.task.sequences import above_threshold, as_sequences, check_scores, check_sequences, descending_ranks


def reverse_edit_order(sequences: torch.Tensor) -> torch.Tensor:
    """Each sequence's manipulations in reverse order, the padding kept at the end: (4, 2, 0) -> (2, 4, 0).

    The order a model trained with ``model.last_edit_highest`` ranks its logits in (the most
    recent edit first), turned into edit order, and back (docs/method.md section 5).
    """
    lengths = (sequences != 0).sum(dim=1, keepdim=True)
    positions = torch.arange(sequences.shape[1], device=sequences.device).expand_as(sequences)
    source = torch.where(positions < lengths, lengths - 1 - positions, positions)
    return sequences.gather(1, source)


def joint_counts(logits: torch.Tensor, count_logits: torch.Tensor) -> torch.Tensor:
    """(B,) int64: the number of edited components k that the count head and the fused logits agree
    on best, argmax over k of ``log_softmax(count_logits)_k + sum of the k largest logits``.

    This is the most probable set under the product of the count head's distribution over 0..L and
    the components' independent Bernoulli posteriors sigmoid(f_i): for a given k the best set is
    the top k logits, and log sigmoid(f) - log sigmoid(-f) = f, so each kept component adds its
    logit (docs/method.md section 5). A uniform count head gives k = the number of positive
    logits, the threshold's decision; ties go to the smaller k. Computed in float64.
    """
    check_scores(logits, "logits", probabilities=False)
    check_scores(count_logits, "count_logits", probabilities=False)
    batch, num_components = logits.shape
    if count_logits.shape != (batch, num_components + 1):
        raise ValueError(
            f"count_logits must be ({batch}, {num_components + 1}) for logits of shape {tuple(logits.shape)}, "
            f"got {tuple(count_logits.shape)}"
        )
    ordered = logits.double().sort(dim=1, descending=True).values
    kept = torch.cat([ordered.new_zeros(batch, 1), ordered.cumsum(dim=1)], dim=1)
    return (count_logits.double().log_softmax(dim=1) + kept).argmax(dim=1)


def shifted_to_counts(logits: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """The logits shifted per image so that exactly the top ``counts[b]`` are positive, in float64.

    The shift puts 0 midway between the k-th and (k + 1)-th largest logit (1 below the largest when
    k = 0, 1 above the smallest when k = L), so the order of the logits, which decoding reads, is
    kept. float64 makes the midpoint of two float32 logits exact: the k-th stays strictly positive
    unless it ties with the (k + 1)-th, when both sit at 0 and neither is detected.
    """
    check_scores(logits, "logits", probabilities=False)
    batch, num_components = logits.shape
    if counts.shape != (batch,) or counts.dtype != torch.long or counts.min() < 0 or counts.max() > num_components:
        raise ValueError(f"counts must be int64 ({batch},) in 0..{num_components}, got {counts.dtype} "
                         f"{tuple(counts.shape)}")
    ordered = logits.double().sort(dim=1, descending=True).values
    padded = torch.cat([ordered[:, :1] + 2, ordered, ordered[:, -1:] - 2], dim=1)  # room for k = 0 and k = L
    count = counts.unsqueeze(1)
    midpoint = (padded.gather(1, count) + padded.gather(1, count + 1)) / 2
    return logits.double() - midpoint


def count_shifted_logits(logits: torch.Tensor, count_logits: torch.Tensor) -> torch.Tensor:
    """The fused logits shifted so that exactly the top k are positive, k the count head's and the
    logits' joint decision (:func:`joint_counts`, :func:`shifted_to_counts`)."""
    return shifted_to_counts(logits, joint_counts(logits, count_logits))


BRANCH_OUTPUTS = {"fused": "logits", "patch": "logits_patch"}  # model.decode_from -> the model's output key


def branch_logits(outputs: dict, branch: str = "fused") -> torch.Tensor:
    """The raw logits of the branch that decodes (``model.decode_from``), as float."""
    if branch not in BRANCH_OUTPUTS:
        raise ValueError(f"decode_from must be one of {sorted(BRANCH_OUTPUTS)}, got {branch!r}")
    return outputs[BRANCH_OUTPUTS[branch]].float()


def decision_logits(outputs: dict, branch: str = "fused") -> torch.Tensor:
    """The logits decoding reads from a model's outputs: the fused logits (or the patch branch's,
    ``branch="patch"``) as float, or with a count head (``outputs["count_logits"]``) the same
    shifted to its count (:func:`count_shifted_logits`)."""
    logits = branch_logits(outputs, branch)
    if "count_logits" in outputs:
        return count_shifted_logits(logits, outputs["count_logits"].float())
    return logits


def distinct_sequences(sequences: torch.Tensor) -> torch.Tensor:
    """The distinct rows of (M, T) sequences, shortest first, then in increasing id order: the
    candidates of :func:`decode_seen_sequences`, whose ties go to the first."""
    sequences = check_sequences(sequences, "sequences")
    rows = sorted({tuple(row) for row in sequences.tolist()}, key=lambda row: (sum(i > 0 for i in row), row))
    return torch.tensor(rows, dtype=torch.long).reshape(len(rows), sequences.shape[1])


def seen_sequence_scores(
    logits: torch.Tensor,
    candidates: torch.Tensor,
    *,
    count_logits: torch.Tensor | None = None,
    order_scores: torch.Tensor | None = None,
    last_edit_highest: bool = False,
) -> torch.Tensor:
    """(B, V) float64 log-scores of each candidate sequence (V, T) for each image (docs/method.md
    section 7):

        score(s) = sum of f_i over the components of s  [+ log q(|s|) with a count head]
                   + sum over pairs (a before b in s) of min(0, g_a - g_b)

    The first term is the log-odds of the set under the components' independent posteriors
    sigmoid(f_i) (against the empty set); log q is the count head's log-probability of the length;
    g are the edit-order scores (the logits, or the order head's, negated when the model ranks the
    latest edit highest), and each pair s puts against the model's order costs their difference,
    the log-likelihood ratio of a pairwise logistic order model to the model's own order. With every
    sequence a candidate the best one is the threshold's (or the count head's) set in the
    decoder's order, so the restriction is all that changes.
    """
    check_scores(logits, "logits", probabilities=False)
    batch, num_components = logits.shape
    candidates = as_sequences(candidates, num_components)
    if candidates.shape[0] == 0:
        raise ValueError("no candidate sequences: the training annotations hold none")
    logits = logits.double()
    ids = torch.arange(1, num_components + 1, device=candidates.device)
    members = (candidates.unsqueeze(2) == ids).any(dim=1).to(logits)  # (V, L)
    score = logits @ members.T
    if count_logits is not None:
        lengths = (candidates > 0).sum(dim=1).to(logits.device)
        score = score + count_logits.double().log_softmax(dim=1)[:, lengths]
    order = logits if order_scores is None else order_scores.double()
    if last_edit_highest:
        order = -order
    # before[v, a, c]: component a + 1 comes before c + 1 in candidate v.
    position = torch.where(candidates > 0, torch.arange(candidates.shape[1], device=candidates.device), -1)
    rank = torch.full((candidates.shape[0], num_components + 1), -1, dtype=torch.long, device=candidates.device)
    rank.scatter_(1, candidates, position)
    rank = rank[:, 1:]
    before = ((rank.unsqueeze(2) >= 0) & (rank.unsqueeze(1) >= 0) & (rank.unsqueeze(2) < rank.unsqueeze(1))).to(logits)
    inversions = (order.unsqueeze(2) - order.unsqueeze(1)).clamp(max=0)  # min(0, g_a - g_c)
    return score + torch.einsum("bac,vac->bv", inversions, before.to(inversions.device))


def decode_seen_sequences(
    logits: torch.Tensor,
    candidates: torch.Tensor,
    *,
    count_logits: torch.Tensor | None = None,
    order_scores: torch.Tensor | None = None,
    last_edit_highest: bool = False,
    length: int = SEQUENCE_LENGTH,
) -> torch.Tensor:
    """(B, length) the highest-scoring candidate per image (:func:`seen_sequence_scores`; ties to
    the candidate listed first, as :func:`distinct_sequences` lists the shortest first)."""
    scores = seen_sequence_scores(logits, candidates, count_logits=count_logits, order_scores=order_scores,
                                  last_edit_highest=last_edit_highest)
    chosen = candidates.to(logits.device)[scores.argmax(dim=1)]
    if chosen.shape[1] > length:
        raise ValueError(f"candidate sequences are {chosen.shape[1]} long, more than length {length}")
    return torch.nn.functional.pad(chosen, (0, length - chosen.shape[1]))


def edit_order_scores(
    scores: torch.Tensor,
    threshold: float = 0.5,
    *,
    from_logits: bool = False,
    last_edit_highest: bool = False,
    order_scores: torch.Tensor | None = None,
) -> torch.Tensor:
    """Scores whose decreasing order is the predicted edit order, the earliest edit first.

    That is ``scores`` themselves (the paper: the first edit scores highest), or, when the model
    scores the most recent edit highest (``last_edit_highest``), the detected components' scores
    mirrored within their own range, so that they keep their place above the undetected ones and
    the lowest-scored detected component comes first. Detection (the threshold) is unchanged.

    With a model's separate ``order_scores`` (an order head), the detected components are ordered
    by those instead (negated with ``last_edit_highest``) and lifted above every undetected one;
    detection still reads ``scores``.
    """
    if order_scores is not None:
        check_scores(order_scores, "order_scores", probabilities=False)
        if order_scores.shape != scores.shape:
            raise ValueError(f"order_scores has shape {tuple(order_scores.shape)}, scores {tuple(scores.shape)}")
        detected = above_threshold(scores, threshold, from_logits)
        ranking = (-order_scores if last_edit_highest else order_scores).double()
        span = ranking.amax(dim=1, keepdim=True) - ranking.amin(dim=1, keepdim=True)
        return torch.where(detected, ranking + span + 1, ranking)
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
    order_scores: torch.Tensor | None = None,
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
        order_scores: (B, L) a model's order head's scores: they order the detected components
            (by decreasing score, or increasing with ``last_edit_highest``); ``scores`` detect.

    Returns:
        (B, length) int64: ids 1..L of the predicted components by decreasing score (ties: lower
        id first), or in reverse with ``last_edit_highest``, padded with 0.

    Raises:
        TypeError / ValueError: scores is not a 2-D floating tensor of finite values (in [0, 1]
            unless ``from_logits``), the threshold is not a finite real number, or L > length.
    """
    check_scores(scores, "logits" if from_logits else "probs", probabilities=not from_logits)
    is_detected = above_threshold(scores, threshold, from_logits)
    if last_edit_highest or order_scores is not None:
        scores = edit_order_scores(scores, threshold, from_logits=from_logits, last_edit_highest=last_edit_highest,
                                   order_scores=order_scores)
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
