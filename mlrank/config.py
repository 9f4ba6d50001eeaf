"""Old home of the training configuration, kept for code that imports it: it lives in
:mod:`mlrank.engine.config`."""

from mlrank.engine.config import (
    SEED_LIMIT,
    SHIPPED_CONFIG_DIR,
    Config,
    CrossTestSet,
    DataConfig,
    DuplicateKeyError,
    LossConfig,
    ModelConfig,
    OptimConfig,
    SeeableConfig,
    TrainConfig,
    UniqueKeyLoader,
    config_from_dict,
    config_to_dict,
    load_config,
    resolve_config_path,
    save_config,
    shipped_config,
    shipped_config_names,
    valid_keys,
)

__all__ = [
    "SEED_LIMIT", "SHIPPED_CONFIG_DIR", "Config", "CrossTestSet", "DataConfig", "DuplicateKeyError", "LossConfig",
    "ModelConfig", "OptimConfig", "SeeableConfig", "TrainConfig", "UniqueKeyLoader", "config_from_dict",
    "config_to_dict", "load_config", "resolve_config_path", "save_config", "shipped_config",
    "shipped_config_names", "valid_keys",
]
