"""Data: the built-in synthetic Seq-DeepFake, the real data sets, augmentation."""

from .vocab import FACIAL_ATTRIBUTES, FACIAL_COMPONENTS, SEQUENCE_LENGTH, SUBSETS, names_of

__all__ = ["FACIAL_ATTRIBUTES", "FACIAL_COMPONENTS", "SEQUENCE_LENGTH", "SUBSETS", "names_of"]
