"""How the entry points end: one-line user errors with status 2, Ctrl-C with status 130 and the command
that resumes the run, and a kill in the first epoch that a rerun in the same folder recovers from."""

import json
import os
import runpy
import shlex
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from mlrank import train
from mlrank.cli import run_cli
from mlrank.engine.runs import RunFolder, load_checkpoint
from mlrank.ranking import method as ranking_method

from test_train import tiny_overrides

REPOSITORY = Path(__file__).resolve().parents[1]


def python_env():
    """The environment for a subprocess that imports this checkout's mlrank."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPOSITORY), os.environ.get("PYTHONPATH")]))}


def start(*arguments, **popen):
    return subprocess.Popen(
        [sys.executable, *arguments], env=python_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        **popen,
    )


# ---------------------------------------------------------------- run_cli


def raising(error):
    def main():
        raise error

    return main


@pytest.mark.parametrize(
    "error",
    [
        ValueError("config key 'seed' must lie in [0, 2**32), got -1"),
        TypeError("frames_per_video must be an int"),
        FileNotFoundError("checkpoint x.pt does not exist"),
        FileExistsError("run folder r already holds a run"),
        NotADirectoryError("config key 'data.root': f is not a folder"),
        IsADirectoryError("config key 'data.json_path': d is a folder, not a file"),
        PermissionError("cannot write p"),
    ],
)
def test_user_errors_end_with_one_line_and_status_2(capsys, monkeypatch, error):
    monkeypatch.delenv("MLRANK_TRACEBACK", raising=False)
    assert run_cli(raising(error)) == 2
    captured = capsys.readouterr()
    assert captured.err == f"error: {error}\n" and captured.out == ""


def test_multi_line_messages_are_joined_and_other_errors_keep_their_traceback(capsys, monkeypatch):
    monkeypatch.delenv("MLRANK_TRACEBACK", raising=False)
    assert run_cli(raising(ValueError("first\n  second\n"))) == 2
    assert capsys.readouterr().err == "error: first; second\n"
    for bug in (KeyError("model"), RuntimeError("shape mismatch"), ZeroDivisionError()):
        with pytest.raises(type(bug)):
            run_cli(raising(bug))
    monkeypatch.setenv("MLRANK_TRACEBACK", "1")
    with pytest.raises(ValueError, match="shown in full"):
        run_cli(raising(ValueError("shown in full")))


def test_status_interrupt_and_ranks(capsys, monkeypatch):
    assert run_cli(lambda: 0) == 0 and run_cli(lambda: None) == 0 and run_cli(lambda: 3) == 3
    assert run_cli(raising(KeyboardInterrupt("resume with: x"))) == 130
    assert capsys.readouterr().err == "\ninterrupted: resume with: x\n"
    assert run_cli(raising(KeyboardInterrupt())) == 130
    assert capsys.readouterr().err == "\ninterrupted\n"
    monkeypatch.setenv("RANK", "1")  # under torchrun, only rank 0 prints
    assert run_cli(raising(ValueError("bad"))) == 2
    assert run_cli(raising(KeyboardInterrupt("resume with: x"))) == 130
    assert capsys.readouterr().err == ""


# ---------------------------------------------------------------- the entry points


ENTRY_POINT_ERRORS = [
    (["mlrank.train", "optim.lrr=0.1"], "error: unknown config key 'optim.lrr'; did you mean 'optim.lr'?"),
    (
        ["mlrank.train", "data.kind=seqdeepfake", "data.root=TMP/nowhere"],
        "error: config key 'data.root': TMP/nowhere does not exist",
    ),
    (
        ["mlrank.train", "--config", "TMP/absent.yaml"],
        "error: config 'TMP/absent.yaml' is neither a file nor a shipped config name",
    ),
    (["mlrank.evaluate", "TMP/missing.pt"], "error: checkpoint TMP/missing.pt does not exist"),
    (["mlrank.predict", "TMP/missing.pt", "TMP"], "error: checkpoint TMP/missing.pt does not exist"),
    (["mlrank.preprocess", "TMP/no-video.mp4", "TMP/out"], "error: input not found: TMP/no-video.mp4"),
]


@pytest.mark.parametrize("arguments, message", ENTRY_POINT_ERRORS)
def test_entry_points_report_user_errors_in_one_line(tmp_path, monkeypatch, capsys, arguments, message):
    """Each module run as a program (its __main__ block, in this process to spare the imports)."""
    arguments = [argument.replace("TMP", str(tmp_path)) for argument in arguments]
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLRANK_TRACEBACK", raising=False)
    monkeypatch.setattr(sys, "argv", [arguments[0], *arguments[1:]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # runpy: the module is imported already
        with pytest.raises(SystemExit) as exit_status:
            runpy.run_module(arguments[0], run_name="__main__")
    assert exit_status.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith(message.replace("TMP", str(tmp_path))), err
    assert not (tmp_path / "runs").exists()  # a failed training leaves no run folder


# ---------------------------------------------------------------- interrupting and killing training


def wait_for(condition, process, timeout=120):
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            err = process.communicate()[1]
            raise AssertionError(f"training ended first (status {process.returncode}): {err[-2000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("training did not get there in time")
        time.sleep(0.02)


def test_ctrl_c_stops_cleanly_and_prints_the_command_that_resumes(tmp_path):
    run = tmp_path / "run"
    epochs = 4
    # As in a terminal: a shell's background job (CI started with `&`) inherits SIGINT ignored, and
    # Python then installs no handler, so the run would never see the Ctrl-C.
    process = start("-m", "mlrank.train", *tiny_overrides(run, f"optim.epochs={epochs}"), cwd=tmp_path,
                    preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    wait_for(lambda: (run / "last.pt").is_file(), process)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)

    assert process.returncode == 130
    assert "Traceback" not in err
    lines = err.splitlines()
    message = next(index for index, line in enumerate(lines) if line.startswith("interrupted"))
    assert lines[message] == "interrupted: training stopped; last.pt holds the last completed epoch. Resume with:"
    command = lines[message + 1]
    assert shlex.split(command) == [sys.executable, "-m", "mlrank.train", "--resume", str(run)]
    # the epoch under way was dropped: last.pt is a completed epoch, the run is not finished
    completed = load_checkpoint(run / "last.pt")["epoch"]
    logged = [record["epoch"] for record in RunFolder(run).read_metrics()]
    assert completed < epochs - 1 and not (run / "test_metrics.json").exists()
    # the log may hold the epoch whose checkpoint the interrupt cut short, never more
    assert logged in (list(range(completed + 1)), list(range(completed + 2)))

    resumed = subprocess.run(shlex.split(command), env=python_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert [record["epoch"] for record in RunFolder(run).read_metrics()] == list(range(epochs))
    assert load_checkpoint(run / "last.pt")["epoch"] == epochs - 1
    assert json.loads((run / "run.json").read_text())["resumes"][0]["from_epoch"] == completed
    assert (run / "test_metrics.json").is_file()


def test_kill_in_the_first_epoch_then_a_rerun_in_the_same_folder(tmp_path):
    run = tmp_path / "run"
    # the first epoch (4 steps and a validation) lasts far longer than the poll's 20 ms
    overrides = tiny_overrides(run, "optim.epochs=1", "train.max_steps_per_epoch=null")
    process = start("-m", "mlrank.train", *overrides, cwd=tmp_path)
    wait_for(lambda: (run / "run.json").is_file(), process)
    process.kill()
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL
    assert not (run / "last.pt").exists(), "the first epoch ended before the kill; the test needs a longer one"
    # what the kill would have left had it struck while last.pt was being written
    partial = run / f".last.pt.{process.pid}.89abcdef.tmp"
    partial.write_bytes(b"the first half of a checkpoint")

    assert train.main(overrides) == 0
    assert not partial.exists()
    assert [record["epoch"] for record in RunFolder(run).read_metrics()] == [0]
    assert load_checkpoint(run / "last.pt")["epoch"] == 0 and (run / "test_metrics.json").is_file()


def test_ctrl_c_before_the_first_epoch_completes_says_there_is_nothing_to_resume(tmp_path, monkeypatch):
    run = tmp_path / "run"

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(ranking_method.METHOD, "train_one_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt, match=f"before its first epoch completed.*afresh in {run}"):
        train.main(tiny_overrides(run))
    assert (run / "config.yaml").is_file() and not (run / "last.pt").exists()
