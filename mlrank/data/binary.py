"""Binary (real / fake) deepfake data sets from extracted face frames: FF++, Celeb-DF, DFDC, DFD, WildDeepfake.

Two layouts:

- `DeepfakeBenchDataset`: DeepfakeBench's JSON index (e.g. `FaceForensics++.json`), as its
  `preprocessing/rearrange.py` writes it:
  `{dataset: {label key: {split: [{compression:}] {video: {"label": ..., "frames": [paths]}}}}}`,
  label keys such as "FF-real", "FF-DF", "CelebDFv2_fake", the compression level ("c23", "c40",
  "raw") present only for the FaceForensics++ family. The frames are image files, or entries of
  DeepfakeBench's LMDB database (`lmdb_path`).
- `FrameFolderDataset`: `root/{real,fake}/<video>/<frame>`, what `python -m mlrank.preprocess`
  writes when its output is put under `real/` or `fake/`.

Items are (image float[3, H, W] in [0, 1], label int 0 real / 1 fake, video id str).

Decisions:
- Frames are sorted naturally by file name (DeepfakeBench sorts by the integer file stem: the same
  order for its numbered frames) and `frames_per_video` of them are kept by `frame_selection`:
  "evenly_spaced" (the default; np.linspace over the sorted frames, the rule of DeepfakeBench's
  *extraction* and of `mlrank.preprocess`), or "first", the first `frames_per_video` frames, what
  DeepfakeBench's *loader* (`abstract_dataset.py`) takes, to reproduce its numbers on an index
  holding more frames per video than it reads. frames_per_video None keeps every frame.
- Video ids are "<label key>/<video>" (DeepfakeBench) or "<real|fake>/<video folder>" (folders):
  FF++ reuses a video name across label keys, and video-level metrics need each id once. An image
  lying directly in `real/` or `fake/` is a one-frame video whose id keeps the file's extension
  ("real/a.png"), so `real/a.png`, `real/a.jpg` and the folder `real/a/` are three videos.
- Every selected frame is checked for existence when the data set is built: a missing frame is a
  FileNotFoundError naming it, never a silent skip (DeepfakeBench's loader substitutes item 0).
  A video listed with an empty frame list (rearrange.py lists every video folder, also those
  where no face was found) is left out with a warning giving the count and the first ids; they
  are kept in `videos_without_frames`. Not an error: such videos are common in the real indexes.
- The JSON's label strings map to 0/1 through DeepfakeBench's `label_dict` (its train/test
  configs), extended with the WildDeepfake and FFIW names and a plain "real"/"fake"; pass
  `label_dict` for others. An unknown label is an error naming it.
- `json_path` is an index file, or a folder of them as DeepfakeBench's `dataset_json_folder`
  (one `<data set name>.json` per data set), in which case the file is named by `dataset_name`.
- Frame paths: backslashes (DeepfakeBench's JSON files are written on Windows) become "/". A
  path starting with `json_prefix` has it replaced by `root`; otherwise an absolute path (POSIX,
  Windows drive "F:/..." or UNC "//server/...") is read if it lies under `root` (rearrange.py
  writes absolute paths when its dataset_root_path is absolute, the usual setup: set root to that
  folder); a relative path is read under `root` (DeepfakeBench's `rgb_dir`). Windows prefixes
  compare case-insensitively, as Windows does. What remains must stay inside `root`: no ".."
  component (`mlrank.engine.runs.check_inside_root`; symlinks inside the root are followed). Any other
  path is an error naming the JSON key and the frame, raised before any stat, so an index cannot
  read or probe files elsewhere. `allow_paths_outside_root=True` (config
  `data.allow_paths_outside_root`) reads such paths as written, and is the only way to go without
  a `root` for files.
- LMDB (`lmdb_path`, needs the `lmdb` package): the database folder (holding `data.mdb`), or
  DeepfakeBench's `lmdb_dir` holding `<data set>_lmdb` folders (the FaceForensics++ family reads
  `FaceForensics++_lmdb`, as DeepfakeBench does). Each frame is the entry whose key is its path
  relative to the root as above (DeepfakeBench's dataset2lmdb writes "<data set>\\<path>"),
  separators compared as "/". The keys are listed once when the data set is built, so a frame
  missing from the database fails then; the database is opened read-only without a lock table.
- Folders: a video is a folder under `real/` or `fake/` (at any depth, symlinked folders
  included) that holds image files. Other folders at the top level are an error, so a misspelt
  `Real/` cannot drop half the data silently; hidden folders (".x") and files that are not images
  are passed over. A folder reached twice through symlinks (a loop, or one video linked twice) is
  an error naming both paths.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch.utils.data import Dataset

from ..optional import require
from ..engine.runs import check_inside_root, read_utf8_text
from .io import check_frames_per_video, decode_image, evenly_spaced_indices, is_image_file, natural_sort_key, read_rgb

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
# Data sets whose frames DeepfakeBench stores in FaceForensics++'s LMDB database
FACEFORENSICS_FAMILY = frozenset(
    {"FaceForensics++", "FaceShifter", "DeepFakeDetection", "FF-DF", "FF-F2F", "FF-FS", "FF-NT"}
)
FRAME_SELECTIONS = ("evenly_spaced", "first")
FOLDER_LABELS = {"real": 0, "fake": 1}
SHOWN_VIDEOS = 5  # video ids a warning names before "..."

Transform = Callable[[torch.Tensor], torch.Tensor]
_WINDOWS_ABSOLUTE = re.compile(r"^(?:[A-Za-z]:/|//)")  # after backslashes became "/": "F:/x", "//server/x"


def _is_absolute(path: str) -> bool:
    """POSIX absolute, or a Windows drive or UNC path (whatever the OS reading the index)."""
    return path.startswith("/") or bool(_WINDOWS_ABSOLUTE.match(path))


def _after_prefix(path: str, prefix: str) -> str | None:
    """The rest of `path` below the folder `prefix` (both with "/" separators), or None if it does not
    lie under it. Windows prefixes compare case-insensitively."""
    prefix = prefix.rstrip("/")
    text = path
    if _WINDOWS_ABSOLUTE.match(prefix + "/"):
        text, prefix = path.casefold(), prefix.casefold()
    if text == prefix or text.startswith(prefix + "/"):
        return path[len(prefix) :].lstrip("/")
    return None


def chosen_frames(frames: list[str], wanted: int | None, rule: str = "evenly_spaced") -> list[str]:
    """`wanted` of the (sorted) frames by `rule` (see the module notes); all of them when wanted is None."""
    if rule not in FRAME_SELECTIONS:
        raise ValueError(f"frame_selection must be one of {FRAME_SELECTIONS}, got {rule!r}")
    if rule == "first":
        check_frames_per_video(wanted)
        return frames if wanted is None else frames[:wanted]
    return [frames[i] for i in evenly_spaced_indices(len(frames), wanted)]


class _FrameDataset(Dataset):
    """Frames with a 0/1 label and a video id each; images are read lazily."""

    def __init__(self, transform: Transform | None, frame_selection: str) -> None:
        if frame_selection not in FRAME_SELECTIONS:
            raise ValueError(f"frame_selection must be one of {FRAME_SELECTIONS}, got {frame_selection!r}")
        self.transform = transform
        self.frame_selection = frame_selection
        self.paths: list[str] = []
        self._labels: list[int] = []
        self._video_ids: list[str] = []

    def _add_video(self, video_id: str, label: int, frames: list[str], frames_per_video: int | None) -> None:
        frames = sorted(frames, key=lambda path: (natural_sort_key(os.path.basename(path)), path))
        chosen = chosen_frames(frames, frames_per_video, self.frame_selection)
        self.paths.extend(chosen)
        self._labels.extend([label] * len(chosen))
        self._video_ids.extend([video_id] * len(chosen))

    def __len__(self) -> int:
        return len(self.paths)

    def _read(self, index: int) -> torch.Tensor:
        return read_rgb(self.paths[index])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, str]:
        image = self._read(index)
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
        json_path: the index file, e.g. `dataset_json/FaceForensics++.json`, or the folder of
            index files (DeepfakeBench's `dataset_json_folder`), read as `<dataset_name>.json`.
        dataset_name: its top-level key, e.g. "FaceForensics++", "Celeb-DF-v2".
        split: "train", "val" or "test".
        root: folder the frame paths are read under (see the module notes); None only together with
            allow_paths_outside_root, to use the paths as written, or with lmdb_path.
        compression: the level to read where the index has one ("c23", "c40", "raw").
        frames_per_video: frames kept per video; None keeps all.
        transform: applied to each image tensor.
        json_prefix: the leading part of frame paths in the JSON that `root` replaces.
        label_dict: label string -> 0/1; defaults to `DEEPFAKEBENCH_LABELS`.
        allow_paths_outside_root: read frame paths that leave `root` (absolute, or with "..").
        frame_selection: "evenly_spaced" or "first" (DeepfakeBench's loader).
        lmdb_path: DeepfakeBench's LMDB database of the frames, or its folder of databases.
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
        frame_selection: str = "evenly_spaced",
        lmdb_path: str | os.PathLike | None = None,
    ) -> None:
        super().__init__(transform, frame_selection)
        check_frames_per_video(frames_per_video)
        self.json_path = index_file(json_path, dataset_name)
        if root is None and lmdb_path is None:
            if json_prefix is not None:
                raise ValueError("json_prefix is only used together with root (or lmdb_path)")
            if not allow_paths_outside_root:
                raise ValueError(
                    f"{self.json_path}: pass root, the folder its frame paths are read under, or "
                    "allow_paths_outside_root=True to read them as written"
                )
        self.allow_paths_outside_root = allow_paths_outside_root
        self.dataset_name = dataset_name
        self.split = split
        self.compression = compression
        self.label_dict = dict(DEEPFAKEBENCH_LABELS if label_dict is None else label_dict)
        self._root = None if root is None else os.fspath(root)
        self._root_prefix = None if root is None else os.path.abspath(self._root).replace("\\", "/")
        self._json_prefix = None if json_prefix is None else json_prefix.replace("\\", "/").rstrip("/")
        self._lmdb = None if lmdb_path is None else LmdbFrames(lmdb_database(lmdb_path, dataset_name))
        self.videos_without_frames: list[str] = []

        index = _load_json(self.json_path)
        label_keys = _child(index, dataset_name, self.json_path, "data set")
        if not isinstance(label_keys, dict) or not label_keys:
            raise ValueError(f"{self.json_path}: data set {dataset_name!r} holds no label keys")
        videos_listed = 0
        listed_by: dict[str, tuple[int, str]] = {}  # frame -> (label, the video that lists it)
        for label_key, splits in label_keys.items():
            where = f"{self.json_path}: {dataset_name}/{label_key}"
            videos = self._videos_of(_child(splits, split, where, "split"), f"{where}/{split}")
            for video_name, record in videos.items():
                label, frames = self._read_record(record, f"{where}/{split}/{video_name}")
                for frame in frames:
                    earlier = listed_by.setdefault(frame, (label, f"{label_key}/{video_name}"))
                    if earlier[0] != label:
                        raise ValueError(
                            f"{self.json_path}: frame {frame} is listed as real and as fake (by videos "
                            f"{earlier[1]} and {label_key}/{video_name})"
                        )
                videos_listed += 1
                if not frames:
                    self.videos_without_frames.append(f"{label_key}/{video_name}")
                    continue
                self._add_video(f"{label_key}/{video_name}", label, frames, frames_per_video)
        if self.videos_without_frames:
            shown = ", ".join(self.videos_without_frames[:SHOWN_VIDEOS])
            more = ", ..." if len(self.videos_without_frames) > SHOWN_VIDEOS else ""
            warnings.warn(
                f"{self.json_path}: {len(self.videos_without_frames)} of the {videos_listed} videos of "
                f"{dataset_name!r}, split {split!r}, list no frames and are left out ({shown}{more})",
                stacklevel=2,
            )
        if not self.paths:
            raise ValueError(f"{self.json_path}: no frames for {dataset_name!r}, split {split!r}")

        if self._lmdb is not None:
            self.paths = [self._lmdb.key_of(path, self.json_path) for path in self.paths]
            return
        for path in self.paths:
            if not os.path.isfile(path):
                raise FileNotFoundError(f"frame listed in {self.json_path} not found: {path}")

    def _read(self, index: int) -> torch.Tensor:
        if self._lmdb is None:
            return super()._read(index)
        return self._lmdb.read(self.paths[index])

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
        """The frame's file, or its path relative to the root (the LMDB key), by the module's rules."""
        path = frame.replace("\\", "/")
        if self._json_prefix is not None:
            relative = _after_prefix(path, self._json_prefix)
            if relative is None:
                raise ValueError(
                    f"{where}: frame path {frame!r} does not start with json_prefix {self._json_prefix!r}"
                )
        elif _is_absolute(path):
            under_root = None if self._root_prefix is None else _after_prefix(path, self._root_prefix)
            if under_root is not None:
                relative = under_root
            elif self.allow_paths_outside_root:
                return path
            else:
                raise ValueError(
                    f"{where}: frame path {frame!r} is absolute, outside the data root "
                    f"{self._root_prefix!r}; set json_prefix (config data.json_prefix) to the part "
                    "the root replaces (or allow_paths_outside_root to read it as written)"
                )
        else:
            relative = path.removeprefix("./")
        if not self.allow_paths_outside_root:
            try:
                check_inside_root(relative, "frame path")
            except ValueError as error:
                raise ValueError(f"{where}: {error}") from None
        if self._lmdb is not None:
            return relative
        return os.path.join(self._root, relative) if self._root is not None else relative


def index_file(json_path: str | os.PathLike, dataset_name: str) -> str:
    """The JSON index of `dataset_name`: `json_path` itself, or `<json_path>/<dataset_name>.json` when
    it is a folder of indexes (DeepfakeBench's dataset_json_folder)."""
    json_path = os.fspath(json_path)
    if not os.path.isdir(json_path):
        return json_path
    path = os.path.join(json_path, f"{dataset_name}.json")
    if not os.path.isfile(path):
        available = sorted(name[:-5] for name in os.listdir(json_path) if name.endswith(".json"))
        raise FileNotFoundError(
            f"no index {dataset_name}.json in the JSON folder {json_path}; data sets there: {available}"
        )
    return path


def lmdb_database(lmdb_path: str | os.PathLike, dataset_name: str) -> str:
    """The LMDB database folder of `dataset_name`: `lmdb_path` itself if it holds data.mdb, else
    DeepfakeBench's `<lmdb_path>/<name>_lmdb` (FaceForensics++'s for its family)."""
    lmdb_path = os.fspath(lmdb_path)
    if not os.path.isdir(lmdb_path):
        raise FileNotFoundError(f"LMDB folder not found: {lmdb_path}")
    if os.path.isfile(os.path.join(lmdb_path, "data.mdb")):
        return lmdb_path
    name = "FaceForensics++" if dataset_name in FACEFORENSICS_FAMILY else dataset_name
    database = os.path.join(lmdb_path, f"{name}_lmdb")
    if not os.path.isfile(os.path.join(database, "data.mdb")):
        found = sorted(entry for entry in os.listdir(lmdb_path) if entry.endswith("_lmdb"))
        raise FileNotFoundError(
            f"{lmdb_path} is not an LMDB database (no data.mdb) and holds no {name}_lmdb/data.mdb; "
            f"databases there: {found}"
        )
    return database


class LmdbFrames:
    """Encoded frames in an LMDB database, keyed by their path; opened read-only."""

    def __init__(self, path: str) -> None:
        self.path = path
        with _lmdb_environment(path).begin() as txn:
            keys = list(txn.cursor().iternext(keys=True, values=False))
        # keys compare with "/" separators: DeepfakeBench writes "<data set>\\<path relative to it>"
        self._keys = {key.decode("utf-8", "replace").replace("\\", "/").removeprefix("./"): key for key in keys}

    def key_of(self, relative_path: str, index_path: str) -> str:
        """The stored key of a frame path (as a str), or a FileNotFoundError naming both."""
        key = self._keys.get(relative_path.removeprefix("./"))
        if key is None:
            raise FileNotFoundError(
                f"frame listed in {index_path} not found in the LMDB database {self.path}: "
                f"{relative_path!r} (keys look like {next(iter(self._keys), None)!r})"
            )
        return key.decode("utf-8", "surrogateescape")

    def read(self, key: str) -> torch.Tensor:
        with _lmdb_environment(self.path).begin() as txn:
            data = txn.get(key.encode("utf-8", "surrogateescape"))
        if data is None:
            raise FileNotFoundError(f"key {key!r} vanished from the LMDB database {self.path}")
        name = f"{self.path}[{key}]"
        return torch.from_numpy(decode_image(bytes(data), name).transpose(2, 0, 1).copy())


# One environment per database and process: LMDB refuses to open one twice in a process (the train
# and val splits of one data set share a database). Read-only and without LMDB's lock table, it
# serves forked DataLoader workers too, as in DeepfakeBench; a spawned worker opens its own.
_LMDB_ENVIRONMENTS: dict[str, Any] = {}


def _lmdb_environment(path: str) -> Any:
    key = os.path.realpath(path)
    if key not in _LMDB_ENVIRONMENTS:
        lmdb = require("lmdb", "lmdb", "reading DeepfakeBench's LMDB storage (config key data.lmdb_path)")
        try:
            _LMDB_ENVIRONMENTS[key] = lmdb.open(path, readonly=True, lock=False, subdir=True, readahead=False)
        except lmdb.Error as error:
            raise ValueError(f"cannot open the LMDB database {path}: {error}") from None
    return _LMDB_ENVIRONMENTS[key]


class FrameFolderDataset(_FrameDataset):
    """Face frames stored as `root/{real,fake}/<video>/<frame>`.

    Args:
        root: the folder holding `real/` and/or `fake/`.
        frames_per_video: frames kept per video; None keeps all.
        transform: applied to each image tensor.
        frame_selection: "evenly_spaced" or "first" (see the module notes).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        frames_per_video: int | None = 32,
        transform: Transform | None = None,
        frame_selection: str = "evenly_spaced",
    ) -> None:
        super().__init__(transform, frame_selection)
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
        walked: dict[str, str] = {}  # real path -> the path it was first reached by, across both labels
        self.videos_without_frames: list[str] = []
        for class_name in folders:
            class_folder = os.path.join(self.root, class_name)
            videos, empty = _videos_under(class_folder, walked)
            self.videos_without_frames += [f"{class_name}/{folder}" for folder in empty]
            if not videos:
                raise ValueError(f"{class_folder}: no image files")
            for video, frames in videos:
                self._add_video(f"{class_name}/{video}", FOLDER_LABELS[class_name], frames, frames_per_video)
        if self.videos_without_frames:
            shown = ", ".join(self.videos_without_frames[:SHOWN_VIDEOS])
            more = ", ..." if len(self.videos_without_frames) > SHOWN_VIDEOS else ""
            warnings.warn(
                f"{self.root}: {len(self.videos_without_frames)} video folder(s) hold no image files and are "
                f"left out ({shown}{more})", stacklevel=2,
            )


def _videos_under(class_folder: str, walked: dict[str, str]) -> tuple[list[tuple[str, list[str]]], list[str]]:
    """(video name, frame paths) for each folder below `class_folder` holding images, and each loose
    image (named with its extension); and the folders below it without images or subfolders (empty
    videos). Symlinked folders are followed; a real folder reached twice (here or, through
    ``walked``, under the other label) is an error naming both paths."""
    videos, empty = [], []
    for folder, subfolders, files in os.walk(class_folder, followlinks=True):
        real = os.path.realpath(folder)
        if real in walked:
            raise ValueError(
                f"{folder} is the folder {walked[real]} again (through a symlink): a symlink loop, or "
                "a video linked twice (under one label or both)"
            )
        walked[real] = folder
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        images = [os.path.join(folder, name) for name in sorted(files) if is_image_file(name)]
        if folder == class_folder:
            videos.extend((os.path.basename(image), [image]) for image in images)
        elif images:
            videos.append((os.path.relpath(folder, class_folder).replace(os.sep, "/"), images))
        elif not subfolders:
            empty.append(os.path.relpath(folder, class_folder).replace(os.sep, "/"))
    return sorted(videos, key=lambda video: natural_sort_key(video[0])), sorted(empty, key=natural_sort_key)


def _is_video_record(node: object) -> bool:
    return isinstance(node, dict) and bool({"label", "frames"} & node.keys())


def _load_json(json_path: str) -> dict:
    if not os.path.isfile(json_path):
        raise FileNotFoundError(f"DeepfakeBench JSON index not found: {json_path}")

    def unique_keys(pairs: list[tuple[str, Any]]) -> dict:
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:  # json keeps the last silently, dropping a video (or a split, a label)
                raise ValueError(f"{json_path}: the key {key!r} appears twice in one object; each video (and "
                                 "label, split) may be listed once")
            seen.add(key)
        return dict(pairs)

    try:
        index = json.loads(read_utf8_text(json_path), object_pairs_hook=unique_keys)
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
