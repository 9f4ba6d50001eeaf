"""Sequence and binary metrics on hand-computed cases (SeqDeepFake's conventions, sklearn's ties)."""

import math

import numpy as np
import pytest
import torch

from mlrank.metrics import (
    accuracy_at,
    adaptive_acc,
    auc,
    average_precision,
    binary_metrics,
    eer,
    fixed_acc,
    multilabel_acc,
    order_r2,
    sequence_metrics,
    video_auc,
)

SEQDEEPFAKE_TRUTH = [[1, 2, 4, 0, 0]]
SEQDEEPFAKE_PREDICTION = [[1, 2, 0, 0, 0]]


# --- Fixed-Acc and Adaptive-Acc ----------------------------------------------------------------


def test_seqdeepfake_example():
    pred, gt = torch.tensor(SEQDEEPFAKE_PREDICTION), torch.tensor(SEQDEEPFAKE_TRUTH)
    assert fixed_acc(pred, gt) == pytest.approx(0.8)  # 4 of 5 positions, padding included
    assert adaptive_acc(pred, gt) == pytest.approx(2 / 3)  # first max(3, 2) = 3 positions


def test_pair_of_originals_counts_one_of_one():
    originals = torch.zeros(1, 5, dtype=torch.long)
    assert fixed_acc(originals, originals) == 1.0
    assert adaptive_acc(originals, originals) == 1.0
    # Pooled over rows: (2 + 1) / (3 + 1), not the mean of the row accuracies (2/3 + 1) / 2.
    pred = torch.tensor(SEQDEEPFAKE_PREDICTION + [[0] * 5])
    gt = torch.tensor(SEQDEEPFAKE_TRUTH + [[0] * 5])
    assert adaptive_acc(pred, gt) == pytest.approx(3 / 4)
    assert fixed_acc(pred, gt) == pytest.approx(9 / 10)


@pytest.mark.parametrize(
    "pred, gt, fixed, adaptive",
    [
        ([[3, 0, 0, 0, 0]], [[0, 0, 0, 0, 0]], 4 / 5, 0 / 1),  # a genuine image called fake
        ([[1, 2, 3, 0, 0]], [[1, 0, 0, 0, 0]], 3 / 5, 1 / 3),  # prediction longer than truth
        ([[2, 1, 0, 0, 0]], [[1, 2, 0, 0, 0]], 3 / 5, 0 / 2),  # right components, wrong order
        ([[5, 4, 3, 2, 1]], [[5, 4, 3, 2, 1]], 1.0, 1.0),
    ],
)
def test_sequence_accuracies_hand_cases(pred, gt, fixed, adaptive):
    assert fixed_acc(pred, gt) == pytest.approx(fixed)  # lists and tensors alike
    assert adaptive_acc(np.array(pred), torch.tensor(gt)) == pytest.approx(adaptive)


@pytest.mark.parametrize(
    "pred, gt, error, words",
    [
        ([[1, 0, 0]], [[1, 0, 0, 0, 0]], ValueError, "same shape"),
        ([[1.0, 0, 0, 0, 0]], SEQDEEPFAKE_TRUTH, TypeError, "pred must be an integer"),
        ([[1, 0, 2, 0, 0]], SEQDEEPFAKE_TRUTH, ValueError, "pred row 0 has a non-zero id after"),
        (SEQDEEPFAKE_PREDICTION, [[-1, 0, 0, 0, 0]], ValueError, "gt row 0 has a negative id"),
    ],
)
def test_sequence_accuracies_bad_input(pred, gt, error, words):
    for metric in (fixed_acc, adaptive_acc):
        with pytest.raises(error, match=words):
            metric(pred, gt)


# --- multi-label accuracy and order R^2 --------------------------------------------------------


def test_multilabel_acc_per_entry():
    probs = torch.tensor([[0.9, 0.5, 0.2], [0.6, 0.4, 0.7]])
    y = torch.tensor([[1, 1, 0], [0, 0, 1]])
    # P > 0.5: [[1, 0, 0], [1, 0, 1]]; 0.5 is not a detection. Right: 2 + 2 of 6.
    assert multilabel_acc(probs, y) == pytest.approx(4 / 6)
    assert multilabel_acc(torch.tensor([[1, 0, 0], [1, 0, 1]]), y.float()) == pytest.approx(4 / 6)
    assert multilabel_acc(probs, y, threshold=0.65) == pytest.approx(5 / 6)
    with pytest.raises(ValueError, match="same shape"):
        multilabel_acc(probs, y[:, :2])
    with pytest.raises(ValueError, match="y must hold only 0 and 1"):
        multilabel_acc(probs, y * 2)


def test_order_r2_hand_computed():
    probs = torch.tensor([[0.9, 0.8, 0.1], [0.7, 0.6, 0.1], [0.9, 0.1, 0.2]])
    sequences = torch.tensor([[1, 2, 0], [2, 1, 0], [1, 0, 0]])
    # Component 1: r = (1, 2, 1), o = (1, 1, 1): 1 - 1 / (2/3) = -0.5.
    # Component 2 (rows 1 and 2): r = (2, 1), o = (2, 2): 1 - 1 / 0.5 = -1.
    # Component 3 is never manipulated: NaN.
    r2 = order_r2(probs, sequences, L=3)
    assert r2.dtype == torch.float64
    assert r2[:2].tolist() == pytest.approx([-0.5, -1.0])
    assert math.isnan(r2[2])
    perfect = torch.tensor([[0.9, 0.8, 0.1], [0.8, 0.9, 0.1], [0.9, 0.1, 0.2]])
    assert order_r2(perfect, sequences, L=3)[:2].tolist() == [1.0, 1.0]


def test_order_r2_undefined_without_variance_and_bad_L():
    # Component 1 always first: zero variance of r_1.
    r2 = order_r2(torch.tensor([[0.9, 0.2], [0.9, 0.8]]), torch.tensor([[1, 0], [1, 2]]), L=2)
    assert math.isnan(r2[0]) and math.isnan(r2[1])
    with pytest.raises(ValueError, match="L = 5"):
        order_r2(torch.rand(2, 3), torch.zeros(2, 5, dtype=torch.long))


def test_sequence_metrics_from_probabilities():
    probs = torch.tensor([[0.8, 0.9, 0.1, 0.95, 0.2], [0.1, 0.2, 0.3, 0.4, 0.45], [0.6, 0.7, 0.1, 0.1, 0.1]])
    sequences = torch.tensor([[1, 2, 4, 0, 0], [0, 0, 0, 0, 0], [1, 2, 0, 0, 0]])
    # Decoded: [4, 2, 1, 0, 0], [0] * 5, [2, 1, 0, 0, 0].
    results = sequence_metrics(probs, sequences)
    assert results["fixed_acc"] == pytest.approx((3 + 5 + 3) / 15)
    assert results["adaptive_acc"] == pytest.approx((1 + 1 + 0) / (3 + 1 + 2))
    assert results["multilabel_acc"] == pytest.approx(15 / 15)
    assert results["order_r2"] == pytest.approx(order_r2(probs, sequences).tolist(), nan_ok=True)


# --- binary detection --------------------------------------------------------------------------


def pairwise_auc(scores, labels):
    """The Mann-Whitney statistic: P(fake > real) + P(tie) / 2 over all pairs."""
    fakes = [s for s, l in zip(scores, labels) if l == 1]
    reals = [s for s, l in zip(scores, labels) if l == 0]
    wins = sum((f > r) + 0.5 * (f == r) for f in fakes for r in reals)
    return wins / (len(fakes) * len(reals))


@pytest.mark.parametrize(
    "scores, labels, expected_auc, expected_ap, expected_eer",
    [
        # scikit-learn's documentation example.
        ([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1], 0.75, 0.5 * 1 + 0.5 * 2 / 3, 0.5),
        # A three-way tie: the ROC takes a diagonal step from (0, 1/2) to (2/3, 1); FNR = FPR at 2/7.
        ([0.9, 0.5, 0.5, 0.5, 0.1], [1, 0, 1, 0, 0], 5 / 6, 0.5 * 1 + 0.5 * 0.5, 2 / 7),
        ([0.2, 0.3, 0.7, 0.9], [0, 0, 1, 1], 1.0, 1.0, 0.0),  # perfect
        ([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0], 0.0, 0.5 * 1 / 3 + 0.5 * 0.5, 1.0),  # inverted
        ([0.4, 0.4, 0.4], [1, 0, 0], 0.5, 1 / 3, 0.5),  # all tied: AP is the prevalence
    ],
)
def test_binary_metrics_hand_cases(scores, labels, expected_auc, expected_ap, expected_eer):
    assert auc(scores, labels) == pytest.approx(expected_auc)
    assert auc(scores, labels) == pytest.approx(pairwise_auc(scores, labels))
    assert average_precision(np.array(scores), np.array(labels)) == pytest.approx(expected_ap)
    assert eer(torch.tensor(scores), torch.tensor(labels)) == pytest.approx(expected_eer)


def test_auc_matches_pairwise_statistic_with_many_ties():
    generator = np.random.default_rng(0)
    scores = generator.integers(0, 6, size=40) / 5
    labels = generator.integers(0, 2, size=40)
    assert auc(scores, labels) == pytest.approx(pairwise_auc(scores.tolist(), labels.tolist()))


def test_accuracy_at_threshold_is_strict():
    scores, labels = [0.2, 0.5, 0.7, 0.9], [0, 1, 1, 0]
    assert accuracy_at(scores, labels) == pytest.approx(0.5)  # 0.5 is predicted real
    assert accuracy_at(scores, labels, threshold=0.4) == pytest.approx(0.75)
    assert accuracy_at([0.1, 0.9], [0, 0]) == pytest.approx(0.5)  # one class is fine here


def test_video_auc_averages_frames():
    video_ids = ["a", "a", "b", "b", "c", "c", "d", "d"]
    scores = [0.1, 0.9, 0.6, 0.8, 0.2, 0.4, 0.3, 0.5]
    labels = [0, 0, 1, 1, 0, 0, 1, 1]
    # Video means: a 0.5 and c 0.3 real, b 0.7 and d 0.4 fake: 3 of 4 pairs ordered right.
    assert video_auc(scores, labels, video_ids) == pytest.approx(3 / 4)
    assert auc(scores, labels) == pytest.approx(pairwise_auc(scores, labels))
    results = binary_metrics(scores, labels, video_ids)
    assert set(results) == {"auc", "eer", "ap", "acc", "video_auc"}
    assert results["video_auc"] == pytest.approx(3 / 4)
    assert set(binary_metrics(scores, labels)) == {"auc", "eer", "ap", "acc"}
    with pytest.raises(ValueError, match="video 'b' has frames labelled both"):
        video_auc(scores, [0, 0, 1, 0, 0, 0, 1, 1], video_ids)


@pytest.mark.parametrize(
    "scores, labels, words",
    [
        ([0.1, 0.9], [1, 1], "only class 1"),
        ([0.1, float("nan")], [0, 1], "NaN or Inf"),
        ([0.1, 0.9], [0, 2], "labels must be 0"),
        ([0.1, 0.9, 0.3], [0, 1], "same length"),
        ([], [], "non-empty"),
    ],
)
def test_binary_metrics_degenerate_input(scores, labels, words):
    for metric in (auc, eer, average_precision):
        with pytest.raises(ValueError, match=words):
            metric(scores, labels)
