"""The exact solver against reference values, closed forms and an independent implementation
(the textbook loop of tests/oracles.py)."""

import math

import numpy as np
import pytest

from lakelab.lakes import make_lake, random_lake
from lakelab.solver import (
    TabularMDP,
    finite_horizon_values,
    greedy_policy,
    policy_evaluation,
    soft_value_iteration,
    state_visitation,
    success_probability,
    value_iteration,
)
from tests.oracles import loop_value_iteration

# -- reference values (Gymnasium's registry: reward_threshold ~0.74 and ~0.91) ---------------


@pytest.mark.parametrize(
    ("name", "v_star", "horizon", "v_horizon"),
    [("4x4", 0.8235, 100, 0.7442), ("8x8", 1.0, 200, 0.9132)],
)
def test_reference_values(name, v_star, horizon, v_horizon):
    lake = make_lake(name, slippery=True)
    assert lake.time_limit() == horizon
    sol = value_iteration(lake)
    assert round(sol.V[lake.start], 4) == v_star
    assert round(finite_horizon_values(lake, horizon)[lake.start], 4) == v_horizon


def test_4x4_value_is_14_over_17():
    # 0.8235... is 14/17: checking more digits than the reference keeps the test sharp.
    sol = value_iteration(make_lake("4x4", slippery=True), tol=1e-13)
    assert sol.V[0] == pytest.approx(14 / 17, abs=1e-9)


def test_deterministic_lake_values_are_discounted_path_lengths():
    lake = make_lake("two-paths")
    gamma = 0.9
    sol = value_iteration(lake, gamma=gamma)
    # shortest route is 8 moves; the reward arrives on the 8th, discounted 7 times
    assert sol.V[lake.start] == pytest.approx(gamma**7)
    top_right = lake.state(0, 4)  # 8 moves left on the sub-optimal route
    assert sol.V[top_right] == pytest.approx(gamma**7)
    assert sol.V[lake.state(4, 3)] == pytest.approx(1.0)


# -- invariants -----------------------------------------------------------------------------


@pytest.mark.parametrize("gamma", [1.0, 0.9])
@pytest.mark.parametrize("name", ["4x4", "8x8", "two-paths"])
def test_policy_evaluation_of_optimal_policy_is_v_star(name, gamma):
    lake = make_lake(name, slippery=True)
    sol = value_iteration(lake, gamma=gamma, tol=1e-13)
    V, Q = policy_evaluation(lake, sol.policy, gamma=gamma)
    np.testing.assert_allclose(V, sol.V, atol=1e-8)
    np.testing.assert_allclose(Q, sol.Q, atol=1e-8)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 0.9, 0.99])
def test_soft_value_iteration_tends_to_hard(gamma):
    lake = make_lake("4x4", slippery=True)
    hard = value_iteration(lake, gamma=gamma, tol=1e-12)
    gaps = []
    for tau in [1.0, 0.1, 0.01, 0.001]:
        soft = soft_value_iteration(lake, tau=tau, gamma=gamma, tol=1e-12)
        gap = soft.V - hard.V
        # 0 <= V_soft - V_hard <= tau log|A| / (1 - gamma): entropy adds at most log 4 a step
        assert (gap >= -1e-9).all()
        assert (gap <= tau * math.log(4) / (1 - gamma) + 1e-9).all()
        gaps.append(gap.max())
    assert gaps == sorted(gaps, reverse=True) and gaps[-1] < 0.01
    # the soft policy concentrates on the hard optimum's actions: a sub-optimal action has
    # pi(a|s) = exp((Q(s,a) - V(s)) / tau) <= exp(-gap(s) / tau), gap = Q-distance to the best
    tau = 1e-3
    soft = soft_value_iteration(lake, tau=tau, gamma=gamma, tol=1e-12)
    live = ~lake.terminal
    optimal = hard.policy > 0
    gap = np.where(optimal, np.inf, hard.Q.max(-1, keepdims=True) - hard.Q).min(-1)
    suboptimal_mass = (soft.policy * ~optimal).sum(-1)[live]
    assert (suboptimal_mass <= 3 * np.exp(-gap[live] / tau) + 1e-9).all()
    if gamma >= 0.9:
        assert suboptimal_mass.max() < 0.5


def test_soft_policy_is_softmax_of_q():
    lake = make_lake("two-paths", slippery=True)
    soft = soft_value_iteration(lake, tau=0.3, gamma=0.9)
    np.testing.assert_allclose(soft.policy.sum(-1), 1.0)
    live = ~lake.terminal
    expected = np.exp(soft.Q / 0.3)
    expected /= expected.sum(-1, keepdims=True)
    np.testing.assert_allclose(soft.policy[live], expected[live], rtol=1e-10)
    # soft Bellman: V = tau logsumexp(Q / tau) on live states
    np.testing.assert_allclose(soft.V[live], 0.3 * np.log(np.exp(soft.Q / 0.3).sum(-1))[live])


@pytest.mark.parametrize("name", ["4x4", "8x8"])
def test_visitation_sums(name):
    lake = make_lake(name, slippery=True)
    sol = value_iteration(lake, tol=1e-13)
    d = state_visitation(lake, sol.policy)
    assert d[lake.terminal].sum() == pytest.approx(1.0)  # every episode ends once
    assert d[lake.goal].sum() == pytest.approx(success_probability(lake, sol.policy))
    # non-terminal visits = expected episode length, from a second linear system:
    # E[T](s) = 1 + sum_s' P_pi(s, s') E[T](s'), an "evaluation" with reward 1 per step
    steps, _ = policy_evaluation(
        TabularMDP(
            lake.next_states,
            lake.next_probs,
            np.ones_like(lake.R),
            lake.terminal,
            lake.goal,
            lake.start,
        ),
        sol.policy,
    )
    assert d[~lake.terminal].sum() == pytest.approx(steps[lake.start])
    # normalised, it is a distribution; with gamma < 1 the total is sum_t gamma^t Pr(alive)
    np.testing.assert_allclose(state_visitation(lake, sol.policy, normalize=True).sum(), 1.0)


def test_visitation_with_horizon_converges_and_counts_steps():
    lake = make_lake("4x4", slippery=True)
    policy = np.full((16, 4), 0.25)
    d_inf = state_visitation(lake, policy, gamma=0.9)
    d_long = state_visitation(lake, policy, gamma=0.9, horizon=2000)
    np.testing.assert_allclose(d_long, d_inf, atol=1e-10)
    # horizon H counts states s_0..s_H: H+1 states in all while nobody terminates
    lake_open = make_lake(["SFF", "FFF", "FFG"])
    stay = np.zeros((9, 4))
    stay[:, 3] = 1.0  # Up from the top row bumps into the wall forever
    d = state_visitation(lake_open, stay, horizon=5)
    assert d[lake_open.start] == 6.0 and d.sum() == 6.0


def test_visitation_matches_monte_carlo_in_the_real_env():
    # uniform-random agent on the slippery 4x4: short episodes, every cell reachable
    lake = make_lake("4x4", slippery=True)
    policy = np.full((16, 4), 0.25)
    d = state_visitation(lake, policy, horizon=100)
    env, rng = lake.make_env(), np.random.default_rng(0)
    n = 1500
    counts = np.zeros((n, lake.n_states))
    for ep in range(n):
        s, _ = env.reset(seed=ep)
        counts[ep, s] += 1
        done = False
        while not done:
            s, _, terminated, truncated, _ = env.step(int(rng.integers(4)))
            counts[ep, s] += 1
            done = terminated or truncated
    mean, sem = counts.mean(0), counts.std(0) / np.sqrt(n)
    assert (np.abs(mean - d) <= 4.5 * sem + 1e-12).all()  # each cell within 4.5 standard errors


def test_looping_policy_gamma_one():
    lake = make_lake(["SFF", "FFF", "FFG"])
    stay = np.zeros((9, 4))
    stay[:, 3] = 1.0  # Up: stuck in the top row, never ends
    V, _ = policy_evaluation(lake, stay)  # no reward while looping: worth exactly 0
    assert (V == 0).all()
    assert success_probability(lake, stay) == 0.0
    with pytest.raises(ValueError, match="visits are infinite"):
        state_visitation(lake, stay)
    reward_loop = TabularMDP(
        lake.next_states, lake.next_probs, np.ones((9, 4)), lake.terminal, lake.goal, lake.start
    )
    with pytest.raises(ValueError, match="return is infinite"):
        policy_evaluation(reward_loop, stay)


def test_greedy_policy_splits_ties_so_gamma_one_terminates():
    lake = make_lake(["SFF", "FFF", "FFG"])
    sol = value_iteration(lake)  # every live state has V* = 1: wall bumps tie with moves
    assert (sol.V[~lake.terminal] == 1.0).all()
    assert success_probability(lake, sol.policy) == pytest.approx(1.0)
    np.testing.assert_allclose(
        greedy_policy(np.array([[1.0, 1.0, 0.0, 1.0]])), [[1 / 3, 1 / 3, 0, 1 / 3]]
    )


def test_finite_horizon_bounds():
    lake = make_lake("4x4", slippery=True)
    sol = value_iteration(lake, tol=1e-14)
    v = [finite_horizon_values(lake, h)[0] for h in (0, 6, 20, 100, 1000)]
    assert v[0] == 0.0 and v[1] > 0  # the goal is 6 moves away
    assert v == sorted(v) and v[-1] <= sol.V[0] + 1e-12
    # the optimal clock-aware agent beats the stationary optimum under a time limit
    stationary = finite_horizon_values(lake, 100, policy=sol.policy)[0]
    assert stationary < v[3]
    assert success_probability(lake, sol.policy, horizon=100) == pytest.approx(stationary)


# -- an independent implementation: the textbook loop over Gymnasium's own P ----------------


@pytest.mark.parametrize("seed", range(6))
def test_matches_naive_loop_on_random_lakes(seed):
    rng = np.random.default_rng(seed)
    lake = random_lake(
        int(rng.integers(3, 7)),
        p_frozen=0.75,
        seed=seed,
        slippery=bool(seed % 2),
        success_rate=float(rng.uniform(0.3, 1.0)),
    )
    gamma = 0.95
    naive = loop_value_iteration(lake.make_env().unwrapped.P, lake.n_states, gamma, 600)
    ours = value_iteration(lake, gamma=gamma, tol=1e-13).V
    # Gymnasium's terminal states self-loop with reward 0, ours are fixed at 0: same thing
    np.testing.assert_allclose(ours, naive, atol=1e-10)


def test_from_dense_round_trip_and_validation():
    lake = make_lake("4x4", slippery=True)
    mdp = TabularMDP.from_dense(lake.P, lake.R, lake.terminal, lake.goal, lake.start)
    np.testing.assert_array_equal(mdp.P, lake.P)
    np.testing.assert_allclose(value_iteration(mdp).V, value_iteration(lake).V)
    bad = lake.P.copy()
    bad[0, 0, 0] += 0.5
    with pytest.raises(ValueError, match="probability distribution"):
        TabularMDP.from_dense(bad, lake.R, lake.terminal)


# -- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize("gamma", [-0.1, 1.01, float("nan"), "0.9"])
def test_bad_gamma(gamma):
    lake = make_lake("4x4")
    with pytest.raises(ValueError, match=r"gamma must be in \[0, 1\]"):
        value_iteration(lake, gamma=gamma)


def test_soft_needs_gamma_below_one_and_positive_tau():
    lake = make_lake("4x4")
    with pytest.raises(ValueError, match="soft value iteration needs gamma < 1"):
        soft_value_iteration(lake, tau=0.1, gamma=1.0)
    for tau in (0.0, -1.0, float("inf")):
        with pytest.raises(ValueError, match="tau must be > 0"):
            soft_value_iteration(lake, tau=tau)


def test_non_convergence_is_an_error():
    lake = make_lake("8x8", slippery=True)
    with pytest.raises(RuntimeError, match="did not converge in 10 sweeps"):
        value_iteration(lake, max_iter=10)
    with pytest.raises(RuntimeError, match="did not converge in 10 sweeps"):
        soft_value_iteration(lake, tau=0.1, gamma=0.99, max_iter=10)
    with pytest.raises(ValueError, match=r"tol must be in \(0, inf\), got 0.0"):
        value_iteration(lake, tol=0.0)


def test_bad_policy_shapes_and_rows():
    lake = make_lake("4x4")
    with pytest.raises(ValueError, match=r"\(S, A\) = \(16, 4\), got \(4, 4\)"):
        policy_evaluation(lake, np.full((4, 4), 0.25))
    with pytest.raises(ValueError, match="probability distributions"):
        policy_evaluation(lake, np.full((16, 4), 0.3))
    with pytest.raises(ValueError, match="horizon"):
        finite_horizon_values(lake, -1)


@pytest.mark.parametrize(
    "kw", [{"gamma": 0.9}, {"gamma": 1.0}, {"horizon": 30}, {"gamma": 0.8, "horizon": 7}]
)
def test_visitation_of_many_policies_equals_one_at_a_time(kw):
    lake = make_lake("4x4", slippery=True)
    rng = np.random.default_rng(3)
    policies = rng.dirichlet(np.ones(4), size=(2, 3, 16))  # (2, 3, S, A), all ending episodes
    many = state_visitation(lake, policies, normalize=True, **kw)
    assert many.shape == (2, 3, 16)
    for i in range(2):
        for j in range(3):
            one = state_visitation(lake, policies[i, j], normalize=True, **kw)
            np.testing.assert_allclose(many[i, j], one, rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match=r"\(\.\.\., S, A\) with \(S, A\) = \(16, 4\)"):
        state_visitation(lake, policies[..., :3])


def test_success_and_values_of_many_policies_equal_one_at_a_time():
    lake = make_lake("8x8", slippery=True)
    policies = np.random.default_rng(4).dirichlet(np.ones(4), size=(3, 64))
    many_p = success_probability(lake, policies)
    many_v, many_q = policy_evaluation(lake, policies, gamma=0.95)
    assert many_p.shape == (3,) and many_v.shape == (3, 64) and many_q.shape == (3, 64, 4)
    for i in range(3):
        assert many_p[i] == pytest.approx(success_probability(lake, policies[i]), rel=1e-12)
        np.testing.assert_allclose(
            many_v[i], policy_evaluation(lake, policies[i], gamma=0.95)[0], rtol=1e-12
        )
    # different looping states per policy take the per-policy path and still agree
    stuck = policies.copy()
    stuck[0, :, :] = 0.0
    stuck[0, :, 0] = 1.0  # always left: loops against the west wall, never ends
    loops = success_probability(lake, stuck)
    assert loops[0] == 0.0
    assert loops[1] == pytest.approx(success_probability(lake, policies[1]), rel=1e-12)
