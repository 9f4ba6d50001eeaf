"""One writer per output: an exclusive lock that a command holds on what it writes for its whole run.

``train`` (and ``--resume``), ``ablate``, ``predict``, ``explain``, ``crosseval`` and ``preprocess``
take ``output_lock(TARGET, COMMAND)`` on their output folder (or crosseval's output base) before they
read or write anything there. A second command on the same target is refused at once with one line
naming the holder's process id, host and command; it never waits, and never writes.

Decisions:
- The lock is ``flock(2)`` on a file beside the target, ``.<target name>.mlrank-lock`` in its parent
  folder, so that a target that does not exist yet (a run folder created after its checks) can be
  locked before anything else happens, and the folder itself stays exactly what the command makes.
- The kernel drops a flock when its process dies, however it dies: a lock left by a killed process
  is simply taken over, with no pid check that a recycled pid could fool. The pid, host and command
  written into the file are for the message only.
- The file is removed when the holder ends; a process that opened it just before it went away
  checks, once it holds the flock, that the path still names the file it locked, and otherwise
  starts over, so two holders can never both believe they hold the lock.
- Torchrun's ranks share the lock of rank 0: only the main process takes it (the others write
  nothing).
- Where ``fcntl`` does not exist (Windows), the lock is skipped: nothing prevents two writers there.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

LOCK_SUFFIX = ".mlrank-lock"


class OutputInUse(FileExistsError):
    """Another process holds the lock of the output a command would write."""


def lock_path(target: str | Path) -> Path:
    """Where the lock of ``target`` lives: beside it, hidden."""
    target = Path(os.path.abspath(target))
    return target.parent / f".{target.name}{LOCK_SUFFIX}"


def _holder(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError:
        return "another process"
    return text or "another process"


@contextlib.contextmanager
def output_lock(target: str | Path, command: str, *, enabled: bool = True) -> Iterator[Path]:
    """Hold the exclusive lock of ``target`` for the ``with`` block, or raise :class:`OutputInUse`
    naming the process that holds it. ``enabled=False`` (a rank other than the main one) does nothing."""
    if not enabled or fcntl is None:
        yield lock_path(target)
        return
    path = lock_path(target)
    made = [folder for folder in (path.parent, *path.parent.parents) if not folder.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            raise OutputInUse(
                f"{target} is in use by {_holder(path)}; wait for it to end, or choose another output"
            ) from None
        try:
            same = os.path.exists(path) and os.path.samestat(os.fstat(descriptor), os.stat(path))
        except OSError:
            same = False
        if same:
            break
        os.close(descriptor)  # the holder removed it as we opened it: take the new one
    try:
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"process {os.getpid()} on {socket.gethostname()} ({command})\n".encode("utf-8"))
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(descriptor)
        for folder in made:  # the folders made for the lock alone, if nothing else went there
            with contextlib.suppress(OSError):
                folder.rmdir()


def command_words(module: str, argv: Sequence[str] | None) -> list[str]:
    """``["python -m MODULE", *arguments]``: the command as a user types it, whether ``main`` was
    called from the shell (``argv`` None: sys.argv's arguments) or from Python (``argv`` the
    arguments). Run folders record it (run.json's ``argv``), so its first word is always the program."""
    return [f"python -m {module}", *(sys.argv[1:] if argv is None else argv)]


def command_line(argv: list[str] | None = None) -> str:
    """The command as a user typed it, for the lock's message."""
    words = sys.argv if argv is None else argv
    return " ".join(words)[:200]
