"""Operators: the contrastive-MIL score and its pure-PyTorch reference (``mlrank.ops.reference``)."""

from mlrank.ops.contrastive_mil import compiled_with_cuda, contrastive_mil

__all__ = ["compiled_with_cuda", "contrastive_mil"]
