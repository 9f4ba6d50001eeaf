"""The studies' bookkeeping (studies/order_legibility.py, sequence_errors.py, intervals.py,
cross_family.py) against counts made by hand."""

import json
import re
from math import comb

import numpy as np

from mlrank import train
from mlrank.data.synthetic import SyntheticSeqDeepFake
from studies import order_legibility, sequence_errors


def test_order_legibility_counts_every_ordered_pair_once():
    dataset = SyntheticSeqDeepFake("val", size=64, num_images=12, seed=3)
    expected = sum(comb(int((row > 0).sum()), 2) for row in dataset.sequences())
    for kind in ("laplacian", "difference of Gaussians"):
        right, total = order_legibility.pairs_right(dataset, kind)
        assert total == expected and 0 <= right <= total


def test_high_frequency_energy_is_zero_on_flat_images_and_grows_with_texture():
    flat = np.full((16, 16, 3), 100, np.uint8)
    checker = (np.indices((16, 16)).sum(axis=0) % 2 * 60 + 100).astype(np.uint8)[..., None].repeat(3, axis=2)
    for kind in ("laplacian", "difference of Gaussians"):
        assert np.allclose(order_legibility.high_frequency_energy(flat, kind), 0)
        assert order_legibility.high_frequency_energy(checker, kind)[4:-4, 4:-4].min() > 0


def test_sequence_errors_counts_add_up(tmp_path, capsys):
    run = tmp_path / "run"
    overrides = ["data.synthetic_train_size=24", "data.synthetic_val_size=12", "data.synthetic_test_size=12",
                 "data.batch_size=6", "data.num_workers=0", "model.token_dim=16", "optim.epochs=1",
                 "train.max_steps_per_epoch=1", f"output_dir={run}"]
    assert train.main(overrides) == 0
    capsys.readouterr()
    assert sequence_errors.main([str(run / "best.pt"), "--split", "val", "data.num_workers=0"]) == 0
    out = capsys.readouterr().out
    sequences = SyntheticSeqDeepFake("val", size=64, num_images=12).sequences()
    lengths = (sequences > 0).sum(dim=1).tolist()
    images = {int(n): int(total) for n, total in re.findall(r"(\d) edits: \d+/(\d+) images", out)}
    assert images == {n: lengths.count(n) for n in set(lengths)}
    pairs = int(re.search(r"ordered pairs right: \d+/(\d+)", out).group(1))
    assert pairs == sum(comb(n, 2) for n in lengths)



def test_intervals_tables_name_each_runs_command_machine_and_date(tmp_path, capsys):
    from studies import intervals

    tiny = ["data.synthetic_train_size=24", "data.synthetic_val_size=12", "data.synthetic_test_size=12",
            "data.batch_size=6", "data.num_workers=0", "model.token_dim=16", "optim.epochs=1",
            "train.max_steps_per_epoch=1"]
    for name, seed in (("a", 0), ("b", 1)):
        assert train.main([*tiny, f"seed={seed}", f"output_dir={tmp_path / name}"]) == 0
    capsys.readouterr()
    output = tmp_path / "results" / "tiny.json"
    assert intervals.main([f"first={tmp_path / 'a'}", f"again={tmp_path / 'a'}", f"other={tmp_path / 'b'}",
                           "--split", "val", "--rounds", "50", "--output", str(output)]) == 0
    results = json.loads(output.read_text())
    assert results["images"] == 12 and results["runs"]["again"]["fixed_acc"]["difference"]["value"] == 0.0
    table = output.with_suffix(".md").read_text()
    assert "| first | " in table and "| other | " in table and "every image genuine" in table
    command = results["runs"]["other"]["command"]
    assert command.startswith("python -m mlrank.train ") and "seed=1" in command and "output_dir" not in command
    assert results["runs"]["other"]["date"][:4].isdigit() and "cores" in results["runs"]["other"]["machine"]


def test_cross_family_resamples_keep_a_video_drawn_twice_as_two_videos():
    from studies import cross_family

    video_ids = ["a", "a", "b", "b", "c"]
    scores = np.array([0.9, 0.3, 0.2, 0.4, 0.8])
    labels = np.array([1, 1, 0, 0, 1])
    # a resample that drew b, then a, then b again: b's two draws are two videos of the resample
    frames = np.array([2, 3, 0, 1, 2, 3])
    assert cross_family._drawn_ids(frames, video_ids) == ["1:b", "1:b", "2:a", "2:a", "3:b", "3:b"]
    # frames: fakes 0.9 and 0.3 against reals 0.2, 0.4, 0.2, 0.4 win 4 + 2 of 8 pairs; videos: a 0.6
    # (fake) above both draws of b, 0.3 (real)
    assert cross_family.aucs(scores, labels, video_ids, frames) == (0.75, 1.0)
    # all frames: fakes 0.9, 0.3, 0.8 against reals 0.2, 0.4 win 2 + 1 + 2 of 6 pairs
    assert abs(cross_family.aucs(scores, labels, video_ids)[0] - 5 / 6) < 1e-12
    for resample in cross_family.video_resamples(video_ids, rounds=20, seed=3):
        for start in range(0, len(resample)):  # frames of one video stay together and in order
            if resample[start] == 0:
                assert resample[start + 1] == 1


def test_cross_family_table_names_its_command_machine_and_date():
    from studies import cross_family

    def entry(value, difference=None):
        result = {"frame_auc": value, "frame_auc_interval": [value - 0.1, value + 0.05],
                  "video_auc": value, "video_auc_interval": [value - 0.2, value + 0.01]}
        if difference is not None:
            result["difference_to_no_self-blending"] = {
                "frame_auc": difference, "frame_auc_interval": [difference - 0.1, difference + 0.1],
                "video_auc": difference, "video_auc_interval": [difference - 0.1, difference + 0.1]}
        return result

    results = {"command": "python -m studies.cross_family --workdir W", "machine": "CPU, 2 cores", "date": "2026-12-07",
               "videos": 10, "frames": 2, "epochs": 1, "runs": {
                   "no self-blending": {"seed 0": {"SynthComp": entry(0.9), "SynthAttr": entry(0.6)}},
                   "self-blended": {"seed 0": {"SynthComp": entry(0.95, 0.05), "SynthAttr": entry(0.7, 0.1)}}}}
    table = cross_family.markdown(results)
    assert "`python -m studies.cross_family --workdir W`" in table and "CPU, 2 cores" in table and "2026-12-07" in table
    assert "| no self-blending | 0 | 0.900 [0.800, 0.950] | 0.900 [0.700, 0.910] | 0.600 [0.500, 0.650] |" in table
    assert "| self-blended | 0 | +0.050 [-0.050, +0.150] |" in table
    assert table.count("| no self-blending |") == 1  # the reference has no difference row


def test_a_runs_command_is_its_program_and_arguments_without_its_folders():
    from studies.intervals import recorded_command

    assert recorded_command(["python -m mlrank.train", "seed=1", "output_dir=/tmp/r", "data.num_workers=0"]) == \
        "python -m mlrank.train seed=1"
    # older run folders: the script's path, or (started from Python) no program at all
    assert recorded_command(["/src/mlrank/train.py", "seed=2", "data.synthetic_cache_dir=/c"]) == "python -m mlrank.train seed=2"
    assert recorded_command(["/src/mlrank/ablate.py", "--rows", "bce_u_cls", "--output-dir", "/tmp/a", "x=1"]) == \
        "python -m mlrank.ablate --rows bce_u_cls x=1"
    assert recorded_command(["--config", "seeable_ffpp", "seed=0"]) == "python -m mlrank.train --config seeable_ffpp seed=0"
    assert recorded_command(["python -m mlrank.ablate", "--output-dir=/tmp/a", "--rows", "v"]) == "python -m mlrank.ablate --rows v"


def test_train_and_ablate_record_their_command_whether_called_from_the_shell_or_from_python(tmp_path, monkeypatch):
    from mlrank import ablate

    tiny = ["data.synthetic_train_size=12", "data.synthetic_val_size=6", "data.synthetic_test_size=6",
            "data.batch_size=6", "data.num_workers=0", "model.token_dim=16", "optim.epochs=1",
            "train.max_steps_per_epoch=1"]
    assert train.main([*tiny, f"output_dir={tmp_path / 'python'}"]) == 0
    monkeypatch.setattr("sys.argv", ["/somewhere/mlrank/train.py", *tiny, f"output_dir={tmp_path / 'shell'}"])
    assert train.main() == 0
    for name in ("python", "shell"):
        argv = json.loads((tmp_path / name / "run.json").read_text())["argv"]
        assert argv == ["python -m mlrank.train", *tiny, f"output_dir={tmp_path / name}"]
    monkeypatch.undo()
    assert ablate.main(["--rows", "bce_u", "--output-dir", str(tmp_path / "ablation"), *tiny]) == 0
    summary = json.loads((tmp_path / "ablation" / "ablation.json").read_text())
    assert summary["command"] == " ".join(["python -m mlrank.ablate", "--rows", "bce_u", "--output-dir",
                                           str(tmp_path / "ablation"), *tiny])
