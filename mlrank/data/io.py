"""Image reading, frame selection and output-path checks shared by the loaders, preprocess and predict.

Decisions:
- Every image file is read by `read_image` (loaders through `read_rgb`): one rule for all.
  OpenCV decodes it at its own depth (IMREAD_ANYDEPTH | IMREAD_ANYCOLOR), so 16-bit and float files
  keep their values; grey files become RGB and an alpha channel is dropped, not composited.
- Values are scaled by the true range of their type: uint8 by 255, uint16 by 65535 (PNG and TIFF
  store 16-bit samples scaled to the full range). Float files are taken to hold [0, 1], the
  convention of OpenCV and scikit-image; values outside it (beyond half an 8-bit step, which is
  clipped as rounding) or NaN/Inf are an error naming the file rather than a guess at another
  range. Signed integer files are refused.
- EXIF orientation is applied (OpenCV's decoder does it for JPEG, PNG, WebP and TIFF), so a
  camera photo is upright in preprocessing, training and prediction alike.
- At most `MAX_IMAGE_PIXELS` pixels (89,478,485, Pillow's default bound: 9459 x 9459) are read.
  The size the header declares is checked with Pillow before anything is decoded, so a
  decompression bomb (a small file declaring a huge image) is a ValueError naming the file, not
  an out-of-memory kill of a DataLoader worker. Formats Pillow cannot parse (float RGB TIFF) are
  checked after decoding, within OpenCV's own bound of 2^30 pixels.
- Frames are ordered by a natural sort of their file names ("2.png" before "10.png"), as
  DeepfakeBench orders frames by their integer frame number, and picked evenly spaced with
  `np.linspace(0, n - 1, k, dtype=int)`, DeepfakeBench's rule; a video with no more than k frames
  keeps them all.
- An output folder or file of preprocess or predict must not be, contain or lie inside one of its
  inputs (`check_output_apart`, on resolved paths), so no run can write over an input; outputs
  that exist already are replaced only when asked (`refuse_existing_outputs` otherwise).
"""

from __future__ import annotations

import io
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"})
MAX_IMAGE_PIXELS = 1024 * 1024 * 1024 // 4 // 3  # Pillow's default bound; see the module notes

_FLOAT_TOLERANCE = 0.5 / 255  # rounding outside [0, 1] that changes no 8-bit value
_DIGITS = re.compile(r"(\d+)")


def is_image_file(path: str | os.PathLike) -> bool:
    """Whether the file name has one of the image extensions the loaders read."""
    return os.path.splitext(os.fspath(path))[1].lower() in IMAGE_EXTENSIONS


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as float32 RGB [H, W, 3] in [0, 1], EXIF orientation applied.

    Raises FileNotFoundError for a missing file and ValueError naming the file for one that cannot
    be decoded (corrupt, truncated, not an image), declares more than MAX_IMAGE_PIXELS pixels, or
    holds values outside its type's range.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image file not found: {path}")
    # decoded from the bytes rather than imread, which fails on non-ASCII paths on some platforms
    with open(path, "rb") as file:
        return decode_image(file.read(), path)


def decode_image(data: bytes, name: str) -> np.ndarray:
    """`read_image` of an encoded image held in memory (say, an LMDB value); `name` says in messages
    where it came from. Same checks, same result as reading the bytes from a file."""
    _check_declared_size(data, name)
    buffer = np.frombuffer(data, dtype=np.uint8)
    try:
        pixels = cv2.imdecode(buffer, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR) if buffer.size else None
    except cv2.error as error:
        raise ValueError(f"cannot decode image {name}: {str(error).strip().splitlines()[-1]}") from None
    if pixels is None:
        raise ValueError(f"cannot decode image {name}: corrupt, truncated or not an image")
    _check_pixel_count(name, pixels.shape[1], pixels.shape[0])
    return _unit_rgb(pixels, name)


def read_rgb(path: str | os.PathLike) -> torch.Tensor:
    """`read_image` as a float32 tensor [3, H, W] in [0, 1]: the form every loader hands its transform."""
    return torch.from_numpy(np.ascontiguousarray(read_image(path).transpose(2, 0, 1)))


def to_bgr8(image: np.ndarray) -> np.ndarray:
    """A float RGB image in [0, 1] (what `read_image` returns) as uint8 BGR, the form OpenCV works on."""
    return np.ascontiguousarray((np.clip(image[..., ::-1], 0.0, 1.0) * 255.0).round().astype(np.uint8))


def _check_declared_size(data: bytes, path: str) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our bound decides
            with Image.open(io.BytesIO(data)) as image:  # parses the header only
                width, height = image.size
    except Image.DecompressionBombError as error:
        raise ValueError(f"image {path} is too large to read: {error} (mlrank reads at most "
                         f"{MAX_IMAGE_PIXELS} pixels, mlrank.data.io.MAX_IMAGE_PIXELS)") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return  # a format Pillow cannot parse: OpenCV decodes it and the size is checked then
    _check_pixel_count(path, width, height)


def _check_pixel_count(path: str, width: int, height: int) -> None:
    if width * height > MAX_IMAGE_PIXELS:
        raise ValueError(
            f"image {path} is too large to read: {width} x {height} = {width * height} pixels, more than "
            f"mlrank.data.io.MAX_IMAGE_PIXELS = {MAX_IMAGE_PIXELS} (a guard against decompression bombs)"
        )


def _unit_rgb(pixels: np.ndarray, path: str) -> np.ndarray:
    """Decoded BGR or grey pixels of any depth as float32 RGB in [0, 1]."""
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    rgb = pixels[:, :, ::-1] if pixels.shape[2] == 3 else pixels[:, :, [0, 0, 0]]  # ANYCOLOR: grey or BGR
    dtype = pixels.dtype
    if dtype in (np.uint8, np.uint16):
        # converted in numpy: single-threaded, which for one image beats torch's parallel kernels
        # (and their thread start-up) several times over, and DataLoader workers run one image each
        values = rgb.astype(np.float32)
        values /= np.iinfo(dtype).max
        return values
    if np.issubdtype(dtype, np.floating):
        values = rgb.astype(np.float32)
        low, high = float(values.min()), float(values.max())
        if not (np.isfinite(low) and np.isfinite(high)):
            raise ValueError(f"image {path} holds NaN or Inf values")
        if low < -_FLOAT_TOLERANCE or high > 1.0 + _FLOAT_TOLERANCE:
            raise ValueError(
                f"image {path} is a {dtype} image with values in [{low:g}, {high:g}]; float images must hold [0, 1]"
            )
        return np.clip(values, 0.0, 1.0, out=values)
    raise ValueError(f"image {path} has {dtype} pixels; only unsigned 8- or 16-bit and float images are read")


def check_output_apart(output: str | os.PathLike, option: str, inputs: Sequence[str | os.PathLike]) -> None:
    """Raise a ValueError when `output` (named `option` in the message) is, contains or lies inside an input.

    Paths are compared resolved (symbolic links followed), whether or not they exist yet.
    """
    resolved = os.path.realpath(output)
    for item in inputs:
        other = os.path.realpath(item)
        if resolved == other:
            relation = "is"
        elif _inside(resolved, other):
            relation = "lies inside"
        elif _inside(other, resolved):
            relation = "contains"
        else:
            continue
        raise ValueError(
            f"{option} {os.fspath(output)} {relation} the input {os.fspath(item)}: outputs must lie apart from "
            "the inputs, so that no input is overwritten"
        )


def refuse_existing_outputs(existing: Sequence[str | os.PathLike]) -> None:
    """Raise a FileExistsError listing `existing` outputs (if any), pointing to --overwrite."""
    if existing:
        shown = ", ".join(map(os.fspath, existing[:3])) + (", ..." if len(existing) > 3 else "")
        raise FileExistsError(f"{len(existing)} output(s) already exist ({shown}); pass --overwrite to replace them")


def _inside(path: str, folder: str) -> bool:
    return os.path.commonpath([path, folder]) == folder and path != folder


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


# The longest file-name stem an output takes from its input: the name limit is 255 bytes on common
# file systems, and outputs add an index and a suffix.
MAX_OUTPUT_STEM_BYTES = 100
_UNSAFE = re.compile(r"[^\w.+-]")


def readable_name(path: str | os.PathLike) -> str:
    """A file name as text that any UTF-8 writer accepts: bytes that are not UTF-8 become U+FFFD."""
    return os.fsencode(os.path.basename(os.fspath(path))).decode("utf-8", "replace")


def output_stem(index: int, path: str | os.PathLike) -> str:
    """The stem of the outputs made from input number ``index`` (say its heat map): the index, then
    the input's stem in safe characters, cut to MAX_OUTPUT_STEM_BYTES, so that any name the file
    system accepts for the input (long, not UTF-8) gives a valid and unique output name."""
    stem = os.fsencode(Path(path).stem).decode("utf-8", "replace")
    safe = _UNSAFE.sub("_", stem)
    encoded = safe.encode("utf-8")[:MAX_OUTPUT_STEM_BYTES]
    return f"{index:05d}_{encoded.decode('utf-8', 'ignore')}"


def printable(text: str) -> str:
    """``text`` with the bytes of non-UTF-8 file names (Python's surrogate escapes) shown as U+FFFD,
    so that a terminal, a UTF-8 file or an HTML page can take it."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
