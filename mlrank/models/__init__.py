"""Models: timm backbones as feature levels, a one-map FPN, and the multi-label ranking model."""

from mlrank.models.backbone import create_backbone
from mlrank.models.fpn import FPN
from mlrank.models.ranking_model import MultiLabelRankingModel

__all__ = ["FPN", "MultiLabelRankingModel", "create_backbone"]
