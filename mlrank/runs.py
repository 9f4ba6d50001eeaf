"""Old home of run folders, checkpoints and atomic writes, kept for code that imports it: they live
in :mod:`mlrank.engine.runs`."""

from mlrank.engine.runs import (
    CHECKPOINT_NAMES,
    REQUIRED_CHECKPOINT_KEYS,
    RunFolder,
    atomic_torch_save,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    atomic_write_yaml,
    capture_rng_state,
    check_checkpoint_exists,
    check_inside_root,
    collect_versions,
    git_commit,
    load_checkpoint,
    read_utf8_text,
    remove_stale_temporaries,
    restore_rng_state,
    seed_everything,
    tensorboard_scalars,
)

__all__ = [
    "CHECKPOINT_NAMES", "REQUIRED_CHECKPOINT_KEYS", "RunFolder", "atomic_torch_save", "atomic_write_bytes",
    "atomic_write_json", "atomic_write_text", "atomic_write_yaml", "capture_rng_state", "check_checkpoint_exists",
    "check_inside_root", "collect_versions", "git_commit", "load_checkpoint", "read_utf8_text",
    "remove_stale_temporaries", "restore_rng_state", "seed_everything", "tensorboard_scalars",
]
