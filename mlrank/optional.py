"""Optional dependencies (matplotlib for pictures, tensorboard for training logs), imported on demand.

``require`` imports a module or raises ``MissingDependency`` naming what needed it and the pip
command that installs it. That error is an ImportError, as Python code expects of a missing
optional dependency, and a ValueError too, the project's user-error type (mlrank/cli.py), so a
command that needs the package ends with one line ``error: ... pip install X`` and exit status 2
rather than a traceback: a missing package is the user's setup, not a bug.
"""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingDependency(ModuleNotFoundError, ValueError):
    """An optional dependency is not installed (or cannot be imported)."""


def require(module: str, package: str, needed_for: str) -> ModuleType:
    """``module`` imported, or MissingDependency naming ``needed_for`` and ``pip install package``."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingDependency(
            f"{needed_for} needs {package}, an optional dependency that cannot be imported here ({error}); "
            f"install it with: pip install {package}",
            name=package,
        ) from error
