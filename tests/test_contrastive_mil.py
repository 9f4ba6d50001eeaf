"""The contrastive-MIL op on the CPU, both implementations (the C++ kernels and the
device-generic ATen one), against its pure-PyTorch reference and hand-worked cases."""

import functools
import importlib
import math

import pytest
import torch

from mlrank.ops import contrastive_mil
from mlrank.ops import reference
from mlrank.ops.reference import candidate_ks
from mlrank.ops.testing import clustered_tokens, unit_tokens

OP_IMPLS = ["kernels", "aten"]
IMPLEMENTATIONS = {
    **{impl: functools.partial(contrastive_mil, impl=impl) for impl in OP_IMPLS},
    "reference": reference.contrastive_mil,
}


def run_with_grad(fn, tokens, weights, **kwargs):
    """Outputs and d(sum(w_p * prob) + sum(w_m * u_mean)) / d tokens."""
    leaf = tokens.detach().clone().requires_grad_()
    prob, k_star, u_mean = fn(leaf, **kwargs)
    ((weights[0] * prob).sum() + (weights[1] * u_mean).sum()).backward()
    return prob.detach(), k_star, u_mean.detach(), leaf.grad


def assert_matches_reference(tokens, rtol=1e-10, atol=1e-12, grad_atol=None, impl="kernels", **kwargs):
    batch = tokens.shape[0]
    generator = torch.Generator().manual_seed(1)
    weights = torch.randn(2, batch, generator=generator, dtype=tokens.dtype)
    prob, k_star, u_mean, grad = run_with_grad(IMPLEMENTATIONS[impl], tokens, weights, **kwargs)
    prob_r, k_star_r, u_mean_r, grad_r = run_with_grad(
        reference.contrastive_mil, tokens, weights, **kwargs
    )
    assert k_star.dtype == torch.int64 and not k_star.requires_grad
    assert torch.equal(k_star, k_star_r)
    torch.testing.assert_close(prob, prob_r, rtol=rtol, atol=atol)
    torch.testing.assert_close(u_mean, u_mean_r, rtol=rtol, atol=atol)
    torch.testing.assert_close(grad, grad_r, rtol=rtol, atol=grad_atol or atol)


@pytest.fixture(params=OP_IMPLS)
def impl(request):
    """Each implementation of the op that runs on the CPU."""
    return request.param


# --- agreement with the reference --------------------------------------------------------------


@pytest.mark.parametrize(
    "shape", [(1, 3, 4), (2, 3, 2), (1, 7, 5), (4, 40, 16), (3, 65, 8), (2, 150, 32)]
)
def test_random_float64(shape, impl):
    assert_matches_reference(unit_tokens(*shape), impl=impl)


def test_large_n_float64(impl):
    # N = 576: n = 165,600 values per image, as at the paper's resolution.
    assert_matches_reference(unit_tokens(1, 576, 32, seed=3), impl=impl)


def test_random_float32_same_k_star(impl):
    # S comes from the same matrix product and prefix sums are float64 in both,
    # so even in float32 the op finds exactly the reference's k*.
    assert_matches_reference(
        unit_tokens(4, 100, 24, dtype=torch.float32, seed=5), rtol=1e-5, atol=1e-6, impl=impl,
    )


@pytest.mark.parametrize("tiny_value", [False, True])
def test_float32_large_n_with_and_without_tiny_values(tiny_value, impl):
    # The float64 prefix sums of float32 values are exact unless a tiny value sits
    # among large ones (1e-20 here); then only adding in the reference's order
    # gives the reference's k*.
    generator = torch.Generator().manual_seed(11)
    tokens = torch.randn(2, 576, 16, generator=generator).abs()  # S well above 0
    tokens = torch.nn.functional.normalize(tokens, dim=-1)
    if tiny_value:
        tokens[:, 1] = 1e-20 * tokens[:, 0]
    assert_matches_reference(tokens, rtol=1e-5, atol=1e-6, impl=impl)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("repeat", [False, True])
def test_large_n_with_k_star_inside_the_order(dtype, repeat, impl):
    # Thousands of positive values: the kernel bounds Delta over value buckets
    # and sorts only the buckets near the maximum (or sorts all, when it cannot
    # prove the reference's k*); either way k* and the gradients must match.
    tokens = clustered_tokens(3, 144, 48, dtype, seed=7, repeat=repeat)
    _, k_star, _ = reference.contrastive_mil(tokens)
    n = 144 * 143 // 2
    assert ((k_star > n // 10) & (k_star < n - 1)).all()  # the case this test is for
    tolerance = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else {}
    assert_matches_reference(tokens, **tolerance, impl=impl)


def test_unnormalised_and_non_contiguous_tokens(impl):
    tokens = 3 * unit_tokens(2, 12, 30, seed=7).transpose(1, 2)  # (2, 30, 12), strided
    assert not tokens.is_contiguous()
    assert_matches_reference(tokens, impl=impl)


@pytest.mark.parametrize("num_k", [1, 2, 3, 7, 100, 776, 777, 2000])
def test_sampled_k(num_k, impl):
    # N = 40: n = 780, so num_k >= 779 means every k.
    tokens = unit_tokens(3, 40, 8, seed=num_k)
    assert_matches_reference(tokens, num_k=num_k, impl=impl)
    _, k_star, _ = contrastive_mil(tokens, num_k=num_k, impl=impl)
    assert set(k_star.tolist()) <= set(candidate_ks(780, num_k))


def test_gradient_through_u_mean_alone():
    # prob unused: autograd hands the backward a zero gradient for it.
    tokens = unit_tokens(2, 30, 6, seed=12)
    grads = []
    for fn in IMPLEMENTATIONS.values():
        leaf = tokens.clone().requires_grad_()
        fn(leaf)[2].sum().backward()
        grads.append(leaf.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-10, atol=1e-12)


def test_every_k_is_the_default(impl):
    tokens = unit_tokens(2, 20, 6, seed=11)
    every = contrastive_mil(tokens, num_k=189, impl=impl)  # n = 190: n - 1 candidates = all
    default = contrastive_mil(tokens, impl=impl)
    for a, b in zip(every, default):
        assert torch.equal(a, b)


# --- ties ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_k", [None, 3, 5, 100])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ties_from_repeated_tokens(num_k, seed, impl):
    # Few distinct tokens: S takes a handful of values, each repeated many times,
    # so k* often falls inside a block of equal values and the tie rule decides
    # which of them form the low group.
    generator = torch.Generator().manual_seed(seed)
    distinct = torch.nn.functional.normalize(
        torch.randn(4, 5, generator=generator, dtype=torch.float64), dim=-1
    )
    picks = torch.randint(0, 4, (2, 70), generator=generator)
    assert_matches_reference(distinct[picks], num_k=num_k, impl=impl)


@pytest.mark.parametrize("num_k", [None, 4])
def test_ties_from_rectified_zeros(num_k, impl):
    # Tokens in two orthogonal subspaces, with mixed signs: most of S is exactly
    # zero or negative, so the rectification makes a large block of zeros.
    tokens = unit_tokens(3, 80, 6, seed=4)
    tokens[:, :40, 3:] = 0
    tokens[:, 40:, :3] = 0
    tokens = torch.nn.functional.normalize(tokens, dim=-1)
    assert_matches_reference(tokens, num_k=num_k, impl=impl)


def test_all_values_equal_and_all_zero(impl):
    same = torch.zeros(1, 9, 3, dtype=torch.float64)
    same[..., 0] = 1  # every pair has similarity exactly 1
    orthogonal = torch.eye(9, dtype=torch.float64).unsqueeze(0)  # every pair exactly 0
    for tokens in (same, orthogonal):
        prob, k_star, _ = contrastive_mil(tokens, impl=impl)
        assert k_star.item() == 1 and prob.item() == 0.0  # Delta(k) = 0 for every k
        assert_matches_reference(tokens, impl=impl)


# --- worked by hand ------------------------------------------------------------------------------


def test_hand_worked_three_tokens():
    # t1 = (1, 0), t2 = (0.6, 0.8), t3 = (0, 1): u = (S12, S13, S23) = (0.6, 0, 0.8),
    # sorted (0, 0.6, 0.8), n = 3, k in {1, 2}.
    #   k = 1: u+ = 1 - 0 = 1,            u- = (0.4 + 0.2) / 2 = 0.3
    #   k = 2: u+ = (1 + 0.4) / 2 = 0.7,  u- = 0.2
    # eq. 6 with tau = 0.2: P(x;k) = 2 e^{u+/tau} / (e^{u+/tau} + e^{u-/tau}) - 1
    tau = 0.2
    tokens = torch.tensor([[[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]]], dtype=torch.float64)

    def eq6(u_plus, u_minus):
        a, b = math.exp(u_plus / tau), math.exp(u_minus / tau)
        return 2 * a / (a + b) - 1

    p1, p2 = eq6(1.0, 0.3), eq6(0.7, 0.2)
    assert p1 > p2
    # Gradient: dP/dDelta = (1 - P^2) / (2 tau); the low group is S13 = 0, which
    # the rectification cuts off, and S12, S23 each carry +1/(n - k*) = 1/2. So
    # G12 = G23 = c/2 and grad = (G + G^T) tokens: row 1 = c/2 t2,
    # row 2 = c/2 (t1 + t3), row 3 = c/2 t2.
    c = (1 - p1**2) / (2 * tau)
    expected_grad = c / 2 * torch.tensor([[[0.6, 0.8], [1.0, 1.0], [0.6, 0.8]]], dtype=torch.float64)

    for name, fn in IMPLEMENTATIONS.items():
        leaf = tokens.clone().requires_grad_()
        prob, k_star, u_mean = fn(leaf, tau=tau)
        assert k_star.tolist() == [1], name
        assert prob.item() == pytest.approx(p1, abs=1e-14), name
        assert u_mean.item() == pytest.approx(1.4 / 3, abs=1e-14), name
        prob.sum().backward()
        torch.testing.assert_close(leaf.grad, expected_grad, rtol=0, atol=1e-14, msg=name)


def test_hand_worked_tie_rule():
    # Three identical tokens e1: u = (1, 1, 1), Delta(k) = 0 for both k, so
    # k* = 1 and P = 0. The tie rule puts the first value in row-major order,
    # S12, in the low group (weight -1/k* = -1) and S13, S23 in the high group
    # (+1/(n - k*) = 1/2), each times (1 - P^2)/(2 tau) = 1/(2 tau). Then
    # grad t1 = G12 t2 + G13 t3 = (-1 + 1/2)/(2 tau) e1, likewise grad t2, and
    # grad t3 = G13 t1 + G23 t2 = (1/2 + 1/2)/(2 tau) e1.
    tau = 0.25
    tokens = torch.zeros(1, 3, 2, dtype=torch.float64)
    tokens[..., 0] = 1
    expected = torch.tensor([[[-0.5, 0.0], [-0.5, 0.0], [1.0, 0.0]]], dtype=torch.float64)
    expected = expected / (2 * tau)
    for name, fn in IMPLEMENTATIONS.items():
        leaf = tokens.clone().requires_grad_()
        prob, k_star, _ = fn(leaf, tau=tau)
        assert k_star.tolist() == [1] and prob.item() == 0.0, name
        prob.sum().backward()
        torch.testing.assert_close(leaf.grad, expected, rtol=0, atol=1e-14, msg=name)


def test_candidate_ks_by_hand():
    # n = 10, num_k = 4: 1 + round(j * 8 / 3) for j = 0..3 = 1, 4, 6, 9
    assert candidate_ks(10, 4) == [1, 4, 6, 9]
    # n = 15, num_k = 3: 1 + round(j * 13 / 2) = 1, 1 + round(6.5) = 7 (half to even), 14
    assert candidate_ks(15, 3) == [1, 7, 14]
    assert candidate_ks(15, 1) == [1]
    assert candidate_ks(15, 14) == list(range(1, 15))
    assert candidate_ks(3, None) == [1, 2]
    # deduplicated: n = 6, num_k = 4 gives 1 + round(j * 4 / 3) = 1, 2, 4, 5
    assert candidate_ks(6, 4) == [1, 2, 4, 5]


def test_half_even_rounding_reaches_the_kernel(impl):
    # N = 6, n = 15, num_k = 3: the candidates are {1, 7, 14}; a k* of 8 would
    # mean the kernel rounded 6.5 up instead of to even.
    seen = set()
    for seed in range(30):
        tokens = unit_tokens(1, 6, 3, seed=seed)
        _, k_star, _ = contrastive_mil(tokens, num_k=3, impl=impl)
        _, k_star_r, _ = reference.contrastive_mil(tokens, num_k=3)
        assert k_star.item() in (1, 7, 14)
        assert k_star.item() == k_star_r.item()
        seen.add(k_star.item())
    assert 7 in seen  # the middle candidate was actually exercised


# --- gradcheck -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(IMPLEMENTATIONS))
@pytest.mark.parametrize("num_k", [None, 4])
def test_gradcheck(name, num_k):
    # Tokens in the positive orthant keep every S > 0 (no rectification kink),
    # and random values keep the argmax away from ties at the step size used.
    generator = torch.Generator().manual_seed(2)
    tokens = torch.rand(2, 6, 4, generator=generator, dtype=torch.float64) + 0.1
    tokens = torch.nn.functional.normalize(tokens, dim=-1).requires_grad_()
    fn = IMPLEMENTATIONS[name]

    def differentiable_outputs(x):
        prob, _, u_mean = fn(x, tau=0.2, num_k=num_k)
        return prob, u_mean

    assert torch.autograd.gradcheck(differentiable_outputs, (tokens,), eps=1e-6, atol=1e-7)


# --- precision ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_is_computed_in_float32(dtype, impl):
    tokens = unit_tokens(2, 30, 8, dtype=torch.float32, seed=9).to(dtype)
    leaf = tokens.clone().requires_grad_()
    prob, k_star, u_mean = contrastive_mil(leaf, impl=impl)
    # the statistic stays in float32, which holds what float16 cannot (below)
    assert prob.dtype == dtype and u_mean.dtype == torch.float32 and k_star.dtype == torch.int64
    (prob.float().sum() + u_mean.float().sum()).backward()
    assert leaf.grad.dtype == dtype

    upcast = tokens.float().requires_grad_()
    prob32, k_star32, u_mean32 = contrastive_mil(upcast, impl=impl)
    (prob32.sum() + u_mean32.sum()).backward()
    assert torch.equal(k_star, k_star32)
    assert torch.equal(prob, prob32.to(dtype)) and torch.equal(u_mean, u_mean32)
    assert torch.equal(leaf.grad, upcast.grad.to(dtype))


def test_float16_tokens_whose_products_pass_65504_give_a_finite_mean(impl):
    # unnormalised tokens of norm 1000: products up to 1e6, their mean beyond float16's largest value
    tokens = (unit_tokens(2, 12, 8, dtype=torch.float32, seed=3) * 1000).to(torch.float16)
    prob, _, u_mean = contrastive_mil(tokens, impl=impl)
    _, _, u_mean32 = contrastive_mil(tokens.float(), impl=impl)
    assert torch.isfinite(u_mean).all() and u_mean.max() > 65504
    assert torch.equal(u_mean, u_mean32) and torch.isfinite(prob).all()


def test_inside_cpu_autocast_the_op_computes_in_float32(impl):
    # The op's inner products once ran in bfloat16 under autocast: the kernels refused them, the
    # ATen path sorted a bfloat16 S.
    tokens = unit_tokens(3, 60, 16, dtype=torch.float32, seed=4)
    weights = torch.randn(2, 3, generator=torch.Generator().manual_seed(0))
    outside = run_with_grad(IMPLEMENTATIONS[impl], tokens, weights)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # forward and backward inside, as in a training step
        inside = run_with_grad(IMPLEMENTATIONS[impl], tokens, weights)
        half = run_with_grad(IMPLEMENTATIONS[impl], tokens.bfloat16(), weights)
        referenced = reference.contrastive_mil(tokens)
    assert inside[0].dtype == torch.float32
    for a, b in zip(inside, outside):  # the same numbers as outside autocast, bit for bit
        assert torch.equal(a, b)
    assert torch.equal(referenced[1], outside[1])  # the reference's forward too
    # bfloat16 tokens: computed in float32 from the rounded tokens, as outside autocast
    assert torch.equal(half[1], run_with_grad(IMPLEMENTATIONS[impl], tokens.bfloat16(), weights)[1])


def test_forward_and_backward_agree_whatever_the_matmul_precision(impl):
    tokens = unit_tokens(2, 120, 64, dtype=torch.float32, seed=6)
    previous = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("medium")
        lowered = tokens @ tokens.transpose(1, 2)
        torch.set_float32_matmul_precision("highest")
        if torch.equal(lowered, tokens @ tokens.transpose(1, 2)):
            pytest.skip("this CPU computes float32 matmuls alike at every precision setting")
        weights = torch.randn(2, 2, generator=torch.Generator().manual_seed(0))
        expected = run_with_grad(IMPLEMENTATIONS[impl], tokens, weights)[3]
        leaf = tokens.clone().requires_grad_()
        prob, _, u_mean = contrastive_mil(leaf, impl=impl)
        torch.set_float32_matmul_precision("medium")  # changed between the forward and the backward
        ((weights[0] * prob).sum() + (weights[1] * u_mean).sum()).backward()
    finally:
        torch.set_float32_matmul_precision(previous)
    # the same low and high groups as the forward chose; only the last product's rounding differs
    torch.testing.assert_close(leaf.grad, expected, rtol=2e-2, atol=2e-3)
    wrong_groups = run_with_grad(IMPLEMENTATIONS[impl], tokens, weights * torch.tensor([[-1.0], [1.0]]))[3]
    assert not torch.allclose(leaf.grad, wrong_groups, rtol=2e-2, atol=2e-3)  # the tolerance tells groups apart


# --- memory: the backward keeps neither S nor a permutation ----------------------------------------


def saved_tensors(fn, tokens):
    saved = []

    def pack(t):
        saved.append(t)
        return t

    leaf = tokens.clone().requires_grad_()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        prob, _, u_mean = fn(leaf)
    return leaf, saved


def test_backward_saves_only_tokens_per_image_scalars_and_two_bits_a_pair(impl):
    batch, num_tokens = 4, 50
    n = num_tokens * (num_tokens - 1) // 2
    tokens = unit_tokens(batch, num_tokens, 16, dtype=torch.float32)
    leaf, saved = saved_tensors(IMPLEMENTATIONS[impl], tokens)
    big = [t for t in saved if t.numel() > batch]
    assert len(big) == 2 and big[0].data_ptr() == leaf.data_ptr()  # the input itself
    codes = big[1]  # the pair codes: two bits for each of the n values, 16 to an int32
    assert codes.dtype == torch.int32 and codes.shape == (batch, (n + 15) // 16)
    assert codes.nbytes == batch * ((n + 15) // 16) * 4 < batch * n  # a quarter byte a pair
    assert all(t.numel() <= batch for t in saved if all(t is not b for b in big))
    # The reference, by contrast, keeps at least one N x N or n-sized tensor per image.
    _, saved_reference = saved_tensors(reference.contrastive_mil, tokens)
    assert max(t.numel() for t in saved_reference) >= batch * num_tokens * (num_tokens - 1) // 2


# --- bad input -----------------------------------------------------------------------------------


def _nan_tokens():
    tokens = unit_tokens(2, 5, 3)
    tokens[1, 3, 2] = float("nan")
    return tokens


def _inf_tokens():
    tokens = unit_tokens(2, 5, 3)
    tokens[0, 0, 0] = float("-inf")
    return tokens


BAD_INPUTS = [
    (lambda: [[1.0, 2.0]], {}, TypeError, "torch.Tensor"),
    (lambda: torch.ones(4, 5), {}, ValueError, "3-D"),
    (lambda: torch.ones(1, 4, 5, 2), {}, ValueError, "3-D"),
    (lambda: torch.ones(2, 2, 5), {}, ValueError, "N >= 3"),
    (lambda: torch.ones(2, 4, 5, dtype=torch.int64), {}, TypeError, "floating-point"),
    (lambda: torch.ones(2, 4, 5, dtype=torch.bool), {}, TypeError, "floating-point"),
    (_nan_tokens, {}, ValueError, "NaN or Inf"),
    (_inf_tokens, {}, ValueError, "NaN or Inf"),
    (lambda: unit_tokens(1, 4, 3), {"tau": 0.0}, ValueError, "tau"),
    (lambda: unit_tokens(1, 4, 3), {"tau": -0.5}, ValueError, "tau"),
    (lambda: unit_tokens(1, 4, 3), {"tau": float("nan")}, ValueError, "tau"),
    (lambda: unit_tokens(1, 4, 3), {"tau": "0.2"}, TypeError, "tau"),
    (lambda: unit_tokens(1, 4, 3), {"num_k": 0}, ValueError, "num_k"),
    (lambda: unit_tokens(1, 4, 3), {"num_k": -3}, ValueError, "num_k"),
    (lambda: unit_tokens(1, 4, 3), {"num_k": 2.5}, TypeError, "num_k"),
    (lambda: unit_tokens(1, 4, 3), {"tau": torch.tensor(0.2, requires_grad=True)}, ValueError, "requires grad"),
    (
        lambda: unit_tokens(1, 4, 3),
        {"tau": torch.tensor(0.2, device="meta")},
        ValueError,
        "same device",
    ),
]


@pytest.mark.parametrize("name", list(IMPLEMENTATIONS))
@pytest.mark.parametrize("make_tokens, kwargs, error, message", BAD_INPUTS)
def test_bad_input(name, make_tokens, kwargs, error, message):
    with pytest.raises(error, match=message):
        IMPLEMENTATIONS[name](make_tokens(), **kwargs)


def test_scalar_tensor_tau_is_accepted(impl):
    tokens = unit_tokens(2, 6, 3)
    for a, b in zip(contrastive_mil(tokens, tau=torch.tensor(0.3, dtype=torch.float64), impl=impl), contrastive_mil(tokens, tau=0.3, impl=impl)):
        assert torch.equal(a, b)


def test_num_k_beyond_int64_means_every_k(impl):
    # Any num_k >= n - 1 asks for every k, however large: no overflow on the way to C++.
    tokens = unit_tokens(2, 10, 4)
    for huge in (2**63, 10**30):
        for a, b in zip(contrastive_mil(tokens, num_k=huge, impl=impl), contrastive_mil(tokens, impl=impl)):
            assert torch.equal(a, b)


@pytest.mark.parametrize("suffix", ["", "_aten"])
def test_raw_op_checks_its_arguments(suffix):
    forward = getattr(torch.ops.mlrank, "contrastive_mil_forward" + suffix)
    backward = getattr(torch.ops.mlrank, "contrastive_mil_backward" + suffix)
    with pytest.raises(ValueError, match="N >= 3"):
        forward(torch.ones(1, 2, 3), 0.2, None)
    with pytest.raises(ValueError, match="tau"):
        forward(torch.ones(1, 4, 3), 0.0, None)
    with pytest.raises(ValueError, match="num_k"):
        forward(torch.ones(1, 4, 3), 0.2, 0)
    with pytest.raises(TypeError, match="float32 or float64"):
        forward(torch.ones(1, 4, 3, dtype=torch.float16), 0.2, None)
    tokens = unit_tokens(2, 5, 3)
    per_image = torch.zeros(2, dtype=torch.float64)
    index = torch.ones(2, dtype=torch.long)
    codes = torch.zeros(2, 1, dtype=torch.int32)  # 10 pairs: one word an image
    with pytest.raises(ValueError, match="k_star must have shape"):
        backward(per_image, per_image, tokens, per_image, index[:1], codes, 0.2)
    with pytest.raises(ValueError, match=r"codes must be int32 of shape \(2, 1\)"):
        backward(per_image, per_image, tokens, per_image, index, codes.long(), 0.2)
    # an empty batch is handled: empty outputs, no error
    prob, k_star, u_mean, no_codes = forward(torch.ones(0, 4, 3), 0.2, None)
    assert prob.shape == k_star.shape == u_mean.shape == (0,) and no_codes.shape == (0, 1)


# --- second-order gradients (a gradient penalty) -------------------------------------------------


@pytest.mark.parametrize("num_k", [None, 6])
def test_second_order_gradients_match_the_reference(impl, num_k):
    # d/dx |dP/dx|^2 through the op's backward: the fused backward op is not differentiable,
    # so under create_graph the op takes a differentiable path, which must agree with autograd
    # through the reference (a.e.: the split into low and high groups is piecewise constant).
    tokens = clustered_tokens(2, 30, 6, torch.float64, seed=4)
    results = []
    for fn in (IMPLEMENTATIONS[impl], reference.contrastive_mil):
        leaf = tokens.clone().requires_grad_()
        prob, _, u_mean = fn(leaf, tau=0.2, num_k=num_k)
        (grad,) = torch.autograd.grad((prob + 0.3 * u_mean).sum(), leaf, create_graph=True)
        penalty = grad.pow(2).sum()
        penalty.backward()
        results.append((grad.detach(), penalty.detach(), leaf.grad))
    (grad, penalty, second), (grad_r, penalty_r, second_r) = results
    torch.testing.assert_close(grad, grad_r, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(penalty, penalty_r, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(second, second_r, rtol=1e-9, atol=1e-11)
    assert second.abs().max() > 1e-3  # a real second-order term, not zeros


def test_second_order_gradcheck(impl):
    generator = torch.Generator().manual_seed(5)
    tokens = torch.rand(2, 6, 4, generator=generator, dtype=torch.float64) + 0.1
    tokens = torch.nn.functional.normalize(tokens, dim=-1).requires_grad_()

    def differentiable_outputs(x):
        prob, _, u_mean = contrastive_mil(x, tau=0.2, impl=impl)
        return prob, u_mean

    assert torch.autograd.gradgradcheck(differentiable_outputs, (tokens,), eps=1e-6, atol=1e-6)


# --- choosing an implementation ------------------------------------------------------------------


@pytest.mark.parametrize("impl_name", ["fast", "", "ATen", None, 1])
def test_unknown_impl_is_a_value_error(impl_name):
    with pytest.raises(ValueError, match="impl must be one of"):
        contrastive_mil(unit_tokens(1, 5, 3), impl=impl_name)


def test_impl_selection_per_device(monkeypatch):
    # The rule itself needs no GPU: which implementation each request means on each device.
    module = importlib.import_module("mlrank.ops.contrastive_mil")  # the module, not the function

    cpu, cuda, mps = torch.device("cpu"), torch.device("cuda", 0), torch.device("mps")
    assert module.select_implementation(cpu, "auto") == "kernels"
    assert module.select_implementation(cpu, "aten") == "aten"
    assert module.select_implementation(mps, "auto") == "aten"
    with pytest.raises(RuntimeError, match="no hand-written kernels for mps"):
        module.select_implementation(mps, "kernels")
    for built, auto_takes_kernels, auto, kernels in [
        (False, False, "aten", None),
        (False, True, "aten", None),
        (True, False, "aten", "kernels"),  # MLRANK_CUDA_KERNELS=0
        (True, True, "kernels", "kernels"),  # the default
    ]:
        monkeypatch.setattr(module, "compiled_with_cuda", lambda built=built: built)
        monkeypatch.setattr(module, "AUTO_TAKES_CUDA_KERNELS", auto_takes_kernels)
        assert module.select_implementation(cuda, "auto") == auto
        assert module.select_implementation(cuda, "aten") == "aten"
        if kernels is None:
            with pytest.raises(RuntimeError, match="this build of mlrank has none"):
                module.select_implementation(cuda, "kernels")
        else:
            assert module.select_implementation(cuda, "kernels") == kernels


def test_every_build_has_a_cuda_kernel_for_the_op():
    # With or without CUDA kernels, CUDA tensors reach a working kernel (the ATen one when
    # none were built), so a plain install trains on a GPU machine without a CUDA toolkit.
    for name in ("contrastive_mil_forward", "contrastive_mil_backward"):
        for suffix in ("", "_aten"):
            for key in ("CPU", "CUDA"):
                assert torch._C._dispatch_has_computed_kernel_for_dispatch_key(f"mlrank::{name}{suffix}", key)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_kernels_impl_on_a_build_without_cuda_kernels_is_a_clear_error():
    from mlrank.ops import compiled_with_cuda

    if compiled_with_cuda():
        pytest.skip("this build has CUDA kernels")
    with pytest.raises(RuntimeError, match="this build of mlrank has none"):
        contrastive_mil(unit_tokens(1, 5, 3).cuda(), impl="kernels")


# --- dispatcher integration -------------------------------------------------------------------


OP_SUFFIX = {"kernels": "", "aten": "_aten"}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("num_k", [None, 5])
def test_opcheck(dtype, num_k, impl):
    forward = getattr(torch.ops.mlrank, "contrastive_mil_forward" + OP_SUFFIX[impl])
    tokens = unit_tokens(3, 12, 5, dtype=dtype).requires_grad_()
    torch.library.opcheck(forward.default, (tokens, 0.2, num_k))


def test_opcheck_backward_op(impl):
    forward = getattr(torch.ops.mlrank, "contrastive_mil_forward" + OP_SUFFIX[impl])
    backward = getattr(torch.ops.mlrank, "contrastive_mil_backward" + OP_SUFFIX[impl])
    tokens = unit_tokens(3, 12, 5)
    prob, k_star, u_mean, codes = forward(tokens, 0.2, None)
    grads = torch.randn(2, 3, dtype=torch.float64)
    args = (grads[0], grads[1], tokens, prob, k_star, codes, 0.2)
    torch.library.opcheck(backward.default, args)


def test_kernels_and_aten_agree_bit_for_bit_on_the_cpu():
    # Same S, same k* and tie rule, and the same order of operations in the weights.
    tokens = clustered_tokens(3, 60, 12, torch.float32, seed=8)
    weights = torch.randn(2, 3, generator=torch.Generator().manual_seed(2))
    kernels = run_with_grad(IMPLEMENTATIONS["kernels"], tokens, weights)
    aten = run_with_grad(IMPLEMENTATIONS["aten"], tokens, weights)
    assert torch.equal(kernels[1], aten[1]) and torch.equal(kernels[0], aten[0])
    assert torch.equal(kernels[3], aten[3])


def test_torch_compile_traces_the_op(impl):
    torch._dynamo.reset()

    def loss(tokens):
        prob, _, u_mean = contrastive_mil(tokens, tau=0.2, impl=impl)
        return (prob - 0.5 * u_mean).sum()

    compiled = torch.compile(loss, backend="aot_eager", fullgraph=True)
    tokens = unit_tokens(2, 16, 6)
    eager_leaf, compiled_leaf = tokens.clone().requires_grad_(), tokens.clone().requires_grad_()
    eager_value, compiled_value = loss(eager_leaf), compiled(compiled_leaf)
    eager_value.backward()
    compiled_value.backward()
    torch.testing.assert_close(compiled_value, eager_value)
    torch.testing.assert_close(compiled_leaf.grad, eager_leaf.grad)


def test_a_plain_import_of_mlrank_reaches_the_op():
    import subprocess
    import sys

    code = "import mlrank, torch; print(mlrank.ops.contrastive_mil(torch.eye(3)[None])[1].item())"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "1"  # all values 0: Delta(k) = 0 for every k, so k* = 1
