"""Draw a run's curves: ``python -m mlrank.plot RUN [--output FILE] [--overwrite]``.

One PNG (default ``RUN/curves.png``) of four panels drawn from ``RUN/metrics.jsonl``, one point per
epoch: the training losses (every ``loss_*`` term, the total in black), the learning rate (``lr``,
the heads'; the backbone's is ``optim.backbone_lr_scale`` times it), the validation metrics (every
numeric ``val_*`` key, the epoch of ``best.pt`` marked) and the rest (images/s). Lists (the
per-component order R^2) are left out, and so are null values (an order metric undefined on a
split): a curve skips such epochs, as it skips epochs without validation (``train.eval_every``).
NaN and infinite values (a diverged loss) are marked with an "x" and their value at the panel's
edge, not left out. A log that holds an epoch twice (two runs writing one folder, before the lock
of ``mlrank.engine.locks``) is refused, naming the lines.

Decisions:
- A run still training can be drawn at any time: the log is read as ``RunFolder.read_metrics``
  reads it, so a last line the trainer is still writing (no newline yet) is left out.
- The default output is the run's own ``curves.png``, redrawn (replaced atomically) at every call,
  since it holds nothing but a view of the log; any other existing file is replaced only with
  ``--overwrite``. The output must be a .png file.
- Pictures are drawn with matplotlib, an optional dependency (``pip install matplotlib``), through
  its object-oriented API (``Figure``, no pyplot), so nothing depends on a display or a global
  backend. ``new_figure`` and ``png_bytes`` are shared with ``mlrank.explain``.
"""

from __future__ import annotations

import argparse
import io
import math
import sys
from pathlib import Path
from typing import Any, Sequence

from mlrank.cli import run_cli
from mlrank.engine.runs import RunFolder, atomic_write_bytes
from mlrank.optional import require

CURVES_NAME = "curves.png"
PANELS = ("training losses", "learning rate", "validation", "images/s and other")


def new_figure(width: float, height: float, needed_for: str) -> Any:
    """A matplotlib Figure of ``width`` x ``height`` inches (constrained layout), or a MissingDependency
    naming ``needed_for`` and ``pip install matplotlib``."""
    figure_module = require("matplotlib.figure", "matplotlib", needed_for)
    return figure_module.Figure(figsize=(width, height), layout="constrained")


def png_bytes(figure: Any, dpi: int = 100) -> bytes:
    """The figure encoded as PNG."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def read_run_metrics(run: str | Path) -> list[dict[str, Any]]:
    """The complete records of ``RUN/metrics.jsonl``; a clear error for a missing folder, log or record."""
    folder = RunFolder(run)
    if not folder.path.exists():
        raise FileNotFoundError(f"run folder {folder.path} does not exist")
    if not folder.path.is_dir():
        raise NotADirectoryError(f"{folder.path} is not a run folder (give the folder that holds metrics.jsonl)")
    if not folder.metrics_path.is_file():
        raise FileNotFoundError(
            f"{folder.path} holds no metrics.jsonl: not a run folder, or its first epoch has not finished yet"
        )
    lines = folder.read_metric_lines()
    if not lines:
        raise ValueError(f"{folder.metrics_path} holds no complete epoch record yet: nothing to draw")
    lines_of: dict[int, list[int]] = {}
    for number, record in lines:
        lines_of.setdefault(record["epoch"], []).append(number)
    repeated = {epoch: numbers for epoch, numbers in lines_of.items() if len(numbers) > 1}
    if repeated:
        shown = "; ".join(f"epoch {epoch} at lines {numbers}" for epoch, numbers in sorted(repeated.items()))
        raise ValueError(
            f"{folder.metrics_path} logs an epoch more than once ({shown}): two runs wrote one log, or it was "
            "edited; a resumed run's log holds each epoch once"
        )
    return [record for _, record in lines]


def panel_of(key: str) -> str | None:
    """Which of PANELS a record key is drawn in (None: not a curve)."""
    if key in ("epoch", "best"):
        return None
    if key.startswith("loss_"):
        return PANELS[0]
    if key == "lr":
        return PANELS[1]
    if key.startswith("val_"):
        return PANELS[2]
    return PANELS[3]


def curves(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, tuple[list[int], list[float]]]]:
    """{panel: {key: (epochs, values)}}: every number (not a flag, null or list) by key."""
    drawn: dict[str, dict[str, tuple[list[int], list[float]]]] = {panel: {} for panel in PANELS}
    for record in records:
        for key, value in record.items():
            panel = panel_of(key)
            if panel is None or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            epochs, values = drawn[panel].setdefault(key, ([], []))
            epochs.append(record["epoch"])
            values.append(float(value))
    return drawn


def mark_non_finite(ax: Any, epochs: list[int], values: list[float], colour: str) -> None:
    """Mark a curve's NaN and infinite values, which a line leaves out silently: an "x" at the
    panel's top (NaN, +inf) or bottom (-inf), labelled with the value."""
    for epoch, value in zip(epochs, values):
        if math.isfinite(value):
            continue
        at_top = not value < 0
        ax.plot([epoch], [1.0 if at_top else 0.0], marker="x", markersize=9, color=colour, clip_on=False,
                transform=ax.get_xaxis_transform())
        ax.annotate("NaN" if math.isnan(value) else ("inf" if value > 0 else "-inf"), (epoch, 1.0 if at_top else 0.0),
                    xycoords=ax.get_xaxis_transform(), textcoords="offset points", xytext=(3, -10 if at_top else 3),
                    fontsize=7, color=colour)


def draw_curves(records: Sequence[dict[str, Any]], title: str) -> Any:
    """The figure of ``curves(records)``: four panels over the epochs."""
    figure = new_figure(12, 8, "python -m mlrank.plot")
    figure.suptitle(title)
    axes = figure.subplots(2, 2, sharex=True).ravel()
    best_epochs = [record["epoch"] for record in records if record.get("best") is True]
    for ax, (panel, series) in zip(axes, curves(records).items()):
        ax.set_title(panel)
        if ax in axes[2:]:
            ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        if not series:
            ax.text(0.5, 0.5, "nothing logged yet", ha="center", va="center", transform=ax.transAxes)
            continue
        for key, (epochs, values) in series.items():
            total = key == "loss_total"
            line, = ax.plot(epochs, values, marker="." if len(epochs) < 50 else None, label=key,
                            color="black" if total else None, linewidth=2.5 if total else 1.5)
            mark_non_finite(ax, epochs, values, line.get_color())
        values = [value for _, points in series.values() for value in points if math.isfinite(value)]
        if panel == PANELS[0] and values and all(value > 0 for value in values):
            ax.set_yscale("log")  # the terms differ by orders of magnitude
        if panel == PANELS[2] and best_epochs:
            ax.axvline(best_epochs[-1], color="grey", linestyle=":", label=f"best.pt (epoch {best_epochs[-1]})")
        ax.legend(fontsize=7)
    return figure


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlrank.plot", description=__doc__.split("\n")[0])
    parser.add_argument("run", help="a run folder (its metrics.jsonl), finished or still training")
    parser.add_argument("--output", help=f"the PNG to write (default: RUN/{CURVES_NAME}, redrawn every time)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    args = parser.parse_args(argv)

    require("matplotlib.figure", "matplotlib", "python -m mlrank.plot")  # before reading anything
    records = read_run_metrics(args.run)
    default = Path(args.run) / CURVES_NAME
    output = Path(args.output) if args.output else default
    if output.suffix.lower() != ".png":
        raise ValueError(f"--output {output} must be a .png file")
    if output.is_dir():
        raise IsADirectoryError(f"--output {output} is a folder; name the PNG file to write")
    if output.exists() and output.resolve() != default.resolve() and not args.overwrite:
        raise FileExistsError(f"--output {output} already exists; pass --overwrite to replace it")
    folder = RunFolder(args.run)
    state = "finished" if folder.test_metrics_path.is_file() else "running or stopped"
    title = f"{folder.path.resolve().name}: {len(records)} epoch(s) logged ({state})"
    atomic_write_bytes(output, png_bytes(draw_curves(records, title)))
    print(f"curves of {len(records)} epoch(s) written to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
