"""Old home of decoding, kept for code that imports it: decoding lives in
:mod:`mlrank.ranking.decoding`, the sequence format, its checks, ranks and thresholds in
:mod:`mlrank.task.sequences`."""

from mlrank.ranking.decoding import decode, edit_order_scores, reverse_edit_order
from mlrank.task.sequences import above_threshold, check_scores, check_sequences, descending_ranks, logit_threshold

__all__ = [
    "above_threshold", "check_scores", "check_sequences", "decode", "descending_ranks", "edit_order_scores",
    "logit_threshold", "reverse_edit_order",
]
