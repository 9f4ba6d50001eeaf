"""Data sets and optimisers from a :class:`mlrank.engine.config.Config`, shared by every method.

One place turns the config into objects, so every method, and train, evaluate and predict, build
exactly the same things (each method builds its own model and training view). Decisions:
- Real data sets are resized to ``data.image_size`` (bilinear, antialiased), a non-square image
  first centred in its square and padded black, as predict does (``mlrank.data.squares``); the
  synthetic set is rendered at that size. ``EpochAugmented`` applies an augmentation with a generator seeded from
  (seed, epoch, index), so an epoch's images do not depend on workers or on a resume.
- The synthetic set's content is seeded by ``data.synthetic_seed``, not the training seed, so runs
  with different training seeds see the same data set.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from mlrank.data import DeepfakeBenchDataset, FrameFolderDataset, SeqDeepFakeDataset, SyntheticSeqDeepFake
from mlrank.data.squares import pad_to_square
from mlrank.engine.config import Config
from mlrank.engine.distributed import is_main_process

SPLITS = ("train", "val", "test")


class Resize:
    """A [3, H, W] image as the model's ``size`` x ``size`` input: centred in its square, padded black
    when it is not square (``mlrank.data.squares``, predict's rule), then resized (a picklable
    transform for workers)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        image = pad_to_square(image)
        if tuple(image.shape[-2:]) == (self.size, self.size):
            return image
        resized = F.interpolate(image[None], size=(self.size, self.size), mode="bilinear", antialias=True)
        return resized[0].clamp(0.0, 1.0)


class EpochAugmented(Dataset):
    """``dataset`` with ``augment(image, rng)`` applied, rng seeded from (seed, epoch, index)."""

    def __init__(self, dataset: Dataset, augment: Any, seed: int) -> None:
        self.dataset, self.augment, self.seed, self.epoch = dataset, augment, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple:
        image, *rest = self.dataset[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        return (self.augment(image, rng), *rest)


def is_binary(cfg: Config) -> bool:
    """Binary detection (L = 1, labels 0/1) rather than Seq-DeepFake's sequences."""
    return cfg.data.kind in ("deepfakebench", "frames")


def build_dataset(cfg: Config, split: str, preload: bool = True) -> Dataset:
    """The un-augmented data set of ``split``, items (image, label[, video_id]).

    The synthetic set is rendered into memory first when ``data.synthetic_in_memory`` and
    ``preload`` are both set (SeeABLE passes False: it renders each face with its masks anyway).
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    data = cfg.data
    resize = Resize(data.image_size)
    if data.kind == "synthetic":
        sizes = {"train": data.synthetic_train_size, "val": data.synthetic_val_size, "test": data.synthetic_test_size}
        dataset = SyntheticSeqDeepFake(
            split, data.subset, size=data.image_size, num_images=sizes[split], seed=data.synthetic_seed
        )
        if data.synthetic_in_memory and preload:
            dataset.preload(data.num_workers, progress=is_main_process(), cache_dir=data.synthetic_cache_dir)
        return dataset
    if data.kind == "deepfakebench":
        name = data.test_dataset_name if split == "test" and data.test_dataset_name else data.dataset_name
        return DeepfakeBenchDataset(
            _required(data.json_path, "data.json_path"),
            _required(name, "data.dataset_name"),
            split,
            root=data.root if data.lmdb_path is not None else _required(data.root, "data.root"),
            compression=data.compression,
            frames_per_video=data.frames_per_video,
            transform=resize,
            json_prefix=data.json_prefix,
            allow_paths_outside_root=data.allow_paths_outside_root,
            frame_selection=data.frame_selection,
            lmdb_path=data.lmdb_path,
        )
    root = _required(data.root, "data.root")
    if data.kind == "seqdeepfake":
        return SeqDeepFakeDataset(
            root, data.subset, split, transform=resize, allow_paths_outside_root=data.allow_paths_outside_root
        )
    if data.kind == "frames":
        return FrameFolderDataset(
            f"{root}/{split}", frames_per_video=data.frames_per_video, transform=resize,
            frame_selection=data.frame_selection,
        )
    raise ValueError(f"unknown data.kind {data.kind!r}")


def _required(value: Any, key: str) -> Any:
    if value is None:
        raise ValueError(f"config key {key!r} must be set for this data set")
    return value


def labels_of(dataset: Dataset) -> torch.Tensor:
    """Sequences [M, 5] (Seq-DeepFake) or labels [M] (binary) without reading images."""
    if hasattr(dataset, "sequences"):
        return dataset.sequences()
    return dataset.labels()


def build_optimizer(
    cfg: Config, model: torch.nn.Module, steps_per_epoch: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW with the backbone's lr scaled down, and a per-step cosine (or constant) schedule."""
    optim = cfg.optim
    groups = model.parameter_groups(optim.lr, optim.backbone_lr_scale, optim.weight_decay)
    optimizer = torch.optim.AdamW(groups, lr=optim.lr, weight_decay=optim.weight_decay)
    total = max(1, optim.epochs * steps_per_epoch)
    warmup = optim.warmup_epochs * steps_per_epoch
    cosine = optim.scheduler == "cosine"

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if not cosine:
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
