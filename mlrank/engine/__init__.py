"""The engine every method shares: configuration (``config``), run folders and checkpoints (``runs``),
several processes (``distributed``), the training epoch (``epoch``), data sets and optimisers from a
config (``builders``), and the methods by name with the interface they offer (``methods``).

The engine never imports a method; methods import it (docs/architecture.md).
"""
