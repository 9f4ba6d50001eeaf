"""Evaluate a checkpoint or a run: ``python -m mlrank.evaluate CHECKPOINT_OR_RUN [--split test] [--protocol P] [--output FILE] [key=value ...]``.

The model and data come from the config stored in the checkpoint; ``key=value`` overrides change
the data side (say ``data.root=/data/Seq-DeepFake`` or ``data.test_dataset_name=Celeb-DF-v2`` for a
cross-data-set test; ``python -m mlrank.crosseval`` tests on several sets in one table). Every metric goes to a JSON file (default: ``<checkpoint>_<split>_metrics.json`` beside the
checkpoint, written atomically) and a readable table goes to stdout: Fixed-Acc, Adaptive-Acc,
multi-label accuracy, the order metrics (ordered pairs, Kendall's tau, and the per-component R^2 of
the paper's Table 4; "n/a" where undefined, null in the JSON) for Seq-DeepFake; AUC, EER, AP,
accuracy and video-level AUC for binary detection; AUC for SeeABLE.

``--protocol seqdeepfake`` (the default for a run folder of a sequence model) reports as
Seq-DeepFake's test script does: Fixed-Acc from the run's ``best_fixed.pt``, Adaptive-Acc from its
``best_adaptive.pt`` (each the best epoch by that metric on the validation split), the other metrics
from ``best.pt``; the table and the JSON (``metric_checkpoints``) say which checkpoint gave which.
``--protocol checkpoint`` (the default for a checkpoint file) reports every metric of that one file.
The Seq-DeepFake protocol asked of a binary or SeeABLE run, or of a run without those files, is an
error naming the problem.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

from mlrank.cli import run_cli
from mlrank.engine.config import Config, config_to_dict, saved_config
from mlrank.engine.distributed import cleanup, init_distributed
from mlrank.engine.methods import Method, get_method
from mlrank.engine.report import format_table
from mlrank.engine.runs import (RunFolder, atomic_write_json, check_checkpoint_exists, checkpoint_epoch, load_checkpoint,
                                load_model_state)
from mlrank.train import check_paths, evaluate_run, metric_sources, protocol_note


def load_model(
    checkpoint_path: str | Path, overrides: Sequence[str] = (), device: Any = "cpu"
) -> tuple[Config, Method, Any]:
    """(config, method, model in eval mode) from a checkpoint; a clear error if they do not fit."""
    state = load_checkpoint(checkpoint_path, map_location=device)
    cfg = saved_config(state["config"], overrides)  # older checkpoints lack later keys
    method = get_method(cfg.method)
    model = method.build_model(cfg)
    load_model_state(model, state["model"],
                     f"checkpoint {checkpoint_path} (method {cfg.method}, backbone {cfg.model.backbone})")
    return cfg, method, model.to(device).eval()


PROTOCOLS = ("checkpoint", "seqdeepfake")


def resolve_target(target: str, protocol: str | None) -> tuple[Path, str, RunFolder | None]:
    """(the checkpoint whose config and other metrics are read, the protocol, the run folder the
    protocol's checkpoints are in) for a checkpoint file or a run folder."""
    path = Path(target)
    if path.is_dir():
        folder = RunFolder(path, is_main=False)
        primary = next((folder.checkpoint_path(name) for name in ("best", "last") if folder.checkpoint_path(name).is_file()),
                       None)
        if primary is None:
            raise FileNotFoundError(f"run folder {path} holds no best.pt or last.pt")
        return primary, protocol or "seqdeepfake", folder
    check_checkpoint_exists(path)
    return path, protocol or "checkpoint", RunFolder(path.parent, is_main=False)


def check_protocol(cfg: Config, method: Method, checkpoint: Path, folder: RunFolder) -> None:
    """The Seq-DeepFake protocol needs a sequence model's run with both of its checkpoints."""
    if not method.protocol_checkpoints(cfg):
        kind = "a SeeABLE" if cfg.method == "seeable" else "a binary"
        raise ValueError(
            f"--protocol seqdeepfake: {checkpoint} is {kind} detector's checkpoint; Seq-DeepFake's protocol "
            f"(best_fixed.pt, best_adaptive.pt) applies to sequence models only: use --protocol checkpoint"
        )
    missing = [f"{name}.pt" for name in method.protocol_checkpoints(cfg) if not folder.checkpoint_path(name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"--protocol seqdeepfake: run folder {folder.path} has no {' or '.join(missing)} (a run saved before "
            f"mlrank kept them, or never validated); evaluate one checkpoint with --protocol checkpoint"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlrank.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", metavar="CHECKPOINT_OR_RUN", help="a run's folder, or one of its checkpoints (best.pt, last.pt, ...)")
    parser.add_argument("--split", default="test", choices=["train", "val", "test"])
    parser.add_argument("--protocol", choices=PROTOCOLS,
                        help="seqdeepfake: Fixed-Acc from best_fixed.pt, Adaptive-Acc from best_adaptive.pt (the "
                             "default for a run folder); checkpoint: every metric from the one checkpoint given (the "
                             "default for a file)")
    parser.add_argument("--output", help="metrics JSON (default: <checkpoint>_<split>_metrics.json beside it, or "
                                         "RUN/protocol_<split>_metrics.json)")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_intermixed_args(argv)

    ctx = init_distributed()
    try:
        checkpoint, protocol, folder = resolve_target(args.checkpoint, args.protocol)
        cfg, method, model = load_model(checkpoint, args.overrides, ctx.device)
        if protocol == "seqdeepfake" and args.protocol is None and not method.protocol_checkpoints(cfg):
            protocol = "checkpoint"  # a binary or SeeABLE run's folder: its best.pt
        if protocol == "seqdeepfake":
            check_protocol(cfg, method, checkpoint, folder)
        check_paths(cfg)
        dataset = method.evaluation_dataset(cfg, args.split)
        sources: dict[str, str] = {}
        if protocol == "seqdeepfake":
            def load(name: str) -> tuple[Any, int]:
                path = folder.checkpoint_path(name)
                if path == checkpoint:  # loaded already
                    return model, checkpoint_epoch(path)
                loaded_cfg, _, loaded = load_model(path, args.overrides, ctx.device)
                if config_to_dict(loaded_cfg) != config_to_dict(cfg):
                    raise ValueError(f"{path} holds another run's model than {checkpoint} (their configs differ)")
                return loaded, checkpoint_epoch(path)

            metrics, sources = evaluate_run(cfg, method, folder, checkpoint.stem, load, dataset, ctx, args.split)
        else:
            metrics = method.evaluate(cfg, model, dataset, ctx, args.split)
        if ctx.is_main:
            if args.output:
                output = Path(args.output)
            elif protocol == "seqdeepfake":
                output = folder.path / f"protocol_{args.split}_metrics.json"
            else:
                output = checkpoint.with_name(f"{checkpoint.stem}_{args.split}_metrics.json")
            atomic_write_json(output, {"checkpoint": str(checkpoint), "split": args.split, **metrics,
                                       **metric_sources(sources)})
            print(f"{cfg.method} on the {args.split} split ({checkpoint}{protocol_note(sources)}):")
            print(format_table(metrics, cfg))
            print(f"written to {output}")
    finally:
        cleanup(ctx)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
