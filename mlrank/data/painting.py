"""Painting for the face renderer (`face_rendering`), in pixels: anti-aliased polygons that OpenCV
draws at sub-pixel precision, strokes prepared once and drawn many times, noise textures and float32
compositing. Nothing here knows about faces."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

SUBPIXEL_BITS = 4  # cv2 drawing takes fixed-point coordinates: 1/16 pixel


def fixed_point(points: np.ndarray) -> np.ndarray:
    """Pixel coordinates as the int32 fixed-point points that cv2 draws with `SUBPIXEL_BITS`."""
    return np.rint(points * (1 << SUBPIXEL_BITS)).astype(np.int32)


def polygon_mask(polygons, shape, *, thickness: int = 0, closed: bool = True) -> np.ndarray:
    """uint8 anti-aliased mask (0..255) of filled pixel-space polygons, or of their outlines."""
    mask = np.zeros(shape, np.uint8)
    _stroke(mask, [fixed_point(p) for p in polygons], 255, thickness, closed)
    return mask


def _stroke(image: np.ndarray, polygons: list[np.ndarray], colour, thickness: int, closed: bool) -> None:
    if thickness:
        cv2.polylines(image, polygons, closed, colour, thickness, cv2.LINE_AA, SUBPIXEL_BITS)
    else:
        for polygon in polygons:  # one call per polygon: a single call fills overlaps even-odd
            cv2.fillPoly(image, [polygon], colour, cv2.LINE_AA, SUBPIXEL_BITS)


def bounding_box(polygons: list[np.ndarray], shape, pad: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): the pixels that fixed-point polygons can touch, grown by `pad`, inside `shape`."""
    x, y, width, height = cv2.boundingRect(np.concatenate(polygons))
    return (max((x >> SUBPIXEL_BITS) - pad, 0), max((y >> SUBPIXEL_BITS) - pad, 0),
            min(((x + width) >> SUBPIXEL_BITS) + pad + 1, shape[1]),
            min(((y + height) >> SUBPIXEL_BITS) + pad + 1, shape[0]))


@dataclass(frozen=True, eq=False)
class Stroke:
    """One anti-aliased draw call, ready for cv2: what to draw, in which colour, and where it can land."""

    polygons: list[np.ndarray]  # int32 fixed-point pixel coordinates
    colour: list[float]
    opacity: float
    thickness: int  # 0: filled
    closed: bool
    box: tuple[int, int, int, int]  # (x0, y0, x1, y1): the pixels it can touch


def stroke(polygons: list[np.ndarray], colour, size: int, *, opacity: float = 1.0, thickness: int = 0,
           closed: bool = True) -> Stroke:
    """A stroke of pixel-space polygons (filled, or outlined with `thickness`) on a size x size image."""
    fixed = [fixed_point(p) for p in polygons]
    return Stroke(fixed, np.minimum(colour, 255).tolist(), opacity, thickness, closed,
                  bounding_box(fixed, (size, size), pad=thickness + 1))


def draw(image: np.ndarray, stroke: Stroke) -> None:
    """Draws a stroke onto uint8 `image`; below full opacity it is blended inside its box only."""
    if stroke.opacity >= 1:
        _stroke(image, stroke.polygons, stroke.colour, stroke.thickness, stroke.closed)
        return
    x0, y0, x1, y1 = stroke.box
    if x1 <= x0 or y1 <= y0:
        return
    region = image[y0:y1, x0:x1]
    layer = region.copy()
    origin = np.array([x0 << SUBPIXEL_BITS, y0 << SUBPIXEL_BITS], np.int32)
    _stroke(layer, [p - origin for p in stroke.polygons], stroke.colour, stroke.thickness, stroke.closed)
    cv2.addWeighted(layer, stroke.opacity, region, 1 - stroke.opacity, 0, dst=region)


def paint_texture(image: np.ndarray, polygons: list[np.ndarray], texture: np.ndarray) -> None:
    """Paints filled polygons with a full-size float32 texture instead of a flat colour."""
    fixed = [fixed_point(p) for p in polygons]
    x0, y0, x1, y1 = bounding_box(fixed, image.shape, pad=1)
    if x1 <= x0 or y1 <= y0:
        return
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    origin = np.array([x0 << SUBPIXEL_BITS, y0 << SUBPIXEL_BITS], np.int32)
    _stroke(mask, [p - origin for p in fixed], 255, 0, True)
    region = image[y0:y1, x0:x1]
    alpha = mask.astype(np.float32) * np.float32(1 / 255)
    region[:] = cv2.convertScaleAbs(over(region.astype(np.float32), texture[y0:y1, x0:x1], alpha))


# ---------------------------------------------------------------- textures and compositing


@functools.lru_cache(maxsize=8)
def grain_tile(size: int) -> np.ndarray:
    """A fixed tile of unit Gaussian noise; each face crops it at its own offset (cheaper than new noise)."""
    return np.random.default_rng(20240617).standard_normal((2 * size, 2 * size)).astype(np.float32)


def grain(size: int, offset: tuple[int, int]) -> np.ndarray:
    oy, ox = offset[0] % size, offset[1] % size
    return grain_tile(size)[oy : oy + size, ox : ox + size]


def upsampled(noise: np.ndarray, size: int) -> np.ndarray:
    """Smooth float32 (size, size) texture from low-resolution noise (bicubic to 16, then bilinear)."""
    coarse = cv2.resize(noise, (16, 16), interpolation=cv2.INTER_CUBIC)
    return cv2.resize(coarse, (size, size), interpolation=cv2.INTER_LINEAR)


def tinted(luminance: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """(H, W, 3) float32 colour * luminance (numpy broadcasting over a last axis of 3 is slow)."""
    return cv2.merge([luminance * np.float32(c) for c in colour])


def over(image: np.ndarray, layer: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """`layer` composited over `image` with float32 weights `alpha` (H, W) in [0, 1]."""
    return cv2.blendLinear(layer, image, alpha, 1 - alpha)

