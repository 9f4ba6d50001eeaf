"""Pixel standardisation with a backbone's own statistics, shared by both methods' models.

Images travel through the project as [0, 1] tensors (data sets, augmentation, SeeABLE's
discrepancies and predict's heat maps all work in pixel space); a model standardises them as its
first step, (x - mean) / std per RGB channel, with the mean and std of its backbone's timm
``pretrained_cfg`` (ImageNet's where the backbone names none). A pretrained backbone then sees the
statistics it was trained on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch import nn


class Standardize(nn.Module):
    """(x - mean) / std per channel of (B, 3, H, W) images, from a timm ``pretrained_cfg``."""

    def __init__(self, pretrained_cfg: Mapping[str, Any] | None) -> None:
        super().__init__()
        config = pretrained_cfg or {}
        mean = torch.tensor(config.get("mean") or IMAGENET_DEFAULT_MEAN, dtype=torch.float32)
        std = torch.tensor(config.get("std") or IMAGENET_DEFAULT_STD, dtype=torch.float32)
        if mean.shape != (3,) or std.shape != (3,) or not bool((std > 0).all()):
            raise ValueError(f"a backbone's mean and std must be 3 values (std > 0), got {mean.tolist()} and {std.tolist()}")
        # Not persistent: they follow from the backbone's name, not from training.
        self.register_buffer("mean", mean.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", std.view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.mean) / self.std
