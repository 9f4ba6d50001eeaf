"""Data: the built-in synthetic Seq-DeepFake, the real data sets, augmentation."""

from .augment import HorizontalFlip, WeakAugment, self_blended_image
from .binary import DeepfakeBenchDataset, FrameFolderDataset
from .sampler import BalancedTriplets, collate_triplets, split_real_fake
from .seqdeepfake import SeqDeepFakeDataset
from .synthetic import SyntheticSeqDeepFake, write_seqdeepfake_layout
from .vocab import FACIAL_ATTRIBUTES, FACIAL_COMPONENTS, SEQUENCE_LENGTH, SUBSETS, names_of

__all__ = [
    "BalancedTriplets",
    "DeepfakeBenchDataset",
    "FACIAL_ATTRIBUTES",
    "FACIAL_COMPONENTS",
    "FrameFolderDataset",
    "HorizontalFlip",
    "SEQUENCE_LENGTH",
    "SUBSETS",
    "SeqDeepFakeDataset",
    "SyntheticSeqDeepFake",
    "WeakAugment",
    "collate_triplets",
    "names_of",
    "self_blended_image",
    "split_real_fake",
    "write_seqdeepfake_layout",
]
