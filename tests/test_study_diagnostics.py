"""Two study diagnostics (studies/order_legibility.py, studies/sequence_errors.py): their bookkeeping
against counts made by hand from the split's sequences."""

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
