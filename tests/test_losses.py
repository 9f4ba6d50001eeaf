"""Targets, rank weights, decoding and the training losses against hand-worked cases and plain code."""

import math

import pytest
import torch
import torch.nn.functional as F

from mlrank.ranking.decoding import decode

from mlrank.ops import reference
from mlrank.ranking.losses import bce_loss, cls_loss, rank_loss, rank_weights, total_loss
from mlrank.task.sequences import descending_ranks
from mlrank.task.sequences import sequence_targets

WORKED_EXAMPLE = torch.tensor([[4, 2, 0, 0, 0]])  # docs/method.md section 1: L = 5, Y = (4, 2)


def unit_tokens(batch, num_tokens=9, dim=8, seed=0, requires_grad=False):
    generator = torch.Generator().manual_seed(seed)
    raw = torch.randn(batch, num_tokens, dim, generator=generator, dtype=torch.float64)
    raw.requires_grad_(requires_grad)
    return raw, F.normalize(raw, dim=-1)


# --- targets -----------------------------------------------------------------------------------


def test_sequence_targets_worked_example():
    y, r = sequence_targets(WORKED_EXAMPLE, L=5)
    assert y.dtype == torch.float32 and r.dtype == torch.int64
    assert y.tolist() == [[0, 1, 0, 1, 0]]
    assert r.tolist() == [[5, 2, 5, 1, 5]]


def test_sequence_targets_batch_genuine_full_and_other_L():
    sequences = torch.tensor([[0, 0, 0, 0, 0], [5, 4, 3, 2, 1], [3, 0, 0, 0, 0]])
    y, r = sequence_targets(sequences, L=5)
    assert y.tolist() == [[0] * 5, [1] * 5, [0, 0, 1, 0, 0]]
    assert r.tolist() == [[5] * 5, [5, 4, 3, 2, 1], [5, 5, 1, 5, 5]]
    y, r = sequence_targets(torch.tensor([[2, 0, 0]]), L=3)
    assert y.tolist() == [[0, 1, 0]] and r.tolist() == [[3, 1, 3]]


def test_sequence_targets_binary_mode():
    labels = torch.tensor([0, 1, 1])
    y, r = sequence_targets(labels, L=1)
    assert y.tolist() == [[0], [1], [1]] and r.tolist() == [[1], [1], [1]]
    y5, r5 = sequence_targets(torch.tensor([[0, 0, 0, 0, 0], [1, 0, 0, 0, 0], [1, 0, 0, 0, 0]]), L=1)
    assert torch.equal(y5, y) and torch.equal(r5, r)


@pytest.mark.parametrize(
    "sequences, L, error, words",
    [
        (torch.tensor([[1.0, 0, 0, 0, 0]]), 5, TypeError, "integer"),
        (torch.tensor([[[1, 0]]]), 5, ValueError, "2-D"),
        (torch.tensor([[1, 6, 0, 0, 0]]), 5, ValueError, "row 0 has an id outside 0..5"),
        (torch.tensor([[0, 0, 0, 0, 0], [1, -1, 0, 0, 0]]), 5, ValueError, "row 1"),
        (torch.tensor([[1, 0, 2, 0, 0]]), 5, ValueError, "after a 0 padding"),
        (torch.tensor([[2, 3, 2, 0, 0]]), 5, ValueError, "repeats"),
        (torch.tensor([0, 1]), 5, ValueError, "binary mode"),
        (torch.tensor([[1, 0]]), 0, ValueError, "L must be"),
        ([[1, 0]], 5, TypeError, "torch.Tensor"),
    ],
)
def test_sequence_targets_bad_input(sequences, L, error, words):
    with pytest.raises(error, match=words.replace("(", r"\(").replace(".", r"\.")):
        sequence_targets(sequences, L=L)


# --- rank weights ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "probs, expected",
    [
        # o = (5, 2, 3, 1, 4): manipulated components ranked exactly right, the rest below |Y|.
        ([0.1, 0.8, 0.3, 0.9, 0.2], [1, 0, 1, 0, 1]),
        # o = (1, 2, 5, 4, 3): genuine 1 above |Y| -> |1 - 5|; component 4 ranked 4th, truly 1st -> 3.
        ([0.9, 0.8, 0.1, 0.2, 0.3], [4, 0, 1, 3, 1]),
        # All tied: o = (1, 2, 3, 4, 5) by index.
        ([0.5, 0.5, 0.5, 0.5, 0.5], [4, 0, 1, 3, 1]),
    ],
)
def test_rank_weights_worked_example(probs, expected):
    w = rank_weights(torch.tensor([probs]), WORKED_EXAMPLE, alpha=1.0)
    assert w.tolist() == [expected]
    assert rank_weights(torch.tensor([probs]), WORKED_EXAMPLE, alpha=2.5).tolist() == [
        [2.5 * v for v in expected]
    ]


def test_rank_weights_ties_break_to_lower_index():
    # Y = (2, 4): r = (5, 1, 5, 2, 5). Components 1, 2, 4 tie at 0.7 -> o = (1, 2, 4, 3, 5).
    probs = torch.tensor([[0.7, 0.7, 0.1, 0.7, 0.1]])
    assert descending_ranks(probs).tolist() == [[1, 2, 4, 3, 5]]
    w = rank_weights(probs, torch.tensor([[2, 4, 0, 0, 0]]))
    # The other tie rule (higher index first) would give o_1 = 3 > |Y| and w_1 = 1.
    assert w.tolist() == [[4, 1, 1, 1, 1]]


def test_rank_weights_genuine_and_batch():
    probs = torch.tensor([[0.9, 0.1, 0.2, 0.3, 0.4], [0.2, 0.4, 0.6, 0.8, 0.1]])
    sequences = torch.tensor([[0, 0, 0, 0, 0], [3, 0, 0, 0, 0]])
    # Row 2: o = (4, 3, 2, 1, 5), |Y| = 1, r = (5, 5, 1, 5, 5): component 4 is genuine but ranked
    # first -> |1 - 5| = 4; component 3 is ranked 2nd, truly 1st -> 1.
    assert rank_weights(probs, sequences, alpha=1.0).tolist() == [[1] * 5, [1, 1, 1, 4, 1]]


def test_rank_weights_have_no_gradient():
    probs = torch.tensor([[0.1, 0.8, 0.3, 0.9, 0.2]], requires_grad=True)
    w = rank_weights(probs, WORKED_EXAMPLE)
    assert not w.requires_grad and w.grad_fn is None


def test_rank_weights_bad_input():
    with pytest.raises(ValueError, match="3 rows but sequences has 1"):
        rank_weights(torch.rand(3, 5), WORKED_EXAMPLE)
    with pytest.raises(ValueError, match="NaN"):
        rank_weights(torch.tensor([[float("nan"), 0, 0, 0, 0]]), WORKED_EXAMPLE)
    with pytest.raises(ValueError, match="alpha"):
        rank_weights(torch.rand(1, 5), WORKED_EXAMPLE, alpha=-1.0)


# --- decoding ----------------------------------------------------------------------------------


def test_decode_orders_by_probability_and_pads():
    probs = torch.tensor([[0.1, 0.8, 0.3, 0.9, 0.2], [0.6, 0.1, 0.95, 0.2, 0.7], [0.0, 0.1, 0.2, 0.3, 0.4]])
    assert decode(probs).tolist() == [[4, 2, 0, 0, 0], [3, 5, 1, 0, 0], [0, 0, 0, 0, 0]]
    assert decode(probs, threshold=0.15).tolist() == [[4, 2, 3, 5, 0], [3, 5, 1, 4, 0], [5, 4, 3, 0, 0]]


def test_decode_ties_and_threshold_equality():
    probs = torch.tensor([[0.7, 0.5, 0.9, 0.7, 0.7], [0.5, 0.5, 0.5, 0.5, 0.5]])
    assert decode(probs).tolist() == [[3, 1, 4, 5, 0], [0, 0, 0, 0, 0]]
    assert decode(torch.ones(1, 5)).tolist() == [[1, 2, 3, 4, 5]]


def test_decode_other_lengths():
    assert decode(torch.tensor([[0.9], [0.2]])).tolist() == [[1, 0, 0, 0, 0], [0, 0, 0, 0, 0]]
    assert decode(torch.tensor([[0.6, 0.9]]), length=2).tolist() == [[2, 1]]
    with pytest.raises(ValueError, match="length"):
        decode(torch.rand(2, 6))


def test_decode_from_logits_orders_what_saturated_probabilities_tie():
    # sigmoid(25) and sigmoid(30) are both exactly 1.0 in float32: decoding the probabilities leaves
    # the order to the tie rule (lower id first), the logits keep the model's (component 2 first).
    logits = torch.tensor([[25.0, 30.0, -4.0, 2.0, -30.0]])
    probs = torch.sigmoid(logits)
    assert probs[0, 0].item() == probs[0, 1].item() == 1.0
    assert decode(probs).tolist() == [[1, 2, 4, 0, 0]]
    assert decode(logits, from_logits=True).tolist() == [[2, 1, 4, 0, 0]]
    # bfloat16 saturates far earlier: sigmoid(7) and sigmoid(8) both round to 1.0.
    low = torch.tensor([[7.0, 8.0, -1.0, -1.0, -1.0]], dtype=torch.bfloat16)
    assert torch.sigmoid(low)[0, :2].tolist() == [1.0, 1.0]
    assert decode(torch.sigmoid(low)).tolist() == [[1, 2, 0, 0, 0]]
    assert decode(low, from_logits=True).tolist() == [[2, 1, 0, 0, 0]]


def test_decode_from_logits_thresholds_as_the_probability_would():
    # P > t exactly when f > log(t / (1 - t)): 0 for 0.5, log 3 = 1.0986 for 0.75, -log 3 for 0.25.
    logits = torch.tensor([[0.0, 1.0, 1.1, -1.0, -1.2]], dtype=torch.float64)
    assert decode(logits, from_logits=True).tolist() == [[3, 2, 0, 0, 0]]  # 0 is P = 0.5: strict
    assert decode(logits, 0.75, from_logits=True).tolist() == [[3, 0, 0, 0, 0]]
    assert decode(logits, 0.25, from_logits=True).tolist() == [[3, 2, 1, 4, 0]]
    assert decode(logits, 0.0, from_logits=True).tolist() == [[3, 2, 1, 4, 5]]  # every P > 0
    assert decode(logits, 1.0, from_logits=True).tolist() == [[0, 0, 0, 0, 0]]  # no P > 1
    # A logit just above 0 is a detection, though its float32 probability rounds to 0.5.
    barely = torch.tensor([[1e-9, -3.0]])
    assert torch.sigmoid(barely)[0, 0].item() == 0.5
    assert decode(barely, from_logits=True, length=2).tolist() == [[1, 0]]
    assert decode(torch.sigmoid(barely), length=2).tolist() == [[0, 0]]
    generator = torch.Generator().manual_seed(0)
    random_logits = torch.randn(50, 5, generator=generator, dtype=torch.float64) * 3
    for threshold in (0.1, 0.5, 0.9):
        assert torch.equal(
            decode(random_logits, threshold, from_logits=True), decode(torch.sigmoid(random_logits), threshold)
        )


@pytest.mark.parametrize(
    "probs, error, words",
    [
        (torch.tensor([[1.5, 0.0]]), ValueError, "from_logits=True"),
        (torch.tensor([[float("nan"), 0.0]]), ValueError, "NaN"),
        (torch.tensor([1, 0]), TypeError, "floating"),
        (torch.rand(5), ValueError, "2-D"),
    ],
)
def test_decode_bad_input(probs, error, words):
    with pytest.raises(error, match=words):
        decode(probs)


# --- L_CLS -------------------------------------------------------------------------------------


def plain_cls_loss(tokens, is_fake, reg, num_k=None):
    prob, _, u_mean = reference.contrastive_mil(tokens, 0.2, num_k)
    fake = is_fake.double()
    mil = -(fake * torch.log(prob) + (1 - fake) * torch.log(1 - prob))
    num_pairs = tokens.shape[1] * (tokens.shape[1] - 1) / 2
    regularizer = (1 - u_mean) * (num_pairs if reg == "sum" else 1)
    return (mil + (1 - fake) * regularizer).mean(), prob


@pytest.mark.parametrize("reg, num_k", [("mean", None), ("sum", None), ("mean", 3)])
def test_cls_loss_matches_plain_computation(reg, num_k):
    is_fake = torch.tensor([1, 0, 1, 0])
    raw, tokens = unit_tokens(4, requires_grad=True)
    loss, prob = cls_loss(tokens, is_fake, tau=0.2, num_k=num_k, reg=reg)
    (grad,) = torch.autograd.grad(loss, raw)
    expected, expected_prob = plain_cls_loss(F.normalize(raw, dim=-1), is_fake, reg, num_k)
    (expected_grad,) = torch.autograd.grad(expected, raw)
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(prob, expected_prob.detach())
    torch.testing.assert_close(grad, expected_grad)
    assert grad.abs().sum() > 0


def test_cls_loss_clamps_certain_probabilities():
    # Identical tokens: every similarity is 1, Delta(k) = 0 and P(x) = 0 exactly.
    tokens = torch.zeros(2, 4, 3, dtype=torch.float64)
    tokens[..., 0] = 1
    loss, prob = cls_loss(tokens, torch.tensor([True, False]))
    assert prob.tolist() == [0.0, 0.0]
    # Fake: -log(1e-6); real: -log(1 - 1e-6) + l_Reg = 1 - 1 = 0.
    expected = (-math.log(1e-6) - math.log(1 - 1e-6)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-12)


def test_cls_loss_bad_input():
    _, tokens = unit_tokens(2)
    with pytest.raises(ValueError, match="l2-normalised"):
        cls_loss(tokens * 2, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="reg"):
        cls_loss(tokens, torch.tensor([0, 1]), reg="max")
    with pytest.raises(ValueError, match="is_fake must hold only 0 and 1"):
        cls_loss(tokens, torch.tensor([0, 2]))
    with pytest.raises(ValueError, match=r"is_fake must have shape \(2,\)"):
        cls_loss(tokens, torch.tensor([0, 1, 1]))


# --- L_BCE and L_Rank --------------------------------------------------------------------------


def plain_bce(logits, y):
    p = torch.sigmoid(logits)
    return -(y * torch.log(p) + (1 - y) * torch.log(1 - p))


def test_bce_loss_matches_plain_computation_and_mask():
    generator = torch.Generator().manual_seed(0)
    patch, cls = torch.randn(2, 3, 5, generator=generator, dtype=torch.float64)
    y = torch.tensor([[0, 1, 0, 1, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.float64)
    per_sample = (plain_bce(patch, y) + plain_bce(cls, y)).sum(dim=1)
    torch.testing.assert_close(bce_loss(patch, cls, y), per_sample.mean())
    mask = torch.tensor([1.0, 0.0, 1.0])
    torch.testing.assert_close(bce_loss(patch, cls, y, mask), (per_sample[0] + per_sample[2]) / 2)


def test_bce_loss_with_no_labelled_sample_is_zero_and_differentiable():
    logits = torch.randn(2, 5, requires_grad=True)
    loss = bce_loss(logits, logits, torch.zeros(2, 5), torch.zeros(2))
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(logits.grad, torch.zeros(2, 5))


def test_rank_loss_matches_hand_weights():
    probs = torch.tensor([[0.9, 0.8, 0.1, 0.2, 0.3], [0.1, 0.8, 0.3, 0.9, 0.2]], dtype=torch.float64)
    logits = torch.logit(probs).requires_grad_()
    sequences = torch.tensor([[4, 2, 0, 0, 0], [4, 2, 0, 0, 0]])
    y = torch.tensor([[0, 1, 0, 1, 0]] * 2, dtype=torch.float64)
    weights = torch.tensor([[4, 0, 1, 3, 1], [1, 0, 1, 0, 1]], dtype=torch.float64)
    expected = (weights * plain_bce(logits.detach(), y)).sum(dim=1)
    loss = rank_loss(logits, sequences, alpha=1.0)
    torch.testing.assert_close(loss, expected.mean())
    loss.backward()
    # w is a constant: d/df_i of w_i BCE_i is w_i (sigmoid(f_i) - y_i) / B.
    torch.testing.assert_close(logits.grad, weights * (probs - y) / 2)
    torch.testing.assert_close(rank_loss(logits, sequences, 1.0, torch.tensor([0, 1])), expected[1])


def test_rank_weights_from_logits_avoid_saturation_ties():
    # sigmoid(30) and sigmoid(20) are both 1.0 in float32; the logits still order them.
    logits = torch.tensor([[20.0, 30.0, -5.0, -5.0, -5.0]])
    sequences = torch.tensor([[2, 1, 0, 0, 0]])
    assert torch.sigmoid(logits)[0, 0] == torch.sigmoid(logits)[0, 1]
    assert rank_weights(logits, sequences).tolist() == [[0, 0, 1, 1, 1]]
    assert rank_weights(torch.sigmoid(logits), sequences).tolist() == [[1, 1, 1, 1, 1]]


def test_rank_loss_needs_two_components():
    with pytest.raises(ValueError, match="binary mode"):
        rank_loss(torch.zeros(2, 1), torch.tensor([[1], [0]]))


# --- L_Total -----------------------------------------------------------------------------------


def make_outputs(batch, num_components, seed=0):
    generator = torch.Generator().manual_seed(seed + 1)
    raw, tokens = unit_tokens(batch, seed=seed, requires_grad=True)
    leaves = {
        key: torch.randn(batch, num_components, generator=generator, dtype=torch.float64).requires_grad_()
        for key in ("logits_patch", "logits_class", "logits")
    }
    return raw, {"tokens": tokens, **leaves}


def test_total_loss_terms_add_up_and_gradients_flow():
    raw, outputs = make_outputs(4, 5)
    sequences = torch.tensor([[4, 2, 0, 0, 0], [0, 0, 0, 0, 0], [1, 2, 3, 4, 5], [3, 0, 0, 0, 0]])
    terms = total_loss(outputs, sequences, lambda1=0.5, lambda2=2.0, alpha=1.5, num_k=4, reg="sum")
    assert set(terms) == {"cls", "bce", "bce_patch", "bce_class", "rank", "order", "total"}
    is_fake = torch.tensor([1, 0, 1, 1])
    y, _ = sequence_targets(sequences)
    torch.testing.assert_close(terms["cls"], cls_loss(outputs["tokens"], is_fake, 0.2, 4, "sum")[0])
    torch.testing.assert_close(
        terms["bce"], bce_loss(outputs["logits_patch"], outputs["logits_class"], y.double())
    )
    torch.testing.assert_close(terms["bce_patch"], plain_bce(outputs["logits_patch"], y.double()).sum(dim=1).mean())
    torch.testing.assert_close(terms["bce_class"], plain_bce(outputs["logits_class"], y.double()).sum(dim=1).mean())
    torch.testing.assert_close(terms["rank"], rank_loss(outputs["logits"], sequences, 1.5))
    torch.testing.assert_close(terms["total"], terms["cls"] + 0.5 * terms["bce"] + 2.0 * terms["rank"])
    terms["total"].backward()
    for leaf in (raw, outputs["logits_patch"], outputs["logits_class"], outputs["logits"]):
        assert leaf.grad is not None and leaf.grad.abs().sum() > 0


def test_total_loss_component_mask_marks_pseudo_fakes():
    raw, outputs = make_outputs(3, 5, seed=2)
    # Row 2 is a pseudo-fake: its components are unknown, its sequence is empty.
    sequences = torch.tensor([[0, 0, 0, 0, 0], [2, 0, 0, 0, 0], [0, 0, 0, 0, 0]])
    mask = torch.tensor([1.0, 1.0, 0.0])
    terms = total_loss(outputs, sequences, component_mask=mask)
    torch.testing.assert_close(terms["cls"], cls_loss(outputs["tokens"], torch.tensor([0, 1, 1]))[0])
    known = slice(0, 2)
    y, _ = sequence_targets(sequences[known])
    expected_bce = bce_loss(outputs["logits_patch"][known], outputs["logits_class"][known], y.double())
    torch.testing.assert_close(terms["bce"], expected_bce)
    torch.testing.assert_close(terms["rank"], rank_loss(outputs["logits"][known], sequences[known]))
    terms["total"].backward()
    # The pseudo-fake's logits receive no gradient; its tokens do, through L_CLS.
    assert torch.equal(outputs["logits"].grad[2], torch.zeros(5, dtype=torch.float64))
    assert raw.grad[2].abs().sum() > 0


def test_total_loss_binary_mode():
    raw, outputs = make_outputs(4, 1, seed=3)
    labels = torch.tensor([0, 1, 1, 0])
    terms = total_loss(outputs, labels, lambda1=0.5)
    assert set(terms) == {"cls", "bce", "bce_patch", "bce_class", "total"}
    torch.testing.assert_close(terms["total"], terms["cls"] + 0.5 * terms["bce"])
    as_sequences = torch.tensor([[0, 0, 0, 0, 0], [1, 0, 0, 0, 0], [1, 0, 0, 0, 0], [0, 0, 0, 0, 0]])
    torch.testing.assert_close(total_loss(outputs, as_sequences, lambda1=0.5)["total"], terms["total"])


def test_total_loss_bad_input():
    _, outputs = make_outputs(2, 5)
    sequences = torch.tensor([[1, 0, 0, 0, 0], [0, 0, 0, 0, 0]])
    with pytest.raises(ValueError, match=r"missing key\(s\) \['logits_class'\]"):
        total_loss({k: v for k, v in outputs.items() if k != "logits_class"}, sequences)
    with pytest.raises(ValueError, match="3 rows but the outputs have batch size 2"):
        total_loss(outputs, torch.zeros(3, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="logits_patch"):
        total_loss({**outputs, "logits_patch": outputs["logits_patch"][:, :4]}, sequences)
    with pytest.raises(ValueError, match="component_mask"):
        total_loss(outputs, sequences, component_mask=torch.tensor([1.0, 0.5]))
    with pytest.raises(ValueError, match="lambda2"):
        total_loss(outputs, sequences, lambda2=float("nan"))
    for key in ("lambda_cls", "lambda_bce_patch", "lambda_bce_class"):
        with pytest.raises(ValueError, match=f"{key} must be a finite real number >= 0, got -1"):
            total_loss(outputs, sequences, **{key: -1})


# --- the ablation switches ---------------------------------------------------------------------


def eq15_as_before(outputs, sequences, lambda1, lambda2, mask):
    """L_Total as it was computed before the per-term switches, written out independently: L_CLS
    plus lambda1 times the masked mean of both heads' summed BCE plus lambda2 L_Rank."""
    y, _ = sequence_targets(sequences)
    y = y.to(outputs["logits"].dtype)
    is_fake = (y.sum(dim=1) > 0) | (mask == 0)
    per_sample = (
        F.binary_cross_entropy_with_logits(outputs["logits_patch"], y, reduction="none").sum(dim=1)
        + F.binary_cross_entropy_with_logits(outputs["logits_class"], y, reduction="none").sum(dim=1)
    )
    weights = mask.to(per_sample.dtype)
    bce = (per_sample * weights).sum() / weights.sum().clamp(min=1)
    total = cls_loss(outputs["tokens"], is_fake)[0] + lambda1 * bce
    return total + lambda2 * rank_loss(outputs["logits"], sequences, 1.0, mask)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("lambda1, lambda2", [(1.0, 1.0), (0.3, 2.5)])
def test_total_loss_with_default_switches_is_bit_identical_to_eq15(dtype, lambda1, lambda2):
    # A batch large enough that any other order of the additions would round differently.
    batch = 64
    raw, outputs = make_outputs(batch, 5, seed=4)
    raw = raw.detach().to(dtype).requires_grad_()
    outputs = {key: (3 * value).detach().to(dtype).requires_grad_() for key, value in outputs.items()}
    outputs["tokens"] = F.normalize(raw, dim=-1)
    generator = torch.Generator().manual_seed(7)
    sequences = torch.zeros(batch, 5, dtype=torch.long)
    for row in range(batch):
        length = int(torch.randint(0, 6, (), generator=generator))
        sequences[row, :length] = torch.randperm(5, generator=generator)[:length] + 1
    mask = (torch.rand(batch, generator=generator) > 0.2).float()
    leaves = [raw, outputs["logits_patch"], outputs["logits_class"], outputs["logits"]]

    total = total_loss(outputs, sequences, lambda1, lambda2, component_mask=mask)["total"]
    gradients = torch.autograd.grad(total, leaves, retain_graph=True)  # the normalised tokens are shared
    expected = eq15_as_before(outputs, sequences, lambda1, lambda2, mask)
    expected_gradients = torch.autograd.grad(expected, leaves)
    assert total.dtype == dtype and torch.equal(total, expected)
    for gradient, expected_gradient in zip(gradients, expected_gradients):
        assert torch.equal(gradient, expected_gradient)


@pytest.mark.parametrize(
    "weights, trained",
    [
        # The paper's Table 3 rows: which of (tokens, f^U, f^V, fused f) still receive a gradient.
        (dict(lambda_cls=0, lambda_bce_class=0, lambda2=0), {"logits_patch"}),
        (dict(lambda_cls=0, lambda2=0), {"logits_patch", "logits_class"}),
        (dict(lambda_bce_class=0, lambda2=0), {"tokens", "logits_patch"}),
        (dict(lambda_cls=0, lambda_bce_class=0), {"logits_patch", "logits"}),
        (dict(lambda_bce_class=0), {"tokens", "logits_patch", "logits"}),
        (dict(), {"tokens", "logits_patch", "logits_class", "logits"}),
        (dict(lambda1=0), {"tokens", "logits"}),
    ],
)
def test_total_loss_switches_turn_off_exactly_their_terms(weights, trained):
    raw, outputs = make_outputs(4, 5, seed=5)
    sequences = torch.tensor([[4, 2, 0, 0, 0], [0, 0, 0, 0, 0], [1, 2, 3, 4, 5], [3, 0, 0, 0, 0]])
    terms = total_loss(outputs, sequences, **weights)
    # Every term is still reported, unweighted.
    y, _ = sequence_targets(sequences)
    torch.testing.assert_close(terms["bce_patch"], plain_bce(outputs["logits_patch"], y.double()).sum(dim=1).mean())
    torch.testing.assert_close(terms["bce_class"], plain_bce(outputs["logits_class"], y.double()).sum(dim=1).mean())
    w = {"lambda1": 1.0, "lambda2": 1.0, "lambda_cls": 1.0, "lambda_bce_patch": 1.0, "lambda_bce_class": 1.0} | weights
    bce = w["lambda_bce_patch"] * terms["bce_patch"] + w["lambda_bce_class"] * terms["bce_class"]
    torch.testing.assert_close(terms["bce"], bce)
    torch.testing.assert_close(
        terms["total"], w["lambda_cls"] * terms["cls"] + w["lambda1"] * bce + w["lambda2"] * terms["rank"]
    )
    terms["total"].backward()
    gradients = {"tokens": raw.grad, **{key: outputs[key].grad for key in ("logits_patch", "logits_class", "logits")}}
    received = {key for key, gradient in gradients.items() if gradient is not None and gradient.abs().sum() > 0}
    assert received == trained


def test_lambda1_multiplies_the_branch_weights():
    _, outputs = make_outputs(3, 5, seed=6)
    sequences = torch.tensor([[4, 2, 0, 0, 0], [0, 0, 0, 0, 0], [1, 0, 0, 0, 0]])
    terms = total_loss(outputs, sequences, lambda1=0.5, lambda_bce_patch=2.0, lambda_bce_class=0.25)
    torch.testing.assert_close(terms["bce"], 2.0 * terms["bce_patch"] + 0.25 * terms["bce_class"])
    expected = terms["cls"] + 0.5 * (2.0 * terms["bce_patch"] + 0.25 * terms["bce_class"]) + terms["rank"]
    torch.testing.assert_close(terms["total"], expected)


# --- L_Order, beyond the paper --------------------------------------------------------------------


def test_order_loss_by_hand():
    from mlrank.ranking.losses import order_loss

    softplus = lambda x: math.log1p(math.exp(x))  # noqa: E731
    logits = torch.tensor([[0.0, 1.0, -1.0], [0.5, 2.0, -0.5], [3.0, 1.0, 2.0], [1.0, 1.0, 1.0]])
    sequences = torch.tensor([[2, 3, 0, 0, 0], [3, 1, 2, 0, 0], [0, 0, 0, 0, 0], [1, 0, 0, 0, 0]])
    # Row 0: 2 before 3: softplus(f3 - f2). Row 1: 3 < 1 < 2: pairs (3,1), (3,2), (1,2).
    # Rows 2 (genuine) and 3 (one edit) have no pair.
    row0 = softplus(-1.0 - 1.0)
    row1 = softplus(0.5 - -0.5) + softplus(2.0 - -0.5) + softplus(2.0 - 0.5)
    expected = (row0 + row1) / 4
    assert order_loss(logits, sequences).item() == pytest.approx(expected, rel=1e-6)
    masked = order_loss(logits, sequences, sample_mask=torch.tensor([1, 0, 1, 1]))
    assert masked.item() == pytest.approx(row0 / 3, rel=1e-6)


def test_order_loss_pushes_the_earlier_edit_up_and_the_later_down():
    from mlrank.ranking.losses import order_loss

    logits = torch.zeros(1, 3, requires_grad=True)
    order_loss(logits, torch.tensor([[3, 1, 0, 0, 0]])).backward()
    grad = logits.grad[0]
    assert grad[2] < 0 < grad[0] and grad[1] == 0  # descent raises f3 (first), lowers f1 (second)


def random_outputs(batch, seed, order_scores=False):
    """Model outputs of random values: unit tokens (batch, 9, 8), both branches' logits and their mean,
    and with ``order_scores`` an order head's scores (drawn last, so the rest is the same either way)."""
    generator = torch.Generator().manual_seed(seed)
    outputs = {
        "tokens": torch.nn.functional.normalize(torch.randn(batch, 9, 8, generator=generator), dim=-1),
        "logits_patch": torch.randn(batch, 5, generator=generator),
        "logits_class": torch.randn(batch, 5, generator=generator),
    }
    if order_scores:
        outputs["order_scores"] = torch.randn(batch, 5, generator=generator)
    outputs["logits"] = (outputs["logits_patch"] + outputs["logits_class"]) / 2
    return outputs


def test_total_loss_adds_the_order_term_only_when_weighted():
    from mlrank.ranking.losses import order_loss

    outputs = random_outputs(4, seed=3)
    sequences = torch.tensor([[1, 4, 2, 0, 0], [0, 0, 0, 0, 0], [5, 3, 0, 0, 0], [2, 0, 0, 0, 0]])
    off = total_loss(outputs, sequences)
    on = total_loss(outputs, sequences, lambda_order=0.5)
    assert torch.equal(off["order"], order_loss(outputs["logits"], sequences))
    assert torch.equal(on["total"], off["total"] + 0.5 * off["order"])
    assert off["order"] > 0


def test_losses_of_a_model_that_scores_the_latest_edit_highest_use_the_reversed_order():
    from mlrank.ranking.decoding import reverse_edit_order

    outputs = random_outputs(3, seed=4)
    sequences = torch.tensor([[1, 4, 2, 0, 0], [0, 0, 0, 0, 0], [5, 3, 0, 0, 0]])
    latest = total_loss(outputs, sequences, lambda_order=1.0, last_edit_highest=True)
    paper_on_reversed = total_loss(outputs, reverse_edit_order(sequences), lambda_order=1.0)
    paper = total_loss(outputs, sequences, lambda_order=1.0)
    for term in ("rank", "order", "total"):
        assert torch.equal(latest[term], paper_on_reversed[term]), term
    for term in ("cls", "bce"):  # which components were edited does not depend on the order
        assert torch.equal(latest[term], paper[term]), term
    assert not torch.equal(latest["order"], paper["order"])


# ---------------------------------------------------------------- the order head (beyond the paper)


def test_decode_with_order_scores_by_hand():
    logits = torch.tensor([[2.0, 1.0, -1.0, 3.0, -2.0]])  # detected: components 1, 2 and 4
    order_scores = torch.tensor([[0.1, 0.5, 9.0, -0.3, 7.0]])  # undetected 3 and 5 score highest
    # The first edit highest: 2 (0.5), 1 (0.1), 4 (-0.3); the logits' own order would be 4, 1, 2.
    assert decode(logits, from_logits=True, order_scores=order_scores).tolist() == [[2, 1, 4, 0, 0]]
    assert decode(logits, from_logits=True).tolist() == [[4, 1, 2, 0, 0]]
    # The latest edit highest: listed by increasing order score.
    assert decode(logits, from_logits=True, last_edit_highest=True,
                  order_scores=order_scores).tolist() == [[4, 1, 2, 0, 0]]
    # Ties in the order scores: the lower id first, as everywhere.
    tied = torch.tensor([[1.0, 1.0, 0.0, 1.0, 0.0]])
    assert decode(logits, from_logits=True, order_scores=tied).tolist() == [[1, 2, 4, 0, 0]]


def test_edit_order_scores_with_order_scores_keep_detected_components_ahead():
    from mlrank.ranking.decoding import edit_order_scores

    logits = torch.tensor([[2.0, 1.0, -1.0, 3.0, -2.0], [-1.0, -1.0, -1.0, -1.0, -1.0]])
    order_scores = torch.tensor([[0.1, 0.5, 9.0, -0.3, 7.0], [1.0, 2.0, 3.0, 4.0, 5.0]])
    for latest in (False, True):
        read = edit_order_scores(logits, from_logits=True, last_edit_highest=latest, order_scores=order_scores)
        assert read[0, [0, 1, 3]].min() > read[0, [2, 4]].max()
        own = -order_scores if latest else order_scores
        for a in range(5):
            for b in range(5):  # within each group the order is the order scores' (negated when latest)
                if (a in (0, 1, 3)) == (b in (0, 1, 3)):
                    assert (read[0, a] > read[0, b]) == (own[0, a] > own[0, b])
        assert torch.equal(read[1].argsort(), own[1].double().argsort())  # nothing detected
    with pytest.raises(ValueError, match="order_scores has shape"):
        edit_order_scores(logits, from_logits=True, order_scores=order_scores[:, :4])


def test_sequence_metrics_read_the_order_from_the_order_scores():
    from mlrank.ranking.metrics import sequence_metrics

    sequences = torch.tensor([[1, 4, 2, 0, 0], [3, 5, 0, 0, 0], [0, 0, 0, 0, 0]])
    # The logits detect exactly the edited components, in the reverse of their order.
    logits = torch.tensor([[1.0, 3.0, -5.0, 2.0, -5.0], [-5.0, -5.0, 1.0, -5.0, 2.0], [-5.0] * 5])
    # The order scores rank the earliest edit highest.
    order_scores = torch.tensor([[3.0, 1.0, 0.0, 2.0, 0.0], [0.0, 0.0, 4.0, 0.0, -1.0], [0.0] * 5])
    without = sequence_metrics(logits, sequences, from_logits=True)
    with_head = sequence_metrics(logits, sequences, from_logits=True, order_scores=order_scores)
    assert without["multilabel_acc"] == with_head["multilabel_acc"] == 1.0
    # Fixed-Acc compares slot by slot: rows 0 and 1 get 3 of 5 slots (the middle one and the padding).
    assert without["ordered_pairs"] == 0.0 and without["fixed_acc"] == pytest.approx(11 / 15)
    assert with_head["ordered_pairs"] == 1.0 and with_head["fixed_acc"] == 1.0
    assert with_head["kendall_tau"] == 1.0


def test_total_loss_ranks_the_order_scores_when_the_model_has_them():
    from mlrank.ranking.decoding import reverse_edit_order
    from mlrank.ranking.losses import order_loss, rank_loss

    outputs = random_outputs(3, seed=5, order_scores=True)
    sequences = torch.tensor([[1, 4, 2, 0, 0], [0, 0, 0, 0, 0], [5, 3, 0, 0, 0]])
    terms = total_loss(outputs, sequences, lambda_order=1.0, last_edit_highest=True)
    reversed_sequences = reverse_edit_order(sequences)
    assert torch.equal(terms["order"], order_loss(outputs["order_scores"], reversed_sequences))
    assert torch.equal(terms["rank"], rank_loss(outputs["logits"], reversed_sequences))  # the paper's, on f
    plain = total_loss({k: v for k, v in outputs.items() if k != "order_scores"}, sequences,
                       lambda_order=1.0, last_edit_highest=True)
    for term in ("cls", "bce", "rank"):
        assert torch.equal(terms[term], plain[term]), term
    with pytest.raises(ValueError, match="order_scores"):
        total_loss({**outputs, "order_scores": torch.zeros(3, 4)}, sequences, lambda_order=1.0)


# ---------------------------------------------------------------- the count head (beyond the paper)


def test_count_loss_is_the_cross_entropy_of_the_number_of_edits_by_hand():
    from mlrank.ranking.losses import count_loss

    count_logits = torch.tensor([[2.0, 0.0, 0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 3.0, 0.0, 0.0, -1.0]])
    sequences = torch.tensor([[0, 0, 0, 0, 0], [4, 1, 0, 0, 0]])  # 0 and 2 edits
    # -log softmax: row 0 at class 0, row 1 at class 2.
    row0 = -2.0 + math.log(math.exp(2.0) + 5)
    row1 = -3.0 + math.log(1 + math.e + math.exp(3.0) + 2 + math.exp(-1.0))
    assert count_loss(count_logits, sequences).item() == pytest.approx((row0 + row1) / 2, rel=1e-6)
    masked = count_loss(count_logits, sequences, sample_mask=torch.tensor([0, 1]))
    assert masked.item() == pytest.approx(row1, rel=1e-6)
    with pytest.raises(ValueError, match="count_logits must be"):
        count_loss(count_logits[0], sequences)


def test_total_loss_adds_the_count_term_only_for_a_model_with_a_count_head():
    from mlrank.ranking.losses import count_loss

    outputs = random_outputs(3, seed=6)
    sequences = torch.tensor([[1, 4, 2, 0, 0], [0, 0, 0, 0, 0], [5, 3, 0, 0, 0]])
    plain = total_loss(outputs, sequences)
    assert "count" not in plain
    count_logits = torch.randn(3, 6, generator=torch.Generator().manual_seed(7))
    with_head = total_loss({**outputs, "count_logits": count_logits}, sequences, lambda_count=0.5)
    assert torch.equal(with_head["count"], count_loss(count_logits, sequences))
    assert torch.equal(with_head["total"], plain["total"] + 0.5 * with_head["count"])


def test_shifted_to_counts_keep_exactly_the_top_k_by_hand():
    from mlrank.ranking.decoding import shifted_to_counts

    logits = torch.tensor([[0.3, -1.0, 2.0, 0.1, -0.5]] * 3)
    shifted = shifted_to_counts(logits, torch.tensor([3, 0, 5]))
    # 3: zero midway between 0.1 and -0.5; 0: one below the largest; 5: one above the smallest.
    torch.testing.assert_close(shifted, logits.double() - torch.tensor([[-0.2], [3.0], [-2.0]], dtype=torch.float64))
    assert decode(shifted, from_logits=True).tolist() == [[3, 1, 4, 0, 0], [0] * 5, [3, 1, 4, 5, 2]]
    assert decode(shifted, from_logits=True, last_edit_highest=True).tolist() == [[4, 1, 3, 0, 0], [0] * 5,
                                                                                    [2, 5, 4, 1, 3]]
    # Two float32 logits one ulp apart stay on their sides of zero.
    close = torch.tensor([[1.0, torch.nextafter(torch.tensor(1.0), torch.tensor(2.0)).item(), -3, -3, -3]])
    assert decode(shifted_to_counts(close, torch.tensor([1])), from_logits=True).tolist() == [[2, 0, 0, 0, 0]]
    for bad in (torch.tensor([3, 0]), torch.tensor([3, 0, 6]), torch.tensor([3, -1, 5]), torch.tensor([3.0, 0, 5])):
        with pytest.raises(ValueError, match=r"counts must be int64 \(3,\) in 0..5"):
            shifted_to_counts(logits, bad)


def test_joint_counts_weigh_the_count_head_against_the_logits_by_hand():
    from mlrank.ranking.decoding import count_shifted_logits, joint_counts, shifted_to_counts

    logits = torch.tensor([[0.3, -1.0, 2.0, 0.1, -0.5]] * 3)
    # The k largest logits sum to 0, 2.0, 2.3, 2.4, 1.9, 0.9 for k = 0..5.
    count_logits = torch.tensor([
        [0.0, 0, 0, 0, 1.0, 0],  # +1 at k = 4: 2.9 beats 2.4, one more than the threshold keeps
        [0.0, 0, 0, 0, 0, 0.8],  # the head's argmax is 5, but 0.8 + 0.9 < 2.4: k = 3, the threshold's
        [0.0, 0, 3.0, 0, 0, 0],  # +3 at k = 2: 5.3
    ])
    assert joint_counts(logits, count_logits).tolist() == [4, 3, 2]
    shifted = count_shifted_logits(logits, count_logits)
    assert torch.equal(shifted, shifted_to_counts(logits, torch.tensor([4, 3, 2])))
    assert decode(shifted, from_logits=True).tolist() == [[3, 1, 4, 5, 0], [3, 1, 4, 0, 0], [3, 1, 0, 0, 0]]
    # The log-softmax's constant does not matter, and a head with no opinion leaves the threshold's
    # decision (a logit at exactly 0 is not kept: ties go to the smaller count).
    assert joint_counts(logits, count_logits + 7.0).tolist() == [4, 3, 2]
    random_logits = torch.randn(64, 5, generator=torch.Generator().manual_seed(3))
    random_logits[0, 2] = 0.0
    assert torch.equal(joint_counts(random_logits, torch.zeros(64, 6)), (random_logits > 0).sum(dim=1))
    with pytest.raises(ValueError, match=r"count_logits must be \(3, 6\)"):
        count_shifted_logits(logits, count_logits[:, :5])
    with pytest.raises(ValueError, match="count_logits"):
        joint_counts(logits, torch.full((3, 6), float("nan")))


def test_decision_logits_are_the_fused_logits_unless_a_count_head_decides():
    from mlrank.ranking.decoding import count_shifted_logits, decision_logits, joint_counts

    outputs = random_outputs(2, seed=8)
    assert torch.equal(decision_logits(outputs), outputs["logits"])
    count_logits = torch.randn(2, 6, generator=torch.Generator().manual_seed(9))
    read = decision_logits({**outputs, "count_logits": count_logits})
    assert torch.equal(read, count_shifted_logits(outputs["logits"], count_logits))
    assert torch.equal((read > 0).sum(dim=1), joint_counts(outputs["logits"], count_logits))


def test_total_loss_refuses_count_logits_of_another_width():
    outputs = random_outputs(2, seed=10)
    with pytest.raises(ValueError, match=r"outputs\['count_logits'\] must be \(2, 6\)"):
        total_loss({**outputs, "count_logits": torch.zeros(2, 5)}, torch.tensor([[1, 0, 0, 0, 0], [0] * 5]))
