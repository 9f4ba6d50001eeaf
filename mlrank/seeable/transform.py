"""Training data for SeeABLE: real faces in, (discrepant face, class k) out, k uniform.

SeeABLE never sees a fake in training. :class:`SeeableDataset` therefore keeps only the real
items of a data set that can tell them apart without rendering (one with an ``is_real(i)``
method, like the built-in synthetic set), unless it is given the indices to use.

Randomness comes from a generator seeded by (seed, epoch, index), not from a generator held by
the object, so that DataLoader workers (which fork copies of the dataset) neither repeat each
other nor depend on scheduling, and a run can be replayed. Call ``set_epoch`` every epoch to get
new discrepancies. Horizontal flips must happen *before* the discrepancy: a flip after it would
move the planted cell to its mirror and contradict the label.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
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


def as_image_tensor(image: Any) -> Any:
    """A uint8 (H, W, 3) array (what decoders and ``sample()`` give) as a float (3, H, W) tensor
    in [0, 1]; anything else unchanged, for :func:`apply_discrepancy` to check."""
    is_uint8_rgb = isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3
    if is_uint8_rgb and image.shape[2] == 3:
        return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(255)
    return image


def image_and_face_mask(item: Any) -> tuple[Any, Any]:
    """(image, face_mask or None) from a data set item: a tensor, a tuple or list whose first
    element is the image (the project's data sets give (image, label, ...)), a mapping with
    "image" (and optionally "face_mask"), or an object with ``.image`` (and ``.face_mask``)."""
    if isinstance(item, torch.Tensor):
        return item, None
    if isinstance(item, (tuple, list)) and item:
        return as_image_tensor(item[0]), None
    if isinstance(item, Mapping):
        if "image" not in item:
            raise KeyError(f"data set item has no 'image' key; its keys are {sorted(item)}")
        return as_image_tensor(item["image"]), item.get("face_mask")
    if hasattr(item, "image"):
        return as_image_tensor(item.image), getattr(item, "face_mask", None)
    raise TypeError(
        f"cannot find the image in a data set item of type {type(item).__name__}: expected a "
        "tensor, an (image, ...) tuple, a mapping with 'image', or an object with .image "
        "(or pass read=...)"
    )


class SeeableDataset(Dataset):
    """Real faces of ``base`` as SeeABLE training pairs (discrepant image, class k).

    Args:
        base: the faces. Item j is read with ``read(base, j)`` if given; otherwise with
            ``base.sample(j)`` when ``base`` has a ``sample`` method (the project's data sets,
            whose samples carry ``.face_mask``), else ``base[j]``, and then unpacked by
            :func:`image_and_face_mask`.
        spec: the discrepancy classes.
        seed: seed of the draws; item i of epoch e uses ``numpy.random.default_rng([seed, e, i])``.
        read: optional ``read(base, j) -> (image, face_mask or None)``.
        indices: the items j of ``base`` to use; by default those with ``base.is_real(j)`` when
            ``base`` has that method (then a fake among given indices is an error), else all.
        hflip: mirror the face (image and mask) left-right with probability 1/2, before the
            discrepancy, so that the label still names the cell where it was planted.
    """

    def __init__(
        self,
        base: Any,
        spec: DiscrepancySpec | None = None,
        seed: int = 0,
        read: Callable[[Any, int], tuple[torch.Tensor, Any]] | None = None,
        indices: Sequence[int] | None = None,
        hflip: bool = False,
    ) -> None:
        self.base = base
        is_real = getattr(base, "is_real", None)
        if indices is None:
            indices = range(len(base))
            if callable(is_real):
                indices = [j for j in indices if is_real(j)]
        self.indices = [int(j) for j in indices]
        if not self.indices:
            raise ValueError("SeeableDataset has no face to train on (no real item in base)")
        fakes = [j for j in self.indices if callable(is_real) and not is_real(j)]
        if fakes:
            raise ValueError(f"SeeableDataset takes real faces only; items {fakes[:10]} are fakes")
        self.transform = SeeableTransform(spec)
        self.seed = int(seed)
        self.epoch = 0
        self.read = read
        self.hflip = bool(hflip)

    @property
    def spec(self) -> DiscrepancySpec:
        return self.transform.spec

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} is out of range for a data set of {len(self)} faces")
        item = self.indices[index]
        if self.read is not None:
            image, face_mask = self.read(self.base, item)
            image = as_image_tensor(image)
        elif callable(getattr(self.base, "sample", None)):
            image, face_mask = image_and_face_mask(self.base.sample(item))
        else:
            image, face_mask = image_and_face_mask(self.base[item])
        rng = np.random.default_rng([self.seed, self.epoch, index])
        if self.hflip and rng.random() < 0.5:
            image, face_mask = _mirrored(image, face_mask)
        return self.transform(image, rng, face_mask)


def _mirrored(image: Any, face_mask: Any) -> tuple[Any, Any]:
    # Anything that is not a tensor passes through, for apply_discrepancy to name.
    if isinstance(face_mask, np.ndarray):
        face_mask = torch.from_numpy(face_mask)
    if isinstance(face_mask, torch.Tensor):
        face_mask = face_mask.flip(-1)
    return (image.flip(-1) if isinstance(image, torch.Tensor) else image), face_mask
