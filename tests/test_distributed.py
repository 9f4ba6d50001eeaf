"""Distributed helpers: the single-process fallback, torchrun's environment, and two gloo processes."""

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from mlrank.engine.distributed import (
    DistContext,
    all_gather_tensors,
    autocast_dtype,
    cleanup,
    gather_objects,
    init_distributed,
    make_sampler,
    unwrap_model,
    wrap_ddp,
)

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
DATASET_SIZE = 5  # not a multiple of 2: the sampler pads one sample


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tiny_model(seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))


def rank_inputs(rank):
    return torch.randn(6, 3, generator=torch.Generator().manual_seed(100 + rank))


def two_process_worker(rank, world_size, port, folder):
    env = {"RANK": rank, "LOCAL_RANK": rank, "WORLD_SIZE": world_size, "MASTER_PORT": port}
    os.environ.update({key: str(value) for key, value in env.items()}, MASTER_ADDR="127.0.0.1")
    ctx = init_distributed(use_cuda=False)
    try:
        # Rows of different lengths per rank, in rank order.
        rows = torch.full((3 if rank == 0 else 1, 2), float(rank))
        concatenated = all_gather_tensors(rows, ctx)
        # Evaluation through the sampler: each rank predicts 10 * index for the samples it is given.
        indices = list(make_sampler(range(DATASET_SIZE), ctx, shuffle=False, seed=0))
        predictions = all_gather_tensors(torch.tensor(indices, dtype=torch.float32) * 10, ctx, DATASET_SIZE)
        flags = all_gather_tensors(torch.tensor([index % 2 == 0 for index in indices]), ctx, DATASET_SIZE)
        # DDP: different initial weights per rank (rank 0's win), different data per rank.
        model = wrap_ddp(tiny_model(seed=rank), ctx)
        initial = {name: value.detach().clone() for name, value in unwrap_model(model).state_dict().items()}
        model(rank_inputs(rank)).pow(2).sum().backward()
        gradients = [parameter.grad.clone() for parameter in model.parameters()]
        torch.save(
            {
                "ctx": (ctx.rank, ctx.world_size, ctx.local_rank, ctx.is_main, str(ctx.device)),
                "indices": indices,
                "concatenated": concatenated,
                "predictions": predictions,
                "flags": flags,
                "objects": gather_objects({"rank": rank}, ctx),
                "initial": initial,
                "gradients": gradients,
            },
            os.path.join(folder, f"rank{rank}.pt"),
        )
    finally:
        cleanup(ctx)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp")
    mp.spawn(two_process_worker, args=(2, free_port(), str(folder)), nprocs=2, join=True)
    return [torch.load(folder / f"rank{rank}.pt", weights_only=False) for rank in range(2)]


def test_two_processes_know_their_place(two_ranks):
    assert two_ranks[0]["ctx"] == (0, 2, 0, True, "cpu")
    assert two_ranks[1]["ctx"] == (1, 2, 1, False, "cpu")
    assert two_ranks[0]["objects"] == two_ranks[1]["objects"] == [{"rank": 0}, {"rank": 1}]


def test_all_gather_of_different_lengths_concatenates_in_rank_order(two_ranks):
    expected = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    for result in two_ranks:
        assert torch.equal(result["concatenated"], expected)


def test_evaluation_gather_uses_each_sample_once_in_order(two_ranks):
    # The sampler gives rank 0 samples 0, 2, 4 and rank 1 samples 1, 3 and the padding sample 0.
    assert two_ranks[0]["indices"] == [0, 2, 4] and two_ranks[1]["indices"] == [1, 3, 0]
    for result in two_ranks:
        assert torch.equal(result["predictions"], torch.arange(DATASET_SIZE, dtype=torch.float32) * 10)
        assert torch.equal(result["flags"], torch.tensor([True, False, True, False, True]))


def test_ddp_averages_gradients_across_ranks(two_ranks):
    first, second = two_ranks
    for name in first["initial"]:  # DDP gave rank 1 the weights of rank 0
        assert torch.equal(first["initial"][name], second["initial"][name])
    for grad0, grad1 in zip(first["gradients"], second["gradients"]):
        assert torch.equal(grad0, grad1)
    # Reference: one process, rank 0's weights, the mean of the two ranks' gradients.
    reference_grads = []
    for rank in range(2):
        model = tiny_model(seed=0)
        model.load_state_dict(first["initial"])
        model(rank_inputs(rank)).pow(2).sum().backward()
        reference_grads.append([parameter.grad for parameter in model.parameters()])
    for got, grad0, grad1 in zip(first["gradients"], *reference_grads):
        torch.testing.assert_close(got, (grad0 + grad1) / 2)


@pytest.fixture
def no_torchrun(monkeypatch):
    for name in TORCHRUN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_single_process_fallback(no_torchrun):
    ctx = init_distributed(use_cuda=False)
    assert ctx == DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    assert ctx.is_main and not ctx.distributed
    model = torch.nn.Linear(2, 2)
    assert wrap_ddp(model, ctx) is model and unwrap_model(model) is model
    rows = torch.arange(6.0).reshape(3, 2)
    assert all_gather_tensors(rows, ctx) is rows
    assert all_gather_tensors(rows, ctx, dataset_size=3) is rows
    with pytest.raises(ValueError, match="holds 3 rows but dataset_size is 4"):
        all_gather_tensors(rows, ctx, dataset_size=4)
    with pytest.raises(ValueError, match="leading sample dimension"):
        all_gather_tensors(torch.tensor(1.0), ctx)
    assert gather_objects("x", ctx) == ["x"]
    cleanup(ctx)


def test_single_process_sampler_order_depends_on_seed_and_epoch_only(no_torchrun):
    ctx = init_distributed(use_cuda=False)
    assert list(make_sampler(range(7), ctx, shuffle=False, seed=0)) == list(range(7))
    sampler = make_sampler(range(7), ctx, shuffle=True, seed=4)
    orders = []
    for epoch in range(2):
        sampler.set_epoch(epoch)
        orders.append(list(sampler))
    assert sorted(orders[0]) == list(range(7)) and orders[0] != orders[1]
    again = make_sampler(range(7), ctx, shuffle=True, seed=4)
    again.set_epoch(1)
    assert list(again) == orders[1]
    # The order is torch.randperm seeded with seed + epoch, as DistributedSampler documents.
    assert orders[1] == torch.randperm(7, generator=torch.Generator().manual_seed(5)).tolist()


@pytest.mark.parametrize(
    "environment, message",
    [
        ({"WORLD_SIZE": "two"}, "WORLD_SIZE must be an integer, got 'two'"),
        ({"WORLD_SIZE": "0"}, "WORLD_SIZE must be at least 1"),
        ({"WORLD_SIZE": "2", "LOCAL_RANK": "0"}, "RANK is not set"),
        ({"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}, "MASTER_ADDR is not set"),
        (
            {"WORLD_SIZE": "2", "RANK": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"},
            "RANK=2 is outside 0..WORLD_SIZE-1=1",
        ),
    ],
)
def test_bad_torchrun_environment_names_the_variable(no_torchrun, environment, message):
    for name, value in environment.items():
        no_torchrun.setenv(name, value)
    with pytest.raises(ValueError) as error:
        init_distributed(use_cuda=False)
    assert message in str(error.value)


def test_autocast_dtype():
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert autocast_dtype("auto", cpu) is None and autocast_dtype("auto", cuda) is torch.bfloat16
    assert autocast_dtype("bf16", cpu) is torch.bfloat16 and autocast_dtype("fp32", cuda) is None
    with pytest.raises(ValueError, match="train.amp must be"):
        autocast_dtype("fp16", cuda)
