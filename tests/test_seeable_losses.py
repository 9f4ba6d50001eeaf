"""SeeABLE's losses against hand-worked cases and a plain loop reference."""

import math

import pytest
import torch

from mlrank.seeable import (
    DiscrepancySpec,
    guidance_loss,
    guidance_weights,
    make_prototypes,
    prototype_ce_loss,
    seeable_loss,
    supcon_loss,
)


def supcon_by_loops(z, labels, temperature):
    """Khosla et al.'s L_out written out anchor by anchor."""
    terms = []
    for i in range(len(z)):
        positives = [p for p in range(len(z)) if p != i and labels[p] == labels[i]]
        if not positives:
            continue
        logit = [float(z[i] @ z[a]) / temperature for a in range(len(z))]
        log_denominator = math.log(sum(math.exp(logit[a]) for a in range(len(z)) if a != i))
        terms.append(-sum(logit[p] - log_denominator for p in positives) / len(positives))
    return sum(terms) / len(terms)


def test_supcon_on_four_samples_worked_by_hand():
    # Four unit vectors at right angles, labels (0, 0, 0, 1), t = 0.5, so the logits are 2 z_i.z_a.
    # Every anchor's denominator is e^0 + e^0 + e^-2 (two orthogonal, one opposite):
    # L = log(2 + e^-2).
    # Anchor 1: positives 2 (cos 0) and 3 (cos -1) -> -(1/2)((0 - L) + (-2 - L)) = L + 1.
    # Anchor 2: positives 1 and 3, both orthogonal -> L.  Anchor 3: like anchor 1 -> L + 1.
    # Anchor 4 has no positive and is left out: loss = (3L + 2) / 3.
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 0, 1])
    expected = math.log(2 + math.exp(-2)) + 2 / 3
    assert float(supcon_loss(z, labels, temperature=0.5)) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(1.425290, abs=1e-6)


def test_supcon_matches_loops_on_a_random_batch():
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(10, 6, generator=generator, dtype=torch.float64)
    z = torch.nn.functional.normalize(z, dim=1)
    labels = torch.tensor([0, 1, 2, 0, 1, 3, 0, 4, 4, 5])
    expected = supcon_by_loops(z, labels, 0.2)
    assert float(supcon_loss(z, labels, 0.2)) == pytest.approx(expected, rel=1e-10)


def test_supcon_without_any_positive_is_zero_and_differentiable():
    z = torch.nn.functional.normalize(torch.randn(3, 4), dim=1).requires_grad_()
    loss = supcon_loss(z, torch.tensor([0, 1, 2]))
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(z.grad, torch.zeros_like(z))


def test_prototype_cross_entropy_worked_by_hand():
    # Three simplex prototypes in 2-D (cosines -1/2); z = p_0 gives logits (1, -1/2, -1/2) / t.
    prototypes = make_prototypes(3, 2, seed=0, dtype=torch.float64)
    temperature = 0.5
    expected = math.log(1 + 2 * math.exp(-1.5 / temperature))
    loss = prototype_ce_loss(prototypes[:1], torch.tensor([0]), prototypes, temperature)
    assert float(loss) == pytest.approx(expected, rel=1e-10)


def test_guidance_weights_on_the_four_by_four_grid():
    spec = DiscrepancySpec()  # 4 x 4 cells, 4 types
    cls = spec.class_of
    cases = [
        (cls(1, 1, "blur"), cls(1, 1, "blur"), 0.25),  # right cell, right type
        (cls(1, 1, "frequency"), cls(1, 1, "blur"), 0.25),  # right cell, wrong type
        (cls(1, 2, "blur"), cls(1, 1, "blur"), 0.5),  # mirror of column 1 is column 2
        (cls(2, 3, "colour"), cls(2, 0, "colour"), 0.5),  # mirror across the whole face
        (cls(1, 0, "blur"), cls(1, 1, "blur"), 1.0),  # neighbour, not the mirror
        (cls(2, 1, "blur"), cls(1, 1, "blur"), 1.0),  # neighbour below
        (cls(0, 2, "blur"), cls(1, 1, "resample"), math.sqrt(2)),  # diagonal, not the mirror row
        (cls(3, 3, "blur"), cls(1, 1, "blur"), math.sqrt(8)),
        (cls(0, 0, "colour"), cls(3, 3, "frequency"), math.sqrt(18)),
        (cls(3, 0, "colour"), cls(0, 0, "colour"), 3.0),
    ]
    pred = torch.tensor([case[0] for case in cases])
    true = torch.tensor([case[1] for case in cases])
    expected = torch.tensor([case[2] for case in cases], dtype=torch.float32)
    torch.testing.assert_close(guidance_weights(pred, true, spec), expected)
    # Every wrong cell other than the mirror weighs at least 1, more than the mirror's 1/2.
    all_k = torch.arange(spec.K)
    grid_pred, grid_true = torch.meshgrid(all_k, all_k, indexing="ij")
    weights = guidance_weights(grid_pred.flatten(), grid_true.flatten(), spec).view(spec.K, spec.K)
    assert torch.equal(weights, weights.T) and set(weights[weights < 1].tolist()) == {0.25, 0.5}


def test_guidance_loss_worked_by_hand():
    # One type on a 4 x 4 grid: K = 16 simplex prototypes in 16-D, cosines -1/15.
    spec = DiscrepancySpec(types=("blur",))
    prototypes = make_prototypes(16, 16, seed=0, dtype=torch.float64)
    true = spec.class_of(1, 1, "blur")
    on_target = guidance_loss(prototypes[true : true + 1], torch.tensor([true]), prototypes, spec)
    assert float(on_target) == pytest.approx(0.0, abs=1e-12)
    # z sits on the mirror's prototype: w = 1/2, 1 - sim = 16/15
    mirror = spec.class_of(1, 2, "blur")
    on_mirror = guidance_loss(prototypes[[mirror]], torch.tensor([true]), prototypes, spec)
    assert float(on_mirror) == pytest.approx(0.5 * 16 / 15, rel=1e-10)
    far = spec.class_of(3, 3, "blur")  # w = sqrt(8)
    on_far = guidance_loss(prototypes[far : far + 1], torch.tensor([true]), prototypes, spec)
    assert float(on_far) == pytest.approx(math.sqrt(8) * 16 / 15, rel=1e-6)  # float32 weights


def test_seeable_loss_terms_and_total():
    spec = DiscrepancySpec(grid=(2, 2), types=("colour", "blur"))
    prototypes = make_prototypes(spec.K, 16, seed=0)
    generator = torch.Generator().manual_seed(0)
    z = torch.nn.functional.normalize(torch.randn(12, 16, generator=generator), dim=1)
    labels = torch.randint(0, spec.K, (12,), generator=generator)
    terms = seeable_loss(z, labels, prototypes, spec, temperature=0.1, lambda_gui=0.3)
    assert set(terms) == {"supcon", "prototype_ce", "bcr", "guidance", "total"}
    torch.testing.assert_close(terms["supcon"], supcon_loss(z, labels, 0.1))
    torch.testing.assert_close(terms["prototype_ce"], prototype_ce_loss(z, labels, prototypes, 0.1))
    torch.testing.assert_close(terms["bcr"], terms["supcon"] + terms["prototype_ce"])
    torch.testing.assert_close(terms["total"], terms["bcr"] + 0.3 * terms["guidance"])


def test_loss_is_lower_on_the_prototypes_than_for_random_embeddings():
    spec = DiscrepancySpec()
    prototypes = make_prototypes(spec.K, 128, seed=0)
    generator = torch.Generator().manual_seed(1)
    labels = torch.randint(0, spec.K, (32,), generator=generator)
    labels[16:] = labels[:16]  # every class in the batch appears at least twice
    at_prototypes = seeable_loss(prototypes[labels], labels, prototypes, spec)
    for _ in range(5):
        z = torch.nn.functional.normalize(torch.randn(32, 128, generator=generator), dim=1)
        at_random = seeable_loss(z, labels, prototypes, spec)
        for name in ("supcon", "prototype_ce", "guidance", "total"):
            assert at_prototypes[name] < at_random[name], name


def test_gradients_reach_z_but_not_the_guidance_weights():
    spec = DiscrepancySpec(grid=(2, 2), types=("blur",))
    prototypes = make_prototypes(spec.K, 8, seed=0)
    z = torch.nn.functional.normalize(torch.randn(6, 8), dim=1).requires_grad_()
    labels = torch.tensor([0, 0, 1, 2, 3, 3])
    seeable_loss(z, labels, prototypes, spec)["total"].backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    # L_GUI's gradient is -w_i p_{y_i} / B: the weights act as constants.
    z.grad = None
    guidance_loss(z, labels, prototypes, spec).backward()
    weights = guidance_weights((z.detach() @ prototypes.T).argmax(1), labels, spec)
    torch.testing.assert_close(z.grad, -weights[:, None] * prototypes[labels] / 6)


FOUR_CLASSES = DiscrepancySpec(grid=(2, 2), types=("blur",))
PAIR = torch.tensor([0, 1])


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda z, p: supcon_loss(z, torch.tensor([0, 1, 2])), ValueError, "labels has 3"),
        (lambda z, p: supcon_loss(z, torch.tensor([0.0, 1.0])), TypeError, "int64"),
        (lambda z, p: supcon_loss(z, PAIR, 0.0), ValueError, "temperature"),
        (lambda z, p: prototype_ce_loss(z, torch.tensor([0, 4]), p), ValueError, r"\[0, 4\)"),
        (lambda z, p: prototype_ce_loss(z, PAIR, p[:, :3]), ValueError, "dim 3"),
        (lambda z, p: guidance_loss(z, PAIR, p, DiscrepancySpec()), ValueError, "K = 64"),
        (lambda z, p: seeable_loss(z, PAIR, p, FOUR_CLASSES, lambda_gui=-1), ValueError, "lambda_gui"),
    ],
)
def test_bad_input_is_named(call, error, words):
    z = torch.nn.functional.normalize(torch.randn(2, 4), dim=1)
    with pytest.raises(error, match=words):
        call(z, make_prototypes(4, 4, seed=0))
