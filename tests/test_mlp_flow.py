"""Where the probability went (lakelab.mlp.flow): action kinds on hand-checked lakes, the
flow of hand-made policy changes, and its invariants."""

import numpy as np
import pytest

from lakelab.lakes import make_lake
from lakelab.mlp.flow import (
    OPTIMAL,
    RISKY,
    SAFE,
    action_classes,
    mass_flow,
    mass_moved,
    optimum_weights,
)
from lakelab.solver import soft_value_iteration

LEFT, DOWN, RIGHT, UP = range(4)


def test_action_kinds_on_the_two_paths_lake():
    # SFFFF / FHHHF / FHFFF / FHFHH / FFFFG: the short route goes down the left edge
    lake = make_lake("two-paths")
    kinds = action_classes(lake, gamma=0.9)
    start, below = 0, lake.state(1, 0)
    assert kinds[start, DOWN] == OPTIMAL
    assert kinds[start, RIGHT] == SAFE  # the long route along the top
    assert kinds[start, LEFT] == kinds[start, UP] == SAFE  # a wall bump: no move, no hole
    assert kinds[below, DOWN] == OPTIMAL
    assert kinds[below, RIGHT] == RISKY  # (1, 1) is a hole
    assert kinds[lake.state(0, 1), DOWN] == RISKY  # (1, 1) again, from above
    assert (kinds[lake.terminal] == -1).all() and (kinds[~lake.terminal] >= 0).all()
    assert ((kinds == OPTIMAL).sum(1)[~lake.terminal] >= 1).all()  # an optimal move each


def test_on_a_slippery_lake_an_optimal_move_that_risks_a_hole_counts_as_optimal():
    lake = make_lake("4x4", slippery=True)
    kinds = action_classes(lake, gamma=0.99)
    s = lake.state(1, 0)  # beside the hole at (1, 1): every move but left may slip into it
    hole_risk = lake.P[s][:, lake.holes].sum(-1) > 0
    assert hole_risk.sum() == 3 and kinds[s, LEFT] == OPTIMAL  # Sutton and Barto's answer
    assert set(kinds[s][hole_risk].tolist()) == {RISKY}


def test_where_the_goal_cannot_be_reached_no_move_is_optimal():
    lake = make_lake("SFHF/FHFH/FFFH/HFFG")  # (0, 3) is cut off: a hole left, one below
    kinds = action_classes(lake, gamma=0.9)
    cut_off = lake.state(0, 3)
    assert kinds[cut_off].tolist() == [RISKY, RISKY, SAFE, SAFE]  # left, down: holes
    assert (kinds[lake.state(0, 0)] == OPTIMAL).any()  # where the goal is reachable


def test_the_flow_of_a_hand_made_change():
    lake = make_lake("two-paths")
    kinds = action_classes(lake, gamma=0.9)
    before = np.full((lake.n_states, 4), 0.25)
    after = before.copy()
    after[0, DOWN], after[0, RIGHT] = 0.05, 0.45  # 0.2 from the short route to the long one
    below = lake.state(1, 0)
    after[below, DOWN], after[below, RIGHT] = 0.10, 0.40  # 0.15 towards the hole
    flow = mass_flow(before, after, kinds)
    np.testing.assert_allclose(flow[0], [-0.2, 0.2, 0.0], atol=1e-15)  # benign
    np.testing.assert_allclose(flow[below], [-0.15, 0.0, 0.15], atol=1e-15)  # catastrophic
    others = np.setdiff1d(np.arange(lake.n_states), [0, below])
    assert np.abs(flow[others]).max() == 0
    w = np.zeros(lake.n_states)
    w[[0, below]] = [3.0, 1.0]
    np.testing.assert_allclose(mass_moved(flow, w), [-0.1875, 0.15, 0.0375], atol=1e-15)
    # mass going to the optimal action in one state and away from it in another
    after[below, DOWN], after[below, RIGHT] = 0.40, 0.10  # +0.15 optimal, -0.15 hole-risking
    flow = mass_flow(before, after, kinds)
    np.testing.assert_allclose(mass_moved(flow, w), [-0.1125, 0.15, -0.0375], atol=1e-15)
    np.testing.assert_allclose(mass_moved(flow, w, "gained"), [0.0375, 0.15, 0], atol=1e-15)
    np.testing.assert_allclose(mass_moved(flow, w, "lost"), [0.15, 0, 0.0375], atol=1e-15)
    with pytest.raises(ValueError, match="part must be one of"):
        mass_moved(flow, w, "total")


def test_flow_sums_to_zero_and_is_batched():
    lake = make_lake("4x4", slippery=True)
    kinds = action_classes(lake, gamma=0.95)
    rng = np.random.default_rng(0)
    before, after = (
        rng.dirichlet(np.ones(4), size=(2, 3, 16)),
        rng.dirichlet(np.ones(4), (2, 3, 16)),
    )
    flow = mass_flow(before, after, kinds)  # (2, 3, S, 3)
    assert flow.shape == (2, 3, 16, 3)
    np.testing.assert_allclose(flow.sum(-1)[..., ~lake.terminal], 0, atol=1e-15)
    assert (flow[..., lake.terminal, :] == 0).all()
    np.testing.assert_allclose(flow[1, 2], mass_flow(before[1, 2], after[1, 2], kinds))
    with pytest.raises(ValueError, match=r"\[\.\.\., 16, 4\]"):
        mass_flow(before[..., :3], after[..., :3], kinds)


def test_the_optimum_weights_are_pi_stars_live_visits():
    lake = make_lake("two-paths")
    optimum = soft_value_iteration(lake, tau=0.02, gamma=0.9)
    w = optimum_weights(lake, optimum.policy, gamma=0.9)
    assert w.sum() == pytest.approx(1) and (w[lake.terminal] == 0).all()
    # pi* walks the short route: its 8 states carry almost all the weight
    route = [lake.state(r, 0) for r in range(4)] + [lake.state(4, c) for c in range(4)]
    assert w[route].sum() > 0.95
