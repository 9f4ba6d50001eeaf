"""SeeABLE's discrepancy classes, masks and soft discrepancies, on small hand-built images."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mlrank.seeable import (
    PROJECT_TYPES,
    SEEABLE_TYPES,
    DiscrepancySpec,
    SeeableDataset,
    SeeableTransform,
    apply_discrepancy,
    default_face_mask,
)
from mlrank.seeable.discrepancies import DISCREPANCY_FUNCTIONS, FREQUENCY_GAIN_RANGE
from mlrank.seeable.masks import cell_bounds


def textured_image(height=32, width=32, seed=0):
    """Smooth colour gradients plus noise: every type of discrepancy changes it."""
    generator = torch.Generator().manual_seed(seed)
    ys = torch.linspace(0, 1, height)[:, None].expand(height, width)
    xs = torch.linspace(0, 1, width)[None, :].expand(height, width)
    base = torch.stack([ys, xs, (ys + xs) / 2])
    return (0.6 * base + 0.4 * torch.rand(3, height, width, generator=generator)).clamp(0, 1)


# ----------------------------------------------------------------------------- classes


@pytest.mark.parametrize(
    "grid, types, expected_k",
    [
        ((4, 4), ("colour", "blur", "resample", "frequency"), 64),
        ((2, 3), ("blur", "frequency"), 12),
        ((1, 1), ("colour",), 1),
    ],
)
def test_k_is_locations_times_types(grid, types, expected_k):
    spec = DiscrepancySpec(grid=grid, types=types)
    assert spec.K == grid[0] * grid[1] * len(types) == expected_k


def test_default_spec_numbers_classes_location_major():
    spec = DiscrepancySpec()
    assert spec.types == ("colour", "blur", "resample", "frequency")
    assert (spec.location_of(0), spec.type_of(0)) == ((0, 0), "colour")
    assert (spec.location_of(5), spec.type_of(5)) == ((0, 1), "blur")
    assert (spec.location_of(18), spec.type_of(18)) == ((1, 0), "resample")  # cell 4 = (1, 0)
    assert (spec.location_of(63), spec.type_of(63)) == ((3, 3), "frequency")
    for k in range(spec.K):
        assert spec.class_of(*spec.location_of(k), spec.type_of(k)) == k
    assert spec.mirror_of(1, 0) == (1, 3) and spec.mirror_of(2, 2) == (2, 1)


def test_spec_from_yaml_lists_becomes_hashable():
    spec = DiscrepancySpec(grid=[2, 2], types=["blur"], blend_range=[0.5, 0.5])
    assert spec.grid == (2, 2) and spec.types == ("blur",) and spec.blend_range == (0.5, 0.5)
    assert hash(spec) == hash(DiscrepancySpec((2, 2), ("blur",), 0.25, (0.5, 0.5)))


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        (dict(grid=(0, 4)), ValueError, "grid rows"),
        (dict(grid=(4,)), ValueError, "grid"),
        (dict(types=("colour", "warp")), ValueError, "warp"),
        (dict(types=("blur", "blur")), ValueError, "repeat"),
        (dict(types=()), ValueError, "at least one"),
        (dict(types="blur"), TypeError, "sequence"),
        (dict(feather=0.0), ValueError, "feather"),
        (dict(blend_range=(0.8, 0.4)), ValueError, "blend_range"),
    ],
)
def test_spec_rejects_bad_settings(kwargs, error, words):
    with pytest.raises(error, match=words):
        DiscrepancySpec(**kwargs)


def test_class_out_of_range_is_named():
    spec = DiscrepancySpec()
    with pytest.raises(ValueError, match=r"\[0, 64\), got 64"):
        spec.location_of(64)
    with pytest.raises(TypeError, match="integer"):
        spec.type_of(1.0)


# ----------------------------------------------------------------------------- masks


def test_default_face_mask_is_a_centred_symmetric_ellipse():
    mask = default_face_mask(20, 20)
    assert mask.dtype == torch.bool and mask.shape == (20, 20)
    assert mask[10, 10] and not mask[0, 0] and not mask[0, 19] and not mask[19, 0]
    assert torch.equal(mask, mask.flip(1)) and torch.equal(mask, mask.flip(0))
    # semi-axes 0.40 * 20 = 8 wide, 0.45 * 20 = 9 tall: columns 2..17 and rows 1..18
    assert torch.nonzero(mask.any(0)).flatten().tolist() == list(range(2, 18))
    assert torch.nonzero(mask.any(1)).flatten().tolist() == list(range(1, 19))


def test_cells_partition_the_face_bounding_box():
    face = torch.zeros(16, 16, dtype=torch.bool)
    face[2:14, 3:13] = True  # a 12 x 10 box
    # Row edges 2 + r * 12 // 4 = 2, 5, 8, 11, 14; column edges 3 + c * 10 // 4 = 3, 5, 8, 10, 13.
    assert cell_bounds(face, 0, 0, (4, 4)) == (2, 5, 3, 5)
    assert cell_bounds(face, 1, 2, (4, 4)) == (5, 8, 8, 10)
    assert cell_bounds(face, 3, 3, (4, 4)) == (11, 14, 10, 13)


# ----------------------------------------------------------------------------- discrepancies


def full_face_block(k, spec, size):
    """Cell k's block when the whole image is face: the grid cells are plain blocks."""
    row, col = spec.location_of(k)
    height, width = size[0] // spec.rows, size[1] // spec.cols
    block = torch.zeros(size, dtype=torch.bool)
    block[row * height : (row + 1) * height, col * width : (col + 1) * width] = True
    return block


@pytest.mark.parametrize("types", [PROJECT_TYPES, SEEABLE_TYPES])
def test_every_discrepancy_changes_only_its_cell_on_a_full_face(types):
    spec = DiscrepancySpec(types=types)
    image = textured_image()
    face = torch.ones(32, 32, dtype=torch.bool)
    for k in range(spec.K):
        discrepant, mask = apply_discrepancy(image, k, spec, np.random.default_rng(k), face)
        block = full_face_block(k, spec, (32, 32))  # 8 x 8 blocks
        where = f"class {k} ({spec.type_of(k)} in cell {spec.location_of(k)})"
        assert torch.equal(mask > 0, block), f"{where}: the soft mask's support is not the cell"
        changed = (discrepant != image).any(dim=0)
        assert not (changed & ~block).any(), f"{where} changed pixels outside its cell"
        assert changed.any(), f"{where} changed nothing"
        assert discrepant.dtype == image.dtype and discrepant.min() >= 0 and discrepant.max() <= 1


def test_every_discrepancy_stays_in_cell_and_face_with_an_irregular_face():
    spec = DiscrepancySpec()
    image = textured_image(30, 34, seed=1)
    face = default_face_mask(30, 34)
    face[20:, :5] = False  # cut a corner off so the face is not symmetric
    ys = torch.nonzero(face.any(1)).flatten()
    xs = torch.nonzero(face.any(0)).flatten()
    top, left = int(ys[0]), int(xs[0])
    box_h, box_w = int(ys[-1]) + 1 - top, int(xs[-1]) + 1 - left
    for k in range(spec.K):
        row, col = spec.location_of(k)
        cell = torch.zeros_like(face)
        cell[
            top + row * box_h // 4 : top + (row + 1) * box_h // 4,
            left + col * box_w // 4 : left + (col + 1) * box_w // 4,
        ] = True
        rng = np.random.default_rng(100 + k)
        discrepant, mask = apply_discrepancy(image, k, spec, rng, face.numpy())
        assert torch.equal(mask > 0, cell & face)
        assert not ((discrepant != image).any(dim=0) & ~(cell & face)).any()


def test_soft_mask_ramps_from_the_border_to_the_blend_weight():
    # 64 x 64 full face, 2 x 2 grid: 32 x 32 cells, feather 0.25 -> an 8-pixel smoothstep ramp.
    spec = DiscrepancySpec(grid=(2, 2), types=("colour",), feather=0.25, blend_range=(1.0, 1.0))
    image = textured_image(64, 64)
    full_face = torch.ones(64, 64, dtype=torch.bool)
    _, mask = apply_discrepancy(image, 3, spec, np.random.default_rng(0), full_face)
    cell = mask[32:, 32:]
    t = 1 / 8
    assert cell[0, 0] == pytest.approx(3 * t**2 - 2 * t**3)  # distance 1 from the outside
    assert cell[0, 16] == pytest.approx(3 * t**2 - 2 * t**3)
    assert cell[2, 16] == pytest.approx(3 * (3 / 8) ** 2 - 2 * (3 / 8) ** 3)  # distance 3
    assert torch.all(cell[8:24, 8:24] == 1)
    assert torch.equal(mask[:32].abs().sum(), torch.tensor(0.0)) and torch.all(mask[:, :32] == 0)


def test_blend_is_mask_times_source_plus_rest_of_target():
    # On a grey image "colour" adds a per-channel shift s: discrepant - image = M * s,
    # with |s| in [0.03, 0.1].
    spec = DiscrepancySpec(grid=(2, 2), types=("colour",), blend_range=(0.5, 1.0))
    image = torch.full((3, 24, 24), 0.5)
    full_face = torch.ones(24, 24, dtype=torch.bool)
    discrepant, mask = apply_discrepancy(image, 1, spec, np.random.default_rng(3), full_face)
    support = mask > 0
    shift = (discrepant - image)[:, support] / mask[support]
    torch.testing.assert_close(shift, shift[:, :1].expand_as(shift), atol=1e-5, rtol=0)
    assert torch.all((shift[:, 0].abs() >= 0.03 - 1e-6) & (shift[:, 0].abs() <= 0.1 + 1e-6))
    assert 0.5 <= float(mask.max()) <= 1.0


def test_frequency_discrepancy_scales_one_band_of_the_spectrum():
    pixels = textured_image(32, 32, seed=2).permute(1, 2, 0).numpy().astype(np.float64)
    altered = DISCREPANCY_FUNCTIONS["frequency"](pixels, np.random.default_rng(5))
    ratio = np.abs(np.fft.rfft2(altered, axes=(0, 1))) / np.abs(np.fft.rfft2(pixels, axes=(0, 1)))
    changed = ~np.isclose(ratio, 1.0, atol=1e-9)
    assert changed.any() and not changed[0, 0].any(), "the band must exclude DC (the mean colour)"
    gains = ratio[changed]
    assert np.allclose(gains, gains[0])
    assert FREQUENCY_GAIN_RANGE[0] <= gains[0] <= FREQUENCY_GAIN_RANGE[1]
    radius = np.hypot(np.fft.fftfreq(32)[:, None], np.fft.rfftfreq(32)[None, :])
    band = radius[changed.all(axis=2)]
    assert band.max() - band.min() < 0.15  # one annulus of width 0.15 cycles per pixel


@pytest.mark.parametrize("type_name", ["blur", "resample", "frequency"])
def test_structural_types_leave_a_flat_image_flat(type_name):
    # Blur, resampling and a band away from DC change structure, not a constant colour.
    pixels = np.full((16, 16, 3), 0.3, dtype=np.float32)
    altered = DISCREPANCY_FUNCTIONS[type_name](pixels, np.random.default_rng(0))
    np.testing.assert_allclose(altered, pixels, atol=1e-6)


def test_same_rng_seed_same_discrepancy():
    spec = DiscrepancySpec()
    image = textured_image()
    first = apply_discrepancy(image, 7, spec, np.random.default_rng(11))
    again = apply_discrepancy(image, 7, spec, np.random.default_rng(11))
    other = apply_discrepancy(image, 7, spec, np.random.default_rng(12))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], other[0])


THREE_PIXEL_FACE = torch.eye(16, dtype=torch.bool) & (torch.arange(16) < 3)[None, :]  # a 3x3 box


@pytest.mark.parametrize(
    "image, face_mask, error, words",
    [
        (torch.rand(1, 16, 16), None, ValueError, r"\(3, H, W\)"),
        (torch.zeros(3, 16, 16, dtype=torch.uint8), None, TypeError, "floating"),
        (torch.full((3, 16, 16), 2.0), None, ValueError, r"\[0, 1\]"),
        (torch.rand(3, 16, 16), torch.ones(16, 15, dtype=torch.bool), ValueError, r"\(16, 16\)"),
        (torch.rand(3, 16, 16), torch.ones(16, 16), TypeError, "bool"),
        (torch.rand(3, 16, 16), torch.zeros(16, 16, dtype=torch.bool), ValueError, "empty"),
        (torch.rand(3, 16, 16), THREE_PIXEL_FACE, ValueError, "too small"),
    ],
)
def test_bad_input_is_named(image, face_mask, error, words):
    with pytest.raises(error, match=words):
        apply_discrepancy(image, 0, DiscrepancySpec(), np.random.default_rng(0), face_mask)


def test_empty_cell_of_the_face_is_named():
    face = torch.zeros(16, 16, dtype=torch.bool)
    face[:8, :8] = True
    face[8:, 8:] = True  # two diagonal quarters: cell (0, 1) of a 2 x 2 grid holds no face
    spec = DiscrepancySpec(grid=(2, 2), types=("blur",))
    with pytest.raises(ValueError, match=r"cell \(0, 1\).*no face pixel"):
        apply_discrepancy(torch.rand(3, 16, 16), 1, spec, np.random.default_rng(0), face)


def test_rng_must_be_a_numpy_generator():
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        apply_discrepancy(torch.rand(3, 16, 16), 0, DiscrepancySpec(), 0)


# ----------------------------------------------------------------------------- training data


def test_transform_draws_every_class_uniformly():
    spec = DiscrepancySpec(grid=(2, 2), types=("colour",))
    transform = SeeableTransform(spec)
    rng = np.random.default_rng(0)
    image = textured_image(16, 16)
    counts = np.bincount([transform(image, rng)[1] for _ in range(400)], minlength=4)
    # Chi-square with 3 degrees of freedom; 16.3 is its 0.999 quantile.
    assert ((counts - 100) ** 2 / 100).sum() < 16.3, counts


def test_dataset_is_reproducible_per_seed_epoch_and_index():
    images = [textured_image(16, 16, seed=i) for i in range(6)]
    spec = DiscrepancySpec(grid=(2, 2))
    dataset = SeeableDataset(images, spec, seed=3)
    first = [dataset[i] for i in range(6)]
    again = SeeableDataset(images, spec, seed=3)
    for (image_a, k_a), (image_b, k_b) in zip(first, (again[i] for i in range(6))):
        assert k_a == k_b and torch.equal(image_a, image_b)
    dataset.set_epoch(1)
    assert any(not torch.equal(first[i][0], dataset[i][0]) for i in range(6))
    assert len(dataset) == 6 and all(0 <= k < spec.K for _, k in first)


class FakeAndRealFaces:
    """Like the project's data sets: sample(j) gives a uint8 (H, W, 3) image and a face mask
    (here the bottom-right quarter), and is_real(j) tells fakes (odd j) apart."""

    def __init__(self, count):
        self.count, self.read = count, []
        self.pixels = (textured_image(16, 16).permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        self.face = np.zeros((16, 16), dtype=bool)
        self.face[8:, 8:] = True

    def __len__(self):
        return self.count

    def is_real(self, index):
        return index % 2 == 0

    def sample(self, index):
        self.read.append(index)
        return SimpleNamespace(image=self.pixels, face_mask=self.face)


def test_dataset_keeps_real_faces_and_reads_their_masks():
    base = FakeAndRealFaces(7)
    dataset = SeeableDataset(base, DiscrepancySpec(grid=(2, 2)), seed=0)
    assert len(dataset) == 4
    image = torch.from_numpy(base.pixels).permute(2, 0, 1).float() / 255
    for discrepant, _ in dataset:
        changed = (discrepant != image).any(dim=0)  # every discrepancy lands in the face quarter
        assert changed.any() and not changed[:8].any() and not changed[:, :8].any()
    assert base.read == [0, 2, 4, 6]
    with pytest.raises(ValueError, match=r"real faces only; items \[3\]"):
        SeeableDataset(base, indices=[0, 3])


def test_dataset_reads_mappings_and_names_a_missing_image():
    face = torch.zeros(16, 16, dtype=torch.bool)
    face[:8, :8] = True
    image = textured_image(16, 16)
    for discrepant, _ in SeeableDataset([{"image": image, "face_mask": face}] * 3, seed=1):
        changed = (discrepant != image).any(dim=0)
        assert changed.any() and not changed[8:].any() and not changed[:, 8:].any()
    with pytest.raises(KeyError, match="'image'"):
        SeeableDataset([{"pixels": image}])[0]
    with pytest.raises(IndexError, match="out of range"):
        SeeableDataset([image])[1]
