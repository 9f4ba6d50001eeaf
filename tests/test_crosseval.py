"""python -m mlrank.crosseval: one checkpoint, several test sets on disk in each layout, one table.

The checkpoints are untrained tiny models: their scores still depend on every pixel, so the table's
numbers are checked against the model's own forward pass scored by scikit-learn, set by set.
"""

import json
import os
import shutil
import re

import numpy as np
import pytest
import torch
from PIL import Image

from mlrank import cli, crosseval
from mlrank.data.io import read_rgb
from mlrank.engine.builders import Resize, build_optimizer
from mlrank.engine.config import config_to_dict, load_config
from mlrank.engine.methods import get_method
from mlrank.engine.runs import RunFolder, capture_rng_state
from mlrank.seeable import anomaly_score
from mlrank.seeable import method as seeable_method

SIZE = 32


def write_video(folder, count, seed):
    """`count` frames of random texture (distinct per video), named 0.png, 1.png, ..."""
    generator = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    paths = []
    for index in range(count):
        path = os.path.join(folder, f"{index}.png")
        Image.fromarray(generator.integers(0, 256, size=(SIZE, SIZE, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def write_deepfakebench_set(rgb, json_folder, name, real_label, fake_label, videos=2, frames=3, seed=0):
    """One data set as rearrange.py writes it: frames under rgb/<name>/..., absolute paths in
    json_folder/<name>.json, videos alternating real and fake in the test split."""
    records = {real_label: {}, fake_label: {}}
    for video in range(2 * videos):
        label = fake_label if video % 2 else real_label
        paths = write_video(rgb / name / label / "frames" / f"v{video}", frames, seed * 100 + video)
        records[label][f"v{video}"] = {"label": label, "frames": paths}
    index = {name: {label: {"train": {}, "val": {}, "test": videos} for label, videos in records.items()}}
    (json_folder / f"{name}.json").write_text(json.dumps(index))


def write_frame_folders(root, videos=2, frames=2, seed=50):
    for video in range(2 * videos):
        write_video(root / "test" / ("fake" if video % 2 else "real") / f"clip{video}", frames, seed + video)


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    rgb, json_folder = data / "rgb", data / "dataset_json"
    json_folder.mkdir()
    write_deepfakebench_set(rgb, json_folder, "Celeb-DF-v2", "CelebDFv2_real", "CelebDFv2_fake", seed=1)
    write_deepfakebench_set(rgb, json_folder, "DFDC", "DFDC_Real", "DFDC_Fake", videos=3, frames=2, seed=2)
    write_deepfakebench_set(rgb, json_folder, "DFDCP", "DFDCP_Real", "DFDCP_FakeA", frames=2, seed=3)
    write_frame_folders(data / "wild")
    return data


def save_untrained(folder, overrides, config=None):
    cfg = load_config(config, [f"output_dir={folder}", *overrides])
    torch.manual_seed(0)
    model = get_method(cfg.method).build_model(cfg)
    optimizer, scheduler = build_optimizer(cfg, model, steps_per_epoch=1)
    state = {
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "epoch": 0, "global_step": 0, "best_metric": 0.0, "rng": capture_rng_state(), "config": config_to_dict(cfg),
    }
    return str(RunFolder(folder).save_checkpoint(state, "best")), model.eval()


def binary_overrides(layouts):
    sets = (
        f"[{{name: Celeb-DF-v2}}, {{name: DFDC}}, "
        f"{{name: WildFrames, kind: frames, root: {layouts / 'wild'}}}]"
    )
    return [
        "data.kind=deepfakebench", f"data.root={layouts / 'rgb'}", f"data.json_path={layouts / 'dataset_json'}",
        "data.dataset_name=Celeb-DF-v2", f"data.image_size={SIZE}", "data.num_workers=0", "data.batch_size=4",
        "model.token_dim=16", "model.num_heads=2", "model.out_stride=8", f"data.cross_test_sets={sets}",
    ]


@pytest.fixture(scope="module")
def binary_checkpoint(tmp_path_factory, layouts):
    return save_untrained(tmp_path_factory.mktemp("run"), binary_overrides(layouts))


def expected_row(model, frames):
    """(videos, frames, {auc, video_auc, eer-free metrics}) of frames [(path, label, video)], from the
    model's forward pass scored by scikit-learn."""
    metrics = pytest.importorskip("sklearn.metrics")
    resize = Resize(SIZE)
    images = torch.stack([resize(read_rgb(path)) for path, _, _ in frames])
    with torch.no_grad():
        scores = model(images)["logits"][:, 0].sigmoid().double().numpy()
    labels = np.array([label for _, label, _ in frames])
    videos = sorted({video for _, _, video in frames})
    video_scores = [scores[[v == video for _, _, v in frames]].mean() for video in videos]
    video_labels = [labels[[v == video for _, _, v in frames]][0] for video in videos]
    return len(videos), len(frames), {
        "auc": metrics.roc_auc_score(labels, scores),
        "video_auc": metrics.roc_auc_score(video_labels, video_scores),
        "ap": metrics.average_precision_score(labels, scores),
    }


def deepfakebench_frames(layouts, name, fake_label):
    index = json.loads((layouts / "dataset_json" / f"{name}.json").read_text())[name]
    frames = []
    for label_key, splits in index.items():
        for video, record in splits["test"].items():
            frames += [(path, int(label_key == fake_label), f"{label_key}/{video}") for path in record["frames"]]
    return frames


def folder_frames(root):
    frames = []
    for label in ("fake", "real"):
        for video in sorted(os.listdir(root / "test" / label)):
            for frame in sorted(os.listdir(root / "test" / label / video)):
                frames.append((str(root / "test" / label / video / frame), int(label == "fake"), f"{label}/{video}"))
    return frames


def test_one_command_writes_one_table_of_every_set(layouts, binary_checkpoint, tmp_path, capsys):
    checkpoint, model = binary_checkpoint
    base = tmp_path / "table"
    assert crosseval.main([checkpoint, "--output", str(base)]) == 0

    table = json.loads((base.with_suffix(".json")).read_text())
    assert [row["name"] for row in table["sets"]] == ["Celeb-DF-v2", "DFDC", "WildFrames"]
    expected = {
        "Celeb-DF-v2": expected_row(model, deepfakebench_frames(layouts, "Celeb-DF-v2", "CelebDFv2_fake")),
        "DFDC": expected_row(model, deepfakebench_frames(layouts, "DFDC", "DFDC_Fake")),
        "WildFrames": expected_row(model, folder_frames(layouts / "wild")),
    }
    for row in table["sets"]:
        videos, frames, metrics = expected[row["name"]]
        assert (row["videos"], row["frames"]) == (videos, frames)
        for key, value in metrics.items():
            assert row["metrics"][key] == pytest.approx(value, abs=1e-6), (row["name"], key)
    assert [row["videos"] for row in table["sets"]] == [4, 6, 4]
    for key in ("auc", "video_auc", "eer", "ap"):
        assert table["mean"][key] == pytest.approx(np.mean([row["metrics"][key] for row in table["sets"]]))

    markdown = base.with_suffix(".md").read_text()
    lines = markdown.splitlines()
    assert lines[2] == "| test set | videos | frames | frame AUC | video AUC | EER | AP |"
    dfdc = next(row for row in table["sets"] if row["name"] == "DFDC")["metrics"]
    assert f"| DFDC | 6 | 12 | {dfdc['auc']:.4f} | {dfdc['video_auc']:.4f} | {dfdc['eer']:.4f} | {dfdc['ap']:.4f} |" in lines
    assert lines[-1].startswith("| mean | | | ") and f"{table['mean']['auc']:.4f}" in lines[-1]
    assert markdown in capsys.readouterr().out
    # no temporary file of the atomic writes is left behind
    assert sorted(os.listdir(tmp_path)) == ["table.json", "table.md"]


def test_sets_chosen_by_name_or_given_on_the_command_line(layouts, binary_checkpoint, tmp_path):
    checkpoint, model = binary_checkpoint
    base = tmp_path / "some"
    extra = f"name=Again,kind=deepfakebench,json_path={layouts / 'dataset_json' / 'DFDC.json'},dataset_name=DFDC"
    assert crosseval.main([checkpoint, "--sets", "WildFrames", "Again", "--set", extra, "--output", str(base)]) == 0
    table = json.loads(base.with_suffix(".json").read_text())
    assert [row["name"] for row in table["sets"]] == ["WildFrames", "Again"]
    _, _, dfdc = expected_row(model, deepfakebench_frames(layouts, "DFDC", "DFDC_Fake"))
    assert table["sets"][1]["metrics"]["auc"] == pytest.approx(dfdc["auc"], abs=1e-6)
    assert table["sets"][1]["data"]["root"] == str(layouts / "rgb")  # unset keys come from data.*


def run_cli(*argv):
    return cli.run_cli(lambda: crosseval.main(list(argv)))


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--sets", "Nope"], r"--sets: no test set named \['Nope'\]; data.cross_test_sets has \['Celeb-DF-v2', 'DFDC', 'WildFrames'\]"),
        (["--set", "name=X,knd=frames"], r"unknown config key 'data.cross_test_sets\[3\].knd'; did you mean 'data.cross_test_sets\[3\].kind'\?"),
        (["--set", "name"], r"--set 'name': expected comma-separated key=value pairs"),
        (["--set", "name=Gone,kind=frames,root=/no/such/folder"], r"test set 'Gone': config key 'data.root': /no/such/folder does not exist"),
        (["data.cross_test_sets=[]"], r"no test sets: list them in the config key data.cross_test_sets, or give --set"),
    ],
)
def test_mistakes_are_one_line_errors_before_any_evaluation(binary_checkpoint, tmp_path, capsys, arguments, message):
    checkpoint, _ = binary_checkpoint
    assert run_cli(checkpoint, "--output", str(tmp_path / "t"), *arguments) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1
    assert re.search(message, error), error
    assert os.listdir(tmp_path) == []


def test_a_sequence_model_is_refused(tmp_path, capsys):
    checkpoint, _ = save_untrained(tmp_path / "run", ["data.image_size=32", "model.token_dim=16", "model.num_heads=2"])
    assert run_cli(checkpoint, "--set", "name=X,kind=frames,root=/x") == 2
    assert "trained on data.kind 'synthetic': crosseval needs a binary detector" in capsys.readouterr().err


def test_a_set_without_a_binary_kind_is_refused(tmp_path, capsys):
    # a SeeABLE model trained on the synthetic set: a set must say which layout it is in
    overrides = ["method=seeable", "data.image_size=32", "seeable.grid=[1,1]", "seeable.embed_dim=8"]
    checkpoint, _ = save_untrained(tmp_path / "run", overrides)
    assert run_cli(checkpoint, "--set", "name=X") == 2
    assert "test set 'X': names no data of its own" in capsys.readouterr().err


def test_seeable_ffpp_is_tested_on_its_three_sets(layouts, tmp_path):
    metrics = pytest.importorskip("sklearn.metrics")
    overrides = [
        f"data.root={layouts / 'rgb'}", f"data.json_path={layouts / 'dataset_json'}", f"data.image_size={SIZE}",
        "data.num_workers=0", "data.batch_size=8", "model.backbone=resnet10t", "seeable.embed_dim=16",
    ]
    checkpoint, model = save_untrained(tmp_path / "run", overrides, config="seeable_ffpp")
    # one frame per video (the first of the evenly spaced): each face is scored K = 32 times
    assert crosseval.main([checkpoint, "--output", str(tmp_path / "seeable"), "data.frames_per_video=1"]) == 0
    table = json.loads((tmp_path / "seeable.json").read_text())
    assert [row["name"] for row in table["sets"]] == ["Celeb-DF-v2", "DFDC", "DFDCP"]
    spec = seeable_method.discrepancy_spec(load_config("seeable_ffpp", overrides))
    assert spec.K == 32
    for row, fake in zip(table["sets"], ["CelebDFv2_fake", "DFDC_Fake", "DFDCP_FakeA"]):
        frames = [frame for frame in deepfakebench_frames(layouts, row["name"], fake) if frame[0].endswith("/0.png")]
        images = torch.stack([Resize(SIZE)(read_rgb(path)) for path, _, _ in frames])
        scores = anomaly_score(model, images, spec, seed=0).double().numpy()
        labels = [label for _, label, _ in frames]
        assert row["metrics"]["auc"] == pytest.approx(metrics.roc_auc_score(labels, scores), abs=1e-6)
        assert row["frames"] == len(frames)


def test_a_set_reads_the_data_its_own_keys_name_or_is_an_error(layouts, tmp_path, capsys):
    # a checkpoint trained on frame folders: a name alone would read data.root's test split under
    # another name, so it is refused; kind frames with its own root reads that root
    frames_run, _ = save_untrained(tmp_path / "frames_run", [
        "data.kind=frames", f"data.root={layouts / 'wild'}", f"data.image_size={SIZE}", "data.num_workers=0",
        "data.batch_size=4", "model.token_dim=16", "model.num_heads=2", "model.out_stride=8",
        "model.num_classes=1"])
    assert run_cli(frames_run, "--set", "name=NoSuchSet", "--output", str(tmp_path / "a")) == 2
    assert "test set 'NoSuchSet': names no data of its own" in capsys.readouterr().err
    assert run_cli(frames_run, "--set", "name=NoSuchSet,json_path=/nowhere.json", "--output", str(tmp_path / "b")) == 2
    assert "test set 'NoSuchSet'" in capsys.readouterr().err
    # a DeepfakeBench index named by a set of its own is read, whatever the checkpoint's kind
    dfdc = f"name=DFDC,json_path={layouts / 'dataset_json'},root={layouts / 'rgb'}"
    assert crosseval.main([frames_run, "--set", dfdc, "--output", str(tmp_path / "c")]) == 0
    row = json.loads((tmp_path / "c.json").read_text())["sets"][0]
    assert (row["data"]["kind"], row["videos"]) == ("deepfakebench", 6)


def test_two_sets_that_read_the_same_data_are_an_error(layouts, binary_checkpoint, tmp_path, capsys):
    checkpoint, _ = binary_checkpoint
    again = f"name=DFDC-again,json_path={layouts / 'dataset_json' / 'DFDC.json'},dataset_name=DFDC"
    assert run_cli(checkpoint, "--set", again, "--output", str(tmp_path / "t")) == 2
    assert "test set 'DFDC-again': reads the same data as test set 'DFDC'" in capsys.readouterr().err


def test_a_one_class_set_is_n_a_and_the_other_sets_are_kept(layouts, binary_checkpoint, tmp_path):
    checkpoint, _ = binary_checkpoint
    reals = tmp_path / "reals"
    for video in sorted(os.listdir(layouts / "wild" / "test" / "real")):
        shutil.copytree(layouts / "wild" / "test" / "real" / video, reals / "test" / "real" / video)
    assert crosseval.main([checkpoint, "--set", f"name=RealsOnly,kind=frames,root={reals}", "--output",
                           str(tmp_path / "t")]) == 0
    table = json.loads((tmp_path / "t.json").read_text())
    rows = {row["name"]: row for row in table["sets"]}
    assert rows["RealsOnly"]["metrics"]["auc"] is None and rows["RealsOnly"]["metrics"]["video_auc"] is None
    assert rows["DFDC"]["metrics"]["auc"] is not None
    assert table["mean"]["auc"] is None
    assert "| RealsOnly | 2 | 4 | n/a | n/a | n/a | n/a |" in (tmp_path / "t.md").read_text()


def test_the_output_never_replaces_a_file_without_overwrite(binary_checkpoint, tmp_path, capsys):
    checkpoint, _ = binary_checkpoint
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text("the run's own facts")
    assert run_cli(checkpoint, "--sets", "DFDC", "--output", str(run / "run")) == 2
    assert "already exist" in capsys.readouterr().err and (run / "run.json").read_text() == "the run's own facts"
    base = tmp_path / "table"
    assert crosseval.main([checkpoint, "--sets", "DFDC", "--output", str(base)]) == 0
    assert run_cli(checkpoint, "--sets", "DFDC", "--output", str(base)) == 2
    assert crosseval.main([checkpoint, "--sets", "DFDC", "--output", str(base), "--overwrite"]) == 0
