"""How legible the edit order of the built-in synthetic set is to a fixed rule given the true regions:

    python -m studies.order_legibility [--size 64] [--split val] [--images 300]

For every image with two or more edits, each edited component gets the mean high-frequency energy
(a 3x3 Laplacian's square, summed over the channels) inside its own blended region minus the regions
of the components edited after it (which paste over it); the rule calls the more energetic of two
components the later edit. Prints the share of truly ordered pairs it gets right, and the same with a
difference of Gaussians (sigma 1) instead of the Laplacian. The rule is given the true masks, which a
model is not; it says how much of the order the traces carry, not what a detector can reach.
"""

from __future__ import annotations

import argparse
import itertools
import sys

import cv2
import numpy as np

from mlrank.data.synthetic import SyntheticSeqDeepFake
from mlrank.data.vocab import names_of


def high_frequency_energy(image: np.ndarray, kind: str) -> np.ndarray:
    pixels = image.astype(np.float32)
    if kind == "laplacian":
        residual = cv2.Laplacian(pixels, cv2.CV_32F, ksize=1)
    else:
        residual = pixels - cv2.GaussianBlur(pixels, (0, 0), 1.0)
    return (residual**2).sum(axis=-1)


def pairs_right(dataset: SyntheticSeqDeepFake, kind: str) -> tuple[int, int]:
    """(pairs the rule orders right, truly ordered pairs) over the images with two or more edits."""
    names = names_of(dataset.subset)
    right = total = 0
    for index in range(len(dataset)):
        sequence = [int(c) for c in dataset.sequences()[index] if c > 0]
        if len(sequence) < 2:
            continue
        face = dataset.sample(index)
        energy = high_frequency_energy(face.image, kind)
        masks = {c: face.component_masks[names[c - 1]] for c in sequence}
        scores = {}
        for position, component in enumerate(sequence):
            later = np.zeros_like(masks[component])
            for after in sequence[position + 1:]:
                later |= masks[after]
            own = masks[component] & ~later
            region = own if own.any() else masks[component]
            scores[component] = float(energy[region].mean())
        for first, second in itertools.combinations(sequence, 2):  # first was edited before second
            total += 1
            right += scores[second] > scores[first]
    return right, total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--split", default="val")
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    dataset = SyntheticSeqDeepFake(args.split, size=args.size, num_images=args.images, seed=args.seed)
    for kind in ("laplacian", "difference of Gaussians"):
        right, total = pairs_right(dataset, kind)
        print(f"{kind}: {right}/{total} ordered pairs right = {right / total:.3f} ({args.size} px, {args.split})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
