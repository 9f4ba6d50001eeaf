"""Image reading and frame selection shared by the real-data loaders and the preprocessing tool.

Decisions:
- Images are decoded with PIL and converted to RGB (grey, palette and RGBA files alike), then
  returned as float32 [3, H, W] in [0, 1]: the form every loader hands to its `transform`.
- Frames are ordered by a natural sort of their file names ("2.png" before "10.png"), as
  DeepfakeBench orders frames by their integer frame number, and picked evenly spaced with
  `np.linspace(0, n - 1, k, dtype=int)`, DeepfakeBench's rule; a video with no more than k frames
  keeps them all.
"""

from __future__ import annotations

import os
import re

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"})

_DIGITS = re.compile(r"(\d+)")


def is_image_file(path: str | os.PathLike) -> bool:
    """Whether the file name has one of the image extensions the loaders read."""
    return os.path.splitext(os.fspath(path))[1].lower() in IMAGE_EXTENSIONS


def read_rgb(path: str | os.PathLike) -> torch.Tensor:
    """Read an image file as a float32 tensor [3, H, W] in [0, 1].

    Raises FileNotFoundError for a missing file and ValueError naming the file for one that cannot
    be decoded (corrupt, truncated, not an image).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        # PIL reports truncated and malformed files with several exception types
        raise ValueError(f"cannot decode image {path}: {error}") from error
    # converted in numpy: single-threaded, which for one image beats torch's parallel kernels
    # (and their thread start-up) several times over, and DataLoader workers run one image each
    channels_first = np.ascontiguousarray(pixels.transpose(2, 0, 1), dtype=np.float32)
    channels_first /= 255.0
    return torch.from_numpy(channels_first)


def natural_sort_key(name: str) -> tuple:
    """Sort key that compares the digit runs of a name as numbers: frame 2 before frame 10."""
    return tuple(int(part) if part.isdigit() else part for part in _DIGITS.split(name))


def evenly_spaced_indices(count: int, wanted: int | None) -> list[int]:
    """Indices of `wanted` evenly spaced items among `count` (all of them when wanted is None or >= count)."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    check_frames_per_video(wanted)
    if wanted is None or wanted >= count:
        return list(range(count))
    return np.linspace(0, count - 1, wanted, dtype=int).tolist()


def check_frames_per_video(frames_per_video: int | None) -> None:
    """Raise a ValueError or TypeError for a frames-per-video setting that is not None or a positive int."""
    if frames_per_video is None:
        return
    if isinstance(frames_per_video, bool) or not isinstance(frames_per_video, int):
        raise TypeError(f"frames_per_video must be an int or None, got {type(frames_per_video).__name__}")
    if frames_per_video < 1:
        raise ValueError(f"frames_per_video must be >= 1 or None, got {frames_per_video}")
