"""SeeABLE (Larue et al., ICCV 2023): one-class deepfake detection from real faces only.

A network learns to tell where (grid cell) and what kind (type) of soft discrepancy was planted
in a real face, by pulling its embedding to one of K fixed prototypes; a test face whose planted
discrepancies it cannot recognise is anomalous. See docs/seeable.md for every decision; ``method``
is SeeABLE as the entry points drive it (registered as ``method: seeable``).
"""

from .discrepancies import apply_discrepancy
from .losses import guidance_loss, guidance_weights, prototype_ce_loss, seeable_loss, supcon_loss
from .masks import default_face_mask
from .model import SeeableModel
from .prototypes import make_prototypes, min_pairwise_angle
from .score import anomaly_score
from .spec import DISCREPANCY_TYPES, FREQUENCY_TYPES, PROJECT_TYPES, SEEABLE_TYPES, SPATIAL_TYPES, DiscrepancySpec
from .transform import SeeableDataset, SeeableTransform

__all__ = [
    "DISCREPANCY_TYPES",
    "FREQUENCY_TYPES",
    "PROJECT_TYPES",
    "SEEABLE_TYPES",
    "SPATIAL_TYPES",
    "DiscrepancySpec",
    "SeeableDataset",
    "SeeableModel",
    "SeeableTransform",
    "anomaly_score",
    "apply_discrepancy",
    "default_face_mask",
    "guidance_loss",
    "guidance_weights",
    "make_prototypes",
    "min_pairwise_angle",
    "prototype_ce_loss",
    "seeable_loss",
    "supcon_loss",
]
