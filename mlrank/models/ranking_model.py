"""Old home of the multi-label ranking model, kept for code that imports it: it lives in
:mod:`mlrank.ranking.model`."""

from mlrank.ranking.model import DEFAULT_IMG_SIZE, MultiLabelRankingModel

__all__ = ["DEFAULT_IMG_SIZE", "MultiLabelRankingModel"]
