"""The paper's loss ablation (its Table 3) in one command:
``python -m mlrank.ablate [--config FILE_OR_NAME] [--output-dir DIR] [--rows NAME,...] [key=value ...]``.

Each row of ``ROWS`` is a normal training run (``mlrank.train.run``, the code path of
``python -m mlrank.train``) of the same config, seed, data and schedule with some loss terms switched
off, in its own subfolder ``DIR/<row name>``; its best checkpoint (chosen on the validation split)
is evaluated on the test split as training always does (``test_metrics.json``). The command then
writes one table of the rows, ``DIR/ablation.md`` and ``DIR/ablation.json`` (atomically, after every
row), and prints it. ``key=value`` overrides apply to every row, before the row's own switches.

Decisions:
- The first six rows are Table 3's rows I-VI: BCE^U alone (I, ranked by the patch branch's
  probabilities, ``model.decode_from: patch``, as the paper does: only that branch is trained), BCE^U
  with CLS (II), with Rank (III), with CLS and Rank (IV), BCE^V with CLS and Rank, without BCE^U (V),
  and all terms (VI) (docs/method.md section 6). Each has the order term beyond the paper (L_Order)
  off, the logits in the paper's order (``model.last_edit_highest`` false), no order or count head
  and no restriction of decoding, so they are the paper's losses whatever the base config says;
  rows II-VI decode the fused head. The package's own rows follow: BCE^U with BCE^V (a row the
  paper does not have), then four rows that add L_Order, at the config's
  ``loss.lambda_order`` (1 where the config has it off), to BCE^U alone and to all terms, each with
  the logits in the paper's order and with the latest edit highest (docs/method.md section 5), and
  two more give L_Order its own order head (``model.order_head``), the latest edit highest; every
  other row has the order head off (the fused logits order the edits). The last row is the synthetic
  default: all terms, L_Order, the latest edit highest and a count head (``model.count_head``);
  every other row has the count head off. A row switches terms *off* (weight 0) and leaves the
  weights of the terms it keeps at the config's values, so the ablation of a config that sets, say,
  lambda2 = 0.5 keeps 0.5 wherever Rank is on. A base config that has a term off already is an error:
  the rows that add it would be mislabelled.
- Rows are data: a new loss term adds its weight to ``term_weights`` and its rows to ``ROWS``;
  running the command again trains only the new rows. ``--rows`` names the rows to train and
  table (in ``ROWS``' order); by default every row.
- Resume: a row whose folder holds ``test_metrics.json`` is finished and not trained again (its
  config must be the one the row would use now, output_dir aside, or the command stops before
  training anything); a row with ``last.pt`` but no test metrics continues from it (``--resume``),
  and one stopped before its first checkpoint starts afresh in its folder, as ``--resume`` does.
- A row that fails (any exception) is reported in the table with its error (a user error as one
  line, a bug with its traceback on stderr), and the other rows go on; the exit status is then 1.
  Mistakes in the command itself (an unknown key, a bad folder) end it with one line, and Ctrl-C or
  SIGTERM with the word of the other commands (mlrank.cli). Under torchrun a failure ends the
  command, since the other processes cannot be told to skip the row.
- Only the multi-label ranking method with L >= 2 components (Seq-DeepFake-like sequences) has these terms
  and metrics; SeeABLE and binary configs are refused.
"""

from __future__ import annotations

import argparse
import datetime
import dataclasses
import json
import math
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from mlrank import train
from mlrank.cli import USER_ERRORS, one_line
from mlrank.engine.config import DEFAULT_CONFIG, Config, config_to_dict, load_config, resolve_config_path
from mlrank.engine.distributed import DistContext, cleanup, init_distributed
from mlrank.engine.locks import command_line, command_words, output_lock
from mlrank.engine.runs import RunFolder, atomic_write_json, atomic_write_text, machine_facts
from mlrank.ranking.method import METHOD as RANKING

TABLE_NAME = "ablation"
# (key in test_metrics.json, column heading)
METRIC_COLUMNS = (
    ("fixed_acc", "Fixed-Acc"),
    ("adaptive_acc", "Adaptive-Acc"),
    ("multilabel_acc", "multi-label acc"),
    ("ordered_pairs", "ordered pairs"),
    ("kendall_tau", "Kendall tau"),
)


@dataclass(frozen=True)
class AblationRow:
    """One training run of the ablation: its folder name, its label in the table, and the config
    overrides that switch its terms off."""

    name: str
    label: str
    overrides: tuple[str, ...]


CLS_OFF = "loss.lambda_cls=0"
BCE_CLASS_OFF = "loss.lambda_bce_class=0"
RANK_OFF = "loss.lambda2=0"
ORDER_OFF = "loss.lambda_order=0"
ORDER_ON = "loss.lambda_order=ON"  # the config's weight, or 1 where it has the term off (row_config)
DEFAULT_ORDER_WEIGHT = 1.0
FIRST_HIGHEST = "model.last_edit_highest=false"  # the paper's order of the logits
LATEST_HIGHEST = "model.last_edit_highest=true"
HEAD_OFF = "model.order_head=false"  # the fused logits order the edits, as in the paper
HEAD_ON = "model.order_head=true"
COUNT_OFF = "model.count_head=false"  # decoding thresholds each component, as in the paper
COUNT_ON = "model.count_head=true"
BCE_PATCH_OFF = "loss.lambda_bce_patch=0"
FUSED_DECODES = "model.decode_from=fused"  # the paper's inference head
PATCH_DECODES = "model.decode_from=patch"  # Table 3, row I: ranked by the patch branch
ANY_SEQUENCE = "model.seen_sequences_only=false"
PAPER = (ORDER_OFF, FIRST_HIGHEST, HEAD_OFF, COUNT_OFF, ANY_SEQUENCE)  # what every row of Table 3 has
PAPER_FUSED = (*PAPER, FUSED_DECODES)


def beyond(*switches: str) -> tuple[str, ...]:
    """A package row's switches: the given ones, the rest of the paper's settings (no order or count
    head, the paper's order of the logits, the fused head decoding any sequence) where not given."""
    given = {switch.partition("=")[0] for switch in switches}
    defaults = (HEAD_OFF, COUNT_OFF, FUSED_DECODES, ANY_SEQUENCE)
    return (*switches, *(switch for switch in defaults if switch.partition("=")[0] not in given))

ROWS: list[AblationRow] = [
    # The paper's Table 3, rows I-VI.
    AblationRow("bce_u", "I: BCE^U only", (CLS_OFF, BCE_CLASS_OFF, RANK_OFF, *PAPER, PATCH_DECODES)),
    AblationRow("bce_u_cls", "II: BCE^U + CLS", (BCE_CLASS_OFF, RANK_OFF, *PAPER_FUSED)),
    AblationRow("bce_u_rank", "III: BCE^U + Rank", (CLS_OFF, BCE_CLASS_OFF, *PAPER_FUSED)),
    AblationRow("bce_u_cls_rank", "IV: BCE^U + CLS + Rank", (BCE_CLASS_OFF, *PAPER_FUSED)),
    AblationRow("bce_v_cls_rank", "V: BCE^V + CLS + Rank", (BCE_PATCH_OFF, *PAPER_FUSED)),
    AblationRow("all_terms", "VI: all terms", PAPER_FUSED),
    # Beyond the paper: both BCE branches alone.
    AblationRow("bce_u_bce_v", "BCE^U + BCE^V", (CLS_OFF, RANK_OFF, *PAPER_FUSED)),
    # Beyond the paper: the order term, with the logits in the paper's order and the other way.
    AblationRow("bce_u_order", "+ Order", (CLS_OFF, BCE_CLASS_OFF, RANK_OFF, *beyond(ORDER_ON, FIRST_HIGHEST))),
    AblationRow("all_terms_order", "all terms + Order", beyond(ORDER_ON, FIRST_HIGHEST)),
    AblationRow("bce_u_order_latest", "+ Order, latest edit highest",
                (CLS_OFF, BCE_CLASS_OFF, RANK_OFF, *beyond(ORDER_ON, LATEST_HIGHEST))),
    AblationRow("all_terms_order_latest", "all terms + Order, latest edit highest", beyond(ORDER_ON, LATEST_HIGHEST)),
    # Beyond the paper: L_Order on an order head of its own, the fused logits only detecting.
    AblationRow("bce_u_order_head", "+ Order head, latest edit highest",
                (CLS_OFF, BCE_CLASS_OFF, RANK_OFF, *beyond(ORDER_ON, LATEST_HIGHEST, HEAD_ON))),
    AblationRow("all_terms_order_head", "all terms + Order head, latest edit highest",
                beyond(ORDER_ON, LATEST_HIGHEST, HEAD_ON)),
    # Beyond the paper: a count head decides how many components to keep (the synthetic default).
    AblationRow("all_terms_order_count", "all terms + Order + count head, latest edit highest",
                beyond(ORDER_ON, LATEST_HIGHEST, COUNT_ON)),
]


def term_weights(cfg: Config) -> dict[str, float]:
    """The weight each loss term gets in L_Total under ``cfg`` (0: off); see mlrank.ranking.losses."""
    loss = cfg.loss
    return {
        "BCE^U": loss.lambda1 * loss.lambda_bce_patch,
        "BCE^V": loss.lambda1 * loss.lambda_bce_class,
        "CLS": loss.lambda_cls,
        "Rank": loss.lambda2,
        "Order": loss.lambda_order,
        "latest highest": float(cfg.model.last_edit_highest),  # not a weight: how the logits order edits
        "order head": float(cfg.model.order_head),  # not a weight: what L_Order ranks
        "count head": float(cfg.model.count_head),  # not a weight: how many components decoding keeps
        "patch decodes": float(cfg.model.decode_from == "patch"),  # not a weight: Table 3 row I's ranking
    }


# not loss terms the paper trains: a base config may have them off
BEYOND_THE_PAPER = ("Order", "latest highest", "order head", "count head", "patch decodes")


def check_base_config(cfg: Config) -> None:
    """Refuse configs the ablation does not apply to, or whose terms are not all on."""
    if cfg.method != RANKING.name:  # the terms ablated are the multi-label ranking model's loss
        raise ValueError(f"the loss ablation is for method {RANKING.name!r}, the config has method {cfg.method!r}")
    if cfg.model.num_classes < 2:
        raise ValueError(
            f"the loss ablation needs L >= 2 components (model.num_classes = {cfg.model.num_classes}): "
            "binary detection has no rank loss and no sequence metrics"
        )
    off = [term for term, weight in term_weights(cfg).items() if weight == 0 and term not in BEYOND_THE_PAPER]
    if off:
        raise ValueError(
            f"the base config switches off {off} (loss.lambda_cls, loss.lambda1, loss.lambda_bce_patch, "
            "loss.lambda_bce_class, loss.lambda2); the ablation switches terms off itself: start from a "
            "config with every term on"
        )


def row_switches(config: str | Path | None, overrides: Sequence[str], row: AblationRow) -> list[str]:
    """The row's switches as ``python -m mlrank.train`` overrides, to follow the user's
    (``ORDER_ON`` resolved to a weight)."""
    base_order = load_config(config, overrides).loss.lambda_order or DEFAULT_ORDER_WEIGHT
    return [f"loss.lambda_order={base_order}" if switch == ORDER_ON else switch for switch in row.overrides]


def row_config(
    config: str | Path | None, overrides: Sequence[str], row: AblationRow, output_dir: Path
) -> Config:
    """The config of one row: the base config, the user's overrides, the row's switches, its folder."""
    cfg = load_config(config, [*overrides, *row_switches(config, overrides, row)])
    return dataclasses.replace(cfg, output_dir=str(output_dir / row.name))


def _without_output_dir(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if key != "output_dir"}


def check_existing_run(cfg: Config, row: AblationRow) -> None:
    """A row folder that holds a run must hold this row's config (output_dir aside)."""
    run_folder = RunFolder(cfg.output_dir, is_main=False)
    if not run_folder.config_path.is_file():
        return
    existing = config_to_dict(load_config(run_folder.config_path))
    planned = config_to_dict(cfg)
    if _without_output_dir(existing) != _without_output_dir(planned):
        changed = sorted(key for key in planned if key != "output_dir" and existing.get(key) != planned[key])
        raise ValueError(
            f"ablation row {row.name!r}: {run_folder.path} holds a run with another config (it differs in "
            f"{changed}); give another --output-dir, or the config and overrides that run was trained with"
        )


def train_row(cfg: Config, argv: Sequence[str], ctx: DistContext) -> tuple[str, dict[str, Any]]:
    """("reused" or "trained", the row's test metrics as in its test_metrics.json): trains, resumes,
    or reads a finished row."""
    run_folder = RunFolder(cfg.output_dir, is_main=False)
    finished = run_folder.path / "test_metrics.json"
    if finished.is_file():
        return "reused", json.loads(finished.read_text(encoding="utf-8"))
    # A row stopped before its first checkpoint (a kill in epoch 0) starts afresh in its folder, as
    # training's --resume does; one with last.pt continues from it.
    metrics = train.run(cfg, True, argv, ctx)
    # The main process wrote the file (which also names the checkpoint); the others have the numbers.
    return "trained", json.loads(finished.read_text(encoding="utf-8")) if ctx.is_main else metrics


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return "n/a"
    return f"{value:.4f}"


def _weight(value: float) -> str:
    return f"{value:g}"


def format_markdown(results: list[dict[str, Any]], header: str) -> str:
    """The table: one line per row, the terms' weights, the test metrics and the row's status."""
    terms = list(results[0]["terms"]) if results else []
    columns = ["row", *terms, *(heading for _, heading in METRIC_COLUMNS), "status"]
    lines = [header, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for result in results:
        metrics = result["metrics"] or {}
        status = result["status"] if result["error"] is None else f"failed: {result['error']}"
        cells = [
            result["label"],
            *(_weight(weight) for weight in result["terms"].values()),
            *(_number(metrics.get(key)) for key, _ in METRIC_COLUMNS),
            status.replace("|", "\\|").replace("\n", " "),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_table(output_dir: Path, summary: dict[str, Any]) -> str:
    """Write ablation.json and ablation.md atomically; returns the Markdown."""
    header = (
        "# Loss ablation (docs/method.md section 6, the paper's Table 3)\n\n"
        f"Config: {summary['config'] or 'the engine defaults (the paper, on the synthetic set)'}; overrides: "
        f"{' '.join(summary['overrides']) or 'none'}. Each row's best checkpoint (on the validation "
        "split), on the test split; the term columns are each loss term's weight in L_Total."
        + "".join(f" {label}: {summary[key]}." for key, label in (("command", "Command"), ("machine", "Machine"),
                                                                 ("date", "Date")) if summary.get(key))
    )
    markdown = format_markdown(summary["rows"], header)
    atomic_write_json(output_dir / f"{TABLE_NAME}.json", summary)
    atomic_write_text(output_dir / f"{TABLE_NAME}.md", markdown)
    return markdown


def default_output_dir(cfg: Config) -> Path:
    """``<the config's output_dir>_ablation``, beside the config's own run."""
    base = Path(cfg.output_dir)
    return base.with_name(f"{base.name}_ablation")


def run_ablation(
    config: str | Path | None,
    overrides: Sequence[str],
    output_dir: Path | None,
    argv: Sequence[str],
    ctx: DistContext,
    rows: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Train (or reuse) every row of ``ROWS``, or those named in ``rows`` (in ``ROWS``' order);
    returns the summary written to ablation.json. The ablation's folder is locked for the whole
    command (:mod:`mlrank.engine.locks`), each row's run folder by its training."""
    if any(override.partition("=")[0].strip() == "output_dir" for override in overrides):
        raise ValueError(
            "give the ablation's folder as --output-dir, not output_dir=...; each row gets a subfolder"
        )
    base = load_config(config, overrides)
    folder = default_output_dir(base) if output_dir is None else Path(output_dir)
    with output_lock(folder, command_line(list(argv)), enabled=ctx.is_main):
        return _run_ablation(config, overrides, base, folder, argv, ctx, rows)


def _run_ablation(
    config: str | Path | None,
    overrides: Sequence[str],
    base: Config,
    output_dir: Path,
    argv: Sequence[str],
    ctx: DistContext,
    rows: Sequence[str] | None,
) -> dict[str, Any]:
    """run_ablation's work, with the ablation's folder ``output_dir`` locked; ``base`` is the
    config every row starts from."""
    check_base_config(base)
    if output_dir.exists() and not output_dir.is_dir():
        raise NotADirectoryError(f"--output-dir {output_dir} exists and is not a folder")
    names = [row.name for row in ROWS]
    if len(set(names)) != len(names):
        raise ValueError(f"ablation rows must have distinct names, got {names}")
    unknown = sorted(set(rows or ()) - set(names))
    if unknown:
        raise ValueError(f"unknown ablation row(s) {unknown}; the rows are {names}")
    selected = [row for row in ROWS if rows is None or row.name in rows]
    planned = [(row, row_config(config, overrides, row, output_dir)) for row in selected]
    for row, cfg in planned:
        check_existing_run(cfg, row)

    machine = machine_facts()
    summary: dict[str, Any] = {
        "config": None if config is None else str(config),
        "overrides": list(overrides),
        "command": " ".join(argv),
        "machine": f"{machine['cpu']}, {machine['cores']} cores" + "".join(f", {gpu}" for gpu in machine["gpus"]),
        "date": datetime.date.today().isoformat(),
        "rows": [],
    }
    for row, cfg in planned:
        result = {
            "name": row.name,
            "label": row.label,
            "overrides": list(row.overrides),
            "folder": cfg.output_dir,
            "terms": term_weights(cfg),
            "status": None,
            "error": None,
            "metrics": None,
        }
        try:
            result["status"], result["metrics"] = train_row(cfg, argv, ctx)
        except Exception as error:  # a failed row is reported; the others still run
            if ctx.distributed:
                raise
            result["status"], result["error"] = "failed", f"{type(error).__name__}: {one_line(error)}"
            if isinstance(error, USER_ERRORS):  # a mistake in the row's data or config: one line
                print(f"ablation row {row.name!r} failed: {one_line(error)}", file=sys.stderr, flush=True)
            else:  # a bug: its traceback
                print(f"ablation row {row.name!r} failed:", file=sys.stderr, flush=True)
                traceback.print_exc()
        summary["rows"].append(result)
        if ctx.is_main:
            write_table(output_dir, summary)
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: 0 when every row has its test metrics, 1 when some row failed."""
    parser = argparse.ArgumentParser(prog="python -m mlrank.ablate", description=__doc__.split("\n")[0])
    parser.add_argument("--config", help=f"a YAML file or the name of a shipped config (default: {DEFAULT_CONFIG})")
    parser.add_argument("--output-dir", help="the ablation's folder (default: <config's output_dir>_ablation)")
    parser.add_argument(
        "--rows", help="comma-separated row names to train and table (default: every row), e.g. bce_u,all_terms"
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value", help="applied to every row, e.g. optim.epochs=8"
    )
    args = parser.parse_args(argv)
    config = resolve_config_path(args.config or DEFAULT_CONFIG)
    ctx = init_distributed()
    try:
        summary = run_ablation(
            config,
            args.overrides,
            None if args.output_dir is None else Path(args.output_dir),
            command_words("mlrank.ablate", argv),
            ctx,
            None if args.rows is None else [name.strip() for name in args.rows.split(",") if name.strip()],
        )
    finally:
        cleanup(ctx)
    failed = [row["name"] for row in summary["rows"] if row["error"] is not None]
    if ctx.is_main:
        print(format_markdown(summary["rows"], f"Loss ablation ({len(summary['rows'])} rows):"), end="")
        if failed:
            print(
                f"{len(failed)} row(s) failed: {', '.join(failed)}; run the command again to retry them",
                file=sys.stderr,
            )
    return 1 if failed else 0


if __name__ == "__main__":
    from mlrank.cli import run_cli

    sys.exit(run_cli(main))
