"""Trajectories: sampling against exact probabilities, hashing, padding, batching."""

import numpy as np
import pytest
import torch

from lakelab.lakes import make_lake
from lakelab.solver import state_visitation, success_probability
from lakelab.trajectories import Episodes, Trajectory, routes, sample, sample_many, to_batch


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


def test_hashes_identify_trajectories_whatever_the_padding():
    lake = make_lake("two-paths")
    all_routes = routes(lake)
    eps = Episodes.from_trajectories(all_routes)
    h = eps.hashes()
    assert len(set(h.tolist())) == len(all_routes)  # distinct routes, distinct hashes
    wide = Episodes.concat([Episodes.from_trajectories([Trajectory((0,) * 30, (1,) * 30, 5)]), eps])
    assert wide.states.shape[1] == 30 > eps.states.shape[1]
    np.testing.assert_array_equal(wide.hashes()[1:], h)  # padding does not change a hash
    a = Trajectory((0, 5), (1, 2), 6)
    same_tokens = Trajectory((0, 5), (1, 2), 10)  # slipped elsewhere on the last move
    prefix = Trajectory((0,), (1,), 5)
    h2 = Episodes.from_trajectories([a, same_tokens, prefix]).hashes()
    assert h2[0] == h2[1] != h2[2]


def test_episodes_round_trip_and_batch():
    trajs = [Trajectory((0, 1, 2), (2, 2, 1), 7), Trajectory((0,), (1,), 5)]
    eps = Episodes.from_trajectories(trajs)
    assert list(eps) == trajs
    assert list(eps.take(np.array([1, 0, 1]))) == [trajs[1], trajs[0], trajs[1]]
    batch = to_batch([eps, [trajs[1]]])  # the short row is cycled to length 2
    assert batch.states.shape == (2, 2, 3)
    assert batch.mask.tolist() == [[[1, 1, 1], [1, 0, 0]], [[1, 0, 0], [1, 0, 0]]]
    x = batch.inputs(8)
    assert x.sum().item() == batch.mask.sum().item()  # one unit per real token
    picked = batch.select(torch.tensor([[1, 1], [0, 0]]))
    assert picked.states.shape == (2, 2, 1)  # trimmed to the longest picked trajectory
    assert picked.actions[0, :, 0].tolist() == [1, 1]


def test_select_equals_indexing_the_pools_then_trimming():
    lake = make_lake("4x4", slippery=True)
    pools = [
        sample(lake, random_policy(s, 16), 30, np.random.default_rng(s), max_len=12)
        for s in range(3)
    ]
    batch = to_batch(pools)
    order = np.stack([np.argsort(pool.lengths, kind="stable") for pool in pools])
    rows = np.random.default_rng(7).permuted(order[:, :6], axis=1)  # shorter ones, shuffled
    picked = batch.select(rows)
    seed = torch.arange(3)[:, None]
    index = torch.from_numpy(rows)
    mask = batch.mask[seed, index]
    T = int(mask.sum(-1).max())
    assert T < batch.mask.shape[-1]  # trimmed
    assert torch.equal(picked.mask, mask[..., :T])
    assert torch.equal(picked.states, batch.states[seed, index, :T])
    assert torch.equal(picked.actions, batch.actions[seed, index, :T])


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
    # sample_many finishes its last few episodes in plain Python; forcing either path for
    # the whole simulation must give the same episodes (same uniforms, same comparisons)
    from lakelab import trajectories

    lake = make_lake("4x4", slippery=slippery)
    policies = np.stack([random_policy(s, lake.n_states) for s in range(3)])

    def run(one_by_one: int):
        monkeypatch.setattr(trajectories, "ONE_BY_ONE", one_by_one)
        rngs = [np.random.default_rng(s) for s in range(3)]
        return sample_many(lake, policies, 40, rngs, max_len=20)  # 20 > UNIFORM_BLOCK

    vectorised, scalar = run(-1), run(10**9)
    for field in ("states", "actions", "lengths", "final"):
        np.testing.assert_array_equal(getattr(vectorised, field), getattr(scalar, field))
    # the hashes both paths compute while they simulate are those of the finished arrays
    recomputed = Episodes(scalar.states, scalar.actions, scalar.lengths, scalar.final).hashes()
    np.testing.assert_array_equal(vectorised.hashes(), recomputed)
    np.testing.assert_array_equal(scalar.hashes(), recomputed)
    assert (vectorised.lengths == 20).any() and (vectorised.lengths < 20).any()  # both kinds


def test_deterministic_lakes_skip_the_slip_uniforms_without_changing_the_stream(monkeypatch):
    # on a deterministic lake the slip uniforms are never read, and a PCG64 generator skips
    # them: the episodes must equal those of drawing every uniform
    from lakelab import trajectories

    lake = make_lake("two-paths")
    policies = np.stack([random_policy(s, lake.n_states) for s in range(3)])

    def run():
        rngs = [np.random.default_rng([s, 5]) for s in range(3)]
        eps = sample_many(lake, policies, 40, rngs, max_len=40)  # 40 > UNIFORM_BLOCK
        return eps, [r.random() for r in rngs]  # and where each generator was left

    skipped, after_skip = run()
    monkeypatch.setattr(
        trajectories,
        "_uniforms",
        lambda rng, out, slips: out.__setitem__(..., rng.random(out.shape)),
    )
    drawn, after_draw = run()
    for field in ("states", "actions", "lengths", "final"):
        np.testing.assert_array_equal(getattr(skipped, field), getattr(drawn, field))
    assert after_skip == after_draw
    assert (drawn.lengths > trajectories.UNIFORM_BLOCK).any()  # several blocks were drawn
