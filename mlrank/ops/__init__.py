"""Operators: the contrastive-MIL score, its pure-PyTorch reference (``mlrank.ops.reference``) and
token generators for tests and benchmarks (``mlrank.ops.testing``)."""

from mlrank.ops import reference, testing
from mlrank.ops.contrastive_mil import IMPLEMENTATIONS, compiled_with_cuda, contrastive_mil

__all__ = ["IMPLEMENTATIONS", "compiled_with_cuda", "contrastive_mil", "reference", "testing"]
