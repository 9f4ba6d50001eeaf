"""The benchmark scripts that run on a GPU (benchmarks/gpu_check.sh), run small on the CPU so that a
mistake in them shows before a lent GPU's minutes are spent."""

import torch

from benchmarks import gpu_training_step


def test_training_step_benchmark_labels_and_steps(tmp_path):
    """benchmarks/gpu_training_step.py (run on the GPU by gpu_check.sh): its labels are Seq-DeepFake
    sequences, and it times both steps and writes its table."""
    sequences = gpu_training_step.random_sequences(30, 5, torch.Generator().manual_seed(0))
    for row in sequences.tolist():
        edits = [c for c in row if c > 0]
        assert row[: len(edits)] == edits and len(set(edits)) == len(edits) and all(1 <= c <= 5 for c in edits)
    assert (sequences[:, 0] == 0).sum() == 10  # every third image real

    result = gpu_training_step.main(["--batch", "2", "--image-size", "32", "--rounds", "2", "--warmup", "0",
                                     "--output-dir", str(tmp_path)])
    assert result["tokens"] == 4 and set(result["step_ms"]) == {"model", "classifier"}
    assert all(ms > 0 for ms in result["step_ms"].values())
    saved = (tmp_path / "gpu_training_step_cpu.json").read_text()
    assert '"ratio_median"' in saved and "--image-size 32" in (tmp_path / "gpu_training_step_cpu.md").read_text()
