"""Training data for SeeABLE: real faces in, (discrepant face, class k) out, k uniform.

Randomness comes from a generator seeded by (seed, epoch, index), not from a generator held by
the object, so that DataLoader workers (which fork copies of the dataset) neither repeat each
other nor depend on scheduling, and a run can be replayed. Call ``set_epoch`` every epoch to get
new discrepancies. Horizontal flips must happen *before* the discrepancy: a flip after it would
move the planted cell to its mirror and contradict the label.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .discrepancies import apply_discrepancy
from .spec import DiscrepancySpec


class SeeableTransform:
    """Turn one real face into a discrepant face and its class k, drawn uniformly from spec.K."""

    def __init__(self, spec: DiscrepancySpec | None = None) -> None:
        self.spec = spec if spec is not None else DiscrepancySpec()

    def __call__(
        self,
        image: torch.Tensor,
        rng: np.random.Generator,
        face_mask: torch.Tensor | np.ndarray | None = None,
    ) -> tuple[torch.Tensor, int]:
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        k = int(rng.integers(self.spec.K))
        discrepant, _ = apply_discrepancy(image, k, self.spec, rng, face_mask)
        return discrepant, k


def image_and_face_mask(item: Any) -> tuple[torch.Tensor, Any]:
    """(image, face_mask or None) from a data set item: a tensor, a mapping with "image" (and
    optionally "face_mask"), or an object with ``.image`` (and optionally ``.face_mask``)."""
    if isinstance(item, torch.Tensor):
        return item, None
    if isinstance(item, Mapping):
        if "image" not in item:
            raise KeyError(f"data set item has no 'image' key; its keys are {sorted(item)}")
        return item["image"], item.get("face_mask")
    if hasattr(item, "image"):
        return item.image, getattr(item, "face_mask", None)
    raise TypeError(
        f"cannot find the image in a data set item of type {type(item).__name__}: expected a "
        "tensor, a mapping with 'image', or an object with .image (or pass read=...)"
    )


class SeeableDataset(Dataset):
    """Real faces of ``base`` as SeeABLE training pairs (discrepant image, class k).

    Args:
        base: the real faces. Item i is read with ``read(base, i)`` if given; otherwise with
            ``base.sample(i)`` when ``base`` has a ``sample`` method (the project's data sets),
            else ``base[i]``, and then unpacked by :func:`image_and_face_mask`.
        spec: the discrepancy classes.
        seed: seed of the draws; item i of epoch e uses ``numpy.random.default_rng([seed, e, i])``.
        read: optional ``read(base, i) -> (image, face_mask or None)``.
    """

    def __init__(
        self,
        base: Any,
        spec: DiscrepancySpec | None = None,
        seed: int = 0,
        read: Callable[[Any, int], tuple[torch.Tensor, Any]] | None = None,
    ) -> None:
        self.base = base
        self.transform = SeeableTransform(spec)
        self.seed = int(seed)
        self.epoch = 0
        self.read = read

    @property
    def spec(self) -> DiscrepancySpec:
        return self.transform.spec

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} is out of range for a data set of {len(self)} images")
        if self.read is not None:
            image, face_mask = self.read(self.base, index)
        elif callable(getattr(self.base, "sample", None)):
            image, face_mask = image_and_face_mask(self.base.sample(index))
        else:
            image, face_mask = image_and_face_mask(self.base[index])
        rng = np.random.default_rng([self.seed, self.epoch, index])
        return self.transform(image, rng, face_mask)
