"""Prints the ratio table of the CPU op benchmark at the end of the run (and writes it with
``--results-file PATH``: PATH.md and PATH.json)."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import torch

from benchmarks.results import RESULTS


def pytest_addoption(parser):
    parser.addoption("--results-file", default=None,
                     help="write the contrastive MIL ratio table to PATH.md and its numbers to PATH.json")


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f}"


def _mib(nbytes: int) -> str:
    return f"{nbytes / 2**20:.2f}"


def _times(seconds) -> str:
    """median [q1, q3] in ms ("failed" where the test did not finish)."""
    if seconds is None:
        return "failed"
    return f"{_ms(seconds[0])} [{_ms(seconds[1])}, {_ms(seconds[2])}]"


def _ratio(numerator, denominator) -> str:
    """Ratio of medians; in brackets the range the quartiles allow (slowest vs fastest)."""
    if numerator is None or denominator is None:
        return "-"
    return (f"{numerator[0] / denominator[0]:.1f}x "
            f"[{numerator[1] / denominator[2]:.1f}, {numerator[2] / denominator[1]:.1f}]")


def heading() -> str:
    return (f"contrastive MIL, CPU, forward + backward; median [quartiles] of 100 rounds; "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, "
            f"load average {os.getloadavg()[0]:.1f} at the end")


def ratio_table() -> list[str]:
    lines = [
        heading(),
        "",
        "| shape (B, N, d) | reference ms | op ms | speed-up | reference k100 ms | op k100 ms "
        "| speed-up k100 | reference bf16 ms | op bf16 ms | speed-up bf16 "
        "| floor ms (S + (G+G^T)T + sort) | op / floor | op / halved floor "
        "| saved MiB ref / op beyond input | saved MiB ref / op incl. input | aten ms | aten / reference |",
        "|" + "---|" * 17,
    ]
    for shape, r in RESULTS.items():
        needed = ("reference", "op", "reference_k100", "op_k100", "floor_products", "floor_product_s",
                  "floor_sort", "aten")
        if not all(key in r for key in needed):
            continue
        floor = r["floor_products"][0] + r["floor_sort"][0]
        halved = floor - r["floor_product_s"][0] / 2
        ref_all, ref_extra = r["reference_saved"]
        op_all, op_extra = r["op_saved"]
        lines.append(
            f"| {shape} | {_times(r['reference'])} | {_times(r['op'])} | {_ratio(r['reference'], r['op'])} "
            f"| {_times(r['reference_k100'])} | {_times(r['op_k100'])} | {_ratio(r['reference_k100'], r['op_k100'])} "
            f"| {_times(r.get('reference_bf16'))} | {_times(r.get('op_bf16'))} "
            f"| {_ratio(r.get('reference_bf16'), r.get('op_bf16'))} "
            f"| {_ms(floor)} = {_ms(r['floor_product_s'][0])} + "
            f"{_ms(r['floor_products'][0] - r['floor_product_s'][0])} + {_ms(r['floor_sort'][0])} "
            f"| {r['op'][0] / floor:.2f} | {r['op'][0] / halved:.2f} "
            f"| {_mib(ref_extra)} / {_mib(op_extra)} | {_mib(ref_all)} / {_mib(op_all)} "
            f"| {_times(r['aten'])} | {r['aten'][0] / r['reference'][0]:.2f} |"
        )
    return lines


def pytest_terminal_summary(terminalreporter, config):
    if not RESULTS:
        return
    lines = ratio_table()
    terminalreporter.write_sep("=", "contrastive MIL ratios (same run)")
    for line in lines:
        terminalreporter.write_line(line)
    path = config.getoption("--results-file")
    if path and len(lines) > 4:
        stem = Path(path)
        stem.parent.mkdir(parents=True, exist_ok=True)
        raw = {str(shape): values for shape, values in RESULTS.items()}
        for target, text in ((stem.with_suffix(".md"), "\n".join(lines) + "\n"),
                             (stem.with_suffix(".json"), json.dumps({"heading": lines[0], "results": raw}, indent=1))):
            temporary = target.with_name(target.name + ".tmp")
            temporary.write_text(text)
            temporary.replace(target)
        terminalreporter.write_line(f"written: {stem.with_suffix('.md')}, {stem.with_suffix('.json')}")
