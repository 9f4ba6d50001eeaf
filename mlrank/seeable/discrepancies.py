"""Soft discrepancies: an altered copy of the face blended into one grid cell of it.

    sd_k(I) = blend(M, T(I), I) = M * T(I) + (1 - M) * I

M is the soft mask of class k's cell (see :mod:`mlrank.seeable.masks`) scaled by a blend weight
drawn from ``spec.blend_range``; T is class k's type. As in Self-Blended Images, the source is a
transformed copy of the face itself, so the only cue is the local inconsistency. T is always
applied to the source, never the target, so that a class has one meaning.

Types (parameters drawn from the caller's ``numpy.random.Generator``):

* ``colour``: per-channel shift of +-[0.03, 0.10] (about SBI's +-20/255 RGB shift) and a
  contrast factor in [0.8, 1.2] about the channel mean.
* ``blur``: Gaussian blur, sigma in [1, 2] pixels (OpenCV, edges replicated).
* ``resample``: nearest-neighbour down-sampling by 2, 3 or 4, bilinear up-sampling back (SBI's
  RandomDownScale): aliasing and blur, the trace of a resized paste.
* ``spatial``: SeeABLE's spatial discrepancy, the source transform of Self-Blended Images that it
  builds on: ``colour``, then either ``resample`` or a sharpening (unsharp mask, amount in
  [0.2, 0.5], the range of SBI's Sharpen alpha), each with probability 1/2.
* ``frequency``: the amplitude of one radial band of the 2-D spectrum, [f, f + 0.15) cycles per
  pixel with f in [0.15, 0.35], multiplied by a gain in [2, 4]. The band is kept away from DC so
  the mean colour stays; boosting (not damping, which would repeat ``blur``) mimics the spectral
  peaks that up-sampling layers leave in generated faces.

The types run on the CPU with OpenCV and numpy (50x faster than torch's conv2d for a 13-tap
blur on one image); altered copies are clamped to [0, 1]. Pixels where M = 0 are returned
unchanged, bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import torch

from .masks import as_face_mask, discrepancy_mask
from .spec import DiscrepancySpec

COLOUR_SHIFT_RANGE = (0.03, 0.10)
CONTRAST_RANGE = (0.8, 1.2)
BLUR_SIGMA_RANGE = (1.0, 2.0)
RESAMPLE_FACTORS = (2, 3, 4)
FREQUENCY_BAND_START_RANGE = (0.15, 0.35)
FREQUENCY_BAND_WIDTH = 0.15
FREQUENCY_GAIN_RANGE = (2.0, 4.0)
SHARPEN_AMOUNT_RANGE = (0.2, 0.5)
SHARPEN_SIGMA = 1.0


def colour_change(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    shift = rng.uniform(*COLOUR_SHIFT_RANGE, size=3) * rng.choice((-1.0, 1.0), size=3)
    contrast = rng.uniform(*CONTRAST_RANGE)
    mean = pixels.mean(axis=(0, 1), keepdims=True)
    return (pixels - mean) * contrast + mean + shift.astype(pixels.dtype)


def gaussian_blur(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    sigma = rng.uniform(*BLUR_SIGMA_RANGE)
    return cv2.GaussianBlur(
        pixels, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REPLICATE
    )


def resample(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    factor = int(rng.choice(RESAMPLE_FACTORS))
    height, width = pixels.shape[:2]
    small_size = (max(1, width // factor), max(1, height // factor))  # OpenCV sizes are (w, h)
    small = cv2.resize(pixels, small_size, interpolation=cv2.INTER_NEAREST)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR).reshape(pixels.shape)


def frequency_band_boost(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    band_start = rng.uniform(*FREQUENCY_BAND_START_RANGE)
    gain = rng.uniform(*FREQUENCY_GAIN_RANGE)
    height, width = pixels.shape[:2]
    # A radial mask on the (symmetric) frequency grid keeps the spectrum Hermitian: irfft2 is real.
    radius = np.hypot(np.fft.fftfreq(height)[:, None], np.fft.rfftfreq(width)[None, :])
    band = (radius >= band_start) & (radius < band_start + FREQUENCY_BAND_WIDTH)
    band_gain = np.where(band, gain, 1.0).astype(pixels.dtype)[:, :, None]
    spectrum = np.fft.rfft2(pixels, axes=(0, 1)) * band_gain
    return np.fft.irfft2(spectrum, s=(height, width), axes=(0, 1))


def sharpen(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    amount = rng.uniform(*SHARPEN_AMOUNT_RANGE)
    blurred = cv2.GaussianBlur(
        pixels, (0, 0), sigmaX=SHARPEN_SIGMA, sigmaY=SHARPEN_SIGMA, borderType=cv2.BORDER_REPLICATE
    )
    return pixels + amount * (pixels - blurred)


def self_blend_source(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    changed = colour_change(pixels, rng)
    return resample(changed, rng) if rng.random() < 0.5 else sharpen(changed, rng)


# Each takes and returns float32 (H, W, 3) pixels; the result is clamped to [0, 1] by the caller.
DISCREPANCY_FUNCTIONS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "colour": colour_change,
    "blur": gaussian_blur,
    "resample": resample,
    "spatial": self_blend_source,
    "frequency": frequency_band_boost,
}


def check_image(image: object) -> torch.Tensor:
    """Validate a float image tensor of shape (3, H, W) with values in [0, 1]."""
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"image must be a torch.Tensor, got {type(image).__name__}")
    if not image.is_floating_point():
        raise TypeError(
            f"image must be a floating-point tensor with values in [0, 1], got dtype {image.dtype}"
        )
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"image must have shape (3, H, W), got {tuple(image.shape)}")
    if image.numel() == 0:
        raise ValueError(f"image must not be empty, got shape {tuple(image.shape)}")
    if not torch.isfinite(image).all() or image.min() < 0 or image.max() > 1:
        raise ValueError("image values must be finite and in [0, 1]")
    return image


def apply_discrepancy(
    image: torch.Tensor,
    k: int,
    spec: DiscrepancySpec,
    rng: np.random.Generator,
    face_mask: torch.Tensor | np.ndarray | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plant the soft discrepancy of class k in ``image``.

    Args:
        image: float tensor (3, H, W) in [0, 1].
        k: class in [0, spec.K).
        spec: the discrepancy classes.
        rng: source of the blend weight and the type's parameters (one draw sequence per call).
        face_mask: bool (H, W); None uses a centred face ellipse.

    Returns:
        (discrepant image, same shape and dtype; soft mask M, (H, W), 0 outside cell k and the
        face). Draws from ``rng`` in a fixed order, so a seeded rng makes the result repeatable.
    """
    image = check_image(image)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    if not isinstance(spec, DiscrepancySpec):
        raise TypeError(f"spec must be a DiscrepancySpec, got {type(spec).__name__}")
    row, col = spec.location_of(k)  # checks k
    height, width = image.shape[1:]
    face = as_face_mask(face_mask, height, width)

    blend_weight = rng.uniform(*spec.blend_range)
    mask = (discrepancy_mask(face, row, col, spec) * blend_weight).to(image.dtype).to(image.device)
    pixels = image.detach().float().cpu().permute(1, 2, 0).numpy()
    altered = DISCREPANCY_FUNCTIONS[spec.type_of(k)](pixels, rng).astype(np.float32).clip(0, 1)
    source = torch.from_numpy(altered).permute(2, 0, 1).to(image.dtype).to(image.device)
    return mask * source + (1 - mask) * image, mask
