"""Closed forms, invariants, gradients and validation of `lakelab.objectives`.

Expected values are computed here by hand with `math`; test_objectives_reference.py checks the
same functions against the independent loop implementations of tests/oracles.py.
"""

from __future__ import annotations

import math
from dataclasses import fields

import pytest
import torch
from torch.autograd import gradcheck

from lakelab import objectives as O
from lakelab.registry import OBJECTIVES, SequenceLogps, compute_objective
from tests.helpers import assert_close, with_extra_inputs

LN2 = math.log(2.0)


def t64(x) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64)


def logsigmoid(z: float) -> float:
    return -math.log1p(math.exp(-z))


# ----------------------------------------------------------------------------- log1mexp
def test_log1mexp_values_on_both_branches():
    xs = [-1e-3, -0.3, -LN2 + 1e-9, -LN2 - 1e-9, -1.0, -5.0, -40.0]
    expected = [math.log(1 - math.exp(x)) for x in xs[:-1]] + [-math.exp(-40.0)]
    assert O.log1mexp(t64(xs)).tolist() == pytest.approx(expected, rel=1e-9)


def test_log1mexp_clamps_at_zero_and_says_so():
    clamped = math.log(-math.expm1(-1e-6))  # ~ -13.8
    got = O.log1mexp(t64([0.0, -1e-9, -1e-6]))
    assert got.tolist() == pytest.approx([clamped] * 3, rel=1e-12)
    assert "-1e-6" in O.log1mexp.__doc__


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_log1mexp_value_and_gradient_finite_everywhere(dtype):
    x = torch.tensor([0.0, -1e-12, -1e-6, -0.5, -LN2, -0.7, -1.0, -50.0, -1e4], dtype=dtype)
    x.requires_grad_(True)
    y = O.log1mexp(x)
    (g,) = torch.autograd.grad(y.sum(), x)
    assert torch.isfinite(y).all() and torch.isfinite(g).all()
    # d/dx log(1 - e^x) = -e^x / (1 - e^x), checked where it is not clamped
    for xi, gi in zip(x.tolist()[3:], g.tolist()[3:], strict=True):
        assert gi == pytest.approx(-math.exp(xi) / -math.expm1(xi), rel=1e-5, abs=1e-30)
    assert g[0].item() == 0.0  # above the clamp the gradient is 0 (documented)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_logsigmoid_values_and_gradient(dtype):
    zs = [-1e4, -745.0, -40.0, -29.9, -1.0, 0.0, 0.5, 29.9, 30.1, 40.0, 1e4]
    z = torch.tensor(zs, dtype=dtype, requires_grad=True)
    y = O.logsigmoid(z)
    (g,) = torch.autograd.grad(y.sum(), z)
    # log sigmoid(z) = min(z, 0) - log1p(exp(-|z|));  d/dz = sigmoid(-z) = 1 / (1 + e^z)
    expected = [min(v, 0.0) - math.log1p(math.exp(-abs(v))) for v in zs]
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    assert y.tolist() == pytest.approx(expected, rel=tol, abs=1e-12)
    expected_grad = [
        math.exp(-v) / (1 + math.exp(-v)) if v > 0 else 1 / (1 + math.exp(v)) for v in zs
    ]
    assert g.tolist() == pytest.approx(expected_grad, rel=tol, abs=1e-12)
    assert g[zs.index(0.0)].item() == 0.5


def test_log_odds_closed_form():
    # p = 1/2 -> odds 1 -> 0;  p = 1/5 -> odds 1/4;  p = 0.9 -> odds 9
    got = O.log_odds(t64([math.log(0.5), math.log(0.2), math.log(0.9)]))
    assert got.tolist() == pytest.approx([0.0, math.log(0.25), math.log(9.0)], abs=1e-12)


# ----------------------------------------------------------------------------- reductions
def test_sum_and_mean_logps_by_hand():
    lp = t64([[-9.0, -1.0, -2.0, 5.0], [-0.5, -0.5, -3.0, -4.0]])
    m = torch.tensor([[0, 1, 1, 0], [1, 1, 1, 1]])
    assert O.sum_logps(lp, m).tolist() == [-3.0, -8.0]
    assert O.mean_logps(lp, m).tolist() == [-1.5, -2.0]
    assert O.mean_logps(lp, m.bool()).tolist() == [-1.5, -2.0]


@pytest.mark.parametrize("fn", [O.sum_logps, O.mean_logps])
def test_reductions_reject_bad_inputs(fn):
    lp = t64([[-1.0, -2.0], [-1.0, -2.0]])
    with pytest.raises(ValueError, match=r"at least one response token.*empty rows: \[1\]"):
        fn(lp, torch.tensor([[1, 0], [0, 0]]))
    with pytest.raises(ValueError, match=r"same shape .*\(2, 3\) and \(2, 2\)"):
        fn(lp, torch.ones(2, 3))
    with pytest.raises(ValueError, match="only 0 and 1"):
        fn(lp, torch.tensor([[1.0, 0.5], [1.0, 1.0]]))
    with pytest.raises(ValueError, match=r"shape \(B, T\).*\(2,\)"):
        fn(t64([-1.0, -2.0]), torch.ones(2))
    with pytest.raises(TypeError, match="floating-point"):
        fn(torch.tensor([[1, 2]]), torch.ones(1, 2))


# ----------------------------------------------------------------------------- SFT
def test_sft_closed_form_and_gradient():
    a = t64([-1.0, -3.0]).requires_grad_(True)
    loss, metrics = O.sft_loss(a)
    assert loss.item() == 2.0
    assert metrics == {"logps/chosen": -2.0}
    loss.backward()
    assert a.grad.tolist() == [-0.5, -0.5]


# ----------------------------------------------------------------------------- DPO
def dpo_args(c, r, rc, rr):
    return t64([c]), t64([r]), t64([rc]), t64([rr])


def test_dpo_sigmoid_closed_form():
    beta = 0.1
    c, r, rc, rr = -10.0, -14.0, -11.0, -12.0
    d = beta * ((c - rc) - (r - rr))  # 0.1 * (1 - (-2)) = 0.3
    loss, metrics = O.dpo_loss(*dpo_args(c, r, rc, rr), beta=beta)
    assert loss.item() == pytest.approx(math.log1p(math.exp(-d)), rel=1e-12)
    assert metrics["rewards/chosen"] == pytest.approx(0.1)
    assert metrics["rewards/rejected"] == pytest.approx(-0.2)
    assert metrics["rewards/margins"] == pytest.approx(0.3)
    assert metrics["rewards/accuracies"] == 1.0
    assert metrics["logps/chosen"] == -10.0 and metrics["logps/rejected"] == -14.0


def test_dpo_variants_closed_form():
    beta, eps = 0.5, 0.2
    args = dpo_args(-3.0, -2.0, -4.0, -5.0)
    d = beta * ((-3.0 + 4.0) - (-2.0 + 5.0))  # 0.5 * (1 - 3) = -1.0
    sig = O.dpo_loss(*args, beta=beta, label_smoothing=eps)[0].item()
    assert sig == pytest.approx(-(1 - eps) * logsigmoid(d) - eps * logsigmoid(-d), rel=1e-12)
    hinge = O.dpo_loss(*args, beta=beta, variant="hinge")[0].item()
    assert hinge == pytest.approx(2.0, rel=1e-12)  # relu(1 - (-1))
    robust = O.dpo_loss(*args, beta=beta, variant="robust", label_smoothing=eps)[0].item()
    expected = (-(1 - eps) * logsigmoid(d) + eps * logsigmoid(-d)) / (1 - 2 * eps)
    assert robust == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("variant", "eps", "expected"),
    [("sigmoid", 0.0, LN2), ("sigmoid", 0.3, LN2), ("robust", 0.0, LN2), ("robust", 0.3, LN2),
     ("hinge", 0.0, 1.0)],
)  # fmt: skip
def test_dpo_policy_equal_to_reference(variant, eps, expected):
    s_w, s_l = t64([-3.0, -7.5, -0.2]), t64([-4.0, -1.0, -9.0])
    loss, m = O.dpo_loss(s_w, s_l, s_w.clone(), s_l.clone(), variant=variant, label_smoothing=eps)
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    assert m["rewards/margins"] == 0.0 and m["rewards/accuracies"] == 0.0


def test_dpo_gradient_closed_form():
    beta = 0.2
    c, r, rc, rr = t64([-2.0]), t64([-3.0]), t64([-2.5]), t64([-2.0])
    c.requires_grad_(True)
    r.requires_grad_(True)
    O.dpo_loss(c, r, rc, rr, beta=beta)[0].backward()
    d = beta * ((-2.0 + 2.5) - (-3.0 + 2.0))
    sig = 1 / (1 + math.exp(d))  # sigmoid(-d)
    assert c.grad.item() == pytest.approx(-beta * sig, rel=1e-12)
    assert r.grad.item() == pytest.approx(beta * sig, rel=1e-12)


# ----------------------------------------------------------------------------- IPO
def test_ipo_closed_form():
    beta = 0.25  # target margin 1 / (2 beta) = 2
    loss, m = O.ipo_loss(t64([-1.0, -2.0]), t64([-2.0, -1.0]), t64([-1.5, -2.0]), t64([-1.5, -2.0]),
                         beta=beta)  # fmt: skip
    h = [(-1.0 + 1.5) - (-2.0 + 1.5), (-2.0 + 2.0) - (-1.0 + 2.0)]  # [1.0, -1.0]
    assert loss.item() == pytest.approx(((h[0] - 2) ** 2 + (h[1] - 2) ** 2) / 2)  # (1 + 9) / 2
    assert m["rewards/chosen"] == pytest.approx(beta * (0.5 + 0.0) / 2)
    assert m["rewards/accuracies"] == 0.5


# ----------------------------------------------------------------------------- ORPO
def test_orpo_closed_form():
    pw, pl, lam = 0.6, 0.3, 0.25
    a_w, a_l = math.log(pw), math.log(pl)
    z = math.log(pw / (1 - pw)) - math.log(pl / (1 - pl))
    loss, m = O.orpo_loss(t64([a_w]), t64([a_l]), lam=lam)
    assert loss.item() == pytest.approx(-a_w - lam * logsigmoid(z), rel=1e-12)
    assert m["orpo/log_odds_chosen"] == pytest.approx(z)
    assert m["orpo/log_odds_ratio"] == pytest.approx(logsigmoid(z))
    assert m["orpo/nll_loss"] == pytest.approx(-a_w)
    assert m["rewards/chosen"] == pytest.approx(lam * a_w)


def test_orpo_odds_term_antisymmetric_under_swap():
    a_w, a_l, lam = t64([-0.3, -2.0, -0.01]), t64([-1.1, -0.5, -4.0]), 0.7
    forward = O.orpo_loss(a_w, a_l, lam=lam)[0].item()
    swapped = O.orpo_loss(a_l, a_w, lam=lam)[0].item()
    # L(w,l) - L(l,w) = -(A_w - A_l) - lam [logsigmoid(z) - logsigmoid(-z)] = -(A_w - A_l) - lam z
    z = [
        (w - math.log(-math.expm1(w))) - (lo - math.log(-math.expm1(lo)))
        for w, lo in zip(a_w.tolist(), a_l.tolist(), strict=True)
    ]
    diff = [-(w - lo) - lam * zi for w, lo, zi in zip(a_w.tolist(), a_l.tolist(), z, strict=True)]
    assert forward - swapped == pytest.approx(sum(diff) / 3, rel=1e-10)


def test_orpo_with_lam_zero_is_sft():
    a_w, a_l = t64([-0.3, -2.0]), t64([-1.1, -0.5])
    assert O.orpo_loss(a_w, a_l, lam=0.0)[0].item() == O.sft_loss(a_w)[0].item()


# ----------------------------------------------------------------------------- ASFT
@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0, 3.0])
def test_asft_beta_one_closed_form(lam):
    a_w, a_l = [-0.2, -1.5, -4.0], [-0.1, -2.5, -0.9]
    loss = O.asft_loss(t64(a_w), t64(a_l), lam=lam, beta=1.0)[0].item()
    expected = [
        -(1 + lam) * w - lam * math.log(1 - math.exp(lo)) for w, lo in zip(a_w, a_l, strict=True)
    ]
    assert loss == pytest.approx(sum(expected) / 3, rel=1e-12)


def test_asft_general_beta_closed_form():
    pw, pl, lam, beta = 0.7, 0.4, 0.5, 2.0
    ow, ol = math.log(pw / (1 - pw)), math.log(pl / (1 - pl))
    loss, m = O.asft_loss(t64([math.log(pw)]), t64([math.log(pl)]), lam=lam, beta=beta)
    expected = -math.log(pw) - lam * (logsigmoid(beta * ow) + logsigmoid(-beta * ol))
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    assert m["rewards/chosen"] == pytest.approx(beta * ow)
    assert m["asft/p_chosen"] == pytest.approx(1 / (1 + math.exp(-beta * ow)))


# ----------------------------------------------------------------------------- SimPO
def test_simpo_closed_form():
    beta, gamma = 2.0, 0.5
    loss, m = O.simpo_loss(t64([-0.5]), t64([-1.0]), beta=beta, gamma=gamma)
    z = beta * (-0.5 + 1.0) - gamma  # 0.5
    assert loss.item() == pytest.approx(math.log1p(math.exp(-z)), rel=1e-12)
    assert m["rewards/chosen"] == -1.0 and m["rewards/rejected"] == -2.0


# ----------------------------------------------------------------------------- IFT
def test_ift_loss_weights_hand_computed_three_tokens():
    # prompt, three response tokens with p = 1/2, 1/4, 1/8, then padding
    lp = t64([[-5.0, math.log(1 / 2), math.log(1 / 4), math.log(1 / 8), 3.0]])
    mask = torch.tensor([[0, 1, 1, 1, 0]])
    # c_j = -logp_j / N = k * [1, 2, 3] with k = ln2 / 3;  gamma = 1/2:
    #   W_3 = 3k;  W_2 = 2k + 3k/2 = 3.5k;  W_1 = k + 2k/2 + 3k/4 = 2.75k;  sum = 9.25k = 37k/4
    #   normalised W = 3 * [2.75, 3.5, 3] / 9.25 = [33, 42, 36] / 37
    w = O.ift_weights(lp, mask, gamma=0.5, weighting="loss")
    assert w[0].tolist() == pytest.approx([0, 33 / 37, 42 / 37, 36 / 37, 0], rel=1e-12)
    # loss = sum_i (-logp_i) W_i / N = ln2 (1*33 + 2*42 + 3*36) / (37 * 3) = ln2 * 75 / 37
    loss, metrics = O.ift_loss(lp, mask, gamma=0.5)
    assert loss.item() == pytest.approx(LN2 * 75 / 37, rel=1e-12)
    assert metrics["ift/weight_first_token"] == pytest.approx(33 / 37)
    assert metrics["ift/weight_last_token"] == pytest.approx(36 / 37)
    assert metrics["logps/chosen"] == pytest.approx(-2 * LN2)


def test_ift_prefix_weights_gamma_one_are_n_minus_i():
    lp = t64([[-1.0, -2.0, -3.0, -4.0, -5.0, -6.0], [-1.0, -1.0, -1.0, -1.0, -1.0, -1.0]])
    mask = torch.tensor([[0, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]])
    w = O.ift_weights(lp, mask, gamma=1.0, weighting="prefix")
    # N = 4: [4, 3, 2, 1] * 4 / 10;  N = 6: [6..1] * 6 / 21
    assert w[0].tolist() == pytest.approx([0, 1.6, 1.2, 0.8, 0.4, 0], rel=1e-12)
    assert w[1].tolist() == pytest.approx([k * 6 / 21 for k in range(6, 0, -1)], rel=1e-12)


@pytest.mark.parametrize(
    ("gamma", "weighting"), [(0.0, "loss"), (0.0, "prefix"), (0.95, "none"), (1.0, "none")]
)
def test_ift_equals_sft_on_mean_logps_values_and_gradients(gamma, weighting):
    g = torch.Generator().manual_seed(0)
    lp = -torch.rand(4, 7, generator=g, dtype=torch.float64) * 3
    mask = torch.ones(4, 7)
    mask[0, :2] = 0
    mask[1, 5:] = 0
    mask[2, :3] = 0
    mask[2, 6] = 0
    x1 = lp.clone().requires_grad_(True)
    x2 = lp.clone().requires_grad_(True)
    ift, _ = O.ift_loss(x1, mask, gamma=gamma, weighting=weighting)
    sft, _ = O.sft_loss(O.mean_logps(x2, mask))
    ift.backward()
    sft.backward()
    assert ift.item() == pytest.approx(sft.item(), rel=1e-14)
    assert_close(x1.grad, x2.grad, rtol=1e-14, atol=1e-16)


def test_ift_loss_weights_are_not_detached():
    """With weighting="loss" the gradient flows through W too (as in the official code)."""
    lp = t64([[-0.2, -1.5, -3.0, -0.7]]).requires_grad_(True)
    mask = torch.ones(1, 4)
    O.ift_loss(lp, mask, gamma=0.9)[0].backward()
    w = O.ift_weights(lp.detach(), mask, gamma=0.9)
    detached_grad = -w / 4  # d/dlogp of sum(-logp * W) / N with W held fixed
    assert not torch.allclose(lp.grad, detached_grad)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ift_all_zero_logps_guard(dtype):
    """A certain response (all logp = 0) would make the "loss" weights 0/0: the guard falls
    back to the prefix weights; value 0 and the finite gradient -W_prefix / (N B)."""
    lp = torch.zeros(2, 3, dtype=dtype, requires_grad=True)
    mask = torch.tensor([[1, 1, 1], [0, 1, 1]])
    w = O.ift_weights(lp, mask, gamma=0.5)
    prefix = O.ift_weights(lp, mask, gamma=0.5, weighting="prefix")
    # prefix, gamma = 1/2: row 0 [1.75, 1.5, 1] * 3 / 4.25;  row 1 [0, 1.5, 1] * 2 / 2.5
    expected = [[21 / 17, 18 / 17, 12 / 17], [0.0, 1.2, 0.8]]
    assert_close(prefix, torch.tensor(expected, dtype=dtype))
    assert_close(w, prefix)
    loss, _ = O.ift_loss(lp, mask, gamma=0.5)
    loss.backward()
    assert loss.item() == 0.0
    n_tokens = mask.sum(-1, keepdim=True)
    assert_close(lp.grad, -prefix.detach() / n_tokens / 2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ift_tiny_losses_stay_finite(dtype):
    """Near the guard threshold (sqrt(finfo.tiny)) value and gradient stay finite."""
    rows = [[-1e-30, 0.0, -1e-38], [-1e-20, -1e-19, -1e-18], [-1e-300, 0.0, -1e-160]]
    lp = torch.tensor(rows, dtype=dtype, requires_grad=True)
    loss, metrics = O.ift_loss(lp, torch.ones(3, 3), gamma=0.95)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(lp.grad).all()
    assert all(math.isfinite(v) for v in metrics.values())


# ----------------------------------------------------------------------------- all objectives
def _loss_fns():
    """(name, fn of per-sequence/per-token float64 tensors (c, r, rc, rr) and masks)."""
    return {
        "sft": lambda c, r, rc, rr: O.sft_loss(c)[0],
        "dpo": lambda c, r, rc, rr: O.dpo_loss(c, r, rc, rr, beta=0.5)[0],
        "dpo_robust": lambda c, r, rc, rr: O.dpo_loss(
            c, r, rc, rr, beta=0.5, variant="robust", label_smoothing=0.2
        )[0],
        "dpo_hinge": lambda c, r, rc, rr: O.dpo_loss(c, r, rc, rr, beta=0.05, variant="hinge")[0],
        "ipo": lambda c, r, rc, rr: O.ipo_loss(c, r, rc, rr, beta=0.3)[0],
        "orpo": lambda c, r, rc, rr: O.orpo_loss(c, r, lam=0.5)[0],
        "asft": lambda c, r, rc, rr: O.asft_loss(c, r, lam=1.0, beta=1.5)[0],
        "simpo": lambda c, r, rc, rr: O.simpo_loss(c, r, beta=2.0, gamma=0.5)[0],
    }


@pytest.mark.parametrize("name", list(_loss_fns()))
def test_gradcheck_sequence_objectives(name):
    g = torch.Generator().manual_seed(1)
    args = [-(0.05 + 2.5 * torch.rand(5, generator=g, dtype=torch.float64)) for _ in range(4)]
    args = [a.requires_grad_(True) for a in args]
    assert gradcheck(_loss_fns()[name], args, eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("weighting", ["loss", "prefix", "none"])
def test_gradcheck_ift(weighting):
    g = torch.Generator().manual_seed(2)
    lp = -(0.05 + 2.5 * torch.rand(3, 6, generator=g, dtype=torch.float64))
    mask = torch.tensor([[0, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 0, 0]])
    lp.requires_grad_(True)
    fn = lambda x: O.ift_loss(x, mask, gamma=0.8, weighting=weighting)[0]  # noqa: E731
    assert gradcheck(fn, (lp,), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", list(_loss_fns()))
def test_permutation_invariance_over_batch(name):
    g = torch.Generator().manual_seed(3)
    args = [-(0.05 + 2.5 * torch.rand(6, generator=g, dtype=torch.float64)) for _ in range(4)]
    perm = torch.randperm(6, generator=g)
    fn = _loss_fns()[name]
    assert fn(*[a[perm] for a in args]).item() == pytest.approx(fn(*args).item(), rel=1e-13)


def _token_batch(dtype, generator, B=4, T=5):
    lp = {
        k: -3 * torch.rand(B, T, generator=generator, dtype=dtype) for k in ("c", "r", "rc", "rr")
    }
    masks = torch.ones(B, T)
    masks[0, :2] = 0
    masks[1, 3:] = 0
    return lp, masks


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_padding_invariance(name):
    """Appending masked positions holding garbage (huge, inf, NaN) changes neither the loss
    nor the gradient of the real positions."""
    g = torch.Generator().manual_seed(4)
    lp, mask = _token_batch(torch.float64, g)
    garbage = t64([[1e6, -math.inf, math.nan]] * 4)

    def run(pad: bool):
        leaves = {k: (torch.cat([v, garbage], 1) if pad else v.clone()) for k, v in lp.items()}
        leaves = {k: v.requires_grad_(True) for k, v in leaves.items()}
        m = torch.cat([mask, torch.zeros(4, 3)], 1) if pad else mask
        batch = with_extra_inputs(
            SequenceLogps(leaves["c"], m, leaves["r"], m, leaves["rc"], leaves["rr"])
        )
        loss, _ = compute_objective(name, batch)
        grads = torch.autograd.grad(loss, [leaves["c"], leaves["r"]], allow_unused=True)
        return loss, [None if gr is None else gr[:, :5] for gr in grads]

    loss, grads = run(pad=False)
    loss_pad, grads_pad = run(pad=True)
    assert loss_pad.item() == pytest.approx(loss.item(), rel=1e-13)
    for a, b in zip(grads, grads_pad, strict=True):
        if a is None:
            assert b is None
        else:
            assert_close(a, b, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_reduction_none_gives_each_sequence_what_it_gets_alone(name):
    """reduction="none": per-sequence losses and metrics whose batch means are the "mean"
    reduction's values bit for bit, and whose row i is the objective on row i alone (its
    metrics only, for a batchwise objective, whose losses are per quantile of the batch)."""
    g = torch.Generator().manual_seed(6)
    lp, mask = _token_batch(torch.float64, g, B=5, T=6)
    leaves = {k: v.requires_grad_(True) for k, v in lp.items()}
    batch = with_extra_inputs(
        SequenceLogps(leaves["c"], mask, leaves["r"], mask, leaves["rc"], leaves["rr"])
    )
    loss, metrics = compute_objective(name, batch)
    losses, rows = compute_objective(name, batch, reduction="none")
    unpaired = OBJECTIVES[name].unpaired  # one loss per example: 5 desirable, 5 undesirable
    n = 10 if unpaired else 5
    mean = torch.nanmean if unpaired else torch.mean  # a metric of one kind: NaN on the other
    assert losses.shape == (n,) and losses.requires_grad
    assert torch.equal(losses.mean(), loss)
    assert sorted(rows) == sorted(metrics)
    for k, v in rows.items():
        assert v.shape == (n,) and not v.requires_grad, k
        assert mean(v, dtype=torch.float64).item() == metrics[k], k
    if unpaired:  # an example alone: tests/test_unpaired.py
        return
    plain = with_extra_inputs(SequenceLogps(lp["c"], mask, lp["r"], mask, lp["rc"], lp["rr"]))
    for i in range(5):
        one = SequenceLogps(*(getattr(plain, f.name)[i : i + 1] for f in fields(plain)))
        alone, alone_metrics = compute_objective(name, one)
        if not OBJECTIVES[name].batchwise:
            assert alone.item() == pytest.approx(losses[i].item(), rel=1e-12, abs=1e-15)
        for k, v in alone_metrics.items():
            assert v == pytest.approx(rows[k][i].item(), rel=1e-12, abs=1e-15), k


def test_a_batchwise_loss_depends_on_the_other_rows():
    """AOT sorts the batch: a row alone does not get its share of the batch's loss, and the
    batch's loss is invariant to the rows' order."""
    g = torch.Generator().manual_seed(2)
    c, r, rc, rr = (-5 * torch.rand(6, generator=g, dtype=torch.float64) for _ in range(4))
    losses = OBJECTIVES["aot"].loss_fn(c, r, rc, rr, reduction="none")[0]
    alone = [OBJECTIVES["aot"].loss_fn(c[i : i + 1], r[i : i + 1], rc[i : i + 1], rr[i : i + 1])[0]
             for i in range(6)]  # fmt: skip
    assert losses.mean().item() != pytest.approx(torch.stack(alone).mean().item())
    perm = torch.randperm(6, generator=g)
    mean = OBJECTIVES["aot"].loss_fn(c[perm], r[perm], rc[perm], rr[perm])[0]
    assert mean.item() == pytest.approx(losses.mean().item(), rel=1e-12)
    assert OBJECTIVES["aot"].batchwise and not OBJECTIVES["dpo"].batchwise


def test_unknown_reduction_is_a_value_error():
    with pytest.raises(ValueError, match=r"reduction must be one of \['mean', 'none'\], got 'sum'"):
        O.sft_loss(t64([-1.0]), reduction="sum")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_finite_for_logps_anywhere_in_range(name, dtype):
    """Log-probs anywhere in [-1e4, 0], including exactly 0 and -1e4: finite loss and grads."""
    values = torch.tensor([0.0, -1e4, -1e-7, -0.69, -1.0, -30.0, -5e3], dtype=dtype)
    g = torch.Generator().manual_seed(5)
    rows = {k: values[torch.randint(0, 7, (6, 5), generator=g)] for k in ("c", "r", "rc", "rr")}
    rows["c"][0] = 0.0  # a certain chosen response
    rows["r"][1] = 0.0  # a certain rejected response
    rows["c"][2] = -1e4
    rows["r"][3] = -1e4
    rows["rc"][4] = 0.0
    mask = torch.ones(6, 5)
    mask[5, :4] = 0
    leaves = {k: v.requires_grad_(True) for k, v in rows.items()}
    batch = with_extra_inputs(
        SequenceLogps(leaves["c"], mask, leaves["r"], mask, leaves["rc"], leaves["rr"])
    )
    loss, metrics = compute_objective(name, batch)
    grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
    assert torch.isfinite(loss)
    assert all(math.isfinite(v) for v in metrics.values())
    assert all(gr is None or torch.isfinite(gr).all() for gr in grads)


# ----------------------------------------------------------------------------- validation
A2 = t64([-1.0, -2.0])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: O.dpo_loss(A2, A2, A2, A2, beta=-1.0), r"beta must be in \(0, inf\), got -1.0"),
        (lambda: O.dpo_loss(A2, A2, A2, A2, beta=0), r"beta must be in \(0, inf\), got 0"),
        (lambda: O.dpo_loss(A2, A2, A2, A2, beta=math.inf), r"beta must be .*got inf"),
        (lambda: O.dpo_loss(A2, A2, A2, A2, variant="foo"),
         r"variant must be one of \['hinge', 'robust', 'sigmoid'\], got 'foo'"),
        (lambda: O.dpo_loss(A2, A2, A2, A2, label_smoothing=0.5),
         r"label_smoothing must be in \[0, 0.5\), got 0.5"),
        (lambda: O.dpo_loss(A2, A2, A2, A2, variant="hinge", label_smoothing=0.1),
         r"label_smoothing must be 0 for variant 'hinge', got 0.1"),
        (lambda: O.dpo_loss(A2, t64([-1.0]), A2, A2),
         r"chosen_logps and rejected_logps must have the same shape \(B,\), got \(2,\) and \(1,\)"),
        (lambda: O.dpo_loss(A2, A2, A2, t64([[-1.0, -2.0]])),
         r"ref_rejected_logps must have shape \(B,\) with B >= 1, got \(1, 2\)"),
        (lambda: O.ipo_loss(A2, A2, A2, A2, beta=0.0), r"beta must be in \(0, inf\), got 0.0"),
        (lambda: O.orpo_loss(A2, A2, lam=-0.1), r"lam must be in \[0, inf\), got -0.1"),
        (lambda: O.orpo_loss(A2, t64([-1.0, 0.5])),
         r"rejected_logps must be <= 0 \(log-probabilities\), got max 0.5"),
        (lambda: O.asft_loss(t64([0.1, -1.0]), A2), r"chosen_logps must be <= 0"),
        (lambda: O.asft_loss(A2, A2, lam=math.nan), r"lam must be in \[0, inf\), got nan"),
        (lambda: O.asft_loss(A2, A2, beta=0.0), r"beta must be in \(0, inf\), got 0.0"),
        (lambda: O.simpo_loss(A2, A2, beta=-2.0), r"beta must be in \(0, inf\), got -2.0"),
        (lambda: O.simpo_loss(A2, A2, gamma=-0.5), r"gamma must be in \[0, inf\), got -0.5"),
        (lambda: O.simpo_loss(A2, A2, beta=True), r"beta must be in \(0, inf\), got True"),
        (lambda: O.sft_loss(t64([])), r"chosen_logps must have shape \(B,\) .*got \(0,\)"),
        (lambda: O.ift_loss(t64([[-1.0]]), torch.ones(1, 1), gamma=1.5),
         r"gamma must be in \[0, 1\], got 1.5"),
        (lambda: O.ift_loss(t64([[-1.0]]), torch.ones(1, 1), weighting="mask"),
         r"weighting must be one of \['loss', 'none', 'prefix'\], got 'mask'"),
        (lambda: O.ift_weights(t64([[-1.0, -1.0]]), torch.zeros(1, 2)), r"empty rows: \[0\]"),
    ],
)  # fmt: skip
def test_value_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_type_errors():
    with pytest.raises(TypeError, match=r"chosen_logps must be a floating-point torch\.Tensor"):
        O.sft_loss([-1.0, -2.0])
    with pytest.raises(TypeError, match="rejected_logps must be a floating-point"):
        O.simpo_loss(A2, torch.tensor([-1, -2]))
