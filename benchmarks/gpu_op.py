"""Forward + backward of contrastive MIL on a GPU: the reference, the ATen path and the CUDA kernels.

    python -m benchmarks.gpu_op [--output-dir DIR] [--rounds 30] [--tag NAME]

For each shape, on tokens like a trained encoder's (two noisy clusters per image, so k* falls
inside the order) and on random unit tokens: the median and minimum over rounds of CUDA-event
times (after warm-up rounds), the peak memory that forward + backward allocate above what the
inputs already hold (``torch.cuda.max_memory_allocated``), and the ratios to the reference
measured in the same run. Also the share of images whose k* equals the reference's. Writes
``gpu_op[_TAG].json`` and ``gpu_op[_TAG].md`` into the output folder and prints the table.
Targets (README, "GPU"): kernels >= 10x faster than the reference at N = 576 and >= 5x at
N = 144, with >= 5x lower peak memory; the ATen path no slower than the reference.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
from pathlib import Path

import torch

from mlrank.ops import compiled_with_cuda, contrastive_mil, reference, testing

SHAPES = [(32, 144, 256), (8, 576, 256), (8, 1024, 256)]


def make_tokens(shape: tuple[int, int, int], kind: str) -> torch.Tensor:
    make = testing.unit_tokens if kind == "random" else testing.clustered_tokens
    return make(*shape, dtype=torch.float32, device="cuda")


def forward_backward(fn, leaf: torch.Tensor) -> torch.Tensor:
    leaf.grad = None
    prob, k_star, u_mean = fn(leaf)
    (prob.sum() + u_mean.sum()).backward()
    return k_star


def measure(fn, tokens: torch.Tensor, rounds: int, warmup: int = 3) -> dict[str, float]:
    leaf = tokens.clone().requires_grad_()
    for _ in range(warmup):
        forward_backward(fn, leaf)
    torch.cuda.synchronize()
    times = []
    for _ in range(rounds):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        forward_backward(fn, leaf)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    leaf.grad = None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    forward_backward(fn, leaf)
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - before
    return {"median_ms": statistics.median(times), "min_ms": min(times), "peak_mib": peak / 2**20}


def implementations() -> dict[str, object]:
    found = {
        "reference": reference.contrastive_mil,
        "aten": functools.partial(contrastive_mil, impl="aten"),
    }
    if compiled_with_cuda():
        found["kernels"] = functools.partial(contrastive_mil, impl="kernels")
    return found


def run(rounds: int) -> list[dict[str, object]]:
    rows = []
    for shape in SHAPES:
        for kind in ("clustered", "random"):
            tokens = make_tokens(shape, kind)
            k_reference = reference.contrastive_mil(tokens)[1]
            row: dict[str, object] = {"shape": list(shape), "tokens": kind}
            for name, fn in implementations().items():
                row[name] = measure(fn, tokens, rounds)
                if name != "reference":
                    agree = (fn(tokens)[1] == k_reference).float().mean().item()
                    row[name]["k_star_agreement"] = agree
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def table(rows: list[dict[str, object]]) -> list[str]:
    names = [name for name in ("aten", "kernels") if name in rows[0]]
    header = "| shape (B, N, d) | tokens | reference ms (min) | reference peak MiB |"
    for name in names:
        header += f" {name} ms (min) | {name} speed-up | {name} peak MiB | {name} less memory | {name} k* = ref |"
    lines = [header, "|" + "---|" * (4 + 5 * len(names))]
    for row in rows:
        ref = row["reference"]
        line = f"| {tuple(row['shape'])} | {row['tokens']} | {ref['median_ms']:.3f} ({ref['min_ms']:.3f}) | {ref['peak_mib']:.1f} |"
        for name in names:
            r = row[name]
            line += (
                f" {r['median_ms']:.3f} ({r['min_ms']:.3f}) | {ref['median_ms'] / r['median_ms']:.1f}x"
                f" | {r['peak_mib']:.1f} | {ref['peak_mib'] / max(r['peak_mib'], 1e-9):.1f}x"
                f" | {r['k_star_agreement']:.3f} |"
            )
        lines.append(line)
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_op", description=__doc__.split("\n")[0])
    parser.add_argument("--output-dir", default=".")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--tag", default="", help="suffix of the output files, e.g. the setting compared")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("benchmarks.gpu_op needs a CUDA device; torch sees none", file=sys.stderr)
        return 2
    rows = run(args.rounds)
    device = torch.cuda.get_device_name()
    heading = (
        f"contrastive MIL forward + backward, float32, {device}, torch {torch.__version__}; "
        f"CUDA-event times, median (min) of {args.rounds} rounds; peak = max_memory_allocated above the inputs"
    )
    lines = [heading, "", *table(rows)]
    stem = "gpu_op" + (f"_{args.tag}" if args.tag else "")
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    (output / f"{stem}.json").write_text(json.dumps({"device": device, "torch": torch.__version__, "rows": rows}, indent=1))
    (output / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
