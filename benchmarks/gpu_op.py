"""Forward + backward of contrastive MIL on a GPU: the reference, the ATen path and the CUDA kernels.

    python -m benchmarks.gpu_op [--output-dir DIR] [--rounds 100] [--tag NAME]

For each shape, on tokens like a trained encoder's (two noisy clusters per image, so k* falls
inside the order) and on random unit tokens, and for every k and the paper's num_k = 100: the
median, minimum and interquartile range over rounds of CUDA-event (wall) times after warm-up
rounds; the GPU's own time per call from the profiler (the sum of the kernels' device time, which
leaves out the host's launch overhead and any gap between kernels); the peak memory that forward +
backward allocate above what the inputs already hold (``torch.cuda.max_memory_allocated``); and
the ratios to the reference measured in the same run. The kernels are timed on their default
(global, segmented) path and with one thread block per image (``MLRANK_CUDA_BLOCK_PER_IMAGE=1``,
opt-in) where the triangle fits in shared memory; bfloat16 tokens inside ``torch.autocast`` are
timed too. Also the share of images whose k* equals the reference's. Writes
``gpu_op_<gpu>[_TAG].json`` and ``.md`` into the output folder and prints the table. Targets
(docs/op.md): >= 20x the reference at (32, 144, 256), >= 50x at (8, 576, 256), >= 5x less memory.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
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
    (prob.float().sum() + u_mean.float().sum()).backward()
    return k_star


def kernel_ms(fn, leaf: torch.Tensor, calls: int = 20) -> float:
    """The GPU's own time per forward + backward: the profiler's device time of every kernel."""
    activities = [torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=activities) as profiler:
        for _ in range(calls):
            forward_backward(fn, leaf)
        torch.cuda.synchronize()
    total_us = sum(event.device_time_total for event in profiler.key_averages() if event.device_time_total > 0
                   and event.key.startswith(("void", "cub", "at_cuda", "ampere", "sm", "cutlass", "nvjet", "Memcpy",
                                             "Memset")) or False)
    if total_us == 0:  # names differ between versions: take every event with device time, self only
        total_us = sum(event.self_device_time_total for event in profiler.key_averages())
    return total_us / calls / 1000


def measure(fn, tokens: torch.Tensor, rounds: int, warmup: int = 5) -> dict[str, float]:
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
    quartiles = statistics.quantiles(times, n=4)
    kernels = kernel_ms(fn, leaf)
    leaf.grad = None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    forward_backward(fn, leaf)
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - before
    return {"median_ms": statistics.median(times), "min_ms": min(times), "q1_ms": quartiles[0],
            "q3_ms": quartiles[2], "kernel_ms": kernels, "peak_mib": peak / 2**20}


class BlockPerImage:
    """The kernels with one thread block per image (the env var is read at every call)."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, tokens):
        os.environ["MLRANK_CUDA_BLOCK_PER_IMAGE"] = "1"
        try:
            return self.fn(tokens)
        finally:
            os.environ.pop("MLRANK_CUDA_BLOCK_PER_IMAGE", None)


class Autocast:
    """The op on bfloat16 tokens inside torch.autocast (it computes in float32)."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, tokens):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            return self.fn(tokens.bfloat16())


def implementations(num_k: int | None) -> dict[str, object]:
    found = {
        "reference": functools.partial(reference.contrastive_mil, num_k=num_k),
        "aten": functools.partial(contrastive_mil, impl="aten", num_k=num_k),
    }
    if compiled_with_cuda():
        kernels = functools.partial(contrastive_mil, impl="kernels", num_k=num_k)
        found["kernels"] = kernels
        found["kernels_block"] = BlockPerImage(kernels)
        found["kernels_bf16_autocast"] = Autocast(kernels)
    return found


def run(rounds: int) -> list[dict[str, object]]:
    rows = []
    for shape in SHAPES:
        for kind, num_k in (("clustered", None), ("random", None), ("clustered", 100)):
            tokens = make_tokens(shape, kind)
            k_reference = reference.contrastive_mil(tokens, num_k=num_k)[1]
            row: dict[str, object] = {"shape": list(shape), "tokens": kind, "num_k": num_k}
            for name, fn in implementations(num_k).items():
                row[name] = measure(fn, tokens, rounds)
                if name != "reference":
                    agree = (fn(tokens)[1] == k_reference).float().mean().item()
                    row[name]["k_star_agreement"] = agree
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def table(rows: list[dict[str, object]]) -> list[str]:
    names = [name for name in ("aten", "kernels", "kernels_block", "kernels_bf16_autocast") if name in rows[0]]
    header = "| shape (B, N, d) | tokens, k | reference ms (IQR) | reference peak MiB |"
    for name in names:
        header += f" {name} ms (IQR) | GPU ms | speed-up | peak MiB | less memory | k* = ref |"
    lines = [header, "|" + "---|" * (4 + 6 * len(names))]
    for row in rows:
        ref = row["reference"]
        k = "every k" if row["num_k"] is None else f"num_k {row['num_k']}"
        line = (f"| {tuple(row['shape'])} | {row['tokens']}, {k} | {ref['median_ms']:.3f} "
                f"({ref['q1_ms']:.3f}-{ref['q3_ms']:.3f}) | {ref['peak_mib']:.1f} |")
        for name in names:
            r = row[name]
            line += (
                f" {r['median_ms']:.3f} ({r['q1_ms']:.3f}-{r['q3_ms']:.3f}) | {r['kernel_ms']:.3f}"
                f" | {ref['median_ms'] / r['median_ms']:.1f}x | {r['peak_mib']:.1f}"
                f" | {ref['peak_mib'] / max(r['peak_mib'], 1e-9):.1f}x | {r['k_star_agreement']:.3f} |"
            )
        lines.append(line)
    return lines


def gpu_slug() -> str:
    """The GPU's name as a file-name part: "NVIDIA H100 80GB HBM3" -> "h100_80gb_hbm3"."""
    name = torch.cuda.get_device_name().lower().replace("nvidia", "")
    return re.sub(r"[^a-z0-9]+", "_", name).strip("_")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_op", description=__doc__.split("\n")[0])
    parser.add_argument("--output-dir", default="benchmarks/results")
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--tag", default="", help="suffix of the output files, e.g. the setting compared")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("benchmarks.gpu_op needs a CUDA device; torch sees none", file=sys.stderr)
        return 2
    rows = run(args.rounds)
    device = torch.cuda.get_device_name()
    heading = (
        f"contrastive MIL forward + backward, float32 (bf16 tokens under autocast where named), {device}, "
        f"torch {torch.__version__}; CUDA-event (wall) times, median (interquartile range) of {args.rounds} rounds; "
        "GPU ms = the profiler's kernel time per call; peak = max_memory_allocated above the inputs"
    )
    lines = [heading, "", *table(rows)]
    stem = f"gpu_op_{gpu_slug()}" + (f"_{args.tag}" if args.tag else "")
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    (output / f"{stem}.json").write_text(json.dumps({"device": device, "torch": torch.__version__, "rounds": args.rounds,
                                                     "rows": rows}, indent=1))
    (output / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
