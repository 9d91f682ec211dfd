"""Gradient analysis: autograd gradients against hand-derived closed forms, and the
chosen-vs-rejected speed ratios that follow from them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lakelab import objectives as O
from lakelab.analysis import gradient_field, sequence_gradients


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


# points (chosen, rejected) in the tabular view; strictly negative for ORPO/ASFT
C = np.array([-0.1, -0.5, -1.0, -2.0, -4.0, -0.3])
R = np.array([-0.2, -3.0, -0.5, -2.0, -1.0, -6.0])


def test_dpo_gradients_equal_and_opposite_closed_form():
    beta, rc, rr = 0.5, -1.0, -1.5
    out = sequence_gradients(
        "dpo", C, R, ref_chosen_logp=rc, ref_rejected_logp=rr, hparams={"beta": beta}
    )
    d = beta * ((C - rc) - (R - rr))
    np.testing.assert_allclose(out["loss"], np.log1p(np.exp(-d)), rtol=1e-12)
    np.testing.assert_allclose(out["dL/dlogp_chosen"], -beta * sigmoid(-d), rtol=1e-12)
    np.testing.assert_allclose(out["dL/dlogp_rejected"], -out["dL/dlogp_chosen"], rtol=1e-12)
    # equal and opposite d logp/dt => dp/dt scales with p:
    p_w, p_l = np.exp(C), np.exp(R)
    np.testing.assert_allclose(out["rate_ratio"], p_l / p_w, rtol=1e-12)
    np.testing.assert_allclose(out["rate_chosen"], p_w * beta * sigmoid(-d), rtol=1e-12)
    # flow on probabilities (the papers' field): dp/dt = -dL/dp = -(dL/dlogp)/p => ratio p_w/p_l
    np.testing.assert_allclose(out["prob_rate_ratio"], p_w / p_l, rtol=1e-12)
    np.testing.assert_allclose(out["dL/dp_chosen"], -beta * sigmoid(-d) / p_w, rtol=1e-12)
    assert (out["prob_rate_chosen"] > 0).all() and (out["prob_rate_rejected"] < 0).all()


def test_dpo_lowers_rejected_faster_exactly_when_the_papers_say():
    """ASFT's claim for DPO, in the probability-space flow: where p_l < p_w, the rejected
    probability falls faster than the chosen one rises (ratio p_w / p_l > 1)."""
    out = sequence_gradients("dpo", C, R)
    faster = np.abs(out["prob_rate_rejected"]) > np.abs(out["prob_rate_chosen"])
    np.testing.assert_array_equal(faster, R < C)


@pytest.mark.parametrize("lam", [0.5, 1.0, 2.0])
def test_asft_beta_one_closed_form(lam):
    out = sequence_gradients("asft", C, R, hparams={"lam": lam, "beta": 1.0})
    # L = -(1 + lam) A_w - lam log(1 - e^{A_l})
    np.testing.assert_allclose(out["dL/dlogp_chosen"], -(1 + lam), rtol=1e-12)
    p_l = np.exp(R)
    np.testing.assert_allclose(out["dL/dlogp_rejected"], lam * p_l / (1 - p_l), rtol=1e-10)
    # prob flow: dp_w/dt = (1 + lam) / p_w, dp_l/dt = -lam / (1 - p_l)
    p_w = np.exp(C)
    expected = lam * p_w / ((1 + lam) * (1 - p_l))
    np.testing.assert_allclose(out["prob_rate_ratio"], expected, rtol=1e-10)


def test_asft_chosen_gradient_at_least_one():
    grid = np.linspace(-6.0, -1e-3, 9)
    for beta in [0.5, 1.0, 3.0]:
        f = gradient_field("asft", grid, grid, hparams={"beta": beta, "lam": 1.0})
        # dL/dA_w = -1 - lam * beta * sigmoid(-beta logodds_w) / (1 - e^{A_w}): magnitude >= 1
        assert (f["dL/dlogp_chosen"] <= -1.0).all()
        assert (f["dL/dlogp_rejected"] >= 0.0).all()


def test_orpo_closed_form():
    lam = 0.5
    out = sequence_gradients("orpo", C, R, hparams={"lam": lam})
    z = (C - np.log1p(-np.exp(C))) - (R - np.log1p(-np.exp(R)))
    s = sigmoid(-z)
    np.testing.assert_allclose(out["dL/dlogp_chosen"], -1 - lam * s / (1 - np.exp(C)), rtol=1e-10)
    np.testing.assert_allclose(out["dL/dlogp_rejected"], lam * s / (1 - np.exp(R)), rtol=1e-10)


def test_simpo_and_ipo_closed_forms():
    beta, gamma = 2.0, 0.5
    out = sequence_gradients("simpo", C, R, hparams={"beta": beta, "gamma": gamma})
    g = -beta * sigmoid(-(beta * (C - R) - gamma))
    np.testing.assert_allclose(out["dL/dlogp_chosen"], g, rtol=1e-12)
    np.testing.assert_allclose(out["dL/dlogp_rejected"], -g, rtol=1e-12)

    out = sequence_gradients("ipo", C, R, ref_chosen_logp=-1.0, hparams={"beta": 0.25})
    h = (C + 1.0) - R
    np.testing.assert_allclose(out["dL/dlogp_chosen"], 2 * (h - 2.0), rtol=1e-12)
    np.testing.assert_allclose(out["loss"], (h - 2.0) ** 2, rtol=1e-12)


@pytest.mark.parametrize("name", ["sft", "ift"])
def test_sft_and_ift_have_no_rejected(name):
    out = sequence_gradients(name, C, R)
    np.testing.assert_allclose(out["loss"], -C, rtol=1e-12)
    np.testing.assert_allclose(out["dL/dlogp_chosen"], -1.0, rtol=1e-12)
    for key in ["dL/dlogp_rejected", "dL/dp_rejected", "rate_rejected", "rate_ratio"]:
        assert (out[key] == 0).all()
    np.testing.assert_allclose(out["rate_chosen"], np.exp(C), rtol=1e-12)


@pytest.mark.parametrize("name", ["sft", "ift", "dpo", "ipo", "orpo", "asft", "simpo"])
def test_loss_values_match_the_objective_functions(name):
    out = sequence_gradients(name, C, R, ref_chosen_logp=-0.7, ref_rejected_logp=-1.2)
    c, r = torch.tensor(C), torch.tensor(R)
    rc, rr = torch.full_like(c, -0.7), torch.full_like(r, -1.2)
    direct = {
        "sft": lambda: O.sft_loss(c),
        "ift": lambda: O.sft_loss(c),
        "dpo": lambda: O.dpo_loss(c, r, rc, rr),
        "ipo": lambda: O.ipo_loss(c, r, rc, rr),
        "orpo": lambda: O.orpo_loss(c, r),
        "asft": lambda: O.asft_loss(c, r),
        "simpo": lambda: O.simpo_loss(c, r),
    }[name]
    assert out["loss"].mean() == pytest.approx(direct()[0].item(), rel=1e-12)


def test_broadcasting_tensors_and_scalars():
    out = sequence_gradients("dpo", torch.tensor([[-1.0], [-2.0]]), np.array([-1.0, -3.0, -5.0]))
    assert out["loss"].shape == (2, 3)
    scalar = sequence_gradients("dpo", -1.0, -3.0)
    assert scalar["loss"].shape == ()
    assert scalar["loss"] == pytest.approx(out["loss"][0, 1], rel=1e-14)


def test_gradient_field_orientation_and_shapes():
    xs, ys = np.array([-3.0, -2.0, -1.0, -0.5]), np.array([-4.0, -1.0, -0.2])
    f = gradient_field("simpo", xs, ys)
    assert f["loss"].shape == (3, 4)
    np.testing.assert_array_equal(f["logp_chosen"][1], xs)  # chosen varies along columns
    np.testing.assert_array_equal(f["logp_rejected"][:, 2], ys)
    point = sequence_gradients("simpo", xs[2], ys[1])
    assert f["dL/dlogp_chosen"][1, 2] == pytest.approx(point["dL/dlogp_chosen"], rel=1e-14)


def test_underflowing_probability_gives_inf_not_an_exception():
    out = sequence_gradients("sft", -1e4, -1.0)
    assert out["p_chosen"] == 0.0 and np.isinf(out["dL/dp_chosen"])
    assert out["rate_chosen"] == 0.0


def test_errors():
    with pytest.raises(ValueError, match="unknown objective 'rrhf'"):
        sequence_gradients("rrhf", -1.0, -2.0)
    with pytest.raises(ValueError, match=r"dpo: beta must be in \(0, inf\), got -1"):
        sequence_gradients("dpo", -1.0, -2.0, hparams={"beta": -1})
    with pytest.raises(ValueError, match="1-D"):
        gradient_field("dpo", np.zeros((2, 2)), np.zeros(3))
    with pytest.raises(ValueError, match="must be <= 0"):
        sequence_gradients("orpo", 0.5, -1.0)
