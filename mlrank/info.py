"""What a bug report needs: ``python -m mlrank.info [--json]``.

Versions (Python, torch and the CUDA it was built with, timm, numpy, OpenCV, mlrank and its git
commit), this build of ``mlrank._C`` (``mlrank._C.build_info()``: the torch it was compiled
against, the compiler, OpenMP, the CUDA kernels and their architectures), the threads torch uses,
the devices torch sees with the implementation ``impl="auto"`` takes on each, and the ``MLRANK_*``
settings in the environment. Paste its output into an issue.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from typing import Any

import torch

import mlrank._C
from mlrank.cli import run_cli
from mlrank.engine.runs import collect_versions, cpu_name, git_commit
from mlrank.ops.contrastive_mil import AUTO_TAKES_CUDA_KERNELS, select_implementation


def installed_version(module_name: str) -> str | None:
    try:
        module = __import__(module_name)
    except ImportError:
        return None
    return getattr(module, "__version__", "unknown")


def cuda_architectures(token: str | None) -> list[str]:
    """build_info's architecture token as sm names: "80_90PTX" -> ["sm_80", "sm_90+PTX"]."""
    if not token:
        return []
    names = []
    for arch in token.split("_"):
        ptx = arch.upper().endswith("PTX")
        digits = arch[:-3] if ptx else arch
        names.append(f"sm_{digits}" + ("+PTX" if ptx else ""))
    return names


def devices() -> list[dict[str, Any]]:
    """Every device torch sees, with what ``impl="auto"`` runs there."""
    found = [{"device": "cpu", "name": cpu_name(), "cores": os.cpu_count(),
              "auto_implementation": select_implementation(torch.device("cpu"))}]
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            major, minor = torch.cuda.get_device_capability(index)
            found.append({"device": f"cuda:{index}", "name": torch.cuda.get_device_name(index),
                          "capability": f"sm_{major}{minor}",
                          "memory_gib": round(torch.cuda.get_device_properties(index).total_memory / 2**30, 1),
                          "auto_implementation": select_implementation(torch.device("cuda", index))})
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        found.append({"device": "mps", "name": "Apple MPS", "auto_implementation": "aten"})
    return found


def collect() -> dict[str, Any]:
    build = dict(mlrank._C.build_info())
    build["cuda_architectures"] = cuda_architectures(build.get("cuda_architectures"))
    return {
        "versions": collect_versions() | {"opencv": installed_version("cv2"), "platform": platform.platform()},
        "git": git_commit(),
        "build": build,
        "runtime": {
            "torch_threads": torch.get_num_threads(),
            "torch_openmp": torch.backends.openmp.is_available(),
            "torch_mkl": torch.backends.mkl.is_available(),
            "cuda_available": torch.cuda.is_available(),
            "auto_takes_cuda_kernels": AUTO_TAKES_CUDA_KERNELS,
        },
        "devices": devices(),
        "environment": {key: value for key, value in sorted(os.environ.items())
                        if key.startswith("MLRANK_") or key in ("OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES")},
    }


def warnings_of(info: dict[str, Any]) -> list[str]:
    """Mismatches worth a line of their own."""
    notes = []
    built, running = info["build"]["torch_version"], info["versions"]["torch"].split("+")[0]
    if built != running:
        notes.append(f"mlrank._C was compiled against torch {built} but torch {running} is running: rebuild mlrank "
                     "(pip install --no-build-isolation -e .)")
    architectures = set(info["build"]["cuda_architectures"])
    for device in info["devices"]:
        capability = device.get("capability")
        if capability and info["build"]["cuda_kernels"] and architectures and not any(
                arch.split("+")[0] == capability for arch in architectures):
            notes.append(f"{device['device']} ({capability}) is not among the architectures the CUDA kernels were "
                         f"compiled for ({', '.join(sorted(architectures))})")
    return notes


def as_text(info: dict[str, Any]) -> str:
    lines = []
    for section in ("versions", "git", "build", "runtime", "environment"):
        values = info[section]
        lines.append(f"{section}:")
        if not values:
            lines.append("  (none)")
            continue
        for key, value in values.items():
            shown = ", ".join(value) if isinstance(value, list) else value
            lines.append(f"  {key}: {shown if shown not in ('', []) else '-'}")
    lines.append("devices:")
    for device in info["devices"]:
        extra = ", ".join(f"{key} {value}" for key, value in device.items() if key not in ("device", "name"))
        lines.append(f"  {device['device']}: {device['name']} ({extra})")
    for note in warnings_of(info):
        lines.append(f"warning: {note}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlrank.info", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print the facts as JSON")
    args = parser.parse_args(argv)
    info = collect()
    print(json.dumps(info, indent=2) if args.json else as_text(info))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
