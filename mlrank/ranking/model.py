"""The multi-label ranking model of Hong, Hsu and Liu (CVPR 2024), docs/method.md section 2.

    images -> backbone levels -> FPN map (d, h, w) -> 1x1 projection to d -> N = h w tokens
    -> rows l2-normalised (optional) = U;  append L class tokens V;  encoder layer phi -> (U~, V~)
    patch branch: U~ as an h x w map -> 1x1 conv to L logit maps -> average pool -> f^U (L)
    class branch: V~_i -> LayerNorm -> its own linear -> f^V_i
    fused: f = (f^U + f^V) / 2

Decisions (the paper leaves these open):

* phi is pre-norm (``norm_first=True``): its output is the input plus the attention and MLP
  updates, so the CNN tokens reach L_CLS through the residual path and L_CLS reaches the
  backbone the same way. (At PyTorch's default initialisation those updates are not small: with
  normalised input about 3x (attention) and 1.7x (MLP) the unit token norm, and the near-uniform
  attention mixes every token with the average of all of them; zero-initialising the updates did
  not change what the synthetic run learns.)
  A post-norm layer would end in a LayerNorm that re-centres every token before L_CLS sees it.
  Feed-forward width 4d and GELU, as in ViT.
* The patch tokens get a learnable positional embedding at the encoder input, so that class tokens
  can tell where a component sits. It is stored for the grid of ``img_size`` (else of the
  backbone's fixed input size, else of 224 x 224), bicubically resampled to other grids (as timm
  does for ViTs), and starts at zero so that the encoder at initialisation sees the tokens
  exactly as the CNN made them.
* Class tokens start with norm ~1 (normal, std 1/sqrt(d)), the scale of the patch tokens.
* ``tokens`` (what L_CLS consumes) are the encoder's patch outputs U~, l2-normalised as eq. 4
  needs. The patch branch convolves U~ itself, before that normalisation, into one logit map per
  component (a 1x1 convolution), and averages each map over the patches. Class tokens pass a
  final LayerNorm first, as a pre-norm transformer's output does before its head.
* ``normalize_patch_tokens`` (default True, the paper's U) can be turned off to feed the encoder
  the projected FPN tokens as they are. On the built-in synthetic set (resnet10t from scratch,
  64x64 images) the normalisation slows the learning of the components in every pairing tried,
  most under the paper's loss (docs/method.md section 2). Scale is not the reason: normalised rows
  scaled up by sqrt(d) learnt more slowly still. The likely reason is that the normalisation
  discards how strongly each patch responds. An earlier patch branch (3x3 conv to d channels, BN,
  ReLU, average pool, linear, on the normalised U~) did not learn in any configuration tried. The
  real-data configs keep the paper's normalisation.
* ``dropout`` is the encoder layer's dropout (attention and MLP).
* Binary detection is ``num_classes=1``: the same model with one logit per branch.
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mlrank.data.vocab import SEQUENCE_LENGTH
from mlrank.models.backbone import create_backbone, parameter_groups
from mlrank.models.fpn import FPN, init_conv
from mlrank.models.standardize import Standardize
from mlrank.ranking.decoding import distinct_sequences

DEFAULT_IMG_SIZE = 224


class HighPassChannels(nn.Module):
    """(B, 3, H, W) -> (B, 6, H, W): the image, then its residual from a 3x3 mean, batch-normalised.

    Edits leave their traces at the finest scale (seams, resampling, a generator's periodic
    fingerprint), the scale a strided stem sees least of; the residual removes the image content
    that dwarfs them, as forensic detectors' fixed SRM filters do. The BatchNorm gives the
    residual unit scale, whatever the images' contrast.
    """

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(3)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        local_mean = F.avg_pool2d(F.pad(images, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
        return torch.cat([images, self.norm(images - local_mean)], dim=1)


class MultiLabelRankingModel(nn.Module):
    """Backbone + FPN + one transformer encoder layer + patch and class branches.

    Args:
        backbone: a timm architecture name (``resnet50``, ``resnet34``, a Swin, ...).
        num_classes: L, the number of components (or attributes); 1 for binary detection.
        token_dim: d, the width of tokens (and of the FPN).
        out_stride: input pixels per token side; must be a feature stride of the backbone.
        max_stride: the coarsest backbone stride the FPN merges; the stages past it are not built.
            None merges every stride from ``out_stride`` on.
        num_heads: attention heads of the encoder layer; must divide ``token_dim``.
        pretrained_file: local weights of the backbone (see :func:`create_backbone`); None for a
            random initialisation. Nothing is downloaded.
        img_size: input size; required at creation by fixed-size backbones (Swin), and the grid of
            the stored positional embedding.
        dropout: dropout of the encoder layer.
        normalize_patch_tokens: l2-normalise the rows of U at the encoder input, as the paper
            does; False feeds the encoder the projected FPN tokens as they are (the tokens L_CLS
            reads are normalised either way).
        standardize_input: standardise the [0, 1] images with the backbone's own mean and std
            (timm's ``pretrained_cfg``; see :mod:`mlrank.models.standardize`), which pretrained
            weights expect; False feeds the backbone the [0, 1] pixels.
        order_head: beyond the paper, a second linear on each class token gives "order_scores",
            which order the detected components (trained by L_Order); the fused logits then only
            detect. False: the fused logits do both, as in the paper.
        highpass_input: beyond the paper, the backbone also sees each image's high-pass residual
            (:class:`HighPassChannels`) as three more input channels; a pretrained first
            convolution is adapted by timm (``in_chans=6``).
        count_head: beyond the paper, a linear on the mean of the encoded patch tokens U~ gives
            "count_logits" (B, L + 1), scores of 0..L edited components (trained by L_Count).
        backbone_kwargs: extra arguments of ``timm.create_model`` (e.g. ``drop_path_rate``).

    ``forward(images)`` with images (B, 3, H, W) returns a dict:
        "tokens" (B, N, d): patch tokens after the encoder, rows l2-normalised (for L_CLS);
        "logits_patch", "logits_class", "logits" (B, L): f^U, f^V and their mean f;
        "order_scores" (B, L), with ``order_head`` only: the edit order's scores;
        "count_logits" (B, L + 1), with ``count_head`` only: scores of 0..L edited components;
        "grid" (h, w): the token grid, N = h * w.
    """

    def __init__(
        self,
        backbone: str = "resnet50",
        num_classes: int = 5,
        token_dim: int = 256,
        out_stride: int = 16,
        num_heads: int = 8,
        pretrained_file: str | os.PathLike | None = None,
        img_size: int | tuple[int, int] | None = None,
        dropout: float = 0.0,
        normalize_patch_tokens: bool = True,
        standardize_input: bool = True,
        order_head: bool = False,
        highpass_input: bool = False,
        count_head: bool = False,
        max_stride: int | None = None,
        backbone_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        counts = {"num_classes": num_classes, "token_dim": token_dim, "num_heads": num_heads}
        for what, value in counts.items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{what} must be a positive int, got {value!r}")
        if token_dim % num_heads:
            raise ValueError(
                f"token_dim ({token_dim}) must be divisible by num_heads ({num_heads})"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")
        if order_head and num_classes < 2:
            raise ValueError("order_head needs num_classes >= 2: binary detection has no order")
        if count_head and num_classes < 2:
            raise ValueError("count_head needs num_classes >= 2: binary detection has one component")
        self.num_classes = num_classes
        self.normalize_patch_tokens = normalize_patch_tokens
        self.backbone, channels, reductions = create_backbone(
            backbone, pretrained_file, out_stride, in_chans=6 if highpass_input else 3, img_size=img_size,
            max_stride=max_stride, **(backbone_kwargs or {}),
        )
        self.standardize = Standardize(self.backbone.body.pretrained_cfg) if standardize_input else nn.Identity()
        self.highpass = HighPassChannels() if highpass_input else nn.Identity()
        self.fpn = FPN(channels, reductions, token_dim, out_stride)
        # NHWC convolutions: 1.24x the training speed of the synthetic default on the CPU (oneDNN),
        # and the layout cuDNN prefers under bf16. Parameters keep their values; state dicts load as
        # before (load_state_dict copies into these tensors, keeping their layout).
        self.backbone.to(memory_format=torch.channels_last)
        self.fpn.to(memory_format=torch.channels_last)
        self.token_projection = nn.Conv2d(token_dim, token_dim, kernel_size=1)

        size = img_size or self.backbone.input_size or DEFAULT_IMG_SIZE
        height, width = (size, size) if isinstance(size, int) else size
        self.pos_embed = nn.Parameter(
            torch.zeros(1, token_dim, math.ceil(height / out_stride), math.ceil(width / out_stride))
        )
        self.class_tokens = nn.Parameter(
            torch.randn(1, num_classes, token_dim) / math.sqrt(token_dim)
        )
        self.encoder = nn.TransformerEncoderLayer(
            token_dim,
            num_heads,
            dim_feedforward=4 * token_dim,
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        init_conv(self.token_projection)
        # One logit map per component, averaged over the patches.
        self.patch_head = nn.Sequential(
            nn.Conv2d(token_dim, num_classes, kernel_size=1),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.class_norm = nn.LayerNorm(token_dim)
        # One linear per class token: logit_i = <w_i, V~_i> + b_i.
        self.class_weight = nn.Parameter(torch.empty(num_classes, token_dim))
        self.class_bias = nn.Parameter(torch.zeros(num_classes))
        nn.init.trunc_normal_(self.class_weight, std=0.02)
        # Beyond the paper: a second linear per class token scores the edit order alone, so that the
        # fused logits only have to say which components were edited (docs/method.md section 5).
        self.order_head = order_head
        if order_head:
            self.order_weight = nn.Parameter(torch.empty(num_classes, token_dim))
            self.order_bias = nn.Parameter(torch.zeros(num_classes))
            nn.init.trunc_normal_(self.order_weight, std=0.02)
        # Beyond the paper: how many components were edited, from the whole image (every edit
        # re-processes all of it), so that decoding need not threshold each component alone.
        self.count_head = nn.Linear(token_dim, num_classes + 1) if count_head else None
        # The distinct sequences of the training annotations (V, 5), set by training
        # (remember_training_sequences) and saved with the weights, so that a checkpoint alone can
        # decode among them (model.seen_sequences_only). Empty until set.
        self.register_buffer("training_sequences", torch.zeros(0, SEQUENCE_LENGTH, dtype=torch.long))

    # State a checkpoint may hold in another size, or not at all (saved before it existed); its own
    # loading adapts it (_load_from_state_dict).
    flexible_state_keys = ("training_sequences",)

    def remember_training_sequences(self, sequences: torch.Tensor) -> None:
        """Keep the distinct rows of the training split's (M, 5) sequences, shortest first."""
        self.training_sequences = distinct_sequences(sequences).to(self.training_sequences.device)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:
        # The stored set has its own size; a checkpoint saved before the buffer existed has none.
        key = prefix + "training_sequences"
        stored = state_dict.get(key)
        if stored is not None:
            self.training_sequences = torch.empty_like(stored, device=self.training_sequences.device)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
        if stored is None and key in missing_keys:
            missing_keys.remove(key)

    def forward(self, images: torch.Tensor) -> dict[str, Any]:
        self._check_images(images)
        images = self.highpass(self.standardize(images)).contiguous(memory_format=torch.channels_last)
        feature_map = self.token_projection(self.fpn(self.backbone(images)))
        batch, dim, height, width = feature_map.shape
        patch_tokens = feature_map.flatten(2).transpose(1, 2)
        if self.normalize_patch_tokens:
            patch_tokens = F.normalize(patch_tokens, dim=-1)  # U

        pos_embed = self.pos_embed
        if pos_embed.shape[-2:] != (height, width):
            pos_embed = F.interpolate(
                pos_embed, size=(height, width), mode="bicubic", align_corners=False
            )
        sequence = torch.cat(
            [
                patch_tokens + pos_embed.flatten(2).transpose(1, 2),
                self.class_tokens.expand(batch, -1, -1),
            ],
            dim=1,
        )
        encoded = self.encoder(sequence)
        encoded_patches = encoded[:, : height * width]  # U~
        tokens = F.normalize(encoded_patches, dim=-1)  # U~ with rows of norm 1, for L_CLS
        class_tokens = self.class_norm(encoded[:, height * width :])  # V~

        token_map = encoded_patches.transpose(1, 2).reshape(batch, dim, height, width)
        logits_patch = self.patch_head(token_map)
        logits_class = (class_tokens * self.class_weight).sum(dim=-1) + self.class_bias
        outputs = {
            "tokens": tokens,
            "logits_patch": logits_patch,
            "logits_class": logits_class,
            "logits": (logits_patch + logits_class) / 2,
            "grid": (height, width),
        }
        if self.order_head:
            outputs["order_scores"] = (class_tokens * self.order_weight).sum(dim=-1) + self.order_bias
        if self.count_head is not None:
            outputs["count_logits"] = self.count_head(encoded_patches.mean(dim=1))
        return outputs

    def _check_images(self, images: torch.Tensor) -> None:
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"images must be a tensor, got {type(images).__name__}")
        if not images.is_floating_point():
            raise TypeError(f"images must be a floating-point tensor, got {images.dtype}")
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got shape {tuple(images.shape)}")
        fixed = self.backbone.input_size
        if fixed is not None and tuple(images.shape[-2:]) != fixed:
            raise ValueError(
                f"this backbone was built for {fixed[0]}x{fixed[1]} images, got "
                f"{images.shape[-2]}x{images.shape[-1]}; create the model with img_size="
                f"{tuple(images.shape[-2:])}"
            )

    def parameter_groups(
        self, lr: float, backbone_lr_scale: float = 0.1, weight_decay: float = 0.01
    ) -> list[dict[str, Any]]:
        """AdamW parameter groups: the backbone at ``lr * backbone_lr_scale`` (0.1 in the paper).

        Biases, normalisation weights, the class tokens and the positional embedding get no
        weight decay (timm's and ViT's convention); the rest gets ``weight_decay`` (AdamW's
        default 0.01). Each group carries a "name" for logging; empty groups are left out.
        """
        return parameter_groups(
            self, "backbone.", lr, backbone_lr_scale, weight_decay, no_decay=("class_tokens", "pos_embed")
        )
