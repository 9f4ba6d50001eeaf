"""Config loading: defaults, shipped configs, bases, overrides, unknown keys, types, saving."""

import dataclasses
import typing

import pytest
import yaml

from mlrank.data.vocab import SUBSETS
from mlrank.engine.config import (
    DEFAULT_CONFIG,
    PAPER_DEPARTURES,
    Config,
    UniqueKeyLoader,
    DataConfig,
    config_from_dict,
    config_to_dict,
    departures_from_paper,
    load_config,
    resolve_config_path,
    save_config,
    shipped_config,
    shipped_config_names,
    valid_keys,
)


def write_yaml(path, content):
    path.write_text(yaml.safe_dump(content), encoding="utf-8")
    return path


# The paper's value of every departure key, written out by hand from docs/method.md: no L_Order, the
# first edit ranked highest, no order or count head, no high-pass input, U row-normalised, every
# backbone stage, the fused head decoding any sequence.
PAPER_VALUES = {
    "loss.lambda_order": 0.0,
    "model.last_edit_highest": False,
    "model.order_head": False,
    "model.count_head": False,
    "model.highpass_input": False,
    "model.normalize_patch_tokens": True,
    "model.max_stride": None,
    "model.decode_from": "fused",
    "model.seen_sequences_only": False,
}
SYNTHETIC_DEPARTURES = {
    "model.normalize_patch_tokens": False,
    "model.max_stride": 16,
    "model.last_edit_highest": True,
    "model.count_head": True,
    "loss.lambda_order": 1.0,
}


def value_of(config, key):
    section, name = key.split(".")
    return getattr(getattr(config, section), name)


def test_no_file_gives_the_papers_method_on_the_synthetic_set():
    config = load_config()
    assert config == Config()
    assert set(PAPER_DEPARTURES) == set(PAPER_VALUES)
    assert {key: value_of(config, key) for key in PAPER_VALUES} == PAPER_VALUES
    assert departures_from_paper(config) == []
    assert (config.method, config.seed, config.data.kind) == ("mlrank", 0, "synthetic")
    assert config.data.image_size == 64
    assert (config.data.synthetic_train_size, config.data.synthetic_val_size) == (20000, 300)
    assert (config.loss.tau, config.loss.lambda1, config.loss.lambda2, config.loss.alpha) == (0.2, 1.0, 1.0, 1.0)
    assert config.seeable.grid == (4, 4)


def test_the_synthetic_config_is_the_defaults_with_its_departures_switched_on_by_name():
    synthetic = load_config(DEFAULT_CONFIG)
    assert DEFAULT_CONFIG == "synthetic"
    assert {key: value_of(synthetic, key) for key in departures_from_paper(synthetic)} == SYNTHETIC_DEPARTURES
    overrides = [f"{key}={'null' if value is None else value}" for key, value in SYNTHETIC_DEPARTURES.items()]
    assert load_config(None, overrides) == synthetic  # nothing else differs from the defaults
    text = shipped_config("synthetic").read_text(encoding="utf-8")
    for key in SYNTHETIC_DEPARTURES:  # named, not inherited
        assert f"\n  {key.split('.')[1]}:" in text, key


def named_departures(name):
    """The keys a shipped config's header names on its "Departures from the paper:" line."""
    lines = [line for line in shipped_config(name).read_text(encoding="utf-8").splitlines()
             if line.startswith("# Departures from the paper:")]
    assert len(lines) == 1, f"{name}: one 'Departures from the paper:' line in the header, found {len(lines)}"
    text = lines[0].split(":", 1)[1].split("(")[0].strip()
    return set() if text == "none" else {key.strip() for key in text.split(",")}


def test_every_shipped_config_turns_on_exactly_the_departures_its_header_names():
    for name in shipped_config_names():
        config = load_config(name)
        assert set(departures_from_paper(config)) == named_departures(name), name
        if name != "synthetic" and not name.endswith("_ordered"):  # the real-data configs are the paper's
            assert departures_from_paper(config) == [], name
    for name in [n for n in shipped_config_names() if n.endswith("_ordered")]:
        assert set(departures_from_paper(load_config(name))) == {
            "loss.lambda_order", "model.last_edit_highest", "model.count_head", "model.seen_sequences_only"}, name


def test_every_seqdeepfake_table_config_is_shipped_with_its_ordered_twin():
    for subset in ("components", "attributes"):
        for backbone, timm_name in (("r34", "resnet34"), ("r50", "resnet50"), ("swin", "swin_base_patch4_window7_224")):
            paper = load_config(f"seqdeepfake_{subset}_{backbone}")
            ordered = load_config(f"seqdeepfake_{subset}_{backbone}_ordered")
            assert paper.data.kind == "seqdeepfake" and paper.data.subset == f"facial_{subset}"
            assert paper.model.backbone == timm_name == ordered.model.backbone
            assert paper.optim.epochs == (400 if backbone == "swin" else 200)
            assert paper.output_dir == f"runs/seqdeepfake_{subset}_{backbone}"
            assert ordered.output_dir == paper.output_dir + "_ordered"
            switched_back = load_config(f"seqdeepfake_{subset}_{backbone}_ordered",
                                        ["loss.lambda_order=0", "model.last_edit_highest=false",
                                         "model.count_head=false", "model.seen_sequences_only=false",
                                         f"output_dir={paper.output_dir}"])
            assert switched_back == paper


def test_the_papers_loss_as_printed_is_one_documented_switch_away():
    for name in shipped_config_names():
        config = load_config(name)
        if config.method != "mlrank" or name == "synthetic":
            continue
        assert (config.loss.reg, config.loss.num_k) == ("mean", None), name  # the decisions, documented:
        header = shipped_config(name).read_text(encoding="utf-8")
        base = load_config(name)
        if "loss.reg=sum loss.num_k=100" not in header.replace("\n# ", " "):
            assert "base:" in header, f"{name} neither documents the strict switch nor inherits it"
        strict = load_config(name, ["loss.reg=sum", "loss.num_k=100"])
        assert (strict.loss.reg, strict.loss.num_k) == ("sum", 100) and base.loss.reg == "mean"


def test_every_shipped_config_loads_with_the_papers_settings():
    names = shipped_config_names()
    assert {"synthetic", "seqdeepfake_components_r50", "seqdeepfake_attributes_r50", "ffpp_swin"} <= set(names)
    for name in names:
        config = load_config(name)
        assert config.loss.tau == 0.2 and config.loss.alpha == 1.0 and config.loss.lambda1 == 1.0
        assert config.optim.scheduler == "cosine"
        # The synthetic-data configs train a backbone from scratch; the others fine-tune as the paper.
        if name not in ("synthetic", "seeable_synthetic"):
            assert config.optim.lr == 1e-4 and config.optim.backbone_lr_scale == 0.1
            assert config.data.root is None and config.model.pretrained_file is None  # the user's paths
            assert config.method == "seeable" or config.model.normalize_patch_tokens  # the paper's row-normalised U
    components = load_config("seqdeepfake_components_r50")
    assert (components.model.backbone, components.optim.epochs, components.loss.lambda2) == ("resnet50", 200, 1.0)
    for name in ("seqdeepfake_components_r50", "seqdeepfake_attributes_r50"):  # the paper's loss, exactly
        config = load_config(name)
        assert config.loss.lambda_order == 0 and not config.model.last_edit_highest
    seeable = load_config("seeable_ffpp")  # SeeABLE's protocol and settings
    assert (seeable.method, seeable.data.dataset_name, seeable.data.json_path) == ("seeable", "FaceForensics++", None)
    assert [test_set.name for test_set in seeable.data.cross_test_sets] == ["Celeb-DF-v2", "DFDC", "DFDCP"]
    assert (seeable.seeable.grid, seeable.seeable.types, seeable.seeable.temperature) == ((4, 4), ["spatial", "frequency"], 0.07)
    swin = load_config("ffpp_swin")
    assert (swin.model.num_classes, swin.optim.epochs, swin.data.image_size) == (1, 400, 384)
    assert swin.data.kind == "deepfakebench" and swin.loss.lambda2 == 0.0


def test_base_config_is_merged_key_by_key():
    attributes = load_config("seqdeepfake_attributes_r50")
    components = load_config("seqdeepfake_components_r50")
    assert attributes.data.subset == "facial_attributes"
    assert attributes.output_dir == "runs/seqdeepfake_attributes_r50"
    expected = dataclasses.replace(
        components,
        output_dir="runs/seqdeepfake_attributes_r50",
        data=dataclasses.replace(components.data, subset="facial_attributes"),
    )
    assert attributes == expected


def test_base_by_relative_path_and_layering(tmp_path):
    write_yaml(tmp_path / "parent.yaml", {"base": "synthetic", "optim": {"lr": 0.5, "epochs": 3}})
    child = write_yaml(tmp_path / "child.yaml", {"base": "parent.yaml", "optim": {"epochs": 4}})
    config = load_config(child, ["optim.epochs=5", "data.batch_size=8"])
    assert (config.optim.lr, config.optim.epochs, config.data.batch_size) == (0.5, 5, 8)
    assert load_config(child).optim.epochs == 4


def test_base_cycle_is_an_error(tmp_path):
    write_yaml(tmp_path / "a.yaml", {"base": "b.yaml"})
    write_yaml(tmp_path / "b.yaml", {"base": "a.yaml"})
    with pytest.raises(ValueError, match="cycle"):
        load_config(tmp_path / "a.yaml")


def test_overrides_are_parsed_as_yaml_values():
    config = load_config(
        None,
        [
            "optim.lr=3e-4",  # PyYAML reads this as a string; a float field accepts it
            "optim.grad_clip=1",
            "loss.num_k=100",
            "data.root=/data/Seq-DeepFake",
            "model.pretrained_file=null",
            "deterministic=false",
            "seeable.grid=[2, 3]",
            "seeable.types=[blur]",
            "method=seeable",
            "data.root=/a: b",  # YAML punctuation: kept as the literal text
        ],
    )
    assert config.optim.lr == 3e-4 and isinstance(config.optim.lr, float)
    assert config.optim.grad_clip == 1.0 and isinstance(config.optim.grad_clip, float)
    assert config.loss.num_k == 100
    assert config.model.pretrained_file is None
    assert config.deterministic is False
    assert config.seeable.grid == (2, 3) and config.seeable.types == ["blur"]
    assert config.method == "seeable"
    assert config.data.root == "/a: b"


@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.lrr=0.1", "unknown config key 'optim.lrr'; did you mean 'optim.lr'?"),
        ("optimm.lr=0.1", "unknown config key 'optimm.lr'; did you mean 'optim.lr'?"),
        ("data.batchsize=4", "did you mean 'data.batch_size'?"),
        ("sed=1", "did you mean 'seed'?"),
    ],
)
def test_unknown_override_key_suggests_the_nearest(override, message):
    with pytest.raises(ValueError) as error:
        load_config(None, [override])
    assert message in str(error.value)


def test_unknown_key_without_a_near_one_lists_the_section(tmp_path):
    path = write_yaml(tmp_path / "c.yaml", {"loss": {"zzzzzz": 1}})
    with pytest.raises(ValueError, match=r"unknown config key 'loss.zzzzzz'; valid keys here: \['loss.tau'"):
        load_config(path)


@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.epochs=2.5", "config key 'optim.epochs' expects int, got 2.5"),
        ("deterministic=1", "config key 'deterministic' expects bool, got 1"),
        ("optim.lr=fast", "config key 'optim.lr' expects float, got 'fast'"),
        ("method=gan", "config key 'method' expects one of 'mlrank', 'seeable', got 'gan'"),
        ("seeable.grid=[4]", "config key 'seeable.grid' expects a list of 2 int"),
        ("loss.num_k=all", "config key 'loss.num_k' expects int or null, got 'all'"),
        ("data=3", "config key 'data' is a section"),
        ("optim.lr", "must look like section.key=value"),
    ],
)
def test_wrong_types_name_the_key_and_the_expected_type(override, message):
    with pytest.raises(ValueError) as error:
        load_config(None, [override])
    assert message in str(error.value)


@pytest.mark.parametrize(
    "override, message",
    [
        ("data.batch_size=0", "'data.batch_size' must be positive"),
        ("loss.tau=-0.2", "'loss.tau' must be positive"),
        ("loss.lambda2=-1", "'loss.lambda2' must be non-negative"),
        ("loss.lambda_cls=-1", "'loss.lambda_cls' must be non-negative"),
        ("loss.lambda_bce_class=-0.5", "'loss.lambda_bce_class' must be non-negative"),
        ("optim.lr=.inf", "'optim.lr' must be finite"),
        ("model.dropout=1.0", "'model.dropout' must lie in [0, 1)"),
        ("model.num_heads=3", "divisible by 'model.num_heads'"),
        ("model.out_stride=48", "divisible by 'model.out_stride'"),
        ("model.max_stride=4", "'model.max_stride' (4) must be at least 'model.out_stride' (8)"),
        ("model.max_stride=0", "'model.max_stride' must be positive"),
    ],
)
def test_values_out_of_range_are_errors(override, message):
    with pytest.raises(ValueError) as error:
        load_config(None, [override])
    assert message in str(error.value)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="shipped configs: .*synthetic"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(FileNotFoundError, match="no shipped config named 'nope'"):
        shipped_config("nope")
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n", encoding="utf-8")
    with pytest.raises(ValueError, match=f"{listing}.*mapping"):
        load_config(listing)
    broken = tmp_path / "broken.yaml"
    broken.write_text("optim: {lr: [\n", encoding="utf-8")
    with pytest.raises(ValueError, match=f"{broken} is not valid YAML"):
        load_config(broken)


def test_a_key_written_twice_is_an_error_naming_it_and_its_lines(tmp_path):
    nested = tmp_path / "nested.yaml"
    nested.write_text("seed: 1\noptim:\n  lr: 0.1\n  epochs: 3\n  lr: 0.2\n", encoding="utf-8")
    twice = rf"config file {nested} .*line 5, column 3: duplicate key 'lr' \(first at line 3\)"
    with pytest.raises(ValueError, match=twice):
        load_config(nested)
    top = tmp_path / "top.yaml"
    top.write_text("seed: 1\noptim: {lr: 0.1}\nseed: 2\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"line 3, column 1: duplicate key 'seed' \(first at line 1\)"):
        load_config(top)
    # the same key in two mappings, and a key overriding one that a merge brought in, are fine
    assert yaml.load("a: {x: 1}\nb: {x: 2}\n", Loader=UniqueKeyLoader) == {"a": {"x": 1}, "b": {"x": 2}}
    anchors = tmp_path / "anchors.yaml"
    anchors.write_text("base: synthetic\noptim:\n  <<: {lr: 0.1, epochs: 3}\n  lr: 0.5\n", encoding="utf-8")
    assert (load_config(anchors).optim.lr, load_config(anchors).optim.epochs) == (0.5, 3)


def test_config_file_in_another_encoding_is_named(tmp_path):
    path = tmp_path / "latin.yaml"
    path.write_bytes("seed: 1\n# r\u00e9glages\n".encode("latin-1"))
    with pytest.raises(ValueError, match=rf"{path}, line 2: byte 0xe9 is not UTF-8"):
        load_config(path)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["seed=-1"], r"'seed' must lie in \[0, 2\*\*32\), got -1"),
        (["seed=4294967296"], r"'seed' must lie in \[0, 2\*\*32\), got 4294967296"),
        (["data.synthetic_seed=-3"], "'data.synthetic_seed' must be non-negative"),
        (["method=seeable", "seeable.grid=[64, 64]"], r"a 64 x 64 grid with 4 types gives K = 16384 .* more than 1024"),
        (["method=seeable", "seeable.grid=[0, 4]"], "grid rows must be >= 1"),
        (["method=seeable", "seeable.types=[colour, colour]"], "types must not repeat"),
    ],
)
def test_seeds_and_the_seeable_grid_are_bounded(overrides, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, overrides)


def test_largest_seed_and_grid_pass():
    assert load_config(None, ["seed=4294967295"]).seed == 2**32 - 1
    assert load_config(None, ["method=seeable", "seeable.grid=[16, 16]"]).seeable.grid == (16, 16)
    assert load_config(None, ["seeable.grid=[64, 64]"]).method == "mlrank"  # not SeeABLE: not used


def test_config_argument_takes_a_path_or_a_shipped_name(tmp_path):
    assert resolve_config_path("ffpp_swin") == shipped_config("ffpp_swin")
    local = write_yaml(tmp_path / "mine.yaml", {"seed": 7})
    assert resolve_config_path(str(local)) == local
    assert load_config(str(local)).seed == 7


def test_save_and_load_round_trip(tmp_path):
    config = load_config("ffpp_swin", ["seeable.grid=[3, 5]", "data.root=/x"])
    path = tmp_path / "run" / "config.yaml"
    save_config(config, path)
    assert load_config(path) == config
    assert yaml.safe_load(path.read_text(encoding="utf-8")) == config_to_dict(config)
    assert config_to_dict(config)["seeable"]["grid"] == [3, 5]
    assert config_from_dict(config_to_dict(config)) == config


def test_every_field_is_a_valid_key_and_subsets_match_the_vocabulary():
    keys = valid_keys()
    assert "optim.lr" in keys and "data" in keys and "seeable.lambda_gui" in keys
    subset_hint = typing.get_type_hints(DataConfig)["subset"]
    assert set(typing.get_args(subset_hint)) == set(SUBSETS)


def test_cross_test_sets_are_a_checked_list_of_sections(tmp_path):
    sets = "[{name: Celeb-DF-v2}, {name: Wild, kind: frames, root: /data/wdf}]"
    config = load_config(None, [f"data.cross_test_sets={sets}"])
    first, second = config.data.cross_test_sets
    assert (first.name, first.kind, first.root, first.split) == ("Celeb-DF-v2", None, None, "test")
    assert (second.name, second.kind, second.root) == ("Wild", "frames", "/data/wdf")
    saved = tmp_path / "saved.yaml"
    save_config(config, saved)
    assert load_config(saved) == config  # a checkpoint's config gives the same sets back
    errors = {
        "[{nmae: A}]": r"unknown config key 'data.cross_test_sets\[0\].nmae'; did you mean 'data.cross_test_sets\[0\].name'\?",
        "[{name: A, kind: lmdb}]": r"config key 'data.cross_test_sets\[0\].kind' expects one of 'deepfakebench', 'frames' or null",
        "[{name: A}, {name: A}]": r"config key 'data.cross_test_sets': the name 'A' is used twice",
        "[{root: /x}]": r"config key 'data.cross_test_sets\[0\].name' must be set",
        "[Celeb-DF-v2]": r"config key 'data.cross_test_sets\[0\]' expects a mapping with keys \['name', ",
    }
    for value, message in errors.items():
        with pytest.raises(ValueError, match=message):
            load_config(None, [f"data.cross_test_sets={value}"])
