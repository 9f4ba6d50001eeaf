"""Renderer of a procedural face (`face_model`), back to front, in two passes so that an edit of a
feature can reuse the first:
* base (`render_base`): a smooth two-tone background, the back hair, neck, ears, the face oval with
  skin texture (low-frequency blotches, fine grain, shading towards the outline, age wrinkles), then
  the hair over the forehead down to a soft hairline;
* features (`render_features`): beard, nose, lips (and smiling cheeks), brows, eyes, bangs, glasses,
  each painted with anti-aliased masks inside its own bounding box.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from .face_geometry import (U5, U7, U13, bangs_polygon, beard_zone, brow_polygon, canonical_grid,
                            cheek_centres, ellipse, eye_arcs, eye_centres, face_outline, glasses_arms,
                            glasses_rims, jaw_points, lip_curves, nose_points, pose_matrix, to_pixels, xy)
from .face_model import Face
from .painting import (Stroke, bounding_box, draw, fixed_point, grain, over, paint_texture, polygon_mask,
                       stroke, tinted, upsampled)


@dataclass(frozen=True, eq=False)
class Base:
    """The first rendering pass and the masks that edits need."""

    image: np.ndarray  # uint8 (H, W, 3)
    face_alpha: np.ndarray  # float32 (H, W), the face oval
    hair_alpha: np.ndarray  # float32 (H, W), all visible hair


# ---------------------------------------------------------------- base pass


def _wrinkles(face: Face) -> list[np.ndarray]:
    head = face.head
    cx = head.centre[0] + head.feature_shift
    lines = []
    for k in range(3):  # forehead
        y = head.brow_y - 0.03 - 0.018 * k
        lines.append(xy(cx + head.half_width * 0.45 * U7, y - 0.008 * np.cos(1.2 * U7)))
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
        lines.append(xy(ex + 0.03 * U5, head.eye_y + 0.03 - 0.006 * (1 - U5**2)))
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


# ---------------------------------------------------------------- features pass


def hair_texture(face: Face, size: int) -> np.ndarray:
    """Full-size float32 hair colour with strands, for bangs and beards."""
    return tinted(1 + 2 * face.hair.streak_strength * upsampled(face.hair.streaks, size), face.hair.colour)


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
    line, upper, lower, opening = lip_curves(face)
    x = x0 + lips.half_width * U13
    around = np.concatenate([x, x[::-1]])
    px = lambda xs, ys: to_pixels(xy(xs, ys), matrix)  # noqa: E731
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
    highlight = px(x0 + lips.half_width * 0.3 * U13[4:9], lower[4:9] - lips.lower * 0.45)
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


# ---------------------------------------------------------------- both passes


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
        if _wanted(wanted, bounding_box(jaw, image.shape, pad=2)):
            _paint_beard(image, face, base)
    features = [_nose_strokes, _lip_strokes, _brow_strokes, _eye_strokes]
    for strokes in (build(face, size) for build in features):
        _draw_wanted(image, strokes, wanted)
    if face.bangs is not None:
        polygon = [to_pixels(bangs_polygon(face), matrix)]
        if _wanted(wanted, bounding_box([fixed_point(polygon[0])], image.shape, pad=2)):
            paint_texture(image, polygon, hair_texture(face, size))
    if face.glasses is not None:
        _draw_wanted(image, _glasses_strokes(face, size), wanted)
    return image


def render(face: Face, size: int) -> tuple[np.ndarray, Base]:
    """Both passes: the uint8 image and the base it was painted on."""
    base = render_base(face, size)
    return render_features(base, face, size), base
