"""Forward + backward of contrastive MIL on the CPU: the op against the reference and its floor.

Run with ``python -m pytest benchmarks`` (see README); the summary at the end is a
table of ratios measured in this one run. Nothing here asserts a time.

* ``reference`` / ``op``: exact max over every k; ``*_k100``: the paper's num_k = 100;
  ``aten``: the device-generic implementation (``impl="aten"``) on the CPU.
* ``floor``: what any implementation of the contract must do at least: the two
  matrix products (S = T T^T forward, (G + G^T) T backward) plus one keys-only sort
  of the n triangle values per image (numpy's sort, images shared over the same
  number of threads as torch uses).
* Saved bytes: tensors kept for backward, counted with saved_tensors_hooks, once
  per storage; "beyond input" leaves out the tokens themselves, which the caller
  holds anyway.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from mlrank.ops import contrastive_mil
from mlrank.ops import reference

from benchmarks.memory import saved_storages
from benchmarks.results import RESULTS

SHAPES = [(32, 144, 256), (8, 576, 256)]
IMPLEMENTATIONS = {
    "reference": lambda x: reference.contrastive_mil(x),
    "reference_k100": lambda x: reference.contrastive_mil(x, num_k=100),
    "op": lambda x: contrastive_mil(x),
    "op_k100": lambda x: contrastive_mil(x, num_k=100),
    "aten": lambda x: contrastive_mil(x, impl="aten"),
}


def unit_tokens(shape):
    generator = torch.Generator().manual_seed(0)
    return torch.nn.functional.normalize(torch.randn(*shape, generator=generator), dim=-1)


def forward_backward(fn, leaf):
    leaf.grad = None
    prob, _, u_mean = fn(leaf)
    (prob.sum() + u_mean.sum()).backward()


def saved_bytes(fn, leaf) -> tuple[int, int]:
    """(all saved bytes, saved bytes beyond the input's own storage), per storage."""
    storages = saved_storages(lambda: fn(leaf))
    input_ptr = leaf.untyped_storage().data_ptr()
    total = sum(storages.values())
    return total, total - storages.get(input_ptr, 0)


def run(benchmark, fn, rounds):
    """(median, min) seconds; shared machines steal time, so both are reported."""
    benchmark.pedantic(fn, rounds=rounds, warmup_rounds=2, iterations=1)
    return benchmark.stats.stats.median, benchmark.stats.stats.min


def shape_id(shape):
    return "B{}-N{}-d{}".format(*shape)


@pytest.mark.parametrize("name", list(IMPLEMENTATIONS))
@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_forward_backward(benchmark, shape, name):
    benchmark.group = shape_id(shape)
    leaf = unit_tokens(shape).requires_grad_()
    fn = IMPLEMENTATIONS[name]
    rounds = 15 if name.startswith("reference") else 40
    RESULTS.setdefault(shape, {})[name] = run(benchmark, lambda: forward_backward(fn, leaf), rounds)
    RESULTS[shape][name + "_saved"] = saved_bytes(fn, leaf.detach().clone().requires_grad_())


@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_floor_matrix_products(benchmark, shape):
    benchmark.group = shape_id(shape)
    tokens = unit_tokens(shape)
    weights = torch.rand(shape[0], shape[1], shape[1])

    def products():
        torch.bmm(tokens, tokens.transpose(1, 2))
        torch.bmm(weights, tokens)

    RESULTS.setdefault(shape, {})["floor_products"] = run(benchmark, products, 30)


@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_floor_key_sort(benchmark, shape):
    benchmark.group = shape_id(shape)
    tokens = unit_tokens(shape)
    num_tokens = shape[1]
    rows, cols = torch.triu_indices(num_tokens, num_tokens, offset=1)
    values = torch.bmm(tokens, tokens.transpose(1, 2)).relu()[:, rows, cols].numpy()
    workers = torch.get_num_threads()
    chunks = np.array_split(values, workers)
    with ThreadPoolExecutor(workers) as pool:  # numpy releases the GIL while sorting

        def sort_keys():
            list(pool.map(lambda chunk: np.sort(chunk, axis=-1), chunks))

        RESULTS.setdefault(shape, {})["floor_sort"] = run(benchmark, sort_keys, 30)
