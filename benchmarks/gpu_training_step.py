"""The real config's training step against the same backbone's plain classifier step.

    python -m benchmarks.gpu_training_step [--config seqdeepfake_components_r50] [--output-dir DIR]

``model``: one optimiser step of ``mlrank/configs/seqdeepfake_components_r50.yaml`` as training
runs it (ResNet-50, 256 x 256 images, N = 256 tokens of d = 256, batch 32, bfloat16 autocast on a
GPU, L_Total of eq. 15 with the exact max over k, AdamW with the config's parameter groups).
``classifier``: timm's ResNet-50 with its own head on the same images, cross-entropy on real/fake,
the same autocast and AdamW: the floor of any model on this backbone. The ratio model / classifier
is the price of everything the paper adds; the target on a GPU is <= 1.10.

Each round runs both steps back to back, alternating which goes first, so that both see the same
machine; the ratio reported is the median of the per-round ratios, with its quartiles. Wall time per
step is measured around a synchronised step; the kernel time of one step of each is read from the
profiler. Results go to ``gpu_training_step_<device>.md`` and ``.json`` in ``--output-dir``. On a
machine without a GPU it runs on the CPU (``--batch``/``--image-size`` make it small enough), so
that the script itself is tested in CI; CPU numbers are not the GPU target.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from benchmarks.gpu_op import gpu_slug
from mlrank.engine.builders import build_optimizer
from mlrank.engine.config import load_config
from mlrank.engine.distributed import autocast
from mlrank.ranking.method import batch_losses, build_model

TARGET_RATIO = 1.10


def model_step(cfg, model, optimizer, images, sequences):
    losses = batch_losses(cfg, model, images, sequences)
    optimizer.zero_grad(set_to_none=True)
    losses["total"].backward()
    optimizer.step()


def classifier_step(cfg, model, optimizer, images, sequences):
    targets = (sequences[:, 0] > 0).long()  # real (no edit) or fake
    with autocast(cfg.train.amp, images.device):
        logits = model(images)
    loss = torch.nn.functional.cross_entropy(logits.float(), targets)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def quartiles(values: list[float]) -> list[float]:
    q1, _, q3 = statistics.quantiles(values, n=4)
    return [q1, q3]


def peak_mib(step, device, *args) -> float | None:
    """Peak memory of one step above what was allocated before it (None on the CPU)."""
    if device.type != "cuda":
        return None
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    step(*args)
    synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(step, device, *args) -> float:
    synchronize(device)
    start = time.perf_counter()
    step(*args)
    synchronize(device)
    return time.perf_counter() - start


def kernel_ms(step, device, *args) -> float | None:
    """Device time of one step's kernels, from the profiler (None on the CPU)."""
    if device.type != "cuda":
        return None
    activities = [torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=activities) as profile:
        step(*args)
        synchronize(device)
    return sum(event.self_device_time_total for event in profile.key_averages()) / 1e3


def random_sequences(batch: int, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """Seq-DeepFake-like labels: a third real, the rest 1-5 distinct components in a random order."""
    sequences = torch.zeros(batch, 5, dtype=torch.long)
    for row in range(batch):
        if row % 3 == 0:
            continue
        length = int(torch.randint(1, 6, (1,), generator=generator))
        order = torch.randperm(num_classes, generator=generator)[:length] + 1
        sequences[row, :length] = order
    return sequences


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="seqdeepfake_components_r50")
    parser.add_argument("--batch", type=int, default=None, help="default: the config's batch size")
    parser.add_argument("--image-size", type=int, default=None, help="default: the config's image size")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--output-dir", default="benchmarks/results")
    args = parser.parse_args(argv)

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    overrides = []
    if args.image_size is not None:
        overrides.append(f"data.image_size={args.image_size}")
    cfg = load_config(args.config, overrides)
    batch = args.batch or cfg.data.batch_size
    size = cfg.data.image_size
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, size, size, generator=generator).to(device)
    sequences = random_sequences(batch, cfg.model.num_classes, generator).to(device)

    import timm  # the package's backbone library; imported late so --help stays quick

    ranking = build_model(cfg).to(device).train()
    ranking_optimizer, _ = build_optimizer(cfg, ranking, steps_per_epoch=1)
    classifier = timm.create_model(cfg.model.backbone, pretrained=False, num_classes=2).to(device).train()
    classifier_optimizer = torch.optim.AdamW(classifier.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    steps = {
        "model": (model_step, cfg, ranking, ranking_optimizer, images, sequences),
        "classifier": (classifier_step, cfg, classifier, classifier_optimizer, images, sequences),
    }
    for _ in range(args.warmup):
        for step, *step_args in steps.values():
            step(*step_args)
    times: dict[str, list[float]] = {name: [] for name in steps}
    ratios = []
    for round_index in range(args.rounds):
        order = list(steps) if round_index % 2 == 0 else list(reversed(steps))
        this_round = {}
        for name in order:
            step, *step_args = steps[name]
            this_round[name] = timed(step, device, *step_args)
            times[name].append(this_round[name])
        ratios.append(this_round["model"] / this_round["classifier"])
    kernels = {name: kernel_ms(step, device, *step_args) for name, (step, *step_args) in steps.items()}
    peaks = {name: peak_mib(step, device, *step_args) for name, (step, *step_args) in steps.items()}
    tokens = (size // cfg.model.out_stride) ** 2
    command = " ".join(["python -m benchmarks.gpu_training_step", *(argv if argv is not None else sys.argv[1:])])
    result = {
        "command": command,
        "config": args.config,
        "device": gpu_slug() if device.type == "cuda" else "cpu",
        "batch": batch,
        "image_size": size,
        "tokens": tokens,
        "amp": str(cfg.train.amp),
        "rounds": args.rounds,
        "step_ms": {name: 1e3 * statistics.median(values) for name, values in times.items()},
        "step_ms_quartiles": {name: [1e3 * q for q in quartiles(values)] for name, values in times.items()},
        "kernel_ms": kernels,
        "peak_mib": peaks,
        "ratio_median": statistics.median(ratios),
        "ratio_quartiles": quartiles(ratios),
        "target_ratio": TARGET_RATIO,
    }
    write(result, Path(args.output_dir))
    return result


def write(result: dict, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"gpu_training_step_{result['device']}"
    q1, q3 = result["ratio_quartiles"]
    lines = [
        f"# Training step of {result['config']} against the backbone's plain classifier step ({result['device']})",
        "",
        f"Batch {result['batch']} of {result['image_size']} x {result['image_size']} images, "
        f"N = {result['tokens']} tokens, amp {result['amp']}, {result['rounds']} rounds "
        f"(median, quartiles in brackets). Command: `{result['command']}`.",
        "",
        "| step | wall ms | kernel ms | peak MiB |",
        "|---|---|---|---|",
    ]
    for name in ("model", "classifier"):
        low, high = result["step_ms_quartiles"][name]
        kernel = result["kernel_ms"][name]
        peak = result["peak_mib"][name]
        kernel_text = "n/a (CPU)" if kernel is None else f"{kernel:.1f}"
        peak_text = "n/a (CPU)" if peak is None else f"{peak:.0f}"
        lines.append(f"| {name} | {result['step_ms'][name]:.1f} [{low:.1f}, {high:.1f}] | {kernel_text} | {peak_text} |")
    lines += [
        "",
        f"model / classifier: {result['ratio_median']:.3f} [{q1:.3f}, {q3:.3f}] (target <= {TARGET_RATIO})",
        "",
    ]
    text = "\n".join(lines)
    for path, content in ((stem.with_suffix(".md"), text), (stem.with_suffix(".json"), json.dumps(result, indent=2) + "\n")):
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(content)
        temporary.replace(path)
    print(text)


if __name__ == "__main__":
    main()
