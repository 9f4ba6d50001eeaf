"""Sequence metrics with bootstrap intervals for trained runs, and each run against a reference.

    python -m studies.intervals NAME=RUN [NAME=RUN ...] [--split test] [--reference NAME]
        [--rounds 2000] [--output FILE.json] [key=value ...]

``--output FILE.json`` also writes ``FILE.md``: the tables docs/results.md embeds (each run with the
command that trained it, its machine and date, from its run.json).

For each run folder it predicts the split once per checkpoint the protocol reads (Fixed-Acc from
best_fixed.pt, Adaptive-Acc from best_adaptive.pt, the rest from best.pt, as test_metrics.json
does), and writes every metric with its 95% percentile interval over the images
(:mod:`mlrank.task.bootstrap`), the paired interval of its difference to the reference run, and the
image-blind chance levels of the split: every image called genuine, all five components listed in
a fixed order, and a sequence drawn from the split's own labels at random (the labels shuffled
across images, averaged over 20 shuffles). ``key=value`` overrides change the data side (as
``mlrank.evaluate``'s). Choose settings on ``--split val``; read the test split once.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from mlrank.cli import run_cli
from mlrank.engine.distributed import init_distributed
from mlrank.engine.runs import RunFolder, atomic_write_json, atomic_write_text, machine_facts
from mlrank.evaluate import load_model
from mlrank.ranking import method as ranking
from mlrank.ranking.decoding import edit_order_scores
from mlrank.task import bootstrap

SOURCES = {"fixed_acc": "best_fixed", "adaptive_acc": "best_adaptive"}  # the rest: best
SHUFFLES = 20


def predict_terms(folder: Path, split: str, overrides: Sequence[str]) -> tuple[dict[str, np.ndarray], torch.Tensor, dict]:
    """(each metric's per-image terms from its protocol checkpoint, the split's true sequences, the run's config)."""
    run = RunFolder(folder, is_main=False)
    terms: dict[str, np.ndarray] = {}
    cache: dict[str, dict[str, np.ndarray]] = {}
    labels, cfg = None, None
    for metric in bootstrap.METRICS:
        name = SOURCES.get(metric, "best")
        if not run.checkpoint_path(name).is_file():
            name = "best"
        if name not in cache:
            cfg, _, model = load_model(run.checkpoint_path(name), overrides)
            dataset = ranking.evaluation_dataset(cfg, split)
            predictions = ranking.predict_split(cfg, model, dataset, init_distributed(use_cuda=False), name)
            order = edit_order_scores(predictions["logits"], from_logits=True,
                                      last_edit_highest=cfg.model.last_edit_highest,
                                      order_scores=predictions.get("order_scores"))
            cache[name] = bootstrap.per_image_terms(predictions["sequences"], predictions["labels"], order)
            labels = predictions["labels"]
        terms[metric] = cache[name][metric]
    return terms, labels, {"config": str(run.config_path), **run_facts(run)}


# Overrides that change where files are, not what is trained: left out of a table's command.
NOT_IN_COMMAND = ("output_dir=", "data.synthetic_cache_dir=", "data.num_workers=")
FOLDER_OPTIONS = ("--output-dir",)  # options whose value is a folder: left out with it


def recorded_command(argv: list[str]) -> str:
    """The command of a run.json's ``argv``, as a user types it, without where its files went.

    The first word is the program: ``python -m mlrank.train`` (mlrank.engine.locks.command_words),
    or in older run folders the script's path (``.../mlrank/ablate.py``: the run is a row of an
    ablation, and the ablation's command trains it) or, for a run started from Python, already an
    argument of mlrank.train."""
    program, *arguments = argv or ["python -m mlrank.train"]
    if program.endswith(".py"):
        program = f"python -m mlrank.{Path(program).stem}"
    elif not program.startswith("python -m "):
        program, arguments = "python -m mlrank.train", argv
    left_out = NOT_IN_COMMAND + tuple(f"{option}=" for option in FOLDER_OPTIONS)
    kept, words = [], iter(arguments)
    for argument in words:
        if argument in FOLDER_OPTIONS:
            next(words, None)  # and its value
        elif not argument.startswith(left_out):
            kept.append(argument)
    return " ".join([program, *kept])


def run_facts(run: RunFolder) -> dict[str, str]:
    """The command, machine and date of a run, from its run.json."""
    info = json.loads(run.run_info_path.read_text()) if run.run_info_path.is_file() else {}
    machine = info.get("machine") or {**machine_facts(), "measured_here": True}
    where = f"{machine['cpu']}, {machine['cores']} cores" + (f", {', '.join(machine['gpus'])}" if machine.get("gpus") else "")
    return {"command": recorded_command(info.get("argv", [])), "machine": where,
            "date": info.get("start_time", "")[:10]}


LABELS = {"fixed_acc": "Fixed-Acc", "adaptive_acc": "Adaptive-Acc", "multilabel_acc": "multi-label",
          "ordered_pairs": "ordered pairs", "kendall_tau": "Kendall tau"}


def markdown(results: dict[str, Any]) -> str:
    """The tables of a results JSON: each run with intervals, its difference to the reference, chance."""
    def cell(entry: dict[str, float]) -> str:
        return f"{entry['value']:.3f} [{entry['low']:.3f}, {entry['high']:.3f}]"

    metrics = list(LABELS)
    lines = [f"Split {results['split']} ({results['images']} images); 95% percentile bootstrap intervals over "
             f"images ({results['rounds']} rounds); each metric from the checkpoint Seq-DeepFake's protocol "
             "reads (Fixed-Acc from best_fixed.pt, Adaptive-Acc from best_adaptive.pt, the rest from best.pt).", "",
             "| run | " + " | ".join(LABELS[m] for m in metrics) + " | command | machine | date |",
             "|---" * (len(metrics) + 4) + "|"]
    for name, row in results["runs"].items():
        lines.append(f"| {name} | " + " | ".join(cell(row[m]) for m in metrics)
                     + f" | `{row['command']}` | {row['machine']} | {row['date']} |")
    lines += ["", f"Difference to **{results['reference']}** on the same images (paired bootstrap, 95%); "
              "an interval that holds 0 is no finding:", "",
              "| run | " + " | ".join(LABELS[m] for m in metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for name, row in results["runs"].items():
        if name != results["reference"]:
            lines.append(f"| {name} | " + " | ".join(
                f"{row[m]['difference']['value']:+.3f} [{row[m]['difference']['low']:+.3f}, "
                f"{row[m]['difference']['high']:+.3f}]" for m in metrics) + " |")
    chance_metrics = [m for m in metrics if m != "kendall_tau"]
    lines += ["", "Chance levels of this split (image-blind guesses; Kendall tau is 0 for any guess that ignores the "
              "image):", "", "| guess | " + " | ".join(LABELS[m] for m in chance_metrics) + " |",
              "|---" * (len(chance_metrics) + 1) + "|"]
    for guess, values in results["chance"].items():
        lines.append(f"| {guess} | " + " | ".join(f"{values[m]:.3f}" for m in chance_metrics) + " |")
    return "\n".join(lines) + "\n"



def chance_levels(labels: torch.Tensor, seed: int = 0) -> dict[str, dict[str, float]]:
    """The metrics of three image-blind guesses on a split's true sequences (see the module notes)."""
    count = labels.shape[0]
    zeros = torch.zeros(5)
    guesses = {
        "every image genuine": [torch.zeros_like(labels)],
        "all five, a fixed order": [torch.arange(1, 6).expand(count, 5)],
        "a random sequence of the labels": [labels[torch.randperm(count, generator=torch.Generator().manual_seed(seed + k))]
                                            for k in range(SHUFFLES)],
    }
    levels = {}
    for name, predictions in guesses.items():
        values = [{metric: bootstrap.pooled(terms)
                   for metric, terms in bootstrap.per_image_terms(pred, labels, zeros.expand(count, 5)).items()}
                  for pred in predictions]
        levels[name] = {metric: float(np.mean([v[metric] for v in values])) for metric in bootstrap.METRICS
                        if metric != "kendall_tau"}
    return levels


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studies.intervals", description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", metavar="NAME=RUN", help="a name and a run folder")
    parser.add_argument("--split", default="test", choices=["val", "test"])
    parser.add_argument("--reference", help="the run the others are compared with (default: the first)")
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--output", help="the results JSON")
    args, overrides = parser.parse_known_args(argv)
    runs = dict(item.split("=", 1) for item in args.runs if "=" in item and not item.split("=", 1)[0].count("."))
    overrides = [*overrides, *(item for item in args.runs if item.split("=", 1)[0].count("."))]
    reference = args.reference or next(iter(runs))
    if reference not in runs:
        raise ValueError(f"--reference {reference!r} is not one of the runs {list(runs)}")

    predicted = {name: predict_terms(Path(folder), args.split, overrides) for name, folder in runs.items()}
    labels = next(iter(predicted.values()))[1]
    indices = bootstrap.resample_indices(labels.shape[0], args.rounds, seed=0)
    results: dict[str, Any] = {"split": args.split, "images": int(labels.shape[0]), "rounds": args.rounds,
                               "reference": reference, "runs": {}, "chance": chance_levels(labels)}
    for name, (terms, run_labels, facts) in predicted.items():
        if not torch.equal(run_labels, labels):
            raise ValueError(f"run {name!r} was evaluated on other images than {next(iter(runs))!r}")
        row: dict[str, Any] = {"folder": runs[name], **facts}
        for metric in bootstrap.METRICS:
            low, high = bootstrap.interval(terms[metric], indices)
            row[metric] = {"value": bootstrap.pooled(terms[metric]), "low": low, "high": high}
            if name != reference:
                base = predicted[reference][0][metric]
                low, high = bootstrap.difference_interval(terms[metric], base, indices)
                row[metric]["difference"] = {"value": bootstrap.pooled(terms[metric]) - bootstrap.pooled(base),
                                             "low": low, "high": high}
        results["runs"][name] = row
    text = json.dumps(results, indent=2)
    if args.output:
        atomic_write_json(args.output, results)
        atomic_write_text(Path(args.output).with_suffix(".md"), markdown(results))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
