"""The reference-free losses of TRL's CPO trainer (lakelab.reference_free): hand values,
gradcheck in float64, AlphaPO at alpha = 0 is SimPO exactly, stability where TRL's is not,
bad hyper-parameters refused by name. Agreement with TRL's code: tests/test_verify_trl.py."""

import math

import pytest
import torch
from torch.autograd import gradcheck

from lakelab.objectives import simpo_loss
from lakelab.reference_free import alphapo_loss, cpo_ipo_loss, cpo_loss
from lakelab.registry import resolve_hparams


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def test_hand_values():
    assert cpo_loss(t(-3.0), t(-3.0))[0].item() == pytest.approx(math.log(2))
    assert cpo_loss(t(-3.0), t(-3.0), variant="hinge")[0].item() == pytest.approx(1.0)
    # beta (S_w - S_l) = 0.1 * 10 = 1: -logsigmoid(1) = log(1 + e^-1)
    assert cpo_loss(t(-2.0), t(-12.0))[0].item() == pytest.approx(math.log1p(math.exp(-1)))
    assert cpo_ipo_loss(t(-1.0), t(-1.0), beta=0.25)[0].item() == pytest.approx(4.0)
    assert cpo_ipo_loss(t(-1.0), t(-3.0), beta=0.25)[0].item() == pytest.approx(0.0)
    # AlphaPO's reward at alpha = 1: u = 1 - 1/p = 1 - e^(-A)
    u_w, u_l = 1 - math.exp(1.0), 1 - math.exp(2.0)
    expected = -math.log(1 / (1 + math.exp(-(2.0 * (u_w - u_l) - 0.5))))
    assert alphapo_loss(t(-1.0), t(-2.0), alpha=1.0)[0].item() == pytest.approx(expected)


def test_alphapo_at_alpha_0_is_simpo_and_tends_to_it():
    g = torch.Generator().manual_seed(0)
    c, r = (-3 * torch.rand(8, generator=g, dtype=torch.float64) for _ in range(2))
    assert torch.equal(alphapo_loss(c, r)[0], simpo_loss(c, r)[0])
    near = alphapo_loss(c, r, alpha=1e-7)[0]
    assert near.item() == pytest.approx(simpo_loss(c, r)[0].item(), rel=1e-6)


def test_alphapo_is_finite_far_below_zero():
    loss = alphapo_loss(t(-1e3), t(-1.0), alpha=0.25)[0]
    assert math.isfinite(loss.item())


@pytest.mark.parametrize(
    ("fn", "hp"),
    [
        (cpo_loss, {"beta": 0.7, "label_smoothing": 0.1}),
        (cpo_loss, {"beta": 0.7, "variant": "hinge"}),
        (cpo_ipo_loss, {"beta": 0.7}),
        (alphapo_loss, {"alpha": 0.3}),
        (alphapo_loss, {"alpha": -0.4}),
    ],
)
def test_gradcheck(fn, hp):
    g = torch.Generator().manual_seed(1)
    args = tuple(
        (-3 * torch.rand(5, generator=g, dtype=torch.float64)).requires_grad_() for _ in range(2)
    )
    assert gradcheck(lambda *x: fn(*x, **hp)[0], args, eps=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    ("name", "hp", "message"),
    [
        (
            "cpo",
            {"variant": "robust"},
            r"variant must be one of \['hinge', 'sigmoid'\], got 'robust'",
        ),
        ("cpo", {"variant": "hinge", "label_smoothing": 0.1}, "must be 0 for variant 'hinge'"),
        ("cpo_ipo", {"beta": 0.0}, r"beta must be in \(0, inf\), got 0.0"),
        ("alphapo", {"gamma": -1.0}, r"gamma must be in \[0, inf\), got -1.0"),
    ],
)
def test_bad_hyper_parameters_are_refused_by_name(name, hp, message):
    fn = {"cpo": cpo_loss, "cpo_ipo": cpo_ipo_loss, "alphapo": alphapo_loss}[name]
    with pytest.raises(ValueError, match=message):
        fn(t(-1.0), t(-2.0), **hp)
    if "hinge" not in str(hp):
        with pytest.raises(ValueError, match=message):
            resolve_hparams(name, hp)
