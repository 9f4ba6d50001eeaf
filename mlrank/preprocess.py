"""Videos or images to square face crops: `python -m mlrank.preprocess INPUT OUTPUT`.

    python -m mlrank.preprocess INPUT OUTPUT [--frames-per-video 32] [--margin 1.3] [--size 256]
        [--detector haar|yunet] [--detector-model FILE] [--report FILE] [--overwrite] [--no-progress]

INPUT is a video, an image, or a folder searched recursively for both. A video `a/b.mp4` gives
`OUTPUT/a/b/<frame index>.png`, one folder per video; an image `a/c.jpg` gives `OUTPUT/a/c.png`, so
a folder of extracted frames stays a folder of crops. Put OUTPUT under `real/` or `fake/` and it is a
`mlrank.data.binary.FrameFolderDataset` subtree. Inputs or frames with no face, unreadable files and videos
that end early are listed in a JSON report (default `OUTPUT/preprocess_report.json`) and summed up
on stdout; nothing is skipped silently.

Decisions:
- No run writes over an input: OUTPUT and the report must not be, contain or lie inside INPUT
  (`preprocess faces/ faces/` and `preprocess photo.png .` are errors naming both), and the output
  of every input is checked the same way after following symbolic links. Outputs that exist already
  (a crop, a video's frame folder, the report) are an error unless --overwrite is given, which
  replaces the files this run writes and deletes nothing.
- --margin must be finite and in (0, MAX_MARGIN = 10], --size in [1, MAX_CROP_SIZE = 4096]: the
  padded square is held in memory before it is resized, so larger values only exhaust memory.
- Images are read by `mlrank.data.io.read_image`, the loaders' reader: EXIF orientation applied,
  16-bit and float files scaled by their true range, oversized files refused. Crops are 8-bit,
  the depth of video frames and of the public deepfake data sets.
- Detectors sit in a registry (`register_detector`), each a factory taking an optional weights
  file and returning a function from a BGR image to (x, y, w, h) boxes.
  "haar" (the default) is OpenCV's frontal-face Haar cascade, whose XML files ship inside the
  OpenCV 4 wheels that mlrank's dependencies ask for (opencv-python-headless>=4.8,<5; OpenCV 5
  wheels dropped them), so it works offline out of the box; without them it is an error naming
  the fix.
  "yunet" is OpenCV's FaceDetectorYN, a small CNN and far more reliable than Haar on the rotated,
  blurred and compressed faces of deepfake videos; its weights (`face_detection_yunet_2023mar.onnx`,
  opencv_zoo) ship with no installable package, so --detector-model must name the file.
- The largest face is kept. The crop is a square of side margin * max(w, h) centred on the box;
  what falls outside the frame is padded black, so the face keeps its place and scale rather than
  being shifted by a clamp. It is resized with INTER_AREA when shrinking, INTER_CUBIC when enlarging.
- Frames are picked evenly spaced over the container's frame count (np.linspace, as the loaders
  pick frames) and read in order with grab/retrieve, because seeking by frame index lands on the
  wrong frame with many codecs. A video that ends before its announced count is reported.
  --frames-per-video 0 keeps every frame.
- Crops are PNG, written atomically: lossless, so a model trained on them cannot learn artefacts of
  our own re-encoding.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np
from tqdm import tqdm

from mlrank.data.io import (
    IMAGE_EXTENSIONS,
    check_frames_per_video,
    check_output_apart,
    evenly_spaced_indices,
    read_image,
    refuse_existing_outputs,
    to_bgr8,
)
from mlrank.data.squares import Square, crop_square, face_square
from mlrank.engine.locks import command_line, command_words, output_lock
from mlrank.engine.runs import atomic_write_bytes

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"})
REPORT_NAME = "preprocess_report.json"
MAX_MARGIN = 10.0
MAX_CROP_SIZE = 4096
OPENCV_4 = "opencv-python-headless>=4.8,<5"

Box = tuple[float, float, float, float]  # x, y, width, height in pixels
# the project's user-error types: a one-line message and exit status 2
USER_ERRORS = (ValueError, TypeError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError,
               PermissionError)
FaceDetector = Callable[[np.ndarray], list[Box]]
DetectorFactory = Callable[[str | None], FaceDetector]

DETECTORS: dict[str, DetectorFactory] = {}


def register_detector(name: str) -> Callable[[DetectorFactory], DetectorFactory]:
    """Decorator registering a detector factory under `name`: factory(model_path or None) -> detector."""

    def register(factory: DetectorFactory) -> DetectorFactory:
        if name in DETECTORS:
            raise ValueError(f"a face detector named {name!r} is already registered")
        DETECTORS[name] = factory
        return factory

    return register


def create_detector(name: str, model_path: str | None = None) -> FaceDetector:
    """Build the registered detector `name`, with its weights file if it needs one."""
    if name not in DETECTORS:
        raise ValueError(f"unknown face detector {name!r}; registered: {sorted(DETECTORS)}")
    if model_path is not None and not os.path.isfile(model_path):
        raise FileNotFoundError(f"detector model file not found: {model_path}")
    return DETECTORS[name](model_path)


@register_detector("yunet")
def yunet_detector(model_path: str | None, score_threshold: float = 0.9) -> FaceDetector:
    """OpenCV's YuNet face detector (cv2.FaceDetectorYN); needs its ONNX weights file."""
    if model_path is None:
        raise ValueError(
            "the yunet detector needs its weights: pass --detector-model face_detection_yunet_2023mar.onnx "
            "(from opencv_zoo, models/face_detection_yunet)"
        )
    if not hasattr(cv2, "FaceDetectorYN"):
        raise ValueError(f"OpenCV {cv2.__version__} has no FaceDetectorYN; install {OPENCV_4!r}")
    network = cv2.FaceDetectorYN.create(model_path, "", (320, 320), score_threshold)

    def detect(image: np.ndarray) -> list[Box]:
        height, width = image.shape[:2]
        network.setInputSize((width, height))
        _, faces = network.detect(image)
        return [] if faces is None else [tuple(float(v) for v in face[:4]) for face in faces]

    return detect


@register_detector("haar")
def haar_detector(model_path: str | None) -> FaceDetector:
    """OpenCV's Haar cascade (frontal face), shipped with the OpenCV 4 wheels."""
    fix = (
        f"install OpenCV 4 (pip install {OPENCV_4!r}, the version mlrank declares), pass --detector-model "
        "CASCADE.xml, or use --detector yunet"
    )
    cascade_class = getattr(cv2, "CascadeClassifier", None)
    if cascade_class is None:
        raise ValueError(
            f"the haar detector needs cv2.CascadeClassifier, which OpenCV {cv2.__version__} lacks "
            f"(OpenCV 5 moved it to opencv_contrib): {fix}"
        )
    if model_path is None:
        cascade_folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
        path = os.path.join(cascade_folder or "", "haarcascade_frontalface_default.xml")
        if not cascade_folder or not os.path.isfile(path):
            raise FileNotFoundError(
                f"OpenCV {cv2.__version__} ships no Haar cascade (haarcascade_frontalface_default.xml, "
                f"looked for in cv2.data.haarcascades = {cascade_folder!r}): {fix}"
            )
    else:
        path = model_path
    cascade = cascade_class(path)
    if cascade.empty():
        raise ValueError(f"cannot load Haar cascade {path}")

    def detect(image: np.ndarray) -> list[Box]:
        grey = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
        faces = cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(30, 30))
        return [tuple(float(v) for v in face) for face in faces]

    return detect


def crop_face(image: np.ndarray, box: Box, margin: float, size: int) -> np.ndarray:
    """The square of side margin * max(w, h) centred on `box`, padded black outside the image, resized to size."""
    square = face_square(box, margin)
    interpolation = cv2.INTER_AREA if square[2] > size else cv2.INTER_CUBIC
    return cv2.resize(crop_square(image, square), (size, size), interpolation=interpolation)


def largest_face(boxes: list[Box]) -> Box | None:
    """The box of largest area, or None when there is none."""
    return max(boxes, key=lambda box: box[2] * box[3], default=None)


@dataclass
class PreprocessReport:
    """What a run did; written as JSON. Paths are relative to INPUT."""

    settings: dict
    inputs: int = 0
    crops_written: int = 0
    videos_without_faces: list[str] = field(default_factory=list)
    frames_without_faces: dict[str, list[int]] = field(default_factory=dict)  # videos with some faces
    images_without_faces: list[str] = field(default_factory=list)
    short_videos: dict[str, dict[str, int]] = field(default_factory=dict)  # {"announced", "read"} frames
    unreadable: dict[str, str] = field(default_factory=dict)  # path -> reason
    ignored_files: list[str] = field(default_factory=list)  # neither video nor image

    def summary(self) -> str:
        frames = sum(len(indices) for indices in self.frames_without_faces.values())
        return (
            f"{self.inputs} input(s), {self.crops_written} crop(s) written; no face in "
            f"{len(self.videos_without_faces)} video(s), {frames} frame(s) of {len(self.frames_without_faces)} "
            f"other video(s), {len(self.images_without_faces)} image(s); {len(self.unreadable)} unreadable, "
            f"{len(self.short_videos)} video(s) shorter than announced, {len(self.ignored_files)} file(s) ignored"
        )


def check_margin(margin: float) -> None:
    """Raise a ValueError naming --margin unless it is a finite number in (0, MAX_MARGIN]."""
    if isinstance(margin, bool) or not isinstance(margin, (int, float)):
        raise TypeError(f"margin (--margin) must be a number, got {type(margin).__name__}")
    if not (math.isfinite(margin) and 0 < margin <= MAX_MARGIN):
        raise ValueError(f"margin (--margin) must be a finite number in (0, {MAX_MARGIN:g}], got {margin}")


def preprocess(
    input_path: str | os.PathLike,
    output_dir: str | os.PathLike,
    frames_per_video: int | None = 32,
    margin: float = 1.3,
    size: int = 256,
    detector: str = "haar",
    detector_model: str | None = None,
    report_path: str | os.PathLike | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> PreprocessReport:
    """Write face crops of every video and image under `input_path` to `output_dir`; returns the report.

    The report is also written as JSON to `report_path` (default OUTPUT/preprocess_report.json).
    Outputs that exist already are an error (FileExistsError) unless `overwrite`.
    """
    input_path, output_dir = os.fspath(input_path), os.fspath(output_dir)
    check_margin(margin)
    if isinstance(size, bool) or not isinstance(size, int):
        raise TypeError(f"size (--size) must be an int, got {type(size).__name__}")
    if not 1 <= size <= MAX_CROP_SIZE:
        raise ValueError(f"size (--size) must be in [1, {MAX_CROP_SIZE}] pixels, got {size}")
    check_frames_per_video(frames_per_video)
    report_path = os.fspath(report_path) if report_path is not None else os.path.join(output_dir, REPORT_NAME)
    _check_outputs(input_path, output_dir, report_path)
    detect = create_detector(detector, detector_model)
    media, ignored = find_media(input_path)
    existing = _existing_outputs(media, input_path, output_dir, report_path)
    if not overwrite:
        refuse_existing_outputs(existing)
    report = PreprocessReport(
        settings=dict(
            input=input_path, output=output_dir, frames_per_video=frames_per_video, margin=margin,
            size=size, detector=detector, detector_model=detector_model, report=report_path,
        ),
        ignored_files=ignored,
    )

    for path, relative, kind in tqdm(media, unit="file", disable=not progress, desc="faces"):
        report.inputs += 1
        output_stem = os.path.join(output_dir, os.path.splitext(relative)[0])
        if kind == "image":
            _crop_image(path, relative, output_stem + ".png", detect, margin, size, report)
        else:
            _crop_video(path, relative, output_stem, detect, margin, size, frames_per_video, report)

    atomic_write_bytes(report_path, json.dumps(asdict(report), indent=2).encode(), durable=False)
    return report


def _check_outputs(input_path: str, output_dir: str, report_path: str) -> None:
    """Refuse outputs that are files where folders belong, or that overlap the input."""
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise NotADirectoryError(f"output folder (OUTPUT) {output_dir} is an existing file; OUTPUT must be a folder")
    if os.path.isdir(report_path):
        raise IsADirectoryError(f"report (--report) {report_path} is a folder; it must be a file path")
    check_output_apart(output_dir, "output folder (OUTPUT)", [input_path])
    check_output_apart(report_path, "report (--report)", [input_path])


def _existing_outputs(
    media: list[tuple[str, str, str]], input_path: str, output_dir: str, report_path: str
) -> list[str]:
    """The outputs of this run that exist already; raises if one resolves into the input (a symbolic link)."""
    existing = [report_path] if os.path.exists(report_path) else []
    for _, relative, kind in media:
        output = os.path.join(output_dir, os.path.splitext(relative)[0]) + (".png" if kind == "image" else "")
        check_output_apart(output, "output", [input_path])
        if os.path.isfile(output) or (os.path.isdir(output) and os.listdir(output)):
            existing.append(output)
    return existing


def _crop_image(
    path: str, relative: str, output: str, detect: FaceDetector, margin: float, size: int, report: PreprocessReport
) -> None:
    try:
        image = to_bgr8(read_image(path))
    except (ValueError, OSError) as error:
        report.unreadable[relative] = str(error)
        return
    box = largest_face(detect(image))
    if box is None:
        report.images_without_faces.append(relative)
        return
    _write_png(output, crop_face(image, box, margin, size))
    report.crops_written += 1


def _crop_video(
    path: str, relative: str, output_folder: str, detect: FaceDetector, margin: float, size: int,
    frames_per_video: int | None, report: PreprocessReport,
) -> None:
    faceless: list[int] = []
    found = 0
    try:
        for index, frame in read_video_frames(path, frames_per_video, report.short_videos, relative):
            box = largest_face(detect(frame))
            if box is None:
                faceless.append(index)
                continue
            _write_png(os.path.join(output_folder, f"{index:06d}.png"), crop_face(frame, box, margin, size))
            found += 1
    except UnreadableVideoError as error:
        report.unreadable[relative] = str(error)
        return
    report.crops_written += found
    if found == 0:
        report.videos_without_faces.append(relative)
    elif faceless:
        report.frames_without_faces[relative] = faceless


def find_media(input_path: str) -> tuple[list[tuple[str, str, str]], list[str]]:
    """(path, path relative to input, "video" | "image") of every input, and the relative paths of other files.

    A folder is searched recursively in sorted order, passing over hidden entries.
    """
    if os.path.isfile(input_path):
        kind = _media_kind(input_path)
        if kind is None:
            raise ValueError(f"{input_path} is neither a video ({sorted(VIDEO_EXTENSIONS)}) nor an image")
        return [(input_path, os.path.basename(input_path), kind)], []
    if not os.path.isdir(input_path):
        raise FileNotFoundError(f"input not found: {input_path}")
    media, ignored, outputs = [], [], {}
    for folder, subfolders, files in os.walk(input_path):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = os.path.join(folder, name)
            relative = os.path.relpath(path, input_path)
            kind = _media_kind(name)
            if kind is None:
                ignored.append(relative)
                continue
            output = (os.path.splitext(relative)[0], kind)  # a.mp4 and a.avi would share OUTPUT/a/
            if output in outputs:
                raise ValueError(f"{outputs[output]} and {relative} would write to the same output; rename one")
            outputs[output] = relative
            media.append((path, relative, kind))
    if not media:
        raise ValueError(f"no videos or images found under {input_path}")
    return media, ignored


def read_video_frames(
    path: str, frames_per_video: int | None, short_videos: dict[str, dict[str, int]], name: str
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (frame index, BGR frame) for evenly spaced frames of a video.

    A video that ends before its announced frame count is recorded in `short_videos[name]`.
    Raises UnreadableVideoError when the file cannot be opened or no frame decodes.
    """
    capture = cv2.VideoCapture(path)
    try:
        if not capture.isOpened():
            raise UnreadableVideoError("cannot open video")
        announced = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        if announced <= 0:  # some containers do not store a count: count by decoding
            announced = _count_frames(path)
        wanted = evenly_spaced_indices(announced, frames_per_video)
        position, read = 0, 0
        for index in wanted:
            while position < index and capture.grab():
                position += 1
            ok = position == index and capture.grab()
            frame = capture.retrieve()[1] if ok else None
            if frame is None:
                if read == 0:
                    raise UnreadableVideoError("cannot decode any frame")
                short_videos[name] = {"announced": announced, "read": position}
                return
            position += 1
            read += 1
            yield index, frame
    finally:
        capture.release()


class UnreadableVideoError(ValueError):
    """A video that cannot be opened or decoded; reported, not fatal."""


def _count_frames(path: str) -> int:
    capture = cv2.VideoCapture(path)
    count = 0
    while capture.grab():
        count += 1
    capture.release()
    if count == 0:
        raise UnreadableVideoError("cannot decode any frame")
    return count


def _media_kind(path: str) -> str | None:
    extension = os.path.splitext(path)[1].lower()
    if extension in VIDEO_EXTENSIONS:
        return "video"
    if extension in IMAGE_EXTENSIONS:
        return "image"
    return None


def _write_png(path: str, image: np.ndarray) -> None:
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise ValueError(f"cannot encode crop for {path}")
    atomic_write_bytes(path, encoded.tobytes(), durable=False)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m mlrank.preprocess", description="Videos or images to square face crops, with a report."
    )
    parser.add_argument("input", help="a video, an image, or a folder searched recursively for both")
    parser.add_argument("output", help="folder for the crops (one subfolder per video)")
    parser.add_argument("--frames-per-video", type=int, default=32, help="evenly spaced frames per video; 0 = all")
    parser.add_argument("--margin", type=float, default=1.3, help="crop side / largest face side")
    parser.add_argument("--size", type=int, default=256, help="side of the saved crops in pixels")
    parser.add_argument("--detector", default="haar", choices=sorted(DETECTORS))
    parser.add_argument("--detector-model", help="the detector's weights (yunet: face_detection_yunet_*.onnx)")
    parser.add_argument("--report", help=f"JSON report path (default OUTPUT/{REPORT_NAME})")
    parser.add_argument("--overwrite", action="store_true", help="replace outputs that exist already")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)
    if args.frames_per_video < 0:
        parser.error(f"--frames-per-video must be >= 0, got {args.frames_per_video}")
    try:
        with output_lock(args.output, command_line(command_words("mlrank.preprocess", argv))):
            report = preprocess(
                args.input, args.output, frames_per_video=args.frames_per_video or None, margin=args.margin,
                size=args.size, detector=args.detector, detector_model=args.detector_model,
                report_path=args.report, progress=not args.no_progress, overwrite=args.overwrite,
            )
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(report.summary())
    print(f"report: {report.settings['report']}")
    return 0


if __name__ == "__main__":
    from mlrank.cli import run_cli

    sys.exit(run_cli(main))
