"""How the command-line entry points end: ``if __name__ == "__main__": sys.exit(run_cli(main))``.

The project's convention: a user's mistake (a missing file, a bad path, a bad config key or value,
a malformed data row) is raised as one of ``USER_ERRORS`` with a message that names the problem.
``run_cli`` turns those into one line ``error: <message>`` on stderr and exit status 2, the status
argparse gives a bad command line. Any other exception is a bug and keeps its traceback; so does a
user error when the environment variable ``MLRANK_TRACEBACK`` is set to a non-empty value, for
reporting one. Ctrl-C (KeyboardInterrupt) ends with ``interrupted`` and its message, if it has one
(training's says how to resume), and exit status 130, as a shell reports a process stopped by
SIGINT. SIGTERM, what schedulers and torchrun send to stop a job, is handled alike: the command stops
where it is (training drops the epoch under way and prints the command that resumes it) and exits
with 143, as a shell reports SIGTERM. A full disk (ENOSPC, EDQUOT) is a user error too: one line
naming the file that could not be written (atomic writes leave the previous file whole). Under
torchrun only rank 0 prints, so a mistake every rank makes shows once.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
from collections.abc import Callable

from mlrank.engine.distributed import is_main_process

USER_ERRORS: tuple[type[Exception], ...] = (
    ValueError,
    TypeError,
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
)
USER_ERROR_STATUS = 2
INTERRUPTED_STATUS = 130  # 128 + SIGINT
TERMINATED_STATUS = 143  # 128 + SIGTERM
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the command is, as Ctrl-C raises KeyboardInterrupt."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


def run_cli(main: Callable[[], int | None]) -> int:
    """Call ``main()`` and return its exit status, reporting user errors, Ctrl-C and SIGTERM as above."""
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        status = main()
    except KeyboardInterrupt as interrupt:
        # On a line of its own: the terminal's "^C" or a progress bar holds the current one.
        word = "terminated (SIGTERM)" if isinstance(interrupt, Terminated) else "interrupted"
        _report(f"\n{word}" + (f": {interrupt}" if str(interrupt) else ""))
        return TERMINATED_STATUS if isinstance(interrupt, Terminated) else INTERRUPTED_STATUS
    except OSError as error:
        if error.errno not in DISK_FULL and not isinstance(error, USER_ERRORS):
            raise
        if os.environ.get("MLRANK_TRACEBACK"):
            raise
        _report(f"error: {one_line(error)}")
        return USER_ERROR_STATUS
    except USER_ERRORS as error:
        if os.environ.get("MLRANK_TRACEBACK"):
            raise
        _report(f"error: {one_line(error)}")
        return USER_ERROR_STATUS
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0 if status is None else status


def one_line(error: BaseException) -> str:
    """The error's message on one line (the lines of a multi-line message joined by "; "), or its type."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return "; ".join(lines) if lines else type(error).__name__


def _report(message: str) -> None:
    if is_main_process():
        print(message, file=sys.stderr, flush=True)
