"""One writer per output (mlrank.engine.locks), with real processes: a second command on the same
output is refused at once naming the holder, a lock left by a dead process is taken over, and two
trainings started on one run folder leave one whole run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlrank import ablate, crosseval, explain, predict, preprocess, train
from mlrank.cli import run_cli
from mlrank.engine.locks import OutputInUse, lock_path, output_lock

TINY = ["data.image_size=32", "data.synthetic_train_size=24", "data.synthetic_val_size=6", "data.synthetic_test_size=6",
        "data.batch_size=6", "data.num_workers=0", "model.token_dim=16", "model.num_heads=2", "optim.epochs=1"]
HOLD = """
import sys, time
from mlrank.engine.locks import output_lock
with output_lock(sys.argv[1], "the holder"):
    print("held", flush=True)
    time.sleep(120)
"""


def hold(target):
    """A process that holds the lock of ``target`` until killed; returns it once it holds the lock."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(target)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def release(holder):
    holder.kill()
    holder.wait()


def test_a_second_holder_is_refused_naming_the_first_and_a_dead_holders_lock_is_taken_over(tmp_path):
    target = tmp_path / "out"
    holder = hold(target)
    try:
        with pytest.raises(OutputInUse, match=f"in use by process {holder.pid} on .* \\(the holder\\)"):
            with output_lock(target, "second"):
                pass
    finally:
        release(holder)  # killed: the kernel drops its lock; its file may stay
    with output_lock(target, "third") as path:
        assert f"process {os.getpid()}" in path.read_text()
    assert not lock_path(target).exists() and not target.exists()  # nothing left behind


COMMANDS = {
    "train": lambda out, tmp: train.main([*TINY, f"output_dir={out}"]),
    "ablate": lambda out, tmp: ablate.main(["--output-dir", str(out), "--rows", "bce_u", *TINY]),
    "predict": lambda out, tmp: predict.main([str(tmp / "best.pt"), str(tmp / "face.png"), "--output-dir", str(out)]),
    "explain": lambda out, tmp: explain.main([str(tmp / "best.pt"), str(tmp / "face.png"), "--output-dir", str(out)]),
    "crosseval": lambda out, tmp: crosseval.main([str(tmp / "best.pt"), "--set", "name=X", "--output", str(out)]),
    "preprocess": lambda out, tmp: preprocess.main([str(tmp / "face.png"), str(out)]),
}


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_that_writes_refuses_an_output_in_use(command, tmp_path, capsys):
    (tmp_path / "best.pt").write_bytes(b"")  # the commands are refused before reading it
    import cv2
    import numpy as np

    cv2.imwrite(str(tmp_path / "face.png"), np.full((32, 32, 3), 128, np.uint8))
    out = tmp_path / "out"
    holder = hold(out)
    try:
        status = run_cli(lambda: COMMANDS[command](out, tmp_path))
        err = capsys.readouterr().err
    finally:
        release(holder)
    if command in ("predict", "explain", "crosseval"):  # the checkpoint is checked first: an empty file
        assert status == 2 and ("in use by" in err or "cannot be read" in err), err
    else:
        assert status == 2 and f"in use by process {holder.pid}" in err, err
    assert not out.exists()


def test_two_trainings_started_on_one_run_folder_leave_one_whole_run(tmp_path):
    run = tmp_path / "run"
    # the first run renders 3000 images before its first step: the second starts well within it
    arguments = [sys.executable, "-m", "mlrank.train", *TINY, "data.synthetic_train_size=3000", "optim.epochs=2",
                 "train.max_steps_per_epoch=2", f"output_dir={run}"]
    first = subprocess.Popen(arguments, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not lock_path(run).exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    second = subprocess.run(arguments, capture_output=True, text=True, timeout=120)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert second.returncode == 2 and f"in use by process {first.pid}" in second.stderr, second.stderr
    assert len(second.stderr.strip().splitlines()) == 1
    epochs = [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [0, 1] and (run / "test_metrics.json").is_file()
