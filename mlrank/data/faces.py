"""The procedural faces of the built-in synthetic Seq-DeepFake, under their former single-module name.

The code lives in four modules; this one re-exports their public names for code that imports
`mlrank.data.faces`:
* `face_model`: the `Face` and its parts, the palettes, and their random draw (`sample_face`, ...);
* `face_geometry`: shapes in the canonical frame, the pose to pixels, `landmarks`, the edits' regions;
* `painting`: anti-aliased polygons, strokes, textures and compositing, in pixels;
* `face_rendering`: the two passes, `render_base` and `render_features`, and `render`.
"""

from .face_geometry import (bangs_polygon, beard_zone, brow_centreline, brow_polygon, canonical_grid,
                            cheek_centres, ellipse, eye_arcs, eye_centres, eye_points, face_outline,
                            glasses_arms, glasses_rims, jaw_points, landmarks, lip_points, lips_extent,
                            nose_points, pose_matrix, to_pixels)
from .face_model import (FRAME_COLOURS, HAIR_COLOURS, IRIS_COLOURS, LIP_COLOURS, SKIN_TONES, Bangs, Beard,
                         Brows, Colour, Eyes, Face, Glasses, Hair, Head, Lips, Nose, Pose, Skin, palette,
                         sample_brows, sample_eyes, sample_face, sample_hair, sample_lips, sample_nose,
                         sample_skin)
from .face_rendering import Base, hair_texture, render, render_base, render_features
from .painting import (SUBPIXEL_BITS, Stroke, draw, fixed_point, grain, grain_tile, over, paint_texture,
                       polygon_mask, stroke, tinted, upsampled)

__all__ = [
    "FRAME_COLOURS", "HAIR_COLOURS", "IRIS_COLOURS", "LIP_COLOURS", "SKIN_TONES", "SUBPIXEL_BITS",
    "Bangs", "Base", "Beard", "Brows", "Colour", "Eyes", "Face", "Glasses", "Hair", "Head", "Lips", "Nose",
    "Pose", "Skin", "Stroke",
    "bangs_polygon", "beard_zone", "brow_centreline", "brow_polygon", "canonical_grid", "cheek_centres",
    "draw", "ellipse", "eye_arcs", "eye_centres", "eye_points", "face_outline", "fixed_point", "glasses_arms",
    "glasses_rims", "grain", "grain_tile", "hair_texture", "jaw_points", "landmarks", "lip_points",
    "lips_extent", "nose_points", "over", "paint_texture", "palette", "polygon_mask", "pose_matrix", "render",
    "render_base", "render_features", "sample_brows", "sample_eyes", "sample_face", "sample_hair",
    "sample_lips", "sample_nose", "sample_skin", "stroke", "tinted", "to_pixels", "upsampled",
]
