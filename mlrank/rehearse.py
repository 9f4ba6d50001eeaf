"""A dress rehearsal of a config before the real data: ``python -m mlrank.rehearse CONFIG [--workdir DIR]``.

Writes a small data set in the real data set's on-disk format (``mlrank.data.rehearsal``: Seq-DeepFake's
JPEG images and CSVs; DeepfakeBench's frame folders, JSON indexes with absolute paths and an LMDB
database; FaceForensics++'s real videos for SeeABLE), then runs what a researcher runs, through the
commands' own entry points: ``train`` (the config with a tiny backbone of the same family, 64 x 64
images and two steps, by override), ``evaluate`` on the run, ``crosseval`` where the model gives
real/fake scores (on the config's cross-data-set sets, an LMDB set and a frame-folder set),
``predict`` and, for the multi-label ranking model, ``explain``; and checks what each one wrote. A
config it cannot rehearse (a data kind it does not know) is an error, so every shipped config has a
rehearsal (tests/test_rehearsal.py runs them all).

Decisions:
- The workdir must be new or empty: the rehearsal writes a data set and a run there, and never mixes
  them into what a folder already holds. Without ``--workdir`` a temporary folder is used and removed.
- The overrides shrink the model and the data, never the code path: the same method, data kind,
  layout, loaders, augmentation (self-blended fakes included), losses, heads and decoding as the config.
  Backbones are swapped within their family (ResNets for resnet10t, Swin for a Swin-T, EfficientNet for
  timm's test EfficientNet), so the Swin's fixed input size and NHWC maps are rehearsed too.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

from mlrank.cli import run_cli
from mlrank.data.rehearsal import (SyntheticVideos, refuse_non_empty, write_deepfakebench_set,
                                   write_frame_folders)
from mlrank.data.synthetic import SyntheticSeqDeepFake, write_seqdeepfake_layout
from mlrank.engine.config import Config, load_config, resolve_config_path

IMAGE_SIZE = 64
# multiples of 6: every length of edit and originals; 6 originals to train SeeABLE on
SEQUENCE_SIZES = {"train": 36, "val": 6, "test": 6}
SMALL = [
    f"data.image_size={IMAGE_SIZE}", "data.batch_size=6", "data.num_workers=0", "data.frames_per_video=2",
    "model.token_dim=16", "model.num_heads=2", "model.pretrained_file=null", "optim.epochs=1",
    "train.max_steps_per_epoch=2", "seeable.embed_dim=16", "seeable.grid=[2,2]",
]
PREDICTED_IMAGES = 2
VIDEOS = {"train": 4, "val": 1, "test": 1}  # real and fake videos of each split, 2 frames each
# The first of these whose key the backbone's name starts with gives its stand-in.
STAND_INS = (("swin", "swin_tiny_patch4_window7_224"), ("efficientnet", "test_efficientnet"), ("", "resnet10t"))


class RehearsalFailure(ValueError):
    """A command of the rehearsal did not write what it should have."""


def stand_in_backbone(name: str) -> str:
    """A small backbone of the same family as ``name``."""
    return next(small for family, small in STAND_INS if name.startswith(family))


def write_data(cfg: Config, data: Path) -> tuple[list[str], list[str], Path]:
    """The data set the config reads, written under ``data`` in its on-disk format: (the overrides
    that point the config at it, crosseval's extra ``--set`` sets, a folder of images for predict)."""
    kind = cfg.data.kind
    if kind == "synthetic":
        images = data / "images"
        test = SyntheticSeqDeepFake("test", cfg.data.subset, size=IMAGE_SIZE, num_images=2)
        for index in range(2):
            write_image(images / f"face{index}.png", test.sample(index).image)
        sizes = [f"data.synthetic_{split}_size={count}" for split, count in SEQUENCE_SIZES.items()]
        return sizes, [], images
    if kind == "seqdeepfake":
        root = write_seqdeepfake_layout(data / "Seq-DeepFake", cfg.data.subset, SEQUENCE_SIZES, IMAGE_SIZE,
                                        image_format="jpg")
        return [f"data.root={root}"], [], root / cfg.data.subset / "images" / "test"
    spec = SyntheticVideos(videos=VIDEOS, size=IMAGE_SIZE)
    if kind == "frames":
        root = write_frame_folders(data / "frames", spec)
        return [f"data.root={root}"], [], root / "test"
    if kind == "deepfakebench":
        rgb, indexes = data / "rgb", data / "dataset_json"
        names = [cfg.data.dataset_name or "FaceForensics++", *(s.name for s in cfg.data.cross_test_sets)]
        if cfg.data.test_dataset_name:
            names.append(cfg.data.test_dataset_name)
        for name in dict.fromkeys(names):
            write_deepfakebench_set(rgb, indexes, name, spec)
        # crosseval also reads an LMDB database and frame folders: the other two formats of binary data
        write_deepfakebench_set(rgb, indexes, "LMDB-set", SyntheticVideos(videos=VIDEOS, size=IMAGE_SIZE, seed=1),
                                lmdb_path=data / "lmdb" / "LMDB-set_lmdb")
        folders = write_frame_folders(data / "frames", SyntheticVideos(videos=VIDEOS, size=IMAGE_SIZE, seed=2))
        extra = [f"name=LMDB-set,kind=deepfakebench,json_path={indexes},lmdb_path={data / 'lmdb' / 'LMDB-set_lmdb'}",
                 f"name=frame-folders,kind=frames,root={folders}"]
        return [f"data.root={rgb}", f"data.json_path={indexes}"], extra, folders / "test"
    raise ValueError(f"no rehearsal for data.kind {kind!r}: add one to mlrank.rehearse.write_data")


def write_image(path: Path, image: Any) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


def expect(condition: bool, step: str, what: str) -> None:
    if not condition:
        raise RehearsalFailure(f"rehearsal step {step}: {what}")


def same_metric(a: Any, b: Any) -> bool:
    """Whether two processes' values of one metric agree: floats to 1e-6, anything else exactly.
    The same checkpoint scored in another process can differ by one float32 step (a mean score
    1.00004935 against 1.00004947), as CPU math libraries need not sum in the same order in every
    process; on the rehearsal's few images a count-based metric (an accuracy, an AUC) moves in
    steps far above 1e-6, so a changed decision still fails."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6)
    return a == b


def read_json(path: Path, step: str) -> Any:
    expect(path.is_file(), step, f"{path} was not written")
    return json.loads(path.read_text(encoding="utf-8"))


def rehearse(config: str | Path, workdir: str | Path) -> dict[str, Any]:
    """Rehearse ``config`` in ``workdir`` (new or empty); returns what each step wrote."""
    from mlrank import crosseval, evaluate, explain, predict, train
    from mlrank.engine.methods import get_method

    config = str(config)
    resolve_config_path(config)
    workdir = refuse_non_empty(workdir, "--workdir")
    cfg = load_config(config)
    method = get_method(cfg.method)
    data_overrides, extra_sets, images = write_data(cfg, workdir / "data")
    run = workdir / "run"
    overrides = [*SMALL, f"model.backbone={stand_in_backbone(cfg.model.backbone)}", *data_overrides,
                 f"output_dir={run}"]
    report: dict[str, Any] = {"config": config, "overrides": overrides}

    expect(train.main(["--config", config, *overrides]) == 0, "train", "exit status not 0")
    cfg = load_config(config, overrides)
    written = ["config.yaml", "run.json", "metrics.jsonl", "last.pt", "best.pt", "test_metrics.json",
               *(f"{name}.pt" for name in method.protocol_checkpoints(cfg))]
    for name in written:
        expect((run / name).is_file(), "train", f"{run / name} was not written")
    test_metrics = read_json(run / "test_metrics.json", "train")
    report["train"] = written

    expect(evaluate.main([str(run), "--output", str(workdir / "evaluate.json")]) == 0, "evaluate", "exit status")
    evaluated = read_json(workdir / "evaluate.json", "evaluate")
    shared = [key for key in test_metrics if key in evaluated and key not in ("checkpoint",)]
    differing = [key for key in shared if not same_metric(evaluated[key], test_metrics[key])]
    expect(not differing, "evaluate",
           f"the run's test metrics differ from evaluate's on the same checkpoints: {differing}")
    report["evaluate"] = sorted(shared)

    if method.gives_binary_metrics(cfg) and (cfg.data.cross_test_sets or extra_sets):
        base = workdir / "crosseval"
        arguments = [str(run / "best.pt"), "--output", str(base), *(f"--set={s}" for s in extra_sets)]
        expect(crosseval.main(arguments) == 0, "crosseval", "exit status not 0")
        table = read_json(base.with_suffix(".json"), "crosseval")
        names = [row["name"] for row in table["sets"]]
        wanted = [s.name for s in cfg.data.cross_test_sets] + ["LMDB-set", "frame-folders"]
        expect(names == wanted, "crosseval", f"sets {names}, expected {wanted}")
        report["crosseval"] = names

    output = workdir / "predict"
    pictures = [str(path) for path in sorted(images.rglob("*.*"))[:PREDICTED_IMAGES]]
    status = predict.main([str(run / "best.pt"), *pictures, "--output-dir", str(output)])
    records = read_json(output / "predictions.json", "predict")
    expect(status == 0 and records and all("error" not in r for r in records), "predict", "an image was not scored")
    score = "anomaly_score" if cfg.method == "seeable" else "fake_probability"
    expect(all(score in record for record in records), "predict", f"a record without {score}")
    report["predict"] = len(records)

    if cfg.method == "mlrank":
        output = workdir / "explain"
        status = explain.main([str(run / "best.pt"), *pictures, "--output-dir", str(output)])
        records = read_json(output / "explain.json", "explain")
        expect(status == 0 and (output / "index.html").is_file(), "explain", "no index.html")
        expect(all((output / figure).is_file() for r in records for figure in r["figures"].values()),
               "explain", "a figure the record names is missing")
        report["explain"] = len(records)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlrank.rehearse", description=__doc__.split("\n")[0])
    parser.add_argument("config", help="a YAML file or the name of a shipped config")
    parser.add_argument("--workdir", help="a new or empty folder for the data and the run (default: a temporary one)")
    args = parser.parse_args(argv)
    if args.workdir is not None:
        report = rehearse(args.config, args.workdir)
    else:
        folder = tempfile.mkdtemp(prefix="mlrank-rehearse-")
        try:
            report = rehearse(args.config, folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    steps = ", ".join(step for step in ("train", "evaluate", "crosseval", "predict", "explain") if step in report)
    print(f"rehearsal of {args.config} passed: {steps}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
