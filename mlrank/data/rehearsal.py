"""Small data sets in the real data sets' on-disk formats, made from the built-in generator: what
``python -m mlrank.rehearse`` trains a shipped config on, and what the cross-family study writes.

- Seq-DeepFake: JPEG images and the official CSVs (``write_seqdeepfake_layout``).
- DeepfakeBench (:func:`write_deepfakebench_set`): frames under ``<frames root>/<data set>/...`` and
  the data set's JSON index with absolute frame paths, as DeepfakeBench's ``rearrange.py`` writes
  them (FaceForensics++ with its compression level, the label keys of DeepfakeBench's label_dict),
  and optionally an LMDB database of the same frames, keyed as its ``dataset2lmdb`` keys them.
- Frame folders (:func:`write_frame_folders`): ``<root>/<split>/{real,fake}/<video>/<frame>.png``.

Decisions:
- A video is one synthetic face (an item of the generator's split): its frames are that image
  shifted by at most one pixel each way (edges reflected), so the frames of a video differ as the
  frames of a still talking head do, and each video is one identity, as in FaceForensics++.
- The fakes of a data set come from one family of edits: the facial-component edits (nose, eye,
  eyebrow, lip, hair: ``facial_components``) or the attribute edits (bangs, glasses, beard, smile,
  age: ``facial_attributes``), so two families make two data sets of unlike manipulations for a
  cross-data-set test. The reals of each data set are the generator's unedited faces of that
  subset (the attribute subset draws older faces, a shift between the sets' reals too).
- Every file is written atomically; a folder that already holds anything is refused, so a writer
  never mixes into (or overwrites) somebody's data.
"""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from mlrank.data.synthetic import SyntheticSeqDeepFake
from mlrank.engine.runs import atomic_write_bytes, atomic_write_text

# DeepfakeBench's label keys (real, fake) of the data sets the shipped configs name; others get
# the plain "real" and "fake" its label_dict (and mlrank's) also maps.
DEEPFAKEBENCH_LABEL_KEYS = {
    "FaceForensics++": ("FF-real", "FF-DF"),
    "Celeb-DF-v2": ("CelebDFv2_real", "CelebDFv2_fake"),
    "DFDC": ("DFDC_Real", "DFDC_Fake"),
    "DFDCP": ("DFDCP_Real", "DFDCP_FakeA"),
}
COMPRESSED = {"FaceForensics++": "c23"}  # data sets whose index has a compression level
SPLITS = ("train", "val", "test")


@dataclass
class SyntheticVideos:
    """How a binary data set is drawn from the generator: ``videos[split]`` real and as many fake
    videos per split, ``frames`` frames each, of ``size`` pixels, fakes from the edit ``family``."""

    videos: dict[str, int] = field(default_factory=lambda: {"train": 4, "val": 2, "test": 2})
    frames: int = 2
    size: int = 64
    family: str = "facial_components"
    seed: int = 0


def refuse_non_empty(folder: str | Path, what: str) -> Path:
    """``folder`` as a Path, or a FileExistsError when it exists and holds anything (or is a file)."""
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise FileExistsError(f"{what} {folder} already holds data; give an empty or new folder, so that nothing "
                              "in it is mixed in or overwritten")
    return folder


def videos_of(split: str, spec: SyntheticVideos) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(real faces, fake faces) of a split, ``spec.videos[split]`` each, as uint8 RGB images."""
    wanted = spec.videos.get(split, 0)
    dataset = SyntheticSeqDeepFake(split, spec.family, size=spec.size, num_images=max(6, 6 * wanted), seed=spec.seed)
    is_real = [bool(row[0] == 0) for row in dataset.sequences()]
    reals = [i for i, real in enumerate(is_real) if real][:wanted]
    fakes = [i for i, real in enumerate(is_real) if not real][:wanted]
    return [dataset.sample(i).image for i in reals], [dataset.sample(i).image for i in fakes]


def stable_seed(*parts: object) -> int:
    """A seed from ``parts`` that is the same in every process (``hash`` of a str is not)."""
    return zlib.crc32("/".join(map(str, parts)).encode("utf-8"))


def frames_of(image: np.ndarray, count: int, seed: int) -> list[np.ndarray]:
    """``count`` frames of one still face: the image shifted by at most a pixel each way."""
    generator = np.random.default_rng(seed)
    height, width = image.shape[:2]
    frames = []
    for _ in range(count):
        dx, dy = generator.integers(-1, 2, size=2)
        shift = np.float32([[1, 0, dx], [0, 1, dy]])
        frames.append(cv2.warpAffine(image, shift, (width, height), borderMode=cv2.BORDER_REFLECT))
    return frames


def _write_png(path: Path, image: np.ndarray) -> None:
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"OpenCV could not encode {path.name} as PNG")
    atomic_write_bytes(path, encoded.tobytes(), durable=False)


def _write_video(folder: Path, image: np.ndarray, count: int, seed: int) -> list[Path]:
    paths = []
    for index, frame in enumerate(frames_of(image, count, seed)):
        path = folder / f"{index:03d}.png"
        _write_png(path, frame)
        paths.append(path)
    return paths


def write_deepfakebench_set(
    frames_root: str | Path, json_folder: str | Path, name: str, spec: SyntheticVideos,
    lmdb_path: str | Path | None = None,
) -> Path:
    """One data set as DeepfakeBench's ``rearrange.py`` writes it: frames under ``frames_root/name``,
    the index ``json_folder/<name>.json`` listing them by absolute path; with ``lmdb_path`` also an
    LMDB database of the frames (key ``"<name>\\<path under frames_root/name>"``). Returns the index."""
    frames_root, json_folder = Path(frames_root).resolve(), Path(json_folder)
    real_key, fake_key = DEEPFAKEBENCH_LABEL_KEYS.get(name, ("real", "fake"))
    index: dict = {real_key: {}, fake_key: {}}
    written: list[Path] = []
    for split in SPLITS:
        reals, fakes = videos_of(split, spec)
        for key, faces in ((real_key, reals), (fake_key, fakes)):
            videos = {}
            for number, image in enumerate(faces):
                video = f"{split}_{number:03d}"
                paths = _write_video(frames_root / name / key / "frames" / video, image, spec.frames,
                                     seed=stable_seed(spec.seed, name, split, key, number))
                written += paths
                videos[video] = {"label": key, "frames": [str(path) for path in paths]}
            level = COMPRESSED.get(name)
            index[key][split] = {level: videos} if level else videos
    json_folder.mkdir(parents=True, exist_ok=True)
    index_path = json_folder / f"{name}.json"
    atomic_write_text(index_path, json.dumps({name: index}, indent=1) + "\n")
    if lmdb_path is not None:
        write_lmdb(lmdb_path, written, frames_root / name)
    return index_path


def write_lmdb(database: str | Path, frames: list[Path], dataset_folder: Path) -> None:
    """An LMDB database of ``frames`` as DeepfakeBench's ``dataset2lmdb`` writes it: key
    ``"<data set folder's name>\\<path relative to it>"``, value the file's bytes."""
    from mlrank.optional import require

    lmdb = require("lmdb", "lmdb", "an LMDB data set")
    Path(database).mkdir(parents=True, exist_ok=True)
    environment = lmdb.open(str(database), map_size=1 << 30)
    try:
        with environment.begin(write=True) as transaction:
            for path in frames:
                key = f"{dataset_folder.name}\\{os.path.relpath(path, dataset_folder)}"
                transaction.put(key.encode("utf-8"), path.read_bytes())
    finally:
        environment.close()


def write_frame_folders(root: str | Path, spec: SyntheticVideos) -> Path:
    """``root/<split>/{real,fake}/<video>/<frame>.png`` for every split of ``spec``; returns root."""
    root = Path(root)
    for split in SPLITS:
        reals, fakes = videos_of(split, spec)
        for label, faces in (("real", reals), ("fake", fakes)):
            for number, image in enumerate(faces):
                _write_video(root / split / label / f"video{number:03d}", image, spec.frames,
                             seed=stable_seed(spec.seed, split, label, number))
    return root
