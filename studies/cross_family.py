"""The binary claim of the paper's Table 2, in kind and at small scale: trained on one family of fakes,
tested on another, with and without self-blended fakes, beside SeeABLE trained on real faces only.

    python -m studies.cross_family --workdir DIR [--videos 200] [--frames 8] [--epochs 8] [--seeds 0 1]
        [--output benchmarks/results/cross_family.json]

``--output FILE.json`` also writes ``FILE.md``, the tables docs/results.md embeds.

1. Writes two DeepfakeBench-format data sets from the built-in generator (mlrank.data.rehearsal):
   ``SynthComp`` (fakes: the facial-component edits) and ``SynthAttr`` (fakes: the attribute edits:
   bangs, glasses, beard, smile, age), each with ``--videos`` real and fake videos in train (a
   quarter of that in val, half in test), ``--frames`` frames a video, 64 x 64, JSON indexes with
   absolute paths.
2. Trains on SynthComp, per seed: ``ffpp_swin`` as shipped (self-blended fakes on), the same with
   ``data.strong_augment=false``, and ``seeable_ffpp`` (on SynthComp's real videos only); all three
   with the same small-backbone overrides (resnet10t from scratch at 64 x 64, lr 2e-3 for every
   parameter, ``--epochs`` epochs, ``--frames`` frames a video; SeeABLE with a 2 x 2 grid, as the
   synthetic face covers a quarter of the image). A run folder that holds test_metrics.json is reused.
3. Scores each best checkpoint on SynthComp's test split (in family) and SynthAttr's (cross family):
   frame AUC and video AUC (frame scores averaged per video), each with a 95% bootstrap interval
   over videos, and the paired interval of each variant's difference to the one without
   self-blending, same seed.
4. Cross-tests each best checkpoint on both sets with ``python -m mlrank.crosseval`` too (its tables
   in ``<run>/crosseval.md``), and stops if its AUCs differ from the study's own: the table's point
   values are what a user's crosseval prints.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from mlrank import crosseval, train
from mlrank.cli import run_cli
from mlrank.engine.locks import command_words
from mlrank.data.rehearsal import SyntheticVideos, write_deepfakebench_set
from mlrank.engine.distributed import init_distributed
from mlrank.engine.runs import atomic_write_json, atomic_write_text, machine_facts
from mlrank.evaluate import load_model
from mlrank.task.metrics import auc, video_auc

SOURCE, TARGET = "SynthComp", "SynthAttr"
FAMILIES = {SOURCE: "facial_components", TARGET: "facial_attributes"}
VARIANTS = {  # name -> (config, overrides of its own)
    "self-blended": ("ffpp_swin", []),
    "no self-blending": ("ffpp_swin", ["data.strong_augment=false"]),
    "SeeABLE": ("seeable_ffpp", ["seeable.grid=[2,2]", "data.cross_test_sets=[]"]),
}
REFERENCE = "no self-blending"
ROUNDS = 2000


def small_model(epochs: int, frames: int) -> list[str]:
    return ["data.image_size=64", "model.backbone=resnet10t", "model.token_dim=64", "model.num_heads=2",
            "model.out_stride=8", "model.pretrained_file=null", "optim.lr=2e-3", "optim.backbone_lr_scale=1.0",
            f"optim.epochs={epochs}", f"data.frames_per_video={frames}", "data.num_workers=2", "train.eval_every=1"]


def write_data(data: Path, videos: int, frames: int) -> None:
    if (data / "dataset_json" / f"{TARGET}.json").is_file():
        return
    for seed, (name, family) in enumerate(FAMILIES.items()):
        spec = SyntheticVideos(videos={"train": videos, "val": max(2, videos // 4), "test": max(2, videos // 2)},
                               frames=frames, size=64, family=family, seed=seed)
        write_deepfakebench_set(data / "rgb", data / "dataset_json", name, spec)


@torch.no_grad()
def scores_of(run: Path, dataset_name: str, data: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(fake scores, labels, video ids) of a run's best checkpoint on a data set's test split: the fused
    P_1 of the binary model, SeeABLE's anomaly score."""
    overrides = [f"data.dataset_name={dataset_name}", f"data.json_path={data / 'dataset_json'}", f"data.root={data / 'rgb'}"]
    cfg, method, model = load_model(run / "best.pt", overrides)
    dataset = method.evaluation_dataset(cfg, "test")
    video_ids = list(dataset.video_ids())
    if cfg.method == "seeable":
        from mlrank.seeable.method import discrepancy_spec
        from mlrank.seeable.score import discrepancy_similarities, score_from_similarities

        spec, scores, labels = discrepancy_spec(cfg), [], []
        for images, masks, fake in DataLoader(dataset, batch_size=32):
            scores.append(score_from_similarities(discrepancy_similarities(model, images, spec, cfg.seed, masks)))
            labels.append(fake.long())
        return torch.cat(scores).numpy(), torch.cat(labels).numpy(), video_ids
    from mlrank.ranking.method import predict_split

    predictions = predict_split(cfg, model, dataset, init_distributed(use_cuda=False), dataset_name)
    return predictions["logits"][:, 0].sigmoid().numpy(), predictions["labels"].numpy(), video_ids


def crosseval_aucs(run: Path, data: Path) -> dict[str, dict[str, float]]:
    """{set: {"frame_auc", "video_auc"}} of ``python -m mlrank.crosseval`` on a run's best checkpoint."""
    sets = [f"name={name},json_path={data / 'dataset_json'},root={data / 'rgb'}" for name in FAMILIES]
    argv = [str(run / "best.pt"), *(arg for text in sets for arg in ("--set", text)),
            "--output", str(run / "crosseval"), "--overwrite"]
    if crosseval.main(argv) != 0:
        raise RuntimeError(f"crosseval of {run} failed")
    table = json.loads((run / "crosseval.json").read_text())
    return {entry["name"]: {"frame_auc": entry["metrics"]["auc"], "video_auc": entry["metrics"]["video_auc"]}
            for entry in table["sets"]}


def video_resamples(video_ids: list[str], rounds: int, seed: int = 0) -> list[np.ndarray]:
    """Frame indices of ``rounds`` resamples of the videos (with replacement), frames following their video."""
    videos = sorted(set(video_ids))
    frames_of = {video: [i for i, v in enumerate(video_ids) if v == video] for video in videos}
    generator = np.random.default_rng(seed)
    return [np.concatenate([frames_of[videos[k]] for k in generator.integers(0, len(videos), len(videos))])
            for _ in range(rounds)]


def aucs(scores: np.ndarray, labels: np.ndarray, video_ids: list[str], frames: np.ndarray | None = None) -> tuple[float, float]:
    """(frame AUC, video AUC) of the frames ``frames`` of a resample (all frames by default)."""
    if frames is None:
        return auc(scores, labels), video_auc(scores, labels, video_ids)
    return auc(scores[frames], labels[frames]), video_auc(scores[frames], labels[frames], _drawn_ids(frames, video_ids))


def _drawn_ids(frames: np.ndarray, video_ids: list[str]) -> list[str]:
    """Video ids of the resampled frames, a video drawn k times giving k distinct ids."""
    ids, draw, previous = [], 0, None
    for position, frame in enumerate(frames):
        video = video_ids[frame]
        # a new draw starts where the video changes or the same video's frames start over
        if video != previous or (position and frames[position - 1] >= frame):
            draw += 1
        ids.append(f"{draw}:{video}")
        previous = video
    return ids


def interval(values: list[float]) -> tuple[float, float]:
    return float(np.quantile(values, 0.025)), float(np.quantile(values, 0.975))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studies.cross_family", description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--videos", type=int, default=200)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--output")
    args = parser.parse_args(argv)
    workdir = Path(args.workdir)
    data = workdir / "data"
    write_data(data, args.videos, args.frames)
    common = [f"data.dataset_name={SOURCE}", f"data.json_path={data / 'dataset_json'}", f"data.root={data / 'rgb'}",
              *small_model(args.epochs, args.frames)]
    machine = machine_facts()
    results: dict[str, Any] = {"command": " ".join(command_words("studies.cross_family", argv)),
                               "machine": f"{machine['cpu']}, {machine['cores']} cores",
                               "date": datetime.date.today().isoformat(),
                               "videos": args.videos, "frames": args.frames, "epochs": args.epochs, "runs": {}}
    scored: dict[tuple[str, int, str], tuple] = {}
    crossevaluated: dict[tuple[str, int], dict[str, dict[str, float]]] = {}
    for seed in args.seeds:
        for variant, (config, own) in VARIANTS.items():
            run = workdir / "runs" / f"{variant.replace(' ', '_')}_s{seed}"
            if not (run / "test_metrics.json").is_file():
                resume = ["--resume", str(run)] if (run / "last.pt").is_file() else ["--config", config, *common, *own,
                                                                                     f"seed={seed}", f"output_dir={run}"]
                if train.main(resume) != 0:
                    raise RuntimeError(f"training {run} failed")
            for dataset_name in FAMILIES:
                scored[(variant, seed, dataset_name)] = scores_of(run, dataset_name, data)
            crossevaluated[(variant, seed)] = crosseval_aucs(run, data)
    for (variant, seed, dataset_name), (scores, labels, video_ids) in scored.items():
        resamples = video_resamples(video_ids, ROUNDS, seed=seed)
        frame, video = aucs(scores, labels, video_ids)
        boot = [aucs(scores, labels, video_ids, frames) for frames in resamples]
        entry = {"frame_auc": frame, "frame_auc_interval": interval([b[0] for b in boot]),
                 "video_auc": video, "video_auc_interval": interval([b[1] for b in boot])}
        by_crosseval = crossevaluated[(variant, seed)][dataset_name]
        if not np.allclose([frame, video], [by_crosseval["frame_auc"], by_crosseval["video_auc"]], atol=1e-6):
            raise RuntimeError(f"{variant}, seed {seed}, {dataset_name}: crosseval's AUCs {by_crosseval} differ "
                               f"from the study's ({frame}, {video})")
        if variant != REFERENCE:
            base_scores, base_labels, base_ids = scored[(REFERENCE, seed, dataset_name)]
            assert base_ids == video_ids and (base_labels == labels).all()
            differences = [np.subtract(aucs(scores, labels, video_ids, frames), aucs(base_scores, labels, video_ids, frames))
                           for frames in resamples]
            entry["difference_to_" + REFERENCE.replace(" ", "_")] = {
                "frame_auc": frame - aucs(base_scores, labels, video_ids)[0],
                "frame_auc_interval": interval([d[0] for d in differences]),
                "video_auc": video - aucs(base_scores, labels, video_ids)[1],
                "video_auc_interval": interval([d[1] for d in differences]),
            }
        results["runs"].setdefault(variant, {}).setdefault(f"seed {seed}", {})[dataset_name] = entry
    if args.output:
        atomic_write_json(args.output, results)
        atomic_write_text(Path(args.output).with_suffix(".md"), markdown(results))
    print(json.dumps(results, indent=2))
    return 0


def markdown(results: dict[str, Any]) -> str:
    """The study's tables: each variant's AUCs in and across families, then its difference to the
    variant without self-blending, same seed."""
    def cell(value: float, bounds: list[float], signed: bool = False) -> str:
        form = "{:+.3f}" if signed else "{:.3f}"
        return f"{form.format(value)} [{form.format(bounds[0])}, {form.format(bounds[1])}]"

    key = "difference_to_" + REFERENCE.replace(" ", "_")
    lines = [f"Trained on {SOURCE} ({results['videos']} real and fake videos, {results['frames']} frames each, "
             f"{results['epochs']} epochs), tested on {SOURCE}'s test split (in family) and {TARGET}'s (another family "
             f"of fakes); AUC with its 95% bootstrap interval over videos (the point values are also what `python -m mlrank.crosseval` gives for each best checkpoint, checked by the study). Command: `{results['command']}`; machine: "
             f"{results.get('machine', 'n/a')}; date: {results.get('date', 'n/a')}.", "",
             f"| detector | seed | {SOURCE} frame AUC | {SOURCE} video AUC | {TARGET} frame AUC | {TARGET} video AUC |",
             "|---|---|---|---|---|---|"]
    for variant, seeds in results["runs"].items():
        for seed, sets in seeds.items():
            a, b = sets[SOURCE], sets[TARGET]
            lines.append(f"| {variant} | {seed.split()[-1]} | {cell(a['frame_auc'], a['frame_auc_interval'])} | "
                         f"{cell(a['video_auc'], a['video_auc_interval'])} | {cell(b['frame_auc'], b['frame_auc_interval'])} | "
                         f"{cell(b['video_auc'], b['video_auc_interval'])} |")
    lines += ["", f"Difference to the detector trained without self-blending, same seed (paired, 95%); an interval "
              "that holds 0 is no finding:", "",
              f"| detector | seed | {SOURCE} frame AUC | {SOURCE} video AUC | {TARGET} frame AUC | {TARGET} video AUC |",
              "|---|---|---|---|---|---|"]
    for variant, seeds in results["runs"].items():
        for seed, sets in seeds.items():
            if key not in sets[SOURCE]:
                continue
            a, b = sets[SOURCE][key], sets[TARGET][key]
            lines.append(f"| {variant} | {seed.split()[-1]} | {cell(a['frame_auc'], a['frame_auc_interval'], True)} | "
                         f"{cell(a['video_auc'], a['video_auc_interval'], True)} | "
                         f"{cell(b['frame_auc'], b['frame_auc_interval'], True)} | "
                         f"{cell(b['video_auc'], b['video_auc_interval'], True)} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(run_cli(main))
