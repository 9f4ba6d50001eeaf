"""What decoding among a catalogue of sequences (``model.seen_sequences_only``) does when the truth is
always in it, as on Seq-DeepFake (28 component and 26 attribute sequences).

    python -m studies.seen_sequences RUN [--split val] [--catalogue 28] [--draws 10] [--output FILE.json]

``--output FILE.json`` also writes ``FILE.md``, the table docs/results.md embeds.

The built-in set uses all 326 sequences, so a model trained on it has seen every one and the
restriction changes nothing there (docs/method.md section 7). This study draws ``--draws`` random
catalogues of ``--catalogue`` sequences (the genuine one and ``catalogue - 1`` others), keeps the
split's images whose truth is in the catalogue, and decodes them with the model's own rule and
among the catalogue; it reports Fixed-Acc, Adaptive-Acc and ordered pairs both ways, pooled over
the draws, with the paired bootstrap interval of the difference (mlrank.task.bootstrap). The model
was trained on every sequence, so this measures what knowing the catalogue adds at decoding only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from mlrank.cli import run_cli
from mlrank.engine.locks import command_words
from mlrank.engine.runs import RunFolder, atomic_write_json, atomic_write_text
from mlrank.evaluate import load_model
from mlrank.ranking.decoding import branch_logits, decode_seen_sequences, distinct_sequences, edit_order_scores
from mlrank.ranking.method import decode_outputs, evaluation_dataset
from mlrank.task import bootstrap
from studies.intervals import run_facts

METRICS = ("fixed_acc", "adaptive_acc", "ordered_pairs")


@torch.no_grad()
def outputs_of(cfg: Any, model: torch.nn.Module, dataset: Any) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    keys = ("logits", "logits_patch", "logits_class", "count_logits", "order_scores")
    kept: dict[str, list[torch.Tensor]] = {}
    labels = []
    for images, sequences in DataLoader(dataset, batch_size=64):
        outputs = model(images)
        for key in keys:
            if key in outputs:
                kept.setdefault(key, []).append(outputs[key].float())
        labels.append(sequences)
    return {key: torch.cat(values) for key, values in kept.items()}, torch.cat(labels)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studies.seen_sequences", description=__doc__.split("\n")[0])
    parser.add_argument("run", help="a run folder (its best.pt is read)")
    parser.add_argument("--split", default="val", choices=["val", "test"])
    parser.add_argument("--catalogue", type=int, default=28)
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument("--output")
    args, overrides = parser.parse_known_args(argv)
    cfg, _, model = load_model(Path(args.run) / "best.pt", overrides)
    outputs, labels = outputs_of(cfg, model, evaluation_dataset(cfg, args.split))
    every = distinct_sequences(model.training_sequences)
    generator = np.random.default_rng(0)
    # Each image's terms summed over the draws whose catalogue holds its truth: an image in several
    # draws (the genuine ones are in all) is one unit of the bootstrap, not several.
    own_terms = {metric: np.zeros((len(labels), 2)) for metric in METRICS}
    restricted_terms = {metric: np.zeros((len(labels), 2)) for metric in METRICS}
    used = torch.zeros(len(labels), dtype=torch.bool)
    for _ in range(args.draws):
        others = generator.choice(np.arange(1, len(every)), size=args.catalogue - 1, replace=False)
        catalogue = distinct_sequences(every[[0, *others.tolist()]])
        inside = (labels.unsqueeze(1) == catalogue.unsqueeze(0)).all(dim=2).any(dim=1)
        used |= inside
        chosen = {key: value[inside] for key, value in outputs.items()}
        truth = labels[inside]
        own, _ = decode_outputs(cfg, chosen)
        restricted = decode_seen_sequences(branch_logits(chosen, cfg.model.decode_from), catalogue,
                                           count_logits=chosen.get("count_logits"), order_scores=chosen.get("order_scores"),
                                           last_edit_highest=cfg.model.last_edit_highest)
        order = edit_order_scores(chosen["logits"], from_logits=True, last_edit_highest=cfg.model.last_edit_highest)
        for terms, predicted in ((own_terms, own), (restricted_terms, restricted)):
            per_image = bootstrap.per_image_terms(predicted, truth, order)
            for metric in METRICS:
                terms[metric][inside.numpy()] += per_image[metric]
    images = int(used.sum())
    indices = bootstrap.resample_indices(images, 2000, seed=0)
    results: dict[str, Any] = {"run": args.run, "split": args.split, "catalogue": args.catalogue,
                               "draws": args.draws, "images": images, "metrics": {},
                               "command": " ".join(command_words("studies.seen_sequences", argv)),
                               **{key: value for key, value in run_facts(RunFolder(args.run, is_main=False)).items()
                                  if key != "command"}}
    for metric in METRICS:
        own, restricted = own_terms[metric][used.numpy()], restricted_terms[metric][used.numpy()]
        low, high = bootstrap.difference_interval(restricted, own, indices)
        results["metrics"][metric] = {"model's rule": bootstrap.pooled(own), "catalogue": bootstrap.pooled(restricted),
                                      "difference": bootstrap.pooled(restricted) - bootstrap.pooled(own),
                                      "interval": [low, high]}
    if args.output:
        atomic_write_json(args.output, results)
        atomic_write_text(Path(args.output).with_suffix(".md"), markdown(results))
    print(json.dumps(results, indent=2))
    return 0


LABELS = {"fixed_acc": "Fixed-Acc", "adaptive_acc": "Adaptive-Acc", "ordered_pairs": "ordered pairs"}


def markdown(results: dict[str, Any]) -> str:
    """The study's table: each metric decoded both ways and the difference with its interval."""
    lines = [f"{results['images']} images of the {results['split']} split whose sequence is in a random catalogue of "
             f"{results['catalogue']} sequences ({results['draws']} draws pooled); difference with its 95% paired "
             f"bootstrap interval. Command: `{results['command']}`; machine: {results.get('machine', 'n/a')}; "
             f"date: {results.get('date', 'n/a')}.", "",
             "| metric | the model's own rule | decoding among the catalogue | difference [95%] |",
             "|---|---|---|---|"]
    for metric, values in results["metrics"].items():
        low, high = values["interval"]
        own = values["model's rule"]
        lines.append(f"| {LABELS.get(metric, metric)} | {own:.3f} | {values['catalogue']:.3f} "
                     f"| {values['difference']:+.3f} [{low:+.3f}, {high:+.3f}] |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(run_cli(main))
