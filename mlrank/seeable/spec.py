"""The discrepancy classes of SeeABLE: K = grid locations x discrepancy types.

A class k names *where* a soft discrepancy is planted (one cell of a rows x cols grid laid over
the face's bounding box) and *what kind* it is. Classes are numbered location-major,
k = (row * cols + col) * num_types + type_index, so the types of one cell are neighbours.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

SPATIAL_TYPES = ("colour", "blur", "resample", "spatial")
FREQUENCY_TYPES = ("frequency",)
DISCREPANCY_TYPES = SPATIAL_TYPES + FREQUENCY_TYPES  # every known type
# The two SeeABLE states: one spatial discrepancy (Self-Blended Images' source transform, a colour
# change then a resample or a sharpening) and one in the frequency domain.
SEEABLE_TYPES = ("spatial", "frequency")
# mlrank's default: the spatial cues as classes of their own (docs/seeable.md says why).
PROJECT_TYPES = ("colour", "blur", "resample", "frequency")
# At most 16 x 16 cells of the four types. The cost grows with K: past 2 x embed_dim the
# prototypes are optimised over K x K cosines (about 40 s for K = 1024 on one CPU thread,
# over 11 minutes and 7 GB for K = 16384), and scoring one face runs K forward passes and
# fills a K x K matrix.
MAX_CLASSES = 1024


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


@dataclass(frozen=True)
class DiscrepancySpec:
    """Which soft discrepancies exist and how they are blended in.

    Args:
        grid: (rows, cols) of the grid over the face's bounding box.
        types: discrepancy types, a subset of :data:`DISCREPANCY_TYPES` in the order that
            numbers them: :data:`PROJECT_TYPES` (the default) or SeeABLE's :data:`SEEABLE_TYPES`.
        feather: width of the soft mask's ramp from the region's border to full strength, as a
            fraction of the cell's shorter side.
        blend_range: (low, high) of the peak blend weight, drawn uniformly per discrepancy.
    """

    grid: tuple[int, int] = (4, 4)
    types: tuple[str, ...] = PROJECT_TYPES
    feather: float = 0.25
    blend_range: tuple[float, float] = (0.5, 1.0)

    def __post_init__(self) -> None:
        # Lists (from YAML) become tuples so that the spec stays hashable and immutable.
        if not isinstance(self.grid, (tuple, list)) or len(self.grid) != 2:
            raise ValueError(f"grid must be (rows, cols), got {self.grid!r}")
        grid = (_positive_int(self.grid[0], "grid rows"), _positive_int(self.grid[1], "grid cols"))
        object.__setattr__(self, "grid", grid)

        if isinstance(self.types, str) or not isinstance(self.types, (tuple, list)):
            raise TypeError(f"types must be a sequence of type names, got {self.types!r}")
        types = tuple(self.types)
        if not types:
            raise ValueError("types must name at least one discrepancy type")
        unknown = [name for name in types if name not in DISCREPANCY_TYPES]
        if unknown:
            raise ValueError(
                f"unknown discrepancy types {unknown}; known: {list(DISCREPANCY_TYPES)}"
            )
        if len(set(types)) != len(types):
            raise ValueError(f"types must not repeat, got {list(types)}")
        object.__setattr__(self, "types", types)
        if self.K > MAX_CLASSES:
            raise ValueError(
                f"a {grid[0]} x {grid[1]} grid with {len(types)} types gives K = {self.K} "
                f"discrepancy classes, more than {MAX_CLASSES}: its prototypes would take minutes "
                "to build and scoring a face K forward passes; use a coarser grid or fewer types"
            )

        feather = float(self.feather)
        if not math.isfinite(feather) or not 0 < feather <= 1:
            raise ValueError(f"feather must be in (0, 1], got {self.feather}")
        object.__setattr__(self, "feather", feather)

        if not isinstance(self.blend_range, (tuple, list)) or len(self.blend_range) != 2:
            raise ValueError(f"blend_range must be (low, high), got {self.blend_range!r}")
        low, high = (float(value) for value in self.blend_range)
        if not 0 < low <= high <= 1:
            raise ValueError(
                f"blend_range must satisfy 0 < low <= high <= 1, got {self.blend_range}"
            )
        object.__setattr__(self, "blend_range", (low, high))

    @property
    def rows(self) -> int:
        return self.grid[0]

    @property
    def cols(self) -> int:
        return self.grid[1]

    @property
    def num_locations(self) -> int:
        return self.rows * self.cols

    @property
    def num_types(self) -> int:
        return len(self.types)

    @property
    def K(self) -> int:  # noqa: N802  (the papers' name for the number of classes)
        """Number of discrepancy classes, locations x types."""
        return self.num_locations * self.num_types

    def _check_class(self, k: object) -> int:
        if isinstance(k, bool) or not isinstance(k, numbers.Integral):
            raise TypeError(f"class k must be an integer, got {type(k).__name__}")
        if not 0 <= k < self.K:
            raise ValueError(f"class k must be in [0, {self.K}), got {k}")
        return int(k)

    def location_of(self, k: int) -> tuple[int, int]:
        """(row, col) of the grid cell of class k."""
        return divmod(self._check_class(k) // self.num_types, self.cols)

    def type_of(self, k: int) -> str:
        """Name of the discrepancy type of class k."""
        return self.types[self._check_class(k) % self.num_types]

    def class_of(self, row: int, col: int, type_name: str) -> int:
        """The class k of a (row, col) cell and a type name; inverse of location_of/type_of."""
        if not (0 <= row < self.rows and 0 <= col < self.cols):
            raise ValueError(f"cell ({row}, {col}) is outside the {self.rows} x {self.cols} grid")
        if type_name not in self.types:
            raise ValueError(f"unknown type {type_name!r}; this spec has {list(self.types)}")
        return (row * self.cols + col) * self.num_types + self.types.index(type_name)

    def mirror_of(self, row: int, col: int) -> tuple[int, int]:
        """The left-right mirror cell: the same row, the column reflected about the face's axis."""
        return row, self.cols - 1 - col
