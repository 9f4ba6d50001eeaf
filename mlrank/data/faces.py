"""Procedural face renderer of the built-in synthetic Seq-DeepFake.

A face is a small parametric model, `Face`: one dataclass per part (head geometry, skin, hair, brows,
eyes, nose, lips, and the optional attributes bangs, glasses and beard) whose numbers live in a
canonical frame where the image is the unit square (x right, y down). Sizes are therefore independent
of the output resolution: the same `Face` renders at any `size`. A similarity transform (`Pose`: a
small roll, scale and shift) maps the frame to pixels, so every part turns and moves together.

Rendering is back to front, in two passes so that an edit of a feature can reuse the first:
* base (`render_base`): a smooth two-tone background, the back hair, neck, ears, the face oval with
  skin texture (low-frequency blotches, fine grain, shading towards the outline, age wrinkles), then
  the hair over the forehead down to a soft hairline;
* features (`render_features`): beard, nose, lips (and smiling cheeks), brows, eyes, bangs, glasses,
  each painted with anti-aliased masks inside its own bounding box.

`landmarks` gives the 68 points of the iBUG-300W layout (jaw 0-16, brows 17-26, nose 27-35, eyes
36-47, lips 48-67), the layout of dlib's predictor on which self-blended-image code is written, so
that code written for real faces can take them unchanged. Sampling functions (`sample_face`,
`sample_<part>`) draw a part from its ranges; given the part being replaced (`unlike=`), every number
is drawn at least a third of its range away from the old one and colours from another palette entry,
so that an edited part always looks different.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

Colour = np.ndarray  # float32 RGB, 0..255

SKIN_TONES = np.array(
    [(241, 214, 196), (226, 187, 163), (201, 150, 118), (165, 113, 82), (118, 80, 56), (86, 58, 42)],
    np.float32,
)
HAIR_COLOURS = np.array(
    [(28, 22, 20), (62, 42, 30), (108, 72, 46), (146, 74, 40), (204, 172, 112), (152, 150, 146),
     (226, 214, 188)],
    np.float32,
)
IRIS_COLOURS = np.array(
    [(92, 56, 30), (46, 31, 22), (122, 96, 52), (78, 112, 70), (76, 118, 172), (112, 122, 134)], np.float32
)
LIP_COLOURS = np.array(
    [(196, 86, 96), (214, 124, 134), (156, 72, 62), (176, 104, 112), (136, 58, 70)], np.float32
)
FRAME_COLOURS = np.array(
    [(20, 20, 22), (92, 60, 40), (192, 162, 82), (172, 172, 178), (150, 30, 42), (40, 60, 122)], np.float32
)

SUBPIXEL_BITS = 4  # cv2 drawing takes fixed-point coordinates: 1/16 pixel


@dataclass(frozen=True, eq=False)
class Pose:
    roll: float  # radians
    scale: float
    shift: tuple[float, float]  # canonical units


@dataclass(frozen=True, eq=False)
class Head:
    """Identity geometry, never edited: the face oval and where the features sit."""

    centre: tuple[float, float]
    half_width: float
    half_height: float
    upper_exponent: float  # superellipse exponents: 2 is an ellipse, lower is pointier
    lower_exponent: float
    feature_shift: float  # horizontal offset of the features: a hint of yaw
    eye_y: float
    eye_dx: float  # half the distance between the eye centres
    brow_y: float
    nose_tip_y: float
    mouth_y: float
    background: np.ndarray  # (2, 2, 3) corner colours of a smooth gradient


@dataclass(frozen=True, eq=False)
class Skin:
    colour: Colour
    blotches: np.ndarray  # (6, 6) low-resolution noise
    blotch_strength: float
    grain_strength: float
    grain_offset: tuple[int, int]
    age: float  # 0: no wrinkles


@dataclass(frozen=True, eq=False)
class Hair:
    colour: Colour
    back_half_width: float  # relative to the head's half width
    top: float  # how far above the head the hair reaches, relative to the half height
    length: float  # where the back hair ends, in half heights below the centre
    hairline: float  # hairline height above the centre, in half heights
    temple_drop: float  # how far the hairline comes down at the sides
    parting: float
    streaks: np.ndarray  # (3, 24) low-resolution noise: vertical strands
    streak_strength: float


@dataclass(frozen=True, eq=False)
class Brows:
    colour: Colour
    thickness: float
    length: float
    arch: float
    tilt: float
    inner_gap: float


@dataclass(frozen=True, eq=False)
class Eyes:
    half_width: float
    openness: float  # half height over half width
    iris_colour: Colour
    iris_size: float  # iris radius over half height
    tilt: float
    gaze: float


@dataclass(frozen=True, eq=False)
class Nose:
    half_width: float
    tip_radius: float
    nostril_size: float
    tip_drop: float  # moves the tip below the head's nose_tip_y
    shading: float
    light_side: float  # -1 or 1


@dataclass(frozen=True, eq=False)
class Lips:
    colour: Colour
    half_width: float
    upper: float
    lower: float
    bow: float  # depth of the cupid's bow, 0..1
    smile: float  # corners up; above 0.4 the cheeks rise and folds appear
    open: float  # 0: closed, else the teeth show


@dataclass(frozen=True, eq=False)
class Bangs:
    depth: float  # how far the fringe falls from the hairline towards (and past) the brows, 0..1.2
    strands: int
    tips: np.ndarray  # (strands,) jagged lengths
    sweep: float


@dataclass(frozen=True, eq=False)
class Glasses:
    colour: Colour
    half_width: float  # rim half width over the eye's
    half_height: float
    squareness: float  # superellipse exponent of the rims
    thickness: float
    tint: float


@dataclass(frozen=True, eq=False)
class Beard:
    density: float
    reach: float  # how far up the cheeks, 0..1
    moustache: bool
    stubble: np.ndarray  # (16, 16) low-resolution noise


@dataclass(frozen=True, eq=False)
class Face:
    pose: Pose
    head: Head
    skin: Skin
    hair: Hair
    brows: Brows
    eyes: Eyes
    nose: Nose
    lips: Lips
    bangs: Bangs | None = None
    glasses: Glasses | None = None
    beard: Beard | None = None


# ---------------------------------------------------------------- sampling


def _draw(rng: np.random.Generator, low: float, high: float, unlike: float | None = None) -> float:
    """Uniform in [low, high]; at least a third of the range away from `unlike` when given."""
    if unlike is None:
        return float(rng.uniform(low, high))
    gap = (high - low) / 3
    below, above = max(0.0, unlike - gap - low), max(0.0, high - unlike - gap)
    pick = rng.uniform(0, below + above)
    return float(low + pick if pick < below else unlike + gap + (pick - below))


def palette(rng: np.random.Generator, colours: np.ndarray, unlike: Colour | None = None,
            jitter: float = 10) -> Colour:
    """A palette entry (another one than the nearest to `unlike`), jittered."""
    choices = np.arange(len(colours))
    if unlike is not None:
        choices = choices[choices != np.argmin(np.abs(colours - unlike).sum(1))]
    return np.clip(colours[rng.choice(choices)] + rng.uniform(-jitter, jitter, 3), 0, 255).astype(np.float32)


def sample_skin(rng: np.random.Generator, *, min_age: float = 0.0) -> Skin:
    tone = rng.uniform(0, len(SKIN_TONES) - 1)
    low = int(tone)
    high = min(low + 1, len(SKIN_TONES) - 1)
    colour = SKIN_TONES[low] + (tone - low) * (SKIN_TONES[high] - SKIN_TONES[low])
    return Skin(
        colour=np.clip(colour + rng.uniform(-8, 8, 3), 0, 255).astype(np.float32),
        blotches=rng.standard_normal((6, 6)).astype(np.float32),
        blotch_strength=_draw(rng, 0.02, 0.06),
        grain_strength=_draw(rng, 0.008, 0.022),
        grain_offset=(int(rng.integers(0, 1 << 12)), int(rng.integers(0, 1 << 12))),
        age=_draw(rng, min_age, 1.0),
    )


def sample_hair(rng: np.random.Generator, unlike: Hair | None = None) -> Hair:
    old = unlike
    return Hair(
        colour=palette(rng, HAIR_COLOURS, None if old is None else old.colour),
        back_half_width=_draw(rng, 1.06, 1.32, old and old.back_half_width),
        top=_draw(rng, 1.03, 1.16, old and old.top),
        length=_draw(rng, -0.3, 1.4, old and old.length),
        hairline=_draw(rng, 0.52, 0.8, old and old.hairline),
        temple_drop=_draw(rng, 0.15, 0.6, old and old.temple_drop),
        parting=_draw(rng, -0.4, 0.4, old and old.parting),
        streaks=rng.standard_normal((3, 24)).astype(np.float32),
        streak_strength=_draw(rng, 0.06, 0.16, old and old.streak_strength),
    )


def sample_brows(rng: np.random.Generator, hair_colour: Colour, unlike: Brows | None = None) -> Brows:
    old = unlike
    darkness = _draw(rng, 0.45, 0.85)
    colour = hair_colour * darkness if old is None else palette(rng, HAIR_COLOURS[:4], old.colour) * darkness
    return Brows(
        colour=colour.astype(np.float32),
        thickness=_draw(rng, 0.007, 0.026, old and old.thickness),
        length=_draw(rng, 0.07, 0.12, old and old.length),
        arch=_draw(rng, 0.002, 0.025, old and old.arch),
        tilt=_draw(rng, -0.015, 0.015, old and old.tilt),
        inner_gap=_draw(rng, 0.012, 0.03, old and old.inner_gap),
    )


def sample_eyes(rng: np.random.Generator, unlike: Eyes | None = None) -> Eyes:
    old = unlike
    return Eyes(
        half_width=_draw(rng, 0.036, 0.052, old and old.half_width),
        openness=_draw(rng, 0.32, 0.6, old and old.openness),
        iris_colour=palette(rng, IRIS_COLOURS, None if old is None else old.iris_colour),
        iris_size=_draw(rng, 0.8, 1.25, old and old.iris_size),
        tilt=_draw(rng, -0.01, 0.012, old and old.tilt),
        gaze=_draw(rng, -0.25, 0.25, old and old.gaze),
    )


def sample_nose(rng: np.random.Generator, unlike: Nose | None = None) -> Nose:
    old = unlike
    return Nose(
        half_width=_draw(rng, 0.025, 0.06, old and old.half_width),
        tip_radius=_draw(rng, 0.01, 0.028, old and old.tip_radius),
        nostril_size=_draw(rng, 0.004, 0.012, old and old.nostril_size),
        tip_drop=_draw(rng, -0.02, 0.02, old and old.tip_drop),
        shading=_draw(rng, 0.1, 0.4, old and old.shading),
        light_side=float(rng.choice([-1.0, 1.0])),
    )


def sample_lips(rng: np.random.Generator, skin_colour: Colour, unlike: Lips | None = None) -> Lips:
    old = unlike
    colour = palette(rng, LIP_COLOURS, None if old is None else old.colour)
    mix = _draw(rng, 0.45, 0.8)
    return Lips(
        colour=(mix * colour + (1 - mix) * skin_colour).astype(np.float32),
        half_width=_draw(rng, 0.06, 0.09, old and old.half_width),
        upper=_draw(rng, 0.008, 0.02, old and old.upper),
        lower=_draw(rng, 0.012, 0.028, old and old.lower),
        bow=_draw(rng, 0.1, 0.7, old and old.bow),
        smile=_draw(rng, -0.15, 0.25, old and old.smile),
        open=0.0,
    )


def sample_face(rng: np.random.Generator, *, min_age: float = 0.0) -> Face:
    """A face without bangs, glasses or beard, with a neutral to slight smile."""
    half_height = rng.uniform(0.3, 0.35)
    centre = (0.5, 0.54 + rng.uniform(-0.02, 0.02))
    eye_y = centre[1] - half_height * rng.uniform(0.06, 0.16)
    head = Head(
        centre=centre,
        half_width=rng.uniform(0.22, 0.27),
        half_height=half_height,
        upper_exponent=rng.uniform(1.9, 2.5),
        lower_exponent=rng.uniform(1.6, 2.3),
        feature_shift=rng.uniform(-0.012, 0.012),
        eye_y=eye_y,
        eye_dx=rng.uniform(0.085, 0.105),
        brow_y=eye_y - rng.uniform(0.045, 0.065),
        nose_tip_y=centre[1] + half_height * rng.uniform(0.16, 0.26),
        mouth_y=centre[1] + half_height * rng.uniform(0.46, 0.56),
        background=np.clip(rng.uniform(30, 225, 3) + rng.uniform(-45, 45, (2, 2, 3)), 0, 255)
        .astype(np.float32),
    )
    pose = Pose(
        roll=rng.uniform(-0.12, 0.12), scale=rng.uniform(0.92, 1.06),
        shift=tuple(rng.uniform(-0.025, 0.025, 2)),
    )
    skin = sample_skin(rng, min_age=min_age)
    hair = sample_hair(rng)
    return Face(
        pose=pose,
        head=head,
        skin=skin,
        hair=hair,
        brows=sample_brows(rng, hair.colour),
        eyes=sample_eyes(rng),
        nose=sample_nose(rng),
        lips=sample_lips(rng, skin.colour),
    )


# ---------------------------------------------------------------- geometry

# Geometry is asked for again and again (painting, regions, landmarks). Faces and their parts are
# immutable and hashed by identity, so results are cached per object; callers must not modify them.
_geometry_cache = functools.lru_cache(maxsize=1024)

# Parameters along curves, shared by every face.
_U5, _U7, _U9, _U13 = (np.linspace(-1, 1, n) for n in (5, 7, 9, 13))
_JAW_ANGLES = np.deg2rad(np.linspace(190, -10, 17))  # left temple, round the chin, right temple


@functools.lru_cache(maxsize=16)
def _circle(count: int) -> tuple[np.ndarray, np.ndarray]:
    angles = np.linspace(0, 2 * np.pi, count, endpoint=False)
    return np.cos(angles), np.sin(angles)


@_geometry_cache
def pose_matrix(face: Face, size: int) -> np.ndarray:
    """(2, 3) affine map from canonical coordinates to pixels."""
    pose, (cx, cy) = face.pose, face.head.centre
    cos, sin = pose.scale * np.cos(pose.roll), pose.scale * np.sin(pose.roll)
    offset_x = cx + pose.shift[0] - (cos * cx - sin * cy)
    offset_y = cy + pose.shift[1] - (sin * cx + cos * cy)
    return np.array([[cos, -sin, offset_x], [sin, cos, offset_y]]) * size


def to_pixels(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def _xy(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(N, 2) points from coordinate arrays (a transposed view: the fastest way numpy offers)."""
    return np.array([x, y]).T


def _superellipse(cx, cy, half_width, half_height, upper_exponent, lower_exponent, cos, sin) -> np.ndarray:
    exponent = np.where(sin > 0, lower_exponent, upper_exponent)  # y points down: sin > 0 is the lower half
    x = cx + half_width * np.sign(cos) * np.abs(cos) ** (2 / exponent)
    y = cy + half_height * np.sign(sin) * np.abs(sin) ** (2 / exponent)
    return _xy(x, y)


def ellipse(cx, cy, half_width, half_height, count=24) -> np.ndarray:
    cos, sin = _circle(count)
    return _xy(cx + half_width * cos, cy + half_height * sin)


@_geometry_cache
def face_outline(head: Head, count: int = 48) -> np.ndarray:
    return _superellipse(*head.centre, head.half_width, head.half_height, head.upper_exponent,
                         head.lower_exponent, *_circle(count))


@_geometry_cache
def jaw_points(head: Head) -> np.ndarray:
    """17 points from the left temple round the chin to the right one (iBUG 0-16)."""
    return _superellipse(*head.centre, head.half_width, head.half_height, head.upper_exponent,
                         head.lower_exponent, np.cos(_JAW_ANGLES), np.sin(_JAW_ANGLES))


def eye_centres(face: Face) -> list[tuple[float, float]]:
    head = face.head
    x = head.centre[0] + head.feature_shift
    return [(x - head.eye_dx, head.eye_y), (x + head.eye_dx, head.eye_y)]


@_geometry_cache
def eye_arcs(face: Face, side: int) -> tuple[np.ndarray, np.ndarray]:
    """Upper and lower lid curves of one eye (side 0: image left), 9 points each from left corner to right."""
    eyes, (ex, ey) = face.eyes, eye_centres(face)[side]
    half_height = eyes.half_width * eyes.openness
    x = ex + eyes.half_width * _U9
    corner_lift = eyes.tilt * (_U9 if side == 0 else -_U9)  # raises the outer corner
    bulge = np.sqrt(1 - _U9**2)
    peak_skew = 1 + 0.15 * _U9 * (1 - 2 * side)  # the upper lid peaks towards the nose
    upper = _xy(x, ey + corner_lift - half_height * bulge**0.8 * peak_skew)
    lower = _xy(x, ey + corner_lift + 0.75 * half_height * bulge)
    return upper, lower


def eye_points(face: Face, side: int) -> np.ndarray:
    """6 points: left corner, 2 upper, right corner, 2 lower going back left (iBUG order)."""
    upper, lower = eye_arcs(face, side)
    return np.concatenate([upper[[0, 2, 6, 8]], lower[[6, 2]]])


@_geometry_cache
def brow_centreline(face: Face, side: int, count: int = 5) -> np.ndarray:
    """Centre line of one brow from image left to right (iBUG 17-21 or 22-26 with count 5)."""
    brows, head = face.brows, face.head
    ex = eye_centres(face)[side][0]
    inner = ex + (1 if side == 0 else -1) * (face.eyes.half_width - brows.inner_gap)
    outer = inner + (-1 if side == 0 else 1) * brows.length
    u = (_U5 if count == 5 else _U9) * 0.5 + 0.5  # 0 inner, 1 outer
    y = head.brow_y - brows.arch * np.sin(np.pi * u**0.8) - brows.tilt * u
    points = _xy(inner + (outer - inner) * u, y)
    return points[::-1] if side == 0 else points


@_geometry_cache
def brow_polygon(face: Face, side: int) -> np.ndarray:
    centre = brow_centreline(face, side, count=9)
    outwards = (_U9 * 0.5 + 0.5)[::-1] if side == 0 else _U9 * 0.5 + 0.5
    half = _xy(np.zeros(9), face.brows.thickness * (1 - 0.55 * outwards) / 2)
    return np.concatenate([centre - half, (centre + half)[::-1]])


@_geometry_cache
def nose_points(face: Face) -> np.ndarray:
    """9 points: bridge from between the eyes to the tip (iBUG 27-30), then the base left to right (31-35)."""
    head, nose = face.head, face.nose
    x, tip_y = head.centre[0] + head.feature_shift, head.nose_tip_y + nose.tip_drop
    step = (tip_y - head.eye_y) / 3
    base_y = tip_y + nose.tip_radius * 0.6
    r = nose.tip_radius
    return np.array([
        (x, head.eye_y), (x, head.eye_y + step), (x, head.eye_y + 2 * step), (x, tip_y),
        (x - nose.half_width, base_y - 0.35 * r), (x - 0.5 * nose.half_width, base_y - 0.05 * r), (x, base_y),
        (x + 0.5 * nose.half_width, base_y - 0.05 * r), (x + nose.half_width, base_y - 0.35 * r),
    ])


@_geometry_cache
def _lip_curves(face: Face) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(mouth line, upper outer edge, lower outer edge, opening half height) at the 13 points of _U13."""
    head, lips = face.head, face.lips
    across = 1 - _U13**2
    line = head.mouth_y - 0.03 * lips.smile * _U13**2
    bow_dip = 1 - lips.bow * np.exp(-((_U13 / 0.18) ** 2))
    upper = line - lips.upper * across**0.5 * (0.55 + 0.45 * bow_dip)
    opening = 0.014 * lips.open * across**0.8
    lower = line + opening + lips.lower * across**0.6
    return line, upper, lower, opening


_LIP_OUTER_UPPER, _LIP_OUTER_LOWER = [0, 2, 4, 6, 8, 10, 12], [10, 8, 6, 4, 2]
_LIP_INNER_UPPER, _LIP_INNER_LOWER = [1, 4, 6, 8, 11], [8, 6, 4]


@_geometry_cache
def lip_points(face: Face) -> np.ndarray:
    """20 points: outer contour (iBUG 48-59) then inner contour (60-67)."""
    line, upper, lower, opening = _lip_curves(face)
    x = face.head.centre[0] + face.head.feature_shift + face.lips.half_width * _U13
    xs = np.concatenate([x[_LIP_OUTER_UPPER], x[_LIP_OUTER_LOWER], x[_LIP_INNER_UPPER], x[_LIP_INNER_LOWER]])
    ys = np.concatenate([upper[_LIP_OUTER_UPPER], lower[_LIP_OUTER_LOWER],
                         (line - opening)[_LIP_INNER_UPPER], (line + opening)[_LIP_INNER_LOWER]])
    return _xy(xs, ys)


def cheek_centres(face: Face) -> np.ndarray:
    x0 = face.head.centre[0] + face.head.feature_shift
    y = face.head.mouth_y - 0.06
    offset = face.lips.half_width + 0.035
    return np.array([(x0 - offset, y), (x0 + offset, y)])


@_geometry_cache
def glasses_rims(face: Face) -> list[np.ndarray]:
    """Two closed rims of 24 points, each from its right-most point (index 0) round to its left-most
    (index 12) and back."""
    glasses, eyes = face.glasses, face.eyes
    return [_superellipse(ex, ey + 0.004, eyes.half_width * glasses.half_width,
                          eyes.half_width * glasses.half_height, glasses.squareness, glasses.squareness,
                          *_circle(24))
            for ex, ey in eye_centres(face)]


def glasses_arms(face: Face) -> list[np.ndarray]:
    """The bridge and the two temple arms as open polylines."""
    left, right = glasses_rims(face)
    head = face.head
    ey, side_x = head.eye_y, head.half_width * 0.98
    bridge = np.array([left[0], (head.centre[0] + head.feature_shift, ey - 0.006), right[12]])
    arms = [np.array([left[12], (head.centre[0] - side_x, ey - 0.004)]),
            np.array([right[0], (head.centre[0] + side_x, ey - 0.004)])]
    return [bridge] + arms


@_geometry_cache
def bangs_polygon(face: Face) -> np.ndarray:
    """The fringe: from above the hairline down to jagged strand tips over the forehead."""
    head, bangs = face.head, face.bangs
    cx, cy = head.centre
    hairline_y = cy - face.hair.hairline * head.half_height
    reach = head.brow_y + 0.01 - hairline_y
    x = cx + head.half_width * np.linspace(-0.95, 0.95, bangs.strands)
    tips = hairline_y + reach * bangs.depth * bangs.tips + bangs.sweep * (x - cx)
    side = head.half_width * 1.02
    top = cy - head.half_height * 1.02
    return np.concatenate([[(cx - side, hairline_y), (cx - side * 0.7, top)],
                           [(cx + side * 0.7, top), (cx + side, hairline_y)],
                           _xy(x, tips)[::-1]])


def landmarks(face: Face, size: int) -> np.ndarray:
    """(68, 2) float32 pixel coordinates (x, y) in the iBUG-300W layout."""
    canonical = np.concatenate([
        jaw_points(face.head),
        brow_centreline(face, 0), brow_centreline(face, 1),
        nose_points(face),
        eye_points(face, 0), eye_points(face, 1),
        lip_points(face),
    ])
    return to_pixels(canonical, pose_matrix(face, size)).astype(np.float32)


# ---------------------------------------------------------------- painting


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


def _box(polygons: list[np.ndarray], shape, pad: int) -> tuple[int, int, int, int]:
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
                  _box(fixed, (size, size), pad=thickness + 1))


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
    x0, y0, x1, y1 = _box(fixed, image.shape, pad=1)
    if x1 <= x0 or y1 <= y0:
        return
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    origin = np.array([x0 << SUBPIXEL_BITS, y0 << SUBPIXEL_BITS], np.int32)
    _stroke(mask, [p - origin for p in fixed], 255, 0, True)
    region = image[y0:y1, x0:x1]
    alpha = mask.astype(np.float32) * np.float32(1 / 255)
    region[:] = cv2.convertScaleAbs(over(region.astype(np.float32), texture[y0:y1, x0:x1], alpha))


# ---------------------------------------------------------------- rendering


@functools.lru_cache(maxsize=8)
def _pixel_grid(size: int) -> np.ndarray:
    """(size, size, 2) float32 (x, y) of every pixel centre."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    return np.dstack([xs, ys])


@functools.lru_cache(maxsize=8)
def grain_tile(size: int) -> np.ndarray:
    """A fixed tile of unit Gaussian noise; each face crops it at its own offset (cheaper than new noise)."""
    return np.random.default_rng(20240617).standard_normal((2 * size, 2 * size)).astype(np.float32)


def grain(size: int, offset: tuple[int, int]) -> np.ndarray:
    oy, ox = offset[0] % size, offset[1] % size
    return grain_tile(size)[oy : oy + size, ox : ox + size]


def canonical_grid(face: Face, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Canonical (x, y) of every pixel centre (the inverse of `pose_matrix`), as two float32 maps."""
    inverse = cv2.invertAffineTransform(pose_matrix(face, size))
    qx, qy = cv2.split(cv2.transform(_pixel_grid(size), inverse))
    return qx, qy


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


@dataclass(frozen=True, eq=False)
class Base:
    """The first rendering pass and the masks that edits need."""

    image: np.ndarray  # uint8 (H, W, 3)
    face_alpha: np.ndarray  # float32 (H, W), the face oval
    hair_alpha: np.ndarray  # float32 (H, W), all visible hair


def _wrinkles(face: Face) -> list[np.ndarray]:
    head = face.head
    cx = head.centre[0] + head.feature_shift
    lines = []
    for k in range(3):  # forehead
        y = head.brow_y - 0.03 - 0.018 * k
        lines.append(_xy(cx + head.half_width * 0.45 * _U7, y - 0.008 * np.cos(1.2 * _U7)))
    ala_x = head.half_width * 0.2
    for sign in (-1, 1):  # nasolabial folds, crow's feet, under-eye bags
        lines.append(np.array([(cx + sign * ala_x, head.nose_tip_y),
                               (cx + sign * (ala_x + 0.03), head.mouth_y - 0.02),
                               (cx + sign * (ala_x + 0.035), head.mouth_y + 0.015)]))
        outer = cx + sign * (head.eye_dx + 0.055)
        for dy in (-0.008, 0.0, 0.008):
            lines.append(np.array([(outer, head.eye_y + dy * 0.4),
                                   (outer + sign * 0.018, head.eye_y + dy * 1.6)]))
        ex = cx + sign * head.eye_dx
        lines.append(_xy(ex + 0.03 * _U5, head.eye_y + 0.03 - 0.006 * (1 - _U5**2)))
    return lines


def render_base(face: Face, size: int) -> Base:
    """Background, hair behind the head, neck, ears, textured skin, wrinkles, hair over the forehead."""
    head, skin, hair = face.head, face.skin, face.hair
    matrix = pose_matrix(face, size)
    cx, cy = head.centre
    qx, qy = canonical_grid(face, size)
    unit = np.float32(1 / 255)

    image = cv2.resize(head.background, (size, size), interpolation=cv2.INTER_LINEAR)

    face_polygon = to_pixels(face_outline(head), matrix)
    face_alpha = polygon_mask([face_polygon], (size, size)).astype(np.float32) * unit
    ears = [to_pixels(ellipse(cx + sign * head.half_width * 0.97, head.eye_y + 0.05, 0.028, 0.055, 16),
                      matrix) for sign in (-1, 1)]
    neck_top = cy + head.half_height * 0.6
    neck = to_pixels(np.array([(cx - 0.11, neck_top), (cx + 0.11, neck_top), (cx + 0.13, 1.3),
                               (cx - 0.13, 1.3)]), matrix)
    skin_alpha = polygon_mask([face_polygon, neck] + ears, (size, size)).astype(np.float32) * unit

    # Luminance of the skin: shading towards the outline, blotches, grain, darker wrinkles, neck and ears.
    across, down = (qx - cx) * (1 / head.half_width), (qy - cy) * (1 / head.half_height)
    radius2 = np.minimum(across * across + down * down, 1.6)
    shade = 1.04 - 0.11 * radius2 * radius2
    shade += skin.blotch_strength * upsampled(skin.blotches, size)
    shade += skin.grain_strength * grain(size, skin.grain_offset)
    shade -= 0.18 * (skin_alpha - face_alpha)
    if skin.age > 0.05:
        creases = polygon_mask([to_pixels(line, matrix) for line in _wrinkles(face)], (size, size),
                               thickness=1, closed=False)
        shade -= np.float32(0.14 * skin.age / 255) * creases
    image = over(image, tinted(shade, skin.colour), skin_alpha)

    # Hair: the back hair where no skin is, and the head above a soft hairline.
    back_bottom = cy + hair.length * head.half_height
    back_top = cy - hair.top * head.half_height
    back = ellipse(cx, (back_top + back_bottom) / 2, head.half_width * hair.back_half_width,
                   (back_bottom - back_top) / 2, 32)
    back_alpha = polygon_mask([to_pixels(back, matrix)], (size, size)).astype(np.float32) * unit
    across = (qx - (cx + hair.parting * head.half_width * 0.3)) * (1 / head.half_width)
    hairline = cy - head.half_height * hair.hairline + head.half_height * hair.temple_drop * across * across
    cap = np.clip((hairline - qy) * (size / 3.0), 0, 1) * back_alpha
    hair_alpha = np.maximum(back_alpha * (1 - skin_alpha), cap)
    strands = 1 + hair.streak_strength * upsampled(hair.streaks, size)
    strands -= 0.25 * np.clip((qy - back_top) * (1 / (back_bottom - back_top)), 0, 1)  # darker ends
    image = over(image, tinted(strands, hair.colour), hair_alpha)
    return Base(image=cv2.convertScaleAbs(image), face_alpha=face_alpha, hair_alpha=hair_alpha)


def hair_texture(face: Face, size: int) -> np.ndarray:
    """Full-size float32 hair colour with strands, for bangs and beards."""
    return tinted(1 + 2 * face.hair.streak_strength * upsampled(face.hair.streaks, size), face.hair.colour)


def beard_zone(face: Face, size: int, face_alpha: np.ndarray) -> np.ndarray:
    """Where a beard grows: the face below a line from the sideburns down the cheeks to the moustache."""
    head, beard = face.head, face.beard
    qx, qy = canonical_grid(face, size)
    across = np.abs(qx - head.centre[0] - head.feature_shift) / head.half_width
    moustache_top = head.nose_tip_y + 0.02 if beard.moustache else head.mouth_y + 0.035
    cheek = head.mouth_y - 0.01 - beard.reach * (head.mouth_y - head.nose_tip_y)
    top = np.interp(across, [0.0, 0.25, 0.55, 1.0], [moustache_top, moustache_top + 0.005, cheek,
                                                    head.eye_y + 0.05]).astype(np.float32)
    return np.clip((qy - top) * (size / 4.0), 0, 1) * face_alpha


def _paint_beard(image: np.ndarray, face: Face, base: Base) -> None:
    size = image.shape[0]
    stubble = cv2.resize(face.beard.stubble, (size, size), interpolation=cv2.INTER_LINEAR)
    density = np.clip(face.beard.density * (0.75 + 0.35 * stubble), 0, 1)
    alpha = beard_zone(face, size, base.face_alpha) * density
    image[:] = cv2.convertScaleAbs(over(image.astype(np.float32), hair_texture(face, size) * 0.85, alpha))


def _cached_on(*parts: str):
    """Caches `build(face, size)` on the identity of the parts it reads, so an edit of one part keeps
    the strokes of the others (`dataclasses.replace` keeps the unchanged parts' objects)."""

    def decorate(build):
        cache: dict = {}

        @functools.wraps(build)
        def cached(face: Face, size: int):
            key = (size, *(getattr(face, part) for part in parts))
            strokes = cache.get(key)
            if strokes is None:
                if len(cache) >= 1024:
                    cache.clear()
                strokes = cache[key] = build(face, size)
            return strokes

        return cached

    return decorate


# Opaque strokes take the colour they would have at partial opacity over plain skin: one draw call each.


@_cached_on("pose", "head", "nose", "skin")
def _nose_strokes(face: Face, size: int) -> list[Stroke]:
    nose, skin, matrix = face.nose, face.skin.colour, pose_matrix(face, size)
    points = nose_points(face)
    x, top_y, tip_y, base_y = points[0, 0], points[0, 1], points[3, 1], points[6, 1]
    thick = max(1, round(size / 64))
    sides = [to_pixels(np.array([(x + sign * 0.012, top_y + 0.015),
                                 (x + sign * nose.half_width * 0.55, tip_y - 0.02),
                                 (x + sign * nose.half_width * 0.9, tip_y)]), matrix)
             for sign in (nose.light_side, -nose.light_side)]
    bridge = to_pixels(np.array([(x, top_y + 0.02), (x, tip_y - 0.02)]), matrix)
    tip = to_pixels(ellipse(x, tip_y - nose.tip_radius * 0.2, nose.tip_radius, nose.tip_radius * 0.8, 16),
                    matrix)
    alae = [to_pixels(ellipse(x + sign * nose.half_width * 0.72, tip_y + 0.002, nose.half_width * 0.32,
                              nose.tip_radius * 0.6, 12), matrix) for sign in (-1, 1)]
    nostrils = [to_pixels(ellipse(x + sign * nose.half_width * 0.42, base_y - 0.002, nose.nostril_size * 1.3,
                                  nose.nostril_size * 0.7, 10), matrix) for sign in (-1, 1)]
    return [
        stroke(sides[:1], skin * 0.55, size, opacity=nose.shading, thickness=thick, closed=False),
        stroke(sides[1:], skin * 0.55, size, opacity=nose.shading * 0.35, thickness=thick, closed=False),
        stroke([bridge], skin * 1.2, size, opacity=0.25, thickness=thick, closed=False),
        stroke([tip], skin * np.float32([1.08, 0.98, 0.96]), size, opacity=0.45),
        stroke(alae, skin * 0.8, size, thickness=1),
        stroke(nostrils, skin * 0.4, size),
    ]


@_cached_on("pose", "head", "lips", "skin", "nose")
def _lip_strokes(face: Face, size: int) -> list[Stroke]:
    lips, head, skin, matrix = face.lips, face.head, face.skin.colour, pose_matrix(face, size)
    x0 = head.centre[0] + head.feature_shift
    line, upper, lower, opening = _lip_curves(face)
    x = x0 + lips.half_width * _U13
    around = np.concatenate([x, x[::-1]])
    px = lambda xs, ys: to_pixels(_xy(xs, ys), matrix)  # noqa: E731
    strokes = []
    if lips.smile > 0.4:  # raised cheeks (two nested ellipses: a soft edge) and deeper folds
        strength = (lips.smile - 0.4) / 0.6
        for grow in (1.0, 0.7):
            cheeks = [to_pixels(ellipse(cx, cy, 0.04 * grow, 0.028 * grow, 16), matrix)
                      for cx, cy in cheek_centres(face)]
            strokes.append(stroke(cheeks, skin * np.float32([1.1, 1.0, 0.98]), size, opacity=0.22 * strength))
        folds = [to_pixels(np.array([(x0 + sign * (face.nose.half_width + 0.012), head.nose_tip_y + 0.005),
                                     (x0 + sign * (lips.half_width + 0.018), line[0] - 0.01),
                                     (x0 + sign * (lips.half_width + 0.022), line[0] + 0.02)]), matrix)
                 for sign in (-1, 1)]
        strokes.append(stroke(folds, skin * 0.6, size, opacity=0.45 * strength,
                              thickness=max(1, round(size / 64)), closed=False))
    if lips.open > 0:
        gap = px(around, np.concatenate([line - opening, (line + opening)[::-1]]))
        strokes += [stroke([gap], np.float32([224, 218, 205]), size),
                    stroke([gap], np.float32([132, 106, 100]), size, thickness=1)]
    highlight = px(x0 + lips.half_width * 0.3 * _U13[4:9], lower[4:9] - lips.lower * 0.45)
    return strokes + [
        stroke([px(around, np.concatenate([upper, (line - opening)[::-1]]))], lips.colour * 0.88, size),
        stroke([px(around, np.concatenate([line + opening, lower[::-1]]))], lips.colour, size),
        stroke([px(x, line - opening * 0.9)], lips.colour * 0.56, size, thickness=max(1, round(size / 110)),
               closed=False),
        stroke([highlight], lips.colour * 1.35, size, opacity=0.3, thickness=max(1, round(size / 96)),
               closed=False),
    ]


@_cached_on("pose", "head", "brows", "eyes")
def _brow_strokes(face: Face, size: int) -> list[Stroke]:
    matrix = pose_matrix(face, size)
    return [stroke([to_pixels(brow_polygon(face, side), matrix) for side in (0, 1)], face.brows.colour, size,
                   opacity=0.92)]


@_cached_on("pose", "head", "eyes", "skin")
def _eye_strokes(face: Face, size: int) -> list[Stroke]:
    eyes, matrix = face.eyes, pose_matrix(face, size)
    strokes = []
    for side in (0, 1):
        upper, lower = eye_arcs(face, side)
        almond = to_pixels(np.concatenate([upper, lower[::-1]]), matrix).astype(np.float32)
        strokes.append(stroke([almond], np.float32([232, 226, 220]), size))
        ex, ey = eye_centres(face)[side]
        radius = eyes.half_width * eyes.openness * eyes.iris_size
        iris_x, iris_y = ex + eyes.gaze * eyes.half_width * 0.4, ey + radius * 0.1
        for scale, colour in ((1.0, eyes.iris_colour), (0.45, np.float32([18, 14, 14]))):
            disc = ellipse(iris_x, iris_y, radius * scale, radius * scale, 16)
            disc = to_pixels(disc, matrix).astype(np.float32)
            area, visible = cv2.intersectConvexConvex(almond, disc)  # the lids hide the rest
            if area > 0:
                strokes.append(stroke([visible.reshape(-1, 2)], colour, size))
        strokes.append(stroke([to_pixels(upper, matrix)], face.skin.colour * 0.35, size,
                              thickness=max(1, round(size / 90)), closed=False))
        catchlight = ellipse(iris_x + radius * 0.3, iris_y - radius * 0.3, radius * 0.2, radius * 0.2, 8)
        strokes.append(stroke([to_pixels(catchlight, matrix)], np.float32([240, 240, 240]), size))
    return strokes


@_cached_on("pose", "head", "eyes", "glasses")
def _glasses_strokes(face: Face, size: int) -> list[Stroke]:
    glasses, matrix = face.glasses, pose_matrix(face, size)
    rims = [to_pixels(rim, matrix) for rim in glasses_rims(face)]
    thickness = max(1, round(glasses.thickness * size))
    return [
        stroke(rims, glasses.colour * 0.6 + 40, size, opacity=glasses.tint),
        stroke(rims, glasses.colour, size, thickness=thickness),
        stroke([to_pixels(arm, matrix) for arm in glasses_arms(face)], glasses.colour, size,
               thickness=thickness, closed=False),
    ]


@_geometry_cache
def lips_extent(face: Face) -> np.ndarray:
    points = [lip_points(face)]
    if face.lips.smile > 0.4:  # raised cheeks and folds up to the nose
        points += [ellipse(x, y, 0.04, 0.028, 8) for x, y in cheek_centres(face)] + [nose_points(face)[4:]]
    return np.concatenate(points)


def _wanted(wanted: np.ndarray | None, box: tuple[int, int, int, int]) -> bool:
    x0, y0, x1, y1 = box
    return wanted is None or bool(wanted[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)].any())


def _draw_wanted(image: np.ndarray, strokes: list[Stroke], wanted: np.ndarray | None) -> None:
    """Draws the strokes, skipping those that cannot touch a wanted pixel (the rest stay exact)."""
    for each in strokes:
        if _wanted(wanted, each.box):
            draw(image, each)


def render_features(base: Base, face: Face, size: int, wanted: np.ndarray | None = None) -> np.ndarray:
    """Paints the features of `face` over a copy of the base pass; uint8 (H, W, 3).

    With `wanted`, an (H, W) mask of the pixels the caller will use, features that cannot reach them are
    skipped. Paint order: beard, nose, lips, brows, eyes, bangs, glasses.
    """
    image = base.image.copy()
    matrix = pose_matrix(face, size)
    if face.beard is not None:
        jaw = [fixed_point(to_pixels(jaw_points(face.head), matrix))]
        if _wanted(wanted, _box(jaw, image.shape, pad=2)):
            _paint_beard(image, face, base)
    features = [_nose_strokes, _lip_strokes, _brow_strokes, _eye_strokes]
    for strokes in (build(face, size) for build in features):
        _draw_wanted(image, strokes, wanted)
    if face.bangs is not None:
        polygon = [to_pixels(bangs_polygon(face), matrix)]
        if _wanted(wanted, _box([fixed_point(polygon[0])], image.shape, pad=2)):
            paint_texture(image, polygon, hair_texture(face, size))
    if face.glasses is not None:
        _draw_wanted(image, _glasses_strokes(face, size), wanted)
    return image


def render(face: Face, size: int) -> tuple[np.ndarray, Base]:
    """Both passes: the uint8 image and the base it was painted on."""
    base = render_base(face, size)
    return render_features(base, face, size), base
