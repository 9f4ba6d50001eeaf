"""Evaluate a checkpoint: ``python -m mlrank.evaluate CHECKPOINT [--split test] [--output FILE] [key=value ...]``.

The model and data come from the config stored in the checkpoint; ``key=value`` overrides change
the data side (say ``data.root=/data/Seq-DeepFake`` or ``data.test_dataset_name=Celeb-DF-v2`` for a
cross-data-set test; ``python -m mlrank.crosseval`` tests on several sets in one table). Every metric goes to a JSON file (default: ``<checkpoint>_<split>_metrics.json`` beside the
checkpoint, written atomically) and a readable table goes to stdout: Fixed-Acc, Adaptive-Acc,
multi-label accuracy, the order metrics (ordered pairs, Kendall's tau, and the per-component R^2 of
the paper's Table 4; "n/a" where undefined, null in the JSON) for Seq-DeepFake; AUC, EER, AP,
accuracy and video-level AUC for binary detection; AUC for SeeABLE.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any, Sequence

from mlrank.cli import run_cli
from mlrank.data.vocab import names_of
from mlrank.engine.config import Config, saved_config
from mlrank.engine.distributed import cleanup, init_distributed
from mlrank.engine.methods import Method, get_method
from mlrank.engine.runs import atomic_write_json, load_checkpoint
from mlrank.train import check_paths


def load_model(
    checkpoint_path: str | Path, overrides: Sequence[str] = (), device: Any = "cpu"
) -> tuple[Config, Method, Any]:
    """(config, method, model in eval mode) from a checkpoint; a clear error if they do not fit."""
    state = load_checkpoint(checkpoint_path, map_location=device)
    cfg = saved_config(state["config"], overrides)  # older checkpoints lack later keys
    method = get_method(cfg.method)
    model = method.build_model(cfg)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as error:
        raise ValueError(
            f"checkpoint {checkpoint_path} does not fit the model its config describes "
            f"(method {cfg.method}, backbone {cfg.model.backbone}): {str(error).splitlines()[0]}"
        ) from None
    return cfg, method, model.to(device).eval()


def format_table(metrics: dict[str, Any], cfg: Config) -> str:
    """Metric names and values, one per line; the order R^2 per component name."""
    lines = []
    for key, value in metrics.items():
        if key == "order_r2":
            names = names_of(cfg.data.subset) if cfg.data.kind in ("synthetic", "seqdeepfake") else None
            for index, r2 in enumerate(value):
                name = names[index] if names and index < len(names) else str(index + 1)
                lines.append(f"  order R^2 {name:<12} {_number(r2)}")
        else:
            lines.append(f"  {key:<22} {_number(value)}")
    return "\n".join(lines)


def _number(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlrank.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", help="a last.pt or best.pt of a run")
    parser.add_argument("--split", default="test", choices=["train", "val", "test"])
    parser.add_argument("--output", help="metrics JSON (default: <checkpoint>_<split>_metrics.json beside it)")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_intermixed_args(argv)

    ctx = init_distributed()
    try:
        cfg, method, model = load_model(args.checkpoint, args.overrides, ctx.device)
        check_paths(cfg)
        metrics = method.evaluate(cfg, model, method.evaluation_dataset(cfg, args.split), ctx, args.split)
        if ctx.is_main:
            output = Path(args.output) if args.output else Path(args.checkpoint).with_name(f"{Path(args.checkpoint).stem}_{args.split}_metrics.json")
            atomic_write_json(output, {"checkpoint": str(args.checkpoint), "split": args.split, **metrics})
            print(f"{cfg.method} on the {args.split} split ({args.checkpoint}):")
            print(format_table(metrics, cfg))
            print(f"written to {output}")
    finally:
        cleanup(ctx)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
