"""Memory measures shared by the CPU benchmarks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def saved_storages(forward: Callable[[], Any]) -> dict[int, int]:
    """The storages autograd keeps for backward while ``forward()`` runs: data pointer -> bytes,
    each storage once however many saved tensors view it."""
    storages: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        forward()
    return storages
