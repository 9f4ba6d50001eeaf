"""SeeABLE's losses on normalised embeddings z (B, D), labels in [0, K) and prototypes (K, D).

    L = L_BCR + lambda L_GUI,    L_BCR = L_SupCon + L_proto

* L_SupCon: supervised contrastive loss (Khosla et al. 2020, the "L_out" form, eq. 2): for each
  anchor i with positives P(i) (other samples of its class),
  -1/|P(i)| sum_{p in P(i)} log(exp(z_i.z_p / t) / sum_{a != i} exp(z_i.z_a / t)),
  averaged over the anchors that have a positive. Anchors without one are left out of the mean
  (their term would be 0/0); a batch with no positive pair at all gives 0. No base-temperature
  rescaling (SeeABLE's t / t_base is 0.07 / 0.07 = 1).
* L_proto: the regressive pull of each z to its class prototype, cross entropy of the logits
  z.p_k / t over all K prototypes: bounded below by the prototypes' fixed geometry.
* L_GUI: mean over the batch of w_i (1 - z_i.p_{y_i}), w_i a constant set by facial geometry
  from the nearest prototype's cell and the true cell (see :func:`guidance_weights`).

The papers leave open how SupCon and the prototype pull are combined (SeeABLE's code puts the
prototype into SupCon's self-similarity slot); here they are two terms with equal weight, one
temperature for both (default 0.07, SeeABLE's setting).
"""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F

from .spec import DiscrepancySpec

DEFAULT_TEMPERATURE = 0.07
DEFAULT_LAMBDA_GUI = 1.0
SAME_CELL_WEIGHT = 2.0**-2
MIRROR_CELL_WEIGHT = 2.0**-1


def _check_temperature(temperature: object) -> float:
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
        raise TypeError(f"temperature must be a real number, got {type(temperature).__name__}")
    temperature = float(temperature)
    if not math.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
    return temperature


def _check_embeddings(z: object, labels: object) -> None:
    if not isinstance(z, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise TypeError("z and labels must be torch.Tensors")
    if not z.is_floating_point() or z.dim() != 2 or z.shape[0] < 1:
        raise ValueError(
            f"z must be a non-empty floating (batch, dim) tensor, got {z.dtype} {tuple(z.shape)}"
        )
    if labels.dtype not in (torch.int64, torch.int32) or labels.dim() != 1:
        raise TypeError(
            f"labels must be a 1-D int64 or int32 tensor, got {labels.dtype} {tuple(labels.shape)}"
        )
    if labels.shape[0] != z.shape[0]:
        raise ValueError(f"z has {z.shape[0]} rows but labels has {labels.shape[0]} entries")


def _check_prototypes(z: torch.Tensor, labels: torch.Tensor, prototypes: object) -> None:
    if not isinstance(prototypes, torch.Tensor) or prototypes.dim() != 2:
        raise ValueError("prototypes must be a (K, dim) tensor")
    if prototypes.shape[1] != z.shape[1]:
        raise ValueError(f"prototypes have dim {prototypes.shape[1]} but z has dim {z.shape[1]}")
    if labels.numel() and (labels.min() < 0 or labels.max() >= prototypes.shape[0]):
        raise ValueError(
            f"labels must be in [0, {prototypes.shape[0]}), got values in "
            f"[{int(labels.min())}, {int(labels.max())}]"
        )


def supcon_loss(
    z: torch.Tensor, labels: torch.Tensor, temperature: float = DEFAULT_TEMPERATURE
) -> torch.Tensor:
    """Supervised contrastive loss L_out over the batch (see module docs), a scalar."""
    _check_embeddings(z, labels)
    temperature = _check_temperature(temperature)
    batch = z.shape[0]
    is_self = torch.eye(batch, dtype=torch.bool, device=z.device)
    logits = (z @ z.T / temperature).masked_fill(is_self, -math.inf)
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positive = (labels[:, None] == labels[None, :]) & ~is_self
    positives_per_anchor = positive.sum(dim=1)
    has_positive = positives_per_anchor > 0
    if not has_positive.any():
        return (z * 0).sum()  # zero, but still part of the graph so backward() works
    positive_log_prob = log_prob.masked_fill(~positive, 0).sum(dim=1)
    per_anchor = -positive_log_prob[has_positive] / positives_per_anchor[has_positive]
    return per_anchor.mean()


def prototype_ce_loss(
    z: torch.Tensor,
    labels: torch.Tensor,
    prototypes: torch.Tensor,
    temperature: float = DEFAULT_TEMPERATURE,
) -> torch.Tensor:
    """Cross entropy of the logits z.p_k / temperature against the true class, batch mean."""
    _check_embeddings(z, labels)
    _check_prototypes(z, labels, prototypes)
    temperature = _check_temperature(temperature)
    return F.cross_entropy(z @ prototypes.T.to(z.dtype) / temperature, labels.long())


def guidance_weights(
    pred_k: torch.Tensor, true_k: torch.Tensor, spec: DiscrepancySpec
) -> torch.Tensor:
    """Geometry weights of L_GUI, float32 with the shape of the inputs.

    2^-2 when the predicted class's cell is the true cell (whatever the type), 2^-1 when it is
    the true cell's left-right mirror, otherwise the Euclidean distance between the two cells in
    grid units (>= 1, so every other cell costs more than the mirror). Distances are not
    normalised by the grid's size: that would push adjacent cells below the mirror's 2^-1.
    """
    if not isinstance(pred_k, torch.Tensor) or not isinstance(true_k, torch.Tensor):
        raise TypeError("pred_k and true_k must be torch.Tensors")
    if pred_k.shape != true_k.shape:
        raise ValueError(
            f"pred_k {tuple(pred_k.shape)} and true_k {tuple(true_k.shape)} differ in shape"
        )
    for name, classes in (("pred_k", pred_k), ("true_k", true_k)):
        if classes.is_floating_point() or classes.dtype == torch.bool:
            raise TypeError(f"{name} must be an integer tensor, got {classes.dtype}")
        if classes.numel() and (classes.min() < 0 or classes.max() >= spec.K):
            raise ValueError(
                f"{name} must be in [0, {spec.K}), "
                f"got values in [{int(classes.min())}, {int(classes.max())}]"
            )
    pred_row, pred_col = _cell_of(pred_k, spec)
    true_row, true_col = _cell_of(true_k, spec)
    same = (pred_row == true_row) & (pred_col == true_col)
    mirror = (pred_row == true_row) & (pred_col == spec.cols - 1 - true_col)
    distance = torch.sqrt(((pred_row - true_row) ** 2 + (pred_col - true_col) ** 2).float())
    return torch.where(same, SAME_CELL_WEIGHT, torch.where(mirror, MIRROR_CELL_WEIGHT, distance))


def _cell_of(classes: torch.Tensor, spec: DiscrepancySpec) -> tuple[torch.Tensor, torch.Tensor]:
    location = classes.long() // spec.num_types
    return location // spec.cols, location % spec.cols


def guidance_loss(
    z: torch.Tensor, labels: torch.Tensor, prototypes: torch.Tensor, spec: DiscrepancySpec
) -> torch.Tensor:
    """L_GUI: batch mean of guidance_weights(nearest prototype, label) * (1 - z.p_label)."""
    _check_embeddings(z, labels)
    _check_prototypes(z, labels, prototypes)
    if prototypes.shape[0] != spec.K:
        raise ValueError(
            f"there are {prototypes.shape[0]} prototypes but the spec has K = {spec.K}"
        )
    prototypes = prototypes.to(z.dtype)
    similarities = z @ prototypes.T
    nearest = similarities.detach().argmax(dim=1)  # the weights are constants, as in L_Rank
    weights = guidance_weights(nearest, labels, spec).to(z.dtype)
    true_similarity = similarities.gather(1, labels.long()[:, None]).squeeze(1)
    return (weights * (1 - true_similarity)).mean()


def seeable_loss(
    z: torch.Tensor,
    labels: torch.Tensor,
    prototypes: torch.Tensor,
    spec: DiscrepancySpec,
    temperature: float = DEFAULT_TEMPERATURE,
    lambda_gui: float = DEFAULT_LAMBDA_GUI,
) -> dict[str, torch.Tensor]:
    """All terms: "supcon", "prototype_ce", "bcr" (their sum), "guidance" and
    "total" = bcr + lambda_gui * guidance."""
    is_number = isinstance(lambda_gui, numbers.Real) and not isinstance(lambda_gui, bool)
    if not is_number or not lambda_gui >= 0:
        raise ValueError(f"lambda_gui must be a number >= 0, got {lambda_gui!r}")
    supcon = supcon_loss(z, labels, temperature)
    prototype_ce = prototype_ce_loss(z, labels, prototypes, temperature)
    guidance = guidance_loss(z, labels, prototypes, spec)
    bcr = supcon + prototype_ce
    return {
        "supcon": supcon,
        "prototype_ce": prototype_ce,
        "bcr": bcr,
        "guidance": guidance,
        "total": bcr + float(lambda_gui) * guidance,
    }
