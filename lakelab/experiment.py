"""The Frozen Lake alignment experiment (IFT paper, section 5.3, Figure 3), made exact.

Protocol (``lakelab.config.LakeConfig`` documents every knob):

1. Soft value iteration gives pi*(a | s) (the paper's "optimal state-action probabilities").
2. theta_0 is a seeded MLP; theta* is theta_0 trained on pi* over all live states.
3. Every method fine-tunes theta_0 with the same optimiser, step budget and chosen data,
   calling ``lakelab.registry.compute_objective`` (hence ``lakelab.objectives``) unchanged.
   Reference policy = theta_0, frozen. IFT feeds the temporal residual (eq. 17) with the
   policy's own predicted next state (the log-probs: ``lakelab.lake_logps``).
4. Every ``log_every`` steps, exact metrics from the tabular MDP (no sampling): parameter
   MSE to theta*, KL to pi* (uniform over live states and weighted by the policy's own
   visitation), success probability, discounted return, log-likelihood of the optimal and
   sub-optimal routes, and the explored grid (the input mass each method trained on); see
   ``lakelab.exact_metrics``.

All seeds of a method train together: parameters carry a leading seed dimension and every
forward pass is one batched matmul; the loss is the sum over seeds of each seed's batch-mean
loss, so each seed gets exactly its own gradient (and Adam is elementwise).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from lakelab import policy as mlp
from lakelab.config import LakeConfig
from lakelab.exact_metrics import exact_metrics
from lakelab.lake_logps import policy_logps
from lakelab.lakes import Lake, make_lake
from lakelab.negatives import OnlineNegatives
from lakelab.optim import Adam
from lakelab.registry import compute_objective, get_objective
from lakelab.sampling import sample
from lakelab.solver import Solution, soft_value_iteration
from lakelab.trajectories import (
    Batch,
    Episodes,
    Trajectory,
    optimal_and_suboptimal_routes,
    to_batch,
)

# Streams of the per-seed random generators: np.random.default_rng([seed, STREAM]).
DEMOS, OFFLINE, CHOSEN_BATCHES, REJECTED_BATCHES, ONLINE_NEGATIVES = 1, 2, 3, 4, 5
MAX_RESAMPLE_ROUNDS = 8  # demos and offline samples, drawn once per run


@dataclass(frozen=True)
class Setup:
    """Everything shared by the methods of one run, for the seeds it was built for.

    Frozen: worker processes receive it pickled while this process goes on training, so it
    must not change after it is built (a lazily cached attribute once did, mid-pickle)."""

    config: LakeConfig
    lake: Lake
    optimum: Solution
    seeds: list[int]
    theta0: mlp.Params
    theta_star: mlp.Params
    optimum_kl: torch.Tensor  # [N]
    chosen: list[Episodes]  # per seed: the chosen pool
    offline: list[Episodes]  # per seed: the offline rejected pool
    optimal_route: Trajectory
    suboptimal_route: Trajectory | None
    chosen_hashes: list[np.ndarray]  # per seed: its chosen trajectories' hashes, unique


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads, then restore the previous setting.

    Both tracks train with one: their tensors are tiny (10 seeds x a few hundred tokens here),
    splitting an op over threads costs more than it saves, and on a shared 2-core machine
    waiting for the second thread made steps about 4x slower (measured). One thread also makes
    the numbers independent of the machine's core count.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def build_setup(config: LakeConfig, seeds: list[int] | None = None) -> Setup:
    with torch_threads(1):
        return _build_setup(config, seeds)


def _build_setup(config: LakeConfig, seeds: list[int] | None) -> Setup:
    seeds = config.seed_list if seeds is None else list(seeds)
    lake = make_lake(config.lake, slippery=config.slippery, success_rate=config.success_rate)
    optimum = soft_value_iteration(lake, tau=config.tau, gamma=config.gamma)
    theta0 = mlp.init_params(seeds, lake.n_states, lake.n_actions, config.hidden)
    theta_star, kl = mlp.fit_optimum(
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
        p0 = mlp.state_log_probs(theta0, config.activation).exp().numpy()  # pi_theta_0 [N, S, A]
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
    return Setup(
        config, lake, optimum, seeds, theta0, theta_star, kl, chosen, offline, best, second, hashes
    )


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


# -- training -------------------------------------------------------------------------------


@dataclass
class MethodResult:
    """Per seed of one method: logged rows, final explored mass and per-state error."""

    rows: list[list[dict[str, float]]]  # [N][log points] of {metric: value}
    explored: np.ndarray  # [N, S] cumulative input mass
    state_error: np.ndarray  # [N, S] error of each state's first-layer weights W1[s, :]
    final_policy: np.ndarray  # [N, S, A]


class Diverged(FloatingPointError):
    """A run produced NaN or inf; the message names method, seed and step."""


def train_method(
    setup: Setup,
    method: str,
    *,
    seed_index: list[int] | None = None,
    progress: Callable[[int], None] | None = None,
) -> MethodResult:
    """Fine-tune theta_0 with ``method`` for the given seeds (indices into ``setup.seeds``),
    all seeds in one batched computation."""
    return train_methods(setup, {method: seed_index}, progress=progress)[method]


def train_methods(
    setup: Setup,
    todo: dict[str, list[int] | None] | list[str],
    *,
    progress: Callable[[int], None] | None = None,
) -> dict[str, MethodResult]:
    """Fine-tune theta_0 with several methods at once: ``todo`` maps each method to its seed
    indices (None: all seeds), or lists methods (all seeds each).

    Every (method, seed) pair is one row of one stacked set of parameters, so the policy
    table, the sampling of online negatives, the backward pass, Adam and the exact metrics run
    once per step for all methods rather than once per method; only the objectives (and their
    batches) are per method. Each row still gets exactly its own gradient: the total loss is
    a sum over methods and seeds of each one's batch-mean loss. ``progress(k)`` is called
    with the number of methods after each step.
    """
    if not isinstance(todo, dict):
        todo = dict.fromkeys(todo)
    with torch_threads(1):
        return _train(setup, todo, progress)


@dataclass
class _Group:
    """One method's seeds within a joint run: rows ``rows`` of the stacked parameters."""

    method: str
    hp: dict
    idx: list[int]  # indices into setup.seeds
    rows: slice
    chosen_pool: Batch  # (N, P, T): each seed's chosen trajectories
    chosen_rows: np.ndarray  # (steps, N, B): which ones each step trains on
    offline_pool: Batch
    offline_rows: np.ndarray
    negatives: str | None  # rejected batches: None (no pairs), "offline" or "online"
    seeds: list[int]
    explored: np.ndarray  # (N, S): input mass trained on so far
    metrics: dict[str, torch.Tensor] | None = None  # the last step's, per sequence [N * B]
    loss: torch.Tensor | None = None  # the last step's loss


def _groups(setup: Setup, todo: dict[str, list[int] | None]) -> list[_Group]:
    cfg, groups, first = setup.config, [], 0
    for method, seed_index in todo.items():
        objective = get_objective(method)
        idx = list(range(len(setup.seeds))) if seed_index is None else list(seed_index)
        seeds = [setup.seeds[i] for i in idx]
        groups.append(
            _Group(
                method,
                cfg.method_hparams(method),
                idx,
                slice(first, first + len(idx)),
                to_batch([setup.chosen[i] for i in idx]),
                _batch_rows(setup.chosen, idx, seeds, CHOSEN_BATCHES, cfg),
                to_batch([setup.offline[i] for i in idx]),
                _batch_rows(setup.offline, idx, seeds, REJECTED_BATCHES, cfg),
                cfg.negatives if objective.needs_pairs else None,
                seeds,
                np.zeros((len(idx), setup.lake.n_states)),
            )
        )
        first += len(idx)
    return groups


def _train(setup, todo, progress) -> dict[str, MethodResult]:
    cfg, lake = setup.config, setup.lake
    groups = _groups(setup, todo)
    idx = [i for g in groups for i in g.idx]  # the seed of each row
    theta0 = {k: v[idx] for k, v in setup.theta0.items()}
    target = {k: v[idx] for k, v in setup.theta_star.items()}
    with torch.no_grad():
        ref_table = mlp.state_log_probs(theta0, cfg.activation)  # (R, S, A), frozen
    theta = mlp.FlatParams(theta0)  # one leaf: one Adam update for every parameter
    opt = Adam({"flat": theta.flat}, lr=cfg.lr)
    P = torch.tensor(lake.P)
    online = [g for g in groups if g.negatives == "online"]
    on_rows = torch.cat([torch.arange(len(idx))[g.rows] for g in online]) if online else None
    on_slice, first = {}, 0  # each online method's rows among the online rows
    for g in online:
        on_slice[g.method], first = slice(first, first + len(g.idx)), first + len(g.idx)
    negatives = None
    if online:
        on_idx = [i for g in online for i in g.idx]
        rngs = [np.random.default_rng([setup.seeds[i], ONLINE_NEGATIVES]) for i in on_idx]
        negatives = OnlineNegatives(setup, on_idx, rngs)
    rows: list[list[dict[str, float]]] = [[] for _ in idx]
    last_metrics: list[dict[str, float]] = [{} for _ in idx]
    fallbacks = np.zeros(len(idx))  # cumulative online negatives taken from the offline pool
    sizes = [len(g.idx) for g in groups]
    # a method's rows as views of the joint tensors: `split` has one backward for all methods
    refs = ref_table.split(sizes)
    ift = any(g.method == "ift" for g in groups)  # IFT also runs the network on mixed inputs

    def logged(step: int) -> bool:  # metrics are logged before this step (and at the end)
        return step % cfg.log_every == 0 or step == cfg.steps

    for step in range(cfg.steps + 1):
        params = theta.views()
        if logged(step):
            explored = np.concatenate([g.explored for g in groups])
            for r, row in enumerate(exact_metrics(setup, params, target, explored)):
                rows[r].append(
                    {"step": step, **row, "online_fallback": fallbacks[r], **last_metrics[r]}
                )
        if step == cfg.steps:
            break
        # the whole policy as a table: with one-hot inputs every token's log-prob is a lookup
        table = mlp.state_log_probs(params, cfg.activation)  # (R, S, A)
        tables = table.split(sizes)
        own = _split_params(params, sizes) if ift else [None] * len(groups)
        if negatives is not None:  # one simulation for the rows of every online method
            drawn = negatives.draw(table.detach()[on_rows].exp().numpy())
        total = 0.0
        for j, g in enumerate(groups):
            chosen = g.chosen_pool.select(g.chosen_rows[step])
            rejected = None
            if g.negatives == "online":
                rejected, fell_back = negatives.batch(drawn, on_slice[g.method], g.offline_pool)
                fallbacks[g.rows] += fell_back
            elif g.negatives == "offline":
                rejected = g.offline_pool.select(g.offline_rows[step])
            logps, used = policy_logps(
                g.method,
                g.hp,
                params=own[j],
                table=tables[j],
                ref_table=refs[j],
                chosen=chosen,
                rejected=rejected,
                P=P,
                activation=cfg.activation,
            )
            g.explored += used
            # per sequence: rows n * B .. (n + 1) * B are seed n's batch
            losses, g.metrics = compute_objective(g.method, logps, g.hp, reduction="none")
            g.loss = losses.mean()  # the objective's batch mean over all of the method's rows
            total = total + g.loss * len(g.idx)  # sum over seeds of each seed's batch mean
        opt.zero_grad()
        total.backward()
        opt.step()
        _check_finite(groups, step, total, theta)
        if logged(step + 1):  # this step's batch metrics go with the next log
            last_metrics = [row for g in groups for row in _objective_metrics(g)]
        if progress is not None:
            progress(len(groups))

    params = theta.views()
    with torch.no_grad():
        probs = mlp.state_log_probs(params, cfg.activation).exp().numpy()
        error = mlp.state_param_error(params, target).numpy()
    return {
        g.method: MethodResult(rows[g.rows], g.explored, error[g.rows], probs[g.rows])
        for g in groups
    }


def _split_params(params: mlp.Params, sizes: list[int]) -> list[mlp.Params]:
    """Each method's rows of the joint parameters, as views (for IFT's mixed-input pass)."""
    parts = {k: v.split(sizes) for k, v in params.items()}
    return [{k: parts[k][j] for k in params} for j in range(len(sizes))]


def _batch_rows(pools, idx, seeds, stream, cfg) -> np.ndarray:
    """Row indices [steps, N, B] into each seed's pool, from that seed's own generator."""
    rows = [
        np.random.default_rng([seed, stream]).integers(
            len(pools[i]), size=(cfg.steps, cfg.batch_size)
        )
        for i, seed in zip(idx, seeds, strict=True)
    ]
    return np.stack(rows, 1)


def _objective_metrics(g: _Group) -> list[dict[str, float]]:
    """The objective's own diagnostics (TRL names) per seed, from the last batch: the mean of
    each per-sequence metric over the seed's rows, which is what the objective reports for
    that seed's batch alone (its "mean" reduction)."""
    N = len(g.idx)
    means = {k: v.view(N, -1).mean(1, dtype=torch.float64).tolist() for k, v in g.metrics.items()}
    return [{f"batch/{k}": v[n] for k, v in means.items()} for n in range(N)]


def _check_finite(groups: list[_Group], step: int, total, theta: mlp.FlatParams) -> None:
    """Raise ``Diverged`` naming the first method (and its seeds) whose loss or parameters
    are NaN or inf."""
    with torch.no_grad():  # fast path: one sum is finite iff every term is
        if math.isfinite(float(total + theta.flat.sum())):
            return
    params = theta.views()
    bad = torch.zeros(params["W1"].shape[0], dtype=torch.bool)
    for v in params.values():
        bad |= ~torch.isfinite(v.detach()).flatten(1).all(1)
    for g in groups:
        which = [s for s, b in zip(g.seeds, bad[g.rows].tolist(), strict=True) if b]
        if which or not math.isfinite(float(g.loss)):
            which = which or g.seeds
            raise Diverged(
                f"{g.method} diverged at step {step} (seed {which[0]}"
                f"{f' and {len(which) - 1} more' if len(which) > 1 else ''}): non-finite loss "
                "or parameters; lower lr or the objective's hyper-parameters"
            )
