"""Every shipped config rehearsed end to end in its real on-disk format (python -m mlrank.rehearse):
a small data set written as the real one is laid out, then train, evaluate, crosseval where it
applies, predict and explain through their entry points, and what each wrote checked. A shipped
config the rehearsal cannot run fails here."""

import json
import os

import pytest

from mlrank import rehearse
from mlrank.cli import run_cli
from mlrank.engine.config import load_config, shipped_config_names


@pytest.mark.parametrize("name", shipped_config_names())
def test_every_shipped_config_is_rehearsed_in_its_real_format(name, tmp_path):
    report = rehearse.rehearse(name, tmp_path / "work")
    cfg = load_config(name)
    assert report["train"][:6] == ["config.yaml", "run.json", "metrics.jsonl", "last.pt", "best.pt", "test_metrics.json"]
    sequence_model = cfg.method == "mlrank" and cfg.data.kind in ("synthetic", "seqdeepfake")
    if sequence_model:  # Seq-DeepFake's protocol files, and its metrics
        assert report["train"][6:] == ["best_fixed.pt", "best_adaptive.pt"]
        assert {"fixed_acc", "adaptive_acc"} <= set(report["evaluate"])
        run = tmp_path / "work" / "run"
        assert json.loads((run / "test_metrics.json").read_text())["metric_checkpoints"] == {
            "fixed_acc": "best_fixed.pt", "adaptive_acc": "best_adaptive.pt"}
    if cfg.data.kind == "seqdeepfake":  # the official layout: JPEG images and the CSVs
        subset = tmp_path / "work" / "data" / "Seq-DeepFake" / cfg.data.subset
        assert {path.name for path in (subset / "annotations").iterdir()} >= {"train.csv", "val.csv", "test.csv"}
        assert all(path.suffix == ".jpg" for path in (subset / "images").rglob("*.*"))
    if cfg.data.kind == "deepfakebench":  # absolute paths in DeepfakeBench's index; the LMDB read too
        index = json.loads((tmp_path / "work" / "data" / "dataset_json" / f"{cfg.data.dataset_name}.json").read_text())
        frames = [frame for label in index[cfg.data.dataset_name].values() for split in label.values()
                  for level in split.values() for video in level.values() for frame in video["frames"]]
        assert frames and all(os.path.isabs(frame) for frame in frames)
        assert report["crosseval"] == [s.name for s in cfg.data.cross_test_sets] + ["LMDB-set", "frame-folders"]
    assert report["predict"] == rehearse.PREDICTED_IMAGES
    assert ("explain" in report) == (cfg.method == "mlrank")


def test_a_config_it_cannot_rehearse_and_a_folder_that_holds_data_are_one_line_errors(tmp_path, capsys):
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "mine.txt").write_text("somebody's data")
    assert run_cli(lambda: rehearse.main(["synthetic", "--workdir", str(tmp_path / "work")])) == 2
    err = capsys.readouterr().err
    assert "already holds data" in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / "work" / "mine.txt").read_text() == "somebody's data"
    cfg = load_config(None)
    with pytest.raises(ValueError, match="no rehearsal for data.kind 'imagenet'"):
        rehearse.write_data(type("Config", (), {"data": type("Data", (), {"kind": "imagenet"})()})(), tmp_path)
    assert cfg.data.kind in ("synthetic",)  # the kinds a config can name all have one (above)


def test_metrics_of_two_processes_agree_to_one_float32_step_and_no_more():
    # the values CI saw for one checkpoint evaluated in train's process and in evaluate's
    assert rehearse.same_metric(1.000049352645874, 1.0000494718551636)
    assert not rehearse.same_metric(0.75, 0.7501)  # an AUC that moved is a real difference
    assert not rehearse.same_metric(3, 4) and rehearse.same_metric("best", "best")
    assert not rehearse.same_metric(None, 0.5)
