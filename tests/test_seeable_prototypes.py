"""SeeABLE's fixed prototypes: a rotated regular simplex, or spread points when K > dim + 1."""

import math

import pytest
import torch

from mlrank.seeable import make_prototypes, min_pairwise_angle


def off_diagonal_cosines(points):
    points = points.double()
    cosines = points @ points.T
    return cosines[~torch.eye(len(points), dtype=torch.bool)]


@pytest.mark.parametrize("num_classes, dim", [(64, 128), (9, 8), (8, 8), (2, 5), (3, 2)])
def test_simplex_prototypes_are_unit_with_cosine_minus_one_over_k_minus_one(num_classes, dim):
    prototypes = make_prototypes(num_classes, dim, seed=0)
    assert prototypes.shape == (num_classes, dim) and prototypes.dtype == torch.float32
    points = prototypes.double()
    torch.testing.assert_close(points.norm(dim=1), torch.ones_like(points[:, 0]), atol=1e-6, rtol=0)
    cosines = off_diagonal_cosines(prototypes)
    expected = torch.full_like(cosines, -1 / (num_classes - 1))
    torch.testing.assert_close(cosines, expected, atol=1e-6, rtol=0)
    # A centred simplex: the vertices sum to zero.
    torch.testing.assert_close(points.sum(0), torch.zeros_like(points[0]), atol=1e-5, rtol=0)
    simplex_angle = math.degrees(math.acos(-1 / (num_classes - 1)))
    assert min_pairwise_angle(prototypes) == pytest.approx(simplex_angle, abs=1e-4)


def test_seed_rotates_the_same_simplex():
    first, again = make_prototypes(16, 32, seed=1), make_prototypes(16, 32, seed=1)
    other = make_prototypes(16, 32, seed=2).double()
    assert torch.equal(first, again)
    assert not torch.allclose(first.double(), other, atol=1e-3)
    gram = first.double() @ first.double().T
    torch.testing.assert_close(gram, other @ other.T, atol=1e-6, rtol=0)
    # The rotation uses all dimensions, not just the first K - 1.
    assert first[:, 15:].abs().max() > 0.1


@pytest.mark.parametrize("num_classes, dim", [(10, 6), (11, 6), (64, 32)])
def test_up_to_twice_the_dimension_the_prototypes_are_ninety_degrees_apart(num_classes, dim):
    # Past dim + 1 points no spread beats 90 degrees (Rankin); the cross-polytope reaches it.
    prototypes = make_prototypes(num_classes, dim, seed=0)
    cosines = off_diagonal_cosines(prototypes)
    is_orthogonal = cosines.abs() < 1e-6
    is_antipodal = (cosines + 1).abs() < 1e-6
    assert torch.all(is_orthogonal | is_antipodal)
    assert int(is_antipodal.sum()) == 2 * (num_classes // 2)  # ordered pairs (+e_i, -e_i)
    assert min_pairwise_angle(prototypes) == pytest.approx(90.0, abs=1e-4)


def test_more_classes_than_a_simplex_holds_reaches_the_icosahedron():
    # Beyond 2 dim points: Tammes' problem. For 12 points on the 2-sphere the optimum is the
    # icosahedron, min angle arccos(1/sqrt(5)).
    prototypes = make_prototypes(12, 3, seed=0, dtype=torch.float64)
    torch.testing.assert_close(prototypes.norm(dim=1), torch.ones(12, dtype=torch.float64))
    icosahedron_angle = math.degrees(math.acos(1 / math.sqrt(5)))  # 63.435 degrees
    assert min_pairwise_angle(prototypes) == pytest.approx(icosahedron_angle, abs=0.05)
    assert torch.equal(prototypes, make_prototypes(12, 3, seed=0, dtype=torch.float64))


def test_min_pairwise_angle_on_hand_cases():
    square = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    assert min_pairwise_angle(square) == pytest.approx(90.0)
    thirty = torch.tensor([[1.0, 0.0], [math.cos(math.pi / 6), math.sin(math.pi / 6)], [-1.0, 0.0]])
    assert min_pairwise_angle(thirty) == pytest.approx(30.0)
    unnormalised = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    assert min_pairwise_angle(unnormalised) == pytest.approx(90.0)


@pytest.mark.parametrize(
    "args, error, words",
    [
        ((1, 4), ValueError, "num_classes"),
        ((4, 0), ValueError, "dim"),
        ((4.0, 4), TypeError, "integer"),
        ((4, 4, -1), ValueError, "seed"),
    ],
)
def test_bad_arguments_are_named(args, error, words):
    with pytest.raises(error, match=words):
        make_prototypes(*args)
    with pytest.raises(ValueError, match="K >= 2"):
        min_pairwise_angle(torch.ones(1, 3))
