"""Sequential manipulation of a procedural face: the ten edits and the traces they leave.

The generative model, modelled on how Seq-DeepFake was made (every edit is a GAN pass that
regenerates the whole image and pastes the edited region in):

    X_0 = camera(render(F_0))
    for t, c in enumerate(sequence):
        F_t   = F_{t-1} with part c redrawn (`EDITS[c]`, drawn at least a third of each range away
                from the old value, so the change is always visible)
        P_t   = trace_c(render(F_t))          the edit's own trace on the whole regenerated face:
                                              a colour shift and a resampling (down- then up-scaling)
        A_t   = blur(region_c(F_{t-1}, F_t))  where part c was and is, grown by a margin and feathered
                                              by a Gaussian: the blend seam; sigma differs per edit
        X_t   = regenerate_t(X_{t-1} + A_t (P_t - X_{t-1})) + A_t G_c
                                              the whole image resampled and given a tone curve,
                                              then the edit's generator fingerprint G_c (a zero-mean
                                              pattern of period 3 to 5 pixels, tiled on the pixel
                                              grid) stamped on its region

Consequences that make the order recoverable from the pixels, as in the real data:
* each edit leaves its own trace inside its region (seam, colour shift, resampling blur, and the
  periodic fingerprint that a GAN's up-sampling layers leave);
* every later edit re-processes the whole image, so earlier traces are blurred and re-toned once
  more per later step: the last edit's trace is the crispest, and an early fingerprint fades;
* regions overlap (always eye/eyebrow, nose/lip, nose/eye, beard/smiling, young/everything; often
  eyebrow/hair, bangs/eyeglasses), and inside an overlap the later edit's patch replaces what the
  earlier one left, its trace included.
The content of an edit is cumulative: F_t keeps every earlier edit, as a sequential editor that
starts from the current image would, so each listed component stays visibly changed at the end.

Each component's edit draws from its own random stream, and step t's re-processing is the t-th
draw of the image's step stream, so swapping two edits changes nothing but their order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from .face_geometry import (bangs_polygon, beard_zone, brow_centreline, brow_polygon, eye_arcs, eye_centres,
                            glasses_arms, glasses_rims, lips_extent, nose_points, pose_matrix, to_pixels)
from .face_model import (FRAME_COLOURS, Bangs, Beard, Face, Glasses, palette, sample_brows, sample_eyes,
                         sample_hair, sample_lips, sample_nose)
from .face_rendering import Base, render_base, render_features
from .painting import SUBPIXEL_BITS, fixed_point

# Edits that change the first rendering pass (hair, skin); the others only repaint features.
BASE_EDITS = frozenset({"hair", "Young"})


# ---------------------------------------------------------------- new parameters, per edit


def _new_nose(face: Face, rng: np.random.Generator) -> Face:
    return dataclasses.replace(face, nose=sample_nose(rng, unlike=face.nose))


def _new_eyes(face: Face, rng: np.random.Generator) -> Face:
    return dataclasses.replace(face, eyes=sample_eyes(rng, unlike=face.eyes))


def _new_brows(face: Face, rng: np.random.Generator) -> Face:
    return dataclasses.replace(face, brows=sample_brows(rng, face.hair.colour, unlike=face.brows))


def _new_lips(face: Face, rng: np.random.Generator) -> Face:
    return dataclasses.replace(face, lips=sample_lips(rng, face.skin.colour, unlike=face.lips))


def _new_hair(face: Face, rng: np.random.Generator) -> Face:
    return dataclasses.replace(face, hair=sample_hair(rng, unlike=face.hair))


def _add_bangs(face: Face, rng: np.random.Generator) -> Face:
    strands = int(rng.integers(9, 17))
    return dataclasses.replace(face, bangs=Bangs(
        depth=rng.uniform(0.75, 1.15), strands=strands, tips=rng.uniform(0.7, 1.0, strands),
        sweep=rng.uniform(-0.15, 0.15)))


def _add_glasses(face: Face, rng: np.random.Generator) -> Face:
    return dataclasses.replace(face, glasses=Glasses(
        colour=palette(rng, FRAME_COLOURS), half_width=rng.uniform(1.35, 1.7),
        half_height=rng.uniform(0.95, 1.3), squareness=rng.uniform(2.0, 4.5),
        thickness=rng.uniform(0.006, 0.012), tint=rng.uniform(0.05, 0.35)))


def _add_beard(face: Face, rng: np.random.Generator) -> Face:
    return dataclasses.replace(face, beard=Beard(
        density=rng.uniform(0.55, 0.95), reach=rng.uniform(0.2, 0.9), moustache=bool(rng.random() < 0.7),
        stubble=rng.standard_normal((16, 16)).astype(np.float32)))


def _add_smile(face: Face, rng: np.random.Generator) -> Face:
    lips = face.lips
    return dataclasses.replace(face, lips=dataclasses.replace(
        lips, smile=rng.uniform(0.65, 1.0), open=rng.uniform(0.3, 0.9),
        half_width=lips.half_width * rng.uniform(1.05, 1.15)))


def _make_young(face: Face, rng: np.random.Generator) -> Face:
    skin = face.skin
    brighter = skin.colour * rng.uniform(1.03, 1.09) + np.float32([6, 2, 2])
    return dataclasses.replace(face, skin=dataclasses.replace(
        skin, age=0.0, colour=np.minimum(brighter, 255).astype(np.float32),
        blotch_strength=skin.blotch_strength * 0.4, grain_strength=skin.grain_strength * 0.45))


EDITS: dict[str, Callable[[Face, np.random.Generator], Face]] = {
    "nose": _new_nose, "eye": _new_eyes, "eyebrow": _new_brows, "lip": _new_lips, "hair": _new_hair,
    "Bangs": _add_bangs, "Eyeglasses": _add_glasses, "Beard": _add_beard, "Smiling": _add_smile,
    "Young": _make_young,
}


# ---------------------------------------------------------------- regions


def _hull_region(groups: list[np.ndarray], size: int, margin: int) -> np.ndarray:
    """uint8 mask of the convex hull of each group of pixel points, grown by `margin` pixels."""
    hulls = [cv2.convexHull(fixed_point(points)) for points in groups]
    mask = np.zeros((size, size), np.uint8)
    for hull in hulls:
        cv2.fillPoly(mask, [hull], 255, cv2.LINE_8, SUBPIXEL_BITS)
    if margin:
        cv2.polylines(mask, hulls, True, 255, 2 * margin, cv2.LINE_8, SUBPIXEL_BITS)
    return mask


def _grown(alpha: np.ndarray, margin: int) -> np.ndarray:
    mask = (alpha > 0.5).astype(np.uint8) * 255
    if margin:
        disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1))
        mask = cv2.dilate(mask, disc)
    return mask


def _between_brow_and_eye(face: Face, side: int) -> np.ndarray:
    """Points halfway from the brow to the eye centre: the band where the eye and brow regions meet."""
    return 0.5 * (brow_centreline(face, side) + np.array(eye_centres(face)[side]))


def _eye_reach(face: Face, side: int) -> np.ndarray:
    return np.concatenate([*eye_arcs(face, side), _between_brow_and_eye(face, side)])


def _brow_reach(face: Face, side: int) -> np.ndarray:
    return np.concatenate([brow_polygon(face, side), _between_brow_and_eye(face, side)])


def _nose_reach(face: Face) -> np.ndarray:
    """The nose with the philtrum below it and the inner eye corners' skin beside its bridge."""
    head = face.head
    x = head.centre[0] + head.feature_shift
    return np.concatenate([nose_points(face), [(x, head.mouth_y - face.lips.upper),
                                               (x - 0.03, head.eye_y), (x + 0.03, head.eye_y)]])


def _lips_reach(face: Face) -> np.ndarray:
    """The lips (with cheeks and folds when smiling) up to the base of the nose."""
    return np.concatenate([lips_extent(face), nose_points(face)[4:]])


def edit_region(name: str, before: Face, after: Face, base_before: Base, base_after: Base, size: int,
                margin: int) -> np.ndarray:
    """uint8 (0/255) mask of where part `name` is in either face, grown by `margin` pixels.

    Neighbouring regions are drawn to overlap, as face-parsing masks do: nose and lip share the
    philtrum, nose and eye the skin beside the bridge, eye and eyebrow the band between them.
    """
    to_px = lambda face, points: to_pixels(points, pose_matrix(face, size))  # noqa: E731
    both = (before, after)
    if name == "nose":
        return _hull_region([np.concatenate([to_px(f, _nose_reach(f)) for f in both])], size, margin)
    if name in ("eye", "eyebrow"):  # one region per side
        reach = _eye_reach if name == "eye" else _brow_reach
        groups = [np.concatenate([to_px(f, reach(f, side)) for f in both]) for side in (0, 1)]
        return _hull_region(groups, size, margin)
    if name in ("lip", "Smiling"):
        return _hull_region([np.concatenate([to_px(f, _lips_reach(f)) for f in both])], size, margin)
    if name == "hair":
        return _grown(np.maximum(base_before.hair_alpha, base_after.hair_alpha), margin)
    if name == "Bangs":
        return _hull_region([to_px(after, bangs_polygon(after))], size, margin)
    if name == "Eyeglasses":
        parts = glasses_rims(after) + glasses_arms(after)
        return _hull_region([to_px(after, part) for part in parts], size, margin)
    if name == "Beard":
        return _grown(beard_zone(after, size, base_after.face_alpha), margin)
    if name == "Young":
        return _grown(base_after.face_alpha, margin)
    raise ValueError(f"unknown edit {name!r}; expected one of {sorted(EDITS)}")


# ---------------------------------------------------------------- traces and re-processing


@dataclass(frozen=True)
class EditTrace:
    """How one edit's patch differs from its surroundings."""

    margin: float  # region growth, canonical units
    feather: float  # Gaussian sigma of the seam, canonical units
    colour_shift: np.ndarray  # (3,) levels added to the patch
    resample: float  # the patch is down-scaled by this factor, then up-scaled back
    fingerprint: np.ndarray  # (p, p, 3) zero-mean levels, tiled over the region on the pixel grid


def sample_trace(rng: np.random.Generator) -> EditTrace:
    brightness = rng.choice([-1.0, 1.0]) * rng.uniform(8, 14)  # a regenerated patch is never quite in tone
    margin, feather = rng.uniform(0.01, 0.03), rng.uniform(0.006, 0.02)
    colour_shift = (brightness + rng.normal(0, 3, 3)).astype(np.float32)
    resample = rng.uniform(0.55, 0.85)
    # The generator's fingerprint: its up-sampling layers leave a periodic pattern (period 3 to 5
    # pixels at any image size, as a GAN's is in pixels), stamped on the region after the pass.
    period = int(rng.integers(3, 6))
    tile = rng.standard_normal((period, period, 3))
    tile -= tile.mean(axis=(0, 1))
    tile *= rng.uniform(15, 25) / max(float(tile.std()), 1e-6)
    return EditTrace(margin=margin, feather=feather, colour_shift=colour_shift, resample=resample,
                     fingerprint=tile.astype(np.float32))


def _fingerprint(trace: EditTrace, x: int, y: int, width: int, height: int) -> np.ndarray:
    """The trace's periodic pattern over the window at (x, y), aligned to the image's pixel grid."""
    period = trace.fingerprint.shape[0]
    rows = (np.arange(y, y + height) % period)[:, None]
    cols = (np.arange(x, x + width) % period)[None, :]
    return trace.fingerprint[rows, cols]


def _resampled(image: np.ndarray, factor: float) -> np.ndarray:
    height, width = image.shape[:2]
    # Bilinear both ways: for factors above 1/2 it barely aliases, and it is 5x cheaper than INTER_AREA.
    small = cv2.resize(image, (max(1, round(width * factor)), max(1, round(height * factor))),
                       interpolation=cv2.INTER_LINEAR)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


_LEVELS = np.arange(256) / 255.0


def tone_curve(rng: np.random.Generator, gamma_range: float, gain_range: float) -> np.ndarray:
    """(256, 1, 3) uint8 lookup table: a random gamma and per-channel gain."""
    gamma = rng.uniform(1 - gamma_range, 1 + gamma_range)
    gains = rng.uniform(1 - gain_range, 1 + gain_range, 3)
    curve = np.outer(_LEVELS**gamma, gains * 255) + 0.5
    return np.minimum(curve, 255).astype(np.uint8)[:, None, :]


def camera(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The capture of every image, originals included: a random tone curve."""
    return cv2.LUT(image, tone_curve(rng, 0.08, 0.03))


def regenerate(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The whole-image re-processing after each edit: a mild resampling and a tone curve."""
    return cv2.LUT(_resampled(image, rng.uniform(0.85, 0.97)), tone_curve(rng, 0.025, 0.01))


def publish(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """JPEG round trip of every final image, so compression is no cue to manipulation."""
    # cv2 takes our RGB for BGR on both ends: only the chroma weights swap, the channel order survives.
    quality = int(rng.integers(85, 98))
    _, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(encoded, cv2.IMREAD_COLOR)


def apply_edit(image: np.ndarray, face: Face, base: Base, name: str, edit_rng: np.random.Generator,
               step_rng: np.random.Generator) -> tuple[np.ndarray, Face, Base, np.ndarray]:
    """One edit of part `name` on uint8 `image`: (new image, new face, new base, bool region).

    `edit_rng` gives the new part and its trace, `step_rng` the whole-image re-processing, which
    always takes the same number of draws so that a shared step stream stays aligned.
    """
    size = image.shape[0]
    edited = EDITS[name](face, edit_rng)
    trace = sample_trace(edit_rng)
    edited_base = render_base(edited, size) if name in BASE_EDITS else base
    region = edit_region(name, face, edited, base, edited_base, size, margin=round(trace.margin * size))
    alpha = cv2.GaussianBlur(region, (0, 0), max(trace.feather * size, 0.5))

    x, y, width, height = cv2.boundingRect(alpha)
    if width and height:
        window = (slice(y, y + height), slice(x, x + width))
        patch = render_features(edited_base, edited, size, wanted=alpha)
        patch = patch[window].astype(np.float32)
        patch = _resampled(np.clip(patch + trace.colour_shift, 0, 255), trace.resample)
        blended = image[window].astype(np.float32)
        blended += (patch - blended) * (alpha[window][..., None] * np.float32(1 / 255))
        image = image.copy()
        image[window] = np.clip(blended + 0.5, 0, 255)
    image = regenerate(image, step_rng)
    if width and height:
        # The generator's output layer leaves its fingerprint on the pasted region after the pass.
        stamped = image[window] + _fingerprint(trace, x, y, width, height) * (alpha[window][..., None] / 255)
        image[window] = np.clip(stamped + 0.5, 0, 255)
    return image, edited, edited_base, region > 127
