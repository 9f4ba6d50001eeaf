"""SeeABLE's method module for the training loop, on a tiny hand-built data set."""

import math

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from mlrank.engine.config import Config, load_config
from mlrank.engine.distributed import DistContext
from mlrank.seeable import SEEABLE_TYPES, DiscrepancySpec, SeeableDataset, apply_discrepancy
from mlrank.seeable import method as seeable_method
from mlrank.seeable.discrepancies import DISCREPANCY_FUNCTIONS

CPU = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))


class TinyFaces(Dataset):
    """Seq-DeepFake-like items (image, sequence): even items real, odd items fake (a sequence
    naming component 1 and a bright square pasted in)."""

    def __init__(self, count=8, size=32):
        generator = torch.Generator().manual_seed(0)
        self.images = torch.rand(count, 3, size, size, generator=generator) * 0.5 + 0.25
        self.images[1::2, :, 8:16, 8:16] = 1.0
        self.labels = torch.zeros(count, 5, dtype=torch.int64)
        self.labels[1::2, 0] = 1

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        return self.images[index], self.labels[index]

    def sequences(self):
        return self.labels.clone()


def tiny_config():
    cfg = Config(method="seeable")
    cfg.model.backbone = "test_resnet"
    cfg.seeable.grid = (2, 2)
    cfg.seeable.types = ["colour", "blur"]
    cfg.seeable.embed_dim = 16
    cfg.data.batch_size = 4
    cfg.data.num_workers = 0
    cfg.train.amp = "fp32"
    return cfg


def test_model_and_spec_follow_the_config():
    cfg = tiny_config()
    assert seeable_method.discrepancy_spec(cfg) == DiscrepancySpec(grid=(2, 2), types=("colour", "blur"))
    model = seeable_method.build_model(cfg)
    assert model.prototypes.shape == (8, 16)
    groups = {group["name"]: group for group in model.parameter_groups(1e-3, 0.1, 0.05)}
    assert set(groups) == {"backbone", "backbone_no_decay", "head", "head_no_decay"}
    assert groups["backbone"]["lr"] == pytest.approx(1e-4) and groups["head"]["lr"] == 1e-3
    assert groups["head_no_decay"]["weight_decay"] == 0.0 and groups["head"]["weight_decay"] == 0.05
    grouped = sum(len(group["params"]) for group in groups.values())
    assert grouped == len(list(model.parameters()))


def test_one_epoch_trains_on_real_faces_and_lowers_the_loss():
    cfg = tiny_config()
    torch.manual_seed(0)
    model = seeable_method.build_model(cfg)
    faces = TinyFaces()
    real = torch.nonzero(~seeable_method.is_fake_per_item(faces)).flatten().tolist()
    assert real == [0, 2, 4, 6]
    spec = seeable_method.discrepancy_spec(cfg)
    train_set = SeeableDataset(faces, spec, seed=0, read=seeable_method.read_face, indices=real)
    loader = DataLoader(train_set, batch_size=4, shuffle=False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    first = seeable_method.train_one_epoch(cfg, model, loader, optimizer, scheduler, CPU, epoch=0, steps=1)
    assert {"loss_supcon", "loss_prototype_ce", "loss_bcr", "loss_guidance", "loss_total"} <= set(first)
    assert all(math.isfinite(value) for value in first.values())
    for _ in range(15):  # the same four discrepant faces: the model must fit them
        last = seeable_method.train_one_epoch(cfg, model, loader, optimizer, scheduler, CPU, epoch=0, steps=1)
    assert last["loss_total"] < first["loss_total"]


def test_evaluation_scores_every_face_and_reports_one_class_metrics():
    cfg = tiny_config()
    torch.manual_seed(0)
    model = seeable_method.build_model(cfg)
    split = seeable_method.FacesToScore(TinyFaces())
    image, face_mask, is_fake = split[1]
    assert is_fake and face_mask.dtype == torch.bool and face_mask.shape == image.shape[1:]
    metrics = seeable_method.evaluate(cfg, model, split, CPU, "val")
    assert {"pretext_accuracy", "mean_score_real", "mean_score_fake", "auc", "eer", "ap"} <= set(metrics)
    assert "acc" not in metrics
    assert 0 <= metrics["pretext_accuracy"] <= 1 and 0 <= metrics["auc"] <= 1
    # The selection never looks at fakes: it is the pretext accuracy on real faces.
    assert seeable_method.selection_metric(metrics) == metrics["pretext_accuracy"]
    scores = seeable_method.score_images(cfg, model, split.dataset.images[:2])
    again = seeable_method.score_images(cfg, model, split.dataset.images[:2])
    assert scores.shape == (2,) and torch.equal(scores, again)


def test_flipped_training_faces_keep_their_label_with_their_mask():
    # The face is the left half. A flip moves it, and its mask, to the right half: the
    # discrepancy must follow the mask there, leaving the other half as it was (mirrored).
    image = torch.rand(3, 16, 16)
    mirrored = image.flip(-1)
    face = np.zeros((16, 16), dtype=bool)
    face[:, :8] = True
    spec = DiscrepancySpec(grid=(2, 2))
    dataset = SeeableDataset([{"image": image, "face_mask": face}] * 40, spec, hflip=True)
    outcomes = set()
    for discrepant, _ in dataset:
        if torch.equal(discrepant[:, :, 8:], image[:, :, 8:]):
            outcomes.add("kept")
            assert not torch.equal(discrepant[:, :, :8], image[:, :, :8])
        else:
            outcomes.add("flipped")
            assert torch.equal(discrepant[:, :, :8], mirrored[:, :, :8])
            assert not torch.equal(discrepant[:, :, 8:], mirrored[:, :, 8:])
    assert outcomes == {"kept", "flipped"}


# --- SeeABLE on real data: the shipped config and the blending keys ---------------------------------


def test_seeable_ffpp_config_loads_and_builds():
    cfg = load_config("seeable_ffpp", ["data.image_size=64", "data.root=/data/rgb", "data.json_path=/data/json"])
    assert cfg.method == "seeable" and cfg.data.kind == "deepfakebench" and cfg.data.dataset_name == "FaceForensics++"
    assert [test_set.name for test_set in cfg.data.cross_test_sets] == ["Celeb-DF-v2", "DFDC", "DFDCP"]
    spec = seeable_method.discrepancy_spec(cfg)
    # SeeABLE's settings: a 4 x 4 grid, its two types, temperature 0.07
    assert spec == DiscrepancySpec(grid=(4, 4), types=SEEABLE_TYPES, feather=0.25, blend_range=(0.25, 1.0))
    assert spec.K == 32 and cfg.seeable.temperature == 0.07
    model = seeable_method.build_model(cfg)  # the shipped backbone, randomly initialised
    assert model.prototypes.shape == (32, 128)
    with torch.no_grad():
        z = model.eval()(torch.rand(2, 3, 64, 64))
    assert z.shape == (2, 128) and torch.allclose(z.norm(dim=1), torch.ones(2))
    # mlrank's four types through the same key
    four = load_config("seeable_ffpp", ["seeable.types=[colour,blur,resample,frequency]"])
    assert seeable_method.discrepancy_spec(four).K == 64
    with pytest.raises(ValueError, match="seeable.blend_range.*0 < low <= high <= 1"):
        load_config("seeable_ffpp", ["seeable.blend_range=[0.8,0.2]"])
    with pytest.raises(ValueError, match=r"seeable.feather.*feather must be in \(0, 1\]"):
        load_config("seeable_ffpp", ["seeable.feather=0"])


def expected_blend(image, k, spec, seed, face_box):
    """sd_k(I) = M T(I) + (1 - M) I computed by hand for a rectangular face: the grid's cells are
    equal rectangles, a pixel's distance to the nearest pixel outside its cell is the smallest of
    its four axis distances, and M = w smoothstep(d / (feather x the cell's shorter side))."""
    top, left, side = face_box
    row, col = spec.location_of(k)
    cell = side // spec.rows
    rows = torch.arange(image.shape[1])[:, None] - (top + row * cell)
    cols = torch.arange(image.shape[2])[None, :] - (left + col * cell)
    inside = (rows >= 0) & (rows < cell) & (cols >= 0) & (cols < cell)
    distance = torch.minimum(torch.minimum(rows + 1, cell - rows), torch.minimum(cols + 1, cell - cols)).double()
    ramp = (distance / (spec.feather * cell)).clamp(0, 1)
    rng = np.random.default_rng(seed)
    weight = rng.uniform(*spec.blend_range)  # the first draw, then the type's own parameters
    mask = torch.where(inside, weight * ramp * ramp * (3 - 2 * ramp), 0.0)
    pixels = image.permute(1, 2, 0).numpy()
    source = torch.from_numpy(DISCREPANCY_FUNCTIONS[spec.type_of(k)](pixels, rng).clip(0, 1)).permute(2, 0, 1)
    return (mask * source.double() + (1 - mask) * image.double()).float()


def test_feather_and_blend_range_keys_reach_the_discrepancies():
    image = torch.rand(3, 48, 48, generator=torch.Generator().manual_seed(3))
    face = torch.zeros(48, 48, dtype=torch.bool)
    face[8:40, 8:40] = True  # a 32 x 32 face: 4 x 4 cells of 8 pixels
    results = {}
    for feather, blend in [(0.25, (0.5, 1.0)), (0.5, (0.3, 0.3)), (0.25, (0.9, 0.9))]:
        cfg = load_config("seeable_ffpp", [f"seeable.feather={feather}", f"seeable.blend_range=[{blend[0]},{blend[1]}]"])
        spec = seeable_method.discrepancy_spec(cfg)
        k = spec.class_of(1, 2, "spatial")
        discrepant, _ = apply_discrepancy(image, k, spec, np.random.default_rng(7), face)
        expected = expected_blend(image, k, spec, 7, (8, 8, 32))
        assert torch.allclose(discrepant, expected, atol=1e-5), (feather, blend)
        results[feather, blend] = discrepant
    first, wider, stronger = results.values()
    assert not torch.allclose(first, wider) and not torch.allclose(wider, stronger)
