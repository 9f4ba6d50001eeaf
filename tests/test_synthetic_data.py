"""Tests of the built-in synthetic Seq-DeepFake: determinism, splits, balance, edits, the disk layout."""

from __future__ import annotations

import csv
import hashlib
import json
import re

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from mlrank.data.seqdeepfake import SeqDeepFakeDataset
from mlrank.data.synthetic import SyntheticSeqDeepFake, synthesize, write_seqdeepfake_layout
from mlrank.data.vocab import SUBSETS

SMALL = 64  # enough for tests of bookkeeping; the edit tests use the default 128


def dilated(mask: np.ndarray, radius: int) -> np.ndarray:
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(mask.astype(np.uint8), kernel) > 0


def level_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per pixel, the largest absolute difference over the channels, in 8-bit levels."""
    return np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=-1)


def ids_of(subset: str, *names: str) -> list[int]:
    return [SUBSETS[subset].index(name) + 1 for name in names]


# ---------------------------------------------------------------- determinism


def test_an_item_depends_only_on_seed_subset_split_index_and_size():
    short = SyntheticSeqDeepFake("val", size=SMALL, num_images=12, seed=3)
    long = SyntheticSeqDeepFake("val", size=SMALL, num_images=600, seed=3)
    later_first = [long[i] for i in (9, 7)]  # another access order and another data set length
    for (image, sequence), index in zip(later_first, (9, 7)):
        again_image, again_sequence = short[index]
        assert torch.equal(image, again_image) and torch.equal(sequence, again_sequence)
    np.testing.assert_array_equal(short.sample(7).landmarks, long.sample(7).landmarks)


def test_another_seed_gives_other_images():
    for index in range(3):
        a = SyntheticSeqDeepFake("train", size=SMALL, seed=0).sample(index).image
        b = SyntheticSeqDeepFake("train", size=SMALL, seed=1).sample(index).image
        assert np.abs(a.astype(float) - b.astype(float)).mean() > 10


def test_dataloader_workers_give_the_items_of_direct_access():
    dataset = SyntheticSeqDeepFake("test", size=SMALL, num_images=6, seed=5)
    loaded = list(DataLoader(dataset, batch_size=2, num_workers=2))
    images = torch.cat([batch[0] for batch in loaded])
    sequences = torch.cat([batch[1] for batch in loaded])
    assert torch.equal(images, torch.stack([dataset[i][0] for i in range(6)]))
    assert torch.equal(sequences, dataset.sequences())


def test_preloaded_items_equal_rendered_items():
    rendered = SyntheticSeqDeepFake("val", size=SMALL, num_images=7, seed=4)
    preloaded = SyntheticSeqDeepFake("val", size=SMALL, num_images=7, seed=4).preload(num_workers=2)
    for index in (0, 3, 6, -1):
        (image, sequence), (again, again_sequence) = rendered[index], preloaded[index]
        assert torch.equal(image, again) and torch.equal(sequence, again_sequence)


def test_preload_cache_is_written_once_and_read_back(tmp_path, monkeypatch):
    first = SyntheticSeqDeepFake("val", size=SMALL, num_images=5, seed=2).preload(cache_dir=tmp_path)
    path = first.cache_path(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    # A second preload reads the file: rendering is not called at all.
    monkeypatch.setattr("mlrank.data.synthetic.synthesize", lambda *a, **k: pytest.fail("rendered again"))
    second = SyntheticSeqDeepFake("val", size=SMALL, num_images=5, seed=2).preload(cache_dir=tmp_path)
    for index in range(5):
        assert torch.equal(first[index][0], second[index][0])
    # Every setting the pixels depend on is in the name.
    for other in (SyntheticSeqDeepFake("val", size=SMALL, num_images=5, seed=3),
                  SyntheticSeqDeepFake("test", size=SMALL, num_images=5, seed=2),
                  SyntheticSeqDeepFake("val", size=SMALL + 8, num_images=5, seed=2),
                  SyntheticSeqDeepFake("val", "facial_attributes", size=SMALL, num_images=5, seed=2),
                  SyntheticSeqDeepFake("val", size=SMALL, num_images=6, seed=2)):
        assert other.cache_path(tmp_path) != path


def test_preload_cache_names_the_generator_and_refuses_a_wrong_file(tmp_path, monkeypatch):
    import mlrank.data.synthetic as synthetic

    dataset = SyntheticSeqDeepFake("val", size=SMALL, num_images=2)
    before = dataset.cache_path(tmp_path)
    assert synthetic.generator_digest() in before.name
    monkeypatch.setattr(synthetic, "generator_digest", lambda: "000000000000")
    assert dataset.cache_path(tmp_path) != before  # an edited generator reads no stale file
    np.save(dataset.cache_path(tmp_path), np.zeros((3, SMALL, SMALL, 3), np.uint8))
    with pytest.raises(ValueError, match=r"expected uint8 \(2, 64, 64, 3\); delete it"):
        dataset.preload(cache_dir=tmp_path)


# ---------------------------------------------------------------- items


def test_items_are_float_images_in_unit_range_and_padded_sequences():
    dataset = SyntheticSeqDeepFake("val", "facial_attributes", size=SMALL, num_images=6)
    assert dataset.names == SUBSETS["facial_attributes"] and len(dataset) == 6
    for index in range(6):
        image, sequence = dataset[index]
        assert image.shape == (3, SMALL, SMALL) and image.dtype == torch.float32
        assert 0 <= image.min() and image.max() <= 1 and image.std() > 0.05
        assert sequence.shape == (5,) and sequence.dtype == torch.int64
        pixels = image.permute(1, 2, 0).numpy() * 255
        np.testing.assert_allclose(pixels, dataset.sample(index).image, atol=1e-3)
    flipped = SyntheticSeqDeepFake("val", "facial_attributes", size=SMALL, num_images=6,
                                   transform=lambda x: x.flip(-1))
    assert torch.equal(flipped[2][0], dataset[2][0].flip(-1))


def test_sample_carries_landmarks_in_the_ibug_layout_and_masks():
    dataset = SyntheticSeqDeepFake("train", size=128, num_images=12, seed=2)
    for index in range(12):
        face = dataset.sample(index)
        points = face.landmarks
        assert points.shape == (68, 2) and points.dtype == np.float32
        assert (points >= 0).all() and (points < 128).all()
        jaw, brows, nose, left_eye, right_eye, mouth = (points[0:17], points[17:27], points[27:36],
                                                        points[36:42], points[42:48], points[48:68])
        assert jaw[:, 1].argmax() in (7, 8, 9)  # the chin is the lowest jaw point
        assert jaw[0, 0] < left_eye[:, 0].min() and right_eye[:, 0].max() < jaw[16, 0]
        assert left_eye[:, 0].mean() < nose[0, 0] < right_eye[:, 0].mean()
        assert brows[:, 1].mean() < np.r_[left_eye, right_eye][:, 1].mean() < nose[3, 1] < mouth[:, 1].mean()
        assert left_eye[0, 0] < left_eye[3, 0] < right_eye[0, 0] < right_eye[3, 0]  # corners left to right

        assert face.face_mask.dtype == bool and face.face_mask.shape == (128, 128)
        hull = np.zeros((128, 128), np.uint8)
        cv2.fillConvexPoly(hull, cv2.convexHull(np.round(points).astype(np.int32)), 1)
        assert (face.face_mask[hull > 0]).mean() > 0.97  # what self-blended images rely on
        x, y = np.round(np.r_[left_eye, right_eye]).astype(int).T
        assert face.face_mask[y, x].all()

        names = [dataset.names[c - 1] for c in face.sequence.tolist() if c]
        assert list(face.component_masks) == names
        for mask in face.component_masks.values():
            assert mask.dtype == bool and mask.shape == (128, 128) and mask.sum() > 20


def test_splits_share_no_image():
    digests = set()
    for split in ("train", "val", "test"):
        dataset = SyntheticSeqDeepFake(split, size=SMALL, num_images=18, seed=0)
        digests |= {hashlib.sha256(dataset.sample(i).image.tobytes()).hexdigest() for i in range(18)}
    assert len(digests) == 3 * 18


# ---------------------------------------------------------------- the distribution of sequences


def test_originals_and_each_length_are_equally_frequent():
    sequences = SyntheticSeqDeepFake("train", num_images=3000, seed=0).sequences()
    lengths = (sequences > 0).sum(1)
    assert torch.bincount(lengths, minlength=6).tolist() == [500] * 6  # exact in every block of six
    prefix = torch.bincount(lengths[:1001], minlength=6)
    assert (prefix - 1001 / 6).abs().max() <= 5
    for split, count in (("val", 600), ("test", 600)):
        split_lengths = (SyntheticSeqDeepFake(split, seed=0).sequences() > 0).sum(1)
        assert torch.bincount(split_lengths, minlength=6).tolist() == [count // 6] * 6


def test_sequences_are_distinct_ids_in_uniformly_random_order():
    sequences = SyntheticSeqDeepFake("train", num_images=3000, seed=1).sequences()
    for sequence in sequences.tolist():
        ids = [c for c in sequence if c]
        assert sequence == ids + [0] * (5 - len(ids))  # zeros only as trailing padding
        assert len(set(ids)) == len(ids) and all(1 <= c <= 5 for c in ids)
    fakes = sequences[sequences[:, 0] > 0]
    # 2500 fakes: each id leads 500 times in expectation, sd 20; 100 is 5 sd.
    assert (torch.bincount(fakes[:, 0], minlength=6)[1:] - len(fakes) / 5).abs().max() < 100
    for first in range(1, 6):
        for second in range(first + 1, 6):
            position_first = (fakes == first).int().argmax(1)
            position_second = (fakes == second).int().argmax(1)
            both = ((fakes == first).any(1) & (fakes == second).any(1))
            share = (position_first[both] < position_second[both]).float().mean()
            assert abs(share - 0.5) < 0.06, (first, second, share)  # ~1300 pairs, sd 0.014


def test_sequences_and_is_real_agree_with_the_items():
    dataset = SyntheticSeqDeepFake("val", size=SMALL, num_images=12, seed=4)
    sequences = dataset.sequences()
    assert sequences.shape == (12, 5) and sequences.dtype == torch.int64
    for index in range(12):
        assert torch.equal(sequences[index], dataset[index][1])
        assert dataset.is_real(index) == (sequences[index, 0].item() == 0)
    assert any(dataset.is_real(i) for i in range(12)) and not all(dataset.is_real(i) for i in range(12))


# ---------------------------------------------------------------- the edits


# A partner whose region is mostly elsewhere: both single edits share the same whole-image
# re-processing (it is drawn per step), so the two images differ only where either edit landed.
PARTNERS = {"nose": "hair", "eye": "lip", "eyebrow": "lip", "lip": "eye", "hair": "nose",
            "Bangs": "Beard", "Eyeglasses": "Beard", "Beard": "Bangs", "Smiling": "Bangs", "Young": "Bangs"}


@pytest.mark.parametrize("subset, name", [(s, n) for s, names in SUBSETS.items() for n in names])
def test_an_edit_changes_pixels_inside_its_region(subset, name):
    partner = PARTNERS[name]
    for key in [(11, 0), (11, 1)]:
        edited = synthesize(ids_of(subset, name), subset=subset, key=key)
        other = synthesize(ids_of(subset, partner), subset=subset, key=key)
        region, other_region = edited.component_masks[name], other.component_masks[partner]
        difference = level_difference(edited.image, other.image)
        changed = difference > 12
        assert (changed & dilated(region | other_region, 3)).sum() >= 0.95 * changed.sum()
        assert difference[region & ~other_region].mean() > 4
        assert difference[~dilated(region | other_region, 10)].mean() < 0.5


def test_every_edit_reprocesses_the_whole_image():
    key = (12, 0)
    original = synthesize([], key=key).image
    edited = synthesize([1], key=key)
    away = ~dilated(edited.component_masks["nose"], 10)
    assert (level_difference(original, edited.image)[away] > 0).mean() > 0.5


def test_later_edits_blur_what_earlier_ones_left():
    """Each step resamples the whole image: away from the edits, sharpness falls with every step."""
    key = (13, 0)
    nose, eye, lip = 1, 2, 4
    steps = [synthesize(sequence, key=key) for sequence in ([nose], [nose, eye], [nose, eye, lip])]
    away = ~dilated(np.logical_or.reduce([m for m in steps[-1].component_masks.values()]), 4)
    first, second, third = (sharpness(step.image, away) for step in steps)
    assert first > second > third


def test_an_edit_stamps_its_generator_fingerprint_and_later_steps_blur_it():
    """The periodic pattern of an edit's generator lies in its region and fades with each later step."""
    key, nose, eye, lip = (21, 0), 1, 2, 4
    original = synthesize([], key=key)
    alone = synthesize([nose], key=key)
    later = synthesize([nose, eye, lip], key=key)
    region = alone.component_masks["nose"] & ~dilated(later.component_masks["eye"] | later.component_masks["lip"], 2)
    assert region.sum() > 20
    outside = ~dilated(alone.component_masks["nose"], 4)
    edited_energy = fine_energy(alone.image, region)
    assert edited_energy > 2 * fine_energy(original.image, region)
    assert edited_energy > 2 * fine_energy(alone.image, outside)
    assert edited_energy > 1.2 * fine_energy(later.image, region)


def fine_energy(image: np.ndarray, where: np.ndarray) -> float:
    """Mean squared difference from the 3 x 3 local mean: the energy of patterns of a few pixels."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    box = cv2.blur(grey, (3, 3), borderType=cv2.BORDER_REFLECT)
    return float(((grey - box) ** 2)[where].mean())


def sharpness(image: np.ndarray, where: np.ndarray) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.CV_32F)[where].var())


@pytest.mark.parametrize("subset, edit, other", [
    ("facial_components", "eye", "hair"),
    ("facial_components", "eyebrow", "lip"),
    ("facial_attributes", "Eyeglasses", "Beard"),
])
def test_an_edit_is_crisper_when_it_comes_last(subset, edit, other):
    """The order is in the pixels: an edit made first goes through one more re-processing."""
    for key in [(15, 0), (15, 1)]:
        first = synthesize(ids_of(subset, edit, other), subset=subset, key=key)
        last = synthesize(ids_of(subset, other, edit), subset=subset, key=key)
        other_regions = first.component_masks[other] | last.component_masks[other]
        only_edit = first.component_masks[edit] & ~dilated(other_regions, 3)
        assert sharpness(last.image, only_edit) > 1.1 * sharpness(first.image, only_edit)


@pytest.mark.parametrize("subset, first, second", [
    ("facial_components", "eyebrow", "eye"),
    ("facial_components", "nose", "lip"),
    ("facial_attributes", "Beard", "Smiling"),
    ("facial_attributes", "Young", "Eyeglasses"),
])
def test_swapping_two_overlapping_edits_changes_their_overlap(subset, first, second):
    for key in [(14, 0), (14, 1)]:
        forward = synthesize(ids_of(subset, first, second), subset=subset, key=key)
        backward = synthesize(ids_of(subset, second, first), subset=subset, key=key)
        assert torch.equal(forward.sequence[:2], torch.tensor(ids_of(subset, first, second)))
        overlap = forward.component_masks[first] & forward.component_masks[second]
        union = np.logical_or.reduce([*forward.component_masks.values(), *backward.component_masks.values()])
        difference = level_difference(forward.image, backward.image)
        assert overlap.sum() >= 20  # the regions do overlap
        # Inside the overlap the later edit's patch wins, so the two orders disagree there...
        assert difference[overlap].mean() > 2.5
        # ... and, away from both edits, they agree: the re-processing is the same per step.
        assert difference[~dilated(union, 10)].mean() < 0.3


# ---------------------------------------------------------------- the disk layout


def read_rows(path):
    with open(path, newline="") as file:
        return list(csv.reader(file))


def test_layout_writer_files_and_csv_format(tmp_path):
    root = write_seqdeepfake_layout(tmp_path / "cache", sizes={"train": 7, "val": 3}, size=SMALL, seed=6)
    assert root == tmp_path / "cache"
    names = SUBSETS["facial_components"]
    for split, count in (("train", 7), ("val", 3)):
        dataset = SyntheticSeqDeepFake(split, size=SMALL, num_images=count, seed=6)
        rows = read_rows(root / "facial_components" / "annotations" / f"{split}.csv")
        assert rows[0] == ["file_path", "label"] and len(rows) == count + 1
        for index, (file_path, label) in enumerate(rows[1:]):
            sequence = dataset.sequences()[index].tolist()
            assert re.fullmatch(r"\[\d, \d, \d, \d, \d\]", label) and json.loads(label) == sequence
            folder = "-".join(names[c - 1] for c in sequence if c) or "original"
            assert file_path == f"facial_components/images/{split}/{folder}/{index:06d}.png"
            image = cv2.cvtColor(cv2.imread(str(root / file_path)), cv2.COLOR_BGR2RGB)
            np.testing.assert_array_equal(image, dataset.sample(index).image)  # PNG is lossless
    assert not (root / "facial_components" / "annotations" / "test.csv").exists()
    assert not list(root.rglob("*.tmp"))


def test_the_real_data_loader_reads_the_cache_as_the_synthetic_items(tmp_path):
    root = write_seqdeepfake_layout(tmp_path, sizes={"val": 4}, size=SMALL, seed=8)
    cached = SeqDeepFakeDataset(root, "facial_components", "val")
    generated = SyntheticSeqDeepFake("val", size=SMALL, num_images=4, seed=8)
    assert torch.equal(cached.sequences(), generated.sequences())
    for index in range(4):
        (cached_image, cached_sequence), (image, sequence) = cached[index], generated[index]
        torch.testing.assert_close(cached_image, image, rtol=0, atol=1e-6)
        assert torch.equal(cached_sequence, sequence)


def test_layout_writer_resumes_and_refuses_other_settings(tmp_path):
    sizes = {"test": 4}
    root = write_seqdeepfake_layout(tmp_path, "facial_attributes", sizes=sizes, size=SMALL,
                                    image_format="jpg")
    images = sorted((tmp_path / "facial_attributes" / "images" / "test").rglob("*.jpg"))
    assert len(images) == 4 and all(cv2.imread(str(p)) is not None for p in images)
    images[0].unlink()
    images[1].write_bytes(b"kept as it is")  # a file already there is not rewritten
    write_seqdeepfake_layout(root, "facial_attributes", sizes={"test": 6}, size=SMALL, image_format="jpg")
    assert images[0].exists() and images[1].read_bytes() == b"kept as it is"
    assert len(read_rows(tmp_path / "facial_attributes" / "annotations" / "test.csv")) == 7
    with pytest.raises(ValueError, match="synthetic.json"):
        write_seqdeepfake_layout(root, "facial_attributes", sizes=sizes, size=SMALL, seed=1,
                                 image_format="jpg")


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(split="training"), ValueError, "split 'training'"),
    (dict(subset="faces"), ValueError, "subset 'faces'"),
    (dict(size=16), ValueError, "size"),
    (dict(num_images=0), ValueError, "num_images"),
    (dict(seed=-1), ValueError, "seed"),
    (dict(transform="flip"), TypeError, "transform"),
])
def test_bad_dataset_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        SyntheticSeqDeepFake(**kwargs)


def test_bad_indices_sequences_and_layout_arguments(tmp_path):
    dataset = SyntheticSeqDeepFake("val", size=SMALL, num_images=3)
    with pytest.raises(IndexError, match="index 3"):
        dataset[3]
    with pytest.raises(TypeError, match="index"):
        dataset.is_real(1.5)
    for sequence in ([1, 1], [6], [1, 2, 3, 4, 5, 1], [0, 2]):
        with pytest.raises(ValueError, match="sequence"):
            synthesize(sequence, size=SMALL)
    with pytest.raises(ValueError, match="subset 'faces'"):
        write_seqdeepfake_layout(tmp_path, "faces")
    with pytest.raises(ValueError, match="split 'dev'"):
        write_seqdeepfake_layout(tmp_path, sizes={"dev": 3})
    with pytest.raises(ValueError, match="image_format 'bmp'"):
        write_seqdeepfake_layout(tmp_path, sizes={"val": 1}, image_format="bmp")
    assert not list(tmp_path.iterdir())  # nothing written before the arguments were checked
