"""The on-policy RL objectives (lakelab.policy_gradient): advantages by hand, the facts the
GRPO and PPO papers imply, and the exact check only an MDP allows: the mean of sampled
REINFORCE gradients is the gradient of V^pi(start) computed from the lake."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.autograd import gradcheck

from lakelab import policy_gradient as PG
from lakelab.lakes import make_lake
from lakelab.mlp.sampling import sample_plain


def t64(x) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64)


def batch(seed: int = 0, B: int = 4, T: int = 5):
    """Per-token log-probs, an old policy near them, a reference, left-aligned masks."""
    g = torch.Generator().manual_seed(seed)
    logps = -2 * torch.rand(B, T, generator=g, dtype=torch.float64)
    old = logps + 0.3 * torch.randn(B, T, generator=g, dtype=torch.float64)
    ref = logps + 0.5 * torch.randn(B, T, generator=g, dtype=torch.float64)
    lengths = torch.tensor([T, 2, 4, 1][:B])
    mask = torch.arange(T) < lengths[:, None]
    garbage = torch.full_like(logps, 7.0)  # off the mask: must never matter
    return (torch.where(mask, logps, garbage), torch.where(mask, old, garbage),
            torch.where(mask, ref, garbage), mask)  # fmt: skip


# ----------------------------------------------------------------------------- advantages
def test_group_advantages_by_hand():
    r = t64([1.0, 0.0, 3.0, 3.0, 2.0, 0.0])
    a = PG.group_advantages(r[:4], 2)  # groups [1, 0], [3, 3]
    s = math.sqrt(0.5)  # unbiased std of [1, 0]
    assert a.tolist() == pytest.approx([0.5 / (s + 1e-4), -0.5 / (s + 1e-4), 0.0, 0.0])
    assert PG.group_advantages(r[:4], 2, scale="none").tolist() == [0.5, -0.5, 0.0, 0.0]
    batch_std = r[:4].std().item()
    assert PG.group_advantages(r[:4], 2, scale="batch").tolist() == pytest.approx(
        [0.5 / (batch_std + 1e-4), -0.5 / (batch_std + 1e-4), 0.0, 0.0]
    )
    three = PG.group_advantages(r, 3)  # groups [1, 0, 3], [3, 2, 0]
    assert three.view(2, 3).sum(1).tolist() == pytest.approx([0.0, 0.0], abs=1e-12)


@pytest.mark.parametrize("aggregation", PG.AGGREGATIONS)
def test_grpo_with_equal_rewards_in_a_group_gives_zero_advantage_and_gradient(aggregation):
    advantages = PG.group_advantages(t64([1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]), 4)
    assert torch.equal(advantages, torch.zeros(8, dtype=torch.float64))
    logps, old, _, mask = batch(B=4)
    logps = torch.cat([logps, logps]).requires_grad_(True)
    loss, _ = PG.grpo_loss(logps, torch.cat([old, old]), torch.cat([mask, mask]), advantages,
                           aggregation=aggregation, max_completion_length=5)  # fmt: skip
    (grad,) = torch.autograd.grad(loss, logps)
    assert loss.item() == 0.0 and torch.equal(grad, torch.zeros_like(grad))


def test_rloo_leaves_each_sample_out_of_its_own_baseline():
    r = t64([1.0, 0.0, 0.0, 1.0, 2.0, 4.0])
    a = PG.leave_one_out_advantages(r, 3)
    assert a.tolist() == pytest.approx([1.0, -0.5, -0.5, -2.0, -0.5, 2.5])
    bumped = PG.leave_one_out_advantages(r + t64([0.3, 0, 0, 0, 0, 0]), 3)
    change = (bumped - a).tolist()  # own reward: +0.3; the others lose 0.3 / (G - 1)
    assert change == pytest.approx([0.3, -0.15, -0.15, 0.0, 0.0, 0.0])
    assert a.tolist() == pytest.approx((3 / 2 * PG.group_advantages(r, 3, scale="none")).tolist())


def test_gae_by_hand_and_its_limits():
    rewards = t64([[0.0, 0.0, 1.0], [0.0, 2.0, 0.0]])
    values = t64([[0.5, 0.4, 0.3], [1.0, 1.0, 9.0]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    a, ret = PG.gae(rewards, values, mask, gamma=0.9, lam=0.5)
    # row 0: deltas 0 + .9 * .4 - .5 = -.14, 0 + .9 * .3 - .4 = -.13, 1 - .3 = .7
    d0 = [-0.14, -0.13, 0.7]
    want0 = [d0[0] + 0.45 * (d0[1] + 0.45 * d0[2]), d0[1] + 0.45 * d0[2], d0[2]]
    d1 = [0 + 0.9 * 1.0 - 1.0, 2.0 - 1.0]  # the value 9 sits off the mask: after the end, 0
    want1 = [d1[0] + 0.45 * d1[1], d1[1], 0.0]
    assert a.tolist() == [pytest.approx(want0), pytest.approx(want1)]
    assert torch.allclose(ret, torch.where(mask, a + values, 0.0))
    mc, _ = PG.gae(rewards, values, mask, gamma=1.0, lam=1.0)  # Monte Carlo: G_t - V_t
    assert mc[0].tolist() == pytest.approx([1 - 0.5, 1 - 0.4, 1 - 0.3])


# ----------------------------------------------------------------------------- losses
def test_at_ratio_one_every_clipped_surrogate_has_the_reinforce_gradient():
    """The first inner step: the policy is the sampling policy, rho = 1."""
    logps, _, _, mask = batch(1)
    adv = t64([1.0, -2.0, 0.5, 3.0])
    leaf = logps.clone().requires_grad_(True)
    (reinforce,) = torch.autograd.grad(PG.reinforce_loss(leaf, mask, adv)[0], leaf)
    (rloo,) = torch.autograd.grad(PG.rloo_loss(leaf, logps, mask, adv)[0], leaf)
    assert torch.allclose(rloo, reinforce, rtol=1e-14, atol=1e-15)
    # per token: -sum_t A m logp / tokens, the token-level REINFORCE
    tokens = mask.sum()
    (grpo,) = torch.autograd.grad(PG.grpo_loss(leaf, logps, mask, adv)[0], leaf)
    assert torch.allclose(grpo, reinforce * len(adv) / tokens, rtol=1e-13, atol=1e-15)
    per_token = adv[:, None].expand_as(logps)
    values = torch.zeros_like(logps)
    (ppo,) = torch.autograd.grad(
        PG.ppo_loss(leaf, logps, mask, per_token, values, values, values, vf_coef=0.0)[0], leaf
    )
    assert torch.allclose(ppo, grpo, rtol=1e-13, atol=1e-15)


def test_clipping_stops_the_gradient_outside_the_trust_region():
    mask = torch.ones(2, 1, dtype=torch.bool)
    old = t64([[math.log(0.5)], [math.log(0.5)]])
    logps = (old + t64([[math.log(1.5)], [math.log(0.5)]])).requires_grad_(True)  # rho 1.5, 0.5
    loss, metrics = PG.grpo_loss(logps, old, mask, t64([1.0, -1.0]), epsilon_low=0.2,
                                 epsilon_high=0.28)  # fmt: skip
    (grad,) = torch.autograd.grad(loss, logps)
    assert torch.equal(grad, torch.zeros_like(grad))  # both clipped: A > 0 above, A < 0 below
    assert loss.item() == pytest.approx(-(1.28 * 1.0 + 0.8 * -1.0) / 2)
    assert metrics["clip_ratio/high_mean"] == 0.5 and metrics["clip_ratio/low_mean"] == 0.5
    inside = (old + t64([[math.log(1.1)], [math.log(0.9)]])).requires_grad_(True)
    (grad,) = torch.autograd.grad(PG.grpo_loss(inside, old, mask, t64([1.0, -1.0]))[0], inside)
    assert grad.abs().min() > 0


def test_grpo_kl_is_k3_zero_at_the_reference():
    logps, old, ref, mask = batch(2)
    adv = torch.zeros(4, dtype=torch.float64)
    loss, metrics = PG.grpo_loss(logps, old, mask, adv, ref, beta=0.5)
    q = torch.where(mask, ref - logps, 0.0)
    k3 = torch.where(mask, torch.exp(q) - q - 1, 0.0)
    assert metrics["kl"] == pytest.approx((k3.sum() / mask.sum()).item(), rel=1e-13)
    assert loss.item() == pytest.approx(0.5 * metrics["kl"], rel=1e-13)
    leaf = logps.clone().requires_grad_(True)
    at_ref, m = PG.grpo_loss(leaf, old, mask, adv, logps, beta=0.5)
    (grad,) = torch.autograd.grad(at_ref, leaf)
    assert at_ref.item() == 0.0 and m["kl"] == 0.0 and grad.abs().max() == 0.0


def test_the_aggregations_by_hand():
    logps, old, _, mask = batch(3)
    adv = t64([1.0, -1.0, 2.0, 0.5])
    rho = torch.exp(logps - old)
    per_token = -torch.min(rho * adv[:, None], rho.clamp(0.8, 1.2) * adv[:, None])
    per_token = torch.where(mask, per_token, 0.0)
    want = {
        "grpo": (per_token.sum(-1) / mask.sum(-1)).mean(),
        "dapo": per_token.sum() / mask.sum(),
        "bnpo": per_token.sum() / mask.sum(),
        "dr_grpo": per_token.sum() / (4 * 8),
    }
    for aggregation, value in want.items():
        got = PG.grpo_loss(logps, old, mask, adv, aggregation=aggregation, max_completion_length=8)
        assert got[0].item() == pytest.approx(value.item(), rel=1e-13), aggregation


def test_ppo_value_loss_is_clipped_around_the_old_values():
    mask = torch.ones(1, 2, dtype=torch.bool)
    zero = torch.zeros(1, 2, dtype=torch.float64)
    values, old_values, returns = t64([[1.0, 0.1]]), t64([[0.0, 0.0]]), t64([[1.0, 1.0]])
    _, metrics = PG.ppo_loss(zero, zero, mask, zero, values, old_values, returns, value_clip=0.2)
    # token 0: max((1 - 1)^2, (0.2 - 1)^2) = 0.64; token 1: max(0.81, 0.81) = 0.81; halves
    assert metrics["value_loss"] == pytest.approx((0.64 + 0.81) / 4)


@pytest.mark.parametrize(
    "fn",
    [
        lambda x, o, m, a, r: PG.grpo_loss(x, o, m, a, r, beta=0.1, aggregation="grpo")[0],
        lambda x, o, m, a, r: PG.grpo_loss(x, o, m, a, r, epsilon_high=0.3)[0],
        lambda x, o, m, a, r: PG.rloo_loss(x, o, m, a)[0],
        lambda x, o, m, a, r: PG.reinforce_loss(x, m, a)[0],
    ],
)
def test_gradcheck(fn):
    logps, old, ref, mask = batch(4)
    adv = t64([1.0, -0.5, 2.0, 0.3])
    assert gradcheck(lambda x: fn(x, old, mask, adv, ref), (logps.clone().requires_grad_(),),
                     eps=1e-6, atol=1e-7)  # fmt: skip


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: PG.group_advantages(t64([1.0, 2.0]), 1), "group_size must be an int >= 2"),
        (lambda: PG.group_advantages(t64([1.0, 2.0, 3.0]), 2),
         "the batch of 3 rewards is not a whole number of groups of 2"),
        (lambda: PG.group_advantages(t64([1.0, 2.0]), 2, scale="std"),
         r"scale must be one of \['batch', 'group', 'none'\], got 'std'"),
        (lambda: PG.grpo_loss(*batch()[:2], batch()[3], t64([0.0] * 4), epsilon_low=1.0),
         r"epsilon_low must be in \[0, 1\), got 1.0"),
        (lambda: PG.grpo_loss(*batch()[:2], batch()[3], t64([0.0] * 4), epsilon_high=-0.1),
         r"epsilon_high must be in \[0, 1\), got -0.1"),
        (lambda: PG.grpo_loss(*batch()[:2], batch()[3], t64([0.0] * 4), aggregation="sum"),
         r"aggregation must be one of \['bnpo', 'dapo', 'dr_grpo', 'grpo'\], got 'sum'"),
        (lambda: PG.grpo_loss(*batch()[:2], batch()[3], t64([0.0] * 4), aggregation="dr_grpo"),
         "aggregation 'dr_grpo' needs max_completion_length"),
        (lambda: PG.grpo_loss(*batch()[:2], batch()[3], t64([0.0] * 4), beta=0.1),
         "beta = 0.1 needs ref_logps"),
        (lambda: PG.reinforce_loss(batch()[0], batch()[3], t64([0.0] * 3)),
         r"advantages must have shape \(4,\)"),
    ],
)  # fmt: skip
def test_value_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ----------------------------------------------------------------------------- the exact check
@pytest.mark.slow  # 20 000 episodes each: some 5 s
@pytest.mark.parametrize("slippery", [False, True])
def test_sampled_reinforce_gradients_average_to_the_exact_policy_gradient(slippery):
    """On a 4x4 lake with a tabular softmax policy theta [S, A]: V^pi(start) from one linear
    solve in torch, differentiated by autograd, against the mean of REINFORCE gradients of
    N sampled episodes (advantage gamma^(T - 1) for an episode reaching the goal in T moves,
    0 otherwise, which is its discounted return). Every component within 5 standard errors,
    and the squared errors over the components a chi^2 within 6 sigma of its mean."""
    lake = make_lake("4x4", slippery=slippery)
    gamma, S, A = 0.99, lake.n_states, 4
    g = torch.Generator().manual_seed(0)
    theta = (0.5 * torch.randn(S, A, generator=g, dtype=torch.float64)).requires_grad_(True)
    theta.data[:, 1:3] += 1.0  # lean down and right: the goal is reached often

    pi = theta.softmax(-1)
    P = torch.tensor(lake.P) * torch.tensor(~lake.terminal)[:, None, None]  # absorbing: 0
    P_pi = torch.einsum("sa,sat->st", pi, P)
    r_pi = (pi * torch.tensor(lake.R)).sum(-1)
    V = torch.linalg.solve(torch.eye(S, dtype=torch.float64) - gamma * P_pi, r_pi)
    (exact,) = torch.autograd.grad(V[lake.start], theta)

    n = 20_000
    episodes = sample_plain(lake, pi.detach().numpy(), n, np.random.default_rng(1), max_len=400)
    logp = theta.log_softmax(-1)
    per_episode = torch.zeros(n, S, A, dtype=torch.float64)  # A_i * grad log p(episode i)
    advantages = torch.zeros(n, dtype=torch.float64)
    T = max(len(e) for e in episodes)
    tokens = torch.zeros(n, T, dtype=torch.long)
    mask = torch.zeros(n, T, dtype=torch.bool)
    for i, e in enumerate(episodes):
        if lake.goal[e.final]:
            advantages[i] = gamma ** (len(e) - 1)
        tokens[i, : len(e)] = torch.tensor(e.states) * A + torch.tensor(e.actions)
        mask[i, : len(e)] = True
        if advantages[i]:
            for s, a in zip(e.states, e.actions, strict=True):
                per_episode[i, s] -= pi[s].detach()
                per_episode[i, s, a] += 1.0
            per_episode[i] *= advantages[i]
    logps = logp.reshape(-1)[tokens]  # (n, T) log pi(a_t | s_t)
    (sampled,) = torch.autograd.grad(-PG.reinforce_loss(logps, mask, advantages)[0], theta)
    assert torch.allclose(sampled, per_episode.mean(0), rtol=1e-10, atol=1e-12)
    se = per_episode.std(0) / math.sqrt(n)
    seen = se > 0  # states the episodes visit (not the terminal ones)
    k = int(seen.sum())
    z = (sampled - exact)[seen] / se[seen]
    bound = k + 6 * math.sqrt(2 * k)  # chi^2(k): its mean plus 6 standard deviations
    signal = ((exact[seen] / se[seen]) ** 2).sum()  # the statistic a zero gradient would get
    assert signal > 2 * bound, f"a gradient worth checking: {signal:.0f} vs {2 * bound:.0f}"
    assert (z.abs() <= 5).all(), z.abs().max()  # each component within 5 standard errors
    assert (z**2).sum() < bound, (z**2).sum()


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda lp, m, a: PG.grpo_loss(lp, lp[:, 0], m, a), r"old_logps must have the shape"),
        (lambda lp, m, a: PG.rloo_loss(lp, lp[:1, :1], m, a), r"old_logps must have the shape"),
        (lambda lp, m, a: PG.grpo_loss(lp, lp, m, a, lp[:, 0], beta=0.1),
         r"ref_logps must have the shape"),
        (lambda lp, m, a: PG.ppo_loss(lp, lp, m, lp, lp, lp[:1], lp),
         r"old_values must have the shape"),
        (lambda lp, m, a: PG.ppo_loss(lp, lp, m, 1.0, lp, lp, lp),
         r"advantages must have the shape of logps \(4, 5\), got float"),
        (lambda lp, m, a: PG.gae(lp, lp[:, :0], m), r"values must have shape \(B, T\) with T >= 1"),
    ],
)  # fmt: skip
def test_mismatched_shapes_are_named_not_broadcast(call, message):
    logps, _, _, mask = batch()
    with pytest.raises(ValueError, match=message):
        call(logps, mask, t64([0.0] * 4))
