"""The multi-label ranking method as the entry points drive it: its :class:`~mlrank.engine.methods.Method`.

``python -m mlrank.train`` builds the model and data through ``METHOD`` and runs ``train_one_epoch``
(L_Total, eq. 15); ``evaluate`` and ``crosseval`` call ``evaluate`` (``predict_split``, then
:func:`mlrank.ranking.metrics.split_metrics`); ``predict`` and ``explain`` read one image's
``prediction_record``. Decisions:
- Training reads the training split with the weak augmentation seeded by (seed, epoch, index), and
  with ``data.strong_augment`` balanced triplets (a real, its self-blended pseudo-fake, a fake); a
  batch then holds ``batch_size // 3`` triplets so its image count stays near batch_size. In binary
  detection (L = 1) a pseudo-fake is a fake for every term: both BCE branches, and so the fused
  score that is reported, and L_CLS, as Self-Blended Images trains. For sequences its components
  are unknown: it is a fake for L_CLS only and is left out of L_BCE, L_Rank, L_Order and L_Count.
- The checkpoint kept as "best" maximises Fixed-Acc on the validation split (AUC in binary mode);
  sequence models also keep Seq-DeepFake's ``best_fixed.pt`` and ``best_adaptive.pt``
  (:func:`protocol_checkpoints`), whose test Fixed-Acc and Adaptive-Acc are the ones reported.
- A prediction decodes the fused logits (P_i > 0.5 is f_i > 0; the logits order components whose P_i
  both round to 1.0) by the model's rule (:func:`decode_outputs`: a count head's count, or the
  training sequences with ``model.seen_sequences_only``); its fake probability is P(x) for
  Seq-DeepFake models, the fused P_1 in binary mode, with P(x) beside it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from mlrank.data import BalancedTriplets, HorizontalFlip, WeakAugment, self_blended_image, split_real_fake
from mlrank.data.vocab import names_of
from mlrank.engine.builders import EpochAugmented, build_dataset, is_binary, labels_of
from mlrank.engine.config import Config
from mlrank.engine.distributed import DistContext, all_gather_tensors, autocast, make_sampler
from mlrank.engine.epoch import run_epoch
from mlrank.engine.methods import Method
from mlrank.ops import contrastive_mil
from mlrank.ranking.decoding import (branch_logits, count_shifted_logits, decision_logits, decode,
                                    decode_seen_sequences)
from mlrank.ranking.losses import total_loss
from mlrank.ranking.metrics import split_metrics
from mlrank.ranking.model import MultiLabelRankingModel

PSEUDO_FAKE = 1  # kinds of BalancedTriplets: 0 real, 1 pseudo-fake, 2 fake


def build_model(cfg: Config) -> MultiLabelRankingModel:
    model = cfg.model
    num_classes = 1 if is_binary(cfg) else model.num_classes
    return MultiLabelRankingModel(
        backbone=model.backbone,
        num_classes=num_classes,
        token_dim=model.token_dim,
        out_stride=model.out_stride,
        num_heads=model.num_heads,
        pretrained_file=model.pretrained_file,
        img_size=cfg.data.image_size,
        dropout=model.dropout,
        normalize_patch_tokens=model.normalize_patch_tokens,
        standardize_input=model.standardize_input,
        order_head=model.order_head and num_classes > 1,
        highpass_input=model.highpass_input,
        count_head=model.count_head and num_classes > 1,
        max_stride=model.max_stride,
    )


def train_dataset(cfg: Config) -> Dataset:
    """The training split with the weak augmentation (or flips alone, ``data.hflip``), as triplets
    when strong augmentation is on."""
    dataset = build_dataset(cfg, "train")
    if cfg.data.weak_augment:
        weak = WeakAugment(cfg.data.image_size)
    else:
        weak = HorizontalFlip() if cfg.data.hflip else None
    if cfg.data.strong_augment:
        real, fake = split_real_fake(labels_of(dataset))
        return BalancedTriplets(dataset, real, fake, self_blended_image, weak, seed=cfg.seed)
    if weak is None:
        return dataset
    return EpochAugmented(dataset, weak, seed=cfg.seed)


def train_batch_size(cfg: Config) -> int:
    """Items per training batch: triplets count three images each."""
    if cfg.data.strong_augment:
        return max(1, cfg.data.batch_size // 3)
    return cfg.data.batch_size


def evaluation_dataset(cfg: Config, split: str) -> Dataset:
    return build_dataset(cfg, split)


def evaluate(cfg: Config, model: torch.nn.Module, dataset: Dataset, ctx: DistContext, desc: str) -> dict[str, Any]:
    """All metrics of ``model`` on ``dataset`` (computed on every rank from the gathered outputs)."""
    predictions = predict_split(cfg, model, dataset, ctx, desc)
    video_ids = list(dataset.video_ids()) if hasattr(dataset, "video_ids") else None
    return split_metrics(predictions, video_ids, cfg.model.last_edit_highest)


def base_dataset(dataset: Dataset) -> Dataset:
    """The data set under the training view's wrappers (augmentation, triplets)."""
    while not hasattr(dataset, "sequences") and not hasattr(dataset, "labels") and hasattr(dataset, "dataset"):
        dataset = dataset.dataset
    return dataset


def prepare_model(cfg: Config, model: torch.nn.Module, train_set: Dataset) -> None:
    """A sequence model keeps the training annotations' distinct sequences, for decoding among them."""
    if not is_binary(cfg):
        model.remember_training_sequences(labels_of(base_dataset(train_set)))


def unpack_batch(batch: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(images, labels, component_mask) from a plain batch or a batch of triplets.

    The mask (0 for a pseudo-fake) is given only for sequence labels, whose pseudo-fakes have no
    known components; binary labels already mark a pseudo-fake as a fake (1), which every term reads.
    """
    images, labels, *rest = batch
    mask = None
    if images.dim() == 5:  # triplets: (B, 3, C, H, W)
        kinds = rest[0]
        images, labels, kinds = images.flatten(0, 1), labels.flatten(0, 1), kinds.flatten(0, 1)
        if labels.dim() == 2:  # sequences (3B, 5); binary labels are (3B,)
            mask = (kinds != PSEUDO_FAKE).float().to(device)
    return images.to(device, non_blocking=True), labels.to(device, non_blocking=True), mask


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
    """One epoch of L_Total (eq. 15); the mean of every loss term and this rank's images/s."""

    def losses_of(batch: Any) -> tuple[dict[str, torch.Tensor], int]:
        images, labels, mask = unpack_batch(batch, ctx.device)
        return batch_losses(cfg, model, images, labels, mask), images.shape[0]

    return run_epoch(cfg, model, loader, optimizer, scheduler, ctx, epoch, steps, losses_of)


def batch_losses(
    cfg: Config,
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """L_Total (eq. 15) and its terms for one batch on the images' device, with the config's
    weights: what training minimises (also timed by benchmarks/test_synthetic_step.py)."""
    with autocast(cfg.train.amp, images.device):
        outputs = model(images)
    outputs = {key: value.float() if torch.is_tensor(value) else value for key, value in outputs.items()}
    return total_loss(
        outputs,
        labels,
        lambda1=cfg.loss.lambda1,
        lambda2=cfg.loss.lambda2,
        tau=cfg.loss.tau,
        alpha=cfg.loss.alpha,
        num_k=cfg.loss.num_k,
        reg=cfg.loss.reg,
        component_mask=mask,
        lambda_cls=cfg.loss.lambda_cls,
        lambda_bce_patch=cfg.loss.lambda_bce_patch,
        lambda_bce_class=cfg.loss.lambda_bce_class,
        lambda_order=cfg.loss.lambda_order,
        lambda_count=cfg.loss.lambda_count,
        last_edit_highest=cfg.model.last_edit_highest,
    )


def evaluation_loader(cfg: Config, dataset: Dataset, ctx: DistContext) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=cfg.data.batch_size,
        sampler=make_sampler(dataset, ctx, shuffle=False, seed=cfg.seed),
        num_workers=cfg.data.num_workers,
        pin_memory=ctx.device.type == "cuda",
    )


@torch.no_grad()
def predict_split(
    cfg: Config, model: torch.nn.Module, dataset: Dataset, ctx: DistContext, desc: str = "eval"
) -> dict[str, torch.Tensor]:
    """Per image, in data-set order, on all ranks: the decision logits (M, L) (the decoding branch's,
    shifted to a count head's count where the model has one: mlrank.ranking.decoding.decision_logits),
    for sequence models the decoded "sequences" (M, 5) (:func:`decode_outputs`), MIL probabilities
    (M,) and labels; with an order head also its "order_scores" (M, L)."""
    model.eval()
    check_decodable(cfg, model)
    binary = is_binary(cfg)
    logits, sequences, mil_probs, labels, order_scores = [], [], [], [], []
    for batch in tqdm(evaluation_loader(cfg, dataset, ctx), desc=desc, disable=not ctx.is_main, leave=False):
        images, label, _ = unpack_batch(batch, ctx.device)
        with autocast(cfg.train.amp, ctx.device):
            outputs = model(images)
        logits.append(decision_logits(outputs, cfg.model.decode_from))
        if not binary:
            sequences.append(decode_outputs(cfg, outputs, getattr(model, "training_sequences", None))[0])
        if "order_scores" in outputs:
            order_scores.append(outputs["order_scores"].float())
        mil_probs.append(contrastive_mil(outputs["tokens"].float(), cfg.loss.tau, cfg.loss.num_k)[0])
        labels.append(label)
    gathered = {
        "logits": torch.cat(logits),
        "mil_probs": torch.cat(mil_probs),
        "labels": torch.cat(labels),
    }
    if sequences:
        gathered["sequences"] = torch.cat(sequences)
    if order_scores:
        gathered["order_scores"] = torch.cat(order_scores)
    return {key: all_gather_tensors(value, ctx, len(dataset)).cpu() for key, value in gathered.items()}


# How a sequence model's prediction was decided (predictions.json's "decision").
THRESHOLD, COUNT_HEAD, SEEN_SEQUENCES = "threshold", "count_head", "seen_sequences"


def check_decodable(cfg: Config, model: torch.nn.Module) -> None:
    """Decoding among the training sequences needs them stored with the model."""
    if cfg.model.seen_sequences_only and not len(getattr(model, "training_sequences", ())):
        raise ValueError(
            "model.seen_sequences_only decodes among the training annotations' sequences, but this model "
            "holds none (a checkpoint saved before mlrank stored them, or never trained on sequences); "
            "set model.seen_sequences_only=false"
        )


def decode_outputs(
    cfg: Config, outputs: dict[str, Any], training_sequences: torch.Tensor | None = None,
    threshold: float | None = None,
) -> tuple[torch.Tensor, str]:
    """The decoded sequences (B, 5) of a sequence model's outputs, and the rule that decided them.

    ``threshold`` None is the model's own rule: among the training sequences
    (``model.seen_sequences_only``), else the count head's and the logits' joint count, else each
    component's P_i > 0.5. A threshold given (predict's and explain's ``--threshold``) decides by
    P_i > threshold on the decoding branch's own probabilities, whatever heads the model has.
    """
    raw = branch_logits(outputs, cfg.model.decode_from)
    order_scores = outputs["order_scores"].float() if "order_scores" in outputs else None
    count_logits = outputs["count_logits"].float() if "count_logits" in outputs else None
    last_edit_highest = cfg.model.last_edit_highest
    if threshold is None and cfg.model.seen_sequences_only:
        candidates = training_sequences if training_sequences is not None else torch.zeros(0, 5, dtype=torch.long)
        sequences = decode_seen_sequences(raw, candidates, count_logits=count_logits, order_scores=order_scores,
                                          last_edit_highest=last_edit_highest)
        return sequences, SEEN_SEQUENCES
    if threshold is None and count_logits is not None:
        sequences = decode(count_shifted_logits(raw, count_logits), 0.5, from_logits=True,
                           last_edit_highest=last_edit_highest, order_scores=order_scores)
        return sequences, COUNT_HEAD
    sequences = decode(raw, 0.5 if threshold is None else threshold, from_logits=True,
                       last_edit_highest=last_edit_highest, order_scores=order_scores)
    return sequences, THRESHOLD


SEQDEEPFAKE_PROTOCOL = {"best_fixed": "fixed_acc", "best_adaptive": "adaptive_acc"}


def protocol_checkpoints(cfg: Config) -> dict[str, str]:
    """Seq-DeepFake's protocol (its official train.py and test.py, and TSOM's): the best epochs by
    validation Fixed-Acc and Adaptive-Acc are kept apart, and each metric is reported from its own."""
    return {} if is_binary(cfg) else dict(SEQDEEPFAKE_PROTOCOL)


def selection_metric(metrics: dict[str, Any]) -> float:
    """The validation number the best checkpoint maximises."""
    value = metrics.get("fixed_acc", metrics.get("auc"))
    return float("-inf") if value is None else float(value)


def predict_image(
    cfg: Config, model: torch.nn.Module, batch: torch.Tensor, threshold: float | None
) -> tuple[dict[str, Any], torch.Tensor]:
    """The record and similarity map of one image, a batch (1, 3, S, S) on the model's device."""
    check_decodable(cfg, model)
    return prediction_record(cfg, model(batch), threshold, getattr(model, "training_sequences", None))


def prediction_record(
    cfg: Config, outputs: dict[str, Any], threshold: float | None = None,
    training_sequences: torch.Tensor | None = None,
) -> tuple[dict[str, Any], torch.Tensor]:
    """The record and similarity map of the multi-label ranking model's outputs for one image.

    Each component's "probability" is its own, sigmoid of the decoding branch's logit, whatever
    rule decided; "decision" names the rule (:func:`decode_outputs`), "sequence" the decoded
    components in edit order, and a count head adds its distribution over 0..L edits.
    """
    outputs = {key: value[:1] if torch.is_tensor(value) else value for key, value in outputs.items()}
    probs = branch_logits(outputs, cfg.model.decode_from)[0].cpu().sigmoid()
    tokens = outputs["tokens"].float().cpu()
    mil_prob = float(contrastive_mil(tokens, cfg.loss.tau, cfg.loss.num_k)[0][0])
    similarity = patch_similarity_map(tokens[0], outputs["grid"])
    if is_binary(cfg):
        return {"fake_probability": float(probs[0]), "mil_probability": mil_prob}, similarity
    names = names_of(cfg.data.subset)
    sequences, rule = decode_outputs(cfg, outputs, training_sequences, threshold)
    order = [int(i) for i in sequences[0] if i > 0]
    record: dict[str, Any] = {
        "fake_probability": mil_prob,
        "decision": rule,
        **({"threshold": 0.5 if threshold is None else threshold} if rule == THRESHOLD else {}),
        "sequence": [names[i - 1] for i in order],
        "manipulations": [{"id": i, "name": names[i - 1], "probability": float(probs[i - 1])} for i in order],
        "probabilities": {name: float(p) for name, p in zip(names, probs)},
    }
    if "count_logits" in outputs:
        counts = outputs["count_logits"].float()[0].cpu().softmax(dim=0)
        record["count_probabilities"] = {str(count): float(p) for count, p in enumerate(counts)}
    return record, similarity


def patch_similarity_map(tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Each patch's mean rectified similarity to the other patches, as an (h, w) map in [0, 1]."""
    similarity = (tokens @ tokens.transpose(-1, -2)).relu()
    count = tokens.shape[-2]
    mean_to_others = (similarity.sum(-1) - similarity.diagonal(dim1=-2, dim2=-1)) / (count - 1)
    return mean_to_others.reshape(grid)


def check_validation_split(cfg: Config, dataset: Dataset) -> None:
    """A binary detector's best checkpoint is chosen by validation AUC, which needs real and fake frames."""
    if not is_binary(cfg):
        return
    labels = labels_of(dataset)
    if len(labels) and int(labels.min()) == int(labels.max()):
        kind = "fake" if int(labels[0]) else "real"
        raise ValueError(
            f"the validation split of {cfg.data.dataset_name or cfg.data.root} holds only {kind} frames "
            f"({len(labels)}): the best checkpoint is chosen by validation AUC, which needs both real and fake"
        )


def check_config(cfg: Config) -> None:
    """An order head is trained by L_Order alone, a count head by L_Count: with its weight at 0 the
    head would decide at random."""
    if cfg.model.order_head and cfg.loss.lambda_order == 0 and not is_binary(cfg) and cfg.model.num_classes > 1:
        raise ValueError(
            "config key 'model.order_head' is true but 'loss.lambda_order' is 0: the order head is "
            "trained by L_Order only; set model.order_head=false for the paper's loss"
        )
    if cfg.model.count_head and cfg.loss.lambda_count == 0 and not is_binary(cfg) and cfg.model.num_classes > 1:
        raise ValueError(
            "config key 'model.count_head' is true but 'loss.lambda_count' is 0: the count head is "
            "trained by L_Count only; set model.count_head=false"
        )
    if cfg.model.seen_sequences_only and (is_binary(cfg) or cfg.model.num_classes < 2):
        raise ValueError(
            "config key 'model.seen_sequences_only' needs sequence annotations to decode among; "
            "binary detection has none: set model.seen_sequences_only=false"
        )


METHOD = Method(
    name="mlrank",
    build_model=build_model,
    train_dataset=train_dataset,
    train_batch_size=train_batch_size,
    train_one_epoch=train_one_epoch,
    evaluation_dataset=evaluation_dataset,
    evaluate=evaluate,
    selection_metric=selection_metric,
    predict_image=predict_image,
    gives_binary_metrics=is_binary,
    check_config=check_config,
    prepare_model=prepare_model,
    protocol_checkpoints=protocol_checkpoints,
    check_validation_split=check_validation_split,
)
