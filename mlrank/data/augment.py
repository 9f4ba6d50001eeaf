"""Augmentation (supplementary B of the paper): weak jitter and the self-blended pseudo-fake.

Images are float32 tensors [3, H, W] in [0, 1]; every random draw comes from the
``numpy.random.Generator`` passed in, so one seed gives one result.

*Weak* (:class:`WeakAugment`): random resized crop, horizontal flip, colour jitter, Gaussian blur,
with torchvision's tensor ops. :class:`HorizontalFlip` is the flip alone, for data whose traces live
on the pixel grid (the built-in synthetic set).

*Strong* (:func:`self_blended_image`): a pseudo-fake made from a real face as in Self-Blended Images
(Shiohara and Yamasaki, CVPR 2022): a face region (convex hull of the landmarks, a given face mask,
or a centred ellipse) is moved with the source by a small affine jitter, deformed elastically,
eroded and blurred into a soft mask, and a colour- and quality-shifted copy of the face (the source)
is blended over the untouched image (the target) through that mask times a random ratio.

Decisions:

- SBI randomly transforms either the source or the target. Here only the source is transformed, so
  that pixels outside the mask are exactly the input's: the pseudo-fake differs from its real image
  only where the returned mask says so (the mask is then a true localisation target).
- SBI's lengths were set on face crops of about 256 pixels. Kernel sizes, blur widths and the elastic
  displacement are given at that reference side and scaled by min(H, W) / 256, so a 64-pixel test
  image and a 384-pixel training crop get the same relative distortion.
- SBI's erosion (blur, then keep only pixels at the maximum) is a square erosion; it is written here
  as ``cv2.erode``. If it would erase a small region entirely, the region is kept un-eroded.
- SBI's hue/saturation/value limits (0.3 on uint8 scales) are nearly no-ops; a visible but mild HSV
  shift (hue 5 degrees, saturation and value 0.05) is used instead. Sharpening uses the classic
  3x3 sharpen kernel mixed with the identity, as SBI's choice of library does.
- The elastic field is smoothed uniform noise scaled to a maximum displacement of 1.5% of the side
  (SBI's alpha=50, sigma=7 give about 1% on its crops); a bounded field keeps the mask close to the
  face region by a known margin.
- The blend ratio is drawn from SBI's {0.25, 0.5, 0.75, 1, 1, 1}. The returned mask includes it: it is
  the per-pixel weight of the source, ``pseudo_fake = mask * source + (1 - mask) * image``.
- Weak colour jitter changes brightness, contrast and saturation but not hue: hue shifts give
  unnatural skin, and the strong augmentation already shifts the colour of the blended region.
  The crop keeps the input's aspect ratio (faces are not stretched).
"""

from __future__ import annotations

import math
import numbers

import cv2
import numpy as np
import torch
import torchvision.transforms.v2.functional as TF

_REFERENCE_SIDE = 256

# SBI's parameters, at the reference side where they are lengths.
_BLEND_RATIOS = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)
_ERODE_KERNEL = (5, 25)
_BLUR_KERNEL = (5, 25)
_BLUR_SIGMA = (5.0, 45.0)
_ELASTIC_SIGMA = 7.0
_ELASTIC_MAX_SHIFT = 0.015  # of the side
_AFFINE_SHIFT = (0.03, 0.015)  # of the width, of the height
_AFFINE_SCALE = (0.95, 1 / 0.95)
_RGB_SHIFT = 20 / 255
_RGB_SHIFT_P = 0.3
_HUE_SHIFT_DEGREES = 5.0
_SATURATION_SHIFT = 0.05
_VALUE_SHIFT = 0.05
_BRIGHTNESS = 0.1
_CONTRAST = 0.1
_DOWNSCALE_FACTORS = (2, 4)
_SHARPEN_ALPHA = (0.2, 0.5)
_SHARPEN_LIGHTNESS = (0.5, 1.0)

# Face ellipse for crops without landmarks: centred, covering brows to chin of an aligned crop.
_ELLIPSE_SEMI_AXES = (0.36, 0.44)  # of the width, of the height

_WEAK_BLUR_SIGMA = (0.1, 2.0)  # at the reference side


def _check_image(image: object, name: str = "image") -> None:
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor [3, H, W], got {type(image).__name__}")
    if not image.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor in [0, 1], got dtype {image.dtype}")
    if image.dim() != 3 or image.shape[0] != 3 or image.shape[1] < 2 or image.shape[2] < 2:
        raise ValueError(f"{name} must have shape [3, H, W] with H, W >= 2, got {tuple(image.shape)}")
    low, high = torch.aminmax(image)
    if not (0.0 <= low.item() and high.item() <= 1.0):  # also rejects NaN
        raise ValueError(
            f"{name} values must lie in [0, 1], got min {low.item()} and max {high.item()}"
        )


def _check_rng(rng: object) -> None:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), got {type(rng).__name__}"
        )


def _to_hwc(image: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(image.detach().to("cpu", torch.float32).permute(1, 2, 0).numpy())


# ---------------------------------------------------------------------------------------------
# Weak augmentation
# ---------------------------------------------------------------------------------------------


class WeakAugment:
    """Random resized crop to ``size`` x ``size``, flip, colour jitter and blur.

    Args:
        size: side of the square output.
        crop_scale: range of the crop's area as a fraction of the image's (aspect ratio kept).
        flip_p: probability of a horizontal flip.
        jitter: brightness, contrast and saturation factors are drawn in [1 - jitter, 1 + jitter].
        blur_p: probability of a Gaussian blur, sigma in [0.1, 2.0] pixels at a 256 side.

    Call as ``augment(image, rng)`` with an image [3, H, W] in [0, 1]; returns [3, size, size].
    """

    def __init__(
        self,
        size: int,
        crop_scale: tuple[float, float] = (0.8, 1.0),
        flip_p: float = 0.5,
        jitter: float = 0.2,
        blur_p: float = 0.2,
    ) -> None:
        if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
            raise ValueError(f"size must be an integer >= 1, got {size!r}")
        if len(crop_scale) != 2 or not 0 < crop_scale[0] <= crop_scale[1] <= 1:
            raise ValueError(f"crop_scale must be (low, high) with 0 < low <= high <= 1, got {crop_scale!r}")
        for name, p in (("flip_p", flip_p), ("blur_p", blur_p)):
            if not 0 <= p <= 1:
                raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")
        if not 0 <= jitter < 1:
            raise ValueError(f"jitter must lie in [0, 1), got {jitter!r}")
        self.size = int(size)
        self.crop_scale = (float(crop_scale[0]), float(crop_scale[1]))
        self.flip_p = float(flip_p)
        self.jitter = float(jitter)
        self.blur_p = float(blur_p)

    def __repr__(self) -> str:
        return (
            f"WeakAugment(size={self.size}, crop_scale={self.crop_scale}, flip_p={self.flip_p}, "
            f"jitter={self.jitter}, blur_p={self.blur_p})"
        )

    def __call__(self, image: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        _check_image(image)
        _check_rng(rng)
        height, width = image.shape[-2:]
        # Every parameter is drawn up front, whatever is applied, so two calls with equally seeded
        # generators on equally sized images make the same choices (see the sampler's real/pseudo pair).
        side_fraction = math.sqrt(rng.uniform(*self.crop_scale))
        crop_height = max(1, round(height * side_fraction))
        crop_width = max(1, round(width * side_fraction))
        top = int(rng.integers(0, height - crop_height + 1))
        left = int(rng.integers(0, width - crop_width + 1))
        flip = rng.random() < self.flip_p
        brightness, contrast, saturation = rng.uniform(1 - self.jitter, 1 + self.jitter, size=3)
        blur = rng.random() < self.blur_p
        sigma = rng.uniform(*_WEAK_BLUR_SIGMA) * self.size / _REFERENCE_SIDE

        out = TF.resized_crop(
            image.float(), top, left, crop_height, crop_width, [self.size, self.size], antialias=True
        )
        if flip:
            out = TF.horizontal_flip(out)
        if self.jitter > 0:
            out = TF.adjust_brightness(out, float(brightness))
            out = TF.adjust_contrast(out, float(contrast))
            out = TF.adjust_saturation(out, float(saturation))
        if blur:
            # Reflect padding needs the kernel's radius below the side.
            radius = min(math.ceil(3 * sigma), self.size - 1)
            if radius > 0:
                out = TF.gaussian_blur(out, [2 * radius + 1] * 2, [sigma, sigma])
        return out.clamp_(0.0, 1.0)


class HorizontalFlip:
    """A horizontal flip with probability ``p``, nothing else: the pixels keep their values and
    their grid, so periodic traces (a generator's fingerprint) survive, which the weak augmentation's
    resampled crop and blur would wipe out.

    Call as ``flip(image, rng)`` with an image [3, H, W] in [0, 1]; returns [3, H, W].
    """

    def __init__(self, p: float = 0.5) -> None:
        if not 0 <= p <= 1:
            raise ValueError(f"p must be a probability in [0, 1], got {p!r}")
        self.p = float(p)

    def __repr__(self) -> str:
        return f"HorizontalFlip(p={self.p})"

    def __call__(self, image: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        _check_image(image)
        _check_rng(rng)
        return image.flip(-1) if rng.random() < self.p else image


# ---------------------------------------------------------------------------------------------
# Strong augmentation: Self-Blended Images
# ---------------------------------------------------------------------------------------------


def self_blended_image(
    image: torch.Tensor,
    rng: np.random.Generator,
    landmarks: np.ndarray | torch.Tensor | None = None,
    face_mask: np.ndarray | torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A pseudo-fake of ``image`` made by blending a transformed copy of it over itself.

    Args:
        image: float [3, H, W] in [0, 1], a real face.
        rng: the generator every random choice is drawn from.
        landmarks: K x 2 facial landmarks, (x, y) in pixels, K >= 3; their convex hull is the region.
        face_mask: [H, W] face region (bool, or float binarised at 0.5), used when no landmarks.
            With neither, a centred face ellipse is used.

    Returns:
        ``(pseudo_fake, mask)``: float32 [3, H, W] in [0, 1] and the soft blend weight float32 [H, W]
        in [0, 1], with ``pseudo_fake = mask * source + (1 - mask) * image``; where ``mask == 0``
        the pseudo-fake equals ``image`` exactly.
    """
    _check_image(image)
    _check_rng(rng)
    height, width = image.shape[-2:]
    scale = min(height, width) / _REFERENCE_SIDE
    target = _to_hwc(image)

    region = _face_region(height, width, landmarks, face_mask)
    source = _transform_source(target, rng)
    source, region = _affine_jitter(source, region, rng)
    region = _elastic_deform(region, rng, scale)
    mask = _soften(region, rng, scale) * float(rng.choice(_BLEND_RATIOS))

    # target + w (source - target) is the blend, and exactly the target where w == 0.
    pseudo_fake = target + mask[:, :, None] * (source - target)
    np.clip(pseudo_fake, 0.0, 1.0, out=pseudo_fake)
    return (
        torch.from_numpy(np.ascontiguousarray(pseudo_fake.transpose(2, 0, 1))),
        torch.from_numpy(mask),
    )


def _face_region(
    height: int,
    width: int,
    landmarks: np.ndarray | torch.Tensor | None,
    face_mask: np.ndarray | torch.Tensor | None,
) -> np.ndarray:
    """The hard face region, float32 {0, 1} [H, W]."""
    region = np.zeros((height, width), np.float32)
    if landmarks is not None:
        points = np.asarray(landmarks.cpu() if isinstance(landmarks, torch.Tensor) else landmarks, np.float64)
        if points.ndim != 2 or points.shape[1] != 2 or points.shape[0] < 3:
            raise ValueError(
                f"landmarks must be an array K x 2 of (x, y) with K >= 3, got shape {points.shape}"
            )
        if not np.isfinite(points).all():
            raise ValueError("landmarks contain NaN or Inf")
        hull = cv2.convexHull(np.round(points).astype(np.int32))
        cv2.fillConvexPoly(region, hull, 1.0)
        if not region.any():
            raise ValueError(
                f"the convex hull of the landmarks covers no pixel of the {height}x{width} image "
                f"(x in [{points[:, 0].min()}, {points[:, 0].max()}], "
                f"y in [{points[:, 1].min()}, {points[:, 1].max()}])"
            )
    elif face_mask is not None:
        if isinstance(face_mask, torch.Tensor):
            face_mask = face_mask.detach().cpu().numpy()
        given = np.asarray(face_mask)
        if given.shape != (height, width):
            raise ValueError(
                f"face_mask must have shape {(height, width)} (the image's H, W), got {given.shape}"
            )
        region[given.astype(np.float32) > 0.5] = 1.0
        if not region.any():
            raise ValueError("face_mask is empty (no value > 0.5)")
    else:
        centre = (round((width - 1) / 2), round((height - 1) / 2))
        axes = (max(1, round(_ELLIPSE_SEMI_AXES[0] * width)), max(1, round(_ELLIPSE_SEMI_AXES[1] * height)))
        cv2.ellipse(region, centre, axes, 0.0, 0.0, 360.0, 1.0, thickness=-1)
    return region


def _transform_source(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """SBI's source transforms: RGB shift (p = 0.3), HSV shift, brightness and contrast, then
    either a downscale-upscale or a sharpening (even odds)."""
    source = image  # every step below makes a new array: the target is never written
    if rng.random() < _RGB_SHIFT_P:
        source = np.clip(source + rng.uniform(-_RGB_SHIFT, _RGB_SHIFT, size=3).astype(np.float32), 0, 1)

    # Random scalars are made Python floats so that float32 arrays stay float32 (NEP 50).
    hsv = cv2.cvtColor(source, cv2.COLOR_RGB2HSV)  # float: H in [0, 360), S and V in [0, 1]
    hue, saturation, value = (float(x) for x in rng.uniform(-1, 1, size=3))
    hsv[..., 0] = np.mod(hsv[..., 0] + hue * _HUE_SHIFT_DEGREES, 360.0)
    hsv[..., 1] = np.clip(hsv[..., 1] + saturation * _SATURATION_SHIFT, 0, 1)
    hsv[..., 2] = np.clip(hsv[..., 2] + value * _VALUE_SHIFT, 0, 1)
    source = np.clip(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB), 0, 1)

    brightness = float(rng.uniform(-_BRIGHTNESS, _BRIGHTNESS))
    contrast = 1.0 + float(rng.uniform(-_CONTRAST, _CONTRAST))
    mean = float(source.mean())
    source = np.clip(source * contrast + (mean * (1.0 - contrast) + brightness), 0, 1)

    if rng.random() < 0.5:
        return _downscale_upscale(source, int(rng.choice(_DOWNSCALE_FACTORS)))
    return _sharpen(source, float(rng.uniform(*_SHARPEN_ALPHA)), float(rng.uniform(*_SHARPEN_LIGHTNESS)))


def _downscale_upscale(image: np.ndarray, factor: int) -> np.ndarray:
    """Loses detail as a low-quality face would: nearest down by ``factor``, bilinear back up."""
    height, width = image.shape[:2]
    small = cv2.resize(
        image, (max(1, width // factor), max(1, height // factor)), interpolation=cv2.INTER_NEAREST
    )
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def _sharpen(image: np.ndarray, alpha: float, lightness: float) -> np.ndarray:
    """The 3x3 sharpen kernel (centre 8 + lightness, neighbours -1) mixed with the identity by alpha."""
    kernel = np.full((3, 3), -1.0, np.float32)
    kernel[1, 1] = 8.0 + lightness
    identity = np.zeros((3, 3), np.float32)
    identity[1, 1] = 1.0
    kernel = (1.0 - alpha) * identity + alpha * kernel
    return np.clip(cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_REFLECT_101), 0, 1)


def _affine_jitter(
    source: np.ndarray, region: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Shift and scale the source together with the region, so the blend misaligns the face slightly."""
    height, width = region.shape
    scale = float(rng.uniform(*_AFFINE_SCALE))
    shift_x = float(rng.uniform(-1, 1)) * _AFFINE_SHIFT[0] * width
    shift_y = float(rng.uniform(-1, 1)) * _AFFINE_SHIFT[1] * height
    centre_x, centre_y = (width - 1) / 2, (height - 1) / 2
    matrix = np.array(
        [
            [scale, 0.0, (1 - scale) * centre_x + shift_x],
            [0.0, scale, (1 - scale) * centre_y + shift_y],
        ]
    )
    moved_region = cv2.warpAffine(
        region, matrix, (width, height),
        flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0,
    )
    if not moved_region.any():  # a tiny region pushed off the image: keep both unmoved
        return source, region
    moved_source = cv2.warpAffine(
        source, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
    )
    return moved_source, moved_region


def _elastic_deform(region: np.ndarray, rng: np.random.Generator, scale: float) -> np.ndarray:
    """Roughen the region's outline with a smooth random displacement field."""
    height, width = region.shape
    sigma = max(_ELASTIC_SIGMA * scale, 0.5)
    max_shift = _ELASTIC_MAX_SHIFT * min(height, width)
    # The field is smooth over ~sigma pixels, so it is drawn on a grid `step` times coarser and
    # upsampled: the same kind of field for a fraction of the noise and blur cost.
    step = max(1, int(sigma // 2))
    coarse_shape = (math.ceil(height / step), math.ceil(width / step))
    noise = rng.uniform(-1, 1, size=(2, *coarse_shape)).astype(np.float32)
    field = []
    for component in noise:
        smooth = cv2.GaussianBlur(component, (0, 0), sigma / step)
        smooth = cv2.resize(smooth, (width, height), interpolation=cv2.INTER_LINEAR)
        field.append(smooth * (max_shift / max(float(np.abs(smooth).max()), 1e-12)))
    grid_y, grid_x = np.mgrid[0:height, 0:width].astype(np.float32)
    deformed = cv2.remap(
        region, grid_x + field[0], grid_y + field[1], interpolation=cv2.INTER_NEAREST,
        borderMode=cv2.BORDER_CONSTANT, borderValue=0,
    )
    return deformed if deformed.any() else region


def _soften(region: np.ndarray, rng: np.random.Generator, scale: float) -> np.ndarray:
    """SBI's blend mask: erode, Gaussian-blur, normalise to a maximum of 1."""
    erode_size = _scaled_odd(int(rng.integers(_ERODE_KERNEL[0] // 2, _ERODE_KERNEL[1] // 2 + 1)), scale)
    blur_size = _scaled_odd(int(rng.integers(_BLUR_KERNEL[0] // 2, _BLUR_KERNEL[1] // 2 + 1)), scale)
    blur_sigma = max(float(rng.uniform(*_BLUR_SIGMA)) * scale, 0.5)

    eroded = cv2.erode(region, np.ones((erode_size, erode_size), np.uint8))
    if eroded.any():
        region = eroded
    soft = cv2.GaussianBlur(region, (blur_size, blur_size), blur_sigma)
    # Gaussian weights are positive, so pixels farther than the kernel's radius from the region
    # stay exactly 0 and the blend leaves them untouched.
    soft *= 1.0 / float(soft.max())
    return np.clip(soft, 0.0, 1.0, out=soft)


def _scaled_odd(reference_radius: int, scale: float) -> int:
    """An odd kernel size whose radius is ``reference_radius`` at the reference side."""
    return 2 * max(1, round(reference_radius * scale)) + 1
