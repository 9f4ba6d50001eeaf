"""The package's layout may change; the numbers it computes may not (the methods moved into
subpackages at commit 7e9a311). The first steps of the default run and of SeeABLE give the losses and checkpoints that
the code before the move gave, and a checkpoint written before it still loads and evaluates the same.

Recorded with commit 7e9a311 (the last one before the move), through the real entry points
(``python -m mlrank.train``, ``python -m mlrank.evaluate``), except the default run's losses: a later
commit put the backbone in channels_last memory format, which changes the order of float32 sums (the first
step's losses moved by up to 1.8e-7 relative), so they were recorded again after that change (the
run's own overrides fix its data and schedule, so the new default schedule does not enter; the
checkpoint keys and SeeABLE's losses are still 7e9a311's). To regenerate the literals after a change
that is meant to move the numbers, run this file from the repository root: ``python -m
tests.test_recorded_run`` prints them for the code checked out (copied into a checkout of 7e9a311, it
prints these, without the ``model.count_head=false`` and ``model.max_stride=null`` overrides, keys
that commit lacks; the count head and the shorter backbone, later the synthetic default, are
switched off so that the runs stay the recorded ones).
A checkpoint holds one key 7e9a311's lacks, ``protocol_best`` (the validation values of
``best_fixed.pt`` and ``best_adaptive.pt``), and the default model's state one line,
``training_sequences``: the distinct sequences of the training split (58 of the 96 images'), stored
with the weights since, for decoding among them (``model.seen_sequences_only``).
``data/old_layout_tiny_last.pt`` is the ``last.pt`` that 7e9a311 wrote for ``TINY_RUN`` (a tiny timm
test backbone, so the file stays near 1 MB; the default's resnet10t makes 60 MB).

Where exactly: losses are compared bit for bit on the machine and settings that recorded them
(``RECORDED_ON``). Elsewhere float32 sums run in another order (the vector width of the instruction
set, the number of threads), so they are compared with a tolerance: on the recording machine, with
``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2`` the first step's losses moved by 1.4e-7 relative
and the third step's by 1.9e-5 (the optimiser carries the first differences on); one thread instead
of two moved them by at most 1.7e-7.
"""

import json
from pathlib import Path

import pytest
import torch

from mlrank import evaluate, train
from mlrank.engine.config import load_config  # mlrank.config at 7e9a311 (edit this line to run there)

SMALL_RUN = [
    "data.synthetic_train_size=96",
    "data.synthetic_val_size=32",
    "data.synthetic_test_size=32",
    "data.num_workers=0",
    "optim.epochs=3",
    "train.max_steps_per_epoch=1",  # one step per epoch: metrics.jsonl logs each step's losses
    "model.count_head=false",  # the default since, which 7e9a311 lacks (drop this line to run there)
    "model.max_stride=null",  # likewise
]
DEFAULT_RUN = SMALL_RUN
SEEABLE_RUN = ["--config", "seeable_synthetic", *SMALL_RUN, "data.batch_size=8",
               "data.synthetic_val_size=16", "data.synthetic_test_size=16"]
TINY_RUN = [*SMALL_RUN, "model.backbone=test_efficientnet", "model.token_dim=8", "model.num_heads=1"]
OLD_CHECKPOINT = Path(__file__).parent / "data" / "old_layout_tiny_last.pt"

RECORDED_ON = {"torch": "2.15.0+cu132", "cpu_capability": "AVX512", "threads": 2, "cpu": "AMD EPYC"}
FIRST_STEP_RTOL = 1e-6
LATER_STEPS_RTOL = 1e-4

CHECKPOINT_KEYS = ["best_metric", "config", "epoch", "global_step", "model", "optimizer", "rng", "scheduler"]

DEFAULT_LOSSES = [  # one optimiser step per epoch; recorded again with the channels_last backbone
    {
        "loss_cls": 0.6566097140312195,
        "loss_bce": 6.713273048400879,
        "loss_bce_patch": 3.324363946914673,
        "loss_bce_class": 3.3889098167419434,
        "loss_rank": 5.171239852905273,
        "loss_order": 1.8949286937713623,
        "loss_total": 14.436051368713379,
    },
    {
        "loss_cls": 0.5289583206176758,
        "loss_bce": 7.406908988952637,
        "loss_bce_patch": 3.9077095985412598,
        "loss_bce_class": 3.499199151992798,
        "loss_rank": 5.897186756134033,
        "loss_order": 2.9658825397491455,
        "loss_total": 16.79893684387207,
    },
    {
        "loss_cls": 0.6863436698913574,
        "loss_bce": 6.323188781738281,
        "loss_bce_patch": 2.9963862895965576,
        "loss_bce_class": 3.3268022537231445,
        "loss_rank": 4.59307336807251,
        "loss_order": 2.2605268955230713,
        "loss_total": 13.86313247680664,
    },
]
DEFAULT_MODEL_KEYS = """
backbone.body.bn1.bias 64
backbone.body.bn1.num_batches_tracked scalar
backbone.body.bn1.running_mean 64
backbone.body.bn1.running_var 64
backbone.body.bn1.weight 64
backbone.body.conv1.0.weight 24x3x3x3
backbone.body.conv1.1.bias 24
backbone.body.conv1.1.num_batches_tracked scalar
backbone.body.conv1.1.running_mean 24
backbone.body.conv1.1.running_var 24
backbone.body.conv1.1.weight 24
backbone.body.conv1.3.weight 32x24x3x3
backbone.body.conv1.4.bias 32
backbone.body.conv1.4.num_batches_tracked scalar
backbone.body.conv1.4.running_mean 32
backbone.body.conv1.4.running_var 32
backbone.body.conv1.4.weight 32
backbone.body.conv1.6.weight 64x32x3x3
backbone.body.layer1.0.bn1.bias 64
backbone.body.layer1.0.bn1.num_batches_tracked scalar
backbone.body.layer1.0.bn1.running_mean 64
backbone.body.layer1.0.bn1.running_var 64
backbone.body.layer1.0.bn1.weight 64
backbone.body.layer1.0.bn2.bias 64
backbone.body.layer1.0.bn2.num_batches_tracked scalar
backbone.body.layer1.0.bn2.running_mean 64
backbone.body.layer1.0.bn2.running_var 64
backbone.body.layer1.0.bn2.weight 64
backbone.body.layer1.0.conv1.weight 64x64x3x3
backbone.body.layer1.0.conv2.weight 64x64x3x3
backbone.body.layer2.0.bn1.bias 128
backbone.body.layer2.0.bn1.num_batches_tracked scalar
backbone.body.layer2.0.bn1.running_mean 128
backbone.body.layer2.0.bn1.running_var 128
backbone.body.layer2.0.bn1.weight 128
backbone.body.layer2.0.bn2.bias 128
backbone.body.layer2.0.bn2.num_batches_tracked scalar
backbone.body.layer2.0.bn2.running_mean 128
backbone.body.layer2.0.bn2.running_var 128
backbone.body.layer2.0.bn2.weight 128
backbone.body.layer2.0.conv1.weight 128x64x3x3
backbone.body.layer2.0.conv2.weight 128x128x3x3
backbone.body.layer2.0.downsample.1.weight 128x64x1x1
backbone.body.layer2.0.downsample.2.bias 128
backbone.body.layer2.0.downsample.2.num_batches_tracked scalar
backbone.body.layer2.0.downsample.2.running_mean 128
backbone.body.layer2.0.downsample.2.running_var 128
backbone.body.layer2.0.downsample.2.weight 128
backbone.body.layer3.0.bn1.bias 256
backbone.body.layer3.0.bn1.num_batches_tracked scalar
backbone.body.layer3.0.bn1.running_mean 256
backbone.body.layer3.0.bn1.running_var 256
backbone.body.layer3.0.bn1.weight 256
backbone.body.layer3.0.bn2.bias 256
backbone.body.layer3.0.bn2.num_batches_tracked scalar
backbone.body.layer3.0.bn2.running_mean 256
backbone.body.layer3.0.bn2.running_var 256
backbone.body.layer3.0.bn2.weight 256
backbone.body.layer3.0.conv1.weight 256x128x3x3
backbone.body.layer3.0.conv2.weight 256x256x3x3
backbone.body.layer3.0.downsample.1.weight 256x128x1x1
backbone.body.layer3.0.downsample.2.bias 256
backbone.body.layer3.0.downsample.2.num_batches_tracked scalar
backbone.body.layer3.0.downsample.2.running_mean 256
backbone.body.layer3.0.downsample.2.running_var 256
backbone.body.layer3.0.downsample.2.weight 256
backbone.body.layer4.0.bn1.bias 512
backbone.body.layer4.0.bn1.num_batches_tracked scalar
backbone.body.layer4.0.bn1.running_mean 512
backbone.body.layer4.0.bn1.running_var 512
backbone.body.layer4.0.bn1.weight 512
backbone.body.layer4.0.bn2.bias 512
backbone.body.layer4.0.bn2.num_batches_tracked scalar
backbone.body.layer4.0.bn2.running_mean 512
backbone.body.layer4.0.bn2.running_var 512
backbone.body.layer4.0.bn2.weight 512
backbone.body.layer4.0.conv1.weight 512x256x3x3
backbone.body.layer4.0.conv2.weight 512x512x3x3
backbone.body.layer4.0.downsample.1.weight 512x256x1x1
backbone.body.layer4.0.downsample.2.bias 512
backbone.body.layer4.0.downsample.2.num_batches_tracked scalar
backbone.body.layer4.0.downsample.2.running_mean 512
backbone.body.layer4.0.downsample.2.running_var 512
backbone.body.layer4.0.downsample.2.weight 512
class_bias 5
class_norm.bias 64
class_norm.weight 64
class_tokens 1x5x64
class_weight 5x64
encoder.linear1.bias 256
encoder.linear1.weight 256x64
encoder.linear2.bias 64
encoder.linear2.weight 64x256
encoder.norm1.bias 64
encoder.norm1.weight 64
encoder.norm2.bias 64
encoder.norm2.weight 64
encoder.self_attn.in_proj_bias 192
encoder.self_attn.in_proj_weight 192x64
encoder.self_attn.out_proj.bias 64
encoder.self_attn.out_proj.weight 64x64
fpn.laterals.0.bias 64
fpn.laterals.0.weight 64x128x1x1
fpn.laterals.1.bias 64
fpn.laterals.1.weight 64x256x1x1
fpn.laterals.2.bias 64
fpn.laterals.2.weight 64x512x1x1
fpn.smooth.bias 64
fpn.smooth.weight 64x64x3x3
patch_head.0.bias 5
patch_head.0.weight 5x64x1x1
pos_embed 1x64x8x8
token_projection.bias 64
token_projection.weight 64x64x1x1
training_sequences 58x5
"""

SEEABLE_LOSSES = [  # one optimiser step per epoch
    {
        "loss_supcon": 1.7883849143981934,
        "loss_prototype_ce": 3.146380662918091,
        "loss_bcr": 4.934765815734863,
        "loss_guidance": 0.6261250972747803,
        "loss_total": 5.560891151428223,
    },
    {
        "loss_supcon": 1.4869847297668457,
        "loss_prototype_ce": 4.267587184906006,
        "loss_bcr": 5.754571914672852,
        "loss_guidance": 1.1017794609069824,
        "loss_total": 6.856351375579834,
    },
    {
        "loss_supcon": 1.280778408050537,
        "loss_prototype_ce": 3.570038080215454,
        "loss_bcr": 4.85081672668457,
        "loss_guidance": 1.0555734634399414,
        "loss_total": 5.906390190124512,
    },
]
SEEABLE_MODEL_KEYS = """
encoder.bn1.bias 64
encoder.bn1.num_batches_tracked scalar
encoder.bn1.running_mean 64
encoder.bn1.running_var 64
encoder.bn1.weight 64
encoder.conv1.weight 64x3x7x7
encoder.layer1.0.bn1.bias 64
encoder.layer1.0.bn1.num_batches_tracked scalar
encoder.layer1.0.bn1.running_mean 64
encoder.layer1.0.bn1.running_var 64
encoder.layer1.0.bn1.weight 64
encoder.layer1.0.bn2.bias 64
encoder.layer1.0.bn2.num_batches_tracked scalar
encoder.layer1.0.bn2.running_mean 64
encoder.layer1.0.bn2.running_var 64
encoder.layer1.0.bn2.weight 64
encoder.layer1.0.conv1.weight 64x64x3x3
encoder.layer1.0.conv2.weight 64x64x3x3
encoder.layer1.1.bn1.bias 64
encoder.layer1.1.bn1.num_batches_tracked scalar
encoder.layer1.1.bn1.running_mean 64
encoder.layer1.1.bn1.running_var 64
encoder.layer1.1.bn1.weight 64
encoder.layer1.1.bn2.bias 64
encoder.layer1.1.bn2.num_batches_tracked scalar
encoder.layer1.1.bn2.running_mean 64
encoder.layer1.1.bn2.running_var 64
encoder.layer1.1.bn2.weight 64
encoder.layer1.1.conv1.weight 64x64x3x3
encoder.layer1.1.conv2.weight 64x64x3x3
encoder.layer2.0.bn1.bias 128
encoder.layer2.0.bn1.num_batches_tracked scalar
encoder.layer2.0.bn1.running_mean 128
encoder.layer2.0.bn1.running_var 128
encoder.layer2.0.bn1.weight 128
encoder.layer2.0.bn2.bias 128
encoder.layer2.0.bn2.num_batches_tracked scalar
encoder.layer2.0.bn2.running_mean 128
encoder.layer2.0.bn2.running_var 128
encoder.layer2.0.bn2.weight 128
encoder.layer2.0.conv1.weight 128x64x3x3
encoder.layer2.0.conv2.weight 128x128x3x3
encoder.layer2.0.downsample.0.weight 128x64x1x1
encoder.layer2.0.downsample.1.bias 128
encoder.layer2.0.downsample.1.num_batches_tracked scalar
encoder.layer2.0.downsample.1.running_mean 128
encoder.layer2.0.downsample.1.running_var 128
encoder.layer2.0.downsample.1.weight 128
encoder.layer2.1.bn1.bias 128
encoder.layer2.1.bn1.num_batches_tracked scalar
encoder.layer2.1.bn1.running_mean 128
encoder.layer2.1.bn1.running_var 128
encoder.layer2.1.bn1.weight 128
encoder.layer2.1.bn2.bias 128
encoder.layer2.1.bn2.num_batches_tracked scalar
encoder.layer2.1.bn2.running_mean 128
encoder.layer2.1.bn2.running_var 128
encoder.layer2.1.bn2.weight 128
encoder.layer2.1.conv1.weight 128x128x3x3
encoder.layer2.1.conv2.weight 128x128x3x3
encoder.layer3.0.bn1.bias 256
encoder.layer3.0.bn1.num_batches_tracked scalar
encoder.layer3.0.bn1.running_mean 256
encoder.layer3.0.bn1.running_var 256
encoder.layer3.0.bn1.weight 256
encoder.layer3.0.bn2.bias 256
encoder.layer3.0.bn2.num_batches_tracked scalar
encoder.layer3.0.bn2.running_mean 256
encoder.layer3.0.bn2.running_var 256
encoder.layer3.0.bn2.weight 256
encoder.layer3.0.conv1.weight 256x128x3x3
encoder.layer3.0.conv2.weight 256x256x3x3
encoder.layer3.0.downsample.0.weight 256x128x1x1
encoder.layer3.0.downsample.1.bias 256
encoder.layer3.0.downsample.1.num_batches_tracked scalar
encoder.layer3.0.downsample.1.running_mean 256
encoder.layer3.0.downsample.1.running_var 256
encoder.layer3.0.downsample.1.weight 256
encoder.layer3.1.bn1.bias 256
encoder.layer3.1.bn1.num_batches_tracked scalar
encoder.layer3.1.bn1.running_mean 256
encoder.layer3.1.bn1.running_var 256
encoder.layer3.1.bn1.weight 256
encoder.layer3.1.bn2.bias 256
encoder.layer3.1.bn2.num_batches_tracked scalar
encoder.layer3.1.bn2.running_mean 256
encoder.layer3.1.bn2.running_var 256
encoder.layer3.1.bn2.weight 256
encoder.layer3.1.conv1.weight 256x256x3x3
encoder.layer3.1.conv2.weight 256x256x3x3
encoder.layer4.0.bn1.bias 512
encoder.layer4.0.bn1.num_batches_tracked scalar
encoder.layer4.0.bn1.running_mean 512
encoder.layer4.0.bn1.running_var 512
encoder.layer4.0.bn1.weight 512
encoder.layer4.0.bn2.bias 512
encoder.layer4.0.bn2.num_batches_tracked scalar
encoder.layer4.0.bn2.running_mean 512
encoder.layer4.0.bn2.running_var 512
encoder.layer4.0.bn2.weight 512
encoder.layer4.0.conv1.weight 512x256x3x3
encoder.layer4.0.conv2.weight 512x512x3x3
encoder.layer4.0.downsample.0.weight 512x256x1x1
encoder.layer4.0.downsample.1.bias 512
encoder.layer4.0.downsample.1.num_batches_tracked scalar
encoder.layer4.0.downsample.1.running_mean 512
encoder.layer4.0.downsample.1.running_var 512
encoder.layer4.0.downsample.1.weight 512
encoder.layer4.1.bn1.bias 512
encoder.layer4.1.bn1.num_batches_tracked scalar
encoder.layer4.1.bn1.running_mean 512
encoder.layer4.1.bn1.running_var 512
encoder.layer4.1.bn1.weight 512
encoder.layer4.1.bn2.bias 512
encoder.layer4.1.bn2.num_batches_tracked scalar
encoder.layer4.1.bn2.running_mean 512
encoder.layer4.1.bn2.running_var 512
encoder.layer4.1.bn2.weight 512
encoder.layer4.1.conv1.weight 512x512x3x3
encoder.layer4.1.conv2.weight 512x512x3x3
projector.0.bias 512
projector.0.weight 512x512
projector.2.bias 128
projector.2.weight 128x512
prototypes 16x128
"""

# `python -m mlrank.evaluate data/old_layout_tiny_last.pt --split val` at 7e9a311 ("checkpoint" left out).
OLD_CHECKPOINT_VAL_METRICS = {
    "split": "val",
    "fixed_acc": 0.26875,
    "adaptive_acc": 0.10687022900763359,
    "multilabel_acc": 0.49375,
    "ordered_pairs": 0.31683168316831684,
    "kendall_tau": 0.10793650793650793,
    "order_r2": [-1.6000000000000005, -0.31443298969072164, -0.2640449438202246, -1.4013452914798208,
                 -9.979381443298971],
    "fake_auc": 0.40384615384615385,
    "fake_eer": 0.5384615384615384,
    "fake_ap": 0.7647493182855765,
    "fake_acc": 0.8125,
}


def cpu_model() -> str | None:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return None
    return next((line.partition(":")[2].strip() for line in lines if line.startswith("model name")), None)


def this_machine() -> dict:
    return {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "threads": torch.get_num_threads(), "cpu": cpu_model()}


def train_briefly(arguments: list[str], run: Path) -> tuple[list[dict], dict]:
    """Each epoch's logged losses and the last checkpoint of ``python -m mlrank.train ARGUMENTS``."""
    assert train.main([*arguments, f"output_dir={run}"]) == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [{key: value for key, value in record.items() if key.startswith("loss_")} for record in records]
    # weights_only: the checkpoint holds tensors and plain containers, no pickled module path
    return losses, torch.load(run / "last.pt", map_location="cpu", weights_only=True)


def key_shapes(state_dict: dict) -> str:
    lines = (f"{key} {'x'.join(map(str, value.shape)) or 'scalar'}" for key, value in sorted(state_dict.items()))
    return "\n" + "\n".join(lines) + "\n"


def assert_losses_as_recorded(losses: list[dict], recorded: list[dict]) -> None:
    assert [sorted(step) for step in losses] == [sorted(step) for step in recorded]
    if this_machine() == RECORDED_ON:
        assert losses == recorded  # bit for bit
        return
    for step, (logged, expected) in enumerate(zip(losses, recorded)):
        assert logged == pytest.approx(expected, rel=FIRST_STEP_RTOL if step == 0 else LATER_STEPS_RTOL)


@pytest.mark.parametrize(
    "arguments, losses, model_keys",
    [(DEFAULT_RUN, DEFAULT_LOSSES, DEFAULT_MODEL_KEYS), (SEEABLE_RUN, SEEABLE_LOSSES, SEEABLE_MODEL_KEYS)],
    ids=["default", "seeable"],
)
def test_first_steps_give_the_recorded_losses_and_checkpoint(tmp_path, arguments, losses, model_keys):
    logged, state = train_briefly(arguments, tmp_path / "run")
    assert_losses_as_recorded(logged, losses)
    assert sorted(set(state) - {"protocol_best"}) == CHECKPOINT_KEYS  # protocol_best: Seq-DeepFake's bests, since
    assert key_shapes(state["model"]) == model_keys


def test_a_checkpoint_of_the_old_layout_loads_and_evaluates_as_before(tmp_path):
    state = torch.load(OLD_CHECKPOINT, map_location="cpu", weights_only=True)
    cfg, _, model = evaluate.load_model(OLD_CHECKPOINT)
    # the run it says it is (the synthetic config, which spelled out the defaults of then)
    assert cfg == load_config("synthetic", [*TINY_RUN, f"output_dir={cfg.output_dir}"])
    loaded = model.state_dict()
    assert loaded.pop("training_sequences").shape == (0, 5)  # stored since; the old file holds none
    assert loaded.keys() == state["model"].keys()
    assert all(torch.equal(loaded[key], value) for key, value in state["model"].items())

    output = tmp_path / "val.json"
    assert evaluate.main([str(OLD_CHECKPOINT), "--split", "val", "--output", str(output)]) == 0
    metrics = json.loads(output.read_text())
    del metrics["checkpoint"]
    if this_machine() == RECORDED_ON:
        assert metrics == OLD_CHECKPOINT_VAL_METRICS
    else:  # approx takes flat containers of numbers
        expected = dict(OLD_CHECKPOINT_VAL_METRICS)
        assert metrics.pop("split") == expected.pop("split")
        assert metrics.pop("order_r2") == pytest.approx(expected.pop("order_r2"), rel=FIRST_STEP_RTOL)
        assert metrics == pytest.approx(expected, rel=FIRST_STEP_RTOL)


def print_literals(folder: Path) -> None:
    """The literals above, for the code checked out."""
    for name, arguments in (("DEFAULT", DEFAULT_RUN), ("SEEABLE", SEEABLE_RUN)):
        losses, state = train_briefly(arguments, folder / name.lower())
        print(f"{name}_LOSSES = {losses!r}")
        print(f"assert sorted(checkpoint) == {sorted(state)!r}")
        print(f'{name}_MODEL_KEYS = """{key_shapes(state["model"])}"""')
    print(f"RECORDED_ON = {this_machine()!r}")


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        print_literals(Path(folder))
