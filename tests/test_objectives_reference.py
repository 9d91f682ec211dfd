"""`lakelab.objectives` against an independent, naive re-implementation of every objective
(tests/oracles.py: plain Python loops and `math`, no torch), on random inputs.

Gradients of IFT (whose weights are not detached) are checked against central finite
differences of the naive loss.
"""

from __future__ import annotations

import math
import random

import pytest
import torch

from lakelab import objectives as O
from tests import oracles

SEEDS = [0, 1, 2, 3, 4]


# ----------------------------------------------------------------------------- random inputs
def random_tokens(rng: random.Random, B: int, T: int, contiguous: bool = True):
    """Random per-token log-probs and masks: a prompt, a response of random length, padding
    (or, with contiguous=False, an arbitrary non-empty mask)."""
    rows, masks = [], []
    for _ in range(B):
        if contiguous:
            start = rng.randrange(0, T)
            length = rng.randint(1, T - start)
            mask = [1 if start <= t < start + length else 0 for t in range(T)]
        else:
            mask = [rng.randint(0, 1) for _ in range(T)]
            mask[rng.randrange(T)] = 1
        rows.append([-rng.expovariate(1.0) for _ in range(T)])
        masks.append(mask)
    return rows, masks


def t64(x) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64)


# ----------------------------------------------------------------------------- comparisons
@pytest.mark.parametrize("seed", SEEDS)
def test_log1mexp_and_log_odds_match_naive(seed):
    rng = random.Random(seed)
    xs = [-rng.uniform(1e-5, 30.0) for _ in range(50)] + [0.0, -1e-7, -math.log(2)]
    got = O.log1mexp(t64(xs)).tolist()
    assert got == pytest.approx([oracles.log1mexp(x) for x in xs], rel=1e-12, abs=1e-12)
    got = O.log_odds(t64(xs)).tolist()
    assert got == pytest.approx([oracles.log_odds(x) for x in xs], rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("contiguous", [True, False])
def test_reductions_match_naive(seed, contiguous):
    rng = random.Random(seed)
    rows, masks = random_tokens(rng, B=6, T=7, contiguous=contiguous)
    lp, m = t64(rows), torch.tensor(masks)
    assert O.sum_logps(lp, m).tolist() == pytest.approx(
        [oracles.masked_sum(r, k) for r, k in zip(rows, masks, strict=True)], rel=1e-12
    )
    assert O.mean_logps(lp, m).tolist() == pytest.approx(
        [oracles.masked_mean(r, k) for r, k in zip(rows, masks, strict=True)], rel=1e-12
    )


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("weighting", ["loss", "prefix", "none"])
@pytest.mark.parametrize("contiguous", [True, False])
def test_ift_weights_and_loss_match_naive(seed, weighting, contiguous):
    rng = random.Random(seed)
    rows, masks = random_tokens(rng, B=5, T=8, contiguous=contiguous)
    for gamma in [0.0, rng.uniform(0.01, 0.99), 0.95, 1.0]:
        w = O.ift_weights(t64(rows), torch.tensor(masks), gamma=gamma, weighting=weighting)
        for b in range(len(rows)):
            expected = oracles.ift_weights(rows[b], masks[b], gamma, weighting)
            assert w[b].tolist() == pytest.approx(expected, rel=1e-10, abs=1e-12)
        loss, _ = O.ift_loss(t64(rows), torch.tensor(masks), gamma=gamma, weighting=weighting)
        assert loss.item() == pytest.approx(
            oracles.ift_loss(rows, masks, gamma, weighting), rel=1e-10
        )


@pytest.mark.parametrize("seed", SEEDS[:3])
@pytest.mark.parametrize("weighting", ["loss", "prefix"])
def test_ift_gradient_matches_finite_differences_of_naive(seed, weighting):
    """The "loss" weights depend on the log-probs and are not detached: the autograd gradient
    must match the derivative of the naive loss, weights included."""
    rng = random.Random(seed)
    rows, masks = random_tokens(rng, B=3, T=6)
    gamma = rng.uniform(0.3, 0.99)
    lp = t64(rows).requires_grad_(True)
    loss, _ = O.ift_loss(lp, torch.tensor(masks), gamma=gamma, weighting=weighting)
    (grad,) = torch.autograd.grad(loss, lp)
    h = 1e-6
    for b in range(3):
        for t in range(6):
            plus = [row[:] for row in rows]
            minus = [row[:] for row in rows]
            plus[b][t] += h
            minus[b][t] -= h
            fd = (
                oracles.ift_loss(plus, masks, gamma, weighting)
                - oracles.ift_loss(minus, masks, gamma, weighting)
            ) / (2 * h)
            assert grad[b, t].item() == pytest.approx(fd, rel=1e-5, abs=1e-8)


@pytest.mark.parametrize("seed", SEEDS)
def test_pairwise_objectives_match_naive(seed):
    rng = random.Random(seed)
    B = 7
    c = [-rng.uniform(0.01, 6.0) for _ in range(B)]
    r = [-rng.uniform(0.01, 6.0) for _ in range(B)]
    rc = [x + rng.uniform(-1, 1) for x in c]
    rr = [x + rng.uniform(-1, 1) for x in r]
    beta, lam, eps = rng.uniform(0.05, 3.0), rng.uniform(0.0, 2.0), rng.uniform(0.0, 0.45)
    C, R, RC, RR = t64(c), t64(r), t64(rc), t64(rr)

    for variant in ["sigmoid", "hinge", "robust"]:
        e = 0.0 if variant == "hinge" else eps
        loss, _ = O.dpo_loss(C, R, RC, RR, beta=beta, variant=variant, label_smoothing=e)
        assert loss.item() == pytest.approx(
            oracles.dpo_loss(c, r, rc, rr, beta, variant, e), rel=1e-10
        )
    assert O.ipo_loss(C, R, RC, RR, beta=beta)[0].item() == pytest.approx(
        oracles.ipo_loss(c, r, rc, rr, beta), rel=1e-10
    )
    assert O.orpo_loss(C, R, lam=lam)[0].item() == pytest.approx(
        oracles.orpo_loss(c, r, lam), rel=1e-10
    )
    assert O.asft_loss(C, R, lam=lam, beta=beta)[0].item() == pytest.approx(
        oracles.asft_loss(c, r, lam, beta), rel=1e-10
    )
    gamma = rng.uniform(0.0, 2.0)
    assert O.simpo_loss(C, R, beta=beta, gamma=gamma)[0].item() == pytest.approx(
        oracles.simpo_loss(c, r, beta, gamma), rel=1e-10
    )
    assert O.sft_loss(C)[0].item() == pytest.approx(-sum(c) / B, rel=1e-12)


@pytest.mark.parametrize("seed", SEEDS[:2])
def test_metrics_match_naive(seed):
    rng = random.Random(seed)
    B = 6
    c = [-rng.uniform(0.01, 6.0) for _ in range(B)]
    r = [-rng.uniform(0.01, 6.0) for _ in range(B)]
    rc = [-rng.uniform(0.01, 6.0) for _ in range(B)]
    rr = [-rng.uniform(0.01, 6.0) for _ in range(B)]
    beta = 0.3
    _, m = O.dpo_loss(t64(c), t64(r), t64(rc), t64(rr), beta=beta)
    ch = [beta * (c[i] - rc[i]) for i in range(B)]
    rj = [beta * (r[i] - rr[i]) for i in range(B)]
    assert m["rewards/chosen"] == pytest.approx(sum(ch) / B, rel=1e-12)
    assert m["rewards/rejected"] == pytest.approx(sum(rj) / B, rel=1e-12)
    assert m["rewards/margins"] == pytest.approx((sum(ch) - sum(rj)) / B, rel=1e-12, abs=1e-9)
    assert m["rewards/accuracies"] == pytest.approx(
        sum(a > b for a, b in zip(ch, rj, strict=True)) / B
    )
    assert m["logps/chosen"] == pytest.approx(sum(c) / B, rel=1e-12)
    assert m["logps/rejected"] == pytest.approx(sum(r) / B, rel=1e-12)

    _, m = O.orpo_loss(t64(c), t64(r), lam=0.25)
    z = [oracles.log_odds(c[i]) - oracles.log_odds(r[i]) for i in range(B)]
    assert m["orpo/log_odds_chosen"] == pytest.approx(sum(z) / B, rel=1e-12)
    assert m["orpo/log_odds_ratio"] == pytest.approx(sum(map(oracles.logsigmoid, z)) / B, rel=1e-12)
    assert m["rewards/chosen"] == pytest.approx(0.25 * sum(c) / B, rel=1e-12)
