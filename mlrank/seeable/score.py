"""SeeABLE's anomaly score: how badly the model recognises discrepancies planted in a face.

    score(x) = (1 / K) sum_k (1 - z(sd_k(x)) . p_k)

Every one of the K discrepancies is applied to the test face, each drawn from
``numpy.random.default_rng([seed, k])``: the same parameters for every image and every call, so
a face's score depends neither on its batch nor on the call, and the same input gives the same
score bit for bit on the CPU. Scores lie in [0, 2]; higher means more anomalous (more likely
fake). The model runs in eval mode (its previous mode is restored) without gradients, and the
mean over k is taken in float64.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from .discrepancies import apply_discrepancy
from .spec import DiscrepancySpec


# None, one (B, H, W) bool tensor or array, or one mask (or None) per image.
FaceMasks = torch.Tensor | np.ndarray | Sequence[torch.Tensor | np.ndarray | None] | None


def _face_masks_per_image(face_masks: object, batch: int) -> Sequence[object]:
    if face_masks is None:
        return [None] * batch
    if isinstance(face_masks, (torch.Tensor, np.ndarray)):
        if face_masks.ndim != 3 or face_masks.shape[0] != batch:
            raise ValueError(
                f"face_masks must have shape ({batch}, H, W), got {tuple(face_masks.shape)}"
            )
        return list(face_masks)
    if isinstance(face_masks, Sequence) and len(face_masks) == batch:
        return face_masks
    raise ValueError(
        f"face_masks must be None, a ({batch}, H, W) bool tensor or a sequence of {batch} masks"
    )


@torch.no_grad()
def discrepancy_similarities(
    model: nn.Module,
    images: torch.Tensor,
    spec: DiscrepancySpec,
    seed: int = 0,
    face_masks: FaceMasks = None,
) -> torch.Tensor:
    """Cosines (B, K, K), float32 on the CPU: entry [b, k, j] is z(sd_k(x_b)) . p_j.

    The diagonal gives the anomaly score; the argmax over j says which class the model
    recognises in sd_k(x_b) (on real faces, the pretext task's accuracy). Arguments as for
    :func:`anomaly_score`.
    """
    prototypes = getattr(model, "prototypes", None)
    if not isinstance(prototypes, torch.Tensor) or prototypes.dim() != 2:
        raise TypeError("model must hold a (K, dim) tensor `prototypes` (a SeeableModel)")
    if prototypes.shape[0] != spec.K:
        raise ValueError(
            f"the model has {prototypes.shape[0]} prototypes but the spec has K = {spec.K}"
        )
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.dim() != 4 or images.shape[1] != 3 or images.shape[0] < 1:
        raise ValueError(
            f"images must be a non-empty (batch, 3, H, W) tensor, got {tuple(images.shape)}"
        )
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    seed = int(seed)
    masks = _face_masks_per_image(face_masks, images.shape[0])

    was_training = model.training
    model.eval()
    try:
        per_class = []
        for k in range(spec.K):
            # A fresh generator per image: every face gets the same k-th discrepancy.
            discrepant = torch.stack(
                [
                    apply_discrepancy(image, k, spec, np.random.default_rng([seed, k]), mask)[0]
                    for image, mask in zip(images, masks)
                ]
            )
            z = model(discrepant.to(prototypes.device))
            per_class.append((z.float() @ prototypes.float().T).cpu())
    finally:
        model.train(was_training)
    return torch.stack(per_class, dim=1)


def anomaly_score(
    model: nn.Module,
    images: torch.Tensor,
    spec: DiscrepancySpec,
    seed: int = 0,
    face_masks: FaceMasks = None,
) -> torch.Tensor:
    """Anomaly scores (B,), float32 on the CPU, of images (B, 3, H, W) in [0, 1].

    ``model`` maps images to unit embeddings and holds ``prototypes`` (K, D) with K = spec.K
    (a :class:`~mlrank.seeable.model.SeeableModel`). ``face_masks``: None (centred face ellipse
    for all), a bool (B, H, W) tensor or array, or one mask or None per image.
    """
    return score_from_similarities(discrepancy_similarities(model, images, spec, seed, face_masks))


def score_from_similarities(similarities: torch.Tensor) -> torch.Tensor:
    """mean_k (1 - similarities[:, k, k]), summed in float64, as float32."""
    own = torch.diagonal(similarities, dim1=1, dim2=2).double()
    return (1 - own).mean(dim=1).float()
