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
        f"contrastive MIL, CPU float32, forward + backward; times are median (min) of rounds; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads",
        "| shape (B, N, d) | reference ms | op ms | speed-up | reference k100 ms | op k100 ms "
        "| speed-up k100 | floor ms (products + sort) | op / floor "
        "| saved MiB ref / op beyond input | fewer bytes beyond input "
        "| saved MiB ref / op incl. input | fewer bytes incl. input "
        "| aten ms | aten / reference time | aten saved MiB beyond input |",
        "|" + "---|" * 16,
    ]

    def times(seconds):
        return f"{_ms(seconds[0])} ({_ms(seconds[1])})"

    def ratio(numerator, denominator):
        return f"{numerator[0] / denominator[0]:.1f}x ({numerator[1] / denominator[1]:.1f}x)"

    for shape, r in RESULTS.items():
        needed = ("reference", "op", "reference_k100", "op_k100", "floor_products", "floor_sort")
        if not all(key in r for key in needed):
            continue
        floor = tuple(p + s for p, s in zip(r["floor_products"], r["floor_sort"]))
        ref_all, ref_extra = r["reference_saved"]
        op_all, op_extra = r["op_saved"]
        extra_ratio = f"{ref_extra / op_extra:.0f}x" if op_extra else "all (op: 0 B)"
        lines.append(
            f"| {shape} | {times(r['reference'])} | {times(r['op'])} "
            f"| {ratio(r['reference'], r['op'])} "
            f"| {times(r['reference_k100'])} | {times(r['op_k100'])} "
            f"| {ratio(r['reference_k100'], r['op_k100'])} "
            f"| {times(floor)} = {_ms(r['floor_products'][0])} + {_ms(r['floor_sort'][0])} "
            f"| {r['op'][0] / floor[0]:.2f} ({r['op'][1] / floor[1]:.2f}) "
            f"| {_mib(ref_extra)} / {_mib(op_extra)} ({op_extra} B) | {extra_ratio} "
            f"| {_mib(ref_all)} / {_mib(op_all)} | {ref_all / op_all:.1f}x "
            + (
                f"| {times(r['aten'])} | {r['aten'][0] / r['reference'][0]:.2f} ({r['aten'][1] / r['reference'][1]:.2f}) "
                f"| {_mib(r['aten_saved'][1])} |"
                if "aten" in r
                else "| | | |"
            )
        )
    return lines


def pytest_terminal_summary(terminalreporter):
    if RESULTS:
        terminalreporter.write_sep("=", "contrastive MIL ratios (same run)")
        for line in ratio_table():
            terminalreporter.write_line(line)
