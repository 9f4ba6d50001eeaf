"""The built-in synthetic Seq-DeepFake: procedural faces with sequential manipulations.

`SyntheticSeqDeepFake` serves the same items as the real-data loader: a float image in [0, 1] and the
manipulation sequence padded with 0 to length 5, in Seq-FaceComp's vocabulary (1 nose, 2 eye,
3 eyebrow, 4 lip, 5 hair) or Seq-FaceAttr's (1 Bangs, 2 Eyeglasses, 3 Beard, 4 Smiling, 5 Young).
Faces come from `face_model` (drawn) and `face_rendering` (painted), edits from `manipulations`,
whose docstring gives the generative model. `write_seqdeepfake_layout` caches splits to disk in the
official layout, so the real-data loader reads them like the real thing.

Decisions:
* Determinism: item i is a pure function of (seed, subset, split, i, size). Every random draw comes
  from a numpy generator seeded with (seed, subset, split) plus a stream id: per split, the lengths
  and the orders (drawn row after row, so item i's sequence does not depend on `num_images`); per
  item, its face with its camera, its edit steps' re-processing, and one stream per edited
  component. Nothing depends on the worker or the order of access. A face's parameters do not
  depend on `size`, so one face renders at any size. JPEG is part of the pipeline: pixels are
  reproducible for a given OpenCV build.
* Splits are disjoint by construction: the split is part of every key, so each split draws its own
  faces (every face is a new identity, as no identity is shared between Seq-DeepFake's splits).
* Balance: originals and each length 1..5 are equally frequent (1/6), exactly so in every block of
  six consecutive items (a random permutation of the six lengths per block), so any prefix of the
  data set is balanced within 5 items and a shuffled loader still sees 1/6 of each. The components
  and their order are uniformly random: the first `length` entries of a random permutation of 1..5.
* Default split sizes: train 6000, val 600, test 600 (multiples of 6).
* `preload` renders a split once into memory (uint8); items then come from memory, equal to
  rendering them. Training does this by default (`data.synthetic_in_memory`); with
  `data.synthetic_cache_dir` the rendered split is also kept on disk for the next run.
* Attribute faces are drawn at least moderately aged (wrinkle strength >= 0.45) and without bangs,
  glasses, beard or smile, so that every attribute edit adds something visible.
* `component_masks[name]` is the region the edit was blended into (blend weight >= 0.5), not what of
  it survives later edits.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import hashlib
import io
import json
import operator
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from . import manipulations
from .face_geometry import landmarks
from .face_model import sample_face
from .face_rendering import render
from ..engine.runs import atomic_write_bytes
from .seqdeepfake import write_split
from .vocab import SEQUENCE_LENGTH, SUBSETS, names_of

SPLITS = ("train", "val", "test")
DEFAULT_SPLIT_SIZES = {"train": 6000, "val": 600, "test": 600}
IMAGE_FORMATS = {"png": ".png", "jpg": ".jpg", "jpeg": ".jpg"}
MIN_SIZE = 32
# Attribute edits need an original without the attribute; Young needs visible age to remove.
MIN_AGE = {"facial_components": 0.0, "facial_attributes": 0.45}
_SUBSET_IDS = {name: index for index, name in enumerate(SUBSETS)}
_SPLIT_IDS = {name: index for index, name in enumerate(SPLITS)}
_LENGTH_BLOCK = SEQUENCE_LENGTH + 1  # originals and lengths 1..5


class _Stream(enum.IntEnum):
    LENGTHS = 0  # per split
    ORDER = 1  # per split
    FACE = 2  # per item: the face, then its camera and JPEG quality
    STEPS = 3  # per item: the re-processing after each edit, a fixed number of draws per step
    EDIT = 4  # per item and component


@contextlib.contextmanager
def _opencv_single_threaded():
    """OpenCV's thread pool costs more than it gives on 128-pixel images, and DataLoader workers
    already run in parallel (torch likewise runs one thread per worker): one thread while we draw."""
    previous = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(previous)


def _generator(key: tuple[int, ...], stream: _Stream, *extra: int) -> np.random.Generator:
    return np.random.default_rng([*key, int(stream), *extra])


@dataclass
class SyntheticFace:
    """One synthetic item with everything the generator knows about it."""

    image: np.ndarray  # uint8 (H, W, 3) RGB, the manipulated image
    sequence: torch.Tensor  # int64 (5,), ids in edit order, padded with 0
    landmarks: np.ndarray  # float32 (68, 2) pixel (x, y) of the original face, iBUG-300W layout
    face_mask: np.ndarray  # bool (H, W), the original face oval
    component_masks: dict[str, np.ndarray]  # name -> bool (H, W), where each edit was blended in


def _check_sequence(sequence: Iterable[int]) -> list[int]:
    ids = [int(c) for c in (sequence.tolist() if isinstance(sequence, torch.Tensor) else sequence)]
    while ids and ids[-1] == 0:
        ids.pop()
    valid = all(1 <= c <= SEQUENCE_LENGTH for c in ids) and len(set(ids)) == len(ids)
    if len(ids) > SEQUENCE_LENGTH or not valid:
        raise ValueError(f"sequence must hold at most {SEQUENCE_LENGTH} distinct ids in "
                         f"1..{SEQUENCE_LENGTH}, padded with trailing 0; got {list(sequence)}")
    return ids


def _check_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or size < MIN_SIZE:
        raise ValueError(f"size must be an int >= {MIN_SIZE}, got {size!r}")
    return size


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    return seed


def synthesize(sequence: Iterable[int], *, subset: str = "facial_components", size: int = 128,
               key: Iterable[int] = (0,)) -> SyntheticFace:
    """Renders the face drawn from `key` (non-negative ints) and applies `sequence` to it in order.

    The same key always gives the same face, and each component's edit and each step's
    re-processing are the same whatever else is in the sequence, so sequences can be compared.
    """
    names = names_of(subset)
    ids = _check_sequence(sequence)
    size = _check_size(size)
    key = tuple(int(k) for k in key)
    if any(k < 0 for k in key):
        raise ValueError(f"key must hold non-negative ints, got {key}")

    with _opencv_single_threaded():
        face_rng = _generator(key, _Stream.FACE)
        face = sample_face(face_rng, min_age=MIN_AGE[subset])
        rendered, base = render(face, size)
        image = manipulations.camera(rendered, face_rng)
        original_landmarks = landmarks(face, size)
        face_mask = base.face_alpha >= 0.5

        component_masks = {}
        steps_rng = _generator(key, _Stream.STEPS) if ids else None
        for component in ids:
            name = names[component - 1]
            image, face, base, component_masks[name] = manipulations.apply_edit(
                image, face, base, name, _generator(key, _Stream.EDIT, component), steps_rng)
        image = manipulations.publish(image, face_rng)
    return SyntheticFace(
        image=image,
        sequence=torch.tensor(ids + [0] * (SEQUENCE_LENGTH - len(ids)), dtype=torch.long),
        landmarks=original_landmarks,
        face_mask=face_mask,
        component_masks=component_masks,
    )


def _split_sequences(key: tuple[int, ...], count: int) -> torch.Tensor:
    """int64 (count, 5) sequences of the first `count` items of the split with `key`.

    Both streams are consumed row after row, so item i's sequence does not depend on `count`.
    """
    blocks = -(-count // _LENGTH_BLOCK)
    lengths = _generator(key, _Stream.LENGTHS).random((blocks, _LENGTH_BLOCK)).argsort(axis=1)
    lengths = lengths.reshape(-1)[:count]
    orders = _generator(key, _Stream.ORDER).random((count, SEQUENCE_LENGTH)).argsort(axis=1) + 1
    orders[np.arange(SEQUENCE_LENGTH) >= lengths[:, None]] = 0
    return torch.from_numpy(orders.astype(np.int64))


class SyntheticSeqDeepFake(Dataset):
    """The built-in synthetic Seq-DeepFake, generated on the fly.

    Items are `(image, sequence)`: a float32 tensor (3, size, size) in [0, 1] (then `transform`, if
    given) and an int64 tensor (5,) of component ids in edit order, padded with 0.
    """

    def __init__(self, split: str = "train", subset: str = "facial_components", size: int = 128,
                 num_images: int | None = None, seed: int = 0,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        if split not in _SPLIT_IDS:
            raise ValueError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
        self.names = names_of(subset)
        if num_images is None:
            num_images = DEFAULT_SPLIT_SIZES[split]
        if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1:
            raise ValueError(f"num_images must be a positive int or None, got {num_images!r}")
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable, got {type(transform).__name__}")
        self.split, self.subset, self.size = split, subset, _check_size(size)
        self.num_images, self.seed, self.transform = num_images, _check_seed(seed), transform
        self._key = (seed, _SUBSET_IDS[subset], _SPLIT_IDS[split])
        self._sequences = _split_sequences(self._key, num_images)
        self._images: np.ndarray | None = None  # uint8 (len, H, W, 3) once preloaded

    def preload(self, num_workers: int = 0, progress: bool = False,
                cache_dir: str | os.PathLike | None = None) -> "SyntheticSeqDeepFake":
        """Renders every image once into memory (uint8, 3 bytes a pixel) and returns self.

        Items are then read from memory, identical to rendering them; epochs after the first cost
        nothing to generate, and the CPU goes to the model instead. ``sample`` still renders, as it
        returns the landmarks and masks too. With ``cache_dir``, the rendered split is saved there
        (atomically, as ``.npy``) and later calls with the same settings and generator read it back
        instead of rendering (:meth:`cache_path`).
        """
        if self._images is None and cache_dir is not None:
            path = self.cache_path(cache_dir)
            if path.is_file():
                self._images = self._read_cache(path)
                return self
        if self._images is None:
            from torch.utils.data import DataLoader
            from tqdm import tqdm

            images = np.empty((self.num_images, self.size, self.size, 3), np.uint8)
            # A private generator: the loader's seed draw must not move torch's global RNG, which a
            # resumed run restores and must find where an uninterrupted run left it.
            loader = DataLoader(_RenderedImages(self), batch_size=64, num_workers=num_workers,
                                generator=torch.Generator())
            start = 0
            for batch in tqdm(loader, desc=f"render {self.split}", disable=not progress, leave=False):
                images[start:start + len(batch)] = batch.numpy()
                start += len(batch)
            self._images = images
            if cache_dir is not None:
                atomic_write_bytes(self.cache_path(cache_dir), _npy_bytes(images))
        return self

    def cache_path(self, cache_dir: str | os.PathLike) -> Path:
        """Where ``preload`` caches this split: the name holds every setting the pixels depend on
        and a digest of the generator's source and OpenCV's version, so a changed generator never
        reads a stale file."""
        name = (f"{self.subset}_{self.split}_seed{self.seed}_{self.size}px_{self.num_images}_"
                f"{generator_digest()}.npy")
        return Path(cache_dir) / name

    def _read_cache(self, path: Path) -> np.ndarray:
        try:
            images = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise ValueError(f"cannot read the synthetic image cache {path}: {error}; delete it to "
                             "render the split again") from None
        expected = (self.num_images, self.size, self.size, 3)
        if images.dtype != np.uint8 or images.shape != expected:
            raise ValueError(f"synthetic image cache {path} holds {images.dtype} {images.shape}, "
                             f"expected uint8 {expected}; delete it to render the split again")
        return images

    def __len__(self) -> int:
        return self.num_images

    def _index(self, index: int) -> int:
        try:
            index = operator.index(index)  # ints, numpy and 0-d torch integers
        except TypeError:
            raise TypeError(f"index must be an integer, got {type(index).__name__}") from None
        if not -self.num_images <= index < self.num_images:
            raise IndexError(f"index {index} out of range for {self.num_images} synthetic "
                             f"{self.split} images")
        return index % self.num_images

    def is_real(self, index: int) -> bool:
        """Whether item `index` is unmanipulated, without rendering it."""
        return bool(self._sequences[self._index(index), 0] == 0)

    def sequences(self) -> torch.Tensor:
        """int64 (len, 5) sequences of every item, without rendering images."""
        return self._sequences.clone()

    def sample(self, index: int) -> SyntheticFace:
        """Item `index` with its landmarks and masks, the image as uint8 (H, W, 3)."""
        index = self._index(index)
        return synthesize(self._sequences[index], subset=self.subset, size=self.size,
                          key=self._key + (index,))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = self._index(index)
        if self._images is not None:
            pixels, sequence = self._images[index], self._sequences[index].clone()
        else:
            item = self.sample(index)
            pixels, sequence = item.image, item.sequence
        # Converted in numpy: torch's threads would spin up for this one small op on every item.
        channels_first = pixels.transpose(2, 0, 1).astype(np.float32, order="C")
        channels_first *= np.float32(1 / 255)
        image = torch.from_numpy(channels_first)
        if self.transform is not None:
            image = self.transform(image)
        return image, sequence


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


_GENERATOR_MODULES = ("synthetic", "manipulations", "face_model", "face_geometry", "face_rendering",
                      "painting", "vocab")


@functools.cache
def generator_digest() -> str:
    """12 hex digits of SHA-256 over the generator's source files and the numpy and OpenCV versions
    (the pixels depend on all of them)."""
    digest = hashlib.sha256(f"{np.__version__} {cv2.__version__}".encode())
    for module in _GENERATOR_MODULES:
        digest.update((Path(__file__).parent / f"{module}.py").read_bytes())
    return digest.hexdigest()[:12]


class _RenderedImages(Dataset):
    """The uint8 images of a synthetic set, for rendering them in loader workers."""

    def __init__(self, dataset: SyntheticSeqDeepFake) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(self.dataset.sample(index).image)


# ---------------------------------------------------------------- cache in the official layout


def _check_sizes(sizes: Mapping[str, int] | None) -> dict[str, int]:
    if sizes is None:
        return dict(DEFAULT_SPLIT_SIZES)
    if not isinstance(sizes, Mapping):
        raise TypeError(f"sizes must map split names to image counts, got {type(sizes).__name__}")
    for split, count in sizes.items():
        if split not in _SPLIT_IDS:
            raise ValueError(f"unknown split {split!r} in sizes; expected some of {list(SPLITS)}")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"sizes[{split!r}] must be a positive int, got {count!r}")
    return dict(sizes)


def _check_settings(subset_root: Path, settings: dict) -> None:
    """Refuses to resume a cache written with other settings: its images would silently mix."""
    path = subset_root / "synthetic.json"
    if path.exists():
        try:
            written = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"{path}: unreadable cache settings ({error}); "
                             "remove the folder to rewrite it") from None
        if written != settings:
            raise ValueError(f"{path}: the cache there was written with {written}, not {settings}; "
                             "use another root or remove that folder")
    else:
        atomic_write_bytes(path, (json.dumps(settings, indent=2) + "\n").encode(), durable=False)


def write_seqdeepfake_layout(root: str | os.PathLike, subset: str = "facial_components",
                             sizes: Mapping[str, int] | None = None, size: int = 128, seed: int = 0,
                             image_format: str = "png") -> Path:
    """Caches synthetic splits to disk in the official Seq-DeepFake layout and returns `root`.

    Writes `root/<subset>/images/<split>/<sequence-name>/<index:06d>.<ext>` and
    `root/<subset>/annotations/<split>.csv` (columns `file_path`, relative to root, and `label`, like
    `[1, 2, 0, 0, 0]`). `sizes` maps splits to image counts (default: all three splits at their
    default sizes). Images already on disk are kept, so an interrupted run resumes; a cache written
    with another seed, size or format raises a ValueError. PNG stores exactly the generated pixels;
    JPEG re-encodes them at OpenCV's default quality (95).
    """
    names_of(subset)  # an unknown subset is an error before anything is written
    sizes = _check_sizes(sizes)
    size, seed = _check_size(size), _check_seed(seed)
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"unknown image_format {image_format!r}; expected one of {sorted(IMAGE_FORMATS)}")
    extension = IMAGE_FORMATS[image_format]
    root = Path(root)
    subset_root = root / subset
    (subset_root / "annotations").mkdir(parents=True, exist_ok=True)
    _check_settings(subset_root, {"generator": "mlrank.data.synthetic", "seed": seed, "size": size,
                                  "image_format": extension[1:]})

    for split, count in sizes.items():
        dataset = SyntheticSeqDeepFake(split, subset, size=size, num_images=count, seed=seed)
        write_split(root, subset, split, dataset.sequences().tolist(),
                    lambda index: dataset.sample(index).image, extension)
    return root
