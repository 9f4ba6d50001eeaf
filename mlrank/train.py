"""Train a detector: ``python -m mlrank.train [--config FILE] [--resume] [key=value ...]``.

With no arguments it trains the multi-label ranking model on the built-in synthetic data set. The
run folder (``output_dir``) receives the resolved config, the run's facts (seed, versions, argv),
one JSON line of metrics per epoch, and checkpoints written atomically: ``last.pt`` after every
epoch and ``best.pt`` for the best validation score (never the test split). After the last epoch
the best checkpoint is evaluated on the test split into ``test_metrics.json``.

``--resume`` continues from ``last.pt`` bit for bit on the CPU: the data order and augmentation
depend only on (seed, epoch), and the model, optimiser, schedule and random generators are restored.
Several GPUs or nodes: ``torchrun --nproc_per_node=G -m mlrank.train ...`` (DDP, one process per GPU).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence

import torch
from torch.utils.data import DataLoader

from mlrank.builders import build_optimizer
from mlrank.config import Config, config_to_dict, load_config, resolve_config_path
from mlrank.distributed import (
    DistContext,
    cleanup,
    gather_objects,
    init_distributed,
    make_sampler,
    unwrap_model,
    wrap_ddp,
)
from mlrank.runs import (
    RunFolder,
    atomic_write_json,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    seed_everything,
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mlrank.train", description=__doc__.split("\n")[0])
    parser.add_argument("--config", help="a YAML file or the name of a shipped config (default: synthetic)")
    parser.add_argument("--resume", action="store_true", help="continue the run in output_dir from last.pt")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. optim.lr=3e-4 data.batch_size=16")
    return parser.parse_args(argv)


def method_module(cfg: Config) -> Any:
    """The module that implements ``cfg.method``'s training (the supervised model, or SeeABLE)."""
    if cfg.method == "seeable":
        from mlrank.seeable import training

        return training
    from mlrank import supervised

    return supervised


def run(cfg: Config, resume: bool, argv: Sequence[str], ctx: DistContext) -> dict[str, Any]:
    """Train per ``cfg``; returns the test metrics of the best checkpoint."""
    method = method_module(cfg)
    run_folder = RunFolder(cfg.output_dir, is_main=ctx.is_main)
    seed_everything(cfg.seed + ctx.rank, cfg.deterministic)

    train_set = method.train_dataset(cfg)
    sampler = make_sampler(train_set, ctx, shuffle=True, seed=cfg.seed)
    loader = DataLoader(
        train_set,
        batch_size=method.train_batch_size(cfg),
        sampler=sampler,
        num_workers=cfg.data.num_workers,
        collate_fn=getattr(method, "collate", None),
        pin_memory=ctx.device.type == "cuda",
        drop_last=True,
    )
    steps = len(loader) if cfg.train.max_steps_per_epoch is None else min(len(loader), cfg.train.max_steps_per_epoch)
    if steps == 0:
        raise ValueError(
            f"the training split has {len(train_set)} items, fewer than one batch of "
            f"{method.train_batch_size(cfg)} per process: lower data.batch_size"
        )
    model = method.build_model(cfg).to(ctx.device)
    optimizer, scheduler = build_optimizer(cfg, model, steps)

    first_epoch, global_step, best = 0, 0, float("-inf")
    config_dict = config_to_dict(cfg)
    if resume:
        state = load_checkpoint(run_folder.checkpoint_path("last"))
        if state["config"] != config_dict:
            changed = sorted(key for key in config_dict if state["config"].get(key) != config_dict[key])
            raise ValueError(
                f"--resume: the config differs from the checkpoint's in {changed}; resume with the run's own "
                f"config ({run_folder.config_path})"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        first_epoch, global_step, best = state["epoch"] + 1, state["global_step"], state["best_metric"]
        rng_states = state["rng"]
        restore_rng_state(rng_states[ctx.rank] if isinstance(rng_states, list) else rng_states)
        run_folder.resume(config_dict, last_epoch=state["epoch"], seed=cfg.seed, argv=argv, world_size=ctx.world_size)
    else:
        run_folder.start(config_dict, seed=cfg.seed, argv=argv, world_size=ctx.world_size)
    model = wrap_ddp(model, ctx)

    validation_set = method.evaluation_dataset(cfg, "val")
    for epoch in range(first_epoch, cfg.optim.epochs):
        sampler.set_epoch(epoch)
        if hasattr(train_set, "set_epoch"):
            train_set.set_epoch(epoch)
        record: dict[str, Any] = {"epoch": epoch}
        record |= method.train_one_epoch(cfg, model, loader, optimizer, scheduler, ctx, epoch, steps)
        global_step += steps
        record["lr"] = max(scheduler.get_last_lr())  # the heads' lr; the backbone's is scaled down
        if (epoch + 1) % cfg.train.eval_every == 0 or epoch + 1 == cfg.optim.epochs:
            metrics = method.evaluate(cfg, unwrap_model(model), validation_set, ctx, "val")
            record |= {f"val_{key}": value for key, value in metrics.items()}
            score = method.selection_metric(metrics)
            record["best"] = score > best
            if score > best:
                best = score
                run_folder.save_checkpoint(checkpoint(cfg, model, optimizer, scheduler, epoch, global_step, best, ctx), "best")
        # The log first, then the state it describes: a resume from this checkpoint finds its line.
        run_folder.log_metrics(record)
        run_folder.save_checkpoint(checkpoint(cfg, model, optimizer, scheduler, epoch, global_step, best, ctx), "last")
        if ctx.is_main:
            print(summary_line(record), flush=True)

    return test_best(cfg, method, run_folder, ctx)


def checkpoint(
    cfg: Config,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    epoch: int,
    global_step: int,
    best: float,
    ctx: DistContext,
) -> dict[str, Any]:
    """Everything a bit-for-bit resume needs (one RNG state per rank under DDP)."""
    rng = gather_objects(capture_rng_state(), ctx) if ctx.distributed else capture_rng_state()
    return {
        "model": unwrap_model(model).state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "epoch": epoch,
        "global_step": global_step,
        "best_metric": float(best),
        "rng": rng,
        "config": config_to_dict(cfg),
    }


def test_best(cfg: Config, method: Any, run_folder: RunFolder, ctx: DistContext) -> dict[str, Any]:
    """Evaluate the best checkpoint (or the last, when no epoch was validated) on the test split."""
    name = "best" if run_folder.checkpoint_path("best").is_file() else "last"
    model = method.build_model(cfg).to(ctx.device)
    model.load_state_dict(load_checkpoint(run_folder.checkpoint_path(name), map_location=ctx.device)["model"])
    metrics = method.evaluate(cfg, model, method.evaluation_dataset(cfg, "test"), ctx, "test")
    if ctx.is_main:
        atomic_write_json(run_folder.path / "test_metrics.json", {"checkpoint": name, **metrics})
        print(f"test ({name} checkpoint): {json.dumps(metrics)}", flush=True)
    return metrics


def summary_line(record: dict[str, Any]) -> str:
    shown = {key: value for key, value in record.items() if isinstance(value, (int, float)) and not isinstance(value, bool)}
    return "  ".join(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}" for key, value in shown.items())


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = load_config(resolve_config_path(args.config) if args.config else None, args.overrides)
    ctx = init_distributed()
    try:
        run(cfg, args.resume, list(sys.argv if argv is None else argv), ctx)
    finally:
        cleanup(ctx)
    return 0


if __name__ == "__main__":
    sys.exit(main())
