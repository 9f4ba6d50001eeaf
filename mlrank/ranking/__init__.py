"""The multi-label ranking method of Hong, Hsu and Liu (CVPR 2024): docs/method.md.

The model (``model``), its losses (``losses``), the decoding of its scores into sequences
(``decoding``), its numbers on a split (``metrics``), and the method as the entry points drive it
(``method``, registered as ``method: mlrank``).
"""

from .decoding import decode, edit_order_scores, reverse_edit_order
from .losses import bce_loss, cls_loss, order_loss, rank_loss, rank_weights, total_loss
from .model import MultiLabelRankingModel

__all__ = [
    "MultiLabelRankingModel",
    "bce_loss",
    "cls_loss",
    "decode",
    "edit_order_scores",
    "order_loss",
    "rank_loss",
    "rank_weights",
    "reverse_edit_order",
    "total_loss",
]
