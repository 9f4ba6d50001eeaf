"""How the command-line entry points end: ``if __name__ == "__main__": sys.exit(run_cli(main))``.

The project's convention: a user's mistake (a missing file, a bad path, a bad config key or value,
a malformed data row) is raised as one of ``USER_ERRORS`` with a message that names the problem.
``run_cli`` turns those into one line ``error: <message>`` on stderr and exit status 2, the status
argparse gives a bad command line. Any other exception is a bug and keeps its traceback; so does a
user error when the environment variable ``MLRANK_TRACEBACK`` is set to a non-empty value, for
reporting one. Ctrl-C (KeyboardInterrupt) ends with ``interrupted`` and its message, if it has one
(training's says how to resume), and exit status 130, as a shell reports a process stopped by
SIGINT. Under torchrun only rank 0 prints, so a mistake every rank makes shows once.
"""

from __future__ import annotations

import os
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


def run_cli(main: Callable[[], int | None]) -> int:
    """Call ``main()`` and return its exit status, reporting user errors and Ctrl-C as above."""
    try:
        status = main()
    except KeyboardInterrupt as interrupt:
        # On a line of its own: the terminal's "^C" or a progress bar holds the current one.
        _report("\ninterrupted" + (f": {interrupt}" if str(interrupt) else ""))
        return INTERRUPTED_STATUS
    except USER_ERRORS as error:
        if os.environ.get("MLRANK_TRACEBACK"):
            raise
        _report(f"error: {one_line(error)}")
        return USER_ERROR_STATUS
    return 0 if status is None else status


def one_line(error: BaseException) -> str:
    """The error's message on one line (the lines of a multi-line message joined by "; "), or its type."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return "; ".join(lines) if lines else type(error).__name__


def _report(message: str) -> None:
    if is_main_process():
        print(message, file=sys.stderr, flush=True)
