"""Train a detector: ``python -m mlrank.train [--config FILE | --resume RUN_DIR] [key=value ...]``.

With no arguments it trains the multi-label ranking model on the built-in synthetic data set (the
shipped ``synthetic`` config, ``mlrank.engine.config.DEFAULT_CONFIG``). The
run folder (``output_dir``) receives the resolved config, the run's facts (seed, versions, argv),
one JSON line of metrics per epoch, and checkpoints written atomically: ``last.pt`` after every
epoch and ``best.pt`` for the best validation score (never the test split). After the last epoch
the best checkpoint is evaluated on the test split into ``test_metrics.json``. The loop is the same
for every method: it calls only the interface of the one ``cfg.method`` names
(:mod:`mlrank.engine.methods`).

Everything that can be checked (config, data paths, data sets, model) is checked before the run
folder is created. ``--resume RUN_DIR`` continues the run in that folder, wherever it now is, with
its own ``config.yaml`` and ``output_dir`` set to RUN_DIR: it never writes anywhere else. It goes
on from ``last.pt`` bit for bit on the CPU (the data order and augmentation depend only on (seed,
epoch), and the model, optimiser, schedule and random generators are restored); a folder whose
first epoch never completed starts afresh. Overrides may change only where files are and how fast
data loads (``RESUME_MAY_CHANGE``). Ctrl-C, or SIGTERM, stops at once: the epoch under way is
dropped, last.pt keeps the last completed one, and the command that resumes the run is printed (exit
status 130, or 143 for SIGTERM). Under ``torchrun --max-restarts N``, a restart after a process died
continues the run from last.pt, as ``--resume`` does.
Several GPUs or nodes: ``torchrun --nproc_per_node=G -m mlrank.train ...`` (DDP, one process per GPU).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import shlex
import sys
from typing import Any, Sequence

import torch
from torch.utils.data import DataLoader

from mlrank.cli import run_cli
from mlrank.data.layout import check_layout
from mlrank.engine.builders import build_optimizer
from mlrank.engine.config import (DEFAULT_CONFIG, SEED_LIMIT, Config, config_to_dict, load_config, saved_config,
                                 with_legacy_defaults)
from mlrank.engine.distributed import (
    DistContext,
    barrier,
    cleanup,
    gather_objects,
    init_distributed,
    make_sampler,
    unwrap_model,
    wrap_ddp,
)
from mlrank.engine.locks import command_line, command_words, output_lock
from mlrank.engine.methods import Method, get_method
from mlrank.engine.report import format_table
from mlrank.engine.runs import (
    RunFolder,
    atomic_write_json,
    load_model_state,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    seed_everything,
)


# Config keys a resume may change: where files are (a moved run folder, data set or weights file),
# how many processes load data, and what is logged. Everything else would change the numbers.
RESUME_MAY_CHANGE = ("output_dir", "data.root", "data.json_path", "data.json_prefix", "data.lmdb_path",
                     "data.num_workers", "data.synthetic_cache_dir", "model.pretrained_file", "train.log_every",
                     "train.tensorboard")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mlrank.train", description=__doc__.split("\n")[0])
    parser.add_argument("--config", help=f"a YAML file or the name of a shipped config (default: {DEFAULT_CONFIG})")
    parser.add_argument(
        "--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR (from its last.pt, with its config.yaml)"
    )
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. optim.lr=3e-4 data.batch_size=16")
    return parser.parse_args(argv)


def run_config(args: argparse.Namespace) -> Config:
    """The config to train with: ``--config`` and overrides, or the resumed run folder's own."""
    if args.resume is None:
        return load_config(args.config or DEFAULT_CONFIG, args.overrides)
    if args.config is not None:
        raise ValueError("--resume RUN_DIR trains with the run's own config (RUN_DIR/config.yaml); drop --config")
    if any(override.partition("=")[0].strip() == "output_dir" for override in args.overrides):
        raise ValueError("--resume RUN_DIR: the run stays in RUN_DIR, so output_dir cannot be overridden")
    folder = RunFolder(args.resume)
    if not folder.path.exists():
        raise FileNotFoundError(f"--resume: run folder {folder.path} does not exist")
    if not folder.path.is_dir():
        raise NotADirectoryError(f"--resume: {folder.path} is not a run folder")
    if folder.config_path.is_file():
        cfg = saved_config(folder.config_path, args.overrides)
    elif folder.has_completed_epoch():
        cfg = saved_config(load_checkpoint(folder.checkpoint_path("last"))["config"], args.overrides)
    else:
        raise FileNotFoundError(f"--resume: {folder.path} holds no run (neither config.yaml nor last.pt)")
    return dataclasses.replace(cfg, output_dir=str(folder.path))


def check_paths(cfg: Config) -> None:
    """Each file or folder the config names for its data and model exists, and the data root is laid out
    for ``data.kind`` (:func:`mlrank.data.layout.check_layout`), or an error naming its key."""
    data = cfg.data
    named = [("model.pretrained_file", cfg.model.pretrained_file, False)]
    lmdb = data.kind == "deepfakebench" and data.lmdb_path is not None  # frames need no root folder
    if data.kind != "synthetic" and not lmdb:
        if data.root is None:
            raise ValueError(f"config key 'data.root' must be set for data.kind {data.kind!r}")
        named.append(("data.root", data.root, True))
    if data.kind == "deepfakebench":
        # an index file or DeepfakeBench's folder of them
        named += [("data.json_path", data.json_path, None), ("data.lmdb_path", data.lmdb_path, True)]
    for key, path, is_folder in named:
        if path is None:
            continue
        if not os.path.exists(path):
            raise FileNotFoundError(f"config key '{key}': {path} does not exist")
        if is_folder is True and not os.path.isdir(path):
            raise NotADirectoryError(f"config key '{key}': {path} is not a folder")
        if is_folder is False and os.path.isdir(path):
            raise IsADirectoryError(f"config key '{key}': {path} is a folder, not a file")
    check_layout(data.kind, data.root if not lmdb else None, data.subset, data.json_path)


def check_seed(cfg: Config, ctx: DistContext) -> None:
    """Rank r seeds its generators with seed + r, which numpy needs below 2**32."""
    if cfg.seed + ctx.world_size - 1 >= SEED_LIMIT:
        raise ValueError(
            f"config key 'seed' ({cfg.seed}) plus the rank (up to {ctx.world_size - 1}) must stay below 2**32"
        )


def check_resumable(saved: dict[str, Any], current: dict[str, Any], run_folder: RunFolder) -> None:
    """Refuse to resume with a config that differs from the checkpoint's beyond ``RESUME_MAY_CHANGE``;
    keys that either lacks are read as ``LEGACY_DEFAULTS`` (a checkpoint written before they existed)."""
    saved_keys, current_keys = _dotted(with_legacy_defaults(saved)), _dotted(with_legacy_defaults(current))
    changed = sorted(
        key
        for key in saved_keys.keys() | current_keys.keys()
        if saved_keys.get(key) != current_keys.get(key) and key not in RESUME_MAY_CHANGE
    )
    if changed:
        raise ValueError(
            f"--resume: the config differs from the checkpoint's in {changed}; a resume may change only "
            f"{list(RESUME_MAY_CHANGE)} (the run's config: {run_folder.config_path})"
        )


def _dotted(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat |= _dotted(value, f"{prefix}{key}.")
        else:
            flat[prefix + key] = value
    return flat


def resume_command(output_dir: str, ctx: DistContext) -> str:
    """The command line that resumes the run in ``output_dir`` (torchrun's own options elided on several nodes)."""
    arguments = ["-m", "mlrank.train", "--resume", os.path.abspath(output_dir)]
    if not ctx.distributed:
        return shlex.join([sys.executable, *arguments])
    per_node = os.environ.get("LOCAL_WORLD_SIZE")
    if per_node is not None and int(per_node) == ctx.world_size:
        return shlex.join(["torchrun", f"--nproc_per_node={per_node}", *arguments])
    return "torchrun <this run's torchrun options> " + shlex.join(arguments)


def run(cfg: Config, resume: bool, argv: Sequence[str], ctx: DistContext) -> dict[str, Any]:
    """Train per ``cfg``; returns the test metrics of the best checkpoint.

    ``resume``: continue from the run folder's ``last.pt``, or start afresh in the folder when no
    epoch completed there. Nothing is written before every check has passed. The run folder is
    locked for the whole run (:mod:`mlrank.engine.locks`): a second training there is refused.
    """
    with output_lock(cfg.output_dir, command_line(list(argv)), enabled=ctx.is_main):
        return _run(cfg, resume, argv, ctx)


def _run(cfg: Config, resume: bool, argv: Sequence[str], ctx: DistContext) -> dict[str, Any]:
    method = get_method(cfg.method)
    check_seed(cfg, ctx)
    check_paths(cfg)
    run_folder = RunFolder(cfg.output_dir, is_main=ctx.is_main, tensorboard=cfg.train.tensorboard)
    if not (resume and run_folder.has_completed_epoch()):
        run_folder.check_startable(resume_command(cfg.output_dir, ctx))  # before hours of data preparation
    seed_everything(cfg.seed + ctx.rank, cfg.deterministic)

    train_set = method.train_dataset(cfg)
    sampler = make_sampler(train_set, ctx, shuffle=True, seed=cfg.seed)
    loader = DataLoader(
        train_set,
        batch_size=method.train_batch_size(cfg),
        sampler=sampler,
        num_workers=cfg.data.num_workers,
        pin_memory=ctx.device.type == "cuda",
        drop_last=True,
    )
    steps = len(loader) if cfg.train.max_steps_per_epoch is None else min(len(loader), cfg.train.max_steps_per_epoch)
    if steps == 0:
        raise ValueError(
            f"the training split has {len(train_set)} items, fewer than one batch of "
            f"{method.train_batch_size(cfg)} per process: lower data.batch_size"
        )
    # Built now, before the run folder, so that a missing split or a malformed row stops the run here.
    validation_set = method.evaluation_dataset(cfg, "val")
    method.check_validation_split(cfg, validation_set)
    test_set = method.evaluation_dataset(cfg, "test")
    model = method.build_model(cfg).to(ctx.device)
    method.prepare_model(cfg, model, train_set)
    optimizer, scheduler = build_optimizer(cfg, model, steps)

    first_epoch, global_step, best = 0, 0, float("-inf")
    protocol = method.protocol_checkpoints(cfg)  # Seq-DeepFake's best_fixed / best_adaptive: name -> metric
    protocol_best = {name: float("-inf") for name in protocol}
    config_dict = config_to_dict(cfg)
    if resume and run_folder.has_completed_epoch():
        state = load_checkpoint(run_folder.checkpoint_path("last"))
        check_resumable(state["config"], config_dict, run_folder)
        load_model_state(model, state["model"], f"--resume: {run_folder.checkpoint_path('last')}")
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        first_epoch, global_step, best = state["epoch"] + 1, state["global_step"], state["best_metric"]
        rng_states = state["rng"]
        restore_rng_state(rng_states[ctx.rank] if isinstance(rng_states, list) else rng_states)
        run_folder.resume(config_dict, last_epoch=state["epoch"], seed=cfg.seed, argv=argv, world_size=ctx.world_size)
        protocol_best = state.get("protocol_best") or protocol_best_of_log(run_folder.read_metrics(), protocol)
    else:
        cleared = run_folder.start(config_dict, seed=cfg.seed, argv=argv, world_size=ctx.world_size)
        if ctx.is_main and (resume or cleared):
            print(
                f"{run_folder.path}: no epoch had completed, so the run starts afresh there"
                + (f" (removed {', '.join(cleared)})" if cleared else ""),
                flush=True,
            )
    model = wrap_ddp(model, ctx)

    with contextlib.closing(run_folder):  # closes the TensorBoard writer, if any
        for epoch in range(first_epoch, cfg.optim.epochs):
            sampler.set_epoch(epoch)
            if hasattr(train_set, "set_epoch"):
                train_set.set_epoch(epoch)
            record: dict[str, Any] = {"epoch": epoch}
            record |= method.train_one_epoch(cfg, model, loader, optimizer, scheduler, ctx, epoch, steps)
            global_step += steps
            record["lr"] = max(scheduler.get_last_lr())  # the heads' lr; the backbone's is scaled down
            improved = []  # the best checkpoints this epoch becomes
            if (epoch + 1) % cfg.train.eval_every == 0 or epoch + 1 == cfg.optim.epochs:
                metrics = method.evaluate(cfg, unwrap_model(model), validation_set, ctx, "val")
                record |= {f"val_{key}": value for key, value in metrics.items()}
                score = method.selection_metric(metrics)
                record["best"] = score > best
                if score > best:
                    best = score
                    improved.append("best")
                for name, key in protocol.items():
                    # Seq-DeepFake's rule: the later epoch wins a tie
                    if metrics.get(key) is not None and metrics[key] >= protocol_best[name]:
                        protocol_best[name] = metrics[key]
                        improved.append(name)
            state = checkpoint(cfg, model, optimizer, scheduler, epoch, global_step, best, ctx, protocol_best)
            if improved:
                run_folder.save_checkpoint(state, improved[0], also=improved[1:])
            # The log first, then the state it describes: a resume from this checkpoint finds its line.
            run_folder.log_metrics(record)
            run_folder.save_checkpoint(state, "last")
            if ctx.is_main:
                print(summary_line(record), flush=True)

    return test_best(cfg, method, run_folder, test_set, ctx)


def checkpoint(
    cfg: Config,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    epoch: int,
    global_step: int,
    best: float,
    ctx: DistContext,
    protocol_best: dict[str, float] | None = None,
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
        "protocol_best": {name: float(value) for name, value in (protocol_best or {}).items()},
        "rng": rng,
        "config": config_to_dict(cfg),
    }


def protocol_best_of_log(records: list[dict[str, Any]], protocol: dict[str, str]) -> dict[str, float]:
    """The best validation value of each protocol checkpoint's metric in the log (a checkpoint saved
    before it recorded them)."""
    best = {}
    for name, key in protocol.items():
        values = [record[f"val_{key}"] for record in records if record.get(f"val_{key}") is not None]
        best[name] = max(values, default=float("-inf"))
    return best


def test_best(cfg: Config, method: Method, run_folder: RunFolder, test_set: Any, ctx: DistContext) -> dict[str, Any]:
    """Evaluate the best checkpoint (or the last, when no epoch was validated) on the test split,
    each protocol metric from its own checkpoint (:func:`evaluate_run`), into test_metrics.json."""
    barrier(ctx)  # every process reads the checkpoints the main process wrote
    name = "best" if run_folder.checkpoint_path("best").is_file() else "last"

    def load(checkpoint_name: str) -> tuple[Any, int]:
        state = load_checkpoint(run_folder.checkpoint_path(checkpoint_name), map_location=ctx.device)
        model = method.build_model(cfg).to(ctx.device)
        model.load_state_dict(state["model"])
        return model, state["epoch"]

    metrics, sources = evaluate_run(cfg, method, run_folder, name, load, test_set, ctx, "test")
    if ctx.is_main:
        atomic_write_json(run_folder.test_metrics_path, {"checkpoint": name, **metrics, **metric_sources(sources)})
        print(f"{cfg.method} on the test split ({name}.pt{protocol_note(sources)}):", flush=True)
        print(format_table(metrics, cfg), flush=True)
        print(f"run folder: {run_folder.path} (checkpoints, config.yaml, metrics.jsonl, "
              f"{run_folder.test_metrics_path.name})", flush=True)
    return metrics


def evaluate_run(
    cfg: Config, method: Method, run_folder: RunFolder, primary: str, load: Any, dataset: Any, ctx: DistContext,
    desc: str,
) -> tuple[dict[str, Any], dict[str, str]]:
    """The metrics of checkpoint ``primary`` of a run on ``dataset``, with each protocol metric
    (``Method.protocol_checkpoints``: Seq-DeepFake's Fixed-Acc and Adaptive-Acc) taken from its own
    checkpoint where the run has it, as Seq-DeepFake's test script reports them; and which
    checkpoint gave each such metric. ``load(name) -> (model, epoch)``. A protocol checkpoint that
    is ``primary``'s file (a hard link) or of its epoch is not evaluated again."""
    model, primary_epoch = load(primary)
    metrics = method.evaluate(cfg, model, dataset, ctx, desc)
    sources: dict[str, str] = {}
    for name, key in method.protocol_checkpoints(cfg).items():
        path = run_folder.checkpoint_path(name)
        if not path.is_file():
            continue  # no validated epoch (a run saved before these files existed)
        if not os.path.samefile(path, run_folder.checkpoint_path(primary)):
            model, epoch = load(name)
            if epoch != primary_epoch:
                metrics[key] = method.evaluate(cfg, model, dataset, ctx, f"{desc} ({name})")[key]
        sources[key] = name
    return metrics, sources


def metric_sources(sources: dict[str, str]) -> dict[str, Any]:
    """The ``metric_checkpoints`` entry of a metrics file: which checkpoint gave which metric."""
    return {"metric_checkpoints": {key: f"{name}.pt" for key, name in sources.items()}} if sources else {}


def protocol_note(sources: dict[str, str]) -> str:
    return "".join(f"; {key} from {name}.pt" for key, name in sources.items())


def summary_line(record: dict[str, Any]) -> str:
    shown = {key: value for key, value in record.items() if isinstance(value, (int, float)) and not isinstance(value, bool)}
    return "  ".join(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}" for key, value in shown.items())


def restarted_by_torchrun() -> int:
    """How many times torchrun (``--max-restarts``) has restarted this job's processes: 0 on its first
    attempt, or when not started by torchrun."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = run_config(args)
    ctx = init_distributed()
    # A torchrun restart runs the same command again: it continues the run its first attempt began,
    # from last.pt, as --resume would (the config must be the same, as for --resume).
    restart = restarted_by_torchrun() > 0 and RunFolder(cfg.output_dir).has_completed_epoch()
    if restart and ctx.is_main:
        print(f"torchrun restart {restarted_by_torchrun()}: continuing the run in {cfg.output_dir} from last.pt",
              flush=True)
    try:
        run(cfg, args.resume is not None or restart, command_words("mlrank.train", argv), ctx)
    except KeyboardInterrupt as interrupt:  # Ctrl-C, or SIGTERM (mlrank.cli.Terminated)
        raise type(interrupt)(interrupted_message(cfg, ctx)) from None
    finally:
        cleanup(ctx)
    return 0


def interrupted_message(cfg: Config, ctx: DistContext) -> str:
    """What a Ctrl-C left in the run folder, and the command that resumes the run."""
    if not RunFolder(cfg.output_dir).has_completed_epoch():
        return (
            f"training stopped before its first epoch completed, so there is nothing to resume; the same "
            f"command starts it afresh in {cfg.output_dir}"
        )
    return (
        "training stopped; last.pt holds the last completed epoch. Resume with:\n"
        + resume_command(cfg.output_dir, ctx)
    )


if __name__ == "__main__":
    sys.exit(run_cli(main))
