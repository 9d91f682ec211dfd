"""The Frozen Lake experiment's set-up: what every method of a run shares (IFT paper, 5.3).

Protocol (``lakelab.mlp.config.LakeConfig`` documents every knob):

1. Soft value iteration gives pi*(a | s) (the paper's "optimal state-action probabilities").
2. theta_0 is a seeded MLP; theta* is theta_0 trained on pi* over all live states.
3. Every method fine-tunes theta_0 with the same optimiser, step budget and chosen data
   (``lakelab.mlp.train``: the plain loop; ``lakelab.mlp.joint``: all methods at once),
   calling ``lakelab.registry.compute_objective`` unchanged. Reference policy = theta_0.
4. Every ``log_every`` steps, exact metrics from the tabular MDP (``lakelab.mlp.metrics``).

This module builds steps 1 and 2 and the data: each seed's chosen pool (demos of pi*, or the
one optimal route) and offline rejected pool (the sub-optimal route, or episodes of
pi_theta_0), never containing a chosen trajectory. Every random draw comes from a per-seed
generator ``np.random.default_rng([seed, STREAM])``, so a seed's data never depends on which
other seeds or methods run beside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lakelab.lakes import Lake, make_lake
from lakelab.mlp import model
from lakelab.mlp.config import LakeConfig
from lakelab.mlp.data import Episodes, Trajectory, optimal_and_suboptimal_routes
from lakelab.mlp.replay import ReplayData
from lakelab.mlp.sampling import sample
from lakelab.solver import Solution, soft_value_iteration, value_iteration
from lakelab.training import torch_threads

# Streams of the per-seed random generators: np.random.default_rng([seed, STREAM]).
DEMOS, OFFLINE, CHOSEN_BATCHES, REJECTED_BATCHES, ONLINE_NEGATIVES = 1, 2, 3, 4, 5
MAX_RESAMPLE_ROUNDS = 8  # demos and offline samples, drawn once per run
ONLINE_DRAWS = 2  # online negatives: episodes simulated per step, per batch slot


@dataclass(frozen=True)
class Setup:
    """Everything shared by the methods of one run, for the seeds it was built for.

    Frozen: worker processes receive it pickled while this process goes on training, so it
    must not change after it is built (a lazily cached attribute once did, mid-pickle)."""

    config: LakeConfig
    lake: Lake
    optimum: Solution
    seeds: list[int]
    theta0: model.Params
    theta_star: model.Params
    optimum_kl: torch.Tensor  # [N]
    chosen: list[Episodes]  # per seed: the chosen pool
    offline: list[Episodes]  # per seed: the offline rejected pool
    optimal_route: Trajectory
    suboptimal_route: Trajectory | None
    chosen_hashes: list[np.ndarray]  # per seed: its chosen trajectories' hashes, unique
    v_star: float  # V*(start) at config.gamma (value iteration): the optimality's denominator


def build_setup(config: LakeConfig, seeds: list[int] | None = None) -> Setup:
    """The shared part of a run of ``config`` for ``seeds`` (default: the config's): the soft
    optimum, theta_0 and theta* per seed, and each seed's chosen and offline rejected pools.
    Raises ValueError if theta* misses ``optimum_kl_target`` or pi* rarely reaches the goal."""
    with torch_threads(1):
        return _build_setup(config, seeds)


def _build_setup(config: LakeConfig, seeds: list[int] | None) -> Setup:
    seeds = config.seed_list if seeds is None else list(seeds)
    lake = make_lake(config.lake, slippery=config.slippery, success_rate=config.success_rate)
    optimum = soft_value_iteration(lake, tau=config.tau, gamma=config.gamma)
    theta0 = model.init_params(seeds, lake.n_states, lake.n_actions, config.hidden)
    theta_star, kl = model.fit_optimum(
        theta0,
        torch.tensor(optimum.policy),
        torch.tensor(~lake.terminal),
        steps=config.optimum_steps,
        lr=config.optimum_lr,
        activation=config.activation,
    )
    if (kl > config.optimum_kl_target).any():
        worst = int(kl.argmax())
        raise ValueError(
            f"theta* of seed {seeds[worst]} reached KL {kl[worst]:.3g} > optimum_kl_target "
            f"{config.optimum_kl_target}: raise optimum_steps or hidden"
        )
    try:
        best, second = optimal_and_suboptimal_routes(lake)
    except ValueError:
        if config.negatives == "offline" and config.offline_source == "suboptimal":
            raise
        best, second = _most_likely_route(lake, optimum.policy, config.max_len), None
    with torch.no_grad():
        p0 = model.state_log_probs(theta0, config.activation).exp().numpy()  # pi_theta_0 [N, S, A]
    chosen, offline = [], []
    for n, seed in enumerate(seeds):
        if config.chosen == "single":
            pool = Episodes.from_trajectories([best])
        else:
            pool = _successful(lake, optimum.policy, config.n_demos, seed, config.max_len)
        chosen.append(pool)
        # a rejected route must never be a chosen one: should pi*'s demos of this seed contain
        # the sub-optimal route, its offline pool is sampled from pi_theta_0 instead
        second_eps = None if second is None else Episodes.from_trajectories([second])
        if (
            config.offline_source == "suboptimal"
            and second_eps is not None
            and second_eps.hashes()[0] not in pool.hashes()
        ):
            offline.append(second_eps)
        else:
            rng = np.random.default_rng([seed, OFFLINE])
            offline.append(_excluding(lake, p0[n], pool, config.batch_size, rng, config.max_len))
    hashes = [np.unique(pool.hashes()) for pool in chosen]
    v_star = float(value_iteration(lake, gamma=config.gamma).V[lake.start])
    return Setup(
        config, lake, optimum, seeds, theta0, theta_star, kl, chosen, offline, best, second,
        hashes, v_star,
    )  # fmt: skip


def _successful(lake, policy, n, seed, max_len) -> Episodes:
    """``n`` episodes of ``policy`` that reach the goal (sampled in rounds, bounded)."""
    rng = np.random.default_rng([seed, DEMOS])
    found: list[Episodes] = []
    for _ in range(MAX_RESAMPLE_ROUNDS):
        eps = sample(lake, policy, 2 * n, rng, max_len=max_len)
        found.append(eps.take(np.flatnonzero(lake.goal[eps.final])))
        if sum(map(len, found)) >= n:
            return Episodes.concat(found).take(np.arange(n))
    raise ValueError(
        f"pi* reaches the goal too rarely to collect {n} demos; lower tau or raise max_len"
    )


def _excluding(lake, policy, pool: Episodes, n, rng, max_len) -> Episodes:
    """``n`` episodes of ``policy`` none of which equals a trajectory of ``pool``."""
    banned = pool.hashes()
    found: list[Episodes] = []
    for _ in range(MAX_RESAMPLE_ROUNDS):
        found.append(_without(sample(lake, policy, 2 * n, rng, max_len=max_len), banned))
        if sum(map(len, found)) >= n:
            return Episodes.concat(found).take(np.arange(n))
    got = Episodes.concat(found)
    if not len(got):
        raise ValueError("could not sample any trajectory differing from the chosen ones")
    return got.take(np.arange(n) % len(got))


def _without(eps: Episodes, banned: np.ndarray) -> Episodes:
    """The episodes of ``eps`` whose hash is not in ``banned``, in order."""
    return eps.take(np.flatnonzero(~np.isin(eps.hashes(), banned)))


def _most_likely_route(lake, policy, max_len) -> Trajectory:
    """Greedy actions of ``policy`` with intended (non-slipping) moves, until a terminal
    state; an error unless that reaches a goal."""
    intended = make_lake(lake.desc)  # same map, deterministic moves
    s, states, actions = lake.start, [], []
    while not lake.terminal[s] and len(actions) < max_len:
        a = int(policy[s].argmax())
        states.append(s)
        actions.append(a)
        s = int(intended.P[s, a].argmax())
    if not lake.goal[s]:
        raise ValueError(
            "the greedy route of pi* does not reach the goal with intended moves; "
            "use a lake with enumerable routes"
        )
    return Trajectory(tuple(states), tuple(actions), s)


@dataclass
class MethodResult:
    """Per seed of one method: logged rows, final explored mass and per-state error, and
    the replay data of every logged step."""

    rows: list[list[dict[str, float]]]  # [N][log points] of {metric: value}
    explored: np.ndarray  # [N, S] cumulative input mass
    state_error: np.ndarray  # [N, S] error of each state's first-layer weights W1[s, :]
    final_policy: np.ndarray  # [N, S, A]
    replay: ReplayData | None = None  # [N, log points, ...]: what a replay shows


def batch_rows(pool_size: int, seed: int, stream: int, config: LakeConfig) -> np.ndarray:
    """Which trajectories of a seed's pool each step trains on: indices [steps, batch_size],
    from the seed's own generator for ``stream`` (CHOSEN_BATCHES or REJECTED_BATCHES)."""
    rng = np.random.default_rng([seed, stream])
    return rng.integers(pool_size, size=(config.steps, config.batch_size))


def logged(step: int, config: LakeConfig) -> bool:
    """Metrics are logged before steps 0, log_every, 2 log_every, ... and after the last."""
    return step % config.log_every == 0 or step == config.steps
