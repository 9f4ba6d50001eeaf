"""Where a discrepancy goes: the face region, its grid cells and their soft masks.

The grid is laid over the bounding box of the face mask (as SeeABLE lays it over the landmarks'
box), so every cell covers part of the face whatever the crop margin. A cell's region is the
cell intersected with the face mask. Its soft mask ramps from near 0 at the region's border to
1 at ``feather_px`` pixels inside (a smoothstep of the Euclidean distance to the nearest pixel
outside the region or the cell): soft edges, and a support that is exactly the region.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from .spec import DiscrepancySpec

# The fallback face when no mask is given: a centred upright ellipse, a little taller than wide,
# as a face sits in a square crop with a small margin.
FACE_ELLIPSE_SEMI_AXES = (0.45, 0.40)  # (vertical, horizontal), as fractions of (height, width)


def default_face_mask(height: int, width: int) -> torch.Tensor:
    """A centred face ellipse, bool (height, width), for images without a face mask."""
    if height < 1 or width < 1:
        raise ValueError(f"image size must be at least 1 x 1, got {height} x {width}")
    semi_height, semi_width = FACE_ELLIPSE_SEMI_AXES[0] * height, FACE_ELLIPSE_SEMI_AXES[1] * width
    ys = (torch.arange(height, dtype=torch.float64) + 0.5 - height / 2) / semi_height
    xs = (torch.arange(width, dtype=torch.float64) + 0.5 - width / 2) / semi_width
    return ys[:, None] ** 2 + xs[None, :] ** 2 <= 1


def as_face_mask(face_mask: object, height: int, width: int) -> torch.Tensor:
    """Validate a face mask (bool torch tensor or numpy array of shape (height, width)); None
    gives :func:`default_face_mask`."""
    if face_mask is None:
        return default_face_mask(height, width)
    if isinstance(face_mask, np.ndarray):
        face_mask = torch.from_numpy(face_mask)
    if not isinstance(face_mask, torch.Tensor):
        raise TypeError(
            f"face_mask must be a bool tensor or numpy array, got {type(face_mask).__name__}"
        )
    if face_mask.dtype != torch.bool:
        raise TypeError(f"face_mask must have dtype bool, got {face_mask.dtype}")
    if tuple(face_mask.shape) != (height, width):
        raise ValueError(
            f"face_mask must have the image's shape ({height}, {width}), "
            f"got {tuple(face_mask.shape)}"
        )
    return face_mask.cpu()


def cell_bounds(
    face_mask: torch.Tensor, row: int, col: int, grid: tuple[int, int]
) -> tuple[int, int, int, int]:
    """(top, bottom, left, right), half-open, of cell (row, col) of the grid over the face's box.

    Cells partition the box exactly: cell r spans rows top + floor(r h / rows) up to
    top + floor((r + 1) h / rows).
    """
    rows, cols = grid
    ys = torch.nonzero(face_mask.any(dim=1)).flatten()
    xs = torch.nonzero(face_mask.any(dim=0)).flatten()
    if ys.numel() == 0:
        raise ValueError("face_mask is empty: no face pixel to place a discrepancy in")
    top, left = int(ys[0]), int(xs[0])
    box_height, box_width = int(ys[-1]) + 1 - top, int(xs[-1]) + 1 - left
    if box_height < rows or box_width < cols:
        raise ValueError(
            f"the face's bounding box is {box_height} x {box_width} pixels, too small for a "
            f"{rows} x {cols} grid"
        )
    return (
        top + row * box_height // rows,
        top + (row + 1) * box_height // rows,
        left + col * box_width // cols,
        left + (col + 1) * box_width // cols,
    )


def soft_mask(region: np.ndarray, feather_px: float) -> np.ndarray:
    """Float32 smoothstep ramp over a bool region: in (0, 1] on it, 0 off it.

    Distances are to the nearest pixel outside the region, the array's own border counting as
    outside, so a cell gets the same soft edge on every side wherever it lies in the image.
    """
    padded = np.pad(region.astype(np.uint8), 1)
    inside_distance = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    ramp = np.clip(inside_distance / max(feather_px, 1.0), 0.0, 1.0)
    return (ramp * ramp * (3.0 - 2.0 * ramp)).astype(np.float32)


def discrepancy_mask(
    face_mask: torch.Tensor, row: int, col: int, spec: DiscrepancySpec
) -> torch.Tensor:
    """Float32 (H, W) soft mask of cell (row, col) of ``spec``'s grid intersected with the face,
    peak 1 where the region is wide enough for the ramp, exactly 0 off the region."""
    top, bottom, left, right = cell_bounds(face_mask, row, col, spec.grid)
    region = face_mask[top:bottom, left:right].numpy()
    if not region.any():
        raise ValueError(
            f"grid cell ({row}, {col}) (rows {top}:{bottom}, cols {left}:{right}) "
            "holds no face pixel"
        )
    mask = torch.zeros(face_mask.shape, dtype=torch.float32)
    feather_px = spec.feather * min(bottom - top, right - left)
    mask[top:bottom, left:right] = torch.from_numpy(soft_mask(region, feather_px))
    return mask
