"""A third method, as small as one can be: a linear real-vs-fake classifier of the mean colour.

It is docs/architecture.md's example of adding a method, kept whole and tested by
tests/test_layout.py: register it with ``METHODS["toy"] = "toy_method"`` and ``python -m mlrank.train
method=toy`` trains it, ``evaluate`` and ``predict`` use it, and no other file changes.
"""

from typing import Any

import torch
from torch.utils.data import DataLoader

from mlrank.engine.builders import build_dataset
from mlrank.engine.epoch import run_epoch
from mlrank.engine.methods import Method
from mlrank.task.metrics import binary_metrics


class MeanColourClassifier(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(3, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.linear(images.mean(dim=(2, 3)))[:, 0]  # the fake logit

    def parameter_groups(self, lr: float, backbone_lr_scale: float, weight_decay: float) -> list[dict[str, Any]]:
        return [{"params": list(self.parameters()), "lr": lr, "weight_decay": weight_decay}]


def is_fake(labels: torch.Tensor) -> torch.Tensor:
    """1.0 for a fake: a sequence with an edit, or a binary label 1."""
    return labels.reshape(len(labels), -1).ne(0).any(dim=1).float()


def train_one_epoch(cfg, model, loader, optimizer, scheduler, ctx, epoch, steps) -> dict[str, float]:
    def losses_of(batch):
        images, labels = batch[0].to(ctx.device), batch[1].to(ctx.device)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(images), is_fake(labels))
        return {"total": loss}, len(images)

    return run_epoch(cfg, model, loader, optimizer, scheduler, ctx, epoch, steps, losses_of)


@torch.no_grad()
def evaluate(cfg, model, dataset, ctx, desc) -> dict[str, Any]:
    scores, truth = [], []
    for images, labels, *_ in DataLoader(dataset, batch_size=cfg.data.batch_size):
        scores.append(model(images.to(ctx.device)).sigmoid().cpu())
        truth.append(is_fake(labels))
    return binary_metrics(torch.cat(scores), torch.cat(truth).long())


METHOD = Method(
    name="toy",
    build_model=lambda cfg: MeanColourClassifier(),
    train_dataset=lambda cfg: build_dataset(cfg, "train"),
    train_batch_size=lambda cfg: cfg.data.batch_size,
    train_one_epoch=train_one_epoch,
    evaluation_dataset=build_dataset,
    evaluate=evaluate,
    selection_metric=lambda metrics: metrics["auc"],
    predict_image=lambda cfg, model, batch, threshold: ({"fake_probability": float(model(batch).sigmoid())}, None),
    gives_binary_metrics=lambda cfg: True,
)
