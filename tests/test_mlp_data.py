"""Trajectories: routes, episodes as arrays, hashing, padding, batching."""

import numpy as np
import torch

from lakelab.lakes import make_lake
from lakelab.mlp.data import Episodes, Trajectory, routes, to_batch
from lakelab.mlp.sampling import sample


def random_policy(seed: int, n_states: int) -> np.ndarray:
    return np.random.default_rng(seed).dirichlet(np.ones(4), size=n_states)


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
