"""How the commands print metrics: one table for train's test split and for evaluate."""

from __future__ import annotations

import math
from typing import Any

from mlrank.data.vocab import names_of
from mlrank.engine.config import Config


def format_table(metrics: dict[str, Any], cfg: Config) -> str:
    """Metric names and values, one per line, four decimals; the order R^2 per component name."""
    lines = []
    for key, value in metrics.items():
        if key == "order_r2":
            names = names_of(cfg.data.subset) if cfg.data.kind in ("synthetic", "seqdeepfake") else None
            for index, r2 in enumerate(value):
                name = names[index] if names and index < len(names) else str(index + 1)
                lines.append(f"  order R^2 {name:<12} {format_number(r2)}")
        else:
            lines.append(f"  {key:<22} {format_number(value)}")
    return "\n".join(lines)


def format_number(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.4f}" if isinstance(value, float) else str(value)
