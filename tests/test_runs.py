"""Run folders: atomic writes, RNG capture, checkpoints and bit-for-bit resume, the metrics log."""

import errno
import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from mlrank.engine import runs
from mlrank.engine.config import Config, config_to_dict, load_config
from mlrank.engine.runs import (
    REQUIRED_CHECKPOINT_KEYS,
    RunFolder,
    atomic_torch_save,
    atomic_write_json,
    atomic_write_text,
    capture_rng_state,
    check_inside_root,
    load_checkpoint,
    remove_stale_temporaries,
    restore_rng_state,
    seed_everything,
)


class FailsWhilePickled:
    def __reduce__(self):
        raise RuntimeError("serializer failed")


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_atomic_write_replaces_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "sub" / "note.txt"
    atomic_write_text(path, "first")
    atomic_write_text(path, "second")
    assert path.read_text() == "second"
    atomic_write_json(tmp_path / "facts.json", {"a": [1, 2.5, None]})
    assert json.loads((tmp_path / "facts.json").read_text()) == {"a": [1, 2.5, None]}
    assert leftovers(path.parent) == [] and leftovers(tmp_path) == []


def test_failing_serializer_leaves_the_old_file_intact(tmp_path):
    path = tmp_path / "state.pt"
    atomic_torch_save({"weights": torch.arange(5)}, path)
    before = path.read_bytes()
    with pytest.raises(RuntimeError, match="serializer failed"):
        atomic_torch_save({"weights": torch.zeros(1000), "bad": FailsWhilePickled()}, path)
    assert path.read_bytes() == before
    with pytest.raises(TypeError):
        atomic_write_json(path, {"not json": object()})
    assert path.read_bytes() == before
    assert leftovers(tmp_path) == []


def test_a_write_that_fails_on_a_full_disk_says_so(tmp_path, monkeypatch):
    # torch.save reports a full disk as "unexpected pos N vs M"; the error should name the cause.
    path = tmp_path / "last.pt"
    atomic_torch_save({"weights": torch.arange(5)}, path)
    before = path.read_bytes()
    usage = runs.shutil.disk_usage(tmp_path)
    monkeypatch.setattr(runs.shutil, "disk_usage", lambda folder: usage._replace(free=4096))
    with pytest.raises(OSError, match=r"no space left on the disk to write .*last\.pt; the previous last\.pt there is intact") as caught:
        atomic_torch_save({"weights": torch.zeros(1000), "bad": FailsWhilePickled()}, path)
    assert caught.value.errno == errno.ENOSPC
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert path.read_bytes() == before and leftovers(tmp_path) == []


def test_failure_after_the_new_bytes_are_written_leaves_the_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "config.yaml"
    atomic_write_text(path, "old: 1\n")

    def failing_fsync(descriptor):
        raise OSError("disk full")

    monkeypatch.setattr(runs.os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(path, "new: 2\n" * 1000)
    assert path.read_text() == "old: 1\n"
    assert leftovers(tmp_path) == []


def draw_numbers(generator):
    return (
        [random.random() for _ in range(3)],
        np.random.rand(3).tolist(),
        np.random.randn(3).tolist(),  # normal draws exercise numpy's cached Gaussian
        torch.rand(3).tolist(),
        torch.rand(3, generator=generator).tolist(),
    )


def test_rng_capture_and_restore_reproduce_the_next_numbers(tmp_path):
    generator = torch.Generator().manual_seed(3)
    seed_everything(11, deterministic=False)
    np.random.randn(1)  # leave a cached Gaussian in numpy's state
    state = capture_rng_state({"data": generator})
    expected = draw_numbers(generator)
    assert draw_numbers(generator) != expected  # the generators did move on
    restore_rng_state(state, {"data": generator})
    assert draw_numbers(generator) == expected
    # The state survives a checkpoint file loaded with weights_only=True.
    atomic_torch_save(state, tmp_path / "rng.pt")
    restore_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True), {"data": generator})
    assert draw_numbers(generator) == expected


def test_seed_everything_makes_draws_repeatable(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)  # restored after the test
    generator = torch.Generator().manual_seed(0)
    seed_everything(5, deterministic=True)
    first = draw_numbers(generator)[:4]
    seed_everything(5, deterministic=True)
    assert draw_numbers(generator)[:4] == first
    assert torch.are_deterministic_algorithms_enabled() and os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    torch.use_deterministic_algorithms(False)


def test_restore_rng_requires_its_keys():
    with pytest.raises(ValueError, match="lacks"):
        restore_rng_state({"python": random.getstate()})


def make_training():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.3), torch.nn.Linear(8, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=6)
    return model, optimizer, scheduler


def train_epoch(model, optimizer, scheduler):
    for _ in range(3):
        inputs = torch.randn(5, 4)  # data and dropout both draw from torch's global generator
        loss = model(inputs).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    scheduler.step()


def checkpoint_of(model, optimizer, scheduler, epoch):
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "epoch": epoch,
        "global_step": 3 * (epoch + 1),
        "best_metric": 0.5,
        "rng": capture_rng_state(),
        "config": config_to_dict(Config()),
    }


def test_checkpoint_resume_continues_bit_for_bit(tmp_path):
    run = RunFolder(tmp_path / "run")
    model, optimizer, scheduler = make_training()
    torch.manual_seed(1)
    for epoch in range(2):
        train_epoch(model, optimizer, scheduler)
    run.save_checkpoint(checkpoint_of(model, optimizer, scheduler, epoch=1), "last")
    for epoch in range(2, 4):
        train_epoch(model, optimizer, scheduler)
    uninterrupted = [p.detach().clone() for p in model.parameters()]

    torch.manual_seed(999)  # a new process: different global state, fresh objects
    model, optimizer, scheduler = make_training()
    state = load_checkpoint(run.checkpoint_path("last"))
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    restore_rng_state(state["rng"])
    for epoch in range(state["epoch"] + 1, 4):
        train_epoch(model, optimizer, scheduler)
    for resumed, expected in zip(model.parameters(), uninterrupted):
        assert torch.equal(resumed, expected)
    assert state["config"] == config_to_dict(Config()) and state["global_step"] == 6


def test_save_checkpoint_refuses_state_that_would_not_load(tmp_path):
    run = RunFolder(tmp_path)
    state = checkpoint_of(*make_training(), epoch=0)
    with pytest.raises(TypeError, match=r"state\['best_metric'\] is a numpy.float64"):
        run.save_checkpoint({**state, "best_metric": np.float64(0.5)})
    with pytest.raises(TypeError, match=r"state\['config'\] is a mlrank.engine.schema.Config"):
        run.save_checkpoint({**state, "config": Config()})
    without_rng = {key: value for key, value in state.items() if key != "rng"}
    with pytest.raises(ValueError, match=r"lacks the checkpoint keys \['rng'\]"):
        run.save_checkpoint(without_rng)
    with pytest.raises(ValueError, match="checkpoint name"):
        run.save_checkpoint(state, "final")
    assert not run.checkpoint_path("last").exists()


def test_load_checkpoint_names_missing_and_damaged_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    run = RunFolder(tmp_path)
    path = run.save_checkpoint(checkpoint_of(*make_training(), epoch=0), "best")
    assert path == tmp_path / "best.pt" and load_checkpoint(path)["epoch"] == 0
    data = path.read_bytes()
    damaged = {"truncated.pt": data[: len(data) // 2], "empty.pt": b"", "garbage.pt": b"not a checkpoint"}
    for name, content in damaged.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=f"checkpoint .*{name} cannot be read"):
            load_checkpoint(tmp_path / name)
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="holds a list"):
        load_checkpoint(tmp_path / "list.pt")
    torch.save({"model": {}}, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match="partial.pt lacks the checkpoint keys"):
        load_checkpoint(tmp_path / "partial.pt")


def test_start_writes_config_and_run_facts_and_refuses_to_overwrite(tmp_path):
    config = load_config(None, ["seed=3"])
    run = RunFolder(tmp_path / "run")
    assert not run.path.exists()  # nothing is created before the run starts
    run.start(config_to_dict(config), seed=3, argv=["-m", "mlrank.train", "seed=3"], world_size=2)
    assert load_config(run.config_path) == config
    facts = json.loads(run.run_info_path.read_text())
    assert facts["seed"] == 3 and facts["argv"] == ["-m", "mlrank.train", "seed=3"] and facts["world_size"] == 2
    assert facts["versions"]["torch"] == torch.__version__ and facts["versions"]["numpy"] == np.__version__
    assert {"python", "timm", "mlrank"} <= set(facts["versions"]) and "git" in facts and facts["resumes"] == []
    assert facts["machine"]["cores"] == os.cpu_count() and facts["machine"]["cpu"]  # a results table's machine
    run.log_metrics({"epoch": 0, "loss": 1.0})
    run.save_checkpoint(checkpoint_of(*make_training(), epoch=0), "last")
    before = {path.name: path.read_bytes() for path in run.path.iterdir()}
    with pytest.raises(FileExistsError, match=f"already holds a run .*--resume {run.path}"):
        RunFolder(tmp_path / "run").start(config_to_dict(config), seed=3, argv=[], world_size=1)
    assert {path.name: path.read_bytes() for path in run.path.iterdir()} == before


def dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_start_clears_an_attempt_that_stopped_in_its_first_epoch(tmp_path):
    run = RunFolder(tmp_path)
    run.start(config_to_dict(Config()), seed=0, argv=["first"], world_size=1)
    run.save_checkpoint(checkpoint_of(*make_training(), epoch=0), "best")
    run.log_metrics({"epoch": 0, "loss": 1.0})  # then killed while writing last.pt:
    stale = tmp_path / f".last.pt.{dead_pid()}.0badc0de.tmp"
    stale.write_bytes(b"half")
    mine = [tmp_path / f".last.pt.{os.getpid()}.0badc0de.tmp", tmp_path / ".last.pt.1.tmp", tmp_path / "notes.txt"]
    for path in mine:  # a write under way, and the user's files
        path.write_text("keep")

    assert sorted(run.check_startable()) == [run.checkpoint_path("best"), run.metrics_path]  # nothing removed yet
    assert run.checkpoint_path("best").exists() and stale.exists()
    removed = run.start(config_to_dict(Config()), seed=0, argv=["second"], world_size=1)
    assert sorted(removed) == sorted(["best.pt", "metrics.jsonl", stale.name])
    assert not stale.exists() and all(path.read_text() == "keep" for path in mine)
    assert run.read_metrics() == [] and json.loads(run.run_info_path.read_text())["argv"] == ["second"]


def test_start_refuses_files_of_later_epochs_without_last_pt(tmp_path):
    run = RunFolder(tmp_path)
    run.start(config_to_dict(Config()), seed=0, argv=[], world_size=1)
    run.save_checkpoint(checkpoint_of(*make_training(), epoch=3), "best")
    with pytest.raises(FileExistsError, match="holds best.pt of epoch 3 but no last.pt"):
        run.start(config_to_dict(Config()), seed=0, argv=[], world_size=1)
    run.checkpoint_path("best").unlink()
    for epoch in range(3):
        run.log_metrics({"epoch": epoch})
    with pytest.raises(FileExistsError, match=r"holds metrics of epochs \[1, 2\] but no last.pt"):
        run.start(config_to_dict(Config()), seed=0, argv=[], world_size=1)
    assert [record["epoch"] for record in run.read_metrics()] == [0, 1, 2]  # left alone


def test_stale_temporaries_are_those_of_dead_writers_only(tmp_path):
    dead = dead_pid()
    names = {
        f".last.pt.{dead}.0123abcd.tmp": False,
        f".config.yaml.{dead}.ffffffff.tmp": False,
        f".last.pt.{os.getpid()}.0123abcd.tmp": True,  # this process: a write under way
        f".last.pt.{dead}.0123ABCD.tmp": True,  # not the writer's pattern
        f"last.pt.{dead}.0123abcd.tmp": True,
        f".last.pt.{dead}.0123abcd.tmp.bak": True,
    }
    for name in names:
        (tmp_path / name).write_text("x")
    assert remove_stale_temporaries(tmp_path) == sorted(name for name, kept in names.items() if not kept)
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(name for name, kept in names.items() if kept)
    assert remove_stale_temporaries(tmp_path / "absent") == []


@pytest.mark.parametrize(
    "path, reason",
    [
        ("/etc/passwd", "is absolute"),
        ("a/../b.png", "has a '..' component"),
        ("..", "has a '..' component"),
        ("a\\..\\..\\b.png", "has a '..' component"),
    ],
)
def test_paths_that_may_leave_the_root(path, reason):
    with pytest.raises(ValueError, match=f"frame path .* {reason}"):
        check_inside_root(path, "frame path")


def test_paths_inside_the_root():
    for path in ("a/b.png", "./a/b.png", "a..b/c.png", "..a/b.png", "a/b../c.png"):
        check_inside_root(path, "frame path")


def test_metrics_log_and_resume_drop_later_epochs(tmp_path):
    run = RunFolder(tmp_path)
    run.start(config_to_dict(Config()), seed=0, argv=[], world_size=1)
    for epoch in range(4):
        run.log_metrics({"epoch": epoch, "loss": 1.0 / (epoch + 1), "fixed_acc": None})
    with open(run.metrics_path, "a") as file:
        file.write('{"epoch": 4, "lo')  # a crash while writing epoch 4
    assert [record["epoch"] for record in run.read_metrics()] == [0, 1, 2, 3]
    assert run.read_metrics()[1] == {"epoch": 1, "loss": 0.5, "fixed_acc": None}

    resumed_config = config_to_dict(load_config(None, ["optim.epochs=10"]))
    run.resume(resumed_config, last_epoch=1, seed=0, argv=["--resume"], world_size=1)
    assert run.metrics_path.read_text().splitlines() == [
        json.dumps({"epoch": 0, "loss": 1.0, "fixed_acc": None}),
        json.dumps({"epoch": 1, "loss": 0.5, "fixed_acc": None}),
    ]
    assert yaml.safe_load(run.config_path.read_text())["optim"]["epochs"] == 10
    facts = json.loads(run.run_info_path.read_text())
    assert facts["argv"] == [] and facts["resumes"][0]["argv"] == ["--resume"]
    assert facts["resumes"][0]["from_epoch"] == 1
    run.log_metrics({"epoch": 2, "loss": 0.3})
    assert [record["epoch"] for record in run.read_metrics()] == [0, 1, 2]


def test_metrics_errors_name_the_problem(tmp_path):
    run = RunFolder(tmp_path)
    with pytest.raises(ValueError, match="needs an int 'epoch'"):
        run.log_metrics({"loss": 1.0})
    with pytest.raises(TypeError, match="epoch 0 is not JSON"):
        run.log_metrics({"epoch": 0, "loss": torch.tensor(1.0)})
    run.metrics_path.write_text('{"epoch": 0}\nnot json\n{"epoch": 2}\n')
    with pytest.raises(ValueError, match="metrics.jsonl line 2 is not JSON"):
        run.read_metrics()


def test_non_main_rank_writes_nothing(tmp_path):
    run = RunFolder(tmp_path / "rank1", is_main=False)
    run.start(config_to_dict(Config()), seed=0, argv=[], world_size=2)
    run.log_metrics({"epoch": 0})
    run.save_checkpoint(checkpoint_of(*make_training(), epoch=0))
    assert not (tmp_path / "rank1").exists()
    assert os.listdir(tmp_path) == []
