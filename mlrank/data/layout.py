"""Which on-disk layout a data root holds, so that a config whose ``data.kind`` does not match it fails
with one line naming both, before anything is read.

The layouts (``data.kind``):

- ``seqdeepfake``: ``root/<subset>/annotations/{train,val,test}.csv`` (Seq-DeepFake's release);
- ``frames``: ``root/<split>/{real,fake}/<video>/<frame>`` (``python -m mlrank.preprocess``'s folders);
- ``deepfakebench``: frames anywhere under ``root``, named by a JSON index (``data.json_path``: one
  file, or DeepfakeBench's folder of ``<data set>.json``), or an LMDB database (``data.lmdb_path``).

Decision: only the marks of the *other* layouts are looked for (a Seq-DeepFake ``annotations/``
folder, a split's ``real/``/``fake/`` folders, JSON indexes, an LMDB ``data.mdb``), one directory
listing deep, so the check costs a few stats on a root of millions of frames.
"""

from __future__ import annotations

from pathlib import Path

from mlrank.data.vocab import SUBSETS

SPLITS = ("train", "val", "test")
EXPECTED = {
    "seqdeepfake": "<root>/<subset>/annotations/{train,val,test}.csv (Seq-DeepFake's layout)",
    "frames": "<root>/<split>/{real,fake}/<video>/ (mlrank.preprocess's frame folders)",
    "deepfakebench": "a DeepfakeBench JSON index (data.json_path: a <data set>.json or its folder of them)",
}


def layouts_found(root: str | Path) -> list[str]:
    """The layouts whose marks ``root`` holds (see the module notes); empty when none."""
    root = Path(root)
    found = []
    if any((root / subset / "annotations").is_dir() for subset in SUBSETS):
        found.append("seqdeepfake")
    if any((root / split / label).is_dir() for split in SPLITS for label in ("real", "fake")):
        found.append("frames")
    if root.is_dir() and (any(root.glob("*.json")) or (root / "data.mdb").is_file()):
        found.append("deepfakebench")
    return found


def check_layout(kind: str, root: str | Path | None, subset: str = "facial_components",
                 json_path: str | Path | None = None) -> None:
    """A ValueError naming ``data.kind``, the layout it reads and the one ``root`` (or the index
    path) holds instead, when they differ; nothing when the expected marks are there or the root
    holds none of the known layouts (the loader then names the missing file)."""
    if kind == "seqdeepfake" and root is not None:
        present = (Path(root) / subset / "annotations").is_dir()
        _refuse_unless(present, kind, "data.root", root, layouts_found(root))
    elif kind == "frames" and root is not None:
        present = any((Path(root) / split).is_dir() for split in SPLITS)
        _refuse_unless(present, kind, "data.root", root, layouts_found(root))
    elif kind == "deepfakebench" and json_path is not None:
        path = Path(json_path)
        present = path.is_file() or any(path.glob("*.json"))
        _refuse_unless(present, kind, "data.json_path", json_path, layouts_found(path) if path.is_dir() else [])


def _refuse_unless(present: bool, kind: str, key: str, path: str | Path, found: list[str]) -> None:
    others = [layout for layout in found if layout != kind]
    if present or not others:
        return
    raise ValueError(
        f"data.kind is {kind!r}, which reads {EXPECTED[kind]}, but {key} {path} is laid out for data.kind "
        f"{others[0]!r} ({EXPECTED[others[0]]}); set data.kind={others[0]} or point {key} at the right folder"
    )
