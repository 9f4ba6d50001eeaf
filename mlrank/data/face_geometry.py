"""Geometry of a procedural face (`face_model`): its shapes in the canonical frame, and pixels.

`pose_matrix` maps the canonical frame to pixels (`to_pixels`), `canonical_grid` the other way. The
part shapes (outline, eye lids, brows, nose, lips, glasses, bangs) are point arrays in the canonical
frame, which rendering paints and the edits' regions are grown from (`lips_extent`, `beard_zone`).
`landmarks` gives the 68 points of the iBUG-300W layout (jaw 0-16, brows 17-26, nose 27-35, eyes
36-47, lips 48-67), the layout of dlib's predictor on which self-blended-image code is written, so
that code written for real faces can take them unchanged.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from .face_model import Face, Head

# Geometry is asked for again and again (painting, regions, landmarks). Faces and their parts are
# immutable and hashed by identity, so results are cached per object; callers must not modify them.
_geometry_cache = functools.lru_cache(maxsize=1024)

# Parameters in [-1, 1] along curves of 5 to 13 points, shared by every face (and the renderer).
U5, U7, U9, U13 = (np.linspace(-1, 1, n) for n in (5, 7, 9, 13))
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


@functools.lru_cache(maxsize=8)
def _pixel_grid(size: int) -> np.ndarray:
    """(size, size, 2) float32 (x, y) of every pixel centre."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    return np.dstack([xs, ys])


def canonical_grid(face: Face, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Canonical (x, y) of every pixel centre (the inverse of `pose_matrix`), as two float32 maps."""
    inverse = cv2.invertAffineTransform(pose_matrix(face, size))
    qx, qy = cv2.split(cv2.transform(_pixel_grid(size), inverse))
    return qx, qy


def xy(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(N, 2) points from coordinate arrays (a transposed view: the fastest way numpy offers)."""
    return np.array([x, y]).T


def _superellipse(cx, cy, half_width, half_height, upper_exponent, lower_exponent, cos, sin) -> np.ndarray:
    exponent = np.where(sin > 0, lower_exponent, upper_exponent)  # y points down: sin > 0 is the lower half
    x = cx + half_width * np.sign(cos) * np.abs(cos) ** (2 / exponent)
    y = cy + half_height * np.sign(sin) * np.abs(sin) ** (2 / exponent)
    return xy(x, y)


def ellipse(cx, cy, half_width, half_height, count=24) -> np.ndarray:
    cos, sin = _circle(count)
    return xy(cx + half_width * cos, cy + half_height * sin)


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
    x = ex + eyes.half_width * U9
    corner_lift = eyes.tilt * (U9 if side == 0 else -U9)  # raises the outer corner
    bulge = np.sqrt(1 - U9**2)
    peak_skew = 1 + 0.15 * U9 * (1 - 2 * side)  # the upper lid peaks towards the nose
    upper = xy(x, ey + corner_lift - half_height * bulge**0.8 * peak_skew)
    lower = xy(x, ey + corner_lift + 0.75 * half_height * bulge)
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
    u = (U5 if count == 5 else U9) * 0.5 + 0.5  # 0 inner, 1 outer
    y = head.brow_y - brows.arch * np.sin(np.pi * u**0.8) - brows.tilt * u
    points = xy(inner + (outer - inner) * u, y)
    return points[::-1] if side == 0 else points


@_geometry_cache
def brow_polygon(face: Face, side: int) -> np.ndarray:
    centre = brow_centreline(face, side, count=9)
    outwards = (U9 * 0.5 + 0.5)[::-1] if side == 0 else U9 * 0.5 + 0.5
    half = xy(np.zeros(9), face.brows.thickness * (1 - 0.55 * outwards) / 2)
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
def lip_curves(face: Face) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(mouth line, upper outer edge, lower outer edge, opening half height) at the 13 points of U13."""
    head, lips = face.head, face.lips
    across = 1 - U13**2
    line = head.mouth_y - 0.03 * lips.smile * U13**2
    bow_dip = 1 - lips.bow * np.exp(-((U13 / 0.18) ** 2))
    upper = line - lips.upper * across**0.5 * (0.55 + 0.45 * bow_dip)
    opening = 0.014 * lips.open * across**0.8
    lower = line + opening + lips.lower * across**0.6
    return line, upper, lower, opening


_LIP_OUTER_UPPER, _LIP_OUTER_LOWER = [0, 2, 4, 6, 8, 10, 12], [10, 8, 6, 4, 2]
_LIP_INNER_UPPER, _LIP_INNER_LOWER = [1, 4, 6, 8, 11], [8, 6, 4]


@_geometry_cache
def lip_points(face: Face) -> np.ndarray:
    """20 points: outer contour (iBUG 48-59) then inner contour (60-67)."""
    line, upper, lower, opening = lip_curves(face)
    x = face.head.centre[0] + face.head.feature_shift + face.lips.half_width * U13
    xs = np.concatenate([x[_LIP_OUTER_UPPER], x[_LIP_OUTER_LOWER], x[_LIP_INNER_UPPER], x[_LIP_INNER_LOWER]])
    ys = np.concatenate([upper[_LIP_OUTER_UPPER], lower[_LIP_OUTER_LOWER],
                         (line - opening)[_LIP_INNER_UPPER], (line + opening)[_LIP_INNER_LOWER]])
    return xy(xs, ys)


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
                           xy(x, tips)[::-1]])


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


# ---------------------------------------------------------------- regions of the edits


@_geometry_cache
def lips_extent(face: Face) -> np.ndarray:
    """The lips' points with, when smiling, the raised cheeks and the folds: what a lip edit reaches."""
    points = [lip_points(face)]
    if face.lips.smile > 0.4:  # raised cheeks and folds up to the nose
        points += [ellipse(x, y, 0.04, 0.028, 8) for x, y in cheek_centres(face)] + [nose_points(face)[4:]]
    return np.concatenate(points)


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
