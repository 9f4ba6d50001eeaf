"""Old home of the multi-label ranking method as the training loop drives it, kept for code that
imports it: it lives in :mod:`mlrank.ranking.method` (``split_metrics`` in :mod:`mlrank.ranking.metrics`)."""

from mlrank.ranking.method import (
    PSEUDO_FAKE,
    build_model,
    evaluate,
    evaluation_dataset,
    evaluation_loader,
    predict_split,
    selection_metric,
    train_batch_size,
    train_dataset,
    train_one_epoch,
    unpack_batch,
)
from mlrank.ranking.metrics import split_metrics

__all__ = [
    "PSEUDO_FAKE", "build_model", "evaluate", "evaluation_dataset", "evaluation_loader", "predict_split",
    "selection_metric", "split_metrics", "train_batch_size", "train_dataset", "train_one_epoch", "unpack_batch",
]
