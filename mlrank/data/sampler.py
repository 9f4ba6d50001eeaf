"""Balanced training triplets: a real face, its self-blended pseudo-fake and a fake from the data set.

Each item of :class:`BalancedTriplets` is ``(images [3, 3, H, W], labels, kinds [3])`` with kinds
0 = real, 1 = pseudo-fake, 2 = fake; :func:`collate_triplets` flattens a batch of them.

Labels come in two forms, told apart by their shape:

- Seq-DeepFake: a LongTensor [5] of component ids, zeros for a real image. The pseudo-fake gets all
  zeros, since which components it changed is unknown; ``kinds`` tells the loss to treat it apart.
  Labels of an item are then [3, 5].
- Binary (items ``(image, label, video_id)``, label 0 real, 1 fake): a scalar. The pseudo-fake gets 1:
  for binary detection it is known to be fake, and that is how Self-Blended Images trains.
  Labels of an item are then [3].

Decisions:

- Reals are visited in a seeded permutation per epoch, each once when ``epoch_length`` is the number
  of reals (the default); a longer epoch cycles through fresh permutations. Fakes are drawn the same
  way, without replacement within a pass, so every fake is seen as evenly as the lengths allow.
- Item i's randomness is seeded from (seed, epoch, i) alone, so it does not depend on the DataLoader's
  worker count or on the order items are fetched in.
- The real image and its pseudo-fake get the same weak augmentation (same crop, flip, jitter and blur
  choices), as in Self-Blended Images: the only difference the model can learn between them is the
  blending. The fake gets its own.
- A real index whose label is not real, or a fake index whose label is real, is an error when the
  item is read (the labels are not read up front, which would load every image).

``set_epoch`` must reach the copy of the data set the workers use: with a DataLoader, keep
``persistent_workers=False`` (the default) so each epoch's workers copy the data set anew.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

REAL, PSEUDO_FAKE, FAKE = 0, 1, 2

# Tags that keep the seed streams of the two orders and of the items apart.
_REAL_ORDER, _FAKE_ORDER, _ITEM = 0, 1, 2


def split_real_fake(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the real and of the fake rows of ``labels``.

    ``labels`` is either LongTensor [M, 5] of Seq-DeepFake sequences (real: all zeros) or
    LongTensor [M] of binary labels (real: 0). Returns two LongTensors of row indices, ascending.
    """
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise TypeError(f"labels must be an integer tensor, got dtype {labels.dtype}")
    if labels.dim() not in (1, 2):
        raise ValueError(
            f"labels must be [M] (binary) or [M, 5] (sequences), got shape {tuple(labels.shape)}"
        )
    if (labels < 0).any():
        row = int(torch.nonzero(labels < 0)[0, 0])
        raise ValueError(f"labels must be >= 0; row {row} is {labels[row].tolist()}")
    is_real = (labels == 0) if labels.dim() == 1 else (labels == 0).all(dim=1)
    return torch.nonzero(is_real).flatten(), torch.nonzero(~is_real).flatten()


def default_unpack_item(item: Any) -> tuple[torch.Tensor, Any]:
    """``(image, label)`` from a data set item ``(image, label, ...)``."""
    if not isinstance(item, (tuple, list)) or len(item) < 2:
        raise TypeError(
            f"a data set item must be a tuple (image, label, ...), got {type(item).__name__}; "
            f"pass unpack_item to read another layout"
        )
    return item[0], item[1]


class BalancedTriplets(Dataset):
    """Triplets (real, pseudo-fake of that real, fake) from ``dataset``.

    Args:
        dataset: map-style data set; its items are read by ``unpack_item``. If it has a ``sample(index)``
            method returning an object with ``landmarks`` (K x 2, (x, y) in pixels of the item's
            image), they shape the pseudo-fake's blend region.
        real_indices, fake_indices: dataset indices of real and fake images (see
            :func:`split_real_fake`); disjoint, non-empty.
        strong_augment: ``(image, rng, landmarks=...) -> (pseudo_fake, mask)``, e.g.
            :func:`mlrank.data.augment.self_blended_image`.
        weak_augment: ``(image, rng) -> image`` applied to all three images, or None.
        seed: non-negative integer from which all randomness derives.
        epoch_length: items per epoch; the number of reals by default.
        unpack_item: ``item -> (image, label)``; by default the item's first two entries.
    """

    def __init__(
        self,
        dataset: Dataset,
        real_indices: Sequence[int] | torch.Tensor | np.ndarray,
        fake_indices: Sequence[int] | torch.Tensor | np.ndarray,
        strong_augment: Callable[..., tuple[torch.Tensor, torch.Tensor]],
        weak_augment: Callable[[torch.Tensor, np.random.Generator], torch.Tensor] | None = None,
        seed: int = 0,
        epoch_length: int | None = None,
        *,
        unpack_item: Callable[[Any], tuple[torch.Tensor, Any]] = default_unpack_item,
    ) -> None:
        size = len(dataset)
        self.real_indices = _checked_indices(real_indices, "real_indices", size)
        self.fake_indices = _checked_indices(fake_indices, "fake_indices", size)
        shared = np.intersect1d(self.real_indices, self.fake_indices)
        if shared.size:
            raise ValueError(
                f"real_indices and fake_indices share {shared.size} indices, e.g. {shared[:5].tolist()}"
            )
        if not callable(strong_augment):
            raise TypeError(f"strong_augment must be callable, got {type(strong_augment).__name__}")
        if weak_augment is not None and not callable(weak_augment):
            raise TypeError(f"weak_augment must be callable or None, got {type(weak_augment).__name__}")
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        if epoch_length is None:
            epoch_length = len(self.real_indices)
        if (
            isinstance(epoch_length, bool)
            or not isinstance(epoch_length, numbers.Integral)
            or epoch_length < 1
        ):
            raise ValueError(f"epoch_length must be an integer >= 1 or None, got {epoch_length!r}")

        self.dataset = dataset
        self.strong_augment = strong_augment
        self.weak_augment = weak_augment
        self.seed = int(seed)
        self.epoch_length = int(epoch_length)
        self.unpack_item = unpack_item
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Draw this epoch's order of reals and fakes (a function of ``seed`` and ``epoch`` only)."""
        if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral) or epoch < 0:
            raise ValueError(f"epoch must be an integer >= 0, got {epoch!r}")
        self.epoch = int(epoch)
        self._real_order = self._cycled_permutations(self.real_indices, _REAL_ORDER)
        self._fake_order = self._cycled_permutations(self.fake_indices, _FAKE_ORDER)

    def __len__(self) -> int:
        return self.epoch_length

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if not -self.epoch_length <= i < self.epoch_length:
            raise IndexError(f"item {i} out of range for an epoch of {self.epoch_length} triplets")
        i %= self.epoch_length
        real_index = int(self._real_order[i])
        fake_index = int(self._fake_order[i])
        real_image, real_label = self._read(real_index, expect_real=True)
        fake_image, fake_label = self._read(fake_index, expect_real=False)

        strong_seed, pair_seed, fake_seed = np.random.SeedSequence([self.seed, self.epoch, _ITEM, i]).spawn(3)
        pseudo_fake, _ = self.strong_augment(
            real_image, np.random.default_rng(strong_seed), landmarks=self._landmarks_of(real_index)
        )
        if self.weak_augment is not None:
            # The pair's two generators start from the same state: same choices for both.
            real_image = self.weak_augment(real_image, np.random.default_rng(pair_seed))
            pseudo_fake = self.weak_augment(pseudo_fake, np.random.default_rng(pair_seed))
            fake_image = self.weak_augment(fake_image, np.random.default_rng(fake_seed))

        images = (real_image, pseudo_fake, fake_image)
        if len({tuple(image.shape) for image in images}) != 1:
            raise ValueError(
                f"triplet {i} (real {real_index}, fake {fake_index}) has images of shapes "
                f"{[tuple(image.shape) for image in images]}; give a weak_augment that resizes to one size"
            )
        pseudo_label = torch.ones_like(real_label) if real_label.dim() == 0 else torch.zeros_like(real_label)
        return (
            torch.stack(images),
            torch.stack([real_label, pseudo_label, fake_label]),
            torch.tensor([REAL, PSEUDO_FAKE, FAKE]),
        )

    def _cycled_permutations(self, indices: np.ndarray, tag: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.epoch, tag])
        passes = math.ceil(self.epoch_length / len(indices))
        return np.concatenate([rng.permutation(indices) for _ in range(passes)])[: self.epoch_length]

    def _read(self, index: int, expect_real: bool) -> tuple[torch.Tensor, torch.Tensor]:
        image, label = self.unpack_item(self.dataset[index])
        label = torch.as_tensor(label, dtype=torch.long)
        if bool((label == 0).all()) != expect_real:
            which = "real_indices" if expect_real else "fake_indices"
            kind = "fake" if expect_real else "real"
            raise ValueError(f"{which} holds dataset index {index}, whose label {label.tolist()} is {kind}")
        return image, label

    def _landmarks_of(self, index: int) -> Any:
        sample = getattr(self.dataset, "sample", None)
        return getattr(sample(index), "landmarks", None) if callable(sample) else None


def collate_triplets(
    batch: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flatten B triplets to ``(images [3B, 3, H, W], labels [3B, ...], kinds [3B])``.

    Triplets stay together: rows 3b, 3b + 1, 3b + 2 are the real, pseudo-fake and fake of triplet b.
    """
    if len(batch) == 0:
        raise ValueError("collate_triplets needs at least one triplet")
    images, labels, kinds = zip(*batch)
    return torch.cat(images), torch.cat(labels), torch.cat(kinds)


def _checked_indices(indices: Any, name: str, size: int) -> np.ndarray:
    array = np.asarray(indices.cpu() if isinstance(indices, torch.Tensor) else indices)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence of indices, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{name} must hold integers, got dtype {array.dtype}")
    outside = (array < 0) | (array >= size)
    if outside.any():
        raise ValueError(
            f"{name} holds {int(outside.sum())} indices outside the data set's [0, {size}), "
            f"e.g. {array[outside][:5].tolist()}"
        )
    return array.astype(np.int64)
