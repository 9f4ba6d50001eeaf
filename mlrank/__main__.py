"""The commands of mlrank, one line each: ``python -m mlrank``; ``python -m mlrank COMMAND ARGS``
runs ``python -m mlrank.COMMAND ARGS``."""

from __future__ import annotations

import runpy
import sys

# Each command is ``python -m mlrank.<name>``; ``--help`` gives its options (docs/usage.md).
COMMANDS: dict[str, str] = {
    "train": "train a detector from a config (resumable; torchrun for several GPUs)",
    "evaluate": "metrics of a checkpoint or run folder on a split (Fixed-/Adaptive-Acc, AUC, EER, AP)",
    "predict": "score image files or folders: fake probability, components and their order",
    "explain": "the paper's figures for your own images, as an HTML page",
    "crosseval": "one checkpoint on several test sets (DeepfakeBench, frame folders), one table",
    "preprocess": "videos or images to square face crops for training or prediction",
    "ablate": "the paper's loss ablation (Table 3), one run per row, one table",
    "rehearse": "a dress rehearsal of a config on generated data in the real layout",
    "plot": "a run's training curves as a PNG",
    "demo": "the contrastive-MIL op on synthetic patch tokens",
    "info": "versions, build and devices, for a bug report",
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["mlrank: fine-grained deepfake detection (multi-label ranking, SeeABLE)", "",
             "usage: python -m mlrank.<command> [--help] ...   (or python -m mlrank <command> ...)", "",
             "commands:"]
    lines += [f"  {name:<{width}}  {summary}" for name, summary in COMMANDS.items()]
    lines += ["", "Start with: python -m mlrank.train   (the built-in synthetic data set; README.md, Quick start)"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0
    name = args[0]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    sys.argv = [f"python -m mlrank.{name}", *args[1:]]
    runpy.run_module(f"mlrank.{name}", run_name="__main__")  # exits with the command's status
    return 0


if __name__ == "__main__":
    sys.exit(main())
