"""Old home of the metrics, kept for code that imports it: the field's metrics live in
:mod:`mlrank.task.metrics`, ``sequence_metrics`` (which decodes the ranking model's scores) in
:mod:`mlrank.ranking.metrics`."""

from mlrank.ranking.metrics import sequence_metrics
from mlrank.task.metrics import (
    ArrayLike,
    accuracy_at,
    adaptive_acc,
    auc,
    average_precision,
    binary_metrics,
    eer,
    fixed_acc,
    kendall_tau,
    multilabel_acc,
    order_r2,
    ordered_pairs,
    video_auc,
)

__all__ = [
    "ArrayLike", "accuracy_at", "adaptive_acc", "auc", "average_precision", "binary_metrics", "eer", "fixed_acc",
    "kendall_tau", "multilabel_acc", "order_r2", "ordered_pairs", "sequence_metrics", "video_auc",
]
