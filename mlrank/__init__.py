"""mlrank: fine-grained deepfake detection by contrastive MIL and multi-label ranking."""

import torch  # noqa: F401  (libtorch must be loaded before the extension)

__version__ = "0.1.0"  # before the imports below: mlrank.engine.runs records it

from . import ops  # noqa: E402  (mlrank.ops.contrastive_mil after a plain `import mlrank`)

__all__ = ["ops"]
