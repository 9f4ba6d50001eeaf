"""Predict on image files: ``python -m mlrank.predict CHECKPOINT IMAGE_OR_FOLDER ... [--output-dir DIR]``.

For each image: the probability that it is fake, and (Seq-DeepFake models) the manipulated
components in their predicted order with their probabilities, all in one JSON file
(``predictions.json``, written atomically), plus a PNG heat map per image of each patch's mean
similarity to the other patches, laid over the image: the contrastive-MIL view, where patches
unlike the rest of the face are the suspect ones, drawn hot (red). SeeABLE checkpoints give the
anomaly score only. A missing or corrupt image, or a checkpoint that does not fit its config, is an
error naming it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import torch

from mlrank.builders import Resize, is_binary
from mlrank.config import Config
from mlrank.data.io import is_image_file, natural_sort_key, read_rgb
from mlrank.data.vocab import names_of
from mlrank.decoding import decode
from mlrank.evaluate import load_model
from mlrank.ops import contrastive_mil
from mlrank.runs import atomic_write_bytes, atomic_write_json


def find_images(inputs: Sequence[str]) -> list[Path]:
    """Image files named directly or found (recursively) in named folders, in natural order."""
    images: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted((p for p in item.rglob("*") if p.is_file() and is_image_file(p)), key=lambda p: natural_sort_key(str(p)))
            if not found:
                raise FileNotFoundError(f"folder {item} holds no image files")
            images.extend(found)
        elif item.is_file():
            images.append(item)
        else:
            raise FileNotFoundError(f"image not found: {item}")
    return images


def patch_similarity_map(tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Each patch's mean rectified similarity to the other patches, as an (h, w) map in [0, 1]."""
    similarity = (tokens @ tokens.transpose(-1, -2)).relu()
    count = tokens.shape[-2]
    mean_to_others = (similarity.sum(-1) - similarity.diagonal(dim1=-2, dim2=-1)) / (count - 1)
    return mean_to_others.reshape(grid)


def heat_map_png(image: torch.Tensor, similarity_map: torch.Tensor) -> bytes:
    """The image with low-similarity patches drawn hot, as PNG bytes."""
    height, width = image.shape[-2:]
    suspicion = 1.0 - similarity_map.float()
    spread = suspicion.max() - suspicion.min()
    suspicion = (suspicion - suspicion.min()) / spread if spread > 0 else torch.zeros_like(suspicion)
    heat = cv2.resize(suspicion.numpy().astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
    colours = cv2.applyColorMap(np.clip(heat * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
    picture = cv2.cvtColor((image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".png", cv2.addWeighted(picture, 0.55, colours, 0.45, 0.0))
    if not ok:
        raise RuntimeError("could not encode the heat map as PNG")
    return encoded.tobytes()


@torch.no_grad()
def predict_image(cfg: Config, model: Any, image: torch.Tensor, threshold: float) -> tuple[dict[str, Any], torch.Tensor | None]:
    """The prediction record of one resized image, and its similarity map (None for SeeABLE)."""
    if cfg.method == "seeable":
        from mlrank.seeable import training

        return {"anomaly_score": float(training.score_images(cfg, model, image[None])[0])}, None
    outputs = model(image[None])
    probs = outputs["logits"].float().sigmoid()[0]
    mil_prob = float(contrastive_mil(outputs["tokens"].float(), cfg.loss.tau, cfg.loss.num_k)[0][0])
    similarity = patch_similarity_map(outputs["tokens"][0].float(), outputs["grid"])
    if is_binary(cfg):
        return {"fake_probability": float(probs[0]), "mil_probability": mil_prob}, similarity
    names = names_of(cfg.data.subset)
    order = [int(i) for i in decode(probs[None], threshold)[0] if i > 0]
    record = {
        "fake_probability": mil_prob,
        "manipulations": [{"id": i, "name": names[i - 1], "probability": float(probs[i - 1])} for i in order],
        "probabilities": {name: float(p) for name, p in zip(names, probs)},
    }
    return record, similarity


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlrank.predict", description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("images", nargs="+", help="image files or folders of them")
    parser.add_argument("--output-dir", default="predictions", help="predictions.json and the heat maps")
    parser.add_argument("--threshold", type=float, default=0.5, help="P_i above which a component is manipulated")
    parser.add_argument("--no-heatmaps", action="store_true")
    args = parser.parse_args(argv)

    cfg, _, model = load_model(args.checkpoint)
    paths = find_images(args.images)
    resize = Resize(cfg.data.image_size)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    records = []
    for index, path in enumerate(paths):
        image = resize(read_rgb(path))
        record, similarity = predict_image(cfg, model, image, args.threshold)
        record = {"image": str(path), **record}
        if similarity is not None and not args.no_heatmaps:
            heat_map = output_dir / f"{index:05d}_{path.stem}_heatmap.png"
            atomic_write_bytes(heat_map, heat_map_png(image, similarity))
            record["heatmap"] = str(heat_map)
        records.append(record)
        print(_summary(record), flush=True)
    atomic_write_json(output_dir / "predictions.json", records)
    print(f"{len(records)} predictions written to {output_dir / 'predictions.json'}")
    return 0


def _summary(record: dict[str, Any]) -> str:
    name = os.path.basename(record["image"])
    if "anomaly_score" in record:
        return f"{name}: anomaly score {record['anomaly_score']:.4f}"
    order = " -> ".join(m["name"] for m in record.get("manipulations", [])) or "none"
    return f"{name}: fake {record['fake_probability']:.3f}; manipulated: {order}"


if __name__ == "__main__":
    from mlrank.cli import run_cli

    sys.exit(run_cli(main))
