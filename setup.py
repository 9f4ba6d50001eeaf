"""Builds mlrank and its extension mlrank._C.

The CPU kernels and the device-generic ATen implementation are always built. The
CUDA kernels (csrc/**/cuda/: the .cu kernels and their ATen glue) are added when
CUDA is usable (torch sees a GPU and a toolkit is found) or when FORCE_CUDA=1;
with no visible GPU set TORCH_CUDA_ARCH_LIST yourself or get a default. FORCE_CUDA=0
builds without them even on a GPU machine. MAX_JOBS limits ninja's parallel compile
jobs. Build with `pip install --no-build-isolation .` so that the installed torch is
the one compiled against.
"""

import glob
import os
import shutil
import subprocess
import sys

from setuptools import setup


def _toolkit_of_nvcc() -> str | None:
    """The CUDA toolkit that the nvcc on PATH runs from, asked of nvcc itself.

    torch guesses CUDA_HOME as the folder above nvcc, which is wrong when nvcc is a wrapper
    script (say /usr/local/bin/nvcc), and linking then fails with "cannot find -lcudart".
    """
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return None
    try:
        dry_run = subprocess.run(
            [nvcc, "--dryrun", "-x", "cu", "-c", os.devnull, "-o", os.devnull],
            capture_output=True, text=True, timeout=60,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    for line in (dry_run.stdout + dry_run.stderr).splitlines():
        if line.startswith("#$ TOP="):
            return os.path.realpath(line[len("#$ TOP="):].strip())
    return None


if not (os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")):
    toolkit = _toolkit_of_nvcc()
    if toolkit is not None:
        os.environ["CUDA_HOME"] = toolkit

# Imported after CUDA_HOME is settled: cpp_extension reads it once, at import.
try:
    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension  # noqa: E402
except ImportError:
    sys.exit(
        "mlrank's extension compiles against the torch you run, which this Python cannot import.\n"
        "Install torch first (https://pytorch.org), then build without isolation:\n"
        "    pip install --no-build-isolation .\n"
        "(pip's default isolated build would see no torch of yours.)"
    )

DEFAULT_CUDA_ARCHS = "8.0;9.0"


def _sources(pattern: str) -> list[str]:
    return sorted(glob.glob(os.path.join("csrc", "**", pattern), recursive=True))


def _is_cuda_source(path: str) -> bool:
    return path.endswith(".cu") or f"{os.sep}cuda{os.sep}" in path


def _want_cuda(cuda_sources: list[str]) -> bool:
    if not cuda_sources:
        return False
    force = os.environ.get("FORCE_CUDA", "")
    if force in ("0", "1"):
        return force == "1"
    import torch

    return torch.cuda.is_available() and CUDA_HOME is not None


def _arch_token(arch_list: str) -> str:
    """TORCH_CUDA_ARCH_LIST as one preprocessor token for build_info(): "8.0;9.0+PTX" -> 80_90PTX
    (quotes and semicolons would not survive the compiler's command line)."""
    archs = [arch.strip() for arch in arch_list.replace(",", ";").replace(" ", ";").split(";") if arch.strip()]
    return "_".join(arch.replace(".", "").replace("+", "") for arch in archs)


def _visible_arch_list() -> str:
    """The visible GPUs' architectures, as cpp_extension compiles for when TORCH_CUDA_ARCH_LIST is unset."""
    import torch

    capabilities = sorted({torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())})
    return ";".join(f"{major}.{minor}" for major, minor in capabilities)


def _extension():
    sources = _sources("*.cpp") + _sources("*.cu")
    cpp_sources = [path for path in sources if not _is_cuda_source(path)]
    cuda_sources = [path for path in sources if _is_cuda_source(path)]
    cxx_flags = ["-O3"]
    link_flags = []
    if sys.platform.startswith("linux"):
        # ATen's at::parallel_for is inline OpenMP: without -fopenmp it runs serially.
        # The soname resolves to the libgomp that torch has already loaded.
        cxx_flags.append("-fopenmp")
        link_flags.append("-fopenmp")
    if _want_cuda(cuda_sources):
        # cpp_extension crashes looking for a GPU's architecture when none is visible.
        import torch

        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", _visible_arch_list() if torch.cuda.is_available()
                              else DEFAULT_CUDA_ARCHS)
        return CUDAExtension(
            "mlrank._C",
            cpp_sources + cuda_sources,
            define_macros=[("WITH_CUDA", None),
                           ("MLRANK_CUDA_ARCHS", _arch_token(os.environ["TORCH_CUDA_ARCH_LIST"]))],
            extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3"]},
            extra_link_args=link_flags,
        )
    return CppExtension(
        "mlrank._C",
        cpp_sources,
        extra_compile_args={"cxx": cxx_flags},
        extra_link_args=link_flags,
    )


setup(
    ext_modules=[_extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
