"""Bootstrap intervals of the sequence metrics: the per-image terms pool to the metrics, and the
intervals behave as a bootstrap must."""

import itertools

import numpy as np
import pytest
import torch

from mlrank.ranking.decoding import decode, edit_order_scores
from mlrank.task import bootstrap
from mlrank.task.metrics import adaptive_acc, fixed_acc, kendall_tau, multilabel_acc, ordered_pairs


def random_split(count, seed):
    generator = torch.Generator().manual_seed(seed)
    rows = [[0] * 5]
    for length in range(1, 6):
        rows += [list(order) + [0] * (5 - length) for order in itertools.permutations(range(1, 6), length)]
    gt = torch.tensor(rows)[torch.randint(0, len(rows), (count,), generator=generator)]
    logits = torch.randn(count, 5, generator=generator) * 2
    return gt, logits


@pytest.mark.parametrize("last_edit_highest", [False, True])
def test_the_per_image_terms_pool_to_the_metrics(last_edit_highest):
    gt, logits = random_split(500, seed=1)
    pred = decode(logits, from_logits=True, last_edit_highest=last_edit_highest)
    order = edit_order_scores(logits, from_logits=True, last_edit_highest=last_edit_highest)
    terms = bootstrap.per_image_terms(pred, gt, order)
    labels = (gt.unsqueeze(2) == torch.arange(1, 6)).any(dim=1).float()
    expected = {
        "fixed_acc": fixed_acc(pred, gt),
        "adaptive_acc": adaptive_acc(pred, gt),
        "multilabel_acc": multilabel_acc(logits, labels, from_logits=True),
        "ordered_pairs": ordered_pairs(pred, gt),
        "kendall_tau": kendall_tau(order, gt),
    }
    assert {name: bootstrap.pooled(terms[name]) for name in bootstrap.METRICS} == pytest.approx(expected, abs=1e-12)


def test_fixed_acc_terms_by_hand():
    pred = torch.tensor([[1, 2, 0, 0, 0], [0, 0, 0, 0, 0]])
    gt = torch.tensor([[2, 1, 0, 0, 0], [0, 0, 0, 0, 0]])
    terms = bootstrap.per_image_terms(pred, gt, torch.zeros(2, 5))
    assert terms["fixed_acc"].tolist() == [[3, 5], [5, 5]]
    assert terms["adaptive_acc"].tolist() == [[0, 2], [1, 1]]  # both empty: 1 of 1, as test.py counts
    assert terms["ordered_pairs"].tolist() == [[0, 1], [0, 0]]


def test_intervals_hold_the_estimate_narrow_with_more_images_and_a_model_against_itself_is_zero():
    gt, logits = random_split(4000, seed=2)
    pred = decode(logits, from_logits=True)
    terms = bootstrap.per_image_terms(pred, gt, logits)["ordered_pairs"]
    widths = []
    for count in (400, 4000):
        low, high = bootstrap.interval(terms[:count], bootstrap.resample_indices(count, 1000, seed=0))
        assert low <= bootstrap.pooled(terms[:count]) <= high
        widths.append(high - low)
    assert widths[1] < widths[0] / 2  # about 1/sqrt(10)
    indices = bootstrap.resample_indices(4000, 500, seed=0)
    assert bootstrap.difference_interval(terms, terms, indices) == (0.0, 0.0)
    # the same seed, the same interval
    assert bootstrap.interval(terms, indices) == bootstrap.interval(terms, bootstrap.resample_indices(4000, 500, seed=0))
    with pytest.raises(ValueError, match="other images"):
        bootstrap.difference_interval(terms[:10], terms[:11], indices[:, :10])
    assert np.isfinite(bootstrap.difference_interval(terms, terms[::-1].copy(), indices)).all()
