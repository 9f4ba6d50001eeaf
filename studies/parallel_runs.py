"""Train several configs at once, as separate processes, on one large GPU (or any machine with more
cores than one run uses), under one deadline:

    python -m studies.parallel_runs ROOT [--plan FILE] [--ablation] [--jobs N] [--deadline S]
        [-- key=value ...]

Each run is ``python -m mlrank.train <common overrides> <its overrides> output_dir=ROOT/<name>``, so
its folder is an ordinary run folder. ``--plan FILE`` lists runs, one a line: a name, then
``key=value`` overrides, and ``ENV:NAME=value`` for an environment variable of that run only
(``#`` starts a comment). ``--ablation`` adds the rows of ``python -m mlrank.ablate`` under
``ROOT/ablation``, with the same overrides the command gives them, so that afterwards
``python -m mlrank.ablate --output-dir ROOT/ablation <common overrides>`` finds every finished row and
only writes the table. A small model on a large GPU is bound by Python's launch overhead, one core a
run, so N runs side by side take little longer than one.

A run whose folder already holds a run is refused by ``mlrank.train`` as always, and its folder is
left as it was (a finished one is still listed with its test metrics). At the deadline every run
still going is stopped (its folder keeps its last checkpoint, so
``--resume`` continues it). ``ROOT/runs.json`` lists each run's status, seconds and test metrics.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from mlrank import ablate
from mlrank.engine.runs import atomic_write_json


@dataclass
class PlannedRun:
    name: str
    overrides: list[str]
    env: dict[str, str] = field(default_factory=dict)


def read_plan(path: Path) -> list[PlannedRun]:
    runs = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        words = raw.split("#", 1)[0].split()
        if not words:
            continue
        name, rest = words[0], words[1:]
        if "=" in name or "/" in name:
            raise ValueError(f"{path}:{number}: a line starts with the run's name, got {name!r}")
        env = dict(word[4:].split("=", 1) for word in rest if word.startswith("ENV:"))
        overrides = [word for word in rest if not word.startswith("ENV:")]
        bad = [word for word in overrides if "=" not in word]
        if bad:
            raise ValueError(f"{path}:{number}: not key=value: {bad}")
        runs.append(PlannedRun(name, overrides, env))
    return runs


def ablation_runs(common: list[str]) -> list[PlannedRun]:
    return [
        PlannedRun(f"ablation/{row.name}", ablate.row_switches(None, common, row))
        for row in ablate.ROWS
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--plan", type=Path)
    parser.add_argument("--ablation", action="store_true")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--deadline", type=float, default=float("inf"), help="seconds from now")
    argv = sys.argv[1:] if argv is None else list(argv)
    common = argv[argv.index("--") + 1:] if "--" in argv else []
    args = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    args.common = common  # key=value overrides for every run, after --

    runs = (ablation_runs(args.common) if args.ablation else []) + (read_plan(args.plan) if args.plan else [])
    if len({run.name for run in runs}) != len(runs):
        raise SystemExit("run names must be distinct")
    start = time.monotonic()
    pending, active, finished = list(runs), {}, {}
    args.root.mkdir(parents=True, exist_ok=True)

    def launch(run: PlannedRun) -> None:
        folder = args.root / run.name
        folder.parent.mkdir(parents=True, exist_ok=True)
        # Appended to: running the plan again keeps the earlier runs' logs.
        log = open(args.root / f"{run.name.replace('/', '__')}.log", "a", encoding="utf-8")
        command = [sys.executable, "-m", "mlrank.train", *args.common, *run.overrides, f"output_dir={folder}"]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **run.env}
        active[run.name] = (subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env), log,
                            time.monotonic(), run)

    while pending or active:
        while pending and len(active) < args.jobs:
            launch(pending.pop(0))
        time.sleep(2)
        late = time.monotonic() - start > args.deadline
        for name, (process, log, began, run) in list(active.items()):
            if late and process.poll() is None:
                process.terminate()
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
            if process.poll() is not None:
                log.close()
                metrics_file = args.root / name / "test_metrics.json"
                finished[name] = {
                    "overrides": run.overrides,
                    "env": run.env,
                    "status": "finished" if metrics_file.is_file() else f"stopped (exit {process.returncode})",
                    "seconds": round(time.monotonic() - began, 1),
                    "test": json.loads(metrics_file.read_text()) if metrics_file.is_file() else None,
                }
                del active[name]
                atomic_write_json(args.root / "runs.json", {"common": args.common, "runs": finished})
        if late:
            for run in pending:
                finished[run.name] = {"overrides": run.overrides, "env": run.env, "status": "not started"}
            pending = []
    atomic_write_json(args.root / "runs.json", {"common": args.common, "runs": finished})
    for name, result in finished.items():
        test = result.get("test") or {}
        print(f"{name:40s} {result['status']:20s} fixed {test.get('fixed_acc', float('nan')):.3f} "
              f"pairs {test.get('ordered_pairs', float('nan')):.3f}")
    return 0 if all(result["status"] == "finished" for result in finished.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
