"""The decoding rules beyond the threshold: the patch branch (the paper's Table 3, row I), the
training annotations' sequences (model.seen_sequences_only), and what predictions.json says of them;
and the binary model's self-blended fakes, which every term trains."""

import itertools

import pytest
import torch

from mlrank import evaluate, train
from mlrank.engine.config import load_config
from mlrank.engine.distributed import init_distributed
from mlrank.engine.runs import RunFolder, load_checkpoint
from mlrank.ranking import method as ranking_method
from mlrank.ranking.decoding import (count_shifted_logits, decode, decode_seen_sequences, distinct_sequences,
                                     seen_sequence_scores)
from mlrank.ranking.method import build_model, decode_outputs, prediction_record, unpack_batch

TINY_MODEL = ["data.image_size=32", "model.backbone=resnet10t", "model.token_dim=16", "model.num_heads=2",
              "model.out_stride=8"]


def every_sequence():
    rows = [[0] * 5]
    for length in range(1, 6):
        rows += [list(order) + [0] * (5 - length) for order in itertools.permutations(range(1, 6), length)]
    return torch.tensor(rows)


def test_candidates_are_the_distinct_sequences_shortest_first():
    sequences = torch.tensor([[2, 1, 0, 0, 0], [0, 0, 0, 0, 0], [1, 0, 0, 0, 0], [2, 1, 0, 0, 0]])
    assert distinct_sequences(sequences).tolist() == [[0] * 5, [1, 0, 0, 0, 0], [2, 1, 0, 0, 0]]
    assert distinct_sequences(every_sequence()).shape == (326, 5)


def test_seen_sequences_by_hand():
    logits = torch.tensor([[2.0, 1.0, -0.5, -3.0, -3.0]])
    candidates = distinct_sequences(torch.tensor([[0, 0, 0, 0, 0], [1, 0, 0, 0, 0], [2, 1, 0, 0, 0], [1, 2, 3, 0, 0]]))
    # score = sum of the members' logits + sum over pairs (a before b) of min(0, g_a - g_b), g = f:
    # () 0; (1) 2; (2, 1) 3 + min(0, 1 - 2) = 2; (1, 2, 3) 2.5 + 0 = 2.5
    scores = seen_sequence_scores(logits, candidates)
    assert scores[0].tolist() == [0.0, 2.0, 2.0, 2.5]
    # (1, 2), the threshold's answer, was never seen; the best seen one adds the component below 0.5
    assert decode(logits, from_logits=True)[0].tolist() == [1, 2, 0, 0, 0]
    assert decode_seen_sequences(logits, candidates)[0].tolist() == [1, 2, 3, 0, 0]
    # a tie goes to the candidate listed first, the shorter: (1) over (2, 1)
    assert decode_seen_sequences(logits, candidates[:3])[0].tolist() == [1, 0, 0, 0, 0]
    # a model that ranks the latest edit highest reads the order the other way: g = -f, so (2, 1)
    # costs nothing (3) and beats (1) (2)
    assert decode_seen_sequences(logits, candidates[:3], last_edit_highest=True)[0].tolist() == [2, 1, 0, 0, 0]
    # a count head adds log q(length): sure of one edit, it picks (1)
    count_logits = torch.tensor([[0.0, 10.0, 0.0, 0.0, 0.0, 0.0]])
    assert decode_seen_sequences(logits, candidates, count_logits=count_logits)[0].tolist() == [1, 0, 0, 0, 0]


@pytest.mark.parametrize("last_edit_highest", [False, True])
def test_with_every_sequence_seen_the_restriction_changes_nothing(last_edit_highest):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3000, 5, generator=generator) * 3
    count_logits = torch.randn(3000, 6, generator=generator) * 2
    order_scores = torch.randn(3000, 5, generator=generator)
    candidates = distinct_sequences(every_sequence())
    kwargs = {"from_logits": True, "last_edit_highest": last_edit_highest}
    assert torch.equal(decode_seen_sequences(logits, candidates, last_edit_highest=last_edit_highest),
                       decode(logits, **kwargs))
    assert torch.equal(decode_seen_sequences(logits, candidates, count_logits=count_logits,
                                             last_edit_highest=last_edit_highest),
                       decode(count_shifted_logits(logits, count_logits), **kwargs))
    assert torch.equal(decode_seen_sequences(logits, candidates, order_scores=order_scores,
                                             last_edit_highest=last_edit_highest),
                       decode(logits, order_scores=order_scores, **kwargs))


def outputs_of(logits, patch, count_logits=None):
    tokens = torch.nn.functional.normalize(torch.eye(4, 3).repeat(len(logits), 1, 1) + 0.1, dim=-1)
    outputs = {"logits": logits, "logits_patch": patch, "logits_class": 2 * logits - patch, "tokens": tokens,
               "grid": (2, 2)}
    if count_logits is not None:
        outputs["count_logits"] = count_logits
    return outputs


def test_the_patch_branch_decodes_where_the_config_says():
    fused = torch.tensor([[3.0, -1.0, 2.0, -2.0, -2.0]])
    patch = torch.tensor([[-1.0, 4.0, -2.0, 1.0, -3.0]])
    outputs = outputs_of(fused, patch)
    paper = load_config(None)
    row_one = load_config(None, ["model.decode_from=patch"])
    assert decode_outputs(paper, outputs)[0][0].tolist() == [1, 3, 0, 0, 0]
    assert decode_outputs(row_one, outputs)[0][0].tolist() == [2, 4, 0, 0, 0]
    record, _ = prediction_record(row_one, outputs)
    assert record["sequence"] == ["eye", "lip"]
    assert record["probabilities"]["eye"] == pytest.approx(torch.sigmoid(torch.tensor(4.0)).item())


def test_predictions_give_each_components_own_probability_and_the_rule_that_decided():
    logits = torch.tensor([[3.0, -0.5, 1.0, -2.0, -4.0]])
    count_logits = torch.tensor([[0.0, 0.0, 0.0, 8.0, 0.0, 0.0]])  # sure of three edits
    cfg = load_config(None, ["model.count_head=true"])
    record, _ = prediction_record(cfg, outputs_of(logits, logits, count_logits))
    # three components, though one has a negative logit: its probability stays its own, below 0.5
    assert record["decision"] == "count_head" and record["sequence"] == ["nose", "eyebrow", "eye"]
    assert [m["probability"] for m in record["manipulations"]] == pytest.approx(torch.sigmoid(
        torch.tensor([3.0, 1.0, -0.5])).tolist())
    assert record["probabilities"]["eye"] < 0.5
    assert record["count_probabilities"]["3"] == pytest.approx(torch.softmax(count_logits[0], 0)[3].item())
    assert sum(record["count_probabilities"].values()) == pytest.approx(1.0)
    # a threshold asked for decides by each component's own probability, the count head aside
    record, _ = prediction_record(cfg, outputs_of(logits, logits, count_logits), threshold=0.5)
    assert (record["decision"], record["threshold"], record["sequence"]) == ("threshold", 0.5, ["nose", "eyebrow"])
    # among the training sequences
    seen = load_config(None, ["model.seen_sequences_only=true"])
    record, _ = prediction_record(seen, outputs_of(logits, logits), training_sequences=torch.tensor([[3, 1, 2, 0, 0]]))
    assert record["decision"] == "seen_sequences" and record["sequence"] == ["eyebrow", "nose", "eye"]


def test_decoding_among_the_training_sequences_needs_them(tmp_path):
    with pytest.raises(ValueError, match="needs sequence annotations"):
        load_config(None, ["data.kind=frames", "model.num_classes=1", "model.seen_sequences_only=true"])
    cfg = load_config(None, [*TINY_MODEL, "model.seen_sequences_only=true", "data.num_workers=0"])
    model = build_model(cfg)  # never trained: it holds no sequences
    dataset = [(torch.zeros(3, 32, 32), torch.tensor([1, 0, 0, 0, 0]))]
    with pytest.raises(ValueError, match="seen_sequences_only decodes among the training annotations"):
        ranking_method.evaluate(cfg, model, dataset, init_distributed(use_cuda=False), "test")
    with pytest.raises(ValueError, match="holds none"):
        ranking_method.predict_image(cfg, model, torch.zeros(1, 3, 32, 32), None)


def test_a_trained_checkpoint_holds_its_training_sequences_and_decodes_among_them(tmp_path):
    run = tmp_path / "run"
    overrides = [*TINY_MODEL, "data.synthetic_train_size=12", "data.synthetic_val_size=6", "data.synthetic_test_size=6",
                 "data.batch_size=6", "data.num_workers=0", "optim.epochs=1", f"output_dir={run}"]
    assert train.main(overrides) == 0
    state = load_checkpoint(run / "best.pt")
    from mlrank.data.synthetic import SyntheticSeqDeepFake

    training = SyntheticSeqDeepFake("train", size=32, num_images=12).sequences()
    assert torch.equal(state["model"]["training_sequences"], distinct_sequences(training))
    output = tmp_path / "seen.json"
    assert evaluate.main([str(run / "best.pt"), "--output", str(output), "model.seen_sequences_only=true"]) == 0
    # every decoded test sequence is a training one
    cfg, _, model = evaluate.load_model(run / "best.pt", ["model.seen_sequences_only=true"])
    dataset = ranking_method.evaluation_dataset(cfg, "test")
    predictions = ranking_method.predict_split(cfg, model, dataset, init_distributed(use_cuda=False))
    seen = {tuple(row) for row in training.tolist()}
    assert all(tuple(row) in seen for row in predictions["sequences"].tolist())


def triplet_batch(labels):
    images = torch.rand(2, 3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    kinds = torch.tensor([[0, 1, 2], [0, 1, 2]])  # real, its pseudo-fake, a fake
    return images, labels, kinds


def branch_gradients(cfg, batch):
    """d L_Total / d (f^U, f^V) of each image of a batch of triplets, as training computes L_Total."""
    model = build_model(cfg)
    images, labels, mask = unpack_batch(batch, torch.device("cpu"))
    kept = {}
    forward = model.forward

    def keeping(inputs):
        outputs = forward(inputs)
        for key in ("logits_patch", "logits_class"):
            outputs[key].retain_grad()
            kept[key] = outputs[key]
        return outputs

    model.forward = keeping
    ranking_method.batch_losses(cfg, model, images, labels, mask)["total"].backward()
    return kept["logits_patch"].grad, kept["logits_class"].grad, mask


def test_a_self_blended_fake_trains_both_branches_of_a_binary_model():
    cfg = load_config("ffpp_swin", [*TINY_MODEL, "model.token_dim=16", "model.num_heads=2", "data.root=null"])
    patch, klass, mask = branch_gradients(cfg, triplet_batch(torch.tensor([[0, 1, 1], [0, 1, 1]])))
    assert mask is None
    pseudo_fakes = [1, 4]  # the flattened triplets' second images
    for gradient in (patch, klass):
        # a fake's BCE pulls its logit up: a negative gradient, as for the data set's fakes (2, 5)
        assert (gradient[pseudo_fakes] < 0).all() and (gradient[[2, 5]] < 0).all()
        assert (gradient[[0, 3]] > 0).all()  # the reals are pushed down


def test_a_self_blended_fake_stays_out_of_the_component_terms_of_a_sequence_model():
    cfg = load_config(None, TINY_MODEL)
    sequences = torch.tensor([[[0] * 5, [0] * 5, [2, 1, 0, 0, 0]], [[0] * 5, [0] * 5, [3, 0, 0, 0, 0]]])
    patch, klass, mask = branch_gradients(cfg, triplet_batch(sequences))
    assert mask.tolist() == [1, 0, 1, 1, 0, 1]
    for gradient in (patch, klass):
        assert (gradient[[1, 4]] == 0).all() and (gradient[[0, 2, 3, 5]] != 0).any(dim=1).all()
