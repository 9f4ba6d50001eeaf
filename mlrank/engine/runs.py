"""Run folders: atomic writes, the resolved config and run facts, a metrics log, checkpoints, RNG state.

A run folder (``Config.output_dir``) holds

* ``config.yaml``: the resolved configuration in effect (rewritten on resume, so overrides given then
  show);
* ``run.json``: the seed, the command line, versions (python, torch, timm, numpy, mlrank, CUDA), the git
  commit of the mlrank checkout if there is one, host, start time, world size; each resume appends a
  record of the same facts to its ``resumes`` list;
* ``metrics.jsonl``: one JSON object per evaluated epoch, each carrying an ``epoch`` key, flushed and
  fsynced line by line;
* ``last.pt`` and ``best.pt``: checkpoints, ``best`` chosen on the validation split only; a sequence
  model's run also keeps ``best_fixed.pt`` and ``best_adaptive.pt``, the best epochs by validation
  Fixed-Acc and Adaptive-Acc (Seq-DeepFake's protocol reports each metric from its own); a file that
  holds the same epoch as another is a hard link to it where the file system allows;
* ``tensorboard/`` (with ``RunFolder(..., tensorboard=True)``): the same records as TensorBoard scalars.

Every file but the metrics log is replaced atomically: written to a temporary file in the same folder
(``.<name>.<pid>.<8 hex digits>.tmp``), fsynced, then ``os.replace``-d over the old one, so a crash or a
failing serializer leaves the old file whole. A process killed mid-write leaves its temporary file
behind; ``start`` and ``resume`` delete those of processes no longer running, and nothing else.

A folder is created by ``start``, not before, so a run that fails its checks leaves nothing behind. A
run holds a completed epoch once ``last.pt`` exists: ``start`` then refuses the folder. Before that (a
crash or kill in the first epoch, even while ``last.pt`` was being written), ``start`` clears what the
attempt left (its metrics log, a ``best.pt`` of epoch 0) and begins afresh in the same folder; files
that show a later epoch without ``last.pt`` make it refuse instead, since they are not its to delete.

The log is append-only; ``resume`` drops the lines of epochs after the checkpoint (and a last
line cut short by a crash), so the log always matches the state training continues from. For that to
hold, log an epoch's metrics *before* saving its checkpoint.

TensorBoard: ``log_metrics`` writes each record's numbers as scalars at step = epoch (tags in
``tensorboard_scalars``), on the main process only, flushed at once so a running TensorBoard shows
every epoch as it ends. The package is imported when the RunFolder is made, on every rank, so a
missing one stops the run before the folder exists. The writer opens at the first record a process
logs, with TensorBoard's ``purge_step`` at that epoch: a resumed run hides the events an earlier
attempt wrote for the epochs it drops from ``metrics.jsonl``, so both logs tell the same story.

A checkpoint is a dict with at least ``REQUIRED_CHECKPOINT_KEYS``: model, optimizer and scheduler state
dicts, ``epoch`` (the last completed one), ``global_step``, ``best_metric``, ``rng`` (from
``capture_rng_state``) and ``config`` (``config_to_dict``). Values must be tensors, numbers, strings,
None, or lists, tuples and dicts of them: ``save_checkpoint`` checks this so that ``load_checkpoint``
can use ``torch.load(weights_only=True)``, which runs no code from the file.

Bit-for-bit resume on the CPU needs, besides the states above: ``seed_everything`` at start, the
samplers of ``mlrank.engine.distributed.make_sampler`` (their order depends only on seed and epoch, through
``set_epoch``), and ``restore_rng_state`` after loading, which also resets the DataLoader workers' base
seeds since they are drawn from torch's global generator. RNG state is per process: in a
multi-process run store ``mlrank.engine.distributed.gather_objects(capture_rng_state(), ctx)``, one state per
rank, and restore rank r's.
"""

from __future__ import annotations

import codecs
import datetime
import errno
import importlib.metadata
import json
import os
import platform
import random
import re
import secrets
import shutil
import socket
import subprocess
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
import yaml

from mlrank import __version__

REQUIRED_CHECKPOINT_KEYS = (
    "model", "optimizer", "scheduler", "epoch", "global_step", "best_metric", "rng", "config",
)
CHECKPOINT_NAMES = ("last", "best", "best_fixed", "best_adaptive")

# ---------------------------------------------------------------- atomic writes


# The temporary name of an atomic write: the target's name, the writer's pid, a random tag.
_TEMPORARY_NAME = re.compile(r"\.(?P<target>.+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp")


def _atomic_write(path: str | Path, write: Callable[[BinaryIO], None], durable: bool = True) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    # os.open honours the umask, unlike tempfile's private 0600 files.
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(descriptor, "wb") as file:
            write(file)
            if durable:
                file.flush()
                os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        full = isinstance(error, Exception) and _disk_is_full(path.parent)
        temporary.unlink(missing_ok=True)
        if full:
            # torch.save reports a full disk only as "unexpected pos N vs M".
            raise OSError(errno.ENOSPC, disk_full_message(path)) from error
        raise
    if durable:
        _fsync_folder(path.parent)


def disk_full_message(path: Path) -> str:
    """What a write that found the disk full left: the previous file whole, or none."""
    kept = f"the previous {path.name} there is intact" if path.exists() else "nothing was written there"
    return f"no space left on the disk to write {path}; {kept}: free some space, then run again (or --resume)"


def _disk_is_full(folder: Path) -> bool:
    """Whether fewer than 1 MiB are free where ``folder`` lives (what a failed write leaves)."""
    try:
        return shutil.disk_usage(folder).free < 2**20
    except OSError:
        return False


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX; Windows has no directory handles to sync)."""
    if os.name != "posix":
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _process_is_running(pid: int) -> bool:
    if pid == os.getpid() or os.name != "posix":  # elsewhere os.kill(pid, 0) would not be a probe
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # running, as another user
        return True
    return True


def remove_stale_temporaries(folder: str | Path) -> list[str]:
    """Delete the temporary files of atomic writes in ``folder`` whose writing process is no longer
    running on this machine (killed mid-write); returns their names. Other files are never touched."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for entry in folder.iterdir():
        match = _TEMPORARY_NAME.fullmatch(entry.name)
        if match and entry.is_file() and not _process_is_running(int(match["pid"])):
            entry.unlink(missing_ok=True)
            removed.append(entry.name)
    return sorted(removed)


def atomic_write_bytes(path: str | Path, data: bytes, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` atomically (temporary file in the same folder, fsync, os.replace).

    ``durable=False`` skips the fsyncs: still all-or-nothing, but a crash may lose the new file; for
    the thousands of images a cache or a preprocessing run writes, which can be regenerated.
    """
    _atomic_write(path, lambda file: file.write(data), durable)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Replace ``path`` with UTF-8 ``text`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Replace ``path`` with ``obj`` as indented JSON atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def atomic_write_yaml(path: str | Path, mapping: Mapping[str, Any]) -> None:
    """Replace ``path`` with ``mapping`` as block-style YAML, keys in their given order, atomically."""
    atomic_write_text(path, yaml.safe_dump(dict(mapping), sort_keys=False, default_flow_style=False))


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save(obj, path)``, atomically: a failure while pickling leaves the old file whole."""
    _atomic_write(path, lambda file: torch.save(obj, file))


# ---------------------------------------------------------------- reading user files


def read_utf8_text(path: str | Path) -> str:
    """The text of a UTF-8 file (a leading byte-order mark dropped), or a ValueError naming the file
    and the line for UTF-16 and legacy encodings (latin-1, cp1252), which would otherwise surface
    as a codec error without either."""
    path = Path(path)
    data = path.read_bytes()
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise ValueError(f"{path} is UTF-16 (or UTF-32) text; save it as UTF-8")
    if b"\0" in data:  # what UTF-16 without a byte-order mark looks like
        line = data.count(b"\n", 0, data.index(b"\0")) + 1
        raise ValueError(
            f"{path}, line {line}: a NUL byte (UTF-16 text without a byte-order mark, or not a text "
            "file); save it as UTF-8"
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise ValueError(
            f"{path}, line {line}: byte 0x{data[error.start]:02x} is not UTF-8 (latin-1 or another "
            "legacy encoding?); save the file as UTF-8"
        ) from None
    return text


def check_inside_root(path: str, what: str) -> None:
    """Raise a ValueError naming ``what`` unless ``path`` is relative and has no ".." component.

    The rule for paths read from a data set's index (a CSV row, a JSON entry) and joined onto its
    root: lexical, so symlinks inside the root are followed; ".." is refused even where the text
    stays inside, because after a symlink the OS resolves it elsewhere. Backslashes count as
    separators, as DeepfakeBench's Windows-written indexes use them.
    """
    if os.path.isabs(path):
        raise ValueError(
            f"{what} {path!r} is absolute, outside the data root (allow_paths_outside_root to read it)"
        )
    if ".." in path.replace("\\", "/").split("/"):
        raise ValueError(
            f"{what} {path!r} has a '..' component and may leave the data root "
            "(allow_paths_outside_root to read it)"
        )


# ---------------------------------------------------------------- checkpoints

_PLAIN_SCALARS = (bool, int, float, str, type(None))


def _check_loadable(value: Any, where: str) -> None:
    """Raise if ``value`` holds anything ``torch.load(weights_only=True)`` would refuse."""
    # Exact types: numpy.float64 subclasses float but pickles as a numpy object.
    if type(value) in _PLAIN_SCALARS or isinstance(value, torch.Tensor):
        return
    if type(value) in (dict, OrderedDict):
        for key, item in value.items():
            if type(key) not in _PLAIN_SCALARS:
                raise TypeError(f"checkpoint key {key!r} in {where} is a {type(key).__name__}; use a str or int")
            _check_loadable(item, f"{where}[{key!r}]")
        return
    if type(value) in (list, tuple, torch.Size):
        for index, item in enumerate(value):
            _check_loadable(item, f"{where}[{index}]")
        return
    raise TypeError(
        f"checkpoint value {where} is a {type(value).__module__}.{type(value).__qualname__}; checkpoints hold "
        "only tensors, numbers, strings, None and lists, tuples or dicts of them (convert it, e.g. "
        "float(x), tensor.tolist() or config_to_dict(config))"
    )


def _check_keys(state: Mapping[str, Any], source: str) -> None:
    missing = [key for key in REQUIRED_CHECKPOINT_KEYS if key not in state]
    if missing:
        raise ValueError(
            f"{source} lacks the checkpoint keys {missing}; a checkpoint needs {list(REQUIRED_CHECKPOINT_KEYS)}"
        )


def check_checkpoint_exists(path: str | Path) -> Path:
    """``path`` as a Path; FileNotFoundError naming it unless it is a file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A checkpoint written by ``RunFolder.save_checkpoint``; clear errors for missing or damaged files."""
    path = check_checkpoint_exists(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch.load raises OSError, KeyError, EOFError... for damaged files
        detail = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise ValueError(
            f"checkpoint {path} cannot be read (truncated, corrupt, or not a checkpoint): {detail}"
        ) from error
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {path} holds a {type(state).__name__}, not a checkpoint dict")
    _check_keys(state, f"checkpoint {path}")
    return state


def load_model_state(model: torch.nn.Module, state_dict: Mapping[str, Any], source: str) -> None:
    """``model.load_state_dict(state_dict)``, or a ValueError that says in full how they differ: how
    many keys are missing and unexpected, the first of each, and the first tensor of another shape
    with both shapes (PyTorch's own message lists every key over many lines)."""
    try:
        model.load_state_dict(state_dict)
        return
    except RuntimeError:
        pass
    expected = model.state_dict()
    flexible = set(getattr(model, "flexible_state_keys", ()))  # keys the model's own loading adapts
    missing = [key for key in expected if key not in state_dict and key not in flexible]
    unexpected = [key for key in state_dict if key not in expected]
    reshaped = [(key, tuple(state_dict[key].shape), tuple(expected[key].shape)) for key in expected
                if key in state_dict and key not in flexible and tuple(state_dict[key].shape) != tuple(expected[key].shape)]
    shape = lambda sizes: "x".join(map(str, sizes)) or "scalar"  # noqa: E731
    parts = []
    if missing:
        parts.append(f"{len(missing)} key(s) of the model missing from it (first: '{missing[0]}')")
    if unexpected:
        parts.append(f"{len(unexpected)} key(s) the model does not have (first: '{unexpected[0]}')")
    if reshaped:
        key, saved, wanted = reshaped[0]
        parts.append(f"{len(reshaped)} tensor(s) of another shape (first: '{key}', {shape(saved)} in the checkpoint, "
                     f"{shape(wanted)} in the model)")
    raise ValueError(f"{source} does not fit the model its config describes: {'; '.join(parts) or 'see PyTorch'}")


def checkpoint_epoch(path: str | Path) -> int:
    """The epoch a checkpoint holds, without reading its tensors (memory-mapped, not loaded)."""
    return int(torch.load(check_checkpoint_exists(path), map_location="cpu", weights_only=True, mmap=True)["epoch"])


# ---------------------------------------------------------------- RNG state


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed python, numpy and torch (all devices); with ``deterministic``, ask for deterministic kernels.

    In a multi-process run pass ``seed + rank`` so ranks augment differently; DDP copies rank 0's
    initial weights to every rank anyway.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        # cuBLAS needs this before its first call to be deterministic; harmless on the CPU.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        # warn_only: a GPU op without a deterministic kernel warns instead of stopping training.
        torch.use_deterministic_algorithms(True, warn_only=True)


def capture_rng_state(generators: Mapping[str, torch.Generator] | None = None) -> dict[str, Any]:
    """The state of python's, numpy's and torch's global generators (CPU and CUDA) and of ``generators``.

    The result holds only checkpoint-safe values (see ``save_checkpoint``).
    """
    numpy_state = np.random.get_state(legacy=False)
    return {
        "python": random.getstate(),
        "numpy": {
            "bit_generator": numpy_state["bit_generator"],
            "key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
            "pos": int(numpy_state["state"]["pos"]),
            "has_gauss": int(numpy_state["has_gauss"]),
            "gauss": float(numpy_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "generators": {name: generator.get_state() for name, generator in (generators or {}).items()},
    }


def restore_rng_state(state: Mapping[str, Any], generators: Mapping[str, torch.Generator] | None = None) -> None:
    """Put back a ``capture_rng_state`` result, so the next random numbers are those that followed it.

    CUDA states are restored for the devices present (none on a CPU-only machine).
    """
    missing = [key for key in ("python", "numpy", "torch", "cuda", "generators") if key not in state]
    if missing:
        raise ValueError(f"RNG state lacks {missing}; expected the result of capture_rng_state()")
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    numpy_state = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": numpy_state["bit_generator"],
            "state": {"key": numpy_state["key"].numpy().astype(np.uint32), "pos": numpy_state["pos"]},
            "has_gauss": numpy_state["has_gauss"],
            "gauss": numpy_state["gauss"],
        }
    )
    torch.set_rng_state(state["torch"].cpu())
    if torch.cuda.is_available():
        for device, cuda_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state.cpu(), device)
    for name, generator in (generators or {}).items():
        if name not in state["generators"]:
            raise ValueError(f"RNG state has no generator {name!r}; it has {sorted(state['generators'])}")
        generator.set_state(state["generators"][name].cpu())


# ---------------------------------------------------------------- run facts


def collect_versions() -> dict[str, str | None]:
    """Versions of python and the libraries that decide a run's numbers."""

    def installed(package: str) -> str | None:
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "timm": installed("timm"),
        "numpy": np.__version__,
        "mlrank": __version__,
    }


def git_commit() -> dict[str, Any] | None:
    """Commit and dirtiness of the git checkout mlrank is imported from; None when it is not one."""
    source = Path(__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(source), *args], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        return {"commit": commit, "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return None


def cpu_name() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_facts() -> dict[str, Any]:
    """What a results table's machine column says: the CPU, its cores, the GPUs torch sees."""
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "gpus": gpus}


def _start_facts(seed: int, argv: Sequence[str], world_size: int) -> dict[str, Any]:
    return {
        "seed": seed,
        "argv": list(argv),
        "versions": collect_versions(),
        "git": git_commit(),
        "host": socket.gethostname(),
        "machine": machine_facts(),
        "start_time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "world_size": world_size,
    }


# ---------------------------------------------------------------- the run folder


def _summary_writer_class() -> Any:
    from mlrank.optional import require

    return require("torch.utils.tensorboard", "tensorboard", "train.tensorboard: true").SummaryWriter


def tensorboard_scalars(record: Mapping[str, Any]) -> dict[str, float]:
    """The TensorBoard scalars of one metrics record: its numbers by key, ``loss_X`` as ``loss/X`` and
    ``val_X`` as ``val/X`` (TensorBoard's groups), list items as ``KEY/INDEX``; ``epoch`` (the step),
    flags (``best``), text and nulls are left out."""
    scalars: dict[str, float] = {}
    for key, value in record.items():
        if key == "epoch":
            continue
        group, _, name = key.partition("_")
        tag = f"{group}/{name}" if group in ("loss", "val") and name else key
        items = enumerate(value) if isinstance(value, list) else [(None, value)]
        for index, item in items:
            if isinstance(item, (int, float)) and not isinstance(item, bool):
                scalars[tag if index is None else f"{tag}/{index}"] = float(item)
    return scalars


class RunFolder:
    """The folder of one training run. On ranks other than the main one (``is_main=False``) every write
    is skipped, so the training loop can call these methods unconditionally; reads work on all ranks.
    """

    def __init__(self, path: str | Path, *, is_main: bool = True, tensorboard: bool = False) -> None:
        self.path = Path(path)
        self.is_main = is_main
        self._summary_writer_class = _summary_writer_class() if tensorboard else None
        self._tensorboard: Any = None  # the open SummaryWriter (main process, after the first record)

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def run_info_path(self) -> Path:
        return self.path / "run.json"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    def checkpoint_path(self, name: str = "last") -> Path:
        """``<run>/<name>.pt``, name one of ``CHECKPOINT_NAMES``."""
        if name not in CHECKPOINT_NAMES:
            raise ValueError(f"checkpoint name must be one of {CHECKPOINT_NAMES}, got {name!r}")
        return self.path / f"{name}.pt"

    @property
    def test_metrics_path(self) -> Path:
        return self.path / "test_metrics.json"

    @property
    def tensorboard_path(self) -> Path:
        return self.path / "tensorboard"

    def has_completed_epoch(self) -> bool:
        """Whether the folder holds a run that can be resumed (its ``last.pt``)."""
        return self.checkpoint_path("last").is_file()

    def check_startable(self, resume_command: str | None = None) -> list[Path]:
        """The files ``start`` would clear (left by an attempt that stopped in its first epoch), or a
        FileExistsError when the folder holds a run that must not be touched; ``resume_command`` goes
        into the message."""
        if self.path.exists() and not self.path.is_dir():
            raise NotADirectoryError(f"run folder {self.path} is a file")
        if self.has_completed_epoch():
            command = resume_command or f"python -m mlrank.train --resume {self.path}"
            raise FileExistsError(
                f"run folder {self.path} already holds a run (last.pt); resume it with '{command}' or "
                "choose another output_dir"
            )
        bests = [self.checkpoint_path(name) for name in CHECKPOINT_NAMES if name != "last"]
        later_epochs = sorted({record["epoch"] for record in self.read_metrics() if record["epoch"] > 0})
        best_epochs = {best.name: load_checkpoint(best)["epoch"] for best in bests if best.is_file()}
        found = [
            *([f"metrics of epochs {later_epochs}"] if later_epochs else []),
            *(f"{name} of epoch {epoch}" for name, epoch in best_epochs.items() if epoch != 0),
            *([self.test_metrics_path.name] if self.test_metrics_path.exists() else []),
        ]
        if found:
            raise FileExistsError(
                f"run folder {self.path} holds {', '.join(found)} but no last.pt, so its run cannot be "
                "resumed; move those files away or choose another output_dir"
            )
        return [path for path in (self.metrics_path, *bests) if path.exists()]

    def start(self, config: Mapping[str, Any], *, seed: int, argv: Sequence[str], world_size: int) -> list[str]:
        """Begin a fresh run: create the folder, write ``config.yaml`` and ``run.json``.

        Refuses what ``check_startable`` refuses, clears what it lists and the temporary files of
        killed writers, and returns the names of the files it removed.
        """
        if not self.is_main:
            return []
        stale = self.check_startable()
        for path in stale:
            path.unlink()
        removed = [path.name for path in stale] + remove_stale_temporaries(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_yaml(self.config_path, config)
        atomic_write_json(self.run_info_path, {**_start_facts(seed, argv, world_size), "resumes": []})
        return removed

    def resume(
        self, config: Mapping[str, Any], *, last_epoch: int, seed: int, argv: Sequence[str], world_size: int
    ) -> None:
        """Continue from a checkpoint of ``last_epoch``: drop later metrics lines, rewrite ``config.yaml``,
        and append this start to ``run.json``'s ``resumes``."""
        if not self.is_main:
            return
        remove_stale_temporaries(self.path)
        self.truncate_metrics(last_epoch)
        atomic_write_yaml(self.config_path, config)
        if self.run_info_path.is_file():
            run_info = self._read_json(self.run_info_path)
        else:
            run_info = {"resumes": []}
        this_start = {**_start_facts(seed, argv, world_size), "from_epoch": last_epoch}
        run_info.setdefault("resumes", []).append(this_start)
        atomic_write_json(self.run_info_path, run_info)

    def log_metrics(self, record: Mapping[str, Any]) -> None:
        """Append one epoch's metrics (a JSON object with an int ``epoch``) to ``metrics.jsonl``, durably."""
        if type(record.get("epoch")) is not int:
            raise ValueError(
                f"a metrics record needs an int 'epoch', got {record.get('epoch')!r} in {dict(record)}"
            )
        try:
            line = json.dumps(dict(record))
        except TypeError as error:
            raise TypeError(f"metrics record for epoch {record['epoch']} is not JSON: {error}") from None
        if not self.is_main:
            return
        try:
            with open(self.metrics_path, "a", encoding="utf-8") as file:
                file.write(line + "\n")
                file.flush()
                os.fsync(file.fileno())
        except OSError as error:
            if error.errno == errno.ENOSPC:  # the line may be cut short: read_metrics skips such a line
                raise OSError(errno.ENOSPC, disk_full_message(self.metrics_path)) from error
            raise
        if self._summary_writer_class is not None:
            if self._tensorboard is None:
                self._tensorboard = self._summary_writer_class(str(self.tensorboard_path), purge_step=record["epoch"])
            for tag, value in tensorboard_scalars(record).items():
                self._tensorboard.add_scalar(tag, value, record["epoch"])
            self._tensorboard.flush()

    def close(self) -> None:
        """Close the TensorBoard writer, if one is open (a later record opens a new one)."""
        if self._tensorboard is not None:
            self._tensorboard.close()
            self._tensorboard = None

    def read_metrics(self) -> list[dict[str, Any]]:
        """The logged records, in order; a last line cut short by a crash is left out."""
        return [record for _, record in self.read_metric_lines()]

    def read_metric_lines(self) -> list[tuple[int, dict[str, Any]]]:
        """(line number, record) of every logged record, in order (see ``read_metrics``)."""
        if not self.metrics_path.is_file():
            return []
        # Text after the last newline is a line a crash cut short: it was never logged.
        complete = self.metrics_path.read_text(encoding="utf-8").split("\n")[:-1]
        records = []
        for number, line in enumerate(complete, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{self.metrics_path} line {number} is not JSON: {error}") from None
            if not isinstance(record, dict) or type(record.get("epoch")) is not int:
                raise ValueError(f"{self.metrics_path} line {number} is not a record with an int 'epoch'")
            records.append((number, record))
        return records

    def truncate_metrics(self, last_epoch: int) -> None:
        """Keep only the records of epochs up to ``last_epoch``; rewrite the log atomically."""
        if not self.is_main or not self.metrics_path.is_file():
            return
        kept = [record for record in self.read_metrics() if record["epoch"] <= last_epoch]
        atomic_write_text(self.metrics_path, "".join(json.dumps(record) + "\n" for record in kept))

    def save_checkpoint(self, state: Mapping[str, Any], name: str = "last", *, also: Sequence[str] = ()) -> Path:
        """Write ``state`` to ``<name>.pt`` atomically, after checking its keys and types; the names in
        ``also`` get the same file (``link_checkpoint``)."""
        path = self.checkpoint_path(name)
        _check_keys(state, "checkpoint state")
        _check_loadable(dict(state), "state")
        if self.is_main:
            atomic_torch_save(dict(state), path)
            for other in also:
                self.link_checkpoint(name, other)
        return path

    def link_checkpoint(self, source: str, name: str) -> Path:
        """Make ``<name>.pt`` the same file as ``<source>.pt``, atomically: a hard link where the file
        system has them (no second copy of the bytes), else a copy; the old ``<name>.pt`` stays whole
        until the new one replaces it."""
        source_path, path = self.checkpoint_path(source), self.checkpoint_path(name)
        if not self.is_main:
            return path
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            os.link(source_path, temporary)
        except OSError:
            atomic_write_bytes(path, source_path.read_bytes())
            return path
        os.replace(temporary, path)
        _fsync_folder(path.parent)
        return path

    @staticmethod
    def _read_json(path: Path) -> dict[str, Any]:
        try:
            content = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON: {error}") from None
        if not isinstance(content, dict):
            raise ValueError(f"{path} must hold a JSON object")
        return content
