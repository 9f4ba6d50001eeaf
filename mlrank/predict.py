"""Predict on image files: ``python -m mlrank.predict CHECKPOINT IMAGE_OR_FOLDER ... [--output-dir DIR]``.

For each image: the probability that it is fake, and (Seq-DeepFake models) the manipulated
components in their predicted order, every component's own probability, the rule that decided
(``decision``: ``threshold``, ``count_head`` or ``seen_sequences``) and a count head's distribution
over the number of edits, all in one JSON file (``predictions.json``, written atomically), plus a
PNG heat map per image of each patch's mean
similarity to the other patches, laid over the image at its own size: the contrastive-MIL view,
where patches unlike the rest of the face are the suspect ones, drawn hot (red). SeeABLE
checkpoints give the anomaly score only.

Decisions:
- Without ``--threshold`` the model decides by its own rule, as evaluation does (a count head's
  count, the training sequences with ``model.seen_sequences_only``, else P_i > 0.5); ``--threshold
  T`` decides by P_i > T on each component's own probability, whatever heads the model has.
- Images are read by `mlrank.data.io.read_image`, the loaders' reader (EXIF orientation, 16-bit
  and float files, the pixel bound).
- The model sees what training saw: a square face crop. Without --detect-faces that is the
  centred square around the whole image, padded black (a non-square photo keeps its aspect
  ratio); with it, preprocess's crop of the largest face (`mlrank.preprocess.face_square`, the
  same detector registry, --margin 1.3 as there). The square is resized by the loaders'
  `mlrank.engine.builders.Resize`, so a preprocessed square crop is fed exactly as evaluation feeds it.
- A square upscaled more than UPSCALE_WARNING = 2x to reach the model's input is scored with a
  warning (stderr and the record's "warnings"): the model has not seen such blur.
- An image that cannot be read (corrupt, truncated, too large, bad values) or in which no face is
  found is listed in predictions.json as {"image", "error"} and the run goes on; the exit status
  is then 1 and the message counts them. A missing input or checkpoint, or a checkpoint that does
  not fit its config, is an error before anything runs.
- --output-dir must not be, contain or lie inside an input; predictions.json and heat maps that
  exist already are an error unless --overwrite.
- --device auto uses CUDA when torch sees a GPU. The MIL score and the heat map are computed on
  the CPU from the (few) patch tokens, so a GPU run needs no CUDA build of mlrank's op.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import torch

from mlrank.data.io import (
    check_output_apart,
    is_image_file,
    natural_sort_key,
    output_stem,
    printable,
    read_image,
    readable_name,
    refuse_existing_outputs,
    to_bgr8,
)
from mlrank.engine.builders import Resize
from mlrank.engine.config import Config
from mlrank.engine.locks import command_line, command_words, output_lock
from mlrank.engine.methods import get_method
from mlrank.engine.runs import atomic_write_bytes, atomic_write_json, check_checkpoint_exists
from mlrank.evaluate import load_model
from mlrank.data.squares import Square, crop_square, face_square, whole_image_square
from mlrank.preprocess import DETECTORS, check_margin, create_detector, largest_face

UPSCALE_WARNING = 2.0
PREDICTIONS_NAME = "predictions.json"


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


def resolve_device(name: str) -> torch.device:
    """The torch device of --device: "auto" (CUDA when torch sees a GPU, else the CPU), "cpu", "cuda" or "cuda:N"."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {name!r} is not a device; use auto, cpu, cuda or cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"--device {name}: torch sees no CUDA GPU (torch.cuda.is_available() is False); use --device cpu"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: torch sees only {torch.cuda.device_count()} CUDA GPU(s)")
    return device


class ViewFailure(Exception):
    """An input the model cannot see: unreadable, or no face found. `reason` counts it, `error` goes in
    the image's record, `message` to stderr."""

    def __init__(self, reason: str, error: str, message: str) -> None:
        super().__init__(error)
        self.reason, self.error, self.message = reason, error, message


def read_view(path: Path, detect: Any, detector_name: str, margin: float) -> tuple[np.ndarray, Square]:
    """The image at `path` and the square the model sees of it: the whole image's, or with the face
    detector `detect` the largest face's crop; a ViewFailure when it cannot be read or holds no face."""
    try:
        image = read_image(path)
    except (ValueError, OSError) as error:
        raise ViewFailure("unreadable", str(error), f"error: {error}") from error
    if detect is None:
        return image, whole_image_square(*image.shape[:2])
    box = largest_face(detect(to_bgr8(image)))
    if box is None:
        raise ViewFailure("without a face", f"no face found by the {detector_name} detector", f"{path}: no face found")
    return image, face_square(box, margin)


class ImageRun:
    """The records of one run of predict or explain over images, and the images it could not use.

    ``views`` yields each usable image with its record begun; the caller completes the record, which
    joins ``records`` in input order. An unusable image gets a record with its error instead, and
    counts in ``failures`` by reason. ``finish`` reports both and returns the exit status.
    """

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.failures: Counter[str] = Counter()

    def views(self, paths: Sequence[Path], detect: Any, args: argparse.Namespace, size: int):
        """(index, path, image, square, record) for each image the model can see, as ``read_view``
        gives them; index is the image's place in ``paths``."""
        for index, path in enumerate(paths):
            try:
                image, square = read_view(path, detect, args.detector, args.margin)
            except ViewFailure as failure:
                self.records.append({"image": str(path), "error": failure.error})
                self.failures[failure.reason] += 1
                print(printable(failure.message), file=sys.stderr, flush=True)
                continue
            record: dict[str, Any] = {"image": str(path)}
            warning = upscale_warning(square, size, detect is not None)
            if warning:
                record["warnings"] = [warning]
                print(printable(f"warning: {path}: {warning}"), file=sys.stderr, flush=True)
            yield index, path, image, square, record
            self.records.append(record)

    def finish(self, done: str, not_done: str, listed_in: Path) -> int:
        """Print how many images were `done` (and which were `not_done`, with where they are listed);
        the exit status: 1 when some image could not be used, else 0."""
        failed = sum(self.failures.values())
        print(f"{len(self.records) - failed} image(s) {done}")
        if not failed:
            return 0
        counts = ", ".join(f"{count} {reason}" for reason, count in self.failures.items())
        print(f"{failed} of {len(self.records)} image(s) {not_done} ({counts}); listed with the reason in {listed_in}",
              file=sys.stderr)
        return 1


SYNTHETIC_CHECKPOINT_WARNING = (
    "this checkpoint was trained on mlrank's built-in synthetic faces: its scores mean nothing on real "
    "photographs; train on real data first (docs/data.md)"
)


def training_data_warning(cfg: Config) -> str | None:
    """The warning every output of a checkpoint trained on the built-in synthetic faces carries."""
    return SYNTHETIC_CHECKPOINT_WARNING if cfg.data.kind == "synthetic" else None


def upscale_warning(square: Square, size: int, detected: bool) -> str | None:
    """The warning for a square upscaled more than UPSCALE_WARNING times to the model's input, else None."""
    if square[2] * UPSCALE_WARNING >= size:
        return None
    return (f"upscaled {size / square[2]:.1f}x: the {'face' if detected else 'image'} is {square[2]} px across, "
            f"far smaller than the model's {size} px input")


def add_view_options(parser: argparse.ArgumentParser) -> None:
    """The options that choose what the model sees and where it runs (shared by predict and explain)."""
    parser.add_argument("--detect-faces", action="store_true", help="score the largest face's crop, as preprocess")
    parser.add_argument("--detector", default="haar", choices=sorted(DETECTORS), help="with --detect-faces")
    parser.add_argument("--detector-model", help="the detector's weights (yunet: face_detection_yunet_*.onnx)")
    parser.add_argument("--margin", type=float, default=1.3, help="with --detect-faces: crop side / face side")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda or cuda:N")


def face_detector(args: argparse.Namespace) -> Any:
    """The face detector of --detect-faces (its --margin checked), or None without it."""
    if not args.detect_faces:
        return None
    check_margin(args.margin)
    return create_detector(args.detector, args.detector_model)


def model_input(image: np.ndarray, square: Square, size: int) -> torch.Tensor:
    """The model's input [3, size, size]: `square` of the float RGB image, padded black, resized as loaders resize."""
    crop = crop_square(image, square)
    return Resize(size)(torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1))))


def heat_map_png(image: np.ndarray, similarity_map: torch.Tensor, square: Square) -> bytes:
    """The float RGB image at its own size, the model's view `square` in it coloured hot where similarity is low."""
    return overlay_png(image, 1.0 - similarity_map.float(), square)


def overlay_png(image: np.ndarray, values: torch.Tensor, square: Square) -> bytes:
    """The float RGB image at its own size, the (h, w) map `values` laid over `square`, scaled to its own
    range: hot (red) where highest, cold (blue) where lowest; uniform maps are drawn cold."""
    left, top, side = square
    values = values.float().cpu()
    spread = values.max() - values.min()
    values = (values - values.min()) / spread if spread > 0 else torch.zeros_like(values)
    heat = cv2.resize(values.numpy().astype(np.float32), (side, side), interpolation=cv2.INTER_CUBIC)
    colours = cv2.applyColorMap(np.clip(heat * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
    picture = to_bgr8(image)
    height, width = picture.shape[:2]
    x0, y0, x1, y1 = max(left, 0), max(top, 0), min(left + side, width), min(top + side, height)
    if x1 > x0 and y1 > y0:
        seen = colours[y0 - top : y1 - top, x0 - left : x1 - left]
        picture[y0:y1, x0:x1] = cv2.addWeighted(picture[y0:y1, x0:x1], 0.55, seen, 0.45, 0.0)
    return png_of(picture)


def png_of(picture: np.ndarray) -> bytes:
    """An 8-bit BGR picture encoded as PNG."""
    ok, encoded = cv2.imencode(".png", picture)
    if not ok:
        raise RuntimeError("could not encode the picture as PNG")
    return encoded.tobytes()


@torch.no_grad()
def predict_image(
    cfg: Config, model: Any, image: torch.Tensor, threshold: float | None
) -> tuple[dict[str, Any], torch.Tensor | None]:
    """The prediction record of one model input [3, S, S] by its method, and the patch similarity map
    drawn as its heat map (None where the method has none).

    The image goes to the model's device; the record and the map come back on the CPU.
    """
    batch = image[None].to(next(model.parameters()).device)
    return get_method(cfg.method).predict_image(cfg, model, batch, threshold)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: 0 when every image was scored, 1 when some could not be."""
    parser = argparse.ArgumentParser(prog="python -m mlrank.predict", description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("images", nargs="+", help="image files or folders of them")
    parser.add_argument("--output-dir", default="predictions", help="predictions.json and the heat maps")
    parser.add_argument("--threshold", type=float, default=None,
                        help="decide each component by P_i > THRESHOLD (default: the model's own rule: P_i > 0.5, "
                             "or its count head, or the training sequences)")
    parser.add_argument("--no-heatmaps", action="store_true")
    add_view_options(parser)
    parser.add_argument("--overwrite", action="store_true", help="replace predictions and heat maps that exist")
    args = parser.parse_args(argv)

    check_checkpoint_exists(args.checkpoint)  # before any work on the images
    device = resolve_device(args.device)
    detect = face_detector(args)
    paths = find_images(args.images)
    output_dir = Path(args.output_dir)
    with output_lock(output_dir, command_line(command_words("mlrank.predict", argv))):
        return predict_images(args, paths, output_dir, device, detect)


def predict_images(args: argparse.Namespace, paths: list[Path], output_dir: Path, device: torch.device,
                   detect: Any) -> int:
    """predict's work on the images found, with its output folder locked."""
    heat_maps = None
    if not args.no_heatmaps:
        heat_maps = [output_dir / f"{output_stem(index, path)}_heatmap.png" for index, path in enumerate(paths)]
    check_outputs(output_dir, args.images, [output_dir / PREDICTIONS_NAME, *(heat_maps or [])], args.overwrite)
    cfg, _, model = load_model(args.checkpoint, device=device)
    size = cfg.data.image_size
    checkpoint_warning = training_data_warning(cfg)
    if checkpoint_warning:
        print(f"warning: {checkpoint_warning}", file=sys.stderr, flush=True)

    run = ImageRun()
    for index, _, image, square, record in run.views(paths, detect, args, size):
        prediction, similarity = predict_image(cfg, model, model_input(image, square, size), args.threshold)
        record.update(prediction)
        if checkpoint_warning:
            record["checkpoint_warning"] = checkpoint_warning
        if similarity is not None and heat_maps is not None:
            atomic_write_bytes(heat_maps[index], heat_map_png(image, similarity, square))
            record["heatmap"] = str(heat_maps[index])
        print(printable(_summary(record)), flush=True)
    atomic_write_json(output_dir / PREDICTIONS_NAME, run.records)
    if checkpoint_warning:
        print(f"warning: {checkpoint_warning}", file=sys.stderr, flush=True)  # again, under the scores
    return run.finish(f"scored; predictions written to {output_dir / PREDICTIONS_NAME}", "not scored",
                      output_dir / PREDICTIONS_NAME)


def check_outputs(output_dir: Path, inputs: Sequence[str], outputs: list[Path], overwrite: bool) -> None:
    """--output-dir is a folder (or not yet there) apart from the inputs; `outputs` that exist need `overwrite`."""
    if output_dir.exists() and not output_dir.is_dir():
        raise NotADirectoryError(f"--output-dir {output_dir} is an existing file; it must be a folder")
    check_output_apart(output_dir, "--output-dir", inputs)
    if not overwrite:
        refuse_existing_outputs([path for path in outputs if path.exists()])


def _summary(record: dict[str, Any]) -> str:
    name = readable_name(record["image"])
    if "anomaly_score" in record:
        return f"{name}: anomaly score {record['anomaly_score']:.4f}"
    order = " -> ".join(m["name"] for m in record.get("manipulations", [])) or "none"
    return f"{name}: fake {record['fake_probability']:.3f}; manipulated: {order}"


if __name__ == "__main__":
    from mlrank.cli import run_cli

    sys.exit(run_cli(main))
