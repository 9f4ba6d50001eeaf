"""Training step of the multi-label ranking model on the CPU, against a backbone-only step.

Run with ``python -m pytest benchmarks/test_training_step.py --benchmark-min-rounds 3``; the
summary at the end gives images/s of both steps and their ratio, measured in this one run.
Nothing here asserts a time.

* ``backbone``: ResNet-50 feature levels used by the model (strides 16 and 32) -> the sum of the
  mean of each level -> backward. The floor of any model on this backbone.
* ``full``: the model's forward (FPN, projection, encoder layer, both branches) -> L_Total of
  ``mlrank.ranking.losses.total_loss`` (contrastive MIL + BCE on both branches + rank loss) -> backward.

The ratio full / backbone is the price of everything the paper adds to the backbone; the target
is below 1.15 in wall time. Each round runs both steps back to back (alternating which goes
first) and the ratio is the median of the per-round ratios, so that both sides see the same
load on a shared machine; ``--benchmark-min-rounds`` sets the number of rounds. Beside it: the
process CPU time (less sensitive to other processes when torch runs one thread, e.g.
OMP_NUM_THREADS=1) and the FLOPs of each step (``torch.utils.flop_counter``: convolutions,
matrix products, attention). Both steps stop at backward (no optimiser step), in training mode,
batch 8 of 224 x 224 images: N = 196 tokens of d = 256, L = 5.
"""

from __future__ import annotations

import statistics
import time

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from mlrank.ranking import MultiLabelRankingModel
from mlrank.ranking.losses import total_loss

BATCH = 8
IMAGE_SIZE = 224
# Seq-DeepFake style sequences (component ids in manipulation order, 0 = padding): 3 real faces.
SEQUENCES = torch.tensor(
    [[0, 0, 0, 0, 0], [4, 2, 0, 0, 0], [1, 0, 0, 0, 0], [0, 0, 0, 0, 0],
     [3, 5, 1, 0, 0], [2, 0, 0, 0, 0], [0, 0, 0, 0, 0], [5, 4, 3, 2, 1]]
)
TARGET_RATIO = 1.15

# Per step: wall-clock and process CPU seconds of each round, and the floating-point operations.
WALL: dict[str, list[float]] = {"backbone": [], "full": []}
CPU: dict[str, list[float]] = {"backbone": [], "full": []}
FLOPS: dict[str, int] = {}


@pytest.fixture(scope="module")
def model_and_images():
    torch.manual_seed(0)
    model = MultiLabelRankingModel(
        "resnet50", num_classes=5, token_dim=256, out_stride=16, num_heads=8
    )
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(BATCH, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator)
    return model.train(), images


def backbone_step(model, images):
    model.zero_grad(set_to_none=True)
    levels = model.backbone(images)
    sum(level.mean() for level in levels).backward()


def full_step(model, images):
    model.zero_grad(set_to_none=True)
    outputs = model(images)
    total_loss(outputs, SEQUENCES)["total"].backward()


STEPS = {"backbone": backbone_step, "full": full_step}


def median_min(values: list[float]) -> tuple[float, float]:
    return statistics.median(values), min(values)


class TrainingStepSummary:
    """Prints images/s and the ratios once all steps are timed (output is not captured then)."""

    def pytest_terminal_summary(self, terminalreporter):
        if not WALL["full"]:
            return
        write = terminalreporter.write_line
        shape = f"batch {BATCH} at {IMAGE_SIZE}x{IMAGE_SIZE}"
        terminalreporter.write_sep("=", f"training step, resnet50, {shape}, CPU (same run)")
        write(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
              f"{len(WALL['full'])} paired rounds; median (min)")
        for name in STEPS:
            (wall, wall_min), (cpu, cpu_min) = median_min(WALL[name]), median_min(CPU[name])
            write(
                f"{name:>8} step: {BATCH / wall:6.2f} images/s ({BATCH / wall_min:.2f}); "
                f"wall {wall * 1e3:7.1f} ms ({wall_min * 1e3:.1f}), "
                f"CPU {cpu * 1e3:7.1f} ms ({cpu_min * 1e3:.1f}), {FLOPS[name] / 1e9:.1f} GFLOP"
            )
        for label, seconds in (("wall", WALL), ("CPU", CPU)):
            paired = [full / base for full, base in zip(seconds["full"], seconds["backbone"])]
            of_minima = min(seconds["full"]) / min(seconds["backbone"])
            write(
                f"ratio full / backbone, {label:>4} time: {statistics.median(paired):.3f} "
                f"median of paired rounds ({of_minima:.3f} of the minima)"
            )
        write(f"ratio full / backbone, FLOPs: {FLOPS['full'] / FLOPS['backbone']:.3f}; "
              f"target < {TARGET_RATIO} (wall time)")


def test_training_step(benchmark, request, model_and_images):
    """One benchmark round = one backbone step and one full step, back to back: on a shared
    machine both then see the same load, and their ratio is taken round by round."""
    plugins = request.config.pluginmanager
    if not plugins.has_plugin("mlrank-training-step-summary"):
        plugins.register(TrainingStepSummary(), "mlrank-training-step-summary")
    model, images = model_and_images
    for name, step in STEPS.items():  # also the warm-up: oneDNN primitives, allocator caches
        with FlopCounterMode(display=False) as counter:
            step(model, images)
        FLOPS[name] = counter.get_total_flops()
    rounds_done = 0

    def paired_round():
        nonlocal rounds_done
        # Alternate which step goes first, so neither always follows the other.
        order = list(STEPS) if rounds_done % 2 == 0 else list(reversed(STEPS))
        for name in order:
            wall, cpu = time.perf_counter(), time.process_time()
            STEPS[name](model, images)
            CPU[name].append(time.process_time() - cpu)
            WALL[name].append(time.perf_counter() - wall)
        rounds_done += 1

    benchmark.group = "training step (backbone + full, paired)"
    rounds = request.config.getoption("benchmark_min_rounds")
    benchmark.pedantic(paired_round, rounds=rounds, iterations=1)
