"""Prints the ratio table of the CPU benchmarks at the end of the run."""

from __future__ import annotations

import torch

from benchmarks.results import RESULTS


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f}"


def _mib(nbytes: int) -> str:
    return f"{nbytes / 2**20:.2f}"


def ratio_table() -> list[str]:
    lines = [
        f"contrastive MIL, CPU float32, forward + backward, median of rounds; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads",
        "| shape (B, N, d) | reference ms | op ms | speed-up | reference k100 ms | op k100 ms "
        "| speed-up k100 | floor ms | op / floor | saved MiB ref / op (beyond input) "
        "| fewer bytes (beyond input) | saved MiB ref / op (all) | fewer bytes (all) |",
        "|" + "---|" * 13,
    ]
    for shape, r in RESULTS.items():
        needed = ("reference", "op", "reference_k100", "op_k100", "floor_products", "floor_sort")
        if not all(key in r for key in needed):
            continue
        floor = r["floor_products"] + r["floor_sort"]
        ref_all, ref_extra = r["reference_saved"]
        op_all, op_extra = r["op_saved"]
        extra_ratio = f"{ref_extra / op_extra:.0f}x" if op_extra else "all (op: 0 B)"
        lines.append(
            f"| {shape} | {_ms(r['reference'])} | {_ms(r['op'])} | {r['reference'] / r['op']:.1f}x "
            f"| {_ms(r['reference_k100'])} | {_ms(r['op_k100'])} "
            f"| {r['reference_k100'] / r['op_k100']:.1f}x "
            f"| {_ms(floor)} ({_ms(r['floor_products'])} + {_ms(r['floor_sort'])}) "
            f"| {r['op'] / floor:.2f} | {_mib(ref_extra)} / {_mib(op_extra)} ({op_extra} B) "
            f"| {extra_ratio} | {_mib(ref_all)} / {_mib(op_all)} | {ref_all / op_all:.1f}x |"
        )
    return lines


def pytest_terminal_summary(terminalreporter):
    if RESULTS:
        terminalreporter.write_sep("=", "contrastive MIL ratios (same run)")
        for line in ratio_table():
            terminalreporter.write_line(line)
