"""Backbones by timm name, as the feature levels an FPN merges into one map at ``out_stride``.

Decisions:

* Every backbone is ``timm.create_model(name, features_only=True)``; weights come only from a
  file the user names (``pretrained_cfg_overlay=dict(file=...)``), so nothing is downloaded.
  The file holds the weights of timm's *classifier* model of that name (what timm publishes and
  what ``timm.create_model(name).state_dict()`` saves); the classifier itself is dropped.
* timm reports keys missing from such a file only as an INFO log line and then loads
  non-strictly, so a checkpoint of another layout would silently leave a randomly initialised
  backbone. We record that line and raise instead (missing classifier keys are expected).
* Levels finer than ``out_stride`` are dropped: a top-down FPN never reads them. Where several
  levels share a stride (plain ViTs), the deepest is kept.
* Levels coarser than ``max_stride`` are not built at all (timm's ``out_indices``), which saves
  their time and parameters where they add nothing (docs/method.md section 6, the synthetic run).
* Swin and other fixed-size transformers need the image size at creation (``img_size``) and
  return NHWC maps; the wrapper permutes them to NCHW so every backbone looks the same.
  Convolutional backbones accept any size and ignore ``img_size``; so do transformers built with
  timm's ``dynamic_img_size=True``.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
import pickle
import re
from collections.abc import Iterator
from typing import Any

import timm
import torch
from torch import nn

_TIMM_BUILDER_LOG = logging.getLogger("timm.models._builder")
# timm 1.0 logs: "Missing keys (a, b) discovered while loading pretrained weights. ..."
_MISSING_KEYS_LINE = re.compile(r"Missing keys \((.*)\) discovered")


class FeatureLevels(nn.Module):
    """A timm ``features_only`` network that returns the chosen levels, always as NCHW maps.

    Attributes:
        input_size: the (H, W) the backbone was built for if it accepts no other size, else None.
    """

    def __init__(
        self,
        body: nn.Module,
        level_indices: list[int],
        channels_last: bool,
        input_size: tuple[int, int] | None,
    ) -> None:
        super().__init__()
        self.body = body
        self.level_indices = tuple(level_indices)
        self.channels_last = channels_last
        self.input_size = input_size

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        levels = self.body(images)
        selected = [levels[i] for i in self.level_indices]
        if self.channels_last:
            selected = [level.permute(0, 3, 1, 2) for level in selected]
        return selected


def suggest_model_names(name: str, limit: int = 5) -> list[str]:
    """timm architecture names close to ``name``: those containing it first, then look-alikes."""
    all_names = timm.list_models()
    containing = timm.list_models(f"*{name}*")
    similar = difflib.get_close_matches(name, all_names, n=limit, cutoff=0.6)
    return list(dict.fromkeys(containing + similar))[:limit]


def create_backbone(
    name: str,
    pretrained_file: str | os.PathLike | None = None,
    out_stride: int = 16,
    in_chans: int = 3,
    img_size: int | tuple[int, int] | None = None,
    max_stride: int | None = None,
    **model_kwargs: Any,
) -> tuple[FeatureLevels, list[int], list[int]]:
    """A timm backbone returning its feature maps at strides ``out_stride`` and coarser.

    Args:
        name: a timm architecture name (``resnet50``, ``resnet34``,
            ``swin_tiny_patch4_window7_224``, ...), optionally with a pretrained tag
            (``resnet50.a1_in1k``).
        pretrained_file: a local weight file (timm's classifier state dict for ``name``; .pth or
            .safetensors); None gives a random initialisation. Nothing is ever downloaded.
        out_stride: the finest stride kept; must be one of the backbone's feature strides.
        in_chans: image channels (timm adapts the first convolution of pretrained weights).
        img_size: the input size, needed by fixed-size backbones (Swin, ViT: their default
            otherwise); ignored by convolutional ones.
        max_stride: the coarsest stride kept, or None for all. The stages past it are not built
            (timm's ``out_indices``), so they cost neither time nor parameters.
        model_kwargs: passed on to ``timm.create_model`` (``drop_path_rate``, a Swin's
            ``window_size`` / ``depths``, ...).

    Returns:
        (module, channels, reductions): ``module(images)`` is a list of NCHW maps, coarsest last,
        with ``channels[i]`` channels at stride ``reductions[i]``.

    Raises:
        ValueError: unknown ``name`` (with close timm names), ``out_stride`` or ``max_stride``
            not among the backbone's strides, ``max_stride`` below ``out_stride``, or a weight
            file that does not fit the architecture.
        FileNotFoundError: ``pretrained_file`` does not exist.
    """
    if not timm.is_model(name):
        suggestions = suggest_model_names(name)
        hint = f"; did you mean {', '.join(suggestions)}?" if suggestions else ""
        raise ValueError(f"unknown backbone {name!r}: not a timm model name{hint}")
    if pretrained_file is not None and not os.path.isfile(pretrained_file):
        path = os.fspath(pretrained_file)
        raise FileNotFoundError(f"pretrained weights file not found: {path!r}")

    default_cfg = timm.models.get_pretrained_cfg(name)
    input_size = None
    if default_cfg.fixed_input_size:
        img_size = img_size if img_size is not None else tuple(default_cfg.input_size[1:])
        size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        model_kwargs["img_size"] = size
        any_size = (
            model_kwargs.get("dynamic_img_size") or model_kwargs.get("strict_img_size") is False
        )
        input_size = None if any_size else size

    if max_stride is not None:
        if max_stride < out_stride:
            raise ValueError(f"max_stride={max_stride} is finer than out_stride={out_stride}")
        # timm's features_only network stops at the last module its out_indices need. The strides
        # come from a copy built on the meta device: no memory, no weights, no draw from the RNG,
        # so the network built next starts as it would without the probe.
        with torch.device("meta"):
            probe = timm.create_model(name, features_only=True, in_chans=in_chans, **model_kwargs)
        probe_reductions = probe.feature_info.reduction()
        _check_strides(name, probe_reductions, out_stride, max_stride)
        kept = tuple(i for i, reduction in enumerate(probe_reductions) if reduction <= max_stride)
        model_kwargs = {**model_kwargs, "out_indices": kept}
    body = _create_features_model(name, pretrained_file, default_cfg, in_chans, model_kwargs)

    all_reductions = body.feature_info.reduction()
    _check_strides(name, all_reductions, out_stride, max_stride)
    all_channels = body.feature_info.channels()
    # The deepest level of each stride from out_stride down to the coarsest.
    deepest_at = {reduction: i for i, reduction in enumerate(all_reductions)}
    level_indices = [deepest_at[r] for r in sorted(deepest_at) if r >= out_stride]
    channels_last = getattr(body, "output_fmt", "NCHW") == "NHWC"  # timm's Format is a str enum
    module = FeatureLevels(body, level_indices, channels_last, input_size)
    return (
        module,
        [all_channels[i] for i in level_indices],
        [all_reductions[i] for i in level_indices],
    )


def _check_strides(name: str, reductions: list[int], out_stride: int, max_stride: int | None) -> None:
    for what, stride in (("out_stride", out_stride), ("max_stride", max_stride)):
        if stride is not None and stride not in reductions:
            raise ValueError(
                f"{what}={stride} is not a feature stride of {name!r}; "
                f"its feature maps are at strides {sorted(set(reductions))}"
            )


def _create_features_model(
    name: str,
    pretrained_file: str | os.PathLike | None,
    default_cfg: Any,
    in_chans: int,
    model_kwargs: dict[str, Any],
) -> nn.Module:
    if pretrained_file is None:
        return timm.create_model(
            name, features_only=True, pretrained=False, in_chans=in_chans, **model_kwargs
        )
    path = os.fspath(pretrained_file)
    try:
        with _recorded_missing_keys() as missing_keys:
            body = timm.create_model(
                name,
                features_only=True,
                pretrained=True,
                pretrained_cfg_overlay=dict(file=path),
                in_chans=in_chans,
                **model_kwargs,
            )
    except (RuntimeError, pickle.UnpicklingError) as error:
        raise ValueError(f"cannot load {path!r} as weights of {name!r}: {error}") from error
    classifier = default_cfg.classifier or ()
    classifier_prefixes = tuple(
        f"{head}." for head in ((classifier,) if isinstance(classifier, str) else classifier)
    )
    missing = [key for key in missing_keys if not key.startswith(classifier_prefixes)]
    if missing:
        shown = ", ".join(missing[:5])
        if len(missing) > 5:
            shown += f" and {len(missing) - 5} more"
        raise ValueError(
            f"{path!r} does not hold the weights of {name!r}: {len(missing)} tensors are missing "
            f"({shown}); expected the state dict of timm.create_model({name!r})"
        )
    return body


class _MissingKeyRecorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.keys: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        match = _MISSING_KEYS_LINE.match(record.getMessage())
        if match:
            self.keys.extend(match.group(1).split(", "))


@contextlib.contextmanager
def _recorded_missing_keys() -> Iterator[list[str]]:
    recorder = _MissingKeyRecorder()
    previous_level = _TIMM_BUILDER_LOG.level
    _TIMM_BUILDER_LOG.setLevel(min(_TIMM_BUILDER_LOG.getEffectiveLevel(), logging.INFO))
    _TIMM_BUILDER_LOG.addHandler(recorder)
    try:
        yield recorder.keys
    finally:
        _TIMM_BUILDER_LOG.removeHandler(recorder)
        _TIMM_BUILDER_LOG.setLevel(previous_level)


def parameter_groups(
    module: nn.Module,
    backbone_prefix: str,
    lr: float,
    backbone_lr_scale: float,
    weight_decay: float,
    no_decay: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """AdamW groups of ``module``: parameters under ``backbone_prefix`` at ``lr * backbone_lr_scale``,
    the rest at ``lr``; vectors (biases, normalisation weights) and the names in ``no_decay`` without
    weight decay. Each group carries a "name" for logging; empty groups are left out."""
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, parameter in module.named_parameters():
        if not parameter.requires_grad:
            continue
        in_backbone = name.startswith(backbone_prefix)
        decayed = parameter.ndim > 1 and name not in no_decay
        groups.setdefault((in_backbone, decayed), []).append(parameter)
    return [
        {
            "name": f"{'backbone' if in_backbone else 'head'}{'' if decayed else '_no_decay'}",
            "params": params,
            "lr": lr * backbone_lr_scale if in_backbone else lr,
            "weight_decay": weight_decay if decayed else 0.0,
        }
        for (in_backbone, decayed), params in sorted(groups.items(), reverse=True)
    ]
