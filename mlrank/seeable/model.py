"""SeeABLE's network: a timm encoder, an MLP projector, an l2-normalised embedding z.

The encoder is ``timm.create_model(backbone, num_classes=0)``: the backbone's globally pooled
features, which is what an image-level embedding needs (no feature pyramid). Images come in as
the project's [0, 1] tensors and are standardised inside ``forward`` with the backbone's own
mean and std (its ``pretrained_cfg``), so discrepancies and scores work in pixel space and a
pretrained backbone sees the statistics it was trained on. The projector is
SupCon's head, Linear(C, C) - ReLU - Linear(C, embed_dim). The K fixed prototypes are a
persistent buffer, so they travel with ``state_dict()`` and every checkpoint: a model loaded
from a checkpoint scores against the prototypes it was trained with, whatever its seed.
"""

from __future__ import annotations

import os
from typing import Any

import timm
import torch
import torch.nn.functional as F
from torch import nn

from mlrank.models.backbone import parameter_groups
from mlrank.models.standardize import Standardize

from .prototypes import make_prototypes
from .spec import DiscrepancySpec


def create_encoder(backbone: str, pretrained_file: str | os.PathLike | None = None) -> nn.Module:
    """A timm model giving pooled features (B, C); weights only from a local file, never
    downloaded."""
    if not isinstance(backbone, str) or not timm.is_model(backbone):
        raise ValueError(f"unknown timm backbone {backbone!r}")
    if pretrained_file is None:
        return timm.create_model(backbone, pretrained=False, num_classes=0)
    if not os.path.isfile(pretrained_file):
        raise FileNotFoundError(f"pretrained weights file not found: {pretrained_file}")
    return timm.create_model(
        backbone,
        pretrained=True,
        num_classes=0,
        pretrained_cfg_overlay=dict(file=os.fspath(pretrained_file)),
    )


class SeeableModel(nn.Module):
    """Encoder + projector with K fixed class prototypes.

    Args:
        backbone: timm model name.
        embed_dim: dimension of the embedding z and of the prototypes.
        pretrained_file: local weights for the backbone (timm's ``pretrained_cfg_overlay``).
        num_classes: K, the number of discrepancy classes (``DiscrepancySpec().K`` = 64 by default).
        prototype_seed: seed of :func:`make_prototypes`.
    """

    def __init__(
        self,
        backbone: str = "resnet18",
        embed_dim: int = 128,
        pretrained_file: str | os.PathLike | None = None,
        num_classes: int = DiscrepancySpec().K,
        prototype_seed: int = 0,
    ) -> None:
        super().__init__()
        self.encoder = create_encoder(backbone, pretrained_file)
        features = self.encoder.num_features
        self.projector = nn.Sequential(
            nn.Linear(features, features), nn.ReLU(inplace=True), nn.Linear(features, embed_dim)
        )
        self.register_buffer("prototypes", make_prototypes(num_classes, embed_dim, prototype_seed))
        self.standardize = Standardize(self.encoder.pretrained_cfg)

    @property
    def num_classes(self) -> int:
        return self.prototypes.shape[0]

    @property
    def embed_dim(self) -> int:
        return self.prototypes.shape[1]

    def parameter_groups(
        self, lr: float, backbone_lr_scale: float = 0.1, weight_decay: float = 0.01
    ) -> list[dict[str, Any]]:
        """AdamW groups as the multi-label ranking model gives them: the encoder ("backbone") at
        ``lr * backbone_lr_scale``, the projector ("head") at ``lr``; biases and normalisation
        weights without weight decay. Empty groups are left out."""
        return parameter_groups(self, "encoder.", lr, backbone_lr_scale, weight_decay)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Unit-norm embeddings z (B, embed_dim) of images (B, 3, H, W)."""
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be a (batch, 3, H, W) tensor, got {tuple(images.shape)}")
        return F.normalize(self.projector(self.encoder(self.standardize(images))), dim=1)
