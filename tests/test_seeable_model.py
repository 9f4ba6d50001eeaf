"""SeeABLE's model (timm encoder, projector, prototype buffer) and its anomaly score."""

import numpy as np
import pytest
import torch

from mlrank.seeable import (
    DiscrepancySpec,
    SeeableModel,
    anomaly_score,
    apply_discrepancy,
    seeable_loss,
)

SMALL_SPEC = DiscrepancySpec(grid=(2, 2), types=("colour", "blur"))  # K = 8


def small_model(seed=0, prototype_seed=0):
    torch.manual_seed(seed)
    return SeeableModel(
        "test_resnet", embed_dim=16, num_classes=SMALL_SPEC.K, prototype_seed=prototype_seed
    )


def faces(batch=3, size=24, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, size, size, generator=generator)


def test_default_model_has_k_prototypes_of_the_embedding_dimension():
    model = SeeableModel()
    assert model.prototypes.shape == (64, 128)
    assert model.num_classes == 64 and model.embed_dim == 128
    assert model.encoder.num_features == 512  # resnet18's pooled features


def test_embeddings_are_unit_vectors():
    z = small_model()(faces())
    assert z.shape == (3, 16)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(3))


def test_prototypes_round_trip_through_the_state_dict(tmp_path):
    trained, fresh = small_model(prototype_seed=0), small_model(seed=1, prototype_seed=5)
    assert not torch.equal(trained.prototypes, fresh.prototypes)
    state = trained.state_dict()
    assert "prototypes" in state and not any(key.startswith("standardize.") for key in state)
    torch.save(state, tmp_path / "checkpoint.pt")
    fresh.load_state_dict(torch.load(tmp_path / "checkpoint.pt"))
    assert torch.equal(fresh.prototypes, trained.prototypes)
    images = faces()
    assert torch.equal(fresh.eval()(images), trained.eval()(images))


def test_gradients_flow_from_the_loss_to_every_trained_weight():
    model = small_model()
    labels = torch.tensor([0, 0, 3, 5, 5, 7])
    terms = seeable_loss(model(faces(6)), labels, model.prototypes, SMALL_SPEC)
    terms["total"].backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
    first_encoder_weight = next(model.encoder.parameters())  # the stem: the far end of the network
    assert first_encoder_weight.grad.abs().sum() > 0
    assert model.projector[0].weight.grad.abs().sum() > 0
    assert model.projector[2].weight.grad.abs().sum() > 0
    assert not model.prototypes.requires_grad


def test_weights_from_a_local_file(tmp_path):
    source = small_model(seed=3)
    torch.save(source.encoder.state_dict(), tmp_path / "encoder.pth")
    weights = tmp_path / "encoder.pth"
    loaded = SeeableModel("test_resnet", embed_dim=16, num_classes=8, pretrained_file=weights)
    for name, tensor in source.encoder.state_dict().items():
        assert torch.equal(loaded.encoder.state_dict()[name], tensor), name


def test_bad_backbone_or_weights_file_is_named(tmp_path):
    with pytest.raises(ValueError, match="no_such_net"):
        SeeableModel("no_such_net")
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        SeeableModel("test_resnet", pretrained_file=tmp_path / "missing.pth")
    with pytest.raises(ValueError, match=r"\(batch, 3, H, W\)"):
        small_model()(torch.rand(3, 24, 24))


def score_by_hand(model, images, spec, seed):
    """mean over k of 1 - z(sd_k(x)).p_k, each sd_k drawn from default_rng([seed, k])."""
    model.eval()
    with torch.no_grad():
        per_class = []
        for k in range(spec.K):
            discrepant = torch.stack(
                [apply_discrepancy(x, k, spec, np.random.default_rng([seed, k]))[0] for x in images]
            )
            per_class.append(1 - model(discrepant).double() @ model.prototypes[k].double())
    return torch.stack(per_class).mean(0)


def test_score_is_the_mean_prototype_distance_over_all_discrepancies():
    model, images = small_model(), faces()
    scores = anomaly_score(model, images, SMALL_SPEC, seed=4)
    assert scores.shape == (3,) and scores.dtype == torch.float32
    expected = score_by_hand(model, images, SMALL_SPEC, 4)
    torch.testing.assert_close(scores.double(), expected, atol=1e-6, rtol=0)
    assert torch.all((scores >= 0) & (scores <= 2))


def test_score_is_deterministic_and_leaves_the_mode_alone():
    model, images = small_model(), faces()
    model.train()
    first = anomaly_score(model, images, SMALL_SPEC, seed=0)
    assert model.training
    model.eval()
    assert torch.equal(first, anomaly_score(model, images, SMALL_SPEC, seed=0))
    assert not model.training
    # One face's score does not depend on the rest of the batch (up to float32 round-off).
    alone = anomaly_score(model, images[1:2], SMALL_SPEC, seed=0)
    torch.testing.assert_close(alone, first[1:2], atol=1e-5, rtol=0)
    assert not torch.equal(first, anomaly_score(model, images, SMALL_SPEC, seed=1))


def test_score_uses_the_face_masks():
    model, images = small_model(), faces(2)
    face = torch.zeros(2, 24, 24, dtype=torch.bool)
    face[:, 4:20, 6:18] = True
    with_masks = anomaly_score(model, images, SMALL_SPEC, face_masks=face)
    as_list = anomaly_score(model, images, SMALL_SPEC, face_masks=[face[0].numpy(), face[1]])
    assert torch.equal(with_masks, as_list)
    assert not torch.equal(with_masks, anomaly_score(model, images, SMALL_SPEC))


def test_score_rejects_mismatches():
    model = small_model()
    with pytest.raises(ValueError, match="K = 64"):
        anomaly_score(model, faces(), DiscrepancySpec())
    with pytest.raises(ValueError, match=r"\(2, H, W\)"):
        three_masks = torch.ones(3, 24, 24, dtype=torch.bool)
        anomaly_score(model, faces(2), SMALL_SPEC, face_masks=three_masks)
    with pytest.raises(ValueError, match="seed"):
        anomaly_score(model, faces(2), SMALL_SPEC, seed=-1)
