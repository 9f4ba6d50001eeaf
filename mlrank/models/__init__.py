"""Model parts the methods share: timm backbones as feature levels, a one-map FPN, input standardisation.

Each method's own model lives with it: :class:`mlrank.ranking.model.MultiLabelRankingModel`,
:class:`mlrank.seeable.model.SeeableModel`.
"""

from mlrank.models.backbone import create_backbone
from mlrank.models.fpn import FPN

__all__ = ["FPN", "create_backbone"]
