"""Sampling: against exact probabilities, per-policy generators, and the fast paths (the
vectorised loop, its one-by-one tail, skipped slip uniforms) against the plain one-move-at-a-
time sampler ``sample_plain``."""

import numpy as np
import pytest

from lakelab.lakes import make_lake
from lakelab.mlp import sampling
from lakelab.mlp.data import Episodes
from lakelab.mlp.sampling import sample, sample_many, sample_plain
from lakelab.solver import state_visitation, success_probability


def random_policy(seed: int, n_states: int) -> np.ndarray:
    return np.random.default_rng(seed).dirichlet(np.ones(4), size=n_states)


def test_sampled_visits_and_success_match_the_exact_values():
    """Monte Carlo of our sampler vs the solver's exact visitation (an independent method)."""
    lake = make_lake("4x4", slippery=True)
    policy = random_policy(0, lake.n_states)
    n, horizon = 20_000, 40
    eps = sample(lake, policy, n, np.random.default_rng(1), max_len=horizon)
    # d(s) counts s_0 .. s_T: the states an episode acts in, then the state its last move
    # led to (terminal, or where it stands at t = horizon)
    visits = np.zeros(lake.n_states)
    for k in range(horizon):
        alive = eps.lengths > k
        np.add.at(visits, eps.states[alive, k], 1.0)
    np.add.at(visits, eps.final, 1.0)
    exact = state_visitation(lake, policy, horizon=horizon)
    se = np.sqrt(exact * 3 / n) + 1e-3  # generous: visits per episode are not Bernoulli
    assert np.all(np.abs(visits / n - exact) < 5 * se)
    p = success_probability(lake, policy, horizon=horizon)
    hit = lake.goal[eps.final].mean()
    assert abs(hit - p) < 5 * np.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize(
    ("name", "slippery"), [("4x4", False), ("4x4", True), ("8x8", True), ("two-paths", False)]
)
def test_the_vectorised_sampler_returns_the_plain_samplers_episodes(name, slippery):
    """Same generator, same episodes: the fast path reads the uniforms as the plain loop does,
    whether episodes end early, run to max_len (a policy walking into walls), or finish in
    the one-by-one tail; and leaves the generator in the same state."""
    lake = make_lake(name, slippery=slippery)
    for seed in range(3):
        concentration = (0.3, 1.0, 5.0)[seed]  # peaked to flat policies
        policy = np.random.default_rng(seed).dirichlet(np.full(4, concentration), lake.n_states)
        for n in (1, 7, 300):
            fast_rng, plain_rng = np.random.default_rng(seed), np.random.default_rng(seed)
            fast = sample(lake, policy, n, fast_rng, max_len=40)
            assert list(fast) == sample_plain(lake, policy, n, plain_rng, max_len=40)
            assert fast_rng.random() == plain_rng.random()


def test_zero_probability_actions_are_never_drawn():
    lake = make_lake("two-paths")
    policy = np.zeros((lake.n_states, 4))
    policy[:, 1] = 0.7  # down or right only
    policy[:, 2] = 0.3
    eps = sample(lake, policy, 2000, np.random.default_rng(0), max_len=50)
    taken = np.concatenate([eps.actions[i, :k] for i, k in enumerate(eps.lengths)])
    assert set(np.unique(taken)) <= {1, 2}
    assert 0.65 < (taken == 1).mean() < 0.75


def test_each_policy_draws_from_its_own_generator():
    lake = make_lake("4x4", slippery=True)
    policies = np.stack([random_policy(s, lake.n_states) for s in range(3)])
    together = sample_many(
        lake, policies, 50, [np.random.default_rng(s) for s in range(3)], max_len=30
    )
    for s in range(3):
        alone = sample(lake, policies[s], 50, np.random.default_rng(s), max_len=30)
        rows = np.arange(s * 50, (s + 1) * 50)
        assert [t.key() for t in together.take(rows)] == [t.key() for t in alone]


@pytest.mark.parametrize("policy_seed", [0, 1])
def test_episodes_end_in_terminal_states_or_at_max_len(policy_seed):
    lake = make_lake("8x8", slippery=True)
    eps = sample(
        lake, random_policy(policy_seed, lake.n_states), 300, np.random.default_rng(2), max_len=25
    )
    ended = eps.lengths < 25
    assert lake.terminal[eps.final[ended]].all()
    assert (eps.states[:, 0] == lake.start).all()
    for i in range(len(eps)):
        k = eps.lengths[i]
        assert (eps.states[i, k:] == 0).all() and (eps.actions[i, k:] == 0).all()
        assert not lake.terminal[eps.states[i, :k]].any()


@pytest.mark.parametrize("slippery", [False, True])
def test_episodes_moved_one_by_one_equal_the_vectorised_ones(monkeypatch, slippery):
    # sample_many finishes its last few episodes in plain Python: switching to that path at
    # any point (from the start, mid-way with hashes half-computed, or never) must give the
    # same episodes and hashes (same uniforms, same comparisons)
    lake = make_lake("4x4", slippery=slippery)
    policies = np.stack([random_policy(s, lake.n_states) for s in range(3)])

    def run(one_by_one: int):
        monkeypatch.setattr(sampling, "ONE_BY_ONE", one_by_one)
        rngs = [np.random.default_rng(s) for s in range(3)]
        return sample_many(lake, policies, 40, rngs, max_len=20)  # > UNIFORM_BLOCK

    vectorised = run(-1)
    assert (vectorised.lengths == 20).any() and (vectorised.lengths < 20).any()  # both kinds
    # the hashes computed while simulating are those of the finished arrays
    recomputed = Episodes(
        vectorised.states, vectorised.actions, vectorised.lengths, vectorised.final
    ).hashes()
    np.testing.assert_array_equal(vectorised.hashes(), recomputed)
    for one_by_one in (8, 30, 10**9):  # 10**9: one by one from the first move
        other = run(one_by_one)
        for field in ("states", "actions", "lengths", "final"):
            np.testing.assert_array_equal(getattr(vectorised, field), getattr(other, field))
        np.testing.assert_array_equal(other.hashes(), recomputed)


def test_deterministic_lakes_skip_the_slip_uniforms_without_changing_the_stream(monkeypatch):
    # on a deterministic lake the slip uniforms are never read, and a PCG64 generator skips
    # them: the episodes must equal those of drawing every uniform
    lake = make_lake("two-paths")
    policies = np.stack([random_policy(s, lake.n_states) for s in range(3)])

    def run():
        rngs = [np.random.default_rng([s, 5]) for s in range(3)]
        rngs[1].integers(0, 10, size=3)  # leaves a spare 32-bit half-output, which must stay
        eps = sample_many(lake, policies, 40, rngs, max_len=40)  # 40 > UNIFORM_BLOCK
        # where each generator was left, 64-bit and 32-bit draws
        return eps, [(r.integers(0, 10, size=5).tolist(), r.random()) for r in rngs]

    skipped, after_skip = run()
    monkeypatch.setattr(
        sampling,
        "_uniforms",
        lambda rng, out, slips: out.__setitem__(..., rng.random(out.shape)),
    )
    drawn, after_draw = run()
    for field in ("states", "actions", "lengths", "final"):
        np.testing.assert_array_equal(getattr(skipped, field), getattr(drawn, field))
    assert after_skip == after_draw
    assert (drawn.lengths > sampling.UNIFORM_BLOCK).any()  # several blocks were drawn
