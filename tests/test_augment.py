"""Weak augmentation and the self-blended pseudo-fake, on small synthetic images."""

import numpy as np
import pytest
import torch

from mlrank.data.augment import WeakAugment, self_blended_image

SIDE = 64
CENTRE = (SIDE - 1) / 2
SEEDS = range(8)
SBI_BLEND_RATIOS = (0.25, 0.5, 0.75, 1.0)

# How far the mask may spread beyond the face region on a 64-pixel image, per axis, in pixels:
# affine jitter |scale - 1| * |p - centre| + shift (scale in [0.95, 1/0.95], shift <= 3% of 64 = 1.92)
# with |p - centre| <= 14 for the diamond: 2.7; nearest-neighbour rounding of the affine and elastic
# warps: 0.5 + 0.5; elastic displacement <= 1.5% of 64 = 0.96; blur radius 12 * 64 / 256 = 3.
DIAMOND_SPREAD = 8
# For the ellipse (|p - centre| <= 28: affine 3.4) the per-axis spread is <= 8.4; a square of that
# half-side lies within a disc of radius 8.4 * sqrt(2), and an ellipse grown by a disc of radius r lies
# within the ellipse with semi-axes grown by r.
ELLIPSE_SPREAD = 12


def face_like_image(seed=0, height=SIDE, width=SIDE):
    """Smooth colour gradients plus mild noise, in [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    ys = torch.linspace(0, 1, height)[:, None]
    xs = torch.linspace(0, 1, width)[None, :]
    base = torch.stack([0.3 + 0.4 * xs * ys, 0.5 - 0.3 * ys + 0 * xs, 0.2 + 0.5 * xs + 0 * ys])
    return (base + 0.05 * torch.rand(3, height, width, generator=generator)).clamp(0, 1)


def pixel_grid():
    coordinates = torch.arange(SIDE, dtype=torch.float64)
    ys, xs = torch.meshgrid(coordinates, coordinates, indexing="ij")
    return xs, ys


def assert_changes_only_inside(image, pseudo_fake, mask):
    outside = mask == 0
    assert outside.any() and (~outside).any()
    assert torch.equal(pseudo_fake[:, outside], image[:, outside])
    assert (pseudo_fake[:, ~outside] != image[:, ~outside]).any()


# ---------------------------------------------------------------------------------------------
# self_blended_image
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("region", ["landmarks", "face_mask", "ellipse"])
def test_pseudo_fake_changes_pixels_only_inside_its_mask(region):
    image = face_like_image()
    kwargs = {
        "landmarks": np.array([[20.0, 18.0], [44.0, 20.0], [46.0, 44.0], [18.0, 46.0]]),
        "face_mask": torch.zeros(SIDE, SIDE, dtype=torch.bool).index_fill_(0, torch.arange(16, 48), True),
        "ellipse": {},
    }[region]
    kwargs = kwargs if region == "ellipse" else {region: kwargs}
    for seed in SEEDS:
        pseudo_fake, mask = self_blended_image(image, np.random.default_rng(seed), **kwargs)
        assert pseudo_fake.shape == (3, SIDE, SIDE) and mask.shape == (SIDE, SIDE)
        assert pseudo_fake.dtype == mask.dtype == torch.float32
        assert 0 <= pseudo_fake.min() and pseudo_fake.max() <= 1
        assert 0 <= mask.min() and mask.max() <= 1
        assert_changes_only_inside(image, pseudo_fake, mask)


def test_mask_peak_is_one_of_the_blend_ratios():
    # The soft mask is normalised to a peak of 1 before the ratio multiplies it.
    image = face_like_image()
    peaks = set()
    for seed in range(30):
        _, mask = self_blended_image(image, np.random.default_rng(seed))
        peak = mask.max().item()
        assert min(abs(peak - ratio) for ratio in SBI_BLEND_RATIOS) < 1e-6, peak
        peaks.add(round(peak, 2))
    assert len(peaks) >= 3  # the ratio is random


def test_mask_from_landmarks_lies_within_their_dilated_convex_hull():
    # A diamond |x - c| + |y - c| <= 14, given with interior points and in scrambled order: only the
    # convex hull of all points gives the diamond.
    radius = 14
    corners = [
        [CENTRE - radius, CENTRE], [CENTRE, CENTRE + radius],
        [CENTRE + radius, CENTRE], [CENTRE, CENTRE - radius],
    ]
    interior = [[CENTRE + 3, CENTRE - 2], [CENTRE - 4, CENTRE + 5], [CENTRE, CENTRE]]
    landmarks = np.array(
        [corners[0], interior[0], corners[2], interior[1], corners[1], interior[2], corners[3]]
    )
    xs, ys = pixel_grid()
    dx, dy = (xs - CENTRE).abs(), (ys - CENTRE).abs()
    # The diamond grown by a square of half-side R is the octagon below.
    spread = DIAMOND_SPREAD
    allowed = (dx <= radius + spread) & (dy <= radius + spread) & (dx + dy <= radius + 2 * spread)
    core = dx + dy <= 3
    image = face_like_image(1)
    for seed in SEEDS:
        pseudo_fake, mask = self_blended_image(image, np.random.default_rng(seed), landmarks=landmarks)
        assert not (mask[~allowed] > 0).any(), f"seed {seed}: mask outside the dilated hull"
        assert (mask[core] > 0).all()
        assert_changes_only_inside(image, pseudo_fake, mask)


def test_landmarks_as_a_tensor_and_partly_outside_the_image():
    landmarks = torch.tensor([[-10.0, -10.0], [30.0, -10.0], [30.0, 30.0], [-10.0, 30.0]])
    _, mask = self_blended_image(face_like_image(), np.random.default_rng(0), landmarks=landmarks)
    xs, ys = pixel_grid()
    assert mask[5, 5] > 0
    assert not (mask[(xs > 30 + DIAMOND_SPREAD + 2) | (ys > 30 + DIAMOND_SPREAD + 2)] > 0).any()


def test_ellipse_fallback_is_a_centred_face_ellipse():
    semi_x, semi_y = 0.36 * SIDE, 0.44 * SIDE
    xs, ys = pixel_grid()
    ex, ey = xs - CENTRE, ys - CENTRE

    def inside(grow):
        return (ex / (semi_x + grow)) ** 2 + (ey / (semi_y + grow)) ** 2 <= 1

    image = face_like_image(2)
    for seed in SEEDS:
        _, mask = self_blended_image(image, np.random.default_rng(seed))
        assert not (mask[~inside(ELLIPSE_SPREAD)] > 0).any(), f"seed {seed}: mask outside the grown ellipse"
        assert (mask[inside(-ELLIPSE_SPREAD - 3)] > 0).all()  # 3: erosion radius 12 * 64 / 256
        assert mask[0, 0] == mask[0, -1] == mask[-1, 0] == mask[-1, -1] == 0


def test_face_mask_is_used_when_no_landmarks_and_landmarks_take_precedence():
    # An off-centre rectangle far from the image centre, so the ellipse cannot be mistaken for it.
    rows, cols = slice(2, 19), slice(40, 61)
    face_mask = torch.zeros(SIDE, SIDE)
    face_mask[rows, cols] = 0.9
    xs, ys = pixel_grid()
    spread = 9  # affine 0.0527 * 28.5 + 1.92, roundings 1, elastic 0.96, blur 3
    allowed = (ys >= 2 - spread) & (ys <= 18 + spread) & (xs >= 40 - spread) & (xs <= 60 + spread)
    image = face_like_image(3)
    for seed in SEEDS:
        _, mask = self_blended_image(image, np.random.default_rng(seed), face_mask=face_mask)
        assert not (mask[~allowed] > 0).any()
        assert mask[10, 50] > 0 and mask[32, 32] == 0

    landmarks = np.array([[4.0, 44.0], [20.0, 44.0], [20.0, 60.0], [4.0, 60.0]])
    _, mask = self_blended_image(image, np.random.default_rng(0), landmarks=landmarks, face_mask=face_mask)
    assert mask[52, 12] > 0 and mask[10, 50] == 0


def test_self_blended_image_is_deterministic_per_seed():
    image = face_like_image(4)
    first = self_blended_image(image, np.random.default_rng(7))
    again = self_blended_image(image, np.random.default_rng(7))
    other = self_blended_image(image, np.random.default_rng(8))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], other[0])


def test_self_blended_image_leaves_its_input_untouched_and_takes_non_square_images():
    image = face_like_image(5, height=48, width=80)
    copy = image.clone()
    pseudo_fake, mask = self_blended_image(image, np.random.default_rng(0))
    assert torch.equal(image, copy)
    assert pseudo_fake.shape == (3, 48, 80) and mask.shape == (48, 80)
    assert_changes_only_inside(image, pseudo_fake, mask)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"landmarks": np.zeros((2, 2))}, ValueError, "K >= 3"),
        ({"landmarks": np.zeros((5, 3))}, ValueError, "K x 2"),
        ({"landmarks": np.array([[1.0, 1.0], [np.nan, 2.0], [3.0, 1.0]])}, ValueError, "NaN"),
        ({"landmarks": np.array([[100.0, 100.0], [120.0, 100.0], [110.0, 120.0]])}, ValueError, "no pixel"),
        ({"face_mask": torch.ones(32, 64)}, ValueError, "face_mask must have shape"),
        ({"face_mask": torch.zeros(SIDE, SIDE)}, ValueError, "face_mask is empty"),
    ],
)
def test_self_blended_image_rejects_bad_regions(kwargs, error, message):
    with pytest.raises(error, match=message):
        self_blended_image(face_like_image(), np.random.default_rng(0), **kwargs)


@pytest.mark.parametrize(
    "image, rng, error, message",
    [
        (np.zeros((3, 8, 8), np.float32), np.random.default_rng(0), TypeError, "torch.Tensor"),
        (torch.zeros(3, 8, 8, dtype=torch.uint8), np.random.default_rng(0), TypeError, "floating-point"),
        (torch.zeros(8, 8, 3), np.random.default_rng(0), ValueError, r"\[3, H, W\]"),
        (torch.full((3, 8, 8), 255.0), np.random.default_rng(0), ValueError, r"in \[0, 1\]"),
        (torch.full((3, 8, 8), float("nan")), np.random.default_rng(0), ValueError, r"in \[0, 1\]"),
        (torch.zeros(3, 8, 8), 0, TypeError, "numpy.random.Generator"),
    ],
)
def test_augmentations_reject_bad_images_and_generators(image, rng, error, message):
    with pytest.raises(error, match=message):
        self_blended_image(image, rng)
    with pytest.raises(error, match=message):
        WeakAugment(8)(image, rng)


# ---------------------------------------------------------------------------------------------
# WeakAugment
# ---------------------------------------------------------------------------------------------


def test_weak_augment_output_shape_range_and_determinism():
    augment = WeakAugment(32, blur_p=0.5)
    image = face_like_image(6, height=48, width=56)
    outputs = [augment(image, np.random.default_rng(seed)) for seed in range(6)]
    for out in outputs:
        assert out.shape == (3, 32, 32) and out.dtype == torch.float32
        assert 0 <= out.min() and out.max() <= 1
    assert torch.equal(outputs[0], augment(image, np.random.default_rng(0)))
    assert not torch.equal(outputs[0], outputs[1])


def test_weak_augment_with_everything_off_is_the_identity():
    image = face_like_image(7)
    augment = WeakAugment(SIDE, crop_scale=(1.0, 1.0), flip_p=0.0, jitter=0.0, blur_p=0.0)
    torch.testing.assert_close(augment(image, np.random.default_rng(0)), image)


def test_weak_augment_flip_only_mirrors_the_image():
    image = face_like_image(8)
    augment = WeakAugment(SIDE, crop_scale=(1.0, 1.0), flip_p=1.0, jitter=0.0, blur_p=0.0)
    torch.testing.assert_close(augment(image, np.random.default_rng(0)), image.flip(-1))


def test_weak_augment_crop_is_a_window_of_the_image():
    # Channel 0 encodes the column and channel 1 the row, so the output tells where it came from.
    xs, ys = pixel_grid()
    image = torch.stack([xs / (SIDE - 1), ys / (SIDE - 1), torch.zeros_like(xs)]).float()
    augment = WeakAugment(SIDE // 2, crop_scale=(0.25, 0.25), flip_p=0.0, jitter=0.0, blur_p=0.0)
    windows = set()
    for seed in SEEDS:
        out = augment(image, np.random.default_rng(seed))
        left, top = round(out[0, 0, 0].item() * (SIDE - 1)), round(out[1, 0, 0].item() * (SIDE - 1))
        assert torch.equal(out, image[:, top : top + SIDE // 2, left : left + SIDE // 2])
        windows.add((top, left))
    assert len(windows) > 1


def test_weak_augment_brightness_jitter_on_a_grey_image():
    # On a uniform grey image contrast and saturation changes are identities, so only the
    # brightness factor in [1 - jitter, 1 + jitter] remains.
    image = torch.full((3, 16, 16), 0.5)
    augment = WeakAugment(16, crop_scale=(1.0, 1.0), flip_p=0.0, jitter=0.2, blur_p=0.0)
    levels = []
    for seed in SEEDS:
        out = augment(image, np.random.default_rng(seed))
        torch.testing.assert_close(out, torch.full_like(out, out[0, 0, 0].item()))
        levels.append(out[0, 0, 0].item())
    assert 0.5 * 0.8 - 1e-6 <= min(levels) < max(levels) <= 0.5 * 1.2 + 1e-6


def test_weak_augment_blur_smooths_a_checkerboard():
    xs, ys = pixel_grid()
    image = ((xs + ys) % 2).float().expand(3, SIDE, SIDE).contiguous()
    augment = WeakAugment(SIDE, crop_scale=(1.0, 1.0), flip_p=0.0, jitter=0.0, blur_p=1.0)
    variances = [augment(image, np.random.default_rng(seed)).var().item() for seed in SEEDS]
    # sigma is drawn in [0.1, 2] * 64 / 256 pixels, so some blurs are all but invisible.
    assert max(variances) <= image.var().item() * (1 + 1e-5)
    assert min(variances) < 0.5 * image.var().item()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"size": 0}, "size"),
        ({"size": 8.5}, "size"),
        ({"size": 8, "crop_scale": (0.0, 1.0)}, "crop_scale"),
        ({"size": 8, "crop_scale": (0.9, 0.8)}, "crop_scale"),
        ({"size": 8, "flip_p": 1.5}, "flip_p"),
        ({"size": 8, "blur_p": -0.1}, "blur_p"),
        ({"size": 8, "jitter": 1.0}, "jitter"),
    ],
)
def test_weak_augment_rejects_bad_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        WeakAugment(**kwargs)


# ---------------------------------------------------------------- flips alone


def test_horizontal_flip_mirrors_columns_and_keeps_every_value():
    from mlrank.data.augment import HorizontalFlip

    image = face_like_image(3)
    flipped = HorizontalFlip(p=1.0)(image, np.random.default_rng(0))
    assert torch.equal(flipped[:, :, 0], image[:, :, -1])
    assert torch.equal(flipped.flip(-1), image)  # no resampling: the pixel grid survives
    assert torch.equal(HorizontalFlip(p=0.0)(image, np.random.default_rng(0)), image)


def test_horizontal_flip_follows_the_generator_and_flips_about_half():
    from mlrank.data.augment import HorizontalFlip

    image = face_like_image(4)
    flip = HorizontalFlip()
    flipped = [not torch.equal(flip(image, np.random.default_rng(seed)), image) for seed in range(200)]
    again = [not torch.equal(flip(image, np.random.default_rng(seed)), image) for seed in range(200)]
    assert flipped == again
    assert 70 < sum(flipped) < 130  # Binomial(200, 1/2): 5.6 standard deviations either side


def test_horizontal_flip_rejects_bad_input():
    from mlrank.data.augment import HorizontalFlip

    with pytest.raises(ValueError, match="probability"):
        HorizontalFlip(p=1.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        HorizontalFlip()(face_like_image() * 2, np.random.default_rng(0))
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        HorizontalFlip()(face_like_image(), 0)
