"""python -m mlrank.predict on real-world files: bad files, depth, orientation, aspect ratio, faces, devices, outputs.

The end-to-end run after training is in test_train.py; these use an untrained tiny checkpoint, whose
outputs still depend on every input pixel, so "the same picture scores the same" is a real check.
"""

import json
import os
import re

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from test_preprocess import bright_region_detector

from mlrank import predict
from mlrank import preprocess as pp
from mlrank.data import io
from mlrank.engine.builders import Resize, build_optimizer
from mlrank.engine.config import config_to_dict, load_config
from mlrank.engine.runs import RunFolder, capture_rng_state
from mlrank.ranking.method import build_model

SIZE = 32  # the model's input side


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return untrained_checkpoint(tmp_path_factory.mktemp("run"))


def untrained_checkpoint(folder, *overrides):
    overrides = [f"data.image_size={SIZE}", "model.token_dim=16", "model.num_heads=2", "model.out_stride=8",
                 f"output_dir={folder}", *overrides]
    cfg = load_config(overrides=overrides)
    torch.manual_seed(0)
    model = build_model(cfg)
    optimizer, scheduler = build_optimizer(cfg, model, steps_per_epoch=1)
    state = {
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "epoch": 0, "global_step": 0, "best_metric": 0.0, "rng": capture_rng_state(), "config": config_to_dict(cfg),
    }
    return str(RunFolder(folder).save_checkpoint(state, "best"))


@pytest.fixture
def bright(monkeypatch):
    monkeypatch.setitem(pp.DETECTORS, "bright", bright_region_detector)
    return "bright"


def texture(height, width, seed=0):
    """Random 8-bit RGB pixels: every pixel matters to the model's output."""
    return np.random.default_rng(seed).integers(0, 200, (height, width, 3), dtype=np.uint8)


def write_rgb(path, rgb):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]))
    return str(path)


def run(checkpoint, inputs, output, *options):
    status = predict.main([checkpoint, *map(str, inputs), "--output-dir", str(output), "--device", "cpu", *options])
    records = json.loads((output / "predictions.json").read_text())
    return status, {os.path.basename(r["image"]): r for r in records}


def scores(record):
    return {key: record[key] for key in ("fake_probability", "probabilities", "manipulations")}


# ---------------------------------------------------------------- what the scores mean


def test_a_synthetic_checkpoint_says_its_scores_mean_nothing_on_real_photographs(tmp_path, checkpoint, capsys):
    face = write_rgb(tmp_path / "in" / "face.png", texture(40, 40))
    status, records = run(checkpoint, [face], tmp_path / "out")
    assert status == 0 and records["face.png"]["checkpoint_warning"] == predict.SYNTHETIC_CHECKPOINT_WARNING
    assert capsys.readouterr().err.count("built-in synthetic faces") == 2  # before and under the scores

    real = untrained_checkpoint(tmp_path / "real", "data.kind=seqdeepfake", f"data.root={tmp_path}")
    status, records = run(real, [face], tmp_path / "out_real")
    assert status == 0 and "checkpoint_warning" not in records["face.png"]
    assert "synthetic" not in capsys.readouterr().err


# ---------------------------------------------------------------- bad files


def test_unreadable_images_are_listed_and_the_rest_scored(tmp_path, checkpoint, capsys):
    write_rgb(tmp_path / "in/good.png", texture(SIZE, SIZE))
    whole = cv2.imencode(".jpg", texture(64, 64))[1].tobytes()
    (tmp_path / "in/cut.jpg").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "in/notes.png").write_text("not an image")

    status, records = run(checkpoint, [tmp_path / "in"], tmp_path / "out")

    assert status == 1
    assert "2 of 3 image(s) not scored (2 unreadable)" in capsys.readouterr().err
    assert set(records) == {"good.png", "cut.jpg", "notes.png"}
    assert 0.0 <= records["good.png"]["fake_probability"] <= 1.0 and "error" not in records["good.png"]
    for name in ("cut.jpg", "notes.png"):
        assert records[name]["error"].startswith(f"cannot decode image {tmp_path / 'in' / name}")
        assert "fake_probability" not in records[name]
    assert sorted(os.listdir(tmp_path / "out")) == ["00001_good_heatmap.png", "predictions.json"]  # cut.jpg is 00000


# ---------------------------------------------------------------- what the model sees


def test_16_bit_float_and_rotated_files_score_as_the_8_bit_upright_picture(tmp_path, checkpoint):
    rgb = texture(SIZE, SIZE)
    write_rgb(tmp_path / "in/eight.png", rgb)
    write_rgb(tmp_path / "in/sixteen.png", rgb.astype(np.uint16) * 257)
    write_rgb(tmp_path / "in/float.tiff", rgb.astype(np.float32) / 255)
    exif = Image.Exif()
    exif[0x0112] = 8  # stored turned clockwise; the viewer turns it back counter-clockwise
    Image.fromarray(np.ascontiguousarray(np.rot90(rgb, -1))).save(tmp_path / "in/exif.png", exif=exif)

    status, records = run(checkpoint, [tmp_path / "in"], tmp_path / "out", "--no-heatmaps")

    assert status == 0
    for name in ("sixteen.png", "float.tiff", "exif.png"):
        assert scores(records[name]) == scores(records["eight.png"]), name


def test_non_square_image_is_padded_to_a_square_not_squashed(tmp_path, checkpoint):
    rgb = texture(20, 40)  # 40 wide, 20 high: centred in a 40 x 40 square, 10 black rows above and below
    padded = np.pad(rgb, ((10, 10), (0, 0), (0, 0)))
    write_rgb(tmp_path / "in/wide.png", rgb)
    write_rgb(tmp_path / "in/padded.png", padded)

    status, records = run(checkpoint, [tmp_path / "in"], tmp_path / "out")

    assert status == 0 and scores(records["wide.png"]) == scores(records["padded.png"])
    assert cv2.imread(records["wide.png"]["heatmap"]).shape == (20, 40, 3)  # drawn at the input's size
    assert cv2.imread(records["padded.png"]["heatmap"]).shape == (40, 40, 3)
    image = rgb.astype(np.float32) / 255
    expected = torch.from_numpy(padded.transpose(2, 0, 1).astype(np.float32) / 255)
    assert torch.equal(predict.model_input(image, predict.whole_image_square(*image.shape[:2]), 40), expected)


def test_square_crop_is_fed_as_the_loaders_feed_it(tmp_path):
    path = write_rgb(tmp_path / "crop.png", texture(48, 48))
    image = io.read_image(path)
    expected = Resize(SIZE)(io.read_rgb(path))
    assert torch.equal(predict.model_input(image, predict.whole_image_square(*image.shape[:2]), SIZE), expected)


def test_detect_faces_scores_preprocess_crop_and_reports_faceless_images(tmp_path, checkpoint, bright, capsys):
    rgb = texture(60, 80)
    rgb[20:36, 30:46] = 255  # the "face" the bright detector finds: 16 x 16 at (30, 20)
    write_rgb(tmp_path / "in/photo.png", rgb)
    write_rgb(tmp_path / "in/empty.png", texture(60, 80, seed=1))
    # margin 1.5: a 24-pixel square centred on (38, 28): columns 26..49, rows 16..39
    write_rgb(tmp_path / "crop/face.png", rgb[16:40, 26:50])

    status, records = run(checkpoint, [tmp_path / "in"], tmp_path / "out", "--detect-faces", "--detector", bright,
                          "--margin", "1.5")
    _, reference = run(checkpoint, [tmp_path / "crop"], tmp_path / "out_crop")

    assert status == 1
    assert "1 of 2 image(s) not scored (1 without a face)" in capsys.readouterr().err
    no_face = {"image": str(tmp_path / "in/empty.png"), "error": "no face found by the bright detector"}
    assert records["empty.png"] == no_face
    assert scores(records["photo.png"]) == scores(reference["face.png"])
    heat_map = cv2.imread(records["photo.png"]["heatmap"])[..., ::-1]
    assert heat_map.shape == (60, 80, 3)
    outside = np.ones((60, 80), dtype=bool)
    outside[16:40, 26:50] = False
    assert np.array_equal(heat_map[outside], rgb[outside])  # the model saw the square only
    assert not np.array_equal(heat_map[16:40, 26:50], rgb[16:40, 26:50])


def test_inputs_far_smaller_than_the_model_input_are_scored_with_a_warning(tmp_path, checkpoint, capsys):
    write_rgb(tmp_path / "in/tiny.png", texture(8, 6))
    write_rgb(tmp_path / "in/half.png", texture(SIZE // 2, SIZE // 2))
    status, records = run(checkpoint, [tmp_path / "in"], tmp_path / "out")
    assert status == 0
    assert records["tiny.png"]["warnings"] == [
        f"upscaled 4.0x: the image is 8 px across, far smaller than the model's {SIZE} px input"
    ]
    assert "warning: " in capsys.readouterr().err
    assert "warnings" not in records["half.png"]  # upscaled 2x: not far smaller


# ---------------------------------------------------------------- devices


def test_device_option(monkeypatch):
    assert predict.resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert predict.resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match="--device cuda: torch sees no CUDA GPU"):
        predict.resolve_device("cuda")
    for name in ("tpu", "gpu0", "cuda:x"):
        with pytest.raises(ValueError, match=f"--device '{name}' is not a device"):
            predict.resolve_device(name)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert predict.resolve_device("auto") == torch.device("cuda")
    assert predict.resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(ValueError, match="--device cuda:1: torch sees only 1 CUDA GPU"):
        predict.resolve_device("cuda:1")


def test_device_cuda_without_a_gpu_stops_before_any_work(tmp_path, checkpoint, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    write_rgb(tmp_path / "in/a.png", texture(SIZE, SIZE))
    with pytest.raises(ValueError, match="--device cuda"):
        predict.main([checkpoint, str(tmp_path / "in"), "--output-dir", str(tmp_path / "out"), "--device", "cuda"])
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- outputs


def test_outputs_never_replace_inputs_or_earlier_results(tmp_path, checkpoint):
    write_rgb(tmp_path / "in/a.png", texture(SIZE, SIZE))
    inputs = [checkpoint, str(tmp_path / "in"), "--device", "cpu"]
    with pytest.raises(ValueError, match="--output-dir .*in/out lies inside the input"):
        predict.main([*inputs, "--output-dir", str(tmp_path / "in/out")])
    (tmp_path / "file").write_text("notes")
    with pytest.raises(NotADirectoryError, match="--output-dir .*file is an existing file"):
        predict.main([*inputs, "--output-dir", str(tmp_path / "file")])

    assert predict.main([*inputs, "--output-dir", str(tmp_path / "out")]) == 0
    (tmp_path / "out/predictions.json").write_text("earlier results")
    with pytest.raises(FileExistsError, match=r"2 output\(s\) already exist .*--overwrite"):
        predict.main([*inputs, "--output-dir", str(tmp_path / "out")])
    assert (tmp_path / "out/predictions.json").read_text() == "earlier results"
    assert predict.main([*inputs, "--output-dir", str(tmp_path / "out"), "--overwrite"]) == 0
    assert json.loads((tmp_path / "out/predictions.json").read_text())[0]["image"] == str(tmp_path / "in/a.png")
    assert not [name for name in os.listdir(tmp_path / "out") if name.endswith(".tmp")]
    assert snapshot_names(tmp_path / "in") == ["a.png"]


def snapshot_names(folder):
    return sorted(os.listdir(folder))


def test_a_count_head_decides_how_many_components_predict_lists(tmp_path):
    folder = tmp_path / "run"
    cfg = load_config(overrides=[f"data.image_size={SIZE}", "model.token_dim=16", "model.num_heads=2",
                                 "model.out_stride=8", "model.count_head=true", "model.last_edit_highest=true",
                                 f"output_dir={folder}"])
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    rgb = texture(SIZE, SIZE, seed=3)
    with torch.no_grad():
        logits = model(torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255)["logits"][0]
    # A count the threshold alone would not give: 4 components, or 2 where 4 logits are positive.
    count = 4 if (logits > 0).sum() != 4 else 2
    with torch.no_grad():  # a count head that says `count` whatever the image; logits left as they are
        model.count_head.weight.zero_()
        model.count_head.bias.zero_()
        model.count_head.bias[count] = 5.0
    optimizer, scheduler = build_optimizer(cfg, model, steps_per_epoch=1)
    state = {
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "epoch": 0, "global_step": 0, "best_metric": 0.0, "rng": capture_rng_state(), "config": config_to_dict(cfg),
    }
    checkpoint = str(RunFolder(folder).save_checkpoint(state, "best"))
    _, records = run(checkpoint, [write_rgb(tmp_path / "in/face.png", rgb)], tmp_path / "out")
    listed = [m["id"] for m in records["face.png"]["manipulations"]]
    # The `count` highest logits, listed the earliest edit first (the latest edit scores highest).
    assert listed == (logits.argsort(descending=True)[:count] + 1).flip(0).tolist()


def test_evaluation_reads_the_count_heads_decision():
    from mlrank.data.synthetic import SyntheticSeqDeepFake
    from mlrank.engine.distributed import init_distributed
    from mlrank.ranking.method import predict_split

    cfg = load_config(overrides=[f"data.image_size={SIZE}", "model.token_dim=16", "model.num_heads=2",
                                 "model.out_stride=8", "model.count_head=true", "data.num_workers=0"])
    torch.manual_seed(0)
    model = build_model(cfg)
    with torch.no_grad():
        model.count_head.weight.zero_()
        model.count_head.bias.copy_(torch.tensor([0.0, 0, 0, 5, 0, 0]))  # 3 edits, whatever the image
    dataset = SyntheticSeqDeepFake("val", size=SIZE, num_images=6)
    predictions = predict_split(cfg, model, dataset, init_distributed())
    assert ((predictions["logits"] > 0).sum(dim=1) == 3).all()
    with torch.no_grad():
        fused = torch.cat([model(torch.stack([dataset[i][0] for i in range(6)]))["logits"]])
    assert torch.equal(predictions["logits"].argsort(dim=1), fused.double().argsort(dim=1))  # order kept


def test_any_name_the_file_system_takes_works_and_is_recorded_as_it_is(checkpoint, tmp_path):
    from mlrank import explain

    pytest.importorskip("matplotlib")
    folder = tmp_path / "in"
    folder.mkdir()
    rgb = texture(40, 24)
    long_name = "x" * 246 + ".png"  # 250 characters: with an output prefix it would pass the 255-byte limit
    odd_name = os.fsdecode(b"caf\xe9-\xff.png")  # latin-1 bytes: not UTF-8
    for name in (long_name, odd_name):
        ok, encoded = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))
        (folder / name).write_bytes(encoded.tobytes())
    status, records = run(checkpoint, [folder], tmp_path / "out")
    assert status == 0 and set(records) == {long_name, odd_name}
    for name, record in records.items():
        assert record["image"] == str(folder / name) and os.path.isfile(record["image"])  # the name as it is
        assert os.path.isfile(record["heatmap"]) and len(os.path.basename(record["heatmap"])) < 255
    assert explain.main([checkpoint, str(folder), "--output-dir", str(tmp_path / "explained"), "--device", "cpu"]) == 0
    page = (tmp_path / "explained" / "index.html").read_text(encoding="utf-8")
    links = re.findall(r'src="([^"]+)"', page)
    assert len(links) >= 8
    from urllib.parse import unquote

    assert all((tmp_path / "explained" / unquote(link)).is_file() for link in links)
    assert "caf\N{REPLACEMENT CHARACTER}" in page  # the odd name shown as readable text
    explained = json.loads((tmp_path / "explained" / "explain.json").read_text())
    assert {record["image"] for record in explained} == {str(folder / long_name), str(folder / odd_name)}
