"""The contrastive-MIL op on a GPU: the CUDA kernels and the ATen implementation against the
reference on the same device, and against each other.

The reference sums the sorted values with torch.cumsum; the kernels sum them in chunks, in
another order. Where two k have Delta values closer than both orders' rounding can separate,
either k is a correct k*: such a k* is accepted after checking that the two Delta values agree
within that bound (the CPU kernels' certificate, docs/method.md section 3), and the kernels'
gradient is then checked at their own k*. Skipped without a GPU.
"""

import functools
import importlib

import pytest
import torch

from mlrank.ops import compiled_with_cuda, contrastive_mil, reference, testing

if not torch.cuda.is_available():
    pytest.skip("needs a CUDA device (torch sees none)", allow_module_level=True)

needs_kernels = pytest.mark.skipif(
    not compiled_with_cuda(), reason="this build of mlrank has no CUDA kernels (built without a CUDA toolkit)"
)

DEVICE = "cuda"
IMPLS = [pytest.param("kernels", marks=needs_kernels), "aten"]
DOUBLE_EPSILON = torch.finfo(torch.float64).eps


def unit_tokens(batch, num_tokens, dim, dtype=torch.float32, seed=0):
    return testing.unit_tokens(batch, num_tokens, dim, dtype, seed, device=DEVICE)


def clustered_tokens(batch, num_tokens, dim, dtype=torch.float32, seed=0, repeat=False):
    return testing.clustered_tokens(batch, num_tokens, dim, dtype, seed, repeat, device=DEVICE)


def repeated_tokens(batch, num_tokens, seed):
    """Few distinct tokens: S takes a handful of values many times over (ties everywhere)."""
    generator = torch.Generator().manual_seed(seed)
    distinct = torch.nn.functional.normalize(torch.randn(4, 5, generator=generator), dim=-1)
    return distinct[torch.randint(0, 4, (batch, num_tokens), generator=generator)].to(DEVICE)


def run(impl, tokens, weights, num_k=None, tau=0.2):
    fn = reference.contrastive_mil if impl == "reference" else functools.partial(contrastive_mil, impl=impl)
    leaf = tokens.detach().clone().requires_grad_()
    prob, k_star, u_mean = fn(leaf, tau=tau, num_k=num_k)
    ((weights[0] * prob).sum() + (weights[1] * u_mean).sum()).backward()
    return prob.detach(), k_star, u_mean.detach(), leaf.grad


def sorted_triangle(tokens):
    """Each image's rectified strict upper triangle, sorted, in float64, from the reference's S."""
    similarity = (tokens @ tokens.transpose(-1, -2)).relu()
    rows, cols = torch.triu_indices(tokens.shape[1], tokens.shape[1], offset=1, device=tokens.device)
    return similarity[:, rows, cols].double().sort(dim=-1).values


def delta_and_bound(u_sorted, k):
    """Delta(k) from float64 prefix sums, and how far another summation order may move it."""
    n = u_sorted.shape[-1]
    prefix = u_sorted.cumsum(-1)
    total = prefix[:, -1]
    low = prefix.gather(1, (k - 1).unsqueeze(1)).squeeze(1)
    delta = (total - low) / (n - k) - low / k
    rounding = 4 * (n + 64) * (DOUBLE_EPSILON / 2) * 1.01 * total  # per order, as in the CPU kernels
    return delta, 2 * rounding * (1 / k + 1 / (n - k))


def assert_k_star_correct(tokens, k_star, k_star_reference):
    """Equal k*, or two k whose Delta values the rounding of the two sums cannot tell apart."""
    if torch.equal(k_star, k_star_reference):
        return
    u_sorted = sorted_triangle(tokens.double() if tokens.dtype == torch.float64 else tokens)
    delta, bound = delta_and_bound(u_sorted, k_star)
    delta_r, bound_r = delta_and_bound(u_sorted, k_star_reference)
    differs = k_star != k_star_reference
    assert torch.all((delta - delta_r).abs()[differs] <= (bound + bound_r)[differs]), (
        f"k* {k_star.tolist()} vs the reference's {k_star_reference.tolist()}: Delta differs by "
        f"{(delta - delta_r).abs().tolist()}, more than rounding allows ({(bound + bound_r).tolist()})"
    )


def expected_gradient_at(tokens, weights, impl, num_k, tau=0.2):
    """The op's gradient at the k* and tie position the implementation chose, from the ATen
    backward (checked against the reference on the CPU), applied to the same saved values."""
    forward = torch.ops.mlrank.contrastive_mil_forward if impl == "kernels" else torch.ops.mlrank.contrastive_mil_forward_aten
    prob, k_star, _, codes = forward(tokens, tau, num_k)
    return torch.ops.mlrank.contrastive_mil_backward_aten(weights[0], weights[1], tokens, prob, k_star, codes, tau)


def assert_matches_reference(tokens, impl, num_k=None, tolerance=None):
    tolerance = tolerance or (dict(rtol=1e-10, atol=1e-12) if tokens.dtype == torch.float64 else dict(rtol=2e-5, atol=2e-6))
    generator = torch.Generator().manual_seed(1)
    weights = torch.randn(2, tokens.shape[0], generator=generator, dtype=tokens.dtype).to(DEVICE)
    prob, k_star, u_mean, grad = run(impl, tokens, weights, num_k)
    prob_r, k_star_r, u_mean_r, grad_r = run("reference", tokens, weights, num_k)
    assert k_star.dtype == torch.int64 and k_star.device == tokens.device
    if impl == "aten":
        # The reference's own operations on the same device: the same k*.
        assert torch.equal(k_star, k_star_r)
    else:
        assert_k_star_correct(tokens, k_star, k_star_r)
    torch.testing.assert_close(u_mean, u_mean_r, **tolerance)
    same = k_star == k_star_r
    torch.testing.assert_close(prob[same], prob_r[same], **tolerance)
    torch.testing.assert_close(grad[same], grad_r[same], **tolerance)
    torch.testing.assert_close(grad, expected_gradient_at(tokens, weights, impl, num_k), **tolerance)


# --- against the reference --------------------------------------------------------------------


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(1, 3, 4), (2, 3, 2), (1, 7, 5), (4, 40, 16), (3, 144, 32), (2, 150, 64)])
def test_random_tokens(impl, dtype, shape):
    assert_matches_reference(unit_tokens(*shape, dtype=dtype, seed=sum(shape)), impl)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("repeat", [False, True])
def test_clustered_tokens(impl, dtype, repeat):
    assert_matches_reference(clustered_tokens(4, 144, 48, dtype, seed=7, repeat=repeat), impl)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("shape", [(1, 1024, 64), (8, 576, 256), (2, 1024, 32)])
def test_large_n(impl, shape):
    # N = 1024: n = 523,776 values per image; the kernels may sort images in several groups.
    assert_matches_reference(clustered_tokens(*shape, seed=3), impl)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("num_k", [None, 1, 3, 7, 100, 776, 777, 2000])
def test_sampled_k(impl, num_k):
    tokens = unit_tokens(3, 40, 8, seed=num_k or 0)
    assert_matches_reference(tokens, impl, num_k=num_k)
    _, k_star, _ = contrastive_mil(tokens, num_k=num_k, impl=impl)
    assert set(k_star.tolist()) <= set(reference.candidate_ks(780, num_k))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("num_k", [None, 5])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ties_from_repeated_tokens(impl, num_k, seed):
    assert_matches_reference(repeated_tokens(3, 70, seed), impl, num_k=num_k)


@pytest.mark.parametrize("impl", IMPLS)
def test_ties_from_rectified_zeros(impl):
    tokens = unit_tokens(3, 80, 6, seed=4).cpu()
    tokens[:, :40, 3:] = 0
    tokens[:, 40:, :3] = 0
    assert_matches_reference(torch.nn.functional.normalize(tokens, dim=-1).to(DEVICE), impl)


@pytest.mark.parametrize("impl", IMPLS)
def test_hand_worked_tie_rule(impl):
    # Three identical tokens: u = (1, 1, 1), k* = 1, P = 0; S12 (first in row-major order) is
    # the low group: grad t1 = grad t2 = (-1 + 1/2) / (2 tau) e1, grad t3 = (1/2 + 1/2) / (2 tau) e1.
    tau = 0.25
    tokens = torch.zeros(1, 3, 2, dtype=torch.float64, device=DEVICE)
    tokens[..., 0] = 1
    leaf = tokens.clone().requires_grad_()
    prob, k_star, _ = contrastive_mil(leaf, tau=tau, impl=impl)
    assert k_star.tolist() == [1] and prob.item() == 0.0
    prob.sum().backward()
    expected = torch.tensor([[[-0.5, 0.0], [-0.5, 0.0], [1.0, 0.0]]], dtype=torch.float64) / (2 * tau)
    torch.testing.assert_close(leaf.grad.cpu(), expected, rtol=0, atol=1e-14)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_is_computed_in_float32(impl, dtype):
    tokens = unit_tokens(2, 30, 8, seed=9).to(dtype)
    prob, k_star, u_mean = contrastive_mil(tokens, impl=impl)
    prob32, k_star32, u_mean32 = contrastive_mil(tokens.float(), impl=impl)
    assert prob.dtype == dtype and torch.equal(k_star, k_star32)
    assert torch.equal(prob, prob32.to(dtype)) and torch.equal(u_mean, u_mean32.to(dtype))


# --- kernels and ATen against each other ------------------------------------------------------


@needs_kernels
@pytest.mark.parametrize("shape", [(32, 144, 256), (8, 576, 256)])
def test_kernels_agree_with_aten(shape):
    tokens = clustered_tokens(*shape, seed=11)
    weights = torch.randn(2, shape[0], generator=torch.Generator().manual_seed(3)).to(DEVICE)
    prob, k_star, u_mean, grad = run("kernels", tokens, weights)
    prob_a, k_star_a, u_mean_a, grad_a = run("aten", tokens, weights)
    assert_k_star_correct(tokens, k_star, k_star_a)
    assert (k_star == k_star_a).float().mean() >= 0.9  # a differing k* is a near-tie, and rare
    same = k_star == k_star_a
    torch.testing.assert_close(prob[same], prob_a[same], rtol=2e-5, atol=2e-6)
    torch.testing.assert_close(u_mean, u_mean_a, rtol=2e-5, atol=2e-6)
    torch.testing.assert_close(grad[same], grad_a[same], rtol=2e-5, atol=2e-6)


@needs_kernels
def test_kernels_are_deterministic():
    tokens = clustered_tokens(8, 576, 64, seed=12)
    first = run("kernels", tokens, torch.ones(2, 8, device=DEVICE))
    second = run("kernels", tokens, torch.ones(2, 8, device=DEVICE))
    for a, b in zip(first, second):
        assert torch.equal(a, b)


GROUPED_RUN = """
import sys, torch
from mlrank.ops import contrastive_mil
tokens = torch.load(sys.argv[1]).cuda().requires_grad_()
prob, k_star, u_mean = contrastive_mil(tokens, impl="kernels")
(prob.sum() + u_mean.sum()).backward()
torch.save([t.detach().cpu() for t in (prob, k_star, u_mean, tokens.grad)], sys.argv[2])
"""


@needs_kernels
@pytest.mark.parametrize("sort_values", [1, 100_000])
def test_kernels_sort_in_groups_as_in_one(tmp_path, sort_values):
    # MLRANK_CUDA_SORT_VALUES bounds the values sorted at once: with 1 every image is sorted
    # alone, with 100,000 two or three at a time. S is one product over the batch either way
    # and each image is scored alone, so the results must be bit for bit the same.
    import os
    import subprocess
    import sys

    tokens = clustered_tokens(5, 300, 32, seed=13).cpu()
    torch.save(tokens, tmp_path / "tokens.pt")
    outputs = {}
    for name, value in (("grouped", str(sort_values)), ("default", None)):
        env = {key: val for key, val in os.environ.items() if key != "MLRANK_CUDA_SORT_VALUES"}
        if value is not None:
            env["MLRANK_CUDA_SORT_VALUES"] = value
        subprocess.run(
            [sys.executable, "-c", GROUPED_RUN, str(tmp_path / "tokens.pt"), str(tmp_path / f"{name}.pt")],
            env=env, check=True,
        )
        outputs[name] = torch.load(tmp_path / f"{name}.pt")
    for grouped, default in zip(outputs["grouped"], outputs["default"]):
        assert torch.equal(grouped, default)


@pytest.mark.parametrize("impl", IMPLS)
def test_uses_the_current_stream(impl):
    tokens = clustered_tokens(4, 100, 16, seed=14)
    expected = contrastive_mil(tokens, impl=impl)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        leaf = tokens.clone().requires_grad_()
        got = contrastive_mil(leaf, impl=impl)
        got[0].sum().backward()
    torch.cuda.current_stream().wait_stream(stream)
    for a, b in zip(got, expected):
        assert torch.equal(a.detach(), b)
    assert torch.isfinite(leaf.grad).all()


# --- gradients, dispatcher --------------------------------------------------------------------


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("num_k", [None, 4])
def test_gradcheck_float64(impl, num_k):
    generator = torch.Generator().manual_seed(2)
    tokens = torch.rand(2, 6, 4, generator=generator, dtype=torch.float64) + 0.1
    tokens = torch.nn.functional.normalize(tokens, dim=-1).to(DEVICE).requires_grad_()

    def differentiable_outputs(x):
        prob, _, u_mean = contrastive_mil(x, tau=0.2, num_k=num_k, impl=impl)
        return prob, u_mean

    assert torch.autograd.gradcheck(differentiable_outputs, (tokens,), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("impl", IMPLS)
def test_second_order_gradients(impl):
    tokens = clustered_tokens(2, 30, 6, torch.float64, seed=4)
    results = []
    for fn in (functools.partial(contrastive_mil, impl=impl), reference.contrastive_mil):
        leaf = tokens.clone().requires_grad_()
        prob, _, _ = fn(leaf)
        (grad,) = torch.autograd.grad(prob.sum(), leaf, create_graph=True)
        grad.pow(2).sum().backward()
        results.append(leaf.grad)
    torch.testing.assert_close(results[0], results[1], rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("num_k", [None, 5])
def test_opcheck(impl, dtype, num_k):
    suffix = "" if impl == "kernels" else "_aten"
    forward = getattr(torch.ops.mlrank, "contrastive_mil_forward" + suffix)
    backward = getattr(torch.ops.mlrank, "contrastive_mil_backward" + suffix)
    tokens = unit_tokens(3, 12, 5, dtype=dtype)
    torch.library.opcheck(forward.default, (tokens.clone().requires_grad_(), 0.2, num_k))
    prob, k_star, _, codes = forward(tokens, 0.2, num_k)
    grads = torch.randn(2, 3, dtype=dtype, device=DEVICE)
    torch.library.opcheck(backward.default, (grads[0], grads[1], tokens, prob, k_star, codes, 0.2))


@pytest.mark.parametrize("impl", IMPLS)
def test_torch_compile(impl):
    torch._dynamo.reset()

    def loss(tokens):
        prob, _, u_mean = contrastive_mil(tokens, impl=impl)
        return (prob - 0.5 * u_mean).sum()

    tokens = unit_tokens(2, 16, 6)
    eager, compiled = tokens.clone().requires_grad_(), tokens.clone().requires_grad_()
    loss(eager).backward()
    torch.compile(loss, backend="aot_eager", fullgraph=True)(compiled).backward()
    torch.testing.assert_close(compiled.grad, eager.grad)


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("impl", IMPLS)
def test_bad_input(impl):
    nan_tokens = unit_tokens(2, 5, 3).clone()
    nan_tokens[1, 3, 2] = float("nan")
    # sync-free by default: the non-finite image scores NaN; check_finite raises, with a sync
    prob, _, _ = contrastive_mil(nan_tokens, impl=impl)
    assert torch.isfinite(prob[0]) and torch.isnan(prob[1])
    with pytest.raises(ValueError, match="NaN or Inf"):
        contrastive_mil(nan_tokens, impl=impl, check_finite=True)
    with pytest.raises(ValueError, match="N >= 3"):
        contrastive_mil(unit_tokens(2, 2, 3), impl=impl)
    with pytest.raises(ValueError, match="tau"):
        contrastive_mil(unit_tokens(2, 5, 3), tau=0.0, impl=impl)
    with pytest.raises(ValueError, match="same device"):
        contrastive_mil(unit_tokens(2, 5, 3), tau=torch.tensor(0.2), impl=impl)
    suffix = "" if impl == "kernels" else "_aten"
    with pytest.raises(TypeError, match="float32 or float64"):
        getattr(torch.ops.mlrank, "contrastive_mil_forward" + suffix)(unit_tokens(1, 4, 3).half(), 0.2, None)


def test_auto_takes_the_kernels_unless_opted_out():
    module = importlib.import_module("mlrank.ops.contrastive_mil")
    expected = "kernels" if compiled_with_cuda() and module.AUTO_TAKES_CUDA_KERNELS else "aten"
    assert module.select_implementation(torch.device(DEVICE), "auto") == expected


# --- faults: overflow, autocast, matmul precision, capture ---------------------------------------


@pytest.mark.parametrize("impl", IMPLS)
def test_overflowing_products_raise_the_value_error_and_leave_the_context_usable(impl):
    # every product overflows to +inf: every Delta is NaN; the kernels once read past the values
    huge = unit_tokens(3, 40, 8, dtype=torch.float32) * 1e20
    with pytest.raises(ValueError, match="NaN or Inf"):
        contrastive_mil(huge, impl=impl, check_finite=True)
    prob, k_star, _ = contrastive_mil(huge, impl=impl)
    torch.cuda.synchronize()  # an illegal address would surface here
    assert torch.isnan(prob).all() and (k_star >= 1).all()
    assert_matches_reference(unit_tokens(2, 30, 8, dtype=torch.float32), impl)  # the context still works


@pytest.mark.parametrize("impl", IMPLS)
def test_inside_autocast_the_op_computes_in_float32(impl):
    tokens = unit_tokens(2, 64, 16, dtype=torch.float32)
    weights = torch.randn(2, 2, device=DEVICE)
    outside = run(impl, tokens, weights, None)
    leaf = tokens.clone().requires_grad_()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        prob, k_star, u_mean = contrastive_mil(leaf, impl=impl)
        ((weights[0] * prob).sum() + (weights[1] * u_mean).sum()).backward()
    assert prob.dtype == torch.float32
    assert torch.equal(k_star, outside[1]) and torch.equal(prob, outside[0]) and torch.equal(leaf.grad, outside[3])


@pytest.mark.parametrize("impl", IMPLS)
def test_forward_and_backward_agree_whatever_the_matmul_precision(impl):
    tokens = unit_tokens(2, 80, 32, dtype=torch.float32)
    weights = torch.randn(2, 2, device=DEVICE)
    previous = torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = False
        leaf = tokens.clone().requires_grad_()
        prob, k_star, u_mean = contrastive_mil(leaf, impl=impl)
        torch.backends.cuda.matmul.allow_tf32 = True  # changed between the forward and the backward
        ((weights[0] * prob).sum() + (weights[1] * u_mean).sum()).backward()
        torch.backends.cuda.matmul.allow_tf32 = False
        expected = expected_gradient_at(tokens, weights, impl, None)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous
    torch.testing.assert_close(leaf.grad, expected, rtol=1e-3, atol=1e-4)  # tf32's rounding only


@pytest.mark.parametrize("impl", IMPLS)
def test_forward_and_backward_capture_in_a_cuda_graph_and_compile_reduce_overhead(impl):
    tokens = unit_tokens(4, 64, 16, dtype=torch.float32)
    static = tokens.clone().requires_grad_()

    def step():
        static.grad = None
        prob, _, u_mean = contrastive_mil(static, impl=impl)
        (prob.sum() - u_mean.sum()).backward()

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):  # warm up: allocations and the kernels' first launches
            step()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):  # fails on any host sync
        step()
    with torch.no_grad():
        static.copy_(unit_tokens(4, 64, 16, dtype=torch.float32, seed=7))
    graph.replay()
    torch.cuda.synchronize()
    eager = unit_tokens(4, 64, 16, dtype=torch.float32, seed=7).requires_grad_()
    prob, _, u_mean = contrastive_mil(eager, impl=impl)
    (prob.sum() - u_mean.sum()).backward()
    torch.testing.assert_close(static.grad, eager.grad)

    torch._dynamo.reset()

    def loss(x):
        prob, _, u_mean = contrastive_mil(x, impl=impl)
        return (prob - u_mean).sum()

    compiled = torch.compile(loss, mode="reduce-overhead")
    for _ in range(3):
        leaf = tokens.clone().requires_grad_()
        compiled(leaf).backward()
    reference_leaf = tokens.clone().requires_grad_()
    loss(reference_leaf).backward()
    torch.testing.assert_close(leaf.grad, reference_leaf.grad)
