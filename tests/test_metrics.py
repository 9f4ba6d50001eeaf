"""Sequence and binary metrics on hand-computed cases (SeqDeepFake's conventions, sklearn's ties)."""

import math

import numpy as np
import pytest
import torch

from mlrank import predict
from mlrank.engine.config import load_config
from mlrank.engine.distributed import init_distributed
from mlrank.ranking import method as ranking_method
from mlrank.ranking.metrics import sequence_metrics
from mlrank.task.metrics import (
    accuracy_at,
    adaptive_acc,
    auc,
    average_precision,
    binary_metrics,
    eer,
    fixed_acc,
    kendall_tau,
    multilabel_acc,
    order_r2,
    ordered_pairs,
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


def test_multilabel_acc_from_logits():
    # f > 0 is P > 0.5; 1e-9 is a detection although its float32 probability rounds to 0.5.
    logits = torch.tensor([[1e-9, 0.0, -2.0], [0.4, -0.4, 3.0]])
    y = torch.tensor([[1, 0, 0], [0, 0, 1]])
    # Detected at 0.5: [[1, 0, 0], [1, 0, 1]]: only (1, 0) is wrong.
    assert multilabel_acc(logits, y, from_logits=True) == pytest.approx(5 / 6)
    assert multilabel_acc(torch.sigmoid(logits), y) == pytest.approx(4 / 6)
    # At 0.65 the cut is log(0.65 / 0.35) = 0.619: [[0, 0, 0], [0, 0, 1]]: only (0, 0) is wrong.
    assert multilabel_acc(logits, y, threshold=0.65, from_logits=True) == pytest.approx(5 / 6)
    assert multilabel_acc(logits + 0.3, y, threshold=0.65, from_logits=True) == pytest.approx(4 / 6)
    with pytest.raises(ValueError, match="from_logits=True"):
        multilabel_acc(logits * 10, y)


# --- ordered pairs and Kendall's tau -----------------------------------------------------------


@pytest.mark.parametrize(
    "pred, gt, right, pairs",
    [
        ([[1, 2, 3, 0, 0]], [[1, 2, 3, 0, 0]], 3, 3),
        # (1, 2) reversed; (1, 3) and (2, 3) kept.
        ([[2, 1, 3, 0, 0]], [[1, 2, 3, 0, 0]], 2, 3),
        # 2 missing: (1, 2) and (2, 3) wrong, (1, 3) right.
        ([[1, 3, 0, 0, 0]], [[1, 2, 3, 0, 0]], 1, 3),
        # An extra predicted component (5) changes nothing: (4, 2) right.
        ([[5, 4, 2, 0, 0]], [[4, 2, 0, 0, 0]], 1, 1),
        # Nothing predicted: the one pair is wrong.
        ([[0, 0, 0, 0, 0]], [[4, 2, 0, 0, 0]], 0, 1),
        # Full reversal of five: none of the 10 pairs right.
        ([[5, 4, 3, 2, 1]], [[1, 2, 3, 4, 5]], 0, 10),
    ],
)
def test_ordered_pairs_hand_cases(pred, gt, right, pairs):
    assert ordered_pairs(pred, gt) == pytest.approx(right / pairs)


def test_ordered_pairs_pooled_genuine_and_single_edits_have_no_pairs():
    pred = torch.tensor([[2, 1, 3, 0, 0], [5, 4, 2, 0, 0], [3, 0, 0, 0, 0], [0, 0, 0, 0, 0], [1, 0, 0, 0, 0]])
    gt = torch.tensor([[1, 2, 3, 0, 0], [4, 2, 0, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0], [2, 0, 0, 0, 0]])
    # Pooled: (2 + 1) / (3 + 1) = 3/4, not the mean of the rows (2/3 + 1) / 2 = 5/6; the genuine
    # and single-edit rows (right or wrong) add no pair.
    assert ordered_pairs(pred, gt) == pytest.approx(3 / 4)
    assert math.isnan(ordered_pairs(pred[2:], gt[2:]))


def test_ordered_pairs_bad_input():
    with pytest.raises(ValueError, match="pred row 0 repeats a component id"):
        ordered_pairs([[1, 1, 0]], [[1, 2, 0]])
    with pytest.raises(ValueError, match="same shape"):
        ordered_pairs([[1, 2]], [[1, 2, 0]])


@pytest.mark.parametrize(
    "logits, gt, tau",
    [
        ([[3.0, 2.0, 1.0]], [[1, 2, 3]], 1.0),
        ([[1.0, 2.0, 3.0]], [[1, 2, 3]], -1.0),
        # Components 1 and 2 tie: that pair counts 0; (1, 3) and (2, 3) are concordant: 2/3.
        ([[5.0, 5.0, 1.0]], [[1, 2, 3]], 2 / 3),
        # Y = (3, 1): f_3 = 0.5 > f_1 = -2: concordant, though neither is above the threshold.
        ([[-2.0, 9.0, 0.5]], [[3, 1, 0]], 1.0),
        # Y = (2, 3, 1): pairs (2, 3) +, (2, 1) -, (3, 1) -: (1 - 2) / 3.
        ([[4.0, 3.0, 2.0]], [[2, 3, 1]], -1 / 3),
    ],
)
def test_kendall_tau_hand_cases(logits, gt, tau):
    assert kendall_tau(torch.tensor(logits), torch.tensor(gt)) == pytest.approx(tau)


def test_kendall_tau_on_logits_not_saturated_probabilities():
    # Y = (2, 1) and f = (25, 30): concordant on the logits; both probabilities round to 1.0 in
    # float32 and tie, which counts 0.
    logits = torch.tensor([[25.0, 30.0, -5.0]])
    gt = torch.tensor([[2, 1, 0]])
    assert kendall_tau(logits, gt) == 1.0
    assert kendall_tau(torch.sigmoid(logits), gt) == 0.0


def test_kendall_tau_averages_images_with_two_edits_only():
    logits = torch.tensor([[3.0, 2.0, 1.0], [5.0, 5.0, 1.0], [0.0, 1.0, 2.0], [1.0, 2.0, 3.0]])
    gt = torch.tensor([[1, 2, 3], [1, 2, 3], [0, 0, 0], [1, 0, 0]])
    # (1 + 2/3) / 2; the genuine row and the single edit are left out (else 5/12 or 5/9 ...).
    assert kendall_tau(logits, gt) == pytest.approx(5 / 6)
    assert math.isnan(kendall_tau(logits[2:], gt[2:]))
    with pytest.raises(ValueError, match="2 rows but sequences has 1"):
        kendall_tau(logits[:2], gt[:1])


def test_sequence_metrics_from_logits_keep_the_order_probabilities_tie():
    # Truth (2, 1): the logits decode to (2, 1); the probabilities, both 1.0, to (1, 2) by the tie rule.
    logits = torch.tensor([[25.0, 30.0, -5.0, -5.0, -5.0], [-3.0, -3.0, -3.0, -3.0, -3.0]])
    sequences = torch.tensor([[2, 1, 0, 0, 0], [0, 0, 0, 0, 0]])
    from_logits = sequence_metrics(logits, sequences, from_logits=True)
    assert from_logits["fixed_acc"] == 1.0 and from_logits["adaptive_acc"] == 1.0
    assert from_logits["ordered_pairs"] == 1.0 and from_logits["kendall_tau"] == 1.0
    from_probs = sequence_metrics(torch.sigmoid(logits), sequences)
    assert from_probs["fixed_acc"] == pytest.approx(8 / 10)
    assert from_probs["adaptive_acc"] == pytest.approx((0 + 1) / (2 + 1))
    assert from_probs["ordered_pairs"] == 0.0 and from_probs["kendall_tau"] == 0.0


# --- the evaluation and prediction paths decode the logits -------------------------------------


class FixedOutputs(torch.nn.Module):
    """A stand-in model: image k (its first pixel holds k) gets the k-th row of ``logits``."""

    def __init__(self, logits):
        super().__init__()
        self.register_buffer("logits", logits)
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # predict reads the device off a parameter

    def forward(self, images):
        index = images[:, 0, 0, 0].long()
        tokens = torch.nn.functional.normalize(torch.eye(4, 3).repeat(len(images), 1, 1) + 0.1, dim=-1)
        return {"logits": self.logits[index], "tokens": tokens, "grid": (2, 2)}


def image_with_index(index):
    image = torch.zeros(3, 8, 8)
    image[0, 0, 0] = index
    return image


def test_evaluation_metrics_come_from_the_logits():
    logits = torch.tensor([[25.0, 30.0, -5.0, -5.0, -5.0], [-4.0, 35.0, 2.0, 40.0, -1.0], [-3.0] * 5])
    truth = torch.tensor([[2, 1, 0, 0, 0], [4, 2, 3, 0, 0], [0, 0, 0, 0, 0]])
    dataset = [(image_with_index(k), truth[k]) for k in range(3)]
    cfg = load_config(None, ["data.num_workers=0", "data.batch_size=2", "model.last_edit_highest=false"])
    metrics = ranking_method.evaluate(cfg, FixedOutputs(logits), dataset, init_distributed(use_cuda=False), "test")
    # Every sequence right; from the probabilities, which tie at 1.0, rows 0 and 1 would decode to
    # (1, 2) and (2, 4, 3).
    assert metrics["fixed_acc"] == 1.0 and metrics["ordered_pairs"] == 1.0 and metrics["kendall_tau"] == 1.0
    assert metrics["multilabel_acc"] == 1.0
    # A split without an image of two edits has no order metric: null in the JSON.
    single = [(image_with_index(0), torch.tensor([2, 0, 0, 0, 0])), (image_with_index(2), truth[2])]
    metrics = ranking_method.evaluate(cfg, FixedOutputs(logits), single, init_distributed(use_cuda=False), "test")
    assert metrics["ordered_pairs"] is None and metrics["kendall_tau"] is None


def test_predict_orders_components_by_their_logits():
    cfg = load_config(None, ["model.last_edit_highest=false"])  # the paper's order: the first edit highest
    model = FixedOutputs(torch.tensor([[25.0, 30.0, -5.0, 3.0, -5.0]]))
    record, _ = predict.predict_image(cfg, model, image_with_index(0), threshold=0.5)
    assert [m["name"] for m in record["manipulations"]] == ["eye", "nose", "lip"]
    assert [m["probability"] for m in record["manipulations"]][:2] == [1.0, 1.0]


# --- a model that scores the most recent edit highest (model.last_edit_highest) ------------------


def test_reverse_edit_order_by_hand():
    from mlrank.ranking.decoding import reverse_edit_order

    sequences = torch.tensor([[4, 2, 0, 0, 0], [1, 2, 3, 4, 5], [0, 0, 0, 0, 0], [3, 0, 0, 0, 0]])
    expected = torch.tensor([[2, 4, 0, 0, 0], [5, 4, 3, 2, 1], [0, 0, 0, 0, 0], [3, 0, 0, 0, 0]])
    assert torch.equal(reverse_edit_order(sequences), expected)
    assert torch.equal(reverse_edit_order(expected), sequences)


def test_decoding_the_most_recent_edit_highest_lists_the_detected_by_increasing_logit():
    from mlrank.ranking.decoding import decode, edit_order_scores

    logits = torch.tensor([[3.0, -1.0, 1.0, 5.0, -2.0], [-1.0] * 5])
    # Detected: 1 (3), 3 (1), 4 (5); the paper's order 4, 1, 3; the other way 3, 1, 4.
    assert decode(logits, from_logits=True)[0].tolist() == [4, 1, 3, 0, 0]
    assert decode(logits, from_logits=True, last_edit_highest=True)[0].tolist() == [3, 1, 4, 0, 0]
    assert decode(logits, from_logits=True, last_edit_highest=True)[1].tolist() == [0] * 5
    # The same from probabilities, and the threshold still decides what is detected.
    assert decode(logits.sigmoid(), last_edit_highest=True)[0].tolist() == [3, 1, 4, 0, 0]
    assert decode(logits, 0.9, from_logits=True, last_edit_highest=True)[0].tolist() == [1, 4, 0, 0, 0]
    # Order scores: detected mirrored within [1, 5] (1 -> 5, 3 -> 3, 5 -> 1), the rest unchanged.
    mirrored = edit_order_scores(logits, from_logits=True, last_edit_highest=True)
    assert mirrored[0].tolist() == [3.0, -1.0, 5.0, 1.0, -2.0] and torch.equal(mirrored[1], logits[1])


def test_sequence_metrics_of_a_model_that_scores_the_latest_edit_highest():
    logits = torch.tensor([[30.0, 25.0, -5.0, -5.0, -5.0], [-4.0, 2.0, 35.0, 40.0, -1.0]])
    truth = torch.tensor([[2, 1, 0, 0, 0], [2, 3, 4, 0, 0]])  # the later edit has the higher logit
    latest = sequence_metrics(logits, truth, from_logits=True, last_edit_highest=True)
    paper = sequence_metrics(logits, truth, from_logits=True)
    assert latest["fixed_acc"] == 1.0 and latest["ordered_pairs"] == 1.0 and latest["kendall_tau"] == 1.0
    assert paper["ordered_pairs"] == 0.0 and paper["kendall_tau"] == -1.0
    assert latest["multilabel_acc"] == paper["multilabel_acc"] == 1.0


def test_evaluate_and_predict_follow_the_models_order():
    logits = torch.tensor([[30.0, 25.0, -5.0, -5.0, -5.0]])
    truth = torch.tensor([2, 1, 0, 0, 0])
    cfg = load_config(None, ["data.num_workers=0", "data.batch_size=1", "model.last_edit_highest=true"])
    metrics = ranking_method.evaluate(cfg, FixedOutputs(logits), [(image_with_index(0), truth)],
                                  init_distributed(use_cuda=False), "test")
    assert metrics["fixed_acc"] == 1.0 and metrics["kendall_tau"] == 1.0
    record, _ = predict.predict_image(cfg, FixedOutputs(logits), image_with_index(0), threshold=0.5)
    assert [m["name"] for m in record["manipulations"]] == ["eye", "nose"]


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


# --- binary metrics against scikit-learn (the field's reference: DeepfakeBench computes with it) --


def random_binary_cases(count=300, seed=0):
    """Scores on a coarse grid (so many tie, across and within classes), both classes present."""
    generator = np.random.default_rng(seed)
    for case in range(count):
        size = int(generator.integers(2, 60))
        labels = generator.integers(0, 2, size=size)
        labels[:2] = (0, 1)
        generator.shuffle(labels)
        levels = int(generator.integers(1, 8))  # 1: every score tied
        scores = generator.integers(0, levels, size=size) / max(1, levels - 1)
        if case % 3 == 0:  # some cases without ties
            scores = generator.random(size)
        yield scores, labels


def roc_crossing(fpr, tpr):
    """Where FNR = 1 - TPR meets FPR on the polyline through sklearn's ROC points: the gap FNR - FPR
    falls along the curve, so the crossing is the zero of the piecewise-linear gap over the index."""
    gap = (1 - tpr) - fpr
    position = np.interp(0.0, -gap, np.arange(gap.size))  # -gap rises from -1 to 1
    return float(np.interp(position, np.arange(fpr.size), fpr))


def test_auc_and_ap_equal_scikit_learn_on_random_cases_with_ties():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    for scores, labels in random_binary_cases():
        assert auc(scores, labels) == pytest.approx(sklearn_metrics.roc_auc_score(labels, scores), abs=1e-12)
        assert average_precision(scores, labels) == pytest.approx(
            sklearn_metrics.average_precision_score(labels, scores), abs=1e-12
        )


def test_eer_is_the_crossing_on_scikit_learns_roc_curve():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    for scores, labels in random_binary_cases():
        fpr, tpr, _ = sklearn_metrics.roc_curve(labels, scores, drop_intermediate=False)
        assert eer(scores, labels) == pytest.approx(roc_crossing(fpr, tpr), abs=1e-12)


def deepfakebench_eer(scores, labels, sklearn_metrics):
    """DeepfakeBench's rule (training/metrics/utils.py): the FPR of the ROC vertex (sklearn's
    default, intermediate points dropped) where |FNR - FPR| is smallest."""
    fpr, tpr, _ = sklearn_metrics.roc_curve(labels, scores)
    return float(fpr[np.nanargmin(np.abs((1 - tpr) - fpr))])


def test_eer_against_deepfakebenchs_nearest_vertex_rule():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    # Both agree where the ROC has a vertex with FPR = FNR: scores 0.1 .. 0.4 (reals) below
    # 0.5 .. 0.8 (fakes) except one swap on each side gives the vertex (1/4, 1/4).
    scores = [0.1, 0.2, 0.3, 0.6, 0.4, 0.5, 0.7, 0.8]
    labels = [0, 0, 0, 0, 1, 1, 1, 1]
    assert eer(scores, labels) == pytest.approx(0.25)
    assert deepfakebench_eer(scores, labels, sklearn_metrics) == pytest.approx(0.25)
    # They differ where the crossing lies inside a segment. A constant score (a model that knows
    # nothing) has EER 1/2; the nearest-vertex rule reports the FPR of (0, 0), an EER of 0.
    assert eer([0.5] * 4, [0, 1, 0, 1]) == pytest.approx(0.5)
    assert deepfakebench_eer([0.5] * 4, [0, 1, 0, 1], sklearn_metrics) == 0.0
    # On random cases the rule's value is an FPR of one end of the crossing segment of the
    # (intermediate-dropped) curve, so it never lies farther from ours than that segment is wide.
    for scores, labels in random_binary_cases(seed=1):
        fpr, tpr, _ = sklearn_metrics.roc_curve(labels, scores)
        ours = eer(scores, labels)
        crossing = int(np.flatnonzero((1 - tpr) - fpr <= 0)[0])
        low, high = fpr[max(crossing - 1, 0)], fpr[crossing]
        assert low - 1e-12 <= ours <= high + 1e-12
        assert low - 1e-12 <= deepfakebench_eer(scores, labels, sklearn_metrics) <= high + 1e-12
