"""The synthetic default's training step on the CPU, with and without the backbone's last stage.

Run with ``python -m pytest benchmarks/test_synthetic_step.py --benchmark-min-rounds 10``; the
summary at the end gives images/s of both steps and their ratio, measured in this one run.
Nothing here asserts a time.

* ``default``: the synthetic default (``python -m mlrank.train`` with no arguments): resnet10t
  without its last stage (``model.max_stride: 16``).
* ``every_stage``: the same with ``model.max_stride=null``, the model before that default.

A step is what training does per batch: forward, L_Total with the config's weights
(``mlrank.ranking.method.batch_losses``), backward and AdamW, on one batch of 32 rendered
synthetic training images at 64 x 64 (docs/method.md section 6). Each round runs both steps back to
back, alternating which goes first, and the ratio is the median of the per-round ratios, so that
both see the same load on a shared machine. Memory: the bytes autograd keeps for backward (counted
per storage with saved_tensors_hooks) and the parameters with AdamW's two moments.
"""

from __future__ import annotations

import statistics
import time

import pytest
import torch

from benchmarks.memory import saved_storages
from mlrank.data.synthetic import SyntheticSeqDeepFake
from mlrank.engine.builders import build_optimizer
from mlrank.engine.config import load_config
from mlrank.ranking.method import batch_losses, build_model

VARIANTS = {"default": [], "every_stage": ["model.max_stride=null"]}
WALL: dict[str, list[float]] = {name: [] for name in VARIANTS}
MEMORY: dict[str, tuple[int, int, int]] = {}  # name -> (parameters, saved bytes, parameter + AdamW bytes)


@pytest.fixture(scope="module")
def steps():
    cfg = load_config("synthetic", [])
    data = SyntheticSeqDeepFake("train", size=cfg.data.image_size, num_images=cfg.data.batch_size, seed=0)
    images, labels = (torch.stack(column) for column in zip(*(data[i] for i in range(len(data)))))  # rendered once
    steps = {}
    for name, overrides in VARIANTS.items():
        variant = load_config("synthetic", overrides)
        torch.manual_seed(0)
        model = build_model(variant).train()
        optimizer, _ = build_optimizer(variant, model, steps_per_epoch=1)

        def step(model=model, optimizer=optimizer, variant=variant):
            losses = batch_losses(variant, model, images, labels)
            optimizer.zero_grad(set_to_none=True)
            losses["total"].backward()
            optimizer.step()

        steps[name] = step
        step()  # warm-up, and AdamW's moments exist from here on
        parameters = sum(p.numel() for p in model.parameters())
        state_bytes = sum(
            t.numel() * t.element_size()
            for group in optimizer.state.values() for t in group.values() if torch.is_tensor(t)
        )
        saved = saved_storages(lambda: batch_losses(variant, model, images, labels))
        MEMORY[name] = (parameters, sum(saved.values()), parameters * 4 + state_bytes)
    return steps


class SyntheticStepSummary:
    """Prints images/s, memory and the ratio once all steps are timed (output is not captured then)."""

    def pytest_terminal_summary(self, terminalreporter):
        if not WALL["default"]:
            return
        write = terminalreporter.write_line
        terminalreporter.write_sep("=", "training step of the synthetic default, batch 32 at 64x64, CPU (same run)")
        write(f"torch {torch.__version__}, cpu capability {torch.backends.cpu.get_cpu_capability()}, "
              f"{torch.get_num_threads()} threads, {len(WALL['default'])} paired rounds; median (min)")
        for name, seconds in WALL.items():
            median, fastest = statistics.median(seconds), min(seconds)
            parameters, saved, weights = MEMORY[name]
            write(f"{name:>12}: {32 / median:6.1f} images/s ({32 / fastest:.1f}); {median * 1e3:6.1f} ms; "
                  f"{parameters / 1e6:.2f} M parameters; saved for backward {saved / 2**20:.1f} MiB; "
                  f"parameters + AdamW {weights / 2**20:.1f} MiB")
        paired = [every / default for every, default in zip(WALL["every_stage"], WALL["default"])]
        write(f"speed-up of the default over every stage: {statistics.median(paired):.2f}x median of "
              f"paired rounds ({min(WALL['every_stage']) / min(WALL['default']):.2f}x of the minima)")


def test_synthetic_training_step(benchmark, request, steps):
    plugins = request.config.pluginmanager
    if not plugins.has_plugin("mlrank-synthetic-step-summary"):
        plugins.register(SyntheticStepSummary(), "mlrank-synthetic-step-summary")
    rounds_done = 0

    def paired_round():
        nonlocal rounds_done
        order = list(VARIANTS) if rounds_done % 2 == 0 else list(reversed(VARIANTS))
        for name in order:
            started = time.perf_counter()
            steps[name]()
            WALL[name].append(time.perf_counter() - started)
        rounds_done += 1

    benchmark.group = "synthetic training step (default + every stage, paired)"
    benchmark.pedantic(paired_round, rounds=request.config.getoption("benchmark_min_rounds"), iterations=1)
