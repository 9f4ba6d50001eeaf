"""The square a model sees of an image: one rule for every path an image takes to a model.

Training, evaluation and crosseval (``mlrank.engine.builders.Resize``) and predict and explain
(``mlrank.predict.model_input``) all feed a model a square: a non-square image is centred in the
square of its longer side, padded black (its aspect ratio kept), then resized. A face crop
(preprocess, ``predict --detect-faces``) is the square of ``margin`` times the face box's longer side
centred on the box, padded black where it leaves the image. The same integer arithmetic places the
square in every path, so one image gets one score whichever command reads it.
"""

from __future__ import annotations

import numpy as np
import torch

Square = tuple[int, int, int]  # left, top, side in pixels; may reach outside the image
Box = tuple[int, int, int, int]  # x, y, width, height


def face_square(box: Box, margin: float) -> Square:
    """The square of side margin * max(w, h) centred on `box`, as (left, top, side)."""
    x, y, width, height = box
    side = max(1, int(round(max(width, height) * margin)))
    return int(round(x + width / 2 - side / 2)), int(round(y + height / 2 - side / 2)), side


def whole_image_square(height: int, width: int) -> Square:
    """The centred square around a whole image of ``height`` x ``width`` (side: its longer side)."""
    return face_square((0, 0, width, height), 1.0)


def crop_square(image: np.ndarray, square: Square) -> np.ndarray:
    """The pixels of `square` of an (H, W, ...) array at its resolution, padded black where it leaves
    the image."""
    left, top, side = square
    image_height, image_width = image.shape[:2]
    crop = np.zeros((side, side) + image.shape[2:], dtype=image.dtype)
    x0, y0 = max(left, 0), max(top, 0)
    x1, y1 = min(left + side, image_width), min(top + side, image_height)
    if x1 > x0 and y1 > y0:
        crop[y0 - top : y1 - top, x0 - left : x1 - left] = image[y0:y1, x0:x1]
    return crop


def pad_to_square(image: torch.Tensor) -> torch.Tensor:
    """A (C, H, W) image centred in its whole-image square, padded black (as :func:`crop_square` does)."""
    height, width = image.shape[-2:]
    if height == width:
        return image
    left, top, side = whole_image_square(height, width)
    square = image.new_zeros(image.shape[:-2] + (side, side))
    square[..., -top : -top + height, -left : -left + width] = image
    return square
