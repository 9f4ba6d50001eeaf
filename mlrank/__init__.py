"""mlrank: fine-grained deepfake detection by contrastive MIL and multi-label ranking."""

import torch  # noqa: F401  (libtorch must be loaded before the extension)

from .decoding import decode

__version__ = "0.1.0"

__all__ = ["decode"]
