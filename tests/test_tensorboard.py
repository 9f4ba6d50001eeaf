"""train.tensorboard: every epoch's record as TensorBoard scalars beside metrics.jsonl, read back with
TensorBoard's own EventAccumulator; a resumed run's events agree with its log; main process only;
a clear error when the package is missing."""

import importlib.util
import sys

import pytest
from test_train import tiny_overrides

from mlrank import train
from mlrank.cli import run_cli
from mlrank.engine.runs import RunFolder, tensorboard_scalars
from mlrank.optional import MissingDependency

needs_tensorboard = pytest.mark.skipif(
    importlib.util.find_spec("tensorboard") is None, reason="tensorboard is not installed (pip install tensorboard)"
)


def read_events(folder):
    """{tag: [(step, value), ...]} of the TensorBoard events in ``folder``, as TensorBoard reads them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_tags_of_a_record():
    record = {"epoch": 3, "loss_total": 2.5, "loss_cls": 1, "lr": 1e-3, "images_per_s": 40.0, "val_fixed_acc": 0.5,
              "val_order_r2": [-1.5, 0.25], "val_kendall_tau": None, "best": True, "note": "text"}
    assert tensorboard_scalars(record) == {
        "loss/total": 2.5, "loss/cls": 1.0, "lr": 1e-3, "images_per_s": 40.0, "val/fixed_acc": 0.5,
        "val/order_r2/0": -1.5, "val/order_r2/1": 0.25,
    }


def record(epoch, loss):
    return {"epoch": epoch, "loss_total": loss, "lr": 0.1 / (epoch + 1), "val_fixed_acc": 0.5 + epoch / 10,
            "best": True}


@needs_tensorboard
def test_a_resumed_run_hides_the_events_of_the_epochs_it_drops(tmp_path):
    folder = RunFolder(tmp_path / "run", tensorboard=True)
    folder.start({}, seed=0, argv=[], world_size=1)
    for epoch in range(3):
        folder.log_metrics(record(epoch, loss=10.0 + epoch))
    folder.close()
    assert read_events(folder.tensorboard_path)["loss/total"] == [(0, 10.0), (1, 11.0), (2, 12.0)]

    # last.pt held epoch 0: resume drops epochs 1 and 2 from metrics.jsonl and trains them again
    resumed = RunFolder(tmp_path / "run", tensorboard=True)
    resumed.resume({}, last_epoch=0, seed=0, argv=[], world_size=1)
    resumed.log_metrics(record(1, loss=5.0))
    resumed.close()

    events = read_events(folder.tensorboard_path)
    assert events["loss/total"] == [(0, 10.0), (1, 5.0)]
    log = RunFolder(tmp_path / "run").read_metrics()
    assert events["loss/total"] == [(r["epoch"], r["loss_total"]) for r in log]
    assert events["lr"] == [(0, pytest.approx(0.1)), (1, pytest.approx(0.05))]
    assert events["val/fixed_acc"] == [(0, 0.5), (1, pytest.approx(0.6))]


@needs_tensorboard
def test_only_the_main_process_writes_events(tmp_path):
    other_rank = RunFolder(tmp_path, is_main=False, tensorboard=True)
    other_rank.log_metrics(record(0, loss=1.0))
    other_rank.close()
    assert not (tmp_path / "tensorboard").exists() and not (tmp_path / "metrics.jsonl").exists()


@needs_tensorboard
def test_training_logs_losses_lr_and_validation_metrics_of_every_epoch(tmp_path):
    # Both methods log through the training loop's RunFolder.log_metrics, so one method shows both do.
    run = tmp_path / "run"
    assert train.main(tiny_overrides(run, "train.tensorboard=true")) == 0

    log = RunFolder(run).read_metrics()
    events = read_events(run / "tensorboard")
    assert [r["epoch"] for r in log] == [0, 1]
    expected = {tag: [] for r in log for tag in tensorboard_scalars(r)}
    for r in log:
        for tag, value in tensorboard_scalars(r).items():
            expected[tag].append((r["epoch"], pytest.approx(value, rel=1e-6, nan_ok=True)))
    assert events == expected
    assert {"loss/total", "lr"} <= set(events) and any(tag.startswith("val/") for tag in events)


def test_missing_tensorboard_is_a_one_line_error_before_the_run_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    run = tmp_path / "run"
    with pytest.raises(MissingDependency, match=r"train.tensorboard: true needs tensorboard.*pip install tensorboard"):
        train.main(tiny_overrides(run, "train.tensorboard=true"))
    assert not run.exists()

    assert run_cli(lambda: train.main(tiny_overrides(run, "train.tensorboard=true"))) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("error: train.tensorboard: true needs tensorboard")
    assert not run.exists()


def test_tensorboard_can_be_switched_on_when_resuming(tmp_path):
    saved = {"train": {"tensorboard": False, "amp": "auto"}}
    train.check_resumable(saved, {"train": {"tensorboard": True, "amp": "auto"}}, RunFolder(tmp_path))
    with pytest.raises(ValueError, match=r"differs from the checkpoint's in \['train.amp'\]"):
        train.check_resumable(saved, {"train": {"tensorboard": True, "amp": "fp32"}}, RunFolder(tmp_path))
