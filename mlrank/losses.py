"""Old home of the paper's losses, kept for code that imports it: they live in
:mod:`mlrank.ranking.losses`, their targets (``sequence_targets``) in :mod:`mlrank.task.sequences`."""

from mlrank.ranking.losses import (
    OUTPUT_KEYS,
    PROB_CLAMP,
    bce_loss,
    cls_loss,
    order_loss,
    rank_loss,
    rank_weights,
    total_loss,
)
from mlrank.task.sequences import sequence_targets

__all__ = [
    "OUTPUT_KEYS", "PROB_CLAMP", "bce_loss", "cls_loss", "order_loss", "rank_loss", "rank_weights",
    "sequence_targets", "total_loss",
]
