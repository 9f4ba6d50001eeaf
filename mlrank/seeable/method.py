"""SeeABLE as the entry points drive it (``method: seeable``): its :class:`~mlrank.engine.methods.Method`.

``python -m mlrank.train`` builds the model and data through ``METHOD`` and runs ``train_one_epoch``
(L_BCR + lambda L_GUI); ``evaluate`` and ``crosseval`` call ``evaluate``; ``predict`` scores one image
with ``score_images``; ``load_config`` checks the discrepancy classes with ``check_config``. Decisions:

- Training reads the **real** faces of the training split only (SeeABLE is one-class), with the
  data set's face masks where its items carry them (the synthetic set's ``sample``). The weak
  augmentation is reduced to a horizontal flip of face and mask before the discrepancy: a crop
  would move the face off its mask, and colour jitter or blur would imitate the discrepancies.
- The prototypes are seeded by ``cfg.seed`` and stored in the checkpoint; the discrepancy
  classes and their blending come from ``cfg.seeable`` (grid, types, feather, blend_range), the
  model from ``cfg.model`` (backbone, pretrained_file) and ``cfg.seeable.embed_dim``.
- Evaluation scores every face of the split with all K discrepancies (seeded by ``cfg.seed``)
  and reports the real-vs-fake AUC, EER and AP of the anomaly score (no accuracy: the score
  has no natural threshold), the mean score of real and fake faces, and the pretext accuracy:
  how often the nearest prototype of sd_k(x) is p_k, over the split's real faces.
- The best checkpoint maximises that pretext accuracy on the validation split, never the AUC:
  choosing it with fakes would break the one-class protocol.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from mlrank.engine.builders import build_dataset, labels_of
from mlrank.engine.config import Config
from mlrank.engine.distributed import DistContext, all_gather_tensors, autocast, make_sampler, unwrap_model
from mlrank.engine.epoch import run_epoch
from mlrank.engine.methods import Method
from mlrank.task.metrics import binary_metrics

from .losses import seeable_loss
from .masks import as_face_mask
from .model import SeeableModel
from .score import discrepancy_similarities, score_from_similarities
from .spec import DiscrepancySpec
from .transform import SeeableDataset, image_and_face_mask


def discrepancy_spec(cfg: Config) -> DiscrepancySpec:
    """The discrepancy classes and their blending, from ``cfg.seeable``."""
    seeable = cfg.seeable
    return DiscrepancySpec(
        grid=tuple(seeable.grid), types=tuple(seeable.types), feather=seeable.feather,
        blend_range=tuple(seeable.blend_range),
    )


def is_fake_per_item(dataset: Dataset) -> torch.Tensor:
    """bool (M,): which items are fakes, from the labels (sequences or 0/1) without images."""
    labels = labels_of(dataset)
    return labels.reshape(len(labels), -1).ne(0).any(dim=1)


def read_face(dataset: Dataset, index: int) -> tuple[Any, Any]:
    """(image, face mask or None) of item ``index``, through ``sample`` where the set has it."""
    if callable(getattr(dataset, "sample", None)):
        return image_and_face_mask(dataset.sample(index))
    return image_and_face_mask(dataset[index])


def train_dataset(cfg: Config) -> Dataset:
    base = build_dataset(cfg, "train", preload=False)
    real = torch.nonzero(~is_fake_per_item(base)).flatten().tolist()
    spec = discrepancy_spec(cfg)
    return SeeableDataset(
        base, spec, seed=cfg.seed, read=read_face, indices=real, hflip=cfg.data.weak_augment
    )


def train_batch_size(cfg: Config) -> int:
    return cfg.data.batch_size


def build_model(cfg: Config) -> SeeableModel:
    return SeeableModel(
        backbone=cfg.model.backbone,
        embed_dim=cfg.seeable.embed_dim,
        pretrained_file=cfg.model.pretrained_file,
        num_classes=discrepancy_spec(cfg).K,
        prototype_seed=cfg.seed,
    )


def train_one_epoch(
    cfg: Config,
    model: torch.nn.Module,
    loader: Iterable,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    ctx: DistContext,
    epoch: int,
    steps: int,
) -> dict[str, float]:
    """One epoch of L_BCR + lambda L_GUI; the mean of every term and this rank's images/s."""
    spec = discrepancy_spec(cfg)
    prototypes = unwrap_model(model).prototypes

    def losses_of(batch: Any) -> tuple[dict[str, torch.Tensor], int]:
        images, labels = (tensor.to(ctx.device, non_blocking=True) for tensor in batch)
        with autocast(cfg.train.amp, ctx.device):
            z = model(images)
        losses = seeable_loss(
            z.float(), labels, prototypes, spec, cfg.seeable.temperature, cfg.seeable.lambda_gui
        )
        return losses, images.shape[0]

    return run_epoch(cfg, model, loader, optimizer, scheduler, ctx, epoch, steps, losses_of)


class FacesToScore(Dataset):
    """Items (image, face mask, is_fake) of an evaluation split; the mask is the data set's own
    where its items carry one, else the centred face ellipse."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self.is_fake = is_fake_per_item(dataset)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, bool]:
        image, face_mask = read_face(self.dataset, index)
        return image, as_face_mask(face_mask, *image.shape[-2:]), bool(self.is_fake[index])

    def video_ids(self) -> list[str] | None:
        return list(self.dataset.video_ids()) if hasattr(self.dataset, "video_ids") else None


def evaluation_dataset(cfg: Config, split: str) -> FacesToScore:
    return FacesToScore(build_dataset(cfg, split, preload=False))


@torch.no_grad()
def evaluate(
    cfg: Config, model: torch.nn.Module, dataset: FacesToScore, ctx: DistContext, desc: str
) -> dict[str, Any]:
    """Anomaly-score metrics and the pretext accuracy of ``model`` on ``dataset`` (every rank)."""
    spec = discrepancy_spec(cfg)
    loader = DataLoader(
        dataset,
        batch_size=cfg.data.batch_size,
        sampler=make_sampler(dataset, ctx, shuffle=False, seed=cfg.seed),
        num_workers=cfg.data.num_workers,
    )
    scores, recognised, is_fake = [], [], []
    for images, face_masks, fake in tqdm(loader, desc=desc, disable=not ctx.is_main, leave=False):
        with autocast(cfg.train.amp, ctx.device):
            similarities = discrepancy_similarities(model, images, spec, cfg.seed, face_masks)
        scores.append(score_from_similarities(similarities))
        recognised.append((similarities.argmax(dim=2) == torch.arange(spec.K)).float().mean(dim=1))
        is_fake.append(fake)
    scores, recognised, is_fake = (
        all_gather_tensors(torch.cat(values), ctx, len(dataset))
        for values in (scores, recognised, is_fake)
    )
    real = ~is_fake
    metrics: dict[str, Any] = {
        "pretext_accuracy": float(recognised[real].mean()) if real.any() else None,
        "mean_score_real": float(scores[real].mean()) if real.any() else None,
        "mean_score_fake": float(scores[is_fake].mean()) if is_fake.any() else None,
    }
    if real.any() and is_fake.any():
        binary = binary_metrics(scores, is_fake.long(), dataset.video_ids())
        metrics |= {key: value for key, value in binary.items() if key != "acc"}
    return metrics


def selection_metric(metrics: dict[str, Any]) -> float:
    """The validation number the best checkpoint maximises: the pretext accuracy on real faces."""
    value = metrics.get("pretext_accuracy")
    return float("-inf") if value is None else float(value)


def score_images(cfg: Config, model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Anomaly scores (B,) of images (B, 3, H, W) in [0, 1] without face masks (centred face)."""
    spec = discrepancy_spec(cfg)
    return score_from_similarities(discrepancy_similarities(model, images, spec, cfg.seed))


def predict_image(
    cfg: Config, model: torch.nn.Module, batch: torch.Tensor, threshold: float | None
) -> tuple[dict[str, Any], None]:
    """The anomaly score of one image, a batch (1, 3, H, W) on the model's device; no heat map, and
    no threshold (the score has no natural one)."""
    return {"anomaly_score": float(score_images(cfg, model, batch)[0])}, None


def check_config(cfg: Config) -> None:
    """The discrepancy classes of ``seeable.grid`` x ``seeable.types``, checked by their own spec."""
    try:
        discrepancy_spec(cfg)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"config keys 'seeable.grid' / 'seeable.types' / 'seeable.feather' / 'seeable.blend_range': {error}"
        ) from None


METHOD = Method(
    name="seeable",
    build_model=build_model,
    train_dataset=train_dataset,
    train_batch_size=train_batch_size,
    train_one_epoch=train_one_epoch,
    evaluation_dataset=evaluation_dataset,
    evaluate=evaluate,
    selection_metric=selection_metric,
    predict_image=predict_image,
    gives_binary_metrics=lambda cfg: True,  # the anomaly score's AUC, EER, AP (and video AUC)
    check_config=check_config,
)
