"""Forward + backward of contrastive MIL on the CPU: the op against the reference and its floor.

Run with ``python -m pytest benchmarks`` (docs/usage.md); the summary at the end is a
table of ratios measured in this one run. Nothing here asserts a time.

* ``reference`` / ``op``: exact max over every k; ``*_k100``: the paper's num_k = 100;
  ``*_bf16``: bfloat16 tokens inside ``torch.autocast("cpu", torch.bfloat16)`` (both compute in
  float32 there); ``aten``: the device-generic implementation (``impl="aten"``) on the CPU.
* ``floor``: what any implementation of the contract must do at least: the two
  matrix products (S = T T^T forward, (G + G^T) T backward) plus one keys-only sort
  of the n triangle values per image (numpy's sort, images shared over the same
  number of threads as torch uses). ``halved floor``: the same with S's product at half its
  time, what a symmetric rank-k product (the upper triangle only) would take at best; the
  backward's (G + G^T) T is a symmetric matrix times a dense one and cannot be halved.
* Every implementation runs 100 rounds (``ROUNDS``); the table gives the median and, in
  brackets, the quartiles. ``--results-file PATH`` also writes the table and the raw numbers
  (PATH.md, PATH.json).
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
    "reference_bf16": lambda x: in_bfloat16_autocast(reference.contrastive_mil, x),
    "op_bf16": lambda x: in_bfloat16_autocast(contrastive_mil, x),
}
ROUNDS = 100


def in_bfloat16_autocast(fn, leaf):
    """``fn`` on bfloat16 tokens inside CPU autocast; the cast is part of the graph, so the
    gradient reaches the float32 leaf as a training step's would."""
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return fn(leaf.bfloat16())


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


def run(benchmark, fn, rounds=ROUNDS):
    """(median, first quartile, third quartile) seconds over ``rounds`` calls."""
    benchmark.pedantic(fn, rounds=rounds, warmup_rounds=3, iterations=1)
    stats = benchmark.stats.stats
    return stats.median, stats.q1, stats.q3


def shape_id(shape):
    return "B{}-N{}-d{}".format(*shape)


@pytest.mark.parametrize("name", list(IMPLEMENTATIONS))
@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_forward_backward(benchmark, shape, name):
    benchmark.group = shape_id(shape)
    leaf = unit_tokens(shape).requires_grad_()
    fn = IMPLEMENTATIONS[name]
    RESULTS.setdefault(shape, {})[name] = run(benchmark, lambda: forward_backward(fn, leaf))
    RESULTS[shape][name + "_saved"] = saved_bytes(fn, leaf.detach().clone().requires_grad_())


@pytest.mark.parametrize("which", ["floor_products", "floor_product_s"])
@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_floor_matrix_products(benchmark, shape, which):
    """Both products of the floor, or S's alone (for the halved floor)."""
    benchmark.group = shape_id(shape)
    tokens = unit_tokens(shape)
    weights = torch.rand(shape[0], shape[1], shape[1])

    def products():
        torch.bmm(tokens, tokens.transpose(1, 2))
        if which == "floor_products":
            torch.bmm(weights, tokens)

    RESULTS.setdefault(shape, {})[which] = run(benchmark, products)


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

        RESULTS.setdefault(shape, {})["floor_sort"] = run(benchmark, sort_keys)
