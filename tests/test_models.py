"""Backbones, the one-map FPN and the multi-label ranking model, on small CPU configurations."""

import math
import re
import socket

import pytest
import timm
import torch
import torch.nn.functional as F

from mlrank.models import FPN, create_backbone
from mlrank.ops import contrastive_mil
from mlrank.ranking import MultiLabelRankingModel

SWIN = "swin_tiny_patch4_window7_224"
# A Swin-T with one block per stage, narrow and with 4x4 windows: the same code paths at 64x64.
TINY_SWIN = dict(depths=(1, 1, 1, 1), embed_dim=24, num_heads=(1, 1, 2, 2), window_size=4)
IMAGE_SIZE = 64
BACKBONES = {
    "resnet18": dict(backbone="resnet18"),
    "swin": dict(backbone=SWIN, img_size=IMAGE_SIZE, backbone_kwargs=TINY_SWIN),
}


def small_model(kind="resnet18", num_classes=5, out_stride=16, **kwargs):
    torch.manual_seed(0)
    arguments = dict(BACKBONES[kind], num_classes=num_classes, out_stride=out_stride, **kwargs)
    return MultiLabelRankingModel(token_dim=32, num_heads=4, **arguments)


def images(batch=2, size=IMAGE_SIZE, seed=0):
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test: weights must never be downloaded."""

    def refuse(*args, **kwargs):
        raise AssertionError("a network connection was attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def distinct_state_dict(model, seed=1):
    """The model's state dict with every float tensor shifted by a random positive amount, so that
    no tensor can coincide with a fresh initialisation (running variances stay positive)."""
    generator = torch.Generator().manual_seed(seed)
    return {
        key: value + torch.rand(value.shape, generator=generator) + 0.1
        if value.is_floating_point() else value + 7
        for key, value in model.state_dict().items()
    }


# --- shapes and the token contract -------------------------------------------------------------


@pytest.mark.parametrize("kind", list(BACKBONES))
@pytest.mark.parametrize("out_stride", [8, 16, 32])
def test_output_shapes_and_unit_tokens(kind, out_stride):
    model = small_model(kind, out_stride=out_stride)
    out = model(images())
    side = IMAGE_SIZE // out_stride
    assert out["grid"] == (side, side)
    assert out["tokens"].shape == (2, side * side, 32)
    for key in ("logits_patch", "logits_class", "logits"):
        assert out[key].shape == (2, 5)
    torch.testing.assert_close(out["tokens"].norm(dim=-1), torch.ones(2, side * side))


@pytest.mark.parametrize("kind", list(BACKBONES))
def test_backbone_levels_are_nchw_from_out_stride_to_coarsest(kind):
    kwargs = dict(img_size=IMAGE_SIZE, **TINY_SWIN) if kind == "swin" else {}
    name = BACKBONES[kind]["backbone"]
    backbone, channels, reductions = create_backbone(name, out_stride=8, **kwargs)
    assert reductions == [8, 16, 32]
    levels = backbone(images())
    assert [tuple(level.shape) for level in levels] == [
        (2, c, IMAGE_SIZE // r, IMAGE_SIZE // r) for c, r in zip(channels, reductions)
    ]


def test_swin_levels_are_its_nhwc_maps_permuted():
    backbone, _, _ = create_backbone(SWIN, out_stride=16, img_size=IMAGE_SIZE, **TINY_SWIN)
    backbone.eval()  # timm's Swin has stochastic depth by default
    x = images()
    raw = backbone.body(x)  # timm's Swin feature maps are (B, H, W, C)
    for level, index in zip(backbone(x), backbone.level_indices):
        torch.testing.assert_close(level, raw[index].permute(0, 3, 1, 2), rtol=0, atol=0)


def test_swin_with_dynamic_img_size_takes_other_sizes():
    model = small_model("swin", backbone_kwargs=dict(TINY_SWIN, dynamic_img_size=True))
    assert model.pos_embed.shape[-2:] == (4, 4)  # stored for img_size = 64
    out = model(images(size=96))
    assert out["grid"] == (6, 6) and out["tokens"].shape == (2, 36, 32)


def test_binary_mode_has_one_logit_per_branch():
    model = small_model(num_classes=1)
    out = model(images())
    assert out["logits"].shape == out["logits_patch"].shape == out["logits_class"].shape == (2, 1)


def test_positional_embedding_resampled_to_other_grids():
    model = small_model(img_size=IMAGE_SIZE)
    assert model.pos_embed.shape[-2:] == (4, 4)
    with torch.no_grad():
        model.pos_embed.normal_()
    out = model(images(size=96))
    assert out["grid"] == (6, 6) and out["tokens"].shape == (2, 36, 32)


# --- the branches and their fusion -------------------------------------------------------------


def capture_encoder_output(model):
    """Fills a dict with the encoder's input ("sequence") and output ("encoded") at each forward."""
    captured = {}
    model.encoder.register_forward_hook(
        lambda module, args, out: captured.update(sequence=args[0], encoded=out)
    )
    return captured


def test_fused_logits_are_the_mean_of_branches_recomputed_independently():
    model = small_model().eval()
    captured = capture_encoder_output(model)
    with torch.no_grad():
        model.class_bias.normal_()
        model.patch_head[0].bias.normal_()
        out = model(images())
        num_tokens = out["tokens"].shape[1]
        # Patch branch: one logit per component and patch from the encoder's patch outputs
        # (before normalisation), averaged over the patches.
        weight = model.patch_head[0].weight.flatten(1)  # (L, d)
        per_patch = captured["encoded"][:, :num_tokens] @ weight.T + model.patch_head[0].bias
        patch = per_patch.mean(dim=1)
        # Class branch: each class token through its own linear, one class at a time.
        class_tokens = model.class_norm(captured["encoded"][:, num_tokens:])
        per_class = [
            class_tokens[:, i] @ model.class_weight[i] + model.class_bias[i] for i in range(5)
        ]
        branch_class = torch.stack(per_class, dim=1)
    torch.testing.assert_close(out["logits_patch"], patch)
    torch.testing.assert_close(out["logits_class"], branch_class)
    torch.testing.assert_close(out["logits"], (patch + branch_class) / 2)
    assert not torch.allclose(patch, branch_class)


def test_tokens_are_the_normalised_encoder_outputs():
    model = small_model().eval()
    captured = capture_encoder_output(model)
    with torch.no_grad():
        out = model(images())
    num_tokens = out["tokens"].shape[1]
    encoded = captured["encoded"]
    assert encoded.shape == (2, num_tokens + 5, 32)  # N patch tokens, then L class tokens
    torch.testing.assert_close(out["tokens"], F.normalize(encoded[:, :num_tokens], dim=-1))


@pytest.mark.parametrize("normalize", [True, False])
def test_encoder_input_is_the_projected_fpn_tokens_normalised_or_not(normalize):
    # Created for the 64 x 64 grid, so that the positional embedding is added without resampling.
    model = small_model(normalize_patch_tokens=normalize, img_size=IMAGE_SIZE).eval()
    captured = capture_encoder_output(model)
    with torch.no_grad():
        model.pos_embed.normal_()
        model(images())
        feature_map = model.token_projection(model.fpn(model.backbone(model.standardize(images()))))
    # Independently: the (d, h, w) map read position by position, row-major.
    batch, dim, height, width = feature_map.shape
    rows = torch.stack(
        [feature_map[:, :, y, x] for y in range(height) for x in range(width)], dim=1
    )
    positions = torch.stack(
        [model.pos_embed[0, :, y, x] for y in range(height) for x in range(width)]
    )
    expected = rows / rows.norm(dim=-1, keepdim=True) if normalize else rows
    patch_inputs = captured["sequence"][:, : height * width]
    torch.testing.assert_close(patch_inputs, expected + positions)
    class_inputs = captured["sequence"][:, height * width :]
    torch.testing.assert_close(class_inputs, model.class_tokens.expand(batch, -1, -1))
    if not normalize:  # the CNN's norms reach the encoder, and they are not all 1
        assert (rows.norm(dim=-1) - 1).abs().max() > 0.1


@pytest.mark.parametrize("normalize", [True, False])
def test_build_model_takes_the_model_section_of_the_config(normalize):
    from mlrank.ranking.method import build_model
    from mlrank.engine.config import load_config

    overrides = ["model.backbone=resnet18", "model.token_dim=32", "model.num_heads=4",
                 "model.dropout=0.1", f"model.normalize_patch_tokens={str(normalize).lower()}"]
    model = build_model(load_config(overrides=overrides))
    assert model.normalize_patch_tokens is normalize
    assert model.class_tokens.shape == (1, 5, 32) and model.encoder.self_attn.num_heads == 4
    assert model.encoder.dropout.p == 0.1


def backbone_input(model, batch):
    captured = {}
    handle = model.backbone.register_forward_hook(lambda module, args, out: captured.update(images=args[0]))
    model(batch)
    handle.remove()
    return captured["images"]


@pytest.mark.parametrize("kind", list(BACKBONES))
def test_images_are_standardised_with_the_backbones_own_statistics(kind):
    model = small_model(kind).eval()
    batch = images().sigmoid()  # [0, 1] pixels, as the data sets give them
    # The statistics timm resolves for this architecture, read independently of the model.
    data_config = timm.data.resolve_model_data_config(timm.create_model(model.backbone.body.pretrained_cfg["architecture"]))
    mean = torch.tensor(data_config["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(data_config["std"]).view(1, 3, 1, 1)
    torch.testing.assert_close(backbone_input(model, batch), (batch - mean) / std)
    plain = small_model(kind, standardize_input=False).eval()
    assert torch.equal(backbone_input(plain, batch), batch)
    # The statistics follow from the backbone's name: no new keys in the state dict.
    assert plain.state_dict().keys() == model.state_dict().keys()


def test_standardize_input_is_on_by_default_and_follows_the_config():
    from mlrank.ranking.method import build_model
    from mlrank.engine.config import load_config

    small = ["model.backbone=resnet18", "model.token_dim=32", "model.num_heads=4"]
    assert not isinstance(build_model(load_config(overrides=small)).standardize, torch.nn.Identity)
    off = build_model(load_config(overrides=small + ["model.standardize_input=false"]))
    assert isinstance(off.standardize, torch.nn.Identity)


def test_checkpoints_from_before_standardisation_and_the_order_options_load_as_trained(tmp_path):
    # A checkpoint whose config has no model.standardize_input was trained on [0, 1] pixels.
    from mlrank.ranking.method import build_model
    from mlrank.engine.config import config_to_dict, load_config
    from mlrank.evaluate import load_model
    from mlrank.engine.builders import build_optimizer
    from mlrank.engine.runs import atomic_torch_save, capture_rng_state

    cfg = load_config(overrides=["model.backbone=resnet18", "model.token_dim=32", "model.num_heads=4"])
    model = build_model(cfg)
    optimizer, scheduler = build_optimizer(cfg, model, steps_per_epoch=1)
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "epoch": 0, "global_step": 1, "best_metric": 0.5, "rng": capture_rng_state()}
    for name, drop_key in (("old", True), ("new", False)):
        config = config_to_dict(cfg)
        if drop_key:
            del config["model"]["standardize_input"], config["model"]["last_edit_highest"], config["loss"]["lambda_order"]
        atomic_torch_save({**state, "config": config}, tmp_path / f"{name}.pt")
    old_cfg, _, old = load_model(tmp_path / "old.pt")
    new_cfg, _, new = load_model(tmp_path / "new.pt")
    assert isinstance(old.standardize, torch.nn.Identity)
    assert not isinstance(new.standardize, torch.nn.Identity)
    # ... and decode as the paper does, whatever the defaults are now.
    assert not old_cfg.model.last_edit_highest and old_cfg.loss.lambda_order == 0
    assert (new_cfg.model.last_edit_highest, new_cfg.loss.lambda_order) == (cfg.model.last_edit_highest, cfg.loss.lambda_order)


# --- gradients ---------------------------------------------------------------------------------


def grad_norm(parameter):
    return 0.0 if parameter.grad is None else parameter.grad.norm().item()


@pytest.mark.parametrize("kind", list(BACKBONES))
def test_gradients_reach_backbone_class_tokens_and_heads(kind):
    model = small_model(kind)
    out = model(images())
    prob, _, _ = contrastive_mil(out["tokens"])
    target = torch.tensor([[1.0, 0, 1, 0, 0], [0, 0, 0, 0, 0]])
    loss = F.binary_cross_entropy_with_logits(out["logits"], target) - prob.log().mean()
    loss.backward()
    first_backbone_weight = next(model.backbone.parameters())
    reached = (
        first_backbone_weight, model.fpn.smooth.weight, model.pos_embed, model.class_tokens,
        model.class_weight, model.patch_head[0].weight, model.patch_head[0].bias,
    )
    for parameter in reached:
        assert grad_norm(parameter) > 0 and torch.isfinite(parameter.grad).all()


def test_contrastive_mil_alone_backpropagates_into_the_backbone():
    model = small_model(out_stride=8)
    out = model(images())
    prob, k_star, u_mean = contrastive_mil(out["tokens"], tau=0.2)
    assert prob.shape == k_star.shape == u_mean.shape == (2,)
    assert ((prob >= 0) & (prob <= 1)).all() and ((u_mean >= 0) & (u_mean <= 1)).all()
    (prob.sum() + u_mean.sum()).backward()
    conv1 = model.backbone.body.conv1.weight
    assert grad_norm(conv1) > 0 and torch.isfinite(conv1.grad).all()
    assert model.class_weight.grad is None or grad_norm(model.class_weight) == 0


# --- pretrained weights from a local file ------------------------------------------------------


def test_resnet_weights_load_from_a_local_file(tmp_path, no_network):
    saved = distinct_state_dict(timm.create_model("resnet18"))
    path = tmp_path / "resnet18.pth"
    torch.save(saved, path)
    model = small_model(pretrained_file=str(path))
    fresh = small_model()
    loaded = model.backbone.body.state_dict()
    random_init = fresh.backbone.body.state_dict()
    assert len(loaded) == len(saved) - 2  # all but the classifier, fc.weight and fc.bias
    for key, value in loaded.items():
        assert torch.equal(value, saved[key]), key
        assert not torch.equal(random_init[key], saved[key]), key


def test_swin_weights_load_from_a_local_file(tmp_path, no_network):
    saved = distinct_state_dict(timm.create_model(SWIN, img_size=IMAGE_SIZE, **TINY_SWIN))
    path = tmp_path / "swin.pth"
    torch.save(saved, path)
    backbone, _, _ = create_backbone(SWIN, str(path), 16, img_size=IMAGE_SIZE, **TINY_SWIN)
    loaded = backbone.body.state_dict()
    assert len(loaded) == len(saved) - 4  # no classifier (head.fc) and no final norm in features
    for key, value in loaded.items():
        # features_only flattens the stage sequence: layers.0 -> layers_0
        assert torch.equal(value, saved[re.sub(r"^layers_(\d+)", r"layers.\1", key)]), key


def test_missing_weight_file(tmp_path):
    missing = tmp_path / "nowhere" / "resnet18.pth"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        create_backbone("resnet18", pretrained_file=missing)


def test_weights_of_another_layout_are_refused(tmp_path):
    state = timm.create_model("resnet18").state_dict()
    prefixed = tmp_path / "prefixed.pth"
    torch.save({f"encoder.{key}": value for key, value in state.items()}, prefixed)
    with pytest.raises(ValueError, match=r"does not hold the weights of 'resnet18'.*conv1\.weight"):
        create_backbone("resnet18", pretrained_file=prefixed)
    other_architecture = tmp_path / "resnet18.pth"
    torch.save(state, other_architecture)
    with pytest.raises(ValueError, match=r"resnet18\.pth.*'resnet34'.*layer1\.2"):
        create_backbone("resnet34", pretrained_file=other_architecture)
    with pytest.raises(ValueError, match=r"cannot load .*resnet18\.pth.* as weights of 'resnet50'"):
        create_backbone("resnet50", pretrained_file=other_architecture)


# --- bad arguments -----------------------------------------------------------------------------


@pytest.mark.parametrize("name, suggestion", [("resnt50", "resnet50"), ("swin_tiny", SWIN)])
def test_unknown_backbone_suggests_close_names(name, suggestion):
    expected = rf"unknown backbone '{name}'.*did you mean.*\b{suggestion}\b"
    with pytest.raises(ValueError, match=expected):
        create_backbone(name)


def test_out_stride_must_be_a_feature_stride():
    with pytest.raises(ValueError, match=r"out_stride=64 .*strides \[2, 4, 8, 16, 32\]"):
        create_backbone("resnet18", out_stride=64)


def test_max_stride_must_be_a_feature_stride_at_least_out_stride():
    with pytest.raises(ValueError, match=r"max_stride=64 .*strides \[2, 4, 8, 16, 32\]"):
        create_backbone("resnet18", out_stride=8, max_stride=64)
    with pytest.raises(ValueError, match=r"max_stride=4 is finer than out_stride=8"):
        create_backbone("resnet18", out_stride=8, max_stride=4)


def test_max_stride_leaves_the_coarser_stages_unbuilt_and_the_rest_unchanged():
    torch.manual_seed(0)
    full, _, _ = create_backbone("resnet18", out_stride=8)
    after_full = torch.rand(1)
    torch.manual_seed(0)
    cut, channels, reductions = create_backbone("resnet18", out_stride=8, max_stride=16)
    assert torch.equal(torch.rand(1), after_full)  # the probe of the strides drew nothing
    assert reductions == [8, 16] and channels == [128, 256]
    assert not hasattr(cut.body, "layer4") and hasattr(full.body, "layer4")
    full_state = full.body.state_dict()
    assert set(cut.body.state_dict()) == {key for key in full_state if not key.startswith("layer4.")}
    for key, value in cut.body.state_dict().items():  # the same seed starts the kept stages alike
        assert torch.equal(value, full_state[key]), key
    full.eval(), cut.eval()
    x = images()
    with torch.no_grad():
        for kept, reference in zip(cut(x), full(x)[:2]):
            torch.testing.assert_close(kept, reference, rtol=0, atol=0)


def test_max_stride_keeps_the_weights_of_a_local_file(tmp_path, no_network):
    saved = distinct_state_dict(timm.create_model("resnet18"))
    path = tmp_path / "resnet18.pth"
    torch.save(saved, path)
    backbone, _, reductions = create_backbone("resnet18", str(path), out_stride=16, max_stride=16)
    assert reductions == [16]
    loaded = backbone.body.state_dict()
    assert len(loaded) == len([key for key in saved if key.startswith(("conv1", "bn1", "layer1", "layer2", "layer3"))])
    for key, value in loaded.items():
        assert torch.equal(value, saved[key]), key


def test_model_with_max_stride_merges_only_the_kept_levels():
    from mlrank.engine.config import load_config
    from mlrank.ranking.method import build_model

    model = small_model(out_stride=8, max_stride=16)
    assert len(model.fpn.laterals) == 2
    out = model(images())
    assert out["grid"] == (8, 8) and out["logits"].shape == (2, 5)
    built = build_model(load_config(overrides=["model.backbone=resnet18", "model.max_stride=16"]))
    assert len(built.fpn.laterals) == 2 and not hasattr(built.backbone.body, "layer4")
    assert load_config("synthetic", []).model.max_stride == 16  # the synthetic default
    real = load_config("seqdeepfake_components_r50", ["model.pretrained_file=null"]).model
    assert real.max_stride is None  # the real-data configs merge every stride, as before


def test_bad_images_and_model_arguments():
    model = small_model()
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\).*\(2, 1, 64, 64\)"):
        model(torch.zeros(2, 1, 64, 64))
    with pytest.raises(TypeError, match="floating-point"):
        model(torch.zeros(2, 3, 64, 64, dtype=torch.uint8))
    swin = small_model("swin")
    with pytest.raises(ValueError, match=r"built for 64x64 images, got 96x96"):
        swin(images(size=96))
    with pytest.raises(ValueError, match=r"token_dim \(30\) must be divisible by num_heads \(4\)"):
        MultiLabelRankingModel("resnet18", token_dim=30, num_heads=4)


# --- FPN ---------------------------------------------------------------------------------------


def identity_fpn(in_channels, reductions, out_stride):
    """An FPN whose laterals copy channel 0 and whose smoothing is the identity."""
    fpn = FPN(in_channels, reductions, out_channels=1, out_stride=out_stride)
    with torch.no_grad():
        for lateral in fpn.laterals:
            lateral.weight.zero_()
            lateral.weight[0, 0] = 1.0
            lateral.bias.zero_()
        fpn.smooth.weight.zero_()
        fpn.smooth.weight[0, 0, 1, 1] = 1.0
        fpn.smooth.bias.zero_()
    return fpn


def test_fpn_merges_coarser_levels_top_down_and_ignores_finer_ones():
    fpn = identity_fpn([2, 3, 4], [4, 8, 16], out_stride=8)
    stride4, stride8 = torch.randn(1, 2, 8, 8), torch.randn(1, 3, 4, 4)
    stride16 = torch.randn(1, 4, 2, 2)
    out = fpn([stride4, stride8, stride16])
    # Nearest upsampling by 2 repeats each coarse value over a 2x2 block.
    upsampled = stride16[:, :1].repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    torch.testing.assert_close(out, stride8[:, :1] + upsampled)
    torch.testing.assert_close(fpn([torch.randn(1, 2, 8, 8), stride8, stride16]), out)


def test_fpn_three_levels_and_odd_sizes():
    fpn = identity_fpn([1, 1, 1], [8, 16, 32], out_stride=8)
    fine, middle, coarse = torch.randn(1, 1, 5, 5), torch.randn(1, 1, 3, 3), torch.ones(1, 1, 2, 2)
    out = fpn([fine, middle, coarse])
    assert out.shape == (1, 1, 5, 5)
    # Nearest resizing 3 -> 5 takes source index floor(i * 3 / 5) = 0, 0, 1, 1, 2 (and so on).
    rows = [math.floor(i * 3 / 5) for i in range(5)]
    expected = fine + (middle + 1)[:, :, rows][:, :, :, rows]
    torch.testing.assert_close(out, expected)


def test_fpn_bad_arguments():
    with pytest.raises(ValueError, match="strictly increasing"):
        FPN([8, 8], [16, 8], 4, 8)
    with pytest.raises(ValueError, match=r"out_stride=4 is not one of the reductions \[8, 16\]"):
        FPN([8, 8], [8, 16], 4, 4)
    with pytest.raises(ValueError, match="same length"):
        FPN([8], [8, 16], 4, 8)
    with pytest.raises(ValueError, match="expected 2 feature maps, got 1"):
        FPN([8, 8], [8, 16], 4, 8)([torch.zeros(1, 8, 4, 4)])


def test_fpn_and_token_projection_start_as_torchvision_fpn():
    # kaiming_uniform_(a=1) draws from U(-b, b) with b = sqrt(3 / fan_in): std 1 / sqrt(fan_in).
    model = MultiLabelRankingModel("resnet18", token_dim=128, num_heads=4, out_stride=8)
    convs = [*model.fpn.laterals, model.fpn.smooth, model.token_projection]
    for conv in convs:
        fan_in = conv.weight[0].numel()
        assert conv.weight.abs().max() <= math.sqrt(3 / fan_in)
        assert conv.weight.std().item() == pytest.approx(1 / math.sqrt(fan_in), rel=0.05)
        assert (conv.bias == 0).all()


# --- optimiser groups --------------------------------------------------------------------------


def test_parameter_groups_scale_the_backbone_lr_and_spare_tokens_from_decay():
    model = small_model()
    groups = model.parameter_groups(1e-3, backbone_lr_scale=0.1, weight_decay=0.05)
    by_name = {group["name"]: group for group in groups}
    assert set(by_name) == {"backbone", "backbone_no_decay", "head", "head_no_decay"}
    grouped = [id(p) for group in groups for p in group["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters())  # each exactly once
    backbone_ids = {id(p) for p in model.backbone.parameters()}
    for group in groups:
        in_backbone = group["name"].startswith("backbone")
        assert all((id(p) in backbone_ids) == in_backbone for p in group["params"])
        assert group["lr"] == pytest.approx(1e-4 if in_backbone else 1e-3)
        assert group["weight_decay"] == (0.0 if group["name"].endswith("no_decay") else 0.05)
    no_decay = {id(p) for p in by_name["head_no_decay"]["params"]}
    assert {id(model.class_tokens), id(model.pos_embed), id(model.class_bias)} <= no_decay
    assert id(model.class_weight) in {id(p) for p in by_name["head"]["params"]}

    optimizer = torch.optim.AdamW(groups)
    out = model(images())
    out["logits"].sum().backward()
    before = model.class_weight.detach().clone()
    optimizer.step()
    assert not torch.equal(before, model.class_weight)


def test_order_head_is_a_second_linear_on_the_class_tokens():
    plain = small_model().eval()
    with torch.no_grad():
        assert "order_scores" not in plain(images())
    model = small_model(order_head=True).eval()
    captured = capture_encoder_output(model)
    with torch.no_grad():
        model.order_bias.normal_()
        out = model(images())
        class_tokens = model.class_norm(captured["encoded"][:, -5:])
        expected = torch.stack([class_tokens[:, i] @ model.order_weight[i] + model.order_bias[i] for i in range(5)], 1)
    torch.testing.assert_close(out["order_scores"], expected)
    # The rest of the model is initialised as without the head (its parameters are drawn last).
    with torch.no_grad():
        torch.testing.assert_close(out["logits"], plain(images())["logits"])
    with pytest.raises(ValueError, match="order_head needs num_classes >= 2"):
        small_model(num_classes=1, order_head=True)


def test_order_head_follows_the_config_and_needs_the_order_term():
    from mlrank.engine.config import load_config
    from mlrank.ranking.method import build_model

    assert build_model(load_config(None, ["model.order_head=true", "loss.lambda_order=1"])).order_head
    assert not build_model(load_config(None, ["model.order_head=false"])).order_head
    with pytest.raises(ValueError, match="'loss.lambda_order' is 0"):
        load_config(None, ["model.order_head=true", "loss.lambda_order=0"])


def box_residual(image):
    """x minus the mean of its 3x3 neighbourhood, edges replicated, by explicit loops."""
    padded = F.pad(image, (1, 1, 1, 1), mode="replicate")
    height, width = image.shape[-2:]
    neighbours = sum(padded[..., dy : dy + height, dx : dx + width] for dy in range(3) for dx in range(3))
    return image - neighbours / 9


def test_highpass_input_adds_the_residual_from_the_local_mean_as_three_channels():
    model = small_model(highpass_input=True).eval()
    assert model.backbone.body.conv1.weight.shape[1] == 6
    batch = images().sigmoid()
    seen = backbone_input(model, batch)
    standardised = backbone_input(small_model().eval(), batch)
    torch.testing.assert_close(seen[:, :3], standardised)
    # Evaluation mode, fresh BatchNorm (running mean 0, variance 1): the residual itself.
    torch.testing.assert_close(seen[:, 3:], box_residual(standardised) / math.sqrt(1 + 1e-5))
    # A hand case: inside a +-1 checkerboard a pixel's 3x3 mean is c / 9, so the residual is 8c / 9.
    board = (torch.arange(8)[:, None] + torch.arange(8)[None, :]) % 2 * 2.0 - 1
    residual = box_residual(board.expand(1, 3, 8, 8))
    torch.testing.assert_close(residual[..., 1:-1, 1:-1], board[1:-1, 1:-1].expand(1, 3, 6, 6) * 8 / 9)
    # Trained, the BatchNorm gives the residual unit scale whatever the images' contrast.
    model.train()
    faint = backbone_input(model, 0.5 + 0.01 * images(batch=8))[:, 3:]
    torch.testing.assert_close(faint.std(dim=(0, 2, 3), correction=0), torch.ones(3), atol=1e-2, rtol=0)


def test_highpass_input_follows_the_config():
    from mlrank.engine.config import load_config
    from mlrank.ranking.method import build_model

    assert isinstance(build_model(load_config(None, [])).highpass, torch.nn.Identity)
    model = build_model(load_config(None, ["model.highpass_input=true"]))
    assert model.backbone.body.conv1[0].weight.shape[1] == 6


def test_count_head_is_a_linear_on_the_mean_of_the_encoded_patch_tokens():
    model = small_model(count_head=True).eval()
    captured = capture_encoder_output(model)
    with torch.no_grad():
        out = model(images())
        patches = captured["encoded"][:, :-5]
        expected = patches.mean(dim=1) @ model.count_head.weight.T + model.count_head.bias
    assert out["count_logits"].shape == (2, 6)
    torch.testing.assert_close(out["count_logits"], expected)
    with pytest.raises(ValueError, match="count_head needs num_classes >= 2"):
        small_model(num_classes=1, count_head=True)


def test_count_head_follows_the_config_and_needs_the_count_term():
    from mlrank.engine.config import load_config
    from mlrank.ranking.method import build_model

    assert build_model(load_config("synthetic", [])).count_head is not None  # the synthetic default has one
    assert build_model(load_config(None, [])).count_head is None  # the paper has none
    assert build_model(load_config(None, ["model.count_head=false"])).count_head is None
    assert build_model(load_config("seqdeepfake_components_r50", [])).count_head is None  # the paper's model
    with pytest.raises(ValueError, match="'loss.lambda_count' is 0"):
        load_config(None, ["model.count_head=true", "loss.lambda_count=0"])


def test_the_swin_configs_build_for_seqdeepfakes_256_pixel_images_from_224_pixel_weights(tmp_path):
    from mlrank.engine.config import load_config
    from mlrank.ranking.method import build_model

    # ImageNet weights of a window-7 Swin at 224 load into the same Swin built for 256 x 256 (timm
    # resizes the relative-position tables), as the seqdeepfake_*_swin configs need; a tiny Swin
    # stands in for the configs' Swin-B to keep the test fast.
    weights = tmp_path / "swin_tiny.pth"
    torch.save(timm.create_model("swin_tiny_patch4_window7_224", pretrained=False).state_dict(), weights)
    backbone, _, reductions = create_backbone("swin_tiny_patch4_window7_224", weights, out_stride=16, img_size=256)
    assert reductions == [16, 32]
    assert [tuple(level.shape[-2:]) for level in backbone(torch.zeros(1, 3, 256, 256))] == [(16, 16), (8, 8)]
    cfg = load_config("seqdeepfake_components_swin")
    assert (cfg.model.backbone, cfg.data.image_size, cfg.model.out_stride) == ("swin_base_patch4_window7_224", 256, 16)
    model = build_model(cfg)
    assert model.backbone.input_size == (256, 256) and model.pos_embed.shape[-2:] == (16, 16)  # N = 256 tokens
