"""Training configuration: nested dataclasses, YAML files with ``base:``, ``key.sub=value`` overrides.

``load_config(path, overrides)`` resolves a run's configuration in three layers, later ones winning:

1. the dataclass defaults (:mod:`mlrank.engine.schema`): the paper's method with every departure from it off
   (``PAPER_DEPARTURES``), at the scale of the built-in synthetic data set (a small backbone trained
   from scratch on 64 x 64 images in minutes);
2. a YAML file, given as a path or as the name of a shipped config (``shipped_config``). A file may
   start from another with ``base: <shipped name or path relative to the file>``; bases chain, and
   mappings merge key by key while lists and scalars replace;
3. command-line overrides ``section.key=value``, each value parsed as a YAML scalar or flow list
   (``optim.lr=3e-4``, ``data.root=null``, ``seeable.grid=[4,4]``).

Every key is checked against the dataclasses: an unknown key is a ValueError that suggests the nearest
valid one, a value of the wrong type a ValueError naming the key and the expected type. A key written
twice in one mapping of a file is a ValueError naming the key and both lines (plain YAML keeps the
last value silently); files must be UTF-8.

Decisions:

* A float field also takes a string that Python reads as a float, because YAML 1.1 (PyYAML) reads
  ``1e-4`` (no dot) as a string and that is how everybody writes a learning rate. An int field does not
  take a float, nor a bool an int: ``epochs: 2.5`` or ``deterministic: 1`` are errors.
* ``train.amp`` is ``auto`` (bf16 autocast on a GPU, none on the CPU), ``bf16`` or ``fp32``. Not
  ``off``: YAML 1.1 reads ``off`` as False.
* The defaults are the paper's method: every key of ``PAPER_DEPARTURES`` holds the paper's value, so a
  config that does not name a departure does not get it. ``python -m mlrank.train`` without
  ``--config`` runs the shipped ``synthetic`` config (``DEFAULT_CONFIG``), which switches its
  departures on by name. The defaults' data and schedule are the built-in set's (a larger learning
  rate and fewer epochs than the paper's 1e-4 and 200, for a backbone trained from scratch); the
  paper's optimisation settings are in the shipped real-data configs.
* ``seed`` lies in [0, 2**32): numpy's global seed is 32 bits (the training loop adds the rank to it
  and checks the sum against the world size).
* ``method`` is a name in :data:`mlrank.engine.methods.METHODS`, and the method checks its own keys
  (``Method.check_config``): with ``method: seeable``, SeeABLE's discrepancy spec checks
  ``seeable.grid`` and ``seeable.types`` and bounds the number of classes, so a grid too fine to train
  fails before anything is built.
* To add a setting, add a typed field with a default to its section (or a new section dataclass and a
  field of ``Config``); parsing, checking and saving follow from the type hints.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from mlrank.engine.methods import METHODS, get_method
from mlrank.engine.runs import atomic_write_yaml, read_utf8_text
from mlrank.engine.schema import (Config, CrossTestSet, DataConfig, LossConfig, ModelConfig, OptimConfig,
                                  SeeableConfig, TrainConfig)

__all__ = [  # the schema's classes are part of this module's interface, as before the split
    "Config", "CrossTestSet", "DataConfig", "LossConfig", "ModelConfig", "OptimConfig", "SeeableConfig",
    "TrainConfig", "SHIPPED_CONFIG_DIR", "SEED_LIMIT", "DEFAULT_CONFIG", "PAPER_DEPARTURES", "LEGACY_DEFAULTS",
    "departures_from_paper", "shipped_config_names", "shipped_config", "resolve_config_path", "load_config",
    "saved_config", "config_to_dict", "config_from_dict", "save_config", "valid_keys", "UniqueKeyLoader",
    "DuplicateKeyError", "UnknownConfigKey",
]

SHIPPED_CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
SEED_LIMIT = 2**32  # numpy's global seed is a 32-bit unsigned integer


DEFAULT_CONFIG = "synthetic"  # what python -m mlrank.train and mlrank.ablate run without --config

# The keys whose value departs from the paper's method when it differs from the default (the
# defaults are the paper's), with what the departure is. A shipped config names the ones it turns on
# in its header ("Departures from the paper: ..."), which tests/test_config.py checks.
PAPER_DEPARTURES: dict[str, str] = {
    "loss.lambda_order": "L_Order, a pairwise order term (docs/method.md section 5)",
    "model.last_edit_highest": "the logits rank the latest edit highest, decoded reversed (section 5)",
    "model.order_head": "a separate order score trained by L_Order (section 5)",
    "model.count_head": "a count head decides how many components decoding keeps (section 5)",
    "model.highpass_input": "high-pass residual input channels (section 2)",
    "model.normalize_patch_tokens": "the patch tokens U enter the encoder unnormalised (section 2)",
    "model.max_stride": "the backbone's last stages are not built (section 6)",
    "model.decode_from": "decoding reads another branch than the fused head (section 6, Table 3 row I)",
    "model.seen_sequences_only": "decoding is restricted to the training annotations' sequences (section 7)",
}


def departures_from_paper(config: Config) -> list[str]:
    """The ``PAPER_DEPARTURES`` keys whose value in ``config`` is not the paper's (the default's)."""
    paper = Config()
    return [key for key in PAPER_DEPARTURES if _lookup(config, key) != _lookup(paper, key)]


# Range checks run after the type checks, on every loaded config.
_POSITIVE_INTS = [
    "data.image_size", "data.synthetic_train_size", "data.synthetic_val_size", "data.synthetic_test_size",
    "data.frames_per_video", "data.batch_size", "model.num_classes", "model.token_dim", "model.out_stride",
    "model.max_stride", "model.num_heads", "loss.num_k", "optim.epochs", "train.log_every", "train.eval_every",
    "train.max_steps_per_epoch", "seeable.embed_dim",
]
_POSITIVE_FLOATS = ["loss.tau", "optim.lr", "optim.backbone_lr_scale", "optim.grad_clip", "seeable.temperature"]
_NON_NEGATIVE = [
    "data.synthetic_seed", "data.num_workers", "loss.lambda1", "loss.lambda2", "loss.lambda_cls",
    "loss.lambda_bce_patch", "loss.lambda_bce_class", "loss.lambda_order", "loss.alpha", "optim.weight_decay",
    "optim.warmup_epochs", "seeable.lambda_gui",
]


def shipped_config_names() -> list[str]:
    """Names of the configs shipped in ``mlrank/configs``."""
    return sorted(path.stem for path in SHIPPED_CONFIG_DIR.glob("*.yaml"))


def shipped_config(name: str) -> Path:
    """Path of the shipped config ``mlrank/configs/<name>.yaml``."""
    path = SHIPPED_CONFIG_DIR / f"{name}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"no shipped config named {name!r}; shipped configs: {shipped_config_names()}")
    return path


def resolve_config_path(path_or_name: str | Path) -> Path:
    """A config file given as a path, or else as the name of a shipped config."""
    path = Path(path_or_name)
    if path.is_file():
        return path
    if path.suffix == "" and len(path.parts) == 1 and (SHIPPED_CONFIG_DIR / f"{path}.yaml").is_file():
        return SHIPPED_CONFIG_DIR / f"{path}.yaml"
    raise FileNotFoundError(
        f"config {str(path_or_name)!r} is neither a file nor a shipped config name; "
        f"shipped configs: {shipped_config_names()}"
    )


def load_config(path: str | Path | None = None, overrides: typing.Sequence[str] = ()) -> Config:
    """The resolved Config: defaults, then the YAML file (and its bases), then ``key=value`` overrides."""
    raw: dict[str, Any] = {}
    if path is not None:
        raw = _read_with_bases(resolve_config_path(path), chain=())
    return config_from_dict(raw, overrides)


# Keys added after runs had been saved, with the value those runs trained (and decoded) with, which
# need not be today's default: checkpoints and run folders of that time were trained on [0, 1]
# pixels, with the paper's loss and order of the logits, no count head and every stage of the
# backbone, and decoded the fused logits with no restriction. A saved config that lacks a key gets
# this value, never the default; a key it has is kept.
LEGACY_DEFAULTS: dict[str, dict[str, Any]] = {
    "model": {"standardize_input": False, "last_edit_highest": False, "count_head": False, "max_stride": None,
              "decode_from": "fused", "seen_sequences_only": False},
    "loss": {"lambda_order": 0.0},
}


def with_legacy_defaults(saved: dict[str, Any]) -> dict[str, Any]:
    """A saved run's config dict (a checkpoint's or a run folder's) with ``LEGACY_DEFAULTS`` for the keys it lacks."""
    values = copy.deepcopy(saved)
    for section, defaults in LEGACY_DEFAULTS.items():
        values[section] = {**defaults, **(values.get(section) or {})}
    return values


def saved_config(saved: dict[str, Any] | str | Path, overrides: typing.Sequence[str] = ()) -> Config:
    """The Config a saved run trained with: its config dict, or its ``config.yaml``, read with
    ``LEGACY_DEFAULTS`` (evaluation, prediction and ``--resume`` all read saved runs so). A key of the
    saved config that this version does not know is an error saying that a newer mlrank saved it."""
    source = "the checkpoint's config" if isinstance(saved, dict) else str(saved)
    if not isinstance(saved, dict):
        saved = _read_with_bases(Path(saved), chain=())
    values = with_legacy_defaults(saved)
    try:
        config_from_dict(values)
    except UnknownConfigKey as error:
        from mlrank import __version__

        raise ValueError(
            f"{source} has the key '{error.key}', which mlrank {__version__} does not know: the run was saved by "
            "a newer mlrank (its run.json names the version); install that one to read it"
        ) from None
    return config_from_dict(values, overrides)


def config_to_dict(config: Config) -> dict[str, Any]:
    """Plain nested dict of built-in types (tuples become lists), ready for YAML, JSON or a checkpoint."""
    return _plain(dataclasses.asdict(config))


def config_from_dict(values: dict[str, Any], overrides: typing.Sequence[str] = ()) -> Config:
    """The Config a ``config_to_dict`` result (say, from a checkpoint) describes, checked like a file,
    with ``key=value`` overrides applied (e.g. another data root for evaluation)."""
    raw = copy.deepcopy(values)
    for override in overrides:
        key, value = _parse_override(override)
        _merge(raw, _nest(key, value))
    config = _build(Config, raw, prefix="")
    _check_ranges(config)
    return config


def save_config(config: Config, path: str | Path) -> None:
    """Write the config as YAML, atomically; ``load_config(path)`` gives it back."""
    atomic_write_yaml(path, config_to_dict(config))


def valid_keys(cls: type = Config, prefix: str = "") -> list[str]:
    """Every dotted key a config accepts, sections included (``optim``, ``optim.lr``, ...)."""
    keys = []
    for name, hint in _field_types(cls).items():
        key = prefix + name
        keys.append(key)
        if dataclasses.is_dataclass(hint):
            keys.extend(valid_keys(hint, key + "."))
    return keys


# ---------------------------------------------------------------- reading files and overrides


def _read_with_bases(path: Path, chain: tuple[Path, ...]) -> dict[str, Any]:
    path = path.resolve()
    if path in chain:
        cycle = " -> ".join(str(p) for p in (*chain, path))
        raise ValueError(f"config files include each other in a cycle: {cycle}")
    text = read_utf8_text(path)
    try:
        content = yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as error:
        raise ValueError(f"config file {path} is not valid YAML: {_yaml_error_line(error)}") from None
    if content is None:
        content = {}
    if not isinstance(content, dict):
        raise ValueError(f"config file {path} must hold a mapping of keys, got {type(content).__name__}")
    base = content.pop("base", None)
    if base is None:
        return content
    if not isinstance(base, str):
        raise ValueError(f"'base' in config file {path} must be a shipped config name or a path, got {base!r}")
    relative = path.parent / base
    base_path = relative if relative.is_file() else resolve_config_path(base)
    merged = _read_with_bases(base_path, (*chain, path))
    _merge(merged, content)
    return merged


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.safe_load``'s loader, except that a key repeated in one mapping is an error.

    Keys brought in by a merge (``<<: *anchor``) may still be overridden, as YAML intends.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in first_line:
                raise DuplicateKeyError(
                    f"duplicate key {key!r} (first at line {first_line[key]})", key_node.start_mark
                )
            first_line[key] = line
        return super().construct_mapping(node, deep=deep)


class DuplicateKeyError(yaml.MarkedYAMLError):
    """A key written twice in one YAML mapping."""

    def __init__(self, problem: str, mark: yaml.Mark) -> None:
        super().__init__(problem=problem, problem_mark=mark)


def _yaml_error_line(error: yaml.YAMLError) -> str:
    """A PyYAML error on one line: where (line, column), then what."""
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        problem = error.problem or error.context or "invalid YAML"
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return " ".join(str(error).split())


def _parse_override(override: str) -> tuple[str, Any]:
    key, sep, text = override.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"override {override!r} must look like section.key=value")
    try:
        value = yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError:
        value = text
    if isinstance(value, dict):
        value = text  # overrides set scalars and lists; "a: b" is a path or name with a colon in it
    return key, value


def _nest(dotted_key: str, value: Any) -> dict[str, Any]:
    nested: Any = value
    for part in reversed(dotted_key.split(".")):
        nested = {part: nested}
    return nested


def _merge(into: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


# ---------------------------------------------------------------- checking against the dataclasses


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _build(cls: type, raw: Any, prefix: str) -> Any:
    section = prefix.rstrip(".")
    if not isinstance(raw, dict):
        raise ValueError(f"config key '{section}' is a section and needs a mapping, got {raw!r}")
    fields = _field_types(cls)
    for key, value in raw.items():
        if key not in fields:
            full_key = prefix + str(key) + _first_leaf(value)
            raise UnknownConfigKey(_unknown_key_message(full_key), full_key)
    values = {}
    for name, hint in fields.items():
        if name not in raw:
            continue
        if dataclasses.is_dataclass(hint):
            values[name] = _build(hint, raw[name], prefix + name + ".")
        else:
            values[name] = _coerce(raw[name], hint, prefix + name)
    return cls(**values)


def _first_leaf(value: Any) -> str:
    """The dotted rest of the first full key under an unknown section, so that a misspelt section
    ('optimm.lr') is matched as the whole key the user wrote."""
    if isinstance(value, dict) and value:
        key, item = next(iter(value.items()))
        return f".{key}{_first_leaf(item)}"
    return ""


class UnknownConfigKey(ValueError):
    """A key the config's dataclasses do not have (``key``: the dotted key)."""

    def __init__(self, message: str, key: str) -> None:
        super().__init__(message)
        self.key = key


def _unknown_key_message(key: str) -> str:
    close = difflib.get_close_matches(key, valid_keys(), n=1, cutoff=0.6)
    if close:
        return f"unknown config key '{key}'; did you mean '{close[0]}'?"
    section = key.rpartition(".")[0]
    siblings = [k for k in valid_keys() if k.rpartition(".")[0] == section]
    return f"unknown config key '{key}'; valid keys here: {siblings}"


def _type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return "one of " + ", ".join(repr(choice) for choice in typing.get_args(hint))
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if arg is type(None) else _type_name(arg) for arg in typing.get_args(hint))
    if origin is tuple:
        return f"a list of {len(typing.get_args(hint))} {_type_name(typing.get_args(hint)[0])}"
    if origin is list:
        return f"a list of {_type_name(typing.get_args(hint)[0])}"
    return {int: "int", float: "float", str: "str", bool: "bool"}[hint]


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """The value as the field's type, or a ValueError naming the key and the expected type."""
    item = typing.get_args(hint)[0] if typing.get_origin(hint) is list else None
    if dataclasses.is_dataclass(item):
        return _build_list(item, value, key)
    try:
        return _coerce_or_raise(value, hint)
    except _WrongType:
        raise ValueError(f"config key '{key}' expects {_type_name(hint)}, got {value!r}") from None


class _WrongType(Exception):
    pass


def _build_list(cls: type, value: Any, key: str) -> list[Any]:
    """A list of mappings, each checked as the section ``cls``; errors name ``key[i].field``."""
    fields = list(_field_types(cls))
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"config key '{key}' expects a list of mappings with keys {fields}, got {value!r}")
    items = []
    for index, raw in enumerate(value):
        where = f"{key}[{index}]"
        if not isinstance(raw, dict):
            raise ValueError(f"config key '{where}' expects a mapping with keys {fields}, got {raw!r}")
        for name in raw:
            if name not in fields:
                close = difflib.get_close_matches(str(name), fields, n=1, cutoff=0.6)
                hint = f"did you mean '{where}.{close[0]}'?" if close else f"valid keys here: {fields}"
                raise UnknownConfigKey(f"unknown config key '{where}.{name}'; {hint}", f"{where}.{name}")
        items.append(_build(cls, raw, where + "."))
    return items


def _coerce_or_raise(value: Any, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is not type(None):
                try:
                    return _coerce_or_raise(value, arg)
                except _WrongType:
                    pass
        raise _WrongType
    if origin is Literal:
        if value in typing.get_args(hint):
            return value
        raise _WrongType
    if origin is tuple:
        item_types = typing.get_args(hint)
        if not isinstance(value, (list, tuple)) or len(value) != len(item_types):
            raise _WrongType
        return tuple(_coerce_or_raise(item, item_type) for item, item_type in zip(value, item_types))
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise _WrongType
        return [_coerce_or_raise(item, typing.get_args(hint)[0]) for item in value]
    if dataclasses.is_dataclass(hint):  # an item of a list of sections; _coerce builds those
        raise _WrongType
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise _WrongType
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _WrongType
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise _WrongType from None
        raise _WrongType
    if hint is str:
        if isinstance(value, str):
            return value
        raise _WrongType
    raise TypeError(f"config field type {hint!r} is not supported by the loader")


def _lookup(config: Config, key: str) -> Any:
    value: Any = config
    for part in key.split("."):
        value = getattr(value, part)
    return value


def _check_ranges(config: Config) -> None:
    if config.method not in METHODS:  # the registry's names, not a copy of them in a type
        names = ", ".join(repr(name) for name in METHODS)
        raise ValueError(f"config key 'method' expects one of {names}, got {config.method!r}")
    if not 0 <= config.seed < SEED_LIMIT:
        raise ValueError(f"config key 'seed' must lie in [0, 2**32), got {config.seed}")
    for key in _POSITIVE_INTS + _POSITIVE_FLOATS:
        value = _lookup(config, key)
        if value is not None and not value > 0:
            raise ValueError(f"config key '{key}' must be positive, got {value!r}")
    for key in _NON_NEGATIVE:
        value = _lookup(config, key)
        if not value >= 0:
            raise ValueError(f"config key '{key}' must be non-negative, got {value!r}")
    for key in _POSITIVE_FLOATS + _NON_NEGATIVE + ["model.dropout"]:
        value = _lookup(config, key)
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"config key '{key}' must be finite, got {value!r}")
    if not 0.0 <= config.model.dropout < 1.0:
        raise ValueError(f"config key 'model.dropout' must lie in [0, 1), got {config.model.dropout!r}")
    if config.model.token_dim % config.model.num_heads:
        raise ValueError(
            f"config key 'model.token_dim' ({config.model.token_dim}) must be divisible by "
            f"'model.num_heads' ({config.model.num_heads})"
        )
    if config.data.image_size % config.model.out_stride:
        raise ValueError(
            f"config key 'data.image_size' ({config.data.image_size}) must be divisible by "
            f"'model.out_stride' ({config.model.out_stride})"
        )
    if config.model.max_stride is not None and config.model.max_stride < config.model.out_stride:
        raise ValueError(
            f"config key 'model.max_stride' ({config.model.max_stride}) must be at least "
            f"'model.out_stride' ({config.model.out_stride})"
        )
    names = [test_set.name for test_set in config.data.cross_test_sets]
    for index, name in enumerate(names):
        if not name:
            raise ValueError(f"config key 'data.cross_test_sets[{index}].name' must be set (the table's row)")
        if names.index(name) != index:
            raise ValueError(f"config key 'data.cross_test_sets': the name {name!r} is used twice")
    get_method(config.method).check_config(config)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value
