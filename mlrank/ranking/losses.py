"""The losses of the paper (docs/method.md sections 3-6), as functions on tensors; their targets y and r
(eqs. 1-2) are the field's, in :mod:`mlrank.task.sequences`.

    L_Total = L_CLS + lambda1 L_BCE + lambda2 L_Rank                       (eq. 15)

Each term has its own switch for ablations (the paper's Table 3, ``python -m mlrank.ablate``):

    L_Total = lambda_cls L_CLS + lambda1 (lambda_bce_patch L_BCE^U + lambda_bce_class L_BCE^V)
              + lambda2 L_Rank

lambda1 stays the paper's joint weight of both BCE terms and multiplies the branch weights.
Beyond the paper, ``lambda_order L_Order`` (default weight 0, so eq. 15 is unchanged) adds a pairwise
ranking term that orders the manipulated components' fused logits as they were edited
(:func:`order_loss`, docs/method.md section 5).
lambda_cls, lambda_bce_patch and lambda_bce_class default to 1, which leaves eq. 15 as it was, bit
for bit (a weight of 1 multiplies exactly). A weight of 0 switches its term off: the term is still
computed and reported, and sends no gradient.

Decisions:
- Reduction: every term is a mean over the samples it applies to, where the paper writes sums over
  the batch; a mean keeps the learning rate independent of the batch size, and one reduction for
  all terms keeps lambda1 and lambda2 meaning what they mean in the paper. Within a sample the BCE
  and rank terms sum over the L components, as eqs. 14 and 18 do.
- Samples whose component labels are unknown (``component_mask`` 0: pseudo-fakes made by the strong
  augmentation) are fakes for L_CLS and are left out of L_BCE and L_Rank, whose mean then runs over
  the labelled samples only (as ``ignore_index`` does in cross-entropy). A real image's labels are
  always known (nothing was manipulated), so J(Y) = 1 when Y is non-empty *or* the mask is 0; the
  sequence given for a masked sample is not read beyond its validity.
- l_MIL clamps P(x) to [1e-6, 1 - 1e-6] so that the log never sees 0 or 1 (P(x) = 0 exactly when all
  similarities are equal); computed in at least float32.
- l_Reg = 1 - mean(u) ("mean", the default) or n (1 - mean(u)) ("sum", eq. 11 as printed), on real
  images only (docs/method.md section 3).
- The rank weights are computed from the fused logits, not from sigmoid(logits): sigmoid(f) rounds
  to 1.0 in float32 for f above about 16.6, so two confident components would tie on P where the
  logits still order them.
- Binary mode is L = 1 (one logit per head): sequences may be (B, T) with id 1 for a fake, or a (B,)
  vector of 0/1 labels; there is no rank loss (docs/method.md section 2).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

import torch
import torch.nn.functional as F

from mlrank.ops import contrastive_mil
from mlrank.ops.validation import check_inputs
from mlrank.ranking.decoding import reverse_edit_order
from mlrank.task.sequences import as_sequences, check_scores, descending_ranks, sequence_targets

PROB_CLAMP = 1e-6
OUTPUT_KEYS = ("tokens", "logits_patch", "logits_class", "logits")
_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _check_weight(value: object, name: str) -> float:
    is_real = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not is_real or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite real number >= 0, got {value!r}")
    return float(value)


def _check_mask(mask: object, batch: int, name: str) -> torch.Tensor:
    """A (B,) mask of 0/1 values (bool or numeric), returned as float."""
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(mask).__name__}")
    if mask.shape != (batch,):
        raise ValueError(f"{name} must have shape ({batch},), got {tuple(mask.shape)}")
    mask = mask.float()
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError(f"{name} must hold only 0 and 1, got {mask.tolist()}")
    return mask


def _masked_batch_mean(per_sample: torch.Tensor, sample_mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over the samples with mask 1 (all when None); 0, still in the graph, when none is."""
    if sample_mask is None:
        return per_sample.mean()
    sample_mask = sample_mask.to(per_sample.device, per_sample.dtype)
    return (per_sample * sample_mask).sum() / sample_mask.sum().clamp(min=1)


def rank_weights(probs: torch.Tensor, sequences: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """Weights w_i of the rank loss (eq. 13, docs/method.md section 5), without gradient.

    o_i ranks ``probs`` in non-increasing order (1 = largest), ties to the lower component index
    first; with |Y| the number of manipulated components:

        w_i = alpha               if i not in Y and o_i > |Y|
        w_i = alpha |o_i - r_i|   otherwise

    Args:
        probs: (B, L) fused scores: pass the logits (as :func:`rank_loss` does), which give the
            probabilities' ranks without the ties of a saturated sigmoid.
        sequences: (B, T) ground-truth sequences (see :func:`mlrank.task.sequences.sequence_targets`).
        alpha: scale, >= 0.

    Returns:
        (B, L) tensor in the dtype of ``probs``, detached.
    """
    check_scores(probs, "probs", probabilities=False)
    alpha = _check_weight(alpha, "alpha")
    batch, num_components = probs.shape
    labels, ranks = sequence_targets(sequences, num_components)
    if labels.shape[0] != batch:
        raise ValueError(f"probs has {batch} rows but sequences has {labels.shape[0]}")
    with torch.no_grad():
        labels, ranks = labels.to(probs.device), ranks.to(probs.device)
        order = descending_ranks(probs)
        num_manipulated = labels.sum(dim=1, keepdim=True)
        untouched_and_low = (labels == 0) & (order > num_manipulated)
        misranked = alpha * (order - ranks).abs().to(probs.dtype)
        return torch.where(untouched_and_low, torch.full_like(misranked, alpha), misranked)


def cls_loss(
    tokens: torch.Tensor,
    is_fake: torch.Tensor,
    tau: float = 0.2,
    num_k: int | None = None,
    reg: str = "mean",
) -> tuple[torch.Tensor, torch.Tensor]:
    """L_CLS (eqs. 10-12): contrastive MIL on the normalised patch tokens, mean over the batch.

    Args:
        tokens: (B, N, d) patch tokens after the encoder, rows already l2-normalised (checked).
        is_fake: (B,) J(Y): bool or 0/1.
        tau: temperature of the MIL score.
        num_k: None for the exact max over every k; an int for the paper's sampled k (100).
        reg: "mean" (l_Reg = 1 - mean u) or "sum" (l_Reg = n (1 - mean u), eq. 11 as printed).

    Returns:
        loss: scalar, mean over the batch of l_MIL + (1 - J) l_Reg.
        prob: (B,) P(x), the MIL probability of being fake.
    """
    if reg not in ("mean", "sum"):
        raise ValueError(f'reg must be "mean" or "sum", got {reg!r}')
    check_inputs(tokens, tau, num_k)
    _check_unit_rows(tokens)
    fake = _check_mask(is_fake, tokens.shape[0], "is_fake").to(tokens.device)
    prob, _, u_mean = contrastive_mil(tokens, tau, num_k)
    if prob.dtype in _LOW_PRECISION:
        prob, u_mean = prob.float(), u_mean.float()
    clamped = prob.clamp(PROB_CLAMP, 1 - PROB_CLAMP)
    mil = -(fake * clamped.log() + (1 - fake) * (-clamped).log1p())  # eq. 10
    num_tokens = tokens.shape[1]
    regularizer = 1 - u_mean  # eq. 11 divided by n
    if reg == "sum":
        regularizer = regularizer * (num_tokens * (num_tokens - 1) // 2)
    return (mil + (1 - fake) * regularizer).mean(), prob


def _check_unit_rows(tokens: torch.Tensor) -> None:
    tolerance = 1e-2 if tokens.dtype in _LOW_PRECISION else 1e-3
    norms = tokens.detach().float().norm(dim=-1)
    worst = (norms - 1).abs().max().item()
    if not worst <= tolerance:  # also catches NaN
        raise ValueError(
            f"tokens must be l2-normalised along the last dimension (|row| = 1), but a row norm "
            f"differs from 1 by {worst:.3g}; apply torch.nn.functional.normalize(tokens, dim=-1)"
        )


def _branch_bce(
    logits_patch: torch.Tensor, logits_class: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B,) BCE of each head, summed over the L components, after checking the inputs."""
    check_scores(logits_patch, "logits_patch", probabilities=False)
    check_scores(logits_class, "logits_class", probabilities=False)
    if logits_class.shape != logits_patch.shape:
        raise ValueError(
            f"logits_patch and logits_class must have the same shape, got "
            f"{tuple(logits_patch.shape)} and {tuple(logits_class.shape)}"
        )
    if not isinstance(y, torch.Tensor) or y.shape != logits_patch.shape:
        shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"y must be a tensor of shape {tuple(logits_patch.shape)}, got {shape}")
    check_scores(y.to(logits_patch.dtype), "y")
    y = y.to(logits_patch.device, logits_patch.dtype)
    return (
        F.binary_cross_entropy_with_logits(logits_patch, y, reduction="none").sum(dim=1),
        F.binary_cross_entropy_with_logits(logits_class, y, reduction="none").sum(dim=1),
    )


def bce_loss(
    logits_patch: torch.Tensor,
    logits_class: torch.Tensor,
    y: torch.Tensor,
    sample_mask: torch.Tensor | None = None,
    *,
    patch_weight: float = 1.0,
    class_weight: float = 1.0,
) -> torch.Tensor:
    """L_BCE = L_BCE^U + L_BCE^V (eqs. 16-18): BCE of both heads, summed over the L components.

    Args:
        logits_patch, logits_class: (B, L) logits f^U and f^V.
        y: (B, L) multi-label targets in [0, 1] (see :func:`mlrank.task.sequences.sequence_targets`).
        sample_mask: optional (B,) 0/1; the mean runs over the samples with 1.
        patch_weight, class_weight: weights of L_BCE^U and L_BCE^V (1 and 1: eq. 18).

    Returns:
        Scalar, mean over the (unmasked) samples.
    """
    patch_weight = _check_weight(patch_weight, "patch_weight")
    class_weight = _check_weight(class_weight, "class_weight")
    patch, klass = _branch_bce(logits_patch, logits_class, y)
    if sample_mask is not None:
        sample_mask = _check_mask(sample_mask, y.shape[0], "sample_mask")
    return _masked_batch_mean(patch_weight * patch + class_weight * klass, sample_mask)


def rank_loss(
    logits_fused: torch.Tensor,
    sequences: torch.Tensor,
    alpha: float = 1.0,
    sample_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """L_Rank (eq. 14): sum_i w_i BCE(P_i, y_i) on the fused logits, w from :func:`rank_weights`.

    Args:
        logits_fused: (B, L) fused logits f, L >= 2 (there is no rank loss in binary mode).
        sequences: (B, T) ground-truth sequences.
        alpha: rank weight scale.
        sample_mask: optional (B,) 0/1; the mean runs over the samples with 1.

    Returns:
        Scalar, mean over the (unmasked) samples.
    """
    check_scores(logits_fused, "logits_fused", probabilities=False)
    if logits_fused.shape[1] < 2:
        raise ValueError("rank_loss needs L >= 2 components; binary mode (L = 1) has no rank loss")
    weights = rank_weights(logits_fused, sequences, alpha)
    labels, _ = sequence_targets(sequences, logits_fused.shape[1])
    if sample_mask is not None:
        sample_mask = _check_mask(sample_mask, labels.shape[0], "sample_mask")
    labels = labels.to(logits_fused.device, logits_fused.dtype)
    bce = F.binary_cross_entropy_with_logits(logits_fused, labels, reduction="none")
    return _masked_batch_mean((weights * bce).sum(dim=1), sample_mask)


def order_loss(
    logits_fused: torch.Tensor,
    sequences: torch.Tensor,
    sample_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """L_Order, beyond the paper: a pairwise logistic ranking term over the manipulated components.

    For every pair (a, b) of components with a edited before b (r_a < r_b, both in Y), the earlier
    edit's fused logit should be the larger, as decoding orders by decreasing logit:

        l_Order = sum over such pairs of softplus(f_b - f_a) = -log sigmoid(f_a - f_b)

    Images with fewer than two edits contribute 0. Unlike eq. 14's weighted BCE, which pushes every
    manipulated component towards 1 whatever its rank, this term can push an over-ranked component
    down relative to an earlier one (docs/method.md section 5).

    Args:
        logits_fused: (B, L) fused logits f, L >= 2.
        sequences: (B, T) ground-truth sequences.
        sample_mask: optional (B,) 0/1; the mean runs over the samples with 1.

    Returns:
        Scalar, mean over the (unmasked) samples of the per-image sum over ordered pairs.
    """
    check_scores(logits_fused, "logits_fused", probabilities=False)
    if logits_fused.shape[1] < 2:
        raise ValueError("order_loss needs L >= 2 components; binary mode (L = 1) has no order")
    labels, ranks = sequence_targets(sequences, logits_fused.shape[1])
    if labels.shape[0] != logits_fused.shape[0]:
        raise ValueError(f"logits_fused has {logits_fused.shape[0]} rows but sequences has {labels.shape[0]}")
    if sample_mask is not None:
        sample_mask = _check_mask(sample_mask, labels.shape[0], "sample_mask")
    labels, ranks = labels.to(logits_fused.device), ranks.to(logits_fused.device)
    manipulated = labels > 0
    # earlier[b, a, c]: a and c both edited, a before c.
    earlier = manipulated.unsqueeze(2) & manipulated.unsqueeze(1) & (ranks.unsqueeze(2) < ranks.unsqueeze(1))
    margins = logits_fused.unsqueeze(2) - logits_fused.unsqueeze(1)  # f_a - f_c
    per_sample = (F.softplus(-margins) * earlier).sum(dim=(1, 2))
    return _masked_batch_mean(per_sample, sample_mask)


def count_loss(
    count_logits: torch.Tensor,
    sequences: torch.Tensor,
    sample_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """L_Count, beyond the paper: cross-entropy of the count head's (B, L + 1) scores against the
    number of edited components (0..L), averaged over the (unmasked) samples."""
    check_scores(count_logits, "count_logits", probabilities=False)
    labels, _ = sequence_targets(sequences, count_logits.shape[1] - 1)
    if labels.shape[0] != count_logits.shape[0]:
        raise ValueError(f"count_logits has {count_logits.shape[0]} rows but sequences has {labels.shape[0]}")
    if sample_mask is not None:
        sample_mask = _check_mask(sample_mask, labels.shape[0], "sample_mask")
    counts = labels.to(count_logits.device).sum(dim=1).long()
    return _masked_batch_mean(F.cross_entropy(count_logits, counts, reduction="none"), sample_mask)


def total_loss(
    outputs: Mapping[str, torch.Tensor],
    sequences: torch.Tensor,
    lambda1: float = 1.0,
    lambda2: float = 1.0,
    tau: float = 0.2,
    alpha: float = 1.0,
    num_k: int | None = None,
    reg: str = "mean",
    component_mask: torch.Tensor | None = None,
    *,
    lambda_cls: float = 1.0,
    lambda_bce_patch: float = 1.0,
    lambda_bce_class: float = 1.0,
    lambda_order: float = 0.0,
    lambda_count: float = 1.0,
    last_edit_highest: bool = False,
) -> dict[str, torch.Tensor]:
    """L_Total = lambda_cls L_CLS + lambda1 (lambda_bce_patch L_BCE^U + lambda_bce_class L_BCE^V)
    + lambda2 L_Rank: eq. 15 with every weight at its default 1 (module docstring).

    Args:
        outputs: the model's outputs: "tokens" (B, N, d) normalised patch tokens after the
            encoder, "logits_patch", "logits_class" and "logits" (fused), each (B, L); with an
            order head also "order_scores" (B, L), which L_Order then ranks instead of the logits.
        sequences: (B, T) ground-truth sequences; in binary mode (L = 1) also (B,) 0/1 labels.
        lambda1, lambda2: weights of L_BCE (both branches) and L_Rank.
        tau, num_k, reg: see :func:`cls_loss`.
        alpha: see :func:`rank_weights`.
        component_mask: optional (B,) 0/1, 0 for samples whose components are unknown
            (pseudo-fakes): fakes for L_CLS, left out of L_BCE and L_Rank.
        lambda_cls: weight of L_CLS.
        lambda_bce_patch, lambda_bce_class: weights of L_BCE^U and L_BCE^V inside L_BCE.
        lambda_order: weight of L_Order (:func:`order_loss`), beyond the paper; 0 leaves eq. 15.
        lambda_count: weight of L_Count (:func:`count_loss`), beyond the paper, which trains a count
            head; it applies only to outputs with "count_logits".
        last_edit_highest: L_Rank and L_Order rank the most recent edit highest (the rank targets
            of the reversed sequences), for a model decoded that way (``model.last_edit_highest``,
            docs/method.md section 5); False is the paper's order, the first edit highest.

    Returns:
        {"cls", "bce", "bce_patch", "bce_class", "rank", "order", "total"}, and "count" for a
        model with a count head: scalar tensors. Each
        term is unweighted except "bce", which is lambda_bce_patch "bce_patch" + lambda_bce_class
        "bce_class" (the paper's L_BCE with the default weights); "total" is the weighted sum.
        "rank" and "order" are absent when L = 1.
    """
    if not isinstance(outputs, Mapping):
        raise TypeError(f"outputs must be a dict, got {type(outputs).__name__}")
    missing = [key for key in OUTPUT_KEYS if key not in outputs]
    if missing:
        raise ValueError(f"outputs is missing key(s) {missing}; expected {list(OUTPUT_KEYS)}")
    lambda1 = _check_weight(lambda1, "lambda1")
    lambda2 = _check_weight(lambda2, "lambda2")
    lambda_cls = _check_weight(lambda_cls, "lambda_cls")
    lambda_bce_patch = _check_weight(lambda_bce_patch, "lambda_bce_patch")
    lambda_bce_class = _check_weight(lambda_bce_class, "lambda_bce_class")
    lambda_order = _check_weight(lambda_order, "lambda_order")
    lambda_count = _check_weight(lambda_count, "lambda_count")
    tokens, logits = outputs["tokens"], outputs["logits"]
    check_scores(logits, "outputs['logits']", probabilities=False)
    batch, num_components = logits.shape
    if not isinstance(tokens, torch.Tensor) or tokens.dim() != 3 or tokens.shape[0] != batch:
        shape = tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__
        raise ValueError(f"outputs['tokens'] must be ({batch}, N, d) to match the logits, got {shape}")
    for key in ("logits_patch", "logits_class", *(("order_scores",) if "order_scores" in outputs else ())):
        if not isinstance(outputs[key], torch.Tensor) or outputs[key].shape != logits.shape:
            raise ValueError(
                f"outputs[{key!r}] must have the shape of outputs['logits'], {tuple(logits.shape)}"
            )

    labels, _ = sequence_targets(sequences, num_components)
    if labels.shape[0] != batch:
        raise ValueError(
            f"sequences has {labels.shape[0]} rows but the outputs have batch size {batch}"
        )
    mask = None if component_mask is None else _check_mask(component_mask, batch, "component_mask")
    is_fake = labels.sum(dim=1) > 0
    if mask is not None:
        is_fake |= mask.to(is_fake.device) == 0

    terms = {"cls": cls_loss(tokens, is_fake, tau, num_k, reg)[0]}
    patch, klass = _branch_bce(outputs["logits_patch"], outputs["logits_class"], labels)
    terms["bce"] = _masked_batch_mean(lambda_bce_patch * patch + lambda_bce_class * klass, mask)
    terms["bce_patch"] = _masked_batch_mean(patch, mask)
    terms["bce_class"] = _masked_batch_mean(klass, mask)
    total = lambda_cls * terms["cls"] + lambda1 * terms["bce"]
    if num_components > 1:
        ranked = reverse_edit_order(as_sequences(sequences, num_components)) if last_edit_highest else sequences
        terms["rank"] = rank_loss(logits, ranked, alpha, mask)
        total = total + lambda2 * terms["rank"]
        # With an order head (outputs["order_scores"]) L_Order trains it, and the logits only detect.
        terms["order"] = order_loss(outputs.get("order_scores", logits), ranked, mask)
        if lambda_order:  # off: eq. 15 exactly, not eq. 15 + 0 * L_Order
            total = total + lambda_order * terms["order"]
        if "count_logits" in outputs:
            if outputs["count_logits"].shape != (batch, num_components + 1):
                raise ValueError(f"outputs['count_logits'] must be ({batch}, {num_components + 1}): scores of 0..L edits")
            terms["count"] = count_loss(outputs["count_logits"], sequences, mask)
            total = total + lambda_count * terms["count"]
    terms["total"] = total
    return terms
