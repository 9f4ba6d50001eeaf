"""Fixed class prototypes: K unit vectors spread evenly over the sphere of R^dim.

When K <= dim + 1 they are the vertices of a regular simplex centred at the origin (every
pairwise cosine is -1/(K-1), the most spread-out K points possible), built from the rows of the
Helmert matrix and turned by a seeded random rotation (Haar-distributed, from the QR of a
Gaussian matrix with R's diagonal made positive), like SeeABLE's PEDCC points.

When K > dim + 1 no simplex fits, and no K points can be more than 90 degrees apart (Rankin,
1955). Up to K = 2 dim, K vertices of the cross-polytope (+-e_i, rotated the same way) reach
those 90 degrees exactly. Beyond, the best spread (Tammes' problem) has no closed form: the
points start from seeded Gaussian directions and minimise a smooth maximum of the pairwise
cosines, (1/s) logsumexp(s cos_ij) with sharpness s rising from 10 to 80, by Adam on the sphere.
:func:`min_pairwise_angle` reports what was reached; docs/seeable.md lists typical values.
Everything runs in float64 on the CPU, so a seed gives the same prototypes on any machine
with the same library versions; the checkpoint stores them anyway.
"""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F

SPREAD_STEPS_PER_STAGE = 250
SPREAD_SHARPNESS_STAGES = (10.0, 20.0, 40.0, 80.0)
SPREAD_LEARNING_RATE = 0.01


def _check_positive_int(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def random_rotation(dim: int, generator: torch.Generator) -> torch.Tensor:
    """A Haar-random orthogonal (dim, dim) float64 matrix."""
    gaussian = torch.randn(dim, dim, dtype=torch.float64, generator=generator)
    q, r = torch.linalg.qr(gaussian)
    return q * torch.sign(torch.diagonal(r))[None, :]


def regular_simplex(num_points: int) -> torch.Tensor:
    """(num_points, num_points - 1) float64 unit vectors with pairwise cosine -1/(num_points-1).

    Row i of the Helmert basis of the sum-zero subspace is the projection of e_i onto it, and
    those projections are the vertices of the centred regular simplex.
    """
    helmert = torch.zeros(num_points, num_points - 1, dtype=torch.float64)
    for j in range(1, num_points):
        scale = 1.0 / math.sqrt(j * (j + 1))
        helmert[:j, j - 1] = scale
        helmert[j, j - 1] = -j * scale
    return helmert * math.sqrt(num_points / (num_points - 1))


def cross_polytope(num_points: int, dim: int) -> torch.Tensor:
    """(num_points, dim) float64 points +e_0, -e_0, +e_1, -e_1, ...; num_points <= 2 dim."""
    points = torch.zeros(num_points, dim, dtype=torch.float64)
    index = torch.arange(num_points)
    points[index, index // 2] = (1 - 2 * (index % 2)).double()
    return points


def spread_points(num_points: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    """(num_points, dim) float64 unit vectors pushed apart by minimising a soft max of cosines."""
    points = torch.randn(num_points, dim, dtype=torch.float64, generator=generator)
    points = F.normalize(points, dim=1).requires_grad_()
    rows, cols = torch.triu_indices(num_points, num_points, offset=1)
    optimizer = torch.optim.Adam([points], lr=SPREAD_LEARNING_RATE)
    for sharpness in SPREAD_SHARPNESS_STAGES:
        for _ in range(SPREAD_STEPS_PER_STAGE):
            unit = F.normalize(points, dim=1)
            cosines = (unit @ unit.T)[rows, cols]
            soft_max_cosine = torch.logsumexp(sharpness * cosines, dim=0) / sharpness
            optimizer.zero_grad()
            soft_max_cosine.backward()
            optimizer.step()
            with torch.no_grad():  # stay on the sphere, where Adam's steps keep their scale
                points.copy_(F.normalize(points, dim=1))
    return points.detach()


def make_prototypes(
    num_classes: int, dim: int, seed: int = 0, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """K = num_classes fixed unit prototypes in R^dim, shape (K, dim).

    A rotated regular simplex when K <= dim + 1, a rotated cross-polytope when K <= 2 dim,
    otherwise spread points (see module docs). The same (K, dim, seed) always gives the same
    prototypes.
    """
    num_classes = _check_positive_int(num_classes, "num_classes (K)", 2)
    dim = _check_positive_int(dim, "dim", 1)
    seed = _check_positive_int(seed, "seed", 0)
    generator = torch.Generator().manual_seed(seed)
    if num_classes <= dim + 1:
        simplex = regular_simplex(num_classes)
        padded = F.pad(simplex, (0, dim - simplex.shape[1]))
        points = padded @ random_rotation(dim, generator).T
    elif num_classes <= 2 * dim:
        points = cross_polytope(num_classes, dim) @ random_rotation(dim, generator).T
    else:
        points = spread_points(num_classes, dim, generator)
    return F.normalize(points, dim=1).to(dtype)


def min_pairwise_angle(points: torch.Tensor) -> float:
    """The smallest angle, in degrees, between two rows of ``points`` (K, dim), K >= 2."""
    if not isinstance(points, torch.Tensor) or points.dim() != 2 or points.shape[0] < 2:
        shape = tuple(points.shape) if isinstance(points, torch.Tensor) else type(points).__name__
        raise ValueError(f"points must be a (K, dim) tensor with K >= 2, got {shape}")
    unit = F.normalize(points.detach().double(), dim=1)
    rows, cols = torch.triu_indices(len(unit), len(unit), offset=1)
    largest_cosine = (unit @ unit.T)[rows, cols].max().clamp(-1.0, 1.0)
    return math.degrees(math.acos(float(largest_cosine)))
