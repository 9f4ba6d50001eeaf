"""python -m mlrank.ablate end to end on a tiny synthetic set: every row trained through train.run with
its terms switched off, the table, resume and skip, a failing row, rows as data, bad input."""

import dataclasses
import json
import os
import re

import pytest

from mlrank import ablate, train
from mlrank.ablate import AblationRow, row_config, term_weights
from mlrank.engine.config import config_to_dict, departures_from_paper, load_config
from mlrank.engine.runs import RunFolder
from mlrank.ranking import method as ranking_method

TINY = [
    "data.image_size=32",
    "data.synthetic_train_size=12",
    "data.synthetic_val_size=6",
    "data.synthetic_test_size=6",
    "data.batch_size=6",
    "data.num_workers=0",
    "model.backbone=resnet10t",
    "model.token_dim=16",
    "model.num_heads=2",
    "model.out_stride=8",
    "optim.epochs=1",
    "train.max_steps_per_epoch=1",
]

# Each row's weight of (BCE^U, BCE^V, CLS, Rank, Order), whether the logits rank the latest edit
# highest, whether L_Order ranks an order head, whether a count head decides the count and whether
# the patch branch decodes, written out by hand: the paper's Table 3, rows I-VI (Order off, the
# paper's order, no heads; row I ranked by the patch branch, the only one it trains; row V without
# BCE^U), then the package's rows (BCE^U + BCE^V, which the paper does not have; Order at its default
# weight, 1, with either order of the logits, then on an order head, then with a count head).
EXPECTED_TERMS = {
    "bce_u": (1, 0, 0, 0, 0, 0, 0, 0, 1),
    "bce_u_cls": (1, 0, 1, 0, 0, 0, 0, 0, 0),
    "bce_u_rank": (1, 0, 0, 1, 0, 0, 0, 0, 0),
    "bce_u_cls_rank": (1, 0, 1, 1, 0, 0, 0, 0, 0),
    "bce_v_cls_rank": (0, 1, 1, 1, 0, 0, 0, 0, 0),
    "all_terms": (1, 1, 1, 1, 0, 0, 0, 0, 0),
    "bce_u_bce_v": (1, 1, 0, 0, 0, 0, 0, 0, 0),
    "bce_u_order": (1, 0, 0, 0, 1, 0, 0, 0, 0),
    "all_terms_order": (1, 1, 1, 1, 1, 0, 0, 0, 0),
    "bce_u_order_latest": (1, 0, 0, 0, 1, 1, 0, 0, 0),
    "all_terms_order_latest": (1, 1, 1, 1, 1, 1, 0, 0, 0),
    "bce_u_order_head": (1, 0, 0, 0, 1, 1, 1, 0, 0),
    "all_terms_order_head": (1, 1, 1, 1, 1, 1, 1, 0, 0),
    "all_terms_order_count": (1, 1, 1, 1, 1, 1, 0, 1, 0),
}
PAPER_ROWS = ["bce_u", "bce_u_cls", "bce_u_rank", "bce_u_cls_rank", "bce_v_cls_rank", "all_terms"]
ALL_TERMS = next(row for row in ablate.ROWS if row.name == "all_terms")
WEIGHT_KEYS = ("lambda1", "lambda2", "lambda_cls", "lambda_bce_patch", "lambda_bce_class", "lambda_order",
               "last_edit_highest")


def effective(weights):
    """(BCE^U, BCE^V, CLS, Rank, Order, latest highest, order head, count head, patch decodes) from the
    keywords total_loss received, whether the model gave it order scores and count scores, and the
    branch the run's config decodes."""
    return (
        weights["lambda1"] * weights["lambda_bce_patch"],
        weights["lambda1"] * weights["lambda_bce_class"],
        weights["lambda_cls"],
        weights["lambda2"],
        weights["lambda_order"],
        float(weights["last_edit_highest"]),
        float(weights["order_head"]),
        float(weights["count_head"]),
        float(weights["decode_from"] == "patch"),
    )


def test_rows_switch_exactly_their_terms_off(tmp_path):
    assert [row.name for row in ablate.ROWS] == list(EXPECTED_TERMS)
    assert [row.label.split(":")[0] for row in ablate.ROWS[:6]] == ["I", "II", "III", "IV", "V", "VI"]
    assert [row.name for row in ablate.ROWS[:6]] == PAPER_ROWS
    for row in ablate.ROWS:
        cfg = row_config(None, [], row, tmp_path)
        assert tuple(term_weights(cfg).values()) == EXPECTED_TERMS[row.name], row.name
        assert cfg.output_dir == str(tmp_path / row.name)
        # Nothing but the loss weights and the folder differs from the base config.
        base = load_config(None)
        model = dataclasses.replace(cfg.model, last_edit_highest=base.model.last_edit_highest,
                                    order_head=base.model.order_head, count_head=base.model.count_head,
                                    decode_from=base.model.decode_from)
        assert (cfg.data, model, cfg.optim, cfg.train, cfg.seed) == (base.data, base.model, base.optim, base.train, base.seed)
    # A term's weight from the config is kept wherever the row keeps the term.
    bce_u_rank = next(row for row in ablate.ROWS if row.name == "bce_u_rank")
    cfg = row_config(None, ["loss.lambda2=0.5", "loss.lambda1=2"], bce_u_rank, tmp_path)
    assert term_weights(cfg) == {"BCE^U": 2.0, "BCE^V": 0.0, "CLS": 0.0, "Rank": 0.5, "Order": 0.0, "latest highest": 0.0,
                                 "order head": 0.0, "count head": 0.0, "patch decodes": 0.0}
    # Row V keeps BCE^V at the config's weight and switches BCE^U off.
    row_v = row_config(None, ["loss.lambda1=2"], ablate.ROWS[4], tmp_path)
    assert (term_weights(row_v)["BCE^U"], term_weights(row_v)["BCE^V"]) == (0.0, 2.0)
    # Whatever the base config, the paper's rows are the paper's: the synthetic one's departures are off.
    for row in ablate.ROWS[:6]:
        departures = departures_from_paper(row_config("synthetic", [], row, tmp_path))
        expected = {"model.normalize_patch_tokens", "model.max_stride"}  # the synthetic architecture stays
        assert set(departures) == expected | ({"model.decode_from"} if row.name == "bce_u" else set()), row.name
    # The order term: the config's weight where it is on; the paper's rows switch it off.
    rows = {row.name: row for row in ablate.ROWS}
    assert row_config(None, ["loss.lambda_order=0.3"], rows["all_terms_order"], tmp_path).loss.lambda_order == 0.3
    assert row_config(None, ["loss.lambda_order=0.3"], rows["all_terms"], tmp_path).loss.lambda_order == 0.0


def test_ablation_end_to_end_resume_failure_and_new_rows(tmp_path, monkeypatch, capsys):
    out = tmp_path / "ablation"
    calls = []  # (output_dir of the run, weights total_loss was called with)
    current = {}
    real_total_loss, real_run = ranking_method.total_loss, train.run

    def recording_total_loss(*args, **kwargs):
        calls.append((current["dir"], {**{key: kwargs[key] for key in WEIGHT_KEYS}, "order_head": "order_scores" in args[0],
                                          "count_head": "count_logits" in args[0], "decode_from": current["decode_from"]}))
        return real_total_loss(*args, **kwargs)

    def recording_run(cfg, resume, argv, ctx):
        current["dir"], current["decode_from"] = cfg.output_dir, cfg.model.decode_from
        return real_run(cfg, resume, argv, ctx)

    def run_that_fails_one_row(cfg, resume, argv, ctx):
        if cfg.output_dir.endswith("bce_u_cls"):
            raise RuntimeError("boom in this row")
        return recording_run(cfg, resume, argv, ctx)

    monkeypatch.setattr(ranking_method, "total_loss", recording_total_loss)
    monkeypatch.setattr(train, "run", run_that_fails_one_row)

    # First run: one row fails, the others are trained and tabled.
    assert ablate.main(["--output-dir", str(out), *TINY]) == 1
    assert "ablation row 'bce_u_cls' failed" in capsys.readouterr().err
    summary = json.loads((out / "ablation.json").read_text())
    rows = {row["name"]: row for row in summary["rows"]}
    assert list(rows) == list(EXPECTED_TERMS)
    assert rows["bce_u_cls"]["status"] == "failed" and rows["bce_u_cls"]["error"] == "RuntimeError: boom in this row"
    assert rows["bce_u_cls"]["metrics"] is None
    assert not (out / "bce_u_cls").exists()
    trained = [name for name in EXPECTED_TERMS if name != "bce_u_cls"]
    assert all(rows[name]["status"] == "trained" for name in trained)
    # total_loss was called with exactly each row's switches.
    assert {dir_.rsplit("/", 1)[1] for dir_, _ in calls} == set(trained)
    for dir_, weights in calls:
        assert effective(weights) == EXPECTED_TERMS[dir_.rsplit("/", 1)[1]]
    for name in trained:
        folder = out / name
        test_metrics = json.loads((folder / "test_metrics.json").read_text())
        assert rows[name]["metrics"] == test_metrics
        assert {"fixed_acc", "adaptive_acc", "multilabel_acc", "ordered_pairs", "kendall_tau"} <= set(test_metrics)
        assert tuple(rows[name]["terms"].values()) == EXPECTED_TERMS[name]
        # The logged total is the switched sum of the logged (unweighted) terms.
        (record,) = RunFolder(folder).read_metrics()
        u, v, cls, rank, order, _, _, count, _ = EXPECTED_TERMS[name]
        assert record["loss_bce"] == pytest.approx(u * record["loss_bce_patch"] + v * record["loss_bce_class"], rel=1e-5)
        assert record["loss_total"] == pytest.approx(
            cls * record["loss_cls"] + record["loss_bce"] + rank * record["loss_rank"] + order * record["loss_order"]
            + count * record.get("loss_count", 0.0),
            rel=1e-5,
        )
    markdown = (out / "ablation.md").read_text()
    assert "Command: python -m mlrank.ablate" in markdown and f"{os.cpu_count()} cores" in markdown  # a results table's
    assert re.search(r"Date: \d{4}-\d\d-\d\d\.", markdown)  # command, machine and date
    table = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert table[0] == (
        "| row | BCE^U | BCE^V | CLS | Rank | Order | latest highest | order head | count head | patch decodes | Fixed-Acc "
        "| Adaptive-Acc | multi-label acc | ordered pairs | Kendall tau | status |"
    )
    assert len(table) == 1 + len(EXPECTED_TERMS)
    first = rows["bce_u"]["metrics"]
    assert table[1].startswith(f"| I: BCE^U only | 1 | 0 | 0 | 0 | 0 | 0 | 0 | 0 | 1 | {first['fixed_acc']:.4f} | "
                               f"{first['adaptive_acc']:.4f} |")
    assert ("| II: BCE^U + CLS | 1 | 0 | 1 | 0 | 0 | 0 | 0 | 0 | 0 | n/a | n/a | n/a | n/a | n/a | failed: RuntimeError: "
            "boom in this row |") in table

    # Second run: the finished rows are reused as they are, the failed one is trained.
    checkpoints = {name: (out / name / "best.pt").stat().st_mtime_ns for name in trained}
    calls.clear()
    monkeypatch.setattr(train, "run", recording_run)
    assert ablate.main(["--output-dir", str(out), *TINY]) == 0
    summary = json.loads((out / "ablation.json").read_text())
    assert {row["name"]: row["status"] for row in summary["rows"]} == {
        name: "trained" if name == "bce_u_cls" else "reused" for name in EXPECTED_TERMS
    }
    assert [effective(weights) for _, weights in calls] == [EXPECTED_TERMS["bce_u_cls"]]
    assert {name: (out / name / "best.pt").stat().st_mtime_ns for name in trained} == checkpoints
    assert all(row["metrics"]["fixed_acc"] is not None for row in summary["rows"])

    # Rows are data: a new row is trained alone and joins the table.
    calls.clear()
    extra = AblationRow("all_terms_double_rank", "all terms, Rank x 2", ("loss.lambda2=2",))
    monkeypatch.setattr(ablate, "ROWS", [*ablate.ROWS, extra])
    assert ablate.main(["--output-dir", str(out), *TINY]) == 0
    # The default's own L_Order, order of the logits and order head (a row that does not set them keeps them).
    default_model = load_config("synthetic").model  # ablate.main without --config
    head, count = float(default_model.order_head), float(default_model.count_head)
    assert [effective(weights) for _, weights in calls] == [(1, 1, 1, 2, 1, 1, head, count, 0)]
    summary = json.loads((out / "ablation.json").read_text())
    assert [row["status"] for row in summary["rows"]] == ["reused"] * len(EXPECTED_TERMS) + ["trained"]
    assert f"| all terms, Rank x 2 | 1 | 1 | 1 | 2 | 1 | 1 | {head:.0f} | {count:.0f} | 0 |" in (out / "ablation.md").read_text()


def test_an_interrupted_row_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    out = tmp_path / "ablation"
    monkeypatch.setattr(ablate, "ROWS", [ALL_TERMS])
    two_epochs = [*TINY, "optim.epochs=2"]
    original_save = RunFolder.save_checkpoint

    def save_then_stop(self, state, name="last", **kwargs):
        path = original_save(self, state, name, **kwargs)
        if name == "last" and state["epoch"] == 0:
            raise KeyboardInterrupt  # the machine goes down after epoch 0
        return path

    monkeypatch.setattr(RunFolder, "save_checkpoint", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        ablate.main(["--output-dir", str(out), *two_epochs])
    monkeypatch.setattr(RunFolder, "save_checkpoint", original_save)
    assert ablate.main(["--output-dir", str(out), *two_epochs]) == 0
    run_info = json.loads((out / "all_terms" / "run.json").read_text())
    assert [resume["from_epoch"] for resume in run_info["resumes"]] == [0]
    assert [record["epoch"] for record in RunFolder(out / "all_terms").read_metrics()] == [0, 1]


def test_a_row_stopped_before_its_first_checkpoint_is_simply_trained_again(tmp_path, monkeypatch):
    out = tmp_path / "ablation"
    monkeypatch.setattr(ablate, "ROWS", [ALL_TERMS])
    cfg = row_config("synthetic", TINY, ablate.ROWS[0], out)  # ablate.main without --config
    RunFolder(cfg.output_dir).start(config_to_dict(cfg), seed=0, argv=[], world_size=1)  # killed in epoch 0
    assert ablate.main(["--output-dir", str(out), *TINY]) == 0
    (row,) = json.loads((out / "ablation.json").read_text())["rows"]
    assert row["status"] == "trained" and row["error"] is None
    assert (out / "all_terms" / "test_metrics.json").is_file()


@pytest.mark.parametrize(
    "overrides, error, words",
    [
        (["loss.lambda2=0"], ValueError, r"switches off \['Rank'\]"),
        (["loss.lambda1=0"], ValueError, r"switches off \['BCE\^U', 'BCE\^V'\]"),
        (["loss.lambda_cls=0"], ValueError, r"switches off \['CLS'\]"),
        (["model.num_classes=1"], ValueError, "binary detection has no rank loss"),
        (["method=seeable"], ValueError, "for method 'mlrank'"),
        (["output_dir=elsewhere"], ValueError, "as --output-dir"),
        (["loss.lambda_clss=0"], ValueError, "did you mean 'loss.lambda_cls'"),
    ],
)
def test_bad_ablation_input_is_refused_before_training(tmp_path, monkeypatch, overrides, error, words):
    monkeypatch.setattr(train, "run", lambda *args: pytest.fail("nothing may be trained"))
    with pytest.raises(error, match=words):
        ablate.main(["--output-dir", str(tmp_path / "ablation"), *TINY, *overrides])


def test_a_row_folder_with_another_config_stops_the_command(tmp_path, monkeypatch):
    out = tmp_path / "ablation"
    monkeypatch.setattr(ablate, "ROWS", [ALL_TERMS])
    assert ablate.main(["--output-dir", str(out), *TINY]) == 0
    monkeypatch.setattr(train, "run", lambda *args: pytest.fail("nothing may be trained"))
    with pytest.raises(ValueError, match=r"'all_terms': .* holds a run with another config \(it differs in \['optim'\]\)"):
        ablate.main(["--output-dir", str(out), *TINY, "optim.lr=0.5"])
    with pytest.raises(NotADirectoryError, match="is not a folder"):
        ablate.main(["--output-dir", str(out / "ablation.md"), *TINY])


def test_rows_option_trains_and_tables_the_named_rows_only(tmp_path):
    out = tmp_path / "ablation"
    assert ablate.main(["--output-dir", str(out), "--rows", "all_terms, bce_u", *TINY]) == 0
    summary = json.loads((out / "ablation.json").read_text())
    assert [row["name"] for row in summary["rows"]] == ["bce_u", "all_terms"]  # in ROWS' order
    assert sorted(path.name for path in out.iterdir() if path.is_dir()) == ["all_terms", "bce_u"]
    with pytest.raises(ValueError, match=r"unknown ablation row\(s\) \['bce_x'\]; the rows are \['bce_u', "):
        ablate.main(["--output-dir", str(out), "--rows", "bce_u,bce_x", *TINY])
