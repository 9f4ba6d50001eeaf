"""The real Seq-DeepFake data set (Shao et al., ECCV 2022) in its official layout.

    root/<subset>/annotations/{train,val,test}.csv
    root/<subset>/images/{train,val,test}/<sequence-name>/<image>.jpg

with <subset> "facial_components" or "facial_attributes". Each CSV has a header row with the columns
`file_path` and `label`. As in the official SeqFakeFormer loader, `file_path` is joined onto `root`
(the folder that holds both subsets) and `label` is a list of five ids written like
`[1, 2, 4, 0, 0]`: the manipulations in the order they were applied, padded with 0.

Decisions:
- The whole CSV is checked when the data set is built, so a bad row surfaces before training starts
  rather than hours into it. A row is malformed when its label does not parse as a bracketed list of
  exactly 5 integers, an id lies outside 0..5, a non-zero id follows a 0, a non-zero id repeats, its
  `file_path` is empty or its image file is missing. The error names the CSV, the row and the reason.
- Rows are numbered as CSV lines, the header being line 1, which is what an editor shows.
- `skip_malformed=True` drops bad rows instead, lists them in `dataset.skipped` as (row, reason) and
  says how many in a warning and a log line. Blank lines are not rows and are passed over.
- The parser accepts any spacing inside the brackets, where the official loader reads the five
  digits at fixed character positions; that is a superset of what it reads.
- Images are checked for existence only (one stat per row); a file that fails to decode raises a
  ValueError naming it when it is loaded.
- A `file_path` must stay inside `root`: relative, without a ".." component
  (`mlrank.engine.runs.check_inside_root`). Anything else is a malformed row, found before any stat, so a
  CSV cannot probe which files exist elsewhere. Symlinks inside the root are followed wherever
  they point, as data sets are often assembled from symlinks. `allow_paths_outside_root=True`
  (config `data.allow_paths_outside_root`) reads any path.
- The CSV must be UTF-8 (a byte-order mark is allowed); UTF-16 or latin-1 is an error naming the
  file and the line.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset

import cv2
import numpy as np

from ..engine.runs import atomic_write_bytes, check_inside_root, read_utf8_text
from .io import read_rgb
from .vocab import SEQUENCE_LENGTH, names_of

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("file_path", "label")
_INTEGER = re.compile(r"[+-]?\d+")


class SeqDeepFakeDataset(Dataset):
    """One split of one Seq-DeepFake subset; items are (image float[3, H, W] in [0, 1], sequence long[5]).

    Args:
        root: the data set root, holding `facial_components/` and `facial_attributes/`.
        subset: "facial_components" or "facial_attributes".
        split: the CSV's name without extension ("train", "val" or "test").
        transform: applied to the image tensor before it is returned.
        skip_malformed: drop malformed rows (listed in `skipped`) instead of raising.
        allow_paths_outside_root: read `file_path`s that are absolute or contain "..", which
            otherwise are malformed rows (see the module notes).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        subset: str,
        split: str,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        skip_malformed: bool = False,
        allow_paths_outside_root: bool = False,
    ) -> None:
        self.names: tuple[str, ...] = names_of(subset)
        self.root = os.fspath(root)
        self.subset = subset
        self.split = split
        self.transform = transform
        self.allow_paths_outside_root = allow_paths_outside_root
        self.csv_path = os.path.join(self.root, subset, "annotations", f"{split}.csv")
        self.skipped: list[tuple[int, str]] = []

        paths: list[str] = []
        sequences: list[list[int]] = []
        header, rows = _read_csv(self.csv_path)
        path_column, label_column = (header.index(name) for name in REQUIRED_COLUMNS)
        for row, fields in rows:
            try:
                if len(fields) != len(header):
                    raise ValueError(f"{len(fields)} fields where the header has {len(header)}")
                sequence = parse_sequence(fields[label_column], num_classes=len(self.names))
                image_path = self._image_path(fields[path_column])
            except ValueError as error:
                if not skip_malformed:
                    raise ValueError(f"{self.csv_path}, row {row}: {error}") from None
                self.skipped.append((row, str(error)))
                continue
            paths.append(image_path)
            sequences.append(sequence)

        if self.skipped:
            first_row, first_reason = self.skipped[0]
            message = (
                f"{self.csv_path}: skipped {len(self.skipped)} malformed row(s) of "
                f"{len(self.skipped) + len(paths)} (first: row {first_row}: {first_reason})"
            )
            logger.warning(message)
            warnings.warn(message, stacklevel=2)
        if not paths:
            raise ValueError(f"{self.csv_path}: no usable rows")
        self.paths = paths
        self._sequences = torch.tensor(sequences, dtype=torch.long)

    def _image_path(self, file_path: str) -> str:
        if not file_path.strip():
            raise ValueError("empty file_path")
        if not self.allow_paths_outside_root:
            check_inside_root(file_path, "file_path")
        image_path = os.path.join(self.root, file_path)
        if not os.path.isfile(image_path):
            raise ValueError(f"image not found: {image_path}")
        return image_path

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = read_rgb(self.paths[index])
        if self.transform is not None:
            image = self.transform(image)
        return image, self._sequences[index].clone()

    def sequences(self) -> torch.Tensor:
        """All manipulation sequences, long [len, 5], 0-padded as in the CSV; reads no image."""
        return self._sequences.clone()

    def is_real(self, index: int) -> bool:
        """Whether item `index` is a genuine image (its sequence is all padding)."""
        return not bool(self._sequences[index].any())


def parse_sequence(label: str, num_classes: int = 5) -> list[int]:
    """Parse a Seq-DeepFake label like "[1, 2, 4, 0, 0]" into 5 ids in 0..num_classes.

    Raises a ValueError that says what is wrong: not a bracketed list of integers, a length other than
    5, an id out of range, a non-zero id after a 0, a repeated id.
    """
    text = label.strip()
    entries = text[1:-1].split(",") if text.startswith("[") and text.endswith("]") else None
    if entries is None or not all(_INTEGER.fullmatch(entry.strip()) for entry in entries):
        raise ValueError(f"label {label!r} is not a list of integers like [1, 2, 4, 0, 0]")
    ids = [int(entry) for entry in entries]
    if len(ids) != SEQUENCE_LENGTH:
        raise ValueError(f"label {label!r} has {len(ids)} ids, expected {SEQUENCE_LENGTH}")
    for position, manipulation in enumerate(ids):
        if not 0 <= manipulation <= num_classes:
            raise ValueError(f"label {label!r}: id {manipulation} outside 0..{num_classes}")
        if manipulation and position and ids[position - 1] == 0:
            raise ValueError(f"label {label!r}: id {manipulation} after a 0 (padding must come last)")
    applied = [manipulation for manipulation in ids if manipulation]
    if len(set(applied)) != len(applied):
        raise ValueError(f"label {label!r}: an id is repeated")
    return ids


def _read_csv(csv_path: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header and the non-blank data rows, each with its line number, of a Seq-DeepFake CSV."""
    if not os.path.isfile(csv_path):
        raise FileNotFoundError(f"Seq-DeepFake annotation file not found: {csv_path}")
    reader = csv.reader(io.StringIO(read_utf8_text(csv_path), newline=""))
    try:
        header = [name.strip() for name in next(reader, [])]
        missing = [name for name in REQUIRED_COLUMNS if name not in header]
        if missing:
            raise ValueError(f"{csv_path}: missing column(s) {missing}; header is {header}")
        rows = [(reader.line_num, fields) for fields in reader if any(field.strip() for field in fields)]
    except csv.Error as error:
        raise ValueError(f"{csv_path}, line {reader.line_num}: not CSV: {error}") from None
    return header, rows


def sequence_folder(ids: Iterable[int], names: tuple[str, ...]) -> str:
    """`nose-eye-lip` in edit order, `original` for an unmanipulated face."""
    return "-".join(names[c - 1] for c in ids if c) or "original"


def write_split(
    root: str | os.PathLike,
    subset: str,
    split: str,
    sequences: Sequence[Sequence[int]],
    render: Callable[[int], np.ndarray],
    extension: str = ".png",
) -> Path:
    """Writes one split in the official layout and returns its CSV's path.

    Item i, with manipulation sequence ``sequences[i]`` (5 ids padded with 0), goes to
    ``root/<subset>/images/<split>/<sequence-name>/<i:06d><extension>`` from ``render(i)`` (an RGB
    uint8 array), and its row to ``root/<subset>/annotations/<split>.csv`` (``file_path`` relative to
    root, ``label`` like ``[1, 2, 0, 0, 0]``). Images already on disk are kept, so an interrupted
    writer resumes; every file is written atomically.
    """
    names = names_of(subset)
    root = Path(root)
    rows, made_folders = [], set()
    for index, sequence in enumerate(sequences):
        sequence = [int(c) for c in sequence]
        relative = f"{subset}/images/{split}/{sequence_folder(sequence, names)}/{index:06d}{extension}"
        path = root / relative
        if not path.exists():
            if path.parent not in made_folders:
                path.parent.mkdir(parents=True, exist_ok=True)
                made_folders.add(path.parent)
            ok, encoded = cv2.imencode(extension, cv2.cvtColor(render(index), cv2.COLOR_RGB2BGR))
            if not ok:
                raise ValueError(f"OpenCV could not encode {path.name} as {extension}")
            atomic_write_bytes(path, encoded.tobytes(), durable=False)
        rows.append((relative, str(sequence)))
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(REQUIRED_COLUMNS)
    writer.writerows(rows)
    csv_path = root / subset / "annotations" / f"{split}.csv"
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(csv_path, table.getvalue().encode(), durable=False)
    return csv_path
