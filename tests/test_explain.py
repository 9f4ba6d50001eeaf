"""python -m mlrank.explain: the P(x;k) curve against the op, Grad-CAM against its definition on a toy
model, the figures and page for real files (a real photograph included) with an untrained tiny
checkpoint, the page in headless Chromium, the output rules and a missing matplotlib."""

import html
import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import cv2
import numpy as np
import pytest
import torch
from test_predict import texture, write_rgb

from mlrank import explain, predict
from mlrank.cli import run_cli
from mlrank.engine.config import config_to_dict, load_config
from mlrank.engine.methods import get_method
from mlrank.engine.runs import RunFolder
from mlrank.evaluate import load_model
from mlrank.ops import contrastive_mil, testing
from mlrank.optional import MissingDependency

needs_matplotlib = pytest.mark.skipif(
    importlib.util.find_spec("matplotlib") is None, reason="matplotlib is not installed (pip install matplotlib)"
)
SIZE = 32  # the tiny model's input side: a 4 x 4 token grid, N = 16, n = 120
TINY = [f"data.image_size={SIZE}", "model.token_dim=16", "model.num_heads=2", "model.out_stride=8"]


def save_untrained(folder, *overrides):
    """A checkpoint of an untrained tiny model (explain reads only the model and its config)."""
    cfg = load_config(overrides=[*TINY, *overrides, f"output_dir={folder}"])
    torch.manual_seed(0)
    model = get_method(cfg.method).build_model(cfg)
    state = {"model": model.state_dict(), "optimizer": {}, "scheduler": {}, "epoch": 0, "global_step": 0,
             "best_metric": 0.0, "rng": {}, "config": config_to_dict(cfg)}
    return str(RunFolder(folder).save_checkpoint(state, "best"))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_untrained(tmp_path_factory.mktemp("run"))


def photograph():
    """A real photograph of a face that matplotlib ships (Grace Hopper, a public-domain portrait)."""
    from matplotlib import cbook

    return Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def explain_run(checkpoint, inputs, output, *options):
    status = explain.main([checkpoint, *map(str, inputs), "--output-dir", str(output), "--device", "cpu", *options])
    records = json.loads((output / "explain.json").read_text())
    return status, {os.path.basename(r["image"]): r for r in records}


# ---------------------------------------------------------------- the curve of Fig. A1


def test_mil_curve_by_hand():
    # unit vectors at 0, 60 and 90 degrees: u sorted = (cos 90, cos 60, cos 30) = (0, 0.5, 0.866)
    angles = torch.tensor([0.0, 60.0, 90.0], dtype=torch.float64).deg2rad()
    tokens = torch.stack([angles.cos(), angles.sin()], dim=1)
    curve = explain.mil_curve(tokens, tau=0.2)
    u = [0.0, 0.5, math.sqrt(3) / 2]
    deltas = [(u[1] + u[2]) / 2 - u[0], u[2] - (u[0] + u[1]) / 2]  # k = 1, 2
    assert torch.allclose(curve.u_sorted, torch.tensor(u, dtype=torch.float64), atol=1e-12)
    assert curve.probs.tolist() == pytest.approx([math.tanh(d / 0.4) for d in deltas], abs=1e-12)
    assert curve.k_star == 1 and curve.prob == pytest.approx(math.tanh(deltas[0] / 0.4), abs=1e-12)


@pytest.mark.parametrize("num_k", [None, 7])
@pytest.mark.parametrize("seed", range(4))
def test_mil_curve_maximum_and_argmax_are_the_ops_prob_and_k_star(seed, num_k):
    count = 20 + 8 * seed  # even: clustered_tokens(repeat=True) fails on odd counts (overlapping copy)
    tokens = torch.cat([
        testing.unit_tokens(1, count, 8, dtype=torch.float32, seed=seed),  # k* near the rectified zeros
        testing.clustered_tokens(1, count, 8, seed=seed),  # k* inside the order, as a trained encoder's
        testing.clustered_tokens(1, count, 8, seed=seed, repeat=True),  # equal values: ties in u
    ])
    prob, k_star, _ = contrastive_mil(tokens, tau=0.2, num_k=num_k)
    for image in range(3):
        curve = explain.mil_curve(tokens[image], tau=0.2, num_k=num_k)
        assert curve.k_star == int(k_star[image])
        assert curve.prob == pytest.approx(float(prob[image]), rel=1e-6)
        n = tokens.shape[1] * (tokens.shape[1] - 1) // 2
        assert len(curve.probs) == n - 1  # every k, sampled or not
        if num_k is None:
            assert int(curve.probs.argmax()) + 1 == curve.k_star
            assert float(curve.probs.max()) == pytest.approx(float(prob[image]), rel=1e-6)
        else:
            assert float(curve.probs.max()) >= curve.prob - 1e-12  # the sampled k may miss the peak


# ---------------------------------------------------------------- Grad-CAM


class ToyModel(torch.nn.Module):
    """A fixed 'FPN' (a 1x1 convolution of the image) and logits f_i = sum_c w_ic mean_hw(A_c ** 2):
    the gradient 2 w_ic A_c / (h w) varies over the positions, as in a real network."""

    def __init__(self):
        super().__init__()
        self.fpn = torch.nn.Conv2d(3, 2, kernel_size=1, bias=False)
        with torch.no_grad():
            self.fpn.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, -1.0]])[:, :, None, None])
        self.weights = torch.tensor([[1.0, -2.0], [-1.0, 0.5]])  # (L = 2, C = 2)

    def forward(self, images):
        squared_means = (self.fpn(images) ** 2).mean(dim=(2, 3))  # (B, C)
        return {"logits": squared_means @ self.weights.T}


def test_grad_cam_is_the_relu_of_the_gradient_weighted_channel_sum():
    image = torch.tensor(np.random.default_rng(0).uniform(-1, 1, (1, 3, 3, 4)), dtype=torch.float32)
    model = ToyModel()
    outputs, feature_map = explain.forward_with_feature_map(model, image, model.fpn)
    cams = explain.grad_cams(outputs["logits"], feature_map, [1, 2])

    # by hand, with numpy: A_0 = R, A_1 = G - B; d f_i / d A_c = 2 w_ic A_c / (h w); alpha_ic its mean
    rgb = image[0].numpy().astype(np.float64)
    maps = np.stack([rgb[0], rgb[1] - rgb[2]])
    positions = maps.shape[1] * maps.shape[2]
    for component in (1, 2):
        w = model.weights[component - 1].numpy()
        alpha = np.array([(2 * w[c] * maps[c] / positions).mean() for c in range(2)])
        weighted = alpha[0] * maps[0] + alpha[1] * maps[1]
        assert (weighted < 0).any() and (weighted > 0).any()  # the ReLU matters here
        np.testing.assert_allclose(cams[component].numpy(), np.maximum(weighted, 0), rtol=1e-5, atol=1e-7)


def test_the_grad_cam_layer_is_the_fpn_output_and_leaves_the_forward_unchanged(checkpoint):
    _, _, model = load_model(checkpoint)
    images = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    outputs, feature_map = explain.forward_with_feature_map(model, images, model.fpn)
    plain = model(images)  # with gradients, as the hooked pass runs
    fpn_map = model.fpn(model.backbone(model.standardize(images)))
    assert torch.equal(feature_map.detach(), fpn_map.detach()) and feature_map.shape[-2:] == plain["grid"]
    assert torch.equal(outputs["logits"].detach(), plain["logits"].detach())
    assert torch.equal(outputs["tokens"].detach(), plain["tokens"].detach())


# ---------------------------------------------------------------- the command on real files


class ImageSources(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs)["src"])


ODD_NAME = "a b#1&<x>'q\"%20.png"  # a space, '#', '&', '<', '>', quotes and a literal "%20"


@pytest.fixture(scope="module")
def explained(tmp_path_factory, checkpoint):
    tmp = tmp_path_factory.mktemp("explain")
    write_rgb(tmp / "in" / "photo.png", cv2.imread(str(photograph()))[..., ::-1])
    write_rgb(tmp / "in" / ODD_NAME, texture(40, 24))
    (tmp / "in" / "notes.png").write_text("not an image")
    status, records = explain_run(checkpoint, [tmp / "in"], tmp / "out", "--threshold", "0")
    return tmp, status, records


@needs_matplotlib
def test_figures_and_records_of_every_image(explained, checkpoint):
    tmp, status, records = explained
    assert status == 1  # notes.png is unreadable; the others are explained
    assert records["notes.png"]["error"].startswith("cannot decode image")
    names = ["nose", "eye", "eyebrow", "lip", "hair"]
    for name in ("photo.png", ODD_NAME):
        record = records[name]
        # threshold 0: every component is predicted, so every one has its Grad-CAM; the default model
        # ranks as the paper does (the first edit highest), so the most probable comes first
        assert [m["name"] for m in record["manipulations"]] == sorted(
            names, key=lambda n: -record["probabilities"][n])
        assert record["decision"] == "threshold" and record["threshold"] == 0
        assert set(record["figures"]) == {"input", "mil_curve", "similarity_histogram", "heatmap", "components",
                                          *(f"gradcam_{n}" for n in names)}
        for figure in record["figures"].values():
            assert cv2.imread(str(tmp / "out" / figure)) is not None, figure
        assert record["pairs"] == 120 and 1 <= record["k_star"] < 120
        assert record["low_group_mean"] <= record["high_group_mean"]
    # the heat map and Grad-CAMs are drawn over the image at its own size; the input is its square
    assert cv2.imread(str(tmp / "out" / records[ODD_NAME]["figures"]["gradcam_nose"])).shape == (40, 24, 3)
    assert cv2.imread(str(tmp / "out" / records[ODD_NAME]["figures"]["input"])).shape == (40, 40, 3)

    # the record is predict's for the same image: the same numbers
    assert predict.main([checkpoint, str(tmp / "in"), "--output-dir", str(tmp / "predicted"), "--device", "cpu",
                         "--threshold", "0", "--no-heatmaps"]) == 1
    predicted = {os.path.basename(r["image"]): r for r in json.loads((tmp / "predicted/predictions.json").read_text())}
    for name, record in records.items():
        assert {key: record[key] for key in predicted[name]} == predicted[name]


@needs_matplotlib
def test_page_links_every_figure_relatively_with_escaped_names(explained):
    tmp, _, records = explained
    page = (tmp / "out" / "index.html").read_text(encoding="utf-8")
    parser = ImageSources()
    parser.feed(page)
    expected = sorted(f for r in records.values() for f in r.get("figures", {}).values())
    assert sorted(unquote(source) for source in parser.sources) == expected
    assert all(not source.startswith(("/", "file:")) for source in parser.sources)
    assert html.escape(ODD_NAME) in page and ODD_NAME not in page
    assert "not explained: cannot decode image" in page
    # the checkpoint was trained on the built-in synthetic faces: the page says what that means
    assert html.escape("built-in synthetic faces: its scores mean nothing on real photographs") in page


@needs_matplotlib
@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="headless Chromium is not installed (Debian: apt-get install chromium)")
def test_every_image_on_the_page_loads_in_chromium(explained, tmp_path):
    tmp, _, records = explained
    out = tmp / "out"
    # The page as written, plus a script that records, once the page has loaded, whether each <img> loaded.
    check = out / "check.html"
    probe = """<pre id="image-check"></pre><script>
window.addEventListener("load", () => {
  document.getElementById("image-check").textContent = JSON.stringify(
    Array.from(document.images).map(i => [i.getAttribute("src"), i.complete && i.naturalWidth > 0]));
});
</script></body>"""
    check.write_text((out / "index.html").read_text(encoding="utf-8").replace("</body>", probe), encoding="utf-8")
    try:
        result = subprocess.run(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000", "--dump-dom", check.as_uri()],
            capture_output=True, text=True, timeout=120,
        )
    finally:
        check.unlink()
    found = re.search(r'<pre id="image-check">(.*?)</pre>', result.stdout, re.S)
    assert found and found.group(1), f"no result from chromium: {result.stderr[-2000:]}"
    loaded = json.loads(html.unescape(found.group(1)))
    figures = sum(len(r.get("figures", {})) for r in records.values())
    assert len(loaded) == figures == 2 * 10
    assert [source for source, ok in loaded if not ok] == []


@needs_matplotlib
def test_real_photograph_with_face_detection(tmp_path, checkpoint):
    status, records = explain_run(checkpoint, [photograph()], tmp_path / "out", "--detect-faces")
    record = records["grace_hopper.jpg"]
    assert status == 0 and "error" not in record
    face = cv2.imread(str(tmp_path / "out" / record["figures"]["input"]))
    whole = cv2.imread(str(photograph()))
    assert face.shape[0] == face.shape[1] < min(whole.shape[:2])  # the face's crop, not the whole portrait
    assert cv2.imread(str(tmp_path / "out" / record["figures"]["heatmap"])).shape == whole.shape


@needs_matplotlib
def test_binary_checkpoint_explains_its_fake_logit(tmp_path):
    checkpoint = save_untrained(tmp_path / "run", "data.kind=frames", "model.num_classes=1")
    write_rgb(tmp_path / "in" / "a.png", texture(SIZE, SIZE))
    status, records = explain_run(checkpoint, [tmp_path / "in"], tmp_path / "out", "--threshold", "0")
    assert status == 0 and "gradcam_fake" in records["a.png"]["figures"]
    status, records = explain_run(checkpoint, [tmp_path / "in"], tmp_path / "out_none", "--threshold", "1")
    assert status == 0 and not [name for name in records["a.png"]["figures"] if name.startswith("gradcam")]
    assert "no component predicted" in (tmp_path / "out_none" / "index.html").read_text()


# ---------------------------------------------------------------- errors and outputs


@needs_matplotlib
def test_outputs_never_replace_inputs_or_earlier_results(tmp_path, checkpoint):
    write_rgb(tmp_path / "in" / "a.png", texture(SIZE, SIZE))
    inputs = [checkpoint, str(tmp_path / "in"), "--device", "cpu"]
    with pytest.raises(ValueError, match="--output-dir .*in/out lies inside the input"):
        explain.main([*inputs, "--output-dir", str(tmp_path / "in" / "out")])
    assert explain.main([*inputs, "--output-dir", str(tmp_path / "out")]) == 0
    (tmp_path / "out" / "index.html").write_text("earlier page")
    with pytest.raises(FileExistsError, match=r"3 output\(s\) already exist .*--overwrite"):
        explain.main([*inputs, "--output-dir", str(tmp_path / "out")])
    assert (tmp_path / "out" / "index.html").read_text() == "earlier page"
    assert explain.main([*inputs, "--output-dir", str(tmp_path / "out"), "--overwrite"]) == 0
    assert (tmp_path / "out" / "index.html").read_text().startswith("<!DOCTYPE html>")
    assert not [p for p in (tmp_path / "out").rglob("*") if p.name.endswith(".tmp")]
    assert os.listdir(tmp_path / "in") == ["a.png"]


@needs_matplotlib
def test_seeable_checkpoint_is_refused(tmp_path):
    checkpoint = save_untrained(tmp_path / "run", "method=seeable", "model.backbone=test_resnet",
                                "seeable.grid=[2,2]", "seeable.types=[colour,blur]", "seeable.embed_dim=16")
    write_rgb(tmp_path / "in" / "a.png", texture(SIZE, SIZE))
    with pytest.raises(ValueError, match="is a seeable model; explain draws the multi-label ranking model's"):
        explain.main([checkpoint, str(tmp_path / "in"), "--output-dir", str(tmp_path / "out"), "--device", "cpu"])
    assert not (tmp_path / "out").exists()


def test_missing_matplotlib_is_a_one_line_error_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails as if not installed
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    write_rgb(tmp_path / "in" / "a.png", texture(SIZE, SIZE))
    argv = ["missing.pt", str(tmp_path / "in"), "--output-dir", str(tmp_path / "out")]
    with pytest.raises(MissingDependency, match="python -m mlrank.explain needs matplotlib.*pip install matplotlib"):
        explain.main(argv)
    assert run_cli(lambda: explain.main(argv)) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.endswith("install it with: pip install matplotlib\n")
    assert not (tmp_path / "out").exists()
