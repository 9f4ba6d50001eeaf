"""Binary (real / fake) deepfake data sets from extracted face frames: FF++, Celeb-DF, DFDC, DFD, WildDeepfake.

Two layouts:

- `DeepfakeBenchDataset`: DeepfakeBench's JSON index (e.g. `FaceForensics++.json`),
  `{dataset: {label key: {split: [{compression:}] {video: {"label": ..., "frames": [paths]}}}}}`,
  label keys such as "FF-real", "FF-DF", "CelebDFv2_fake", the compression level ("c23", "c40",
  "raw") present only for the FaceForensics++ family.
- `FrameFolderDataset`: `root/{real,fake}/<video>/<frame>`, what `python -m mlrank.preprocess`
  writes when its output is put under `real/` or `fake/`.

Items are (image float[3, H, W] in [0, 1], label int 0 real / 1 fake, video id str).

Decisions:
- Frames are sorted naturally by file name and `frames_per_video` of them are taken evenly spaced
  (np.linspace over the sorted frames, DeepfakeBench's rule); None keeps every frame.
- Video ids are "<label key>/<video>" (DeepfakeBench) or "<real|fake>/<video folder>" (folders):
  FF++ reuses a video name across label keys, and video-level metrics need each id once. An image
  lying directly in `real/` or `fake/` is a one-frame video whose id keeps the file's extension
  ("real/a.png"), so `real/a.png`, `real/a.jpg` and the folder `real/a/` are three videos.
- Every selected frame is checked for existence when the data set is built: a missing frame is a
  FileNotFoundError naming it, never a silent skip (DeepfakeBench's loader substitutes item 0).
- The JSON's label strings map to 0/1 through DeepfakeBench's `label_dict` (its train/test
  configs), extended with the WildDeepfake and FFIW names and a plain "real"/"fake"; pass
  `label_dict` for others. An unknown label is an error naming it.
- Frame paths: backslashes (DeepfakeBench's JSON files are written on Windows) become "/". A
  relative path is read under `root` (DeepfakeBench's `rgb_dir`); an absolute one must start with
  `json_prefix`, which `root` replaces. What remains must stay inside `root`: no ".." component
  (`mlrank.runs.check_inside_root`; symlinks inside the root are followed). Any other path is an
  error naming the JSON key and the frame, raised before any stat, so an index cannot read or
  probe files elsewhere. `allow_paths_outside_root=True` (config `data.allow_paths_outside_root`)
  reads such paths as written, and is the only way to go without a `root`.
- Folders: a video is a folder under `real/` or `fake/` (at any depth, symlinked folders
  included) that holds image files. Other folders at the top level are an error, so a misspelt
  `Real/` cannot drop half the data silently; hidden folders (".x") and files that are not images
  are passed over. A folder reached twice through symlinks (a loop, or one video linked twice) is
  an error naming both paths.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping

import torch
from torch.utils.data import Dataset

from ..runs import check_inside_root, read_utf8_text
from .io import check_frames_per_video, evenly_spaced_indices, is_image_file, natural_sort_key, read_rgb

# DeepfakeBench's training/config/{train,test}_config.yaml label_dict, plus WildDeepfake, FFIW and plain names
DEEPFAKEBENCH_LABELS: dict[str, int] = {
    "DFD_fake": 1, "DFD_real": 0,
    "FF-SH": 1, "FF-F2F": 1, "FF-DF": 1, "FF-FS": 1, "FF-NT": 1, "FF-FH": 1, "FF-real": 0,
    "CelebDFv1_real": 0, "CelebDFv1_fake": 1, "CelebDFv2_real": 0, "CelebDFv2_fake": 1,
    "DFDCP_Real": 0, "DFDCP_FakeA": 1, "DFDCP_FakeB": 1,
    "DFDC_Fake": 1, "DFDC_Real": 0,
    "DF_fake": 1, "DF_real": 0,
    "UADFV_Fake": 1, "UADFV_Real": 0,
    "roop_Real": 0, "roop_Fake": 1,
    "WDF_Real": 0, "WDF_Fake": 1,
    "FFIW_Real": 0, "FFIW_Fake": 1,
    "real": 0, "fake": 1,
}

FOLDER_LABELS = {"real": 0, "fake": 1}

Transform = Callable[[torch.Tensor], torch.Tensor]


class _FrameDataset(Dataset):
    """Frames with a 0/1 label and a video id each; images are read lazily."""

    def __init__(self, transform: Transform | None) -> None:
        self.transform = transform
        self.paths: list[str] = []
        self._labels: list[int] = []
        self._video_ids: list[str] = []

    def _add_video(self, video_id: str, label: int, frames: list[str], frames_per_video: int | None) -> None:
        frames = sorted(frames, key=lambda path: (natural_sort_key(os.path.basename(path)), path))
        chosen = [frames[i] for i in evenly_spaced_indices(len(frames), frames_per_video)]
        self.paths.extend(chosen)
        self._labels.extend([label] * len(chosen))
        self._video_ids.extend([video_id] * len(chosen))

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, str]:
        image = read_rgb(self.paths[index])
        if self.transform is not None:
            image = self.transform(image)
        return image, self._labels[index], self._video_ids[index]

    def labels(self) -> torch.Tensor:
        """The label of every frame, long [len] (0 real, 1 fake); reads no image."""
        return torch.tensor(self._labels, dtype=torch.long)

    def video_ids(self) -> list[str]:
        """The video id of every frame, for video-level metrics; reads no image."""
        return list(self._video_ids)


class DeepfakeBenchDataset(_FrameDataset):
    """One data set and split of a DeepfakeBench JSON index.

    Args:
        json_path: the index file, e.g. `dataset_json/FaceForensics++.json`.
        dataset_name: its top-level key, e.g. "FaceForensics++", "Celeb-DF-v2".
        split: "train", "val" or "test".
        root: folder the frame paths are read under (see the module notes); None only together with
            allow_paths_outside_root, to use the paths as written.
        compression: the level to read where the index has one ("c23", "c40", "raw").
        frames_per_video: frames kept per video, evenly spaced; None keeps all.
        transform: applied to each image tensor.
        json_prefix: the leading part of absolute frame paths in the JSON that `root` replaces.
        label_dict: label string -> 0/1; defaults to `DEEPFAKEBENCH_LABELS`.
        allow_paths_outside_root: read frame paths that leave `root` (absolute, or with "..").
    """

    def __init__(
        self,
        json_path: str | os.PathLike,
        dataset_name: str,
        split: str,
        root: str | os.PathLike | None = None,
        compression: str = "c23",
        frames_per_video: int | None = 32,
        transform: Transform | None = None,
        json_prefix: str | None = None,
        label_dict: Mapping[str, int] | None = None,
        allow_paths_outside_root: bool = False,
    ) -> None:
        super().__init__(transform)
        check_frames_per_video(frames_per_video)
        if json_prefix is not None and root is None:
            raise ValueError("json_prefix is only used together with root")
        if root is None and not allow_paths_outside_root:
            raise ValueError(
                f"{os.fspath(json_path)}: pass root, the folder its frame paths are read under, or "
                "allow_paths_outside_root=True to read them as written"
            )
        self.allow_paths_outside_root = allow_paths_outside_root
        self.json_path = os.fspath(json_path)
        self.dataset_name = dataset_name
        self.split = split
        self.compression = compression
        self.label_dict = dict(DEEPFAKEBENCH_LABELS if label_dict is None else label_dict)
        self._root = None if root is None else os.fspath(root)
        self._json_prefix = None if json_prefix is None else json_prefix.replace("\\", "/").rstrip("/")

        index = _load_json(self.json_path)
        label_keys = _child(index, dataset_name, self.json_path, "data set")
        if not isinstance(label_keys, dict) or not label_keys:
            raise ValueError(f"{self.json_path}: data set {dataset_name!r} holds no label keys")
        for label_key, splits in label_keys.items():
            where = f"{self.json_path}: {dataset_name}/{label_key}"
            videos = self._videos_of(_child(splits, split, where, "split"), f"{where}/{split}")
            for video_name, record in videos.items():
                label, frames = self._read_record(record, f"{where}/{split}/{video_name}")
                self._add_video(f"{label_key}/{video_name}", label, frames, frames_per_video)
        if not self.paths:
            raise ValueError(f"{self.json_path}: no frames for {dataset_name!r}, split {split!r}")
        for path in self.paths:
            if not os.path.isfile(path):
                raise FileNotFoundError(f"frame listed in {self.json_path} not found: {path}")

    def _videos_of(self, node: object, where: str) -> dict:
        """The {video: record} map under a split, descending into the compression level where there is one."""
        if not isinstance(node, dict):
            raise ValueError(f"{where}: expected a mapping of videos, got {type(node).__name__}")
        if _is_video_record(node):
            raise ValueError(f"{where}: a single video record where a mapping of videos was expected")
        # an empty split, or one whose entries are video records (incomplete ones fail in _read_record)
        if not node or any(_is_video_record(value) for value in node.values()):
            return node
        by_compression = _child(node, self.compression, where, "compression level")
        return self._videos_of(by_compression, f"{where}/{self.compression}")

    def _read_record(self, record: object, where: str) -> tuple[int, list[str]]:
        if not isinstance(record, dict) or "label" not in record or "frames" not in record:
            raise ValueError(f"{where}: expected {{'label': ..., 'frames': [...]}}")
        label_name = record["label"]
        if label_name not in self.label_dict:
            raise ValueError(
                f"{where}: unknown label {label_name!r}; pass label_dict to map it to 0 (real) or 1 (fake)"
            )
        label = self.label_dict[label_name]
        if label not in (0, 1):
            raise ValueError(f"label_dict maps {label_name!r} to {label!r}; expected 0 (real) or 1 (fake)")
        frames = record["frames"]
        if not isinstance(frames, list) or not all(isinstance(frame, str) for frame in frames):
            raise ValueError(f"{where}: 'frames' must be a list of paths")
        return label, [self._resolve(frame, f"{where}, frames[{i}]") for i, frame in enumerate(frames)]

    def _resolve(self, frame: str, where: str) -> str:
        path = frame.replace("\\", "/")
        if self._root is None:  # allowed explicitly (checked in __init__)
            return path
        if self._json_prefix is not None:
            if path != self._json_prefix and not path.startswith(self._json_prefix + "/"):
                raise ValueError(
                    f"{where}: frame path {frame!r} does not start with json_prefix {self._json_prefix!r}"
                )
            path = path[len(self._json_prefix) :].lstrip("/")
        elif os.path.isabs(path):
            if self.allow_paths_outside_root:
                return path
            raise ValueError(
                f"{where}: frame path {frame!r} is absolute, outside the data root; pass json_prefix to "
                "rewrite it under root (or allow_paths_outside_root to read it as written)"
            )
        if not self.allow_paths_outside_root:
            try:
                check_inside_root(path, "frame path")
            except ValueError as error:
                raise ValueError(f"{where}: {error}") from None
        return os.path.join(self._root, path.removeprefix("./"))


class FrameFolderDataset(_FrameDataset):
    """Face frames stored as `root/{real,fake}/<video>/<frame>`.

    Args:
        root: the folder holding `real/` and/or `fake/`.
        frames_per_video: frames kept per video, evenly spaced; None keeps all.
        transform: applied to each image tensor.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        frames_per_video: int | None = 32,
        transform: Transform | None = None,
    ) -> None:
        super().__init__(transform)
        check_frames_per_video(frames_per_video)
        self.root = os.fspath(root)
        if not os.path.isdir(self.root):
            raise FileNotFoundError(f"frame folder not found: {self.root}")
        folders = sorted(
            entry.name for entry in os.scandir(self.root) if entry.is_dir() and not entry.name.startswith(".")
        )
        unexpected = [name for name in folders if name not in FOLDER_LABELS]
        if unexpected:
            raise ValueError(f"{self.root}: unexpected folder(s) {unexpected}; expected only 'real' and 'fake'")
        if not folders:
            raise FileNotFoundError(f"{self.root}: neither 'real/' nor 'fake/' found")
        for class_name in folders:
            class_folder = os.path.join(self.root, class_name)
            videos = _videos_under(class_folder)
            if not videos:
                raise ValueError(f"{class_folder}: no image files")
            for video, frames in videos:
                self._add_video(f"{class_name}/{video}", FOLDER_LABELS[class_name], frames, frames_per_video)


def _videos_under(class_folder: str) -> list[tuple[str, list[str]]]:
    """(video name, frame paths) for each folder below `class_folder` holding images, and each loose
    image (named with its extension); symlinked folders are followed, each real folder once."""
    videos = []
    walked: dict[str, str] = {}  # real path -> the path it was first reached by
    for folder, subfolders, files in os.walk(class_folder, followlinks=True):
        real = os.path.realpath(folder)
        if real in walked:
            raise ValueError(
                f"{folder} is the folder {walked[real]} again (through a symlink): a symlink loop, or "
                "a video linked twice"
            )
        walked[real] = folder
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        images = [os.path.join(folder, name) for name in sorted(files) if is_image_file(name)]
        if folder == class_folder:
            videos.extend((os.path.basename(image), [image]) for image in images)
        elif images:
            videos.append((os.path.relpath(folder, class_folder).replace(os.sep, "/"), images))
    return sorted(videos, key=lambda video: natural_sort_key(video[0]))


def _is_video_record(node: object) -> bool:
    return isinstance(node, dict) and bool({"label", "frames"} & node.keys())


def _load_json(json_path: str) -> dict:
    if not os.path.isfile(json_path):
        raise FileNotFoundError(f"DeepfakeBench JSON index not found: {json_path}")
    try:
        index = json.loads(read_utf8_text(json_path))
    except json.JSONDecodeError as error:
        raise ValueError(f"{json_path} is not valid JSON: {error}") from None
    if not isinstance(index, dict):
        raise ValueError(f"{json_path}: expected a JSON object at the top level")
    return index


def _child(node: object, key: str, where: str, what: str) -> object:
    """node[key], or a ValueError naming the missing key, where it was looked for and what exists."""
    if not isinstance(node, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(node).__name__}")
    if key not in node:
        raise ValueError(f"{where}: unknown {what} {key!r}; available: {sorted(node)}")
    return node[key]
