"""The package's layout (docs/architecture.md): imports run from the methods to the shared code, never
back; the registry holds the methods, and a third one needs a module and an entry, nothing else; the
old import paths of the unreleased 0.1.0 are gone, and CHANGELOG.md says where each name went."""

import ast
import importlib
import json
from pathlib import Path

import cv2
import pytest

import mlrank
from mlrank import evaluate, predict, train
from mlrank.data.synthetic import SyntheticSeqDeepFake
from mlrank.engine.methods import METHODS, Method, get_method

PACKAGE = Path(mlrank.__file__).parent
METHOD_PACKAGES = ("mlrank.ranking", "mlrank.seeable")
SHARED_PACKAGES = ("mlrank.engine", "mlrank.task", "mlrank.models", "mlrank.data", "mlrank.ops")
# The entry points that serve every method, through the registry only. (explain and ablate are the
# ranking method's own tools and import it.)
GENERIC_ENTRY_POINTS = ("mlrank.train", "mlrank.evaluate", "mlrank.predict", "mlrank.crosseval", "mlrank.plot",
                        "mlrank.preprocess", "mlrank.demo", "mlrank.cli", "mlrank.optional")
ENTRY_POINTS = (*GENERIC_ENTRY_POINTS, "mlrank.explain", "mlrank.ablate")

# Each removed path and, per new home, the public names it had at 7e9a311 (before the move).
OLD_PATHS = {
    "mlrank.config": {"mlrank.engine.config": [
        "SHIPPED_CONFIG_DIR", "SEED_LIMIT", "CrossTestSet", "DataConfig", "ModelConfig", "LossConfig", "OptimConfig",
        "TrainConfig", "SeeableConfig", "Config", "shipped_config_names", "shipped_config", "resolve_config_path",
        "load_config", "config_to_dict", "config_from_dict", "save_config", "valid_keys", "UniqueKeyLoader",
        "DuplicateKeyError"]},
    "mlrank.runs": {"mlrank.engine.runs": [
        "REQUIRED_CHECKPOINT_KEYS", "CHECKPOINT_NAMES", "remove_stale_temporaries", "atomic_write_bytes",
        "atomic_write_text", "atomic_write_json", "atomic_write_yaml", "atomic_torch_save", "read_utf8_text",
        "check_inside_root", "check_checkpoint_exists", "load_checkpoint", "seed_everything", "capture_rng_state",
        "restore_rng_state", "collect_versions", "git_commit", "tensorboard_scalars", "RunFolder"]},
    "mlrank.losses": {
        "mlrank.ranking.losses": ["PROB_CLAMP", "OUTPUT_KEYS", "rank_weights", "cls_loss", "bce_loss", "rank_loss",
                                  "order_loss", "total_loss"],
        "mlrank.task.sequences": ["sequence_targets"]},
    "mlrank.decoding": {
        "mlrank.ranking.decoding": ["reverse_edit_order", "edit_order_scores", "decode"],
        "mlrank.task.sequences": ["check_scores", "check_sequences", "descending_ranks", "logit_threshold",
                                  "above_threshold"]},
    "mlrank.metrics": {
        "mlrank.task.metrics": ["ArrayLike", "fixed_acc", "adaptive_acc", "multilabel_acc", "order_r2",
                                "ordered_pairs", "kendall_tau", "auc", "eer", "average_precision", "accuracy_at",
                                "video_auc", "binary_metrics"],
        "mlrank.ranking.metrics": ["sequence_metrics"]},
    "mlrank.supervised": {
        "mlrank.ranking.method": ["PSEUDO_FAKE", "build_model", "train_batch_size", "train_dataset",
                                  "evaluation_dataset", "evaluate", "unpack_batch", "train_one_epoch",
                                  "evaluation_loader", "predict_split", "selection_metric"],
        "mlrank.ranking.metrics": ["split_metrics"]},
    "mlrank.models.ranking_model": {"mlrank.ranking.model": ["DEFAULT_IMG_SIZE", "MultiLabelRankingModel"]},
    "mlrank.data.faces": {
        "mlrank.data.face_model": ["Colour", "SKIN_TONES", "HAIR_COLOURS", "IRIS_COLOURS", "LIP_COLOURS",
                                   "FRAME_COLOURS", "Pose", "Head", "Skin", "Hair", "Brows", "Eyes", "Nose", "Lips",
                                   "Bangs", "Glasses", "Beard", "Face", "palette", "sample_skin", "sample_hair",
                                   "sample_brows", "sample_eyes", "sample_nose", "sample_lips", "sample_face"],
        "mlrank.data.face_geometry": ["pose_matrix", "to_pixels", "ellipse", "face_outline", "jaw_points",
                                      "eye_centres", "eye_arcs", "eye_points", "brow_centreline", "brow_polygon",
                                      "nose_points", "lip_points", "cheek_centres", "glasses_rims", "glasses_arms",
                                      "bangs_polygon", "landmarks", "canonical_grid", "beard_zone", "lips_extent"],
        "mlrank.data.painting": ["SUBPIXEL_BITS", "fixed_point", "polygon_mask", "Stroke", "stroke", "draw",
                                 "paint_texture", "grain_tile", "grain", "upsampled", "tinted", "over"],
        "mlrank.data.face_rendering": ["Base", "render_base", "hair_texture", "render_features", "render"]},
}
CHANGELOG = Path(__file__).resolve().parents[1] / "CHANGELOG.md"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in it (relative imports resolved); ``from a import b``
    counts as a.b as well, since b may be a module."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


MODULES = {module_name(path): imported_modules(path) for path in PACKAGE.rglob("*.py")}


def within(module: str, packages) -> bool:
    return any(module == package or module.startswith(package + ".") for package in packages)


def imports_of(packages) -> dict[str, set[str]]:
    """What the modules in ``packages`` import."""
    return {name: imports for name, imports in MODULES.items() if within(name, packages)}


def test_the_modules_were_found():
    assert {"mlrank.engine.methods", "mlrank.ranking.method", "mlrank.seeable.method", "mlrank.task.metrics"} <= set(MODULES)


@pytest.mark.parametrize("packages", [SHARED_PACKAGES, GENERIC_ENTRY_POINTS], ids=["shared", "generic entry points"])
def test_shared_code_never_imports_a_method(packages):
    offending = {name: sorted(imp for imp in imports if within(imp, METHOD_PACKAGES))
                 for name, imports in imports_of(packages).items()}
    assert {name: imports for name, imports in offending.items() if imports} == {}


def import_cycles(packages) -> list[list[str]]:
    """Cycles among the modules of ``packages`` (imports under TYPE_CHECKING count too). A module's
    own parent packages are left out: Python runs them before the module whatever it imports."""
    graph = {name: sorted(imp for imp in imports
                          if imp in MODULES and within(imp, packages) and not within(name, [imp]))
             for name, imports in imports_of(packages).items()}
    cycles, state = [], {}

    def visit(name, path):
        state[name] = "open"
        for other in graph.get(name, []):
            if state.get(other) == "open":
                cycles.append(path[path.index(other):] + [other])
            elif other not in state:
                visit(other, path + [other])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    return cycles


def test_the_cycle_finder_finds_a_cycle(monkeypatch):
    monkeypatch.setitem(MODULES, "mlrank.engine.runs", MODULES["mlrank.engine.runs"] | {"mlrank.engine.config"})
    assert ["mlrank.engine.config", "mlrank.engine.runs", "mlrank.engine.config"] in import_cycles(["mlrank.engine"])


@pytest.mark.parametrize("packages", [("mlrank.engine",), SHARED_PACKAGES, ("mlrank",)], ids=["engine", "shared", "all"])
def test_no_import_cycle(packages):
    assert import_cycles(packages) == []


def test_a_method_imports_neither_the_other_method_nor_an_entry_point():
    for method in METHOD_PACKAGES:
        others = [*(package for package in METHOD_PACKAGES if package != method), *ENTRY_POINTS]
        offending = {name: sorted(imp for imp in imports if within(imp, others))
                     for name, imports in imports_of([method]).items()}
        assert {name: imports for name, imports in offending.items() if imports} == {}


def test_the_package_itself_uses_no_old_path():
    users = {(name, imp) for name, imports in MODULES.items() for imp in imports if imp in OLD_PATHS}
    assert users == set()


@pytest.mark.parametrize("old", OLD_PATHS)
def test_an_old_import_path_is_gone_and_the_changelog_says_where_its_names_went(old):
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(old)
    changelog = CHANGELOG.read_text()
    entry = next((line for line in changelog.splitlines() if f"`{old}`" in line), None)
    assert entry is not None, f"CHANGELOG.md does not mention {old}"
    for home, names in OLD_PATHS[old].items():
        assert f"`{home}`" in entry
        new = importlib.import_module(home)
        assert [name for name in names if not hasattr(new, name)] == []


def test_the_package_root_exports_the_op_only():
    assert mlrank.__all__ == ["ops"] and not hasattr(mlrank, "decode")
    for name in ("mlrank.ops", "mlrank.data"):
        module = importlib.import_module(name)
        assert all(hasattr(module, exported) for exported in module.__all__)


def test_every_registered_method_offers_the_whole_interface():
    for name in METHODS:
        method = get_method(name)
        assert isinstance(method, Method) and method.name == name
        fields = [field for field in Method.__dataclass_fields__ if field != "name"]
        assert all(callable(getattr(method, field)) for field in fields)
    with pytest.raises(ValueError, match=r"unknown method 'gan'; methods: \['mlrank', 'seeable'\]"):
        get_method("gan")


def test_a_third_method_needs_a_module_and_a_registry_entry(tmp_path, monkeypatch):
    monkeypatch.setitem(METHODS, "toy", "toy_method")  # tests/toy_method.py, docs/architecture.md's example
    run = tmp_path / "run"
    tiny = ["method=toy", "data.synthetic_train_size=24", "data.synthetic_val_size=16", "data.synthetic_test_size=16",
            "data.batch_size=8", "data.num_workers=0", "optim.epochs=2", f"output_dir={run}"]
    assert train.main(tiny) == 0
    test_metrics = json.loads((run / "test_metrics.json").read_text())
    assert {"auc", "eer", "ap", "acc"} <= set(test_metrics)
    assert evaluate.main([str(run / "best.pt"), "--split", "val"]) == 0

    image = tmp_path / "face.png"
    cv2.imwrite(str(image), SyntheticSeqDeepFake("test", size=64, num_images=1).sample(0).image[:, :, ::-1])
    assert predict.main([str(run / "best.pt"), str(image), "--output-dir", str(tmp_path / "out")]) == 0
    record = json.loads((tmp_path / "out" / "predictions.json").read_text())[0]
    assert 0.0 <= record["fake_probability"] <= 1.0 and "heatmap" not in record



def test_the_smoke_subset_names_tests_that_exist():
    from conftest import SMOKE_FILES, SMOKE_TESTS

    tests = Path(__file__).parent
    assert all((tests / name).is_file() for name in SMOKE_FILES)
    for node in SMOKE_TESTS:
        file_name, function = node.split("::")
        functions = {n.name for n in ast.parse((tests / file_name).read_text()).body if isinstance(n, ast.FunctionDef)}
        assert function in functions, node
