"""BalancedTriplets, collate_triplets and split_real_fake on tiny in-memory data sets."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mlrank.data.augment import WeakAugment, self_blended_image
from mlrank.data.sampler import BalancedTriplets, collate_triplets, split_real_fake

SIDE = 32
# Rows 0..5 real, the rest fake, interleaved so indices are not simply a prefix.
SEQUENCES = torch.tensor(
    [
        [0, 0, 0, 0, 0],
        [1, 0, 0, 0, 0],
        [0, 0, 0, 0, 0],
        [2, 4, 0, 0, 0],
        [0, 0, 0, 0, 0],
        [3, 1, 5, 0, 0],
        [0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0],
        [5, 0, 0, 0, 0],
        [0, 0, 0, 0, 0],
    ]
)
REAL_ROWS = [0, 2, 4, 6, 7, 9]
FAKE_ROWS = [1, 3, 5, 8]


class TinySequenceDataset:
    """Random images with Seq-DeepFake labels and, optionally, per-image landmarks."""

    def __init__(self, sequences=SEQUENCES, with_landmarks=False, seed=0):
        generator = torch.Generator().manual_seed(seed)
        self.images = torch.rand(len(sequences), 3, SIDE, SIDE, generator=generator)
        self.sequences = sequences
        # A different square per image, so the landmarks passed on can be told apart.
        self.landmarks = [
            np.array([[4.0 + k, 6.0], [20.0 + k, 6.0], [20.0 + k, 22.0], [4.0 + k, 22.0]])
            for k in range(len(sequences))
        ]
        if with_landmarks:
            self.sample = lambda index: SimpleNamespace(landmarks=self.landmarks[index])

    def __len__(self):
        return len(self.sequences)

    def __getitem__(self, index):
        return self.images[index], self.sequences[index]


class TinyBinaryDataset:
    """Items (image, label, video_id) as a binary deepfake data set returns them."""

    def __init__(self, labels, seed=0):
        generator = torch.Generator().manual_seed(seed)
        self.images = torch.rand(len(labels), 3, SIDE, SIDE, generator=generator)
        self.labels = labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return self.images[index], self.labels[index], f"video{index // 2}"


def index_of(image, images):
    matches = [k for k in range(len(images)) if torch.equal(image, images[k])]
    assert len(matches) == 1
    return matches[0]


def triplets(dataset=None, **kwargs):
    dataset = dataset if dataset is not None else TinySequenceDataset()
    real, fake = split_real_fake(dataset.sequences)
    return BalancedTriplets(dataset, real, fake, self_blended_image, **kwargs)


def real_order(sampler):
    """The dataset index of each item's real image (no weak augmentation, so reals are verbatim)."""
    return [index_of(sampler[i][0][0], sampler.dataset.images) for i in range(len(sampler))]


def test_split_real_fake_on_sequences_and_binary_labels():
    real, fake = split_real_fake(SEQUENCES)
    assert real.tolist() == REAL_ROWS and fake.tolist() == FAKE_ROWS
    assert real.dtype == fake.dtype == torch.int64
    real, fake = split_real_fake(torch.tensor([1, 0, 0, 1, 0]))
    assert real.tolist() == [1, 2, 4] and fake.tolist() == [0, 3]


@pytest.mark.parametrize(
    "labels, error, message",
    [
        ([[0, 0, 0, 0, 0]], TypeError, "torch.Tensor"),
        (torch.zeros(3, 5), TypeError, "integer"),
        (torch.zeros(2, 3, 5, dtype=torch.long), ValueError, r"\[M, 5\]"),
        (torch.tensor([[0, 0, 0, 0, 0], [0, -1, 0, 0, 0]]), ValueError, "row 1"),
    ],
)
def test_split_real_fake_rejects_bad_labels(labels, error, message):
    with pytest.raises(error, match=message):
        split_real_fake(labels)


def test_triplet_layout_and_balance_of_kinds():
    sampler = triplets()
    assert len(sampler) == len(REAL_ROWS)
    images, sequences, kinds = sampler[0]
    assert images.shape == (3, 3, SIDE, SIDE) and images.dtype == torch.float32
    assert sequences.shape == (3, 5) and sequences.dtype == torch.int64
    assert kinds.tolist() == [0, 1, 2]

    images, sequences, kinds = collate_triplets([sampler[i] for i in range(len(sampler))])
    batch = len(sampler)
    assert images.shape == (3 * batch, 3, SIDE, SIDE) and sequences.shape == (3 * batch, 5)
    assert torch.bincount(kinds, minlength=3).tolist() == [batch] * 3
    assert kinds.tolist() == [0, 1, 2] * batch  # triplets stay together
    assert (sequences[kinds != 2] == 0).all()  # reals and pseudo-fakes
    assert (sequences[kinds == 2] != 0).any(dim=1).all()  # fakes keep their sequence


def test_every_real_is_used_once_per_epoch_and_fakes_come_from_fake_indices():
    sampler = triplets()
    dataset = sampler.dataset
    assert sorted(real_order(sampler)) == REAL_ROWS
    fakes = []
    for i in range(len(sampler)):
        images, sequences, _ = sampler[i]
        fake = index_of(images[2], dataset.images)
        assert fake in FAKE_ROWS
        assert torch.equal(sequences[2], SEQUENCES[fake])
        fakes.append(fake)
    # Fakes are drawn without replacement within a pass: 6 items over 4 fakes use all 4.
    assert sorted(set(fakes)) == FAKE_ROWS


def test_a_longer_epoch_cycles_through_the_reals_evenly():
    sampler = triplets(epoch_length=15)
    order = real_order(sampler)
    assert sorted(order[:6]) == REAL_ROWS and sorted(order[6:12]) == REAL_ROWS
    assert len(set(order[12:])) == 3 and set(order[12:]) <= set(REAL_ROWS)


def test_pseudo_fake_is_made_from_the_same_real():
    sampler = triplets()
    for i in range(len(sampler)):
        images, sequences, _ = sampler[i]
        real, pseudo_fake = images[0], images[1]
        # The default ellipse spares the corners: there the pseudo-fake is its real, pixel for pixel,
        # and (random images) no other image of the data set.
        corners = (slice(None), [0, 0, -1, -1], [0, -1, 0, -1])
        assert torch.equal(pseudo_fake[corners], real[corners])
        for other in sampler.dataset.images:
            if not torch.equal(other, real):
                assert not torch.equal(pseudo_fake[corners], other[corners])
        assert not torch.equal(pseudo_fake, real)
        assert (sequences[1] == 0).all()


def test_landmarks_of_the_real_are_passed_to_the_strong_augmentation():
    dataset = TinySequenceDataset(with_landmarks=True)
    calls = []

    def recording_augment(image, rng, landmarks=None):
        calls.append((index_of(image, dataset.images), landmarks))
        return self_blended_image(image, rng, landmarks=landmarks)

    real, fake = split_real_fake(dataset.sequences)
    sampler = BalancedTriplets(dataset, real, fake, recording_augment)
    for i in range(len(sampler)):
        sampler[i]
    assert sorted(index for index, _ in calls) == REAL_ROWS
    for index, landmarks in calls:
        assert landmarks is dataset.landmarks[index]


def test_without_a_sample_method_no_landmarks_are_passed():
    landmarks_seen = []

    def recording_augment(image, rng, landmarks=None):
        landmarks_seen.append(landmarks)
        return self_blended_image(image, rng, landmarks=landmarks)

    dataset = TinySequenceDataset()
    real, fake = split_real_fake(dataset.sequences)
    BalancedTriplets(dataset, real, fake, recording_augment)[0]
    assert landmarks_seen == [None]


def test_set_epoch_changes_the_order_reproducibly():
    sampler = triplets(seed=3)
    epoch0 = real_order(sampler)
    sampler.set_epoch(1)
    epoch1 = real_order(sampler)
    assert sorted(epoch1) == REAL_ROWS and epoch1 != epoch0
    sampler.set_epoch(0)
    assert real_order(sampler) == epoch0
    # A second copy (as in another DataLoader worker) at the same seed and epoch gives equal items,
    # whatever order they are fetched in.
    other = triplets(seed=3)
    other.set_epoch(1)
    sampler.set_epoch(1)
    for i in reversed(range(len(other))):
        for got, expected in zip(other[i], sampler[i]):
            assert torch.equal(got, expected)
    assert real_order(triplets(seed=4)) != epoch0


def test_real_and_pseudo_fake_share_one_weak_augmentation():
    # Crop and flip only: the corners of the two, which the blend leaves alone, stay equal only if
    # both got the same crop and flip.
    weak = WeakAugment(24, crop_scale=(0.8, 1.0), flip_p=0.5, jitter=0.0, blur_p=0.0)
    sampler = triplets(weak_augment=weak)
    for i in range(len(sampler)):
        images, _, _ = sampler[i]
        assert images.shape == (3, 3, 24, 24)
        assert torch.equal(images[1][:, 0, 0], images[0][:, 0, 0])
        assert not torch.equal(images[1], images[0])


def test_binary_items_give_binary_labels_with_a_fake_pseudo_fake():
    labels = [0, 1, 0, 0, 1]
    dataset = TinyBinaryDataset(labels)
    real, fake = split_real_fake(torch.tensor(labels))
    sampler = BalancedTriplets(dataset, real, fake, self_blended_image, weak_augment=WeakAugment(16))
    images, binary, kinds = collate_triplets([sampler[0], sampler[1]])
    assert images.shape == (6, 3, 16, 16)
    assert binary.tolist() == [0, 1, 1, 0, 1, 1] and kinds.tolist() == [0, 1, 2, 0, 1, 2]


def test_custom_item_layout_through_unpack_item():
    dataset = TinySequenceDataset()
    as_dicts = [{"pixels": dataset.images[k], "sequence": SEQUENCES[k]} for k in range(len(SEQUENCES))]
    sampler = BalancedTriplets(
        as_dicts, REAL_ROWS, FAKE_ROWS, self_blended_image,
        unpack_item=lambda item: (item["pixels"], item["sequence"]),
    )
    images, sequences, _ = sampler[0]
    assert index_of(images[0], dataset.images) in REAL_ROWS
    assert index_of(images[2], dataset.images) in FAKE_ROWS


def test_mislabelled_indices_are_reported_when_read():
    dataset = TinySequenceDataset()
    swapped = BalancedTriplets(dataset, FAKE_ROWS, REAL_ROWS, self_blended_image)
    with pytest.raises(ValueError, match=r"real_indices holds dataset index \d+, whose label .* is fake"):
        swapped[0]


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"real_indices": []}, ValueError, "real_indices must be a non-empty"),
        ({"fake_indices": [1, 10]}, ValueError, r"outside the data set's \[0, 10\)"),
        ({"fake_indices": [1.0, 3.0]}, TypeError, "integers"),
        ({"real_indices": [0, 2, 3]}, ValueError, "share 1 indices"),
        ({"strong_augment": None}, TypeError, "strong_augment must be callable"),
        ({"weak_augment": 3}, TypeError, "weak_augment"),
        ({"seed": -1}, ValueError, "seed"),
        ({"epoch_length": 0}, ValueError, "epoch_length"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, error, message):
    arguments = {
        "dataset": TinySequenceDataset(),
        "real_indices": REAL_ROWS,
        "fake_indices": FAKE_ROWS,
        "strong_augment": self_blended_image,
    }
    with pytest.raises(error, match=message):
        BalancedTriplets(**{**arguments, **kwargs})


def test_bad_epoch_index_and_mismatched_sizes_are_rejected():
    sampler = triplets()
    with pytest.raises(ValueError, match="epoch"):
        sampler.set_epoch(-1)
    with pytest.raises(IndexError, match="out of range"):
        sampler[len(sampler)]
    dataset = TinySequenceDataset()
    dataset.images = [
        image if k in REAL_ROWS else image[:, :16, :16] for k, image in enumerate(dataset.images)
    ]
    mismatched = BalancedTriplets(dataset, REAL_ROWS, FAKE_ROWS, self_blended_image)
    with pytest.raises(ValueError, match="shapes"):
        mismatched[0]
    with pytest.raises(ValueError, match="at least one"):
        collate_triplets([])
