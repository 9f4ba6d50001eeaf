"""Does the multi-label ranking model learn *which* components were edited as fast as a plain classifier?

    python -m studies.localisation_baseline [key=value ...]   (overrides of the synthetic default)

Trains two networks on the same in-memory synthetic training split, with the same batches, optimiser
(AdamW, the config's lr and weight decay) and cosine schedule:
  model: what `python -m mlrank.train` trains (backbone, FPN, tokens, encoder, both branches) with
         L_Total;
  plain: timm's classifier of the same backbone (global average pooling, one linear layer) with BCE.
After each epoch it prints, for both, the validation accuracy of every component's presence (P_i > 0.5)
and Fixed-Acc, and the ratio model / plain of the mean accuracy of the four small components.

The plain classifier is the reference for how well the data let a network of this backbone tell which
small component (nose, eye, eyebrow, lip) was edited. It exposed what held the model back: with the
paper's row-normalised encoder input the model never learnt the small components in this budget
(`model.normalize_patch_tokens=true` reproduces that). Not a test: the default run (16 epochs) took
35 minutes on one thread while another run shared the 2 CPU cores.
"""

from __future__ import annotations

import sys
import time

import timm
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from mlrank.engine.builders import build_dataset, build_optimizer, is_binary
from mlrank.engine.config import load_config
from mlrank.engine.distributed import init_distributed
from mlrank.engine.epoch import run_epoch
from mlrank.ranking import method as ranking_method
from mlrank.ranking.metrics import sequence_metrics
from mlrank.task.sequences import sequence_targets

SMALL_COMPONENTS = slice(0, 4)  # nose, eye, eyebrow, lip (hair, id 5, is large)


class PlainClassifier(torch.nn.Module):
    """timm's classifier of a backbone, with the model's output dict and one AdamW group."""

    def __init__(self, backbone: str, num_classes: int) -> None:
        super().__init__()
        self.net = timm.create_model(backbone, num_classes=num_classes)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.net(images)}

    def parameter_groups(self, lr: float, backbone_lr_scale: float, weight_decay: float) -> list[dict]:
        return [{"params": list(self.parameters()), "lr": lr, "weight_decay": weight_decay}]


def plain_losses(network: PlainClassifier, batch: tuple) -> tuple[dict[str, torch.Tensor], int]:
    """BCE summed over the components and averaged over the batch, as one branch of L_BCE."""
    images, sequences = batch
    logits = network(images)["logits"]
    targets, _ = sequence_targets(sequences, L=logits.shape[1])
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none").sum(1).mean()
    return {"total": bce}, images.shape[0]


@torch.no_grad()
def validation_numbers(network: torch.nn.Module, loader: DataLoader) -> tuple[torch.Tensor, float]:
    """(per-component accuracy of P_i > 0.5, Fixed-Acc) over the whole split."""
    network.eval()
    probs, labels = [], []
    for images, sequences in loader:
        probs.append(network(images)["logits"].sigmoid())
        labels.append(sequences)
    network.train()
    probs, labels = torch.cat(probs), torch.cat(labels)
    targets, _ = sequence_targets(labels, L=probs.shape[1])
    return ((probs > 0.5) == (targets > 0)).float().mean(0), sequence_metrics(probs, labels)["fixed_acc"]


def main(overrides: list[str]) -> None:
    cfg = load_config("synthetic", overrides)
    if cfg.data.kind != "synthetic" or is_binary(cfg):
        raise SystemExit("this benchmark compares localisation on the synthetic Seq-DeepFake set")
    torch.manual_seed(cfg.seed)
    ctx = init_distributed(use_cuda=False)
    train, val = build_dataset(cfg, "train"), build_dataset(cfg, "val")
    val_loader = DataLoader(val, batch_size=100)
    steps = len(train) // cfg.data.batch_size
    networks = {"model": ranking_method.build_model(cfg), "plain": PlainClassifier(cfg.model.backbone, cfg.model.num_classes)}
    small = {}
    for name, network in networks.items():
        optimizer, scheduler = build_optimizer(cfg, network, steps)
        # The same shuffles for both networks.
        loader = DataLoader(train, batch_size=cfg.data.batch_size, shuffle=True, drop_last=True,
                            generator=torch.Generator().manual_seed(cfg.seed))
        start = time.perf_counter()
        for epoch in range(cfg.optim.epochs):
            # The loop of `python -m mlrank.train`: the model with its own losses, the plain one with BCE.
            if name == "model":
                ranking_method.train_one_epoch(cfg, network, loader, optimizer, scheduler, ctx, epoch, steps)
            else:
                run_epoch(cfg, network, loader, optimizer, scheduler, ctx, epoch, steps,
                          lambda batch: plain_losses(network, batch))
            accuracy, fixed = validation_numbers(network, val_loader)
            print(f"{name} epoch {epoch}: {time.perf_counter() - start:.0f} s, per-component accuracy "
                  f"{[round(a, 3) for a in accuracy.tolist()]}, Fixed-Acc {fixed:.3f}", flush=True)
        small[name] = float(accuracy[SMALL_COMPONENTS].mean())
    print(f"small components' mean accuracy after {cfg.optim.epochs} epochs: model {small['model']:.3f}, plain "
          f"{small['plain']:.3f}, model / plain {small['model'] / small['plain']:.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])
