"""A second sequential face set, made by a mechanism unlike the built-in generator's, on disk.

    python -m studies.independent_sequences ROOT [--size 64] [--seed 0] [--train 3000 --val 300 --test 300]

It exists to check that a model learns the order of edits from the pixels and not from the built-in
generator's habits: train or test on it with `data.kind=seqdeepfake data.root=ROOT`.
Written in Seq-DeepFake's official layout (facial_components: nose, eye, eyebrow, lip, hair).

How it differs from `mlrank.data.synthetic`, on purpose:
* faces are a flat cartoon drawn with OpenCV primitives (ellipses, polygons, lines) on a plain
  background, not the built-in renderer's shaded face;
* an edit redraws its component in a new colour and shape, then adds Gaussian *noise* to the
  component's region (the trace), where the built-in generator pastes a resampled, colour-shifted
  patch and stamps a periodic fingerprint;
* after every edit the whole image is *blurred* (Gaussian, sigma 0.5-0.7) and *JPEG-compressed*
  (quality 88-95), where the built-in generator resamples and re-tones it.
So the noise of an early edit has been smoothed once per later edit: the last edit's noise is the
strongest, and the order is the order of increasing trace strength. `trace_order` reads it with a
fixed rule (no learning): the noise level of each edited region (about 70% of ordered pairs right
at 64 px).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from mlrank.data.seqdeepfake import write_split
from mlrank.data.vocab import SEQUENCE_LENGTH

SUBSET = "facial_components"
NOSE, EYE, EYEBROW, LIP, HAIR = range(1, 6)
NOISE_SIGMA = 24.0  # grey levels of an edit's trace


@dataclass(frozen=True)
class Cartoon:
    """A face in units of the image side: where each part is, its size and colour (RGB)."""

    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    hair_height: float  # how far the hair comes down the forehead
    eye_gap: float  # half the distance between the eyes
    eye_size: float
    eye_colour: tuple[float, float, float]
    brow_tilt: float
    brow_colour: tuple[float, float, float]
    nose_width: float
    nose_colour: tuple[float, float, float]
    lip_width: float
    lip_colour: tuple[float, float, float]


def _colour(rng: np.random.Generator, low: float, high: float) -> tuple[float, float, float]:
    return tuple(float(c) for c in rng.uniform(low, high, 3))


def random_cartoon(rng: np.random.Generator) -> Cartoon:
    return Cartoon(
        skin=_colour(rng, 150, 230), hair=_colour(rng, 20, 120), hair_height=rng.uniform(0.22, 0.3),
        eye_gap=rng.uniform(0.11, 0.15), eye_size=rng.uniform(0.035, 0.05), eye_colour=_colour(rng, 20, 160),
        brow_tilt=rng.uniform(-0.03, 0.03), brow_colour=_colour(rng, 10, 90), nose_width=rng.uniform(0.05, 0.08),
        nose_colour=_colour(rng, 120, 200), lip_width=rng.uniform(0.08, 0.13), lip_colour=_colour(rng, 120, 220),
    )


def edited(face: Cartoon, component: int, rng: np.random.Generator) -> Cartoon:
    """The face with one component redrawn: a new colour and a new shape, always visibly different."""
    other = random_cartoon(rng)
    changes = {
        NOSE: dict(nose_width=face.nose_width * rng.choice([0.7, 1.35]), nose_colour=other.nose_colour),
        EYE: dict(eye_size=face.eye_size * rng.choice([0.7, 1.35]), eye_colour=other.eye_colour),
        EYEBROW: dict(brow_tilt=-face.brow_tilt + rng.choice([-0.03, 0.03]), brow_colour=other.brow_colour),
        LIP: dict(lip_width=face.lip_width * rng.choice([0.75, 1.3]), lip_colour=other.lip_colour),
        HAIR: dict(hair_height=face.hair_height + rng.choice([-0.06, 0.06]), hair=other.hair),
    }
    return replace(face, **changes[component])


def _px(value: float, size: int) -> int:
    return int(round(value * size))


def draw(face: Cartoon, size: int, only: int | None = None) -> np.ndarray:
    """float32 RGB picture of the face; with ``only``, a mask (1 inside) of that component's region."""
    canvas = np.zeros((size, size, 3), np.float32)
    mask = np.zeros((size, size), np.float32)
    target = mask if only is not None else canvas

    def paint(component: int, colour, shape) -> None:
        if only is None:
            shape(canvas, colour)
        elif only == component:
            shape(mask, 1.0)

    centre = (size // 2, _px(0.55, size))
    if only is None:
        canvas[:] = (90, 110, 130)
        cv2.ellipse(canvas, centre, (_px(0.33, size), _px(0.42, size)), 0, 0, 360, face.skin, -1)
    paint(HAIR, face.hair, lambda img, c: cv2.ellipse(
        img, (size // 2, _px(0.16, size)), (_px(0.36, size), _px(face.hair_height, size)), 0, 0, 360, c, -1))
    for side in (-1, 1):
        x = size // 2 + side * _px(face.eye_gap, size)
        paint(EYE, face.eye_colour, lambda img, c: cv2.ellipse(
            img, (x, _px(0.45, size)), (_px(face.eye_size * 1.6, size), _px(face.eye_size, size)), 0, 0, 360, c, -1))
        tilt = side * face.brow_tilt
        paint(EYEBROW, face.brow_colour, lambda img, c: cv2.line(
            img, (x - _px(0.06, size), _px(0.38 + tilt, size)), (x + _px(0.06, size), _px(0.38 - tilt, size)),
            c, max(1, _px(0.025, size))))
    nose = np.array([[size // 2, _px(0.47, size)], [size // 2 - _px(face.nose_width, size), _px(0.62, size)],
                     [size // 2 + _px(face.nose_width, size), _px(0.62, size)]], np.int32)
    paint(NOSE, face.nose_colour, lambda img, c: cv2.fillPoly(img, [nose], c))
    paint(LIP, face.lip_colour, lambda img, c: cv2.ellipse(
        img, (size // 2, _px(0.74, size)), (_px(face.lip_width, size), _px(0.035, size)), 0, 0, 360, c, -1))
    if only is not None:  # the region: the part grown a little, as an editor's mask would be
        grow = max(1, _px(0.03, size))
        return cv2.dilate(target, np.ones((2 * grow + 1, 2 * grow + 1), np.uint8))
    return canvas


def reprocess(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """What every edit does to the whole image afterwards: a mild blur, then a JPEG round trip."""
    blurred = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.5, 0.7))
    quality = int(rng.integers(88, 96))
    ok, encoded = cv2.imencode(".jpg", np.clip(blurred + 0.5, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED).astype(np.float32)


def make_image(sequence: list[int], rng: np.random.Generator, size: int) -> tuple[np.ndarray, Cartoon]:
    """(uint8 RGB image, final face) of a face edited in the order of ``sequence`` (ids, 0-padded)."""
    face = random_cartoon(rng)
    image = reprocess(draw(face, size), rng)  # the original is captured once too
    for component in (c for c in sequence if c):
        before = face
        face = edited(face, component, rng)
        region = np.maximum(draw(before, size, only=component), draw(face, size, only=component))
        region = cv2.GaussianBlur(region, (0, 0), 0.8)[..., None]
        noise = rng.normal(0.0, NOISE_SIGMA, image.shape).astype(np.float32)
        image = image * (1 - region) + (draw(face, size) + noise) * region
        image = reprocess(image, rng)
    return np.clip(image + 0.5, 0, 255).astype(np.uint8), face


def trace_strength(image: np.ndarray, region: np.ndarray) -> float:
    """The median absolute high-pass residual (image minus its 3x3 mean) inside a region: the
    noise level, little moved by the few pixels on the drawing's edges."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    residual = grey - cv2.blur(grey, (3, 3))
    inside = region > 0.5
    return float(np.median(np.abs(residual[inside]))) if inside.any() else 0.0


def trace_order(image: np.ndarray, face: Cartoon, components: list[int], size: int) -> list[int]:
    """The fixed rule: edited components by increasing trace strength (the weakest came first)."""
    strengths = {c: trace_strength(image, draw(face, size, only=c)) for c in components}
    return sorted(components, key=strengths.__getitem__)


def random_sequences(count: int, rng: np.random.Generator) -> list[list[int]]:
    """Lengths 0..5 equally often, each a random order of distinct components, 0-padded."""
    sequences = []
    for _ in range(count):
        length = int(rng.integers(0, SEQUENCE_LENGTH + 1))
        ids = [int(c) for c in rng.permutation(5)[:length] + 1]
        sequences.append(ids + [0] * (SEQUENCE_LENGTH - length))
    return sequences


def write(root: str | Path, sizes: dict[str, int], size: int = 64, seed: int = 0) -> Path:
    """Writes every split under ``root`` in the official layout; item i of a split is the same image
    whatever the split's size."""
    for split_index, (split, count) in enumerate(sizes.items()):
        sequences = random_sequences(count, np.random.default_rng([seed, split_index, 0]))

        def render(index: int, split_index=split_index, sequences=sequences) -> np.ndarray:
            return make_image(sequences[index], np.random.default_rng([seed, split_index, 1, index]), size)[0]

        write_split(root, SUBSET, split, sequences, render)
    return Path(root)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studies.independent_sequences", description=__doc__.split("\n")[0])
    parser.add_argument("root")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    for split, default in (("train", 3000), ("val", 300), ("test", 300)):
        parser.add_argument(f"--{split}", type=int, default=default, help=f"images in the {split} split")
    args = parser.parse_args(argv)
    write(args.root, {"train": args.train, "val": args.val, "test": args.test}, args.size, args.seed)
    print(f"written to {args.root}/{SUBSET} (train {args.train}, val {args.val}, test {args.test}, {args.size} px)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
