"""The detection methods by name, and the one interface through which the entry points drive them.

A config's ``method`` names an entry of ``METHODS``; :func:`get_method` imports that module and
returns its ``METHOD``, a :class:`Method`. ``python -m mlrank.train``, ``evaluate``, ``predict``,
``crosseval`` and ``load_config`` call nothing else of a method, so a third method is a subpackage
whose ``method.py`` defines ``METHOD`` and one line here (docs/architecture.md).

Decisions:
- Entries are module paths, imported on first use: the engine, which every method shares, holds no
  import of a method's code, while a method imports the engine freely (tests/test_layout.py checks
  the direction).
- A method is a record of functions, not a base class: the two methods share no state or code paths
  beyond the engine's, and a record shows the whole interface in one place.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch.utils.data import Dataset

    from mlrank.engine.schema import Config
    from mlrank.engine.distributed import DistContext

# A config's `method` -> the module whose METHOD implements it.
METHODS: dict[str, str] = {
    "mlrank": "mlrank.ranking.method",  # multi-label ranking (Hong, Hsu and Liu, CVPR 2024)
    "seeable": "mlrank.seeable.method",  # SeeABLE (Larue et al., ICCV 2023), one-class
}


def no_config_checks(cfg: Config) -> None:
    """For a method whose keys need no checks beyond the config's types and ranges."""


def no_split_checks(cfg: Config, dataset: Dataset) -> None:
    """For a method whose validation metric is defined on any split."""


def no_protocol_checkpoints(cfg: Config) -> dict[str, str]:
    """For a method whose metrics all come from best.pt."""
    return {}


def no_model_preparation(cfg: Config, model: torch.nn.Module, train_set: Dataset) -> None:
    """For a method whose model needs nothing of the training data before training."""


@dataclass
class Method:
    """What the entry points call on a method, grouped by who calls it."""

    name: str  # its key in METHODS
    # train: the model (its parameter_groups(lr, backbone_lr_scale, weight_decay) give the optimiser's
    # groups), the training view of the data, and one epoch of its losses
    build_model: Callable[[Config], torch.nn.Module]
    train_dataset: Callable[[Config], Dataset]
    train_batch_size: Callable[[Config], int]  # items of train_dataset per batch
    # (cfg, model, loader, optimizer, scheduler, ctx, epoch, steps) -> the epoch's record: the mean of
    # every loss term as loss_<term> (the total as loss_total) and images_per_s; the engine's
    # epoch.run_epoch runs the loop given a function from a batch to its losses
    train_one_epoch: Callable[..., dict[str, float]]
    # train (validation and test), evaluate, crosseval
    evaluation_dataset: Callable[[Config, str], Dataset]  # (cfg, split)
    # (cfg, model, dataset, ctx, progress-bar label) -> metrics, the same on every process
    evaluate: Callable[[Config, torch.nn.Module, Dataset, DistContext, str], dict[str, Any]]
    selection_metric: Callable[[dict[str, Any]], float]  # what best.pt maximises on the validation split
    # predict: (cfg, model, batch (1, 3, S, S) on the model's device, threshold or None for the model's
    # own decision rule) -> (the image's record,
    # each patch's similarity to the others as an (h, w) map in [0, 1] for the heat map, or None)
    predict_image: Callable[[Config, torch.nn.Module, torch.Tensor, float], tuple[dict[str, Any], torch.Tensor | None]]
    # crosseval: whether evaluate gives real-vs-fake metrics (auc, eer, ap, video_auc) for this config
    gives_binary_metrics: Callable[[Config], bool]
    # load_config: checks of the method's own keys beyond their types and ranges
    check_config: Callable[[Config], None] = no_config_checks
    # train, before the first step: what the model keeps of its training data (cfg, model, the
    # training view); saved with its weights
    prepare_model: Callable[[Config, torch.nn.Module, Dataset], None] = no_model_preparation
    # train, evaluate: checkpoints kept beside best.pt, each the best epoch by one validation metric
    # (name -> metric key, e.g. Seq-DeepFake's {"best_fixed": "fixed_acc"}), whose test value is
    # reported from that checkpoint
    protocol_checkpoints: Callable[[Config], dict[str, str]] = no_protocol_checkpoints
    # train, before the first step: refuse a validation split on which selection_metric is undefined
    check_validation_split: Callable[[Config, Dataset], None] = no_split_checks


def get_method(name: str) -> Method:
    """The method a config's ``method`` names."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; methods: {sorted(METHODS)}")
    method = importlib.import_module(METHODS[name]).METHOD
    if method.name != name:
        raise RuntimeError(f"{METHODS[name]}.METHOD is named {method.name!r}, registered as {name!r}")
    return method
