"""train -> evaluate -> predict end to end on a tiny synthetic set; resume (bit for bit, moved, after a
crash in the first epoch); checks before the run folder exists; DDP on gloo."""

import json
import re
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
import torch.multiprocessing as mp
import yaml

from mlrank import evaluate, predict, train
from mlrank.data.synthetic import SyntheticSeqDeepFake
from mlrank.engine.config import LEGACY_DEFAULTS, load_config
from mlrank.engine.distributed import DistContext, init_distributed
from mlrank.engine.runs import RunFolder, load_checkpoint

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
    printed = capsys.readouterr().out  # ends with the test table, as evaluate prints it, and the run folder
    assert "mlrank on the test split (best.pt" in printed and f"run folder: {run} (" in printed
    assert re.search(r"^  fixed_acc +\d\.\d{4}$", printed, re.M) and "order R^2 nose" in printed
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
    # Options and key=value overrides in any order.
    again = tmp_path / "again.json"
    assert evaluate.main([str(run / "best.pt"), "data.num_workers=1", "--split", "val", "--output", str(again)]) == 0
    assert json.loads(again.read_text()) == evaluated

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
        # the synthetic default's count head decides how many: the most probable components, each with
        # its own probability, by increasing probability: the model scores the latest edit highest
        # (model.last_edit_highest), so the earliest edit comes first
        assert record["decision"] == "count_head" and record["sequence"] == order
        assert sum(record["count_probabilities"].values()) == pytest.approx(1.0)
        kept = sorted(probabilities, key=lambda n: -probabilities[n])[: len(order)]
        assert order == sorted(kept, key=lambda n: probabilities[n])
        assert [m["probability"] for m in record["manipulations"]] == [probabilities[n] for n in order]
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
    with pytest.raises(ValueError, match="does not fit the model its config describes") as caught:
        evaluate.load_model(tmp_path / "mismatch.pt")
    # in full, on one line: the first tensor of another shape with both shapes
    assert "tensor(s) of another shape (first: 'pos_embed', 1x32x8x8 in the checkpoint, 1x64x8x8 in the model)" \
        in str(caught.value)
    del state["model"]["class_bias"]
    state["model"]["surplus.weight"] = torch.zeros(2)
    state["config"]["model"]["token_dim"] = 32
    torch.save(state, tmp_path / "keys.pt")
    with pytest.raises(ValueError, match=r"1 key\(s\) of the model missing from it \(first: 'class_bias'\); "
                                         r"1 key\(s\) the model does not have \(first: 'surplus.weight'\)"):
        evaluate.load_model(tmp_path / "keys.pt")


def test_a_run_saved_by_a_newer_mlrank_says_so(tmp_path):
    run = tmp_path / "run"
    train.main(tiny_overrides(run, "optim.epochs=1", "train.max_steps_per_epoch=1"))
    state = load_checkpoint(run / "last.pt")
    state["config"]["model"]["wavelet_input"] = True  # a key of a later version
    torch.save(state, tmp_path / "newer.pt")
    with pytest.raises(ValueError, match=r"has the key 'model.wavelet_input', which mlrank .* does not know: the run was "
                                         r"saved by a newer mlrank"):
        evaluate.load_model(tmp_path / "newer.pt")


def folder_snapshot(folder):
    return {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()}


def assert_same_run(a, b):
    """Two run folders whose last checkpoints and metrics logs are identical (but for timings)."""
    first, second = load_checkpoint(a / "last.pt"), load_checkpoint(b / "last.pt")
    assert first["epoch"] == second["epoch"]
    for key, value in first["model"].items():
        assert torch.equal(value, second["model"][key]), key
    strip = lambda records: [{k: v for k, v in r.items() if k != "images_per_s"} for r in records]  # noqa: E731
    assert strip(RunFolder(a).read_metrics()) == strip(RunFolder(b).read_metrics())


def interrupt_after_first_epoch(monkeypatch, arguments):
    """Runs train.main(arguments) until epoch 0's last.pt is written, as if the machine went down then."""
    original_save = RunFolder.save_checkpoint

    def save_then_stop(self, state, name="last", **kwargs):
        path = original_save(self, state, name, **kwargs)
        if name == "last" and state["epoch"] == 0:
            raise KeyboardInterrupt
        return path

    with monkeypatch.context() as patched:
        patched.setattr(RunFolder, "save_checkpoint", save_then_stop)
        with pytest.raises(KeyboardInterrupt):
            train.main(arguments)


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory):
    """The tiny run, uninterrupted: what every interrupted and resumed one must reproduce."""
    whole = tmp_path_factory.mktemp("whole") / "run"
    assert train.main(tiny_overrides(whole)) == 0
    return whole


def test_moved_run_resumes_bit_for_bit_where_it_is(tmp_path, monkeypatch, whole_run):
    interrupted, moved = tmp_path / "interrupted", tmp_path / "elsewhere" / "moved"
    interrupt_after_first_epoch(monkeypatch, tiny_overrides(interrupted))
    assert load_checkpoint(interrupted / "last.pt")["epoch"] == 0
    shutil.copytree(interrupted, moved)
    before = folder_snapshot(interrupted)

    assert train.main(["--resume", str(moved)]) == 0
    assert folder_snapshot(interrupted) == before  # the folder it came from is left alone
    assert_same_run(whole_run, moved)
    assert load_checkpoint(moved / "last.pt")["config"]["output_dir"] == str(moved)
    assert yaml.safe_load((moved / "config.yaml").read_text())["output_dir"] == str(moved)
    assert len(json.loads((moved / "run.json").read_text())["resumes"]) == 1
    assert (moved / "test_metrics.json").is_file()


def test_a_run_saved_before_later_keys_existed_resumes_as_it_was_trained(tmp_path, monkeypatch):
    # A run folder of that time lacks the later keys in config.yaml and in last.pt; they are read with
    # the values it trained with (LEGACY_DEFAULTS), not today's defaults, so it continues bit for bit.
    as_trained = [f"{section}.{key}={json.dumps(value)}" for section, values in LEGACY_DEFAULTS.items()
                  for key, value in values.items()]
    whole, old = tmp_path / "whole", tmp_path / "old"
    assert train.main(tiny_overrides(whole, *as_trained)) == 0
    interrupt_after_first_epoch(monkeypatch, tiny_overrides(old, *as_trained))

    def strip(config):
        for section, values in LEGACY_DEFAULTS.items():
            for key in values:
                del config[section][key]
        return config

    config_file = old / "config.yaml"
    config_file.write_text(yaml.safe_dump(strip(yaml.safe_load(config_file.read_text()))))
    state = load_checkpoint(old / "last.pt")
    strip(state["config"])
    torch.save(state, old / "last.pt")
    assert load_config("synthetic", []).model.max_stride is not None  # today's default differs from the run's

    assert train.main(["--resume", str(old)]) == 0
    assert_same_run(whole, old)
    resumed = yaml.safe_load(config_file.read_text())
    assert all(resumed[section][key] == value for section, values in LEGACY_DEFAULTS.items()
               for key, value in values.items())


def test_resume_refuses_another_config_but_takes_new_paths(tmp_path, whole_run):
    run = tmp_path / "run"
    shutil.copytree(whole_run, run)
    with pytest.raises(ValueError, match=r"config differs from the checkpoint's in \['optim.lr'\]"):
        train.main(["--resume", str(run), "optim.lr=0.5"])
    # where the data are and how they load may change (the run is complete: only the test is redone)
    cache = tmp_path / "cache"
    arguments = ["data.num_workers=1", "train.log_every=5", f"data.synthetic_cache_dir={cache}"]
    assert train.main(["--resume", str(run), *arguments]) == 0
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["num_workers"] == 1
    assert sorted(path.name.split("_")[2] for path in cache.iterdir()) == ["test", "train", "val"]


def test_hflip_flips_training_images_alone():
    from mlrank.data.augment import HorizontalFlip, WeakAugment
    from mlrank.ranking import method

    plain = method.train_dataset(load_config(None, TINY))
    flipping = method.train_dataset(load_config(None, [*TINY, "data.hflip=true"]))
    assert isinstance(flipping.augment, HorizontalFlip)
    flipped = []
    for index in range(len(plain)):
        image, sequence = plain[index]
        other, other_sequence = flipping[index]
        assert torch.equal(sequence, other_sequence)
        assert torch.equal(other, image) or torch.equal(other, image.flip(-1))
        flipped.append(not torch.equal(other, image))
    assert 0 < sum(flipped) < len(flipped)
    weak = method.train_dataset(load_config(None, [*TINY, "data.hflip=true", "data.weak_augment=true"]))
    assert isinstance(weak.augment, WeakAugment)  # the weak augmentation flips already


def test_resume_argument_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="run folder .*absent does not exist"):
        train.main(["--resume", str(tmp_path / "absent")])
    with pytest.raises(FileNotFoundError, match="holds no run"):
        train.main(["--resume", str(tmp_path)])
    with pytest.raises(ValueError, match="drop --config"):
        train.main(["--resume", str(tmp_path), "--config", "synthetic"])
    with pytest.raises(ValueError, match="output_dir cannot be overridden"):
        train.main(["--resume", str(tmp_path), f"output_dir={tmp_path / 'other'}"])


@pytest.mark.parametrize(
    "extra, error, message",
    [
        (["seed=-1"], ValueError, "'seed' must lie in"),
        (["data.kind=seqdeepfake", "data.root=MISSING"], FileNotFoundError, "'data.root': .*missing does not exist"),
        # the root exists but holds no Seq-DeepFake split: found when the data set is built
        (["data.kind=seqdeepfake", "data.root=EMPTY"], FileNotFoundError, "annotation file not found"),
        (["model.pretrained_file=MISSING"], FileNotFoundError, "'model.pretrained_file'"),
    ],
)
def test_a_run_that_fails_its_checks_creates_no_folder(tmp_path, extra, error, message):
    run = tmp_path / "run"
    (tmp_path / "empty").mkdir()
    paths = {"MISSING": tmp_path / "missing", "EMPTY": tmp_path / "empty"}
    extra = [f"{key}={paths.get(value, value)}" for key, _, value in (item.partition("=") for item in extra)]
    with pytest.raises(error, match=message):
        train.main(tiny_overrides(run, *extra))
    assert not run.exists()


def test_seed_plus_rank_must_fit_numpy():
    ctx = DistContext(rank=0, world_size=4, local_rank=0, device=torch.device("cpu"))
    train.check_seed(load_config(None, ["seed=4294967292"]), ctx)  # ranks 0..3 reach 2**32 - 1
    with pytest.raises(ValueError, match=r"'seed' \(4294967293\) plus the rank \(up to 3\)"):
        train.check_seed(load_config(None, ["seed=4294967293"]), ctx)


def dead_pid():
    """The pid of a process that has exited (its temporary files are stale)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.mark.parametrize("how", ["rerun", "--resume"])
def test_crash_in_the_first_epoch_restarts_in_the_same_folder(tmp_path, monkeypatch, whole_run, how):
    run = tmp_path / "run"
    original_save = RunFolder.save_checkpoint

    def crash_while_writing_last(self, state, name="last", **kwargs):
        if name == "last":  # after best.pt (and best_fixed.pt, best_adaptive.pt) and the metrics line of epoch 0
            raise OSError("the disk went away")
        return original_save(self, state, name, **kwargs)

    monkeypatch.setattr(RunFolder, "save_checkpoint", crash_while_writing_last)
    with pytest.raises(OSError, match="disk went away"):
        train.main(tiny_overrides(run))
    monkeypatch.setattr(RunFolder, "save_checkpoint", original_save)
    assert (run / "best.pt").is_file() and not (run / "last.pt").exists()
    assert (run / "best_fixed.pt").is_file() and (run / "best_adaptive.pt").is_file()  # epoch 0's, cleared too
    assert [record["epoch"] for record in RunFolder(run).read_metrics()] == [0]
    # what a kill during the write of last.pt leaves, and files of the user's that look alike
    stale = run / f".last.pt.{dead_pid()}.0123abcd.tmp"
    stale.write_bytes(b"half a checkpoint")
    kept = [run / ".last.pt.tmp", run / f".notes.{os.getpid()}.0123abcd.tmp", run / "notes.tmp"]
    for path in kept:
        path.write_text("mine")

    arguments = tiny_overrides(run) if how == "rerun" else ["--resume", str(run)]
    assert train.main(arguments) == 0
    assert not stale.exists() and all(path.read_text() == "mine" for path in kept)
    assert_same_run(whole_run, run)
    assert json.loads((run / "run.json").read_text())["resumes"] == []


def test_a_finished_run_is_not_overwritten(whole_run):
    before = folder_snapshot(whole_run)
    with pytest.raises(FileExistsError, match="already holds a run.*--resume"):
        train.main(tiny_overrides(whole_run))
    assert folder_snapshot(whole_run) == before


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


# --- Seq-DeepFake's protocol: best_fixed.pt and best_adaptive.pt ---------------------------------


def test_a_sequence_run_keeps_seqdeepfakes_best_checkpoints_and_reports_each_metric_from_its_own(whole_run, tmp_path):
    records = RunFolder(whole_run).read_metrics()
    for name, key in (("best_fixed", "fixed_acc"), ("best_adaptive", "adaptive_acc")):
        # the best validation value, the later epoch winning a tie (Seq-DeepFake's train.py: >=)
        best = max(record[f"val_{key}"] for record in records)
        expected_epoch = max(record["epoch"] for record in records if record[f"val_{key}"] == best)
        state = load_checkpoint(whole_run / f"{name}.pt")
        assert state["epoch"] == expected_epoch and state["protocol_best"][name] == best, name
    test_metrics = json.loads((whole_run / "test_metrics.json").read_text())
    assert test_metrics["metric_checkpoints"] == {"fixed_acc": "best_fixed.pt", "adaptive_acc": "best_adaptive.pt"}
    # each metric is that checkpoint's own test value
    for name, key in (("best_fixed", "fixed_acc"), ("best_adaptive", "adaptive_acc")):
        output = tmp_path / f"{name}.json"
        assert evaluate.main([str(whole_run / f"{name}.pt"), "--output", str(output)]) == 0
        assert json.loads(output.read_text())[key] == test_metrics[key], name
    # the other metrics are best.pt's
    best_output = tmp_path / "best.json"
    assert evaluate.main([str(whole_run / "best.pt"), "--output", str(best_output)]) == 0
    best_metrics = json.loads(best_output.read_text())
    assert best_metrics["multilabel_acc"] == test_metrics["multilabel_acc"]
    # evaluate on the run folder reports as the protocol does, and says which checkpoint gave which
    protocol_output = tmp_path / "protocol.json"
    assert evaluate.main([str(whole_run), "--output", str(protocol_output)]) == 0
    protocol = json.loads(protocol_output.read_text())
    assert {key: protocol[key] for key in ("fixed_acc", "adaptive_acc", "multilabel_acc", "metric_checkpoints")} == {
        key: test_metrics[key] for key in ("fixed_acc", "adaptive_acc", "multilabel_acc", "metric_checkpoints")}


def test_the_protocol_asked_of_the_wrong_run_is_a_one_line_error(whole_run, tmp_path, capsys):
    from mlrank.cli import run_cli

    run = tmp_path / "run"
    shutil.copytree(whole_run, run)
    (run / "best_adaptive.pt").unlink()  # a run saved before mlrank kept the protocol's files
    assert run_cli(lambda: evaluate.main([str(run)])) == 2
    assert "has no best_adaptive.pt" in capsys.readouterr().err
    # a binary detector's checkpoint: the protocol is for sequence models
    binary = load_checkpoint(whole_run / "best.pt")
    binary_cfg = load_config(None, ["data.kind=frames", f"data.root={tmp_path}", "model.num_classes=1",
                                     f"output_dir={tmp_path / 'binary'}"])
    from mlrank.engine.config import config_to_dict
    from mlrank.ranking.method import build_model

    binary["config"] = config_to_dict(binary_cfg)
    binary["model"] = build_model(binary_cfg).state_dict()
    RunFolder(tmp_path / "binary").save_checkpoint(binary, "best")
    assert run_cli(lambda: evaluate.main([str(tmp_path / "binary" / "best.pt"), "--protocol", "seqdeepfake"])) == 2
    err = capsys.readouterr().err
    assert "binary detector's checkpoint" in err and len(err.strip().splitlines()) == 1


# --- signals and faults ------------------------------------------------------------------------


def test_a_full_disk_is_one_line_naming_the_file_and_the_intact_checkpoint(tmp_path, monkeypatch, capsys):
    from mlrank.cli import run_cli
    from mlrank.engine import runs

    run = tmp_path / "run"
    interrupt_after_first_epoch(monkeypatch, tiny_overrides(run))  # last.pt of epoch 0
    before = (run / "last.pt").read_bytes()
    usage = runs.shutil.disk_usage(tmp_path)
    monkeypatch.setattr(runs.shutil, "disk_usage", lambda folder: usage._replace(free=4096))

    def full_disk(obj, file):  # what torch.save says when the disk fills under it
        raise RuntimeError("[enforce fail at inline_container.cc] . unexpected pos 512 vs 448")

    monkeypatch.setattr(runs.torch, "save", full_disk)
    capsys.readouterr()
    status = run_cli(lambda: train.main(["--resume", str(run)]))
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert status == 2 and len(err) == 1, err
    assert f"no space left on the disk to write {run}" in err[0] and "is intact" in err[0]
    assert (run / "last.pt").read_bytes() == before


def test_sigterm_stops_training_as_ctrl_c_does_and_says_how_to_resume(tmp_path):
    run = tmp_path / "run"
    arguments = [sys.executable, "-m", "mlrank.train", *tiny_overrides(run, "optim.epochs=50",
                                                                          "train.max_steps_per_epoch=1")]
    process = subprocess.Popen(arguments, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (run / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    assert "terminated (SIGTERM): training stopped; last.pt holds the last completed epoch. Resume with:" in err
    assert f"--resume {run}" in err


def test_a_torchrun_restart_after_a_rank_died_resumes_to_the_uninterrupted_result(tmp_path):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    common = [*TINY, "optim.epochs=3", "train.max_steps_per_epoch=1"]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    whole = subprocess.run([*torchrun, "-m", "mlrank.train", *common, f"output_dir={tmp_path / 'whole'}"],
                           capture_output=True, text=True, timeout=600, env=environment)
    assert whole.returncode == 0, whole.stderr[-2000:]
    killer = os.path.join(os.path.dirname(__file__), "killing_train.py")
    restarted = subprocess.run([*torchrun, "--max-restarts=1", killer, *common, f"output_dir={tmp_path / 'restarted'}"],
                               capture_output=True, text=True, timeout=600, env=environment)
    assert restarted.returncode == 0, restarted.stderr[-2000:]
    assert "torchrun restart 1: continuing the run" in restarted.stdout
    assert_same_run(tmp_path / "whole", tmp_path / "restarted")


def test_a_one_class_validation_split_of_a_binary_detector_is_refused_before_training(tmp_path, capsys):
    from mlrank.cli import run_cli
    from mlrank.data.rehearsal import SyntheticVideos, write_frame_folders

    root = write_frame_folders(tmp_path / "frames", SyntheticVideos(videos={"train": 4, "val": 1, "test": 1}, size=32))
    shutil.rmtree(root / "val" / "fake")
    overrides = ["data.kind=frames", f"data.root={root}", "model.num_classes=1", "data.image_size=32",
                 "data.num_workers=0", "data.batch_size=4", "model.token_dim=16", f"output_dir={tmp_path / 'run'}"]
    assert run_cli(lambda: train.main(overrides)) == 2
    assert "the validation split of " in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
