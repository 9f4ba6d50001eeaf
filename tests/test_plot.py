"""python -m mlrank.plot on a metrics.jsonl written by hand: what is drawn, a running run's cut last
line, the output rule, and bad input as one-line errors."""

import importlib.util
import json
import sys

import cv2
import pytest

from mlrank import plot
from mlrank.cli import run_cli
from mlrank.optional import MissingDependency

needs_matplotlib = pytest.mark.skipif(
    importlib.util.find_spec("matplotlib") is None, reason="matplotlib is not installed (pip install matplotlib)"
)

RECORDS = [
    {"epoch": 0, "loss_cls": 1.0, "loss_total": 3.0, "images_per_s": 50.0, "lr": 0.01, "val_fixed_acc": 0.2,
     "val_kendall_tau": None, "val_order_r2": [0.1, 0.2], "best": True},
    {"epoch": 1, "loss_cls": 0.5, "loss_total": 2.0, "images_per_s": 60.0, "lr": 0.005},  # not validated
    {"epoch": 2, "loss_cls": 0.25, "loss_total": 1.5, "images_per_s": 55.0, "lr": 0.0, "val_fixed_acc": 0.4,
     "val_kendall_tau": -0.5, "best": True},
]


def write_run(folder, records=RECORDS, tail=""):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + tail)
    return folder


def lines_by_label(ax):
    return {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax.get_lines()}


@needs_matplotlib
def test_the_curves_drawn_are_the_logged_values_without_the_line_being_written(tmp_path):
    # a trainer still writing epoch 3: its line has no newline yet
    run = write_run(tmp_path / "run", tail='{"epoch": 3, "loss_cls": 0.1, "loss_tot')
    figure = plot.draw_curves(plot.read_run_metrics(run), "run")
    losses, lr, validation, other = (lines_by_label(ax) for ax in figure.axes)

    assert losses == {"loss_cls": ([0, 1, 2], [1.0, 0.5, 0.25]), "loss_total": ([0, 1, 2], [3.0, 2.0, 1.5])}
    assert lr == {"lr": ([0, 1, 2], [0.01, 0.005, 0.0])}
    # epoch 1 was not validated; the null tau of epoch 0 and the per-component list are not curves
    assert validation == {
        "val_fixed_acc": ([0, 2], [0.2, 0.4]),
        "val_kendall_tau": ([2], [-0.5]),
        "best.pt (epoch 2)": ([2, 2], [0, 1]),  # axvline: x fixed, y in axes coordinates
    }
    assert other == {"images_per_s": ([0, 1, 2], [50.0, 60.0, 55.0])}
    assert figure.axes[0].get_yscale() == "log"


@needs_matplotlib
def test_command_writes_one_png_redrawn_each_time_and_keeps_other_files(tmp_path, capsys):
    run = write_run(tmp_path / "run")
    assert plot.main([str(run)]) == 0
    picture = cv2.imread(str(run / "curves.png"))
    assert picture.shape == (800, 1200, 3)  # 12 x 8 inches at 100 dpi
    assert "curves of 3 epoch(s) written to" in capsys.readouterr().out

    write_run(run, RECORDS[:2])  # its own curves.png is redrawn from the log as it is now
    assert plot.main([str(run)]) == 0
    assert not (cv2.imread(str(run / "curves.png")) == picture).all()

    mine = tmp_path / "mine.png"
    mine.write_bytes(b"someone's picture")
    with pytest.raises(FileExistsError, match="--output .*mine.png already exists; pass --overwrite"):
        plot.main([str(run), "--output", str(mine)])
    assert mine.read_bytes() == b"someone's picture"
    assert plot.main([str(run), "--output", str(mine), "--overwrite"]) == 0
    assert cv2.imread(str(mine)).shape == (800, 1200, 3)
    assert not [path for path in run.iterdir() if path.name.endswith(".tmp")]


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda tmp: tmp / "missing", FileNotFoundError, r"run folder .*missing does not exist"),
        (lambda tmp: (tmp / "file").write_text("x") and tmp / "file", NotADirectoryError, "is not a run folder"),
        (lambda tmp: (tmp / "empty").mkdir() or tmp / "empty", FileNotFoundError, "holds no metrics.jsonl"),
        (lambda tmp: write_run(tmp / "run", []), ValueError, "holds no complete epoch record yet"),
        (lambda tmp: write_run(tmp / "run", [], tail='{"epoch": 0, "lo'), ValueError, "no complete epoch record"),
        (lambda tmp: write_run(tmp / "run", RECORDS[:1], tail="not json\n"), ValueError,
         r"metrics.jsonl line 2 is not JSON"),
    ],
    ids=["missing folder", "a file", "no metrics.jsonl", "empty file", "only a cut line", "malformed line"],
)
@needs_matplotlib
def test_bad_input_is_a_clear_error(tmp_path, make, error, message):
    run = make(tmp_path)
    with pytest.raises(error, match=message):
        plot.main([str(run)])
    assert not (tmp_path / "run" / "curves.png").exists()


@needs_matplotlib
def test_user_errors_end_with_one_line_and_status_2(tmp_path, capsys):
    run = write_run(tmp_path / "run")
    assert run_cli(lambda: plot.main([str(tmp_path / "missing")])) == 2
    assert run_cli(lambda: plot.main([str(run), "--output", str(tmp_path / "curves.jpg")])) == 2
    errors = capsys.readouterr().err.splitlines()
    assert errors == [f"error: run folder {tmp_path / 'missing'} does not exist",
                      f"error: --output {tmp_path / 'curves.jpg'} must be a .png file"]


def test_missing_matplotlib_names_the_install_command(tmp_path, monkeypatch, capsys):
    run = write_run(tmp_path / "run")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails as if not installed
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(MissingDependency, match="python -m mlrank.plot needs matplotlib.*pip install matplotlib"):
        plot.main([str(run)])
    assert run_cli(lambda: plot.main([str(run)])) == 2
    assert capsys.readouterr().err.startswith("error: python -m mlrank.plot needs matplotlib")
    assert not (run / "curves.png").exists()


@needs_matplotlib
def test_nan_and_infinite_values_are_marked_not_dropped(tmp_path):
    records = [{"epoch": 0, "loss_total": 3.0, "lr": 0.1}, {"epoch": 1, "loss_total": float("nan"), "lr": 0.1},
               {"epoch": 2, "loss_total": float("inf"), "lr": 0.1}]
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))  # NaN, Infinity
    figure = plot.draw_curves(plot.read_run_metrics(run), "run")
    losses = figure.axes[0]
    texts = sorted(text.get_text() for text in losses.texts)
    assert texts == ["NaN", "inf"]
    marks = [line for line in losses.get_lines() if line.get_marker() == "x"]
    assert sorted(float(line.get_xdata()[0]) for line in marks) == [1.0, 2.0]


def test_a_log_with_an_epoch_twice_is_refused_naming_the_lines(tmp_path):
    run = write_run(tmp_path / "run", records=[*RECORDS[:2], RECORDS[1], RECORDS[2]])
    with pytest.raises(ValueError, match=r"logs an epoch more than once \(epoch 1 at lines \[2, 3\]\)"):
        plot.read_run_metrics(run)
