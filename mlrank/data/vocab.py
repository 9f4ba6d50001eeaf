"""The two label vocabularies of Seq-DeepFake (Shao et al., ECCV 2022).

Ids are 1-based as in the data set's CSV files; 0 pads a sequence to length 5.
"""

SEQUENCE_LENGTH = 5

FACIAL_COMPONENTS = ("nose", "eye", "eyebrow", "lip", "hair")
FACIAL_ATTRIBUTES = ("Bangs", "Eyeglasses", "Beard", "Smiling", "Young")

# subset folder name (as in the official layout) -> names of ids 1..5
SUBSETS = {
    "facial_components": FACIAL_COMPONENTS,
    "facial_attributes": FACIAL_ATTRIBUTES,
}


def names_of(subset: str) -> tuple[str, ...]:
    """The names of ids 1..5 of a subset, with an error that lists the valid subsets."""
    try:
        return SUBSETS[subset]
    except KeyError:
        raise ValueError(f"unknown Seq-DeepFake subset {subset!r}; expected one of {sorted(SUBSETS)}") from None
