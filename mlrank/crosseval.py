"""One checkpoint on several test sets, one table: ``python -m mlrank.crosseval CHECKPOINT``.

    python -m mlrank.crosseval CHECKPOINT [--sets NAME ...] [--set name=N,kind=K,root=R,json_path=J ...]
        [--output BASE] [key=value ...]

The protocol of the CVPR 2024 paper's Table 2 and of SeeABLE: a detector trained on one data set
(FaceForensics++) is tested on others it never saw. The test sets are the config's
``data.cross_test_sets`` (stored in the checkpoint, or given as an override), each a mapping of
``name`` (the table's row, and the DeepfakeBench data set unless ``dataset_name`` says otherwise),
``kind`` (deepfakebench or frames), ``root``, ``json_path`` (an index or DeepfakeBench's folder of
them), ``json_prefix``, ``lmdb_path``, ``dataset_name`` and ``split`` (default test). ``--sets``
keeps some of them by name; ``--set`` adds one on the command line (comma-separated key=value pairs,
so no comma in its paths).

Which data a set reads (:func:`set_config`) comes from its own keys: ``kind`` if given, else
deepfakebench when it names a ``json_path`` or ``lmdb_path``, else frames when its ``root`` is laid
out as frame folders. Keys it leaves unset are taken from the checkpoint's ``data`` only where they
cannot change which data are read: a DeepfakeBench set named by ``name`` alone reads ``<name>.json``
from the checkpoint's folder of indexes (DeepfakeBench's ``dataset_json``), with its frames root and
LMDB. A set that names no data of its own otherwise (the checkpoint trained on frame folders, or on
one index file that does not hold the set) is an error naming it, as are two sets that read the same
data.

Writes ``BASE.md`` (a Markdown table) and ``BASE.json`` (the same numbers and every metric of each
set), both atomically; BASE defaults to the checkpoint's path without ``.pt`` plus ``_crosseval``.
Files that exist already are replaced only with ``--overwrite``, and BASE is locked for the run
(:mod:`mlrank.engine.locks`). Per set: videos, frames, frame AUC, video AUC, EER and AP
(mlrank.task.metrics), and their mean over the sets; a set with one class only (real or fake) has
none of them: "n/a" in the table, null in the JSON, and the mean of that column is n/a too.

Decisions:
- Every set's data are built (paths checked, indexes read) before any is evaluated, so a wrong
  path in the last set fails in seconds, not after hours; errors name the set.
- The checkpoint's method must give real-vs-fake metrics for its config (``Method.gives_binary_metrics``):
  a binary detector (trained with data.kind deepfakebench or frames) or a SeeABLE model; a
  Seq-DeepFake model's outputs are components, not a real/fake score.
- The model, the image size and the frames per video are the checkpoint's; ``key=value`` overrides
  change the data side as in ``mlrank.evaluate`` (say ``data.frames_per_video=32``).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from mlrank.cli import run_cli
from mlrank.data.io import refuse_existing_outputs
from mlrank.data.layout import layouts_found
from mlrank.engine.config import Config, CrossTestSet, config_from_dict, config_to_dict
from mlrank.engine.distributed import cleanup, init_distributed
from mlrank.engine.locks import command_line, command_words, output_lock
from mlrank.engine.methods import Method
from mlrank.engine.runs import atomic_write_json, atomic_write_text
from mlrank.evaluate import load_model
from mlrank.train import check_paths

# (column, metric key) of the table, after the set's name, videos and frames
COLUMNS = (("frame AUC", "auc"), ("video AUC", "video_auc"), ("EER", "eer"), ("AP", "ap"))
_SET_DATA_KEYS = ("kind", "root", "json_path", "json_prefix", "lmdb_path")


def set_config(cfg: Config, test_set: CrossTestSet) -> Config:
    """The config that reads ``test_set`` (see the module notes for which keys it takes from ``cfg``),
    or a ValueError when the set names no data of its own."""
    given = {key: getattr(test_set, key) for key in _SET_DATA_KEYS if getattr(test_set, key) is not None}
    dataset_name = test_set.dataset_name or test_set.name
    kind = given.get("kind") or _kind_from_keys(given)
    if kind is None:
        if cfg.data.kind != "deepfakebench":
            raise ValueError(
                f"names no data of its own (no kind, root, json_path or lmdb_path), and the checkpoint was trained "
                f"on data.kind {cfg.data.kind!r}, whose data is one set: give kind=frames with root=..., or "
                f"kind=deepfakebench with json_path=..."
            )
        kind = "deepfakebench"
    if kind == "deepfakebench" and "json_path" not in given:
        inherited = cfg.data.json_path
        if cfg.data.kind != "deepfakebench" or inherited is None:
            raise ValueError("kind deepfakebench needs json_path= (the checkpoint has no DeepfakeBench index)")
        if not Path(inherited).is_dir() and not _index_holds(inherited, dataset_name):
            raise ValueError(
                f"names no index of its own, and the checkpoint's data.json_path {inherited} is one index file "
                f"without the data set {dataset_name!r}: give json_path=... (a <data set>.json or its folder)"
            )
    if kind == "frames" and "root" not in given:
        raise ValueError("kind frames needs root= (the folder holding <split>/real and <split>/fake)")
    inherited_keys = {} if kind != "deepfakebench" or cfg.data.kind != "deepfakebench" else {
        key: getattr(cfg.data, key) for key in _SET_DATA_KEYS if key != "kind" and key not in given}
    keys = {**{key: None for key in _SET_DATA_KEYS}, **inherited_keys, **given, "kind": kind}
    data = dataclasses.replace(cfg.data, **keys, dataset_name=dataset_name, test_dataset_name=None)
    return dataclasses.replace(cfg, data=data)


def _kind_from_keys(given: dict[str, Any]) -> str | None:
    """The layout a set's own keys name: an index or LMDB is DeepfakeBench's; a root alone is frame
    folders when laid out so; None when the set names no data."""
    if "json_path" in given or "lmdb_path" in given:
        return "deepfakebench"
    if "root" in given:
        return "frames" if "frames" in layouts_found(given["root"]) else "deepfakebench"
    return None


def _index_holds(json_path: str, dataset_name: str) -> bool:
    import json

    try:
        return dataset_name in json.loads(Path(json_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False


def data_identity(cfg: Config, split: str) -> tuple:
    """What a set reads, for finding two sets that read the same data."""
    data = cfg.data
    index = data.json_path
    if index is not None and Path(index).is_dir():  # DeepfakeBench's folder: the set's own file in it
        index = str(Path(index) / f"{data.dataset_name}.json")
    paths = tuple(None if value is None else os.path.realpath(value) for value in (data.root, index, data.lmdb_path))
    return data.kind, paths, data.json_prefix, data.dataset_name, split


def parse_set(text: str) -> dict[str, str]:
    """``name=N,kind=K,...`` as a mapping (checked later, as a config section)."""
    fields: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set {text!r}: expected comma-separated key=value pairs, got {part!r}")
        fields[key.strip()] = value.strip()
    return fields


def chosen_sets(cfg: Config, names: Sequence[str] | None, added: Sequence[str]) -> tuple[Config, list[CrossTestSet]]:
    """(cfg with the --set sets appended, checked like a file; the sets to evaluate)."""
    raw = config_to_dict(cfg)
    raw["data"]["cross_test_sets"] += [parse_set(text) for text in added]
    cfg = config_from_dict(raw)
    sets = cfg.data.cross_test_sets
    if names:
        known = [test_set.name for test_set in sets]
        unknown = [name for name in names if name not in known]
        if unknown:
            raise ValueError(f"--sets: no test set named {unknown}; data.cross_test_sets has {known}")
        sets = [test_set for test_set in sets if test_set.name in names]
    if not sets:
        raise ValueError("no test sets: list them in the config key data.cross_test_sets, or give --set")
    return cfg, sets


def build_sets(cfg: Config, method: Method, sets: Sequence[CrossTestSet]) -> list[tuple[CrossTestSet, Config, Any]]:
    """(set, its config, its evaluation data set) for each set, every path checked first, and no two
    sets reading the same data."""
    built, read_by = [], {}
    for test_set in sets:
        try:
            set_cfg = set_config(cfg, test_set)
            identity = data_identity(set_cfg, test_set.split)
            if identity in read_by:
                raise ValueError(f"reads the same data as test set {read_by[identity]!r}: list each set once")
            read_by[identity] = test_set.name
            check_paths(set_cfg)
            built.append((test_set, set_cfg, method.evaluation_dataset(set_cfg, test_set.split)))
        except (ValueError, TypeError, FileNotFoundError, NotADirectoryError, IsADirectoryError) as error:
            raise type(error)(f"test set {test_set.name!r}: {error}") from None
    return built


def table_rows(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """{"sets": results, "mean": {metric: mean over the sets, None unless every set has it}}."""
    mean: dict[str, float | None] = {}
    for _, key in COLUMNS:
        values = [result["metrics"].get(key) for result in results]
        mean[key] = None if any(_missing(value) for value in values) else sum(values) / len(values)
    return {"sets": list(results), "mean": mean}


def markdown_table(table: dict[str, Any], checkpoint: str) -> str:
    header = ["test set", "videos", "frames", *(title for title, _ in COLUMNS)]
    lines = [
        f"Cross-data-set evaluation of `{checkpoint}`",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for result in table["sets"]:
        cells = [result["name"], str(result["videos"]), str(result["frames"])]
        cells += [_number(result["metrics"].get(key)) for _, key in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("| mean | | | " + " | ".join(_number(table["mean"][key]) for _, key in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _number(value: Any) -> str:
    return "n/a" if _missing(value) else f"{value:.4f}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlrank.crosseval", description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", help="a best.pt or last.pt of a binary or SeeABLE run")
    parser.add_argument("--sets", nargs="+", metavar="NAME", help="evaluate only these of data.cross_test_sets")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE,...",
                        help="add a test set, e.g. name=DFDC,json_path=/data/dataset_json,root=/data/rgb")
    parser.add_argument("--output", help="BASE of BASE.md and BASE.json (default: <checkpoint>_crosseval)")
    parser.add_argument("--overwrite", action="store_true", help="replace BASE.md and BASE.json if they exist")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_intermixed_args(argv)

    base = args.output or str(Path(args.checkpoint).with_suffix("")) + "_crosseval"
    ctx = init_distributed()
    try:
        with output_lock(base, command_line(command_words("mlrank.crosseval", argv)),
                         enabled=ctx.is_main):
            return evaluate_sets(args, base, ctx)
    finally:
        cleanup(ctx)


def evaluate_sets(args: argparse.Namespace, base: str, ctx: Any) -> int:
    """crosseval's work, with BASE locked: every set built and checked, then scored, then the table."""
    outputs = [Path(f"{base}.json"), Path(f"{base}.md")]
    if not args.overwrite:
        refuse_existing_outputs([path for path in outputs if path.exists()])
    cfg, method, model = load_model(args.checkpoint, args.overrides, ctx.device)
    if not method.gives_binary_metrics(cfg):
        raise ValueError(
            f"{args.checkpoint} was trained on data.kind {cfg.data.kind!r}: crosseval needs a binary "
            "detector (data.kind deepfakebench or frames) or a SeeABLE model"
        )
    cfg, sets = chosen_sets(cfg, args.sets, args.set)
    results = []
    for test_set, set_cfg, dataset in build_sets(cfg, method, sets):
        metrics = method.evaluate(set_cfg, model, dataset, ctx, test_set.name)
        video_ids = dataset.video_ids()
        results.append({
            "name": test_set.name,
            "data": {key: getattr(set_cfg.data, key) for key in (*_SET_DATA_KEYS, "dataset_name")}
            | {"split": test_set.split},
            "videos": len(set(video_ids)),
            "frames": len(video_ids),
            "metrics": metrics,
        })
    if ctx.is_main:
        table = table_rows(results)
        markdown = markdown_table(table, args.checkpoint)
        atomic_write_json(f"{base}.json", {"checkpoint": str(args.checkpoint), **table})
        atomic_write_text(f"{base}.md", markdown)
        print(markdown, end="")
        print(f"written to {base}.md and {base}.json")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
