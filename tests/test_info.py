"""``python -m mlrank`` (the command list, and COMMAND dispatch) and ``python -m mlrank.info`` (the
facts of a bug report, from mlrank._C.build_info())."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import torch

import mlrank
import mlrank._C
from mlrank import info
from mlrank.__main__ import COMMANDS
from mlrank.ops import compiled_with_cuda

PACKAGE = Path(mlrank.__file__).parent


def has_main_block(path: Path) -> bool:
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.If) and "__name__" in ast.unparse(node.test) and "__main__" in ast.unparse(node.test):
            return True
    return False


def test_the_command_list_names_every_entry_point():
    entry_points = {path.stem for path in PACKAGE.glob("*.py") if has_main_block(path)} - {"__main__", "cli"}
    assert set(COMMANDS) == entry_points


def test_python_m_mlrank_lists_the_commands_and_runs_one():
    listed = subprocess.run([sys.executable, "-m", "mlrank"], capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0
    assert all(f"  {name} " in listed.stdout for name in COMMANDS)
    ran = subprocess.run([sys.executable, "-m", "mlrank", "demo", "--help"], capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0 and "usage: python -m mlrank.demo" in ran.stdout
    unknown = subprocess.run([sys.executable, "-m", "mlrank", "trian"], capture_output=True, text=True, timeout=120)
    assert unknown.returncode == 2 and "unknown command 'trian'" in unknown.stderr


def test_build_info_states_this_build():
    build = mlrank._C.build_info()
    assert build["cuda_kernels"] is compiled_with_cuda()
    assert build["torch_version"] == torch.__version__.split("+")[0]  # built against the torch we run
    # setup.py names the architectures of every CUDA build (a CMake build without TORCH_CUDA_ARCH_LIST may not)
    assert (build["cuda_architectures"] is not None) == build["cuda_kernels"]
    if build["openmp"] is not None:  # the same OpenMP runtime as torch: its thread count follows torch's
        threads = torch.get_num_threads()
        try:
            torch.set_num_threads(1)
            assert mlrank._C.build_info()["openmp_max_threads"] == 1
        finally:
            torch.set_num_threads(threads)


def test_architecture_tokens_read_back():
    assert info.cuda_architectures("80_90PTX") == ["sm_80", "sm_90+PTX"]
    assert info.cuda_architectures("90") == ["sm_90"] and info.cuda_architectures(None) == []


def test_info_warns_of_a_stale_build_and_an_uncovered_gpu():
    facts = info.collect()
    assert info.warnings_of(facts) == []  # this environment is consistent
    facts["build"] |= {"torch_version": "1.0.0", "cuda_kernels": True, "cuda_architectures": ["sm_80"]}
    facts["devices"].append({"device": "cuda:0", "name": "a GPU", "capability": "sm_90"})
    notes = info.warnings_of(facts)
    assert any("compiled against torch 1.0.0" in note for note in notes)
    assert any("cuda:0 (sm_90) is not among" in note for note in notes)


def test_info_prints_text_and_json(capsys):
    assert info.main([]) == 0
    text = capsys.readouterr().out
    assert "build:" in text and f"torch: {torch.__version__}" in text and "devices:" in text
    assert info.main(["--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["build"]["cuda_kernels"] is compiled_with_cuda() and facts["devices"][0]["device"] == "cpu"
