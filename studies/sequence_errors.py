"""Where a multi-label ranking checkpoint's sequence errors are:

    python -m studies.sequence_errors RUN/best.pt [--split test] [key=value ...]

Prints, per number of edits, how many images get the set of edited components exactly right; which
edits are missed, by their position in the true sequence; how many untouched components are called
edited; and, given the true set, the share of its ordered pairs that the model's order scores (what
decoding reads) put right, so that detection and ordering errors can be told apart.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections import Counter

import torch

from mlrank.engine.distributed import init_distributed
from mlrank.evaluate import load_model
from mlrank.ranking.decoding import edit_order_scores
from mlrank.ranking.method import predict_split
from mlrank.task.sequences import sequence_targets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_intermixed_args(argv)
    cfg, method, model = load_model(args.checkpoint, args.overrides)
    predictions = predict_split(cfg, model, method.evaluation_dataset(cfg, args.split), init_distributed(), args.split)
    logits, sequences = predictions["logits"], predictions["labels"]
    truth, _ = sequence_targets(sequences, logits.shape[1])
    detected = logits > 0
    set_right = (detected == truth.bool()).all(dim=1)
    lengths = truth.sum(dim=1).long()
    for length in sorted(set(lengths.tolist())):
        rows = lengths == length
        print(f"{length} edits: {int(set_right[rows].sum())}/{int(rows.sum())} images with the right set")
    missed, pairs_right, pairs = Counter(), 0, 0
    # The model's order for every component as if all were detected: what decoding reads among the detected.
    everything = torch.full_like(logits, 1.0)
    order = edit_order_scores(everything, from_logits=True, last_edit_highest=cfg.model.last_edit_highest,
                              order_scores=predictions.get("order_scores", logits))
    for row, sequence in enumerate(sequences.tolist()):
        edited = [c for c in sequence if c > 0]
        for position, component in enumerate(edited):
            if not detected[row, component - 1]:
                missed[(len(edited), position + 1)] += 1
        for first, second in itertools.combinations(edited, 2):
            pairs += 1
            pairs_right += bool(order[row, first - 1] > order[row, second - 1])
    false_alarms = int((detected & ~truth.bool()).sum())
    print("missed edits by (number of edits, position in the sequence):", dict(sorted(missed.items())))
    print(f"untouched components called edited: {false_alarms}")
    print(f"given the true set, ordered pairs right: {pairs_right}/{pairs} = {pairs_right / max(pairs, 1):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
