"""The paper's figures for your own images: ``python -m mlrank.explain CHECKPOINT IMAGES... --output-dir DIR``.

For each image (files, or folders of them), in ``DIR/<NNNNN>_<name>/``:

* ``input.png``: the square the model saw (the whole image padded to a square, or with
  --detect-faces the largest face's crop), at the image's own resolution;
* ``mil_curve.png``: P(x;k) = tanh(Delta(k) / 2 tau) for every k, k* marked (the paper's Fig. A1;
  docs/method.md section 3);
* ``similarity_histogram.png``: the histogram of the sorted strict upper triangle u of
  S = max(U~ U~^T, 0), split at k*: the k* smallest values, against which P(x) contrasts the rest
  (Fig. 5);
* ``heatmap.png``: predict's heat map (each patch's mean similarity to the others, low drawn hot);
* ``gradcam_<component>.png``: a Grad-CAM map per predicted component (Figs. 3-4);
* ``components.png``: every component's probability, the predicted ones numbered in their order;

plus ``explain.json`` (predict's record of each image, with k*, n and the means of the two groups of
u, and the figures' paths) and ``index.html``, a page that shows all images side by side.

Decisions:
- What the model sees is exactly what ``python -m mlrank.predict`` feeds it (same reader, square,
  face detection options, device option) and the record is predict's
  (``mlrank.ranking.method.prediction_record``): the same numbers as predict gives for the same image.
- The curve is computed from the model's normalised patch tokens U~ with the operations of the op's
  reference (``mlrank.ops.reference``), keeping every k's value; its maximum and argmax are the
  op's P(x) and k* (tested). Where the config samples k (``loss.num_k``), the curve still covers every
  k, the sampled k are dotted on it and k* is the best of them, as the model computes it.
- Grad-CAM (Selvaraju et al., ICCV 2017): for the fused logit f_i of a predicted component, the
  gradient with respect to a feature map A (C x h x w) is averaged over positions into one weight
  per channel, and the map is ReLU(sum_c weight_c A_c). A is the FPN's output (``model.fpn``), for
  three reasons: it is the last spatial convolutional map, where Grad-CAM belongs (after it come
  the tokens' 1x1 projection, a linear map of it, and the encoder, whose attention makes every
  position depend on every other, so its gradients no longer point to where the evidence lies);
  it lies on the token grid, so the map compares position by position with the similarity heat
  map; and every backbone (CNN or Swin) gives one, as an NCHW map. The gradient of f_i reaches it
  through both branches (f = (f^U + f^V) / 2). Maps are drawn scaled to their own range (hot: the
  largest value), as predict's heat map; a map that is zero everywhere (no position raises f_i) is
  drawn cold and its record says so (``grad_cam_max`` 0).
- Binary checkpoints (one component, "fake") get the same figures, the Grad-CAM of the fake logit
  when the image is predicted fake. SeeABLE checkpoints have neither the MIL score nor components:
  an error.
- Outputs: --output-dir must lie apart from the inputs; index.html, explain.json or an image's
  folder that exist already are an error unless --overwrite (predict's rule), which replaces files
  and deletes none. Every file is written atomically. An image that cannot be read or has no face
  is listed in explain.json and on the page with the reason, the others are explained, and the exit
  status is 1.
- Pictures are drawn with matplotlib, an optional dependency (``pip install matplotlib``); without
  it the command stops before it reads anything.
"""

from __future__ import annotations

import argparse
import html
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import quote

import numpy as np
import torch

from mlrank.cli import run_cli
from mlrank.data.io import output_stem, printable, to_bgr8
from mlrank.data.vocab import names_of
from mlrank.engine.builders import is_binary
from mlrank.engine.locks import command_line, command_words, output_lock
from mlrank.engine.runs import atomic_write_bytes, atomic_write_json, atomic_write_text, check_checkpoint_exists
from mlrank.evaluate import load_model
from mlrank.ops.reference import candidate_ks
from mlrank.ops.validation import compute_dtype
from mlrank.optional import require
from mlrank.plot import new_figure, png_bytes
from mlrank.predict import (
    ImageRun,
    add_view_options,
    check_outputs,
    face_detector,
    find_images,
    heat_map_png,
    model_input,
    overlay_png,
    png_of,
    resolve_device,
    training_data_warning,
)
from mlrank.data.squares import crop_square
from mlrank.ranking.decoding import branch_logits
from mlrank.ranking.method import METHOD as RANKING
from mlrank.ranking.method import THRESHOLD, prediction_record

INDEX_NAME = "index.html"
RECORDS_NAME = "explain.json"
GRAD_CAM_LAYER = "fpn"  # the model's submodule whose output Grad-CAM weighs (module docstring)
COMMAND = "python -m mlrank.explain"


# ---------------------------------------------------------------- the contrastive-MIL curve


@dataclass(frozen=True)
class MilCurve:
    """P(x;k) for every k = 1..n-1 of one image, and the k* the model's op picks."""

    u_sorted: torch.Tensor  # (n,) the strict upper triangle of S, ascending
    probs: torch.Tensor  # (n - 1,) float64: P(x;k) at k = 1..n-1
    candidates: list[int]  # the k the op maximises over (all of them unless loss.num_k samples)
    k_star: int

    @property
    def prob(self) -> float:
        """P(x) = P(x;k*)."""
        return float(self.probs[self.k_star - 1])


def mil_curve(tokens: torch.Tensor, tau: float, num_k: int | None = None) -> MilCurve:
    """The curve of one image's (N, d) patch tokens, by the reference's operations (docs/method.md
    section 3): S = max(T T^T, 0) in the tokens' compute precision, u sorted stably, prefix sums in
    float64, Delta(k) = mean_{i>k} u_i - mean_{i<=k} u_i and P(x;k) = tanh(Delta(k) / 2 tau)."""
    x = tokens[None].to(compute_dtype(tokens.dtype))
    similarity = (x @ x.transpose(-1, -2)).relu()
    rows, cols = torch.triu_indices(x.shape[1], x.shape[1], offset=1, device=x.device)
    u_sorted = torch.sort(similarity[:, rows, cols], dim=-1, stable=True).values[0]
    n = u_sorted.numel()
    prefix = torch.cumsum(u_sorted, dim=-1, dtype=torch.float64)
    ks = torch.arange(1, n, device=x.device)
    delta = (prefix[-1] - prefix[ks - 1]) / (n - ks) - prefix[ks - 1] / ks
    candidates = candidate_ks(n, num_k)
    best = int(delta[torch.tensor(candidates, device=x.device) - 1].argmax())  # first maximum: smallest k
    return MilCurve(u_sorted.cpu(), torch.tanh(delta / (2 * tau)).cpu(), candidates, candidates[best])


# ---------------------------------------------------------------- Grad-CAM


def forward_with_feature_map(model: torch.nn.Module, images: torch.Tensor, layer: torch.nn.Module
                             ) -> tuple[dict[str, Any], torch.Tensor]:
    """The model's outputs for ``images`` with gradients enabled, and ``layer``'s output as a leaf that
    gradients can be taken with respect to (nothing before the layer enters the graph)."""
    captured: list[torch.Tensor] = []

    def keep(module: torch.nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        captured.append(output.detach().requires_grad_(True))
        return captured[-1]

    handle = layer.register_forward_hook(keep)
    try:
        with torch.enable_grad():
            outputs = model(images)
    finally:
        handle.remove()
    if len(captured) != 1:
        raise RuntimeError(f"the Grad-CAM layer ran {len(captured)} times in one forward pass; expected once")
    return outputs, captured[0]


def grad_cam(feature_map: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """Grad-CAM of one (C, h, w) feature map A and the gradient of a logit with respect to it:
    ReLU(sum_c alpha_c A_c), alpha_c the gradient's mean over the positions of channel c."""
    weights = gradient.mean(dim=(1, 2))
    return torch.relu((weights[:, None, None] * feature_map).sum(dim=0))


def grad_cams(logits: torch.Tensor, feature_map: torch.Tensor, components: Sequence[int]) -> dict[int, torch.Tensor]:
    """{component id: (h, w) Grad-CAM of its logit} for one image: ``logits`` (1, L) still holding the
    graph to ``feature_map`` (1, C, h, w), from ``forward_with_feature_map``; ids count from 1."""
    cams = {}
    for component in components:
        (gradient,) = torch.autograd.grad(logits[0, component - 1], feature_map, retain_graph=True)
        cams[component] = grad_cam(feature_map[0].detach(), gradient[0]).cpu()
    return cams


# ---------------------------------------------------------------- figures


def mil_curve_png(curve: MilCurve, tau: float) -> bytes:
    """Fig. A1: P(x;k) over k, k* marked."""
    figure = new_figure(6, 4, COMMAND)
    ax = figure.subplots()
    ks = np.arange(1, len(curve.probs) + 1)
    ax.plot(ks, curve.probs.numpy(), color="tab:blue", linewidth=1.2, label="P(x;k)")
    if len(curve.candidates) < len(ks):
        sampled = np.array(curve.candidates)
        ax.plot(sampled, curve.probs.numpy()[sampled - 1], ".", color="tab:blue", label="the k the model samples")
    ax.axvline(curve.k_star, color="tab:red", linestyle="--", linewidth=1)
    ax.plot([curve.k_star], [curve.prob], "o", color="tab:red",
            label=f"k* = {curve.k_star} of n = {len(curve.u_sorted)}: P(x) = {curve.prob:.3f}")
    ax.set_xlabel("k (size of the low-similarity group)")
    ax.set_ylabel(f"P(x;k) = tanh(Delta(k) / 2 tau), tau = {tau:g}")
    ax.set_title("P(x;k) over k (Fig. A1)")
    ax.legend(fontsize=8)
    return png_bytes(figure)


def similarity_histogram_png(curve: MilCurve) -> bytes:
    """Fig. 5: the histogram of the sorted upper triangle u, its k* smallest values in another colour."""
    figure = new_figure(6, 4, COMMAND)
    ax = figure.subplots()
    u = curve.u_sorted.double().numpy()
    low, high = u[: curve.k_star], u[curve.k_star :]
    edges = np.histogram_bin_edges(u, bins=60)
    ax.hist([low, high], bins=edges, stacked=True, color=["tab:red", "tab:blue"],
            label=[f"the k* = {len(low)} smallest (mean {low.mean():.3f})",
                   f"the other {len(high)} (mean {high.mean():.3f})"])
    ax.axvline(u[curve.k_star - 1], color="black", linestyle=":", linewidth=1, label=f"u_(k*) = {u[curve.k_star - 1]:.3f}")
    ax.set_xlabel("u: pairwise similarity max(<t_a, t_b>, 0) of the patch tokens")
    ax.set_ylabel("pairs")
    ax.set_title("sorted upper triangle u, split at k* (Fig. 5)")
    ax.legend(fontsize=8)
    return png_bytes(figure)


def components_png(names: Sequence[str], probs: torch.Tensor, order: Sequence[int], threshold: float | None,
                   decision: str | None = None) -> bytes:
    """Every component's probability, the predicted ones coloured and numbered in their order; the
    threshold line where a threshold decided (a count head or the training sequences may keep a
    component below it)."""
    figure = new_figure(6, 0.5 * len(names) + 1.5, COMMAND)
    ax = figure.subplots()
    rank = {component: position for position, component in enumerate(order, start=1)}
    positions = np.arange(len(names))[::-1]
    colours = ["tab:red" if i + 1 in rank else "lightgrey" for i in range(len(names))]
    ax.barh(positions, probs.numpy(), color=colours)
    for i, (position, prob) in enumerate(zip(positions, probs.tolist())):
        label = f"#{rank[i + 1]}  {prob:.3f}" if i + 1 in rank else f"{prob:.3f}"
        ax.text(min(prob, 0.75) + 0.02, position, label, va="center", fontsize=9)
    if decision in (None, THRESHOLD):
        line = 0.5 if threshold is None else threshold
        ax.axvline(line, color="black", linestyle=":", linewidth=1, label=f"threshold {line:g}")
    else:
        ax.plot([], [], " ", label=f"decided by: {decision.replace('_', ' ')}")
    ax.set_yticks(positions, names)
    ax.set_xlim(0, 1)
    ax.set_xlabel("P_i = sigmoid(f_i)")
    predicted = " -> ".join(names[i - 1] for i in order) or "none"
    ax.set_title(f"predicted: {predicted}")
    ax.legend(fontsize=8, loc="lower right")
    return png_bytes(figure)


# ---------------------------------------------------------------- one image


def explain_image(cfg: Any, model: torch.nn.Module, image: np.ndarray, square: tuple[int, int, int],
                  threshold: float | None, folder: Path) -> dict[str, Any]:
    """Write one image's figures into ``folder``; its record (predict's, and what the figures show)."""
    batch = model_input(image, square, cfg.data.image_size)[None].to(next(model.parameters()).device)
    # predict's numbers come from its forward pass without gradients; with them enabled PyTorch takes
    # another path through the encoder, whose last bits differ, so Grad-CAM gets a pass of its own.
    with torch.no_grad():
        outputs = model(batch)
    record, similarity = prediction_record(cfg, outputs, threshold, getattr(model, "training_sequences", None))
    probs = branch_logits(outputs, cfg.model.decode_from)[0].cpu().sigmoid()  # each component's own
    if is_binary(cfg):
        components = [1] if record["fake_probability"] > (0.5 if threshold is None else threshold) else []
    else:  # predict's decision, whatever rule made it
        components = [manipulation["id"] for manipulation in record["manipulations"]]
    curve = mil_curve(outputs["tokens"][0].float().cpu(), cfg.loss.tau, cfg.loss.num_k)
    names = ["fake"] if is_binary(cfg) else list(names_of(cfg.data.subset))
    with_gradients, feature_map = forward_with_feature_map(model, batch, getattr(model, GRAD_CAM_LAYER))

    figures = {
        "input": png_of(to_bgr8(crop_square(image, square))),
        "mil_curve": mil_curve_png(curve, cfg.loss.tau),
        "similarity_histogram": similarity_histogram_png(curve),
        "heatmap": heat_map_png(image, similarity, square),
        "components": components_png(names, probs, components, threshold, record.get("decision")),
    }
    grad_cam_max = {}
    for component, cam in grad_cams(with_gradients["logits"], feature_map, components).items():
        figures[f"gradcam_{names[component - 1]}"] = overlay_png(image, cam, square)
        grad_cam_max[names[component - 1]] = float(cam.max())
    for name, picture in figures.items():
        atomic_write_bytes(folder / f"{name}.png", picture)
    u = curve.u_sorted.double()
    return {
        **record,
        "k_star": curve.k_star,
        "pairs": len(u),
        "low_group_mean": float(u[: curve.k_star].mean()),
        "high_group_mean": float(u[curve.k_star :].mean()),
        "grad_cam_layer": GRAD_CAM_LAYER,
        "grad_cam_max": grad_cam_max,
        "figures": {name: f"{folder.name}/{name}.png" for name in figures},
    }


# ---------------------------------------------------------------- the page

ROWS = [
    ("input", "what the model saw"),
    ("components", "components, in the predicted order"),
    ("heatmap", "patch similarity (low: hot)"),
    ("mil_curve", "P(x;k) over k (Fig. A1)"),
    ("similarity_histogram", "u split at k* (Fig. 5)"),
    ("gradcam_", "Grad-CAM per predicted component (Figs. 3-4)"),
]


def _img(relative: str, alt: str, caption: str = "", css_class: str = "") -> str:
    source = html.escape(quote(relative), quote=True)
    figcaption = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    attribute = f' class="{css_class}"' if css_class else ""
    return f'<figure{attribute}><img src="{source}" alt="{html.escape(alt, quote=True)}">{figcaption}</figure>'


def _cell(record: dict[str, Any], prefix: str, title: str) -> str:
    """The page's cell of one image and one row (figures whose name starts with ``prefix``)."""
    if "error" in record:
        return f'<p class="error">not explained: {html.escape(record["error"])}</p>' if prefix == "input" else ""
    figures = [(name, path) for name, path in record["figures"].items() if name.startswith(prefix)]
    if prefix != "gradcam_":
        parts = [_img(path, title) for _, path in figures]
    elif not figures:
        parts = ["<p>no component predicted</p>"]
    else:
        parts = []
        for name, path in figures:
            component = name[len(prefix):]
            zero = " (zero everywhere)" if record["grad_cam_max"][component] == 0 else ""
            parts.append(_img(path, f"Grad-CAM of {component}", component + zero, "small"))
    if prefix == "input":
        summary = f"fake probability {record['fake_probability']:.3f}; k* = {record['k_star']} of {record['pairs']}"
        parts.append(f"<p>{html.escape(summary)}</p>")
        parts += [f'<p class="warning">{html.escape(warning)}</p>' for warning in record.get("warnings", [])]
    return "".join(parts)


def decision_text(threshold: float | None) -> str:
    """How the page's components were decided."""
    if threshold is None:
        return "components decided by the model's own rule (each record's \"decision\")"
    return f"components decided by P_i &gt; {threshold:g}"


def index_html(records: Sequence[dict[str, Any]], checkpoint: str, threshold: float | None,
               checkpoint_warning: str | None = None) -> str:
    """The page: one column per image, one row per kind of figure; names escaped, links relative."""
    head = "".join(f"<th>{html.escape(Path(r['image']).name)}</th>" for r in records)
    body = "".join(
        f"<tr><th>{html.escape(title)}</th>" + "".join(f"<td>{_cell(r, prefix, title)}</td>" for r in records) + "</tr>"
        for prefix, title in ROWS
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>mlrank explain: {html.escape(checkpoint)}</title>
<style>
body {{ font-family: sans-serif; margin: 1em; }}
table {{ border-collapse: collapse; }}
th, td {{ border: 1px solid #ccc; padding: 6px; vertical-align: top; }}
tbody th {{ text-align: left; width: 10em; }}
img {{ display: block; width: 320px; height: auto; }}
figure {{ margin: 0 0 8px 0; }}
figure.small {{ display: inline-block; margin-right: 8px; }}
figure.small img {{ width: 156px; }}
figcaption {{ font-size: small; }}
.error {{ color: #b00; }}
.warning {{ color: #a60; }}
</style>
</head>
<body>
<h1>mlrank explain</h1>
<p>checkpoint {html.escape(checkpoint)}; {decision_text(threshold)}; Grad-CAM of the fused logit at the
output of <code>model.{GRAD_CAM_LAYER}</code>. Per-image numbers: {RECORDS_NAME}.</p>
{f'<p class="warning"><strong>Warning:</strong> {html.escape(checkpoint_warning)}.</p>' if checkpoint_warning else ""}
<table>
<thead><tr><th></th>{head}</tr></thead>
<tbody>
{body}
</tbody>
</table>
</body>
</html>
"""


# ---------------------------------------------------------------- command


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: 0 when every image was explained, 1 when some could not be."""
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", help="a best.pt or last.pt of the multi-label ranking model")
    parser.add_argument("images", nargs="+", help="image files or folders of them")
    parser.add_argument("--output-dir", default="explanations", help="index.html, explain.json and a folder per image")
    parser.add_argument("--threshold", type=float, default=None,
                        help="decide each component by P_i > THRESHOLD (default: the model's own rule: P_i > 0.5, "
                             "or its count head, or the training sequences)")
    add_view_options(parser)
    parser.add_argument("--overwrite", action="store_true", help="replace the files of an earlier run")
    args = parser.parse_args(argv)

    require("matplotlib.figure", "matplotlib", COMMAND)  # before any work
    check_checkpoint_exists(args.checkpoint)
    device = resolve_device(args.device)
    detect = face_detector(args)
    paths = find_images(args.images)
    output_dir = Path(args.output_dir)
    with output_lock(output_dir, command_line(command_words("mlrank.explain", argv))):
        return explain_images(args, paths, output_dir, device, detect)


def explain_images(args: argparse.Namespace, paths: list[Path], output_dir: Path, device: torch.device,
                   detect: Any) -> int:
    """explain's work on the images found, with its output folder locked."""
    folders = [output_dir / output_stem(index, path) for index, path in enumerate(paths)]
    check_outputs(output_dir, args.images, [output_dir / INDEX_NAME, output_dir / RECORDS_NAME, *folders],
                  args.overwrite)
    cfg, method, model = load_model(args.checkpoint, device=device)
    if method is not RANKING:  # the figures are the multi-label ranking model's
        raise ValueError(
            f"checkpoint {args.checkpoint} is a {cfg.method} model; explain draws the multi-label ranking "
            f"model's figures (method {RANKING.name}), which it has not"
        )

    checkpoint_warning = training_data_warning(cfg)
    if checkpoint_warning:
        print(f"warning: {checkpoint_warning}", file=sys.stderr, flush=True)
    run = ImageRun()
    for index, path, image, square, record in run.views(paths, detect, args, cfg.data.image_size):
        record.update(explain_image(cfg, model, image, square, args.threshold, folders[index]))
        if checkpoint_warning:
            record["checkpoint_warning"] = checkpoint_warning
        order = " -> ".join(m["name"] for m in record.get("manipulations", [])) or "none"
        found = f"; manipulated: {order}" if "manipulations" in record else ""
        print(printable(f"{path.name}: fake {record['fake_probability']:.3f}, k* = {record['k_star']}{found}"), flush=True)
    atomic_write_json(output_dir / RECORDS_NAME, run.records)
    atomic_write_text(output_dir / INDEX_NAME, printable(index_html(run.records, args.checkpoint, args.threshold,
                                                                              checkpoint_warning)))
    return run.finish(f"explained: open {output_dir / INDEX_NAME}", "not explained", output_dir / RECORDS_NAME)

if __name__ == "__main__":
    sys.exit(run_cli(main))
