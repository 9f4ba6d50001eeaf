"""train -> evaluate -> predict end to end on a tiny synthetic set; bit-for-bit resume; DDP on gloo."""

import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from mlrank import evaluate, predict, train
from mlrank.config import load_config
from mlrank.data.synthetic import SyntheticSeqDeepFake
from mlrank.distributed import init_distributed
from mlrank.runs import RunFolder, load_checkpoint

TINY = [
    "data.image_size=64",
    "data.synthetic_train_size=24",
    "data.synthetic_val_size=12",
    "data.synthetic_test_size=12",
    "data.batch_size=6",
    "data.num_workers=0",
    "model.backbone=resnet18",
    "model.token_dim=32",
    "model.num_heads=2",
    "model.out_stride=8",
    "model.dropout=0.1",
    "optim.epochs=2",
    "train.max_steps_per_epoch=2",
]


def tiny_overrides(folder, *extra):
    return [*TINY, f"output_dir={folder}", *extra]


def test_train_evaluate_predict_end_to_end(tmp_path, capsys):
    run = tmp_path / "run"
    assert train.main(tiny_overrides(run)) == 0
    for name in ("config.yaml", "run.json", "metrics.jsonl", "last.pt", "best.pt", "test_metrics.json"):
        assert (run / name).is_file(), name
    records = RunFolder(run).read_metrics()
    assert [r["epoch"] for r in records] == [0, 1]
    assert all(0.0 <= r["val_fixed_acc"] <= 1.0 and r["loss_total"] > 0 for r in records)
    test_metrics = json.loads((run / "test_metrics.json").read_text())
    assert set(test_metrics) >= {"fixed_acc", "adaptive_acc", "multilabel_acc", "order_r2", "fake_auc"}
    assert load_checkpoint(run / "best.pt")["config"]["output_dir"] == str(run)

    assert evaluate.main([str(run / "best.pt"), "--split", "val"]) == 0
    table = capsys.readouterr().out
    assert "fixed_acc" in table and "order R^2 nose" in table
    evaluated = json.loads((run / "best_val_metrics.json").read_text())
    best_record = max(records, key=lambda r: r["val_fixed_acc"])
    assert evaluated["fixed_acc"] == pytest.approx(best_record["val_fixed_acc"])

    images = tmp_path / "images"
    images.mkdir()
    dataset = SyntheticSeqDeepFake("test", size=64, num_images=2)
    import cv2

    for index in range(2):
        cv2.imwrite(str(images / f"face{index}.png"), dataset.sample(index).image[:, :, ::-1])
    out = tmp_path / "predictions"
    assert predict.main([str(run / "best.pt"), str(images), "--output-dir", str(out)]) == 0
    predictions = json.loads((out / "predictions.json").read_text())
    assert len(predictions) == 2
    for record in predictions:
        assert 0.0 <= record["fake_probability"] <= 1.0
        probabilities = record["probabilities"]
        order = [m["name"] for m in record["manipulations"]]
        # the order is by decreasing probability over the components above 0.5
        assert order == sorted((n for n, p in probabilities.items() if p > 0.5), key=lambda n: -probabilities[n])
        assert cv2.imread(record["heatmap"]).shape == (64, 64, 3)


def test_predict_and_evaluate_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint .*missing.pt does not exist"):
        evaluate.load_model(tmp_path / "missing.pt")
    with pytest.raises(FileNotFoundError, match="image not found"):
        predict.find_images([str(tmp_path / "nope.png")])
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    from mlrank.data.io import read_rgb

    with pytest.raises(ValueError, match="broken.png"):
        read_rgb(broken)


def test_checkpoint_that_does_not_fit_its_config_is_a_clear_error(tmp_path):
    run = tmp_path / "run"
    train.main(tiny_overrides(run, "optim.epochs=1", "train.max_steps_per_epoch=1"))
    state = load_checkpoint(run / "last.pt")
    state["config"]["model"]["token_dim"] = 64
    torch.save(state, tmp_path / "mismatch.pt")
    with pytest.raises(ValueError, match="does not fit the model its config describes"):
        evaluate.load_model(tmp_path / "mismatch.pt")


def test_resume_continues_bit_for_bit(tmp_path, monkeypatch):
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    train.main(tiny_overrides(whole))

    original_save = RunFolder.save_checkpoint

    def save_then_stop(self, state, name="last"):
        path = original_save(self, state, name)
        if name == "last" and state["epoch"] == 0:
            raise KeyboardInterrupt  # the machine goes down right after epoch 0's checkpoint
        return path

    monkeypatch.setattr(RunFolder, "save_checkpoint", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        train.main(tiny_overrides(resumed))
    monkeypatch.setattr(RunFolder, "save_checkpoint", original_save)
    assert load_checkpoint(resumed / "last.pt")["epoch"] == 0
    train.main([*tiny_overrides(resumed), "--resume"])

    a, b = load_checkpoint(whole / "last.pt"), load_checkpoint(resumed / "last.pt")
    assert a["epoch"] == b["epoch"] == 1
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    strip = lambda records: [{k: v for k, v in r.items() if k != "images_per_s"} for r in records]  # noqa: E731
    assert strip(RunFolder(whole).read_metrics()) == strip(RunFolder(resumed).read_metrics())
    assert len(json.loads((resumed / "run.json").read_text())["resumes"]) == 1


def test_resume_refuses_another_config(tmp_path):
    run = tmp_path / "run"
    train.main(tiny_overrides(run, "optim.epochs=1", "train.max_steps_per_epoch=1"))
    with pytest.raises(ValueError, match="config differs from the checkpoint's in \\['optim'\\]"):
        train.main([*tiny_overrides(run, "optim.epochs=1", "train.max_steps_per_epoch=1", "optim.lr=0.5"), "--resume"])


def test_unknown_key_on_the_command_line(tmp_path):
    with pytest.raises(ValueError, match="did you mean 'optim.lr'"):
        train.main(tiny_overrides(tmp_path, "optim.lrr=1"))


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ddp_worker(rank, world_size, port, folder, results):
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    cfg = load_config(None, tiny_overrides(folder, "optim.epochs=1"))
    ctx = init_distributed(use_cuda=False)
    try:
        results.put((rank, train.run(cfg, False, ["test"], ctx)))
    finally:
        torch.distributed.destroy_process_group()


def test_ddp_on_gloo_with_two_processes(tmp_path):
    context = mp.get_context("spawn")
    results = context.Queue()
    port = _free_port()
    processes = [
        context.Process(target=_ddp_worker, args=(rank, 2, port, tmp_path / "run", results)) for rank in range(2)
    ]
    for process in processes:
        process.start()
    gathered = dict(results.get(timeout=300) for _ in range(2))
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    run = tmp_path / "run"
    # the main rank alone wrote the run folder
    assert [r["epoch"] for r in RunFolder(run).read_metrics()] == [0]
    # both ranks computed the test metrics from the same outputs, gathered over all 12 images:
    # the same numbers as a single process evaluating the checkpoint
    assert gathered[0] == gathered[1]
    cfg, method, model = evaluate.load_model(run / "best.pt")
    alone = method.evaluate(cfg, model, method.evaluation_dataset(cfg, "test"), init_distributed(use_cuda=False), "test")
    assert gathered[0].keys() == alone.keys()
    for key, value in alone.items():
        assert gathered[0][key] == pytest.approx(value, abs=1e-6, nan_ok=True), key
