"""The procedural face of the built-in synthetic Seq-DeepFake: its parameters and their random draw.

A face is a small parametric model, `Face`: one dataclass per part (head geometry, skin, hair, brows,
eyes, nose, lips, and the optional attributes bangs, glasses and beard) whose numbers live in a
canonical frame where the image is the unit square (x right, y down). Sizes are therefore independent
of the output resolution: the same `Face` renders at any `size`. A similarity transform (`Pose`: a
small roll, scale and shift) maps the frame to pixels, so every part turns and moves together.

Sampling functions (`sample_face`, `sample_<part>`) draw a part from its ranges; given the part being
replaced (`unlike=`), every number is drawn at least a third of its range away from the old one and
colours from another palette entry, so that an edited part always looks different.
`face_geometry` computes shapes and landmarks from a face, `face_rendering` paints it.
"""

from __future__ import annotations

from dataclasses import dataclass

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

