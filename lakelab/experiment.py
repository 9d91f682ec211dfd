"""The Frozen Lake alignment experiment (IFT paper, section 5.3, Figure 3), made exact.

Protocol (``lakelab.config.LakeConfig`` documents every knob):

1. Soft value iteration gives pi*(a | s) (the paper's "optimal state-action probabilities").
2. theta_0 is a seeded MLP; theta* is theta_0 trained on pi* over all live states.
3. Every method fine-tunes theta_0 with the same optimiser, step budget and chosen data,
   calling ``lakelab.registry.compute_objective`` (hence ``lakelab.objectives``) unchanged.
   Reference policy = theta_0, frozen. IFT feeds the temporal residual (eq. 17) with the
   policy's own predicted next state.
4. Every ``log_every`` steps, exact metrics from the tabular MDP (no sampling): parameter
   MSE to theta*, KL to pi* (uniform over live states and weighted by the policy's own
   visitation), success probability, discounted return, log-likelihood of the optimal and
   sub-optimal routes, and the explored grid (the input mass each method trained on).

All seeds of a method train together: parameters carry a leading seed dimension and every
forward pass is one batched matmul; the loss is the sum over seeds of each seed's batch-mean
loss, so each seed gets exactly its own gradient (and Adam is elementwise).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from functools import cached_property

import numpy as np
import torch

from lakelab import policy as mlp
from lakelab.config import LakeConfig
from lakelab.lakes import Lake, make_lake
from lakelab.optim import Adam
from lakelab.registry import SequenceLogps, compute_objective, get_objective
from lakelab.residual import temporal_residual
from lakelab.solver import (
    Solution,
    policy_evaluation,
    soft_value_iteration,
    state_visitation,
    success_probability,
)
from lakelab.trajectories import (
    Batch,
    Episodes,
    Trajectory,
    optimal_and_suboptimal_routes,
    sample,
    sample_many,
    to_batch,
)

# Streams of the per-seed random generators: np.random.default_rng([seed, STREAM]).
DEMOS, OFFLINE, CHOSEN_BATCHES, REJECTED_BATCHES, ONLINE_NEGATIVES = 1, 2, 3, 4, 5
MAX_RESAMPLE_ROUNDS = 8  # demos and offline samples, drawn once per run
ONLINE_DRAWS = 2  # online negatives: episodes drawn per step, per seed, per batch slot


@dataclass
class Setup:
    """Everything shared by the methods of one run, for the seeds it was built for."""

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

    @cached_property
    def chosen_hashes(self) -> list[np.ndarray]:
        """Per seed, the hashes of its chosen trajectories (a rejected one must differ)."""
        return [np.unique(pool.hashes()) for pool in self.chosen]


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
    return Setup(
        config, lake, optimum, seeds, theta0, theta_star, kl, chosen, offline, best, second
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
    with torch_threads(1):
        return _train(setup, method, seed_index, progress)


def _train(setup, method, seed_index, progress) -> MethodResult:
    cfg, lake = setup.config, setup.lake
    idx = list(range(len(setup.seeds))) if seed_index is None else list(seed_index)
    seeds = [setup.seeds[i] for i in idx]
    objective = get_objective(method)
    hp = cfg.method_hparams(method)
    S = lake.n_states
    theta0 = {k: v[idx] for k, v in setup.theta0.items()}
    target = {k: v[idx] for k, v in setup.theta_star.items()}
    with torch.no_grad():
        ref_table = mlp.state_log_probs(theta0, cfg.activation)  # (N, S, A), frozen
    params = mlp.clone(theta0, requires_grad=True)
    opt = Adam(params, lr=cfg.lr)
    P = torch.tensor(lake.P)
    # batches: per seed and step, B rows drawn uniformly (with replacement) from its pool
    chosen_pool = to_batch([setup.chosen[i] for i in idx])  # (N, P, T)
    chosen_rows = _batch_rows(setup.chosen, idx, seeds, CHOSEN_BATCHES, cfg)  # (steps, N, B)
    offline_pool = to_batch([setup.offline[i] for i in idx])
    offline_rows = _batch_rows(setup.offline, idx, seeds, REJECTED_BATCHES, cfg)
    online_rng = [np.random.default_rng([s, ONLINE_NEGATIVES]) for s in seeds]
    explored = torch.zeros(len(idx), S, dtype=torch.float64)
    rows: list[list[dict[str, float]]] = [[] for _ in idx]
    last_metrics: list[dict[str, float]] = [{} for _ in idx]
    fallbacks = np.zeros(len(idx))  # cumulative online negatives taken from the offline pool

    for step in range(cfg.steps + 1):
        if step % cfg.log_every == 0 or step == cfg.steps:
            for n, row in enumerate(_exact_metrics(setup, params, target, explored)):
                rows[n].append(
                    {"step": step, **row, "online_fallback": fallbacks[n], **last_metrics[n]}
                )
        if step == cfg.steps:
            break
        # the whole policy as a table: with one-hot inputs every token's log-prob is a lookup
        table = mlp.state_log_probs(params, cfg.activation)  # (N, S, A)
        chosen = chosen_pool.select(chosen_rows[step])
        rejected = None
        if objective.needs_pairs and cfg.negatives == "offline":
            rejected = offline_pool.select(offline_rows[step])
        elif objective.needs_pairs:
            probs = table.detach().exp().numpy()
            rejected, fell_back = _online_negatives(setup, idx, probs, online_rng, offline_pool)
            fallbacks += fell_back
        logps, inputs_used = _policy_logps(
            setup, method, hp, params, table, ref_table, chosen, rejected, P
        )
        explored += inputs_used
        flat = _map_logps(lambda t: t.flatten(0, 1), logps)  # (N * B, T)
        loss, _ = compute_objective(method, flat, hp)
        total = loss * len(idx)  # sum over seeds of each seed's batch mean
        opt.zero_grad()
        total.backward()
        opt.step()
        _check_finite(method, step, seeds, total, params)
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            last_metrics = [_objective_metrics(method, hp, logps, n) for n in range(len(idx))]
        if progress is not None:
            progress(1)

    with torch.no_grad():
        probs = mlp.state_log_probs(params, cfg.activation).exp().numpy()
        return MethodResult(
            rows,
            explored.numpy(),
            mlp.state_param_error(params, target).numpy(),
            probs,
        )


def _batch_rows(pools, idx, seeds, stream, cfg) -> torch.Tensor:
    """Row indices [steps, N, B] into each seed's pool, from that seed's own generator."""
    rows = [
        np.random.default_rng([seed, stream]).integers(
            len(pools[i]), size=(cfg.steps, cfg.batch_size)
        )
        for i, seed in zip(idx, seeds, strict=True)
    ]
    return torch.from_numpy(np.stack(rows, 1))


def _online_negatives(setup, idx, probs, rngs, offline: Batch) -> tuple[Batch, np.ndarray]:
    """The rejected batch [N, B, T]: per seed, ``batch_size`` episodes of the current policy
    ``probs`` [N, S, A] that equal no chosen trajectory.

    ``ONLINE_DRAWS * batch_size`` episodes are drawn per seed (all seeds in one vectorised
    simulation) and the first fresh ones kept. Once the policy produces (almost) only chosen
    trajectories, the missing slots are filled from the seed's ``offline`` pool [N, P, T]
    (cycled), and the returned counts per seed [N] (the metric ``online_fallback``) say how
    many.
    """
    cfg = setup.config
    B, D, N = cfg.batch_size, ONLINE_DRAWS * cfg.batch_size, len(idx)
    drawn = sample_many(setup.lake, probs, D, rngs, max_len=cfg.max_len)  # (N * D) rows
    # one membership test for all seeds: hashes salted with the seed's index
    salt = (np.arange(N, dtype=np.uint64) * _SEED_SALT)[:, None]  # (N, 1)
    mine = (drawn.hashes().reshape(N, D) ^ salt).ravel()  # (N * D)
    banned = np.concatenate([setup.chosen_hashes[i] ^ salt[n] for n, i in enumerate(idx)])
    fresh = ~np.isin(mine, banned).reshape(N, D)
    slot = np.cumsum(fresh, 1) - 1  # (N, D): the batch slot of each fresh episode
    keep = fresh & (slot < B)  # the first B fresh episodes of each seed
    count = keep.sum(1)  # (N,)
    # start from the offline pool (cycled), then put the fresh episodes in their slots
    sizes = np.array([len(setup.offline[i]) for i in idx])
    pool_rows = torch.from_numpy((np.arange(B)[None] - count[:, None]) % sizes[:, None])
    base = offline.select(pool_rows)  # (N, B, T_offline)
    T = max(base.states.shape[-1], int(drawn.lengths[keep.ravel()].max(initial=0)))
    states, actions, mask = (_pad_time(t, T) for t in (base.states, base.actions, base.mask))
    n_of, slot_of = np.nonzero(keep)[0], slot[keep]  # where each kept episode goes
    fresh_rows = np.flatnonzero(keep.ravel())
    width = min(T, drawn.states.shape[1])  # kept episodes are no longer than T
    states[n_of, slot_of, :width] = torch.from_numpy(drawn.states[fresh_rows, :width]).long()
    actions[n_of, slot_of, :width] = torch.from_numpy(drawn.actions[fresh_rows, :width]).long()
    steps = np.arange(width) < drawn.lengths[fresh_rows, None]
    mask[n_of, slot_of] = False
    mask[n_of, slot_of, :width] = torch.from_numpy(steps)
    return Batch(states, actions, mask), (B - count).astype(float)


def _pad_time(t: torch.Tensor, T: int) -> torch.Tensor:
    """``t`` [N, B, T0] zero-padded (False for masks) to [N, B, T], as a new tensor."""
    out = torch.zeros(*t.shape[:2], T, dtype=t.dtype)
    out[..., : t.shape[-1]] = t
    return out


_SEED_SALT = np.uint64(0x94D049BB133111EB)


def _policy_logps(setup, method, hp, params, table, ref_table, chosen, rejected, P):
    """Per-token log-probs [N, B, T] the objective needs, and the input mass [N, S] trained on.

    ``table``: log pi_theta(a | s) [N, S, A] (with grad), ``ref_table``: the same for the
    frozen theta_0. With one-hot inputs a token's log-prob is the lookup table[n, s_t, a_t],
    the same function (and gradient) as a forward pass per token, at the cost of one forward
    over the S states. IFT's mixed inputs are the exception (``_ift_logps``).
    """
    S = setup.lake.n_states
    seed = torch.arange(table.shape[0])[:, None, None]
    if method == "ift":
        logp_c, used = _ift_logps(setup, hp, params, table, chosen, P)
    else:
        used = _state_counts(chosen, S)
        logp_c = table[seed, chosen.states, chosen.actions]  # (N, B, T)
    logp_r = ref_c = ref_r = None
    if rejected is not None:
        used = used + _state_counts(rejected, S)
        logp_r = table[seed, rejected.states, rejected.actions]
        if get_objective(method).needs_reference:
            ref_c = ref_table[seed, chosen.states, chosen.actions]
            ref_r = ref_table[seed, rejected.states, rejected.actions]
    mask_r = None if rejected is None else rejected.mask
    return SequenceLogps(logp_c, chosen.mask, logp_r, mask_r, ref_c, ref_r), used


def _ift_logps(setup, hp, params, table, chosen, P) -> tuple[torch.Tensor, torch.Tensor]:
    """IFT's per-token log-probs on the lake (eq. 17) and the input mass they trained on.

    Pass 1 (no grad) predicts the next state from each state with the current policy
    (greedy: P(. | s, argmax_a pi); expected: sum_a pi(a | s) P(. | s, a)). Pass 2 runs the
    network on (1 - lam) one_hot(s_i) + lam * prediction from s_{i-1}, targets the true
    actions; position 0 (the start state, the prompt) is not mixed. A token's mixed input
    depends only on the pair (s_{i-1}, s_i), so pass 2 runs once per distinct pair in the
    batch (tens) rather than once per token (thousands), and each token looks its pair up.
    """
    S, lam = setup.lake.n_states, hp["lam"]
    N = table.shape[0]
    seed = torch.arange(N)[:, None, None]
    with torch.no_grad():
        probs = table.exp()  # (N, S, A)
        if hp["residual"] == "greedy":
            nxt = P[torch.arange(S), probs.argmax(-1)]  # (N, S, S')
        else:
            nxt = torch.einsum("nsa,sat->nst", probs, P)  # (N, S, S')
    pairs, inverse = torch.unique(
        chosen.states[..., :-1] * S + chosen.states[..., 1:], return_inverse=True
    )
    two = torch.stack([pairs // S, pairs % S], -1)  # (U, 2): (s_{i-1}, s_i) as a 2-token sequence
    U = len(pairs)
    x = torch.nn.functional.one_hot(two, S).double().expand(N, U, 2, S)  # (N, U, 2, S)
    mixed = temporal_residual(
        x.reshape(N * U, 2, S),
        nxt[:, two].reshape(N * U, 2, S),  # predicted next state from each position
        torch.zeros(N * U, 2, dtype=torch.bool),
        lam=lam,
    )[:, 1].reshape(N, U, S)  # position 1: (1 - lam) one_hot(s_i) + lam * pred(s_{i-1})
    logp_pairs = torch.log_softmax(mlp.forward(params, mixed, setup.config.activation), -1)
    first = table[seed, chosen.states[..., :1], chosen.actions[..., :1]]  # (N, B, 1) unmixed
    rest = logp_pairs[seed, inverse, chosen.actions[..., 1:]]  # (N, B, T - 1)
    # input mass: the start state once per trajectory, each later token's mixed input
    tokens = torch.zeros(N, U, dtype=torch.float64)
    tokens.scatter_add_(1, inverse.flatten(1), chosen.mask[..., 1:].flatten(1).double())
    start = _state_counts(
        Batch(chosen.states[..., :1], chosen.actions[..., :1], chosen.mask[..., :1]), S
    )
    used = start + torch.einsum("nu,nus->ns", tokens, mixed.detach())
    return torch.cat([first, rest], -1), used


def _state_counts(batch: Batch, n_states: int) -> torch.Tensor:
    """How often each state is an input of ``batch``: [N, S] (one-hot inputs summed)."""
    N = batch.states.shape[0]
    counts = torch.zeros(N, n_states, dtype=torch.float64)
    return counts.scatter_add_(1, batch.states.flatten(1), batch.mask.flatten(1).double())


def _objective_metrics(method, hp, logps: SequenceLogps, n: int) -> dict[str, float]:
    """The objective's own diagnostics (TRL names) for seed ``n``, from the last batch."""
    one = _map_logps(lambda t: t[n].detach(), logps)
    _, metrics = compute_objective(method, one, hp)
    return {f"batch/{k}": v for k, v in metrics.items()}


def _map_logps(fn, logps: SequenceLogps) -> SequenceLogps:
    """Apply ``fn`` to every tensor of ``logps`` (None stays None)."""
    return SequenceLogps(
        *(None if (t := getattr(logps, f.name)) is None else fn(t) for f in fields(logps))
    )


def _check_finite(method, step, seeds, loss, params) -> None:
    with torch.no_grad():  # fast path: one sum is finite iff every term is
        if math.isfinite(float(loss + sum(v.sum() for v in params.values()))):
            return
    bad = torch.zeros(len(seeds), dtype=torch.bool)
    for v in params.values():
        bad |= ~torch.isfinite(v.detach()).flatten(1).all(1)
    if bad.any() or not torch.isfinite(loss):
        which = [s for s, b in zip(seeds, bad.tolist(), strict=True) if b] or seeds
        raise Diverged(
            f"{method} diverged at step {step} (seed {which[0]}"
            f"{f' and {len(which) - 1} more' if len(which) > 1 else ''}): non-finite loss or "
            "parameters; lower lr or the objective's hyper-parameters"
        )


# -- exact metrics --------------------------------------------------------------------------


def _exact_metrics(setup: Setup, params, target, explored) -> list[dict[str, float]]:
    cfg, lake = setup.config, setup.lake
    live = ~lake.terminal
    with torch.no_grad():
        logp = mlp.state_log_probs(params, cfg.activation)  # (N, S, A)
        mse = mlp.param_mse(params, target).numpy()
        kl = mlp.kl_per_state(torch.tensor(setup.optimum.policy), logp).numpy()  # (N, S)
    logp = logp.numpy()
    pi = np.exp(logp)
    pi = pi / pi.sum(-1, keepdims=True)
    visit = state_visitation(lake, pi, gamma=cfg.gamma)[:, live]  # (N, live)
    w = visit / visit.sum(-1, keepdims=True)
    # the agent's own preference, measured like the explored mass: states it acts in (live),
    # undiscounted, episodes cut at max_len
    own = state_visitation(lake, pi, horizon=cfg.max_len) * live  # (N, S)
    own = own / own.sum(-1, keepdims=True)
    success = success_probability(lake, pi)  # (N,)
    returns = policy_evaluation(lake, pi, gamma=cfg.gamma)[0][:, lake.start]  # (N,)
    out = []
    for n in range(logp.shape[0]):
        row = {
            "param_mse": float(mse[n]),
            "kl_uniform": float(kl[n, live].mean()),
            "kl_visitation": float((w[n] * kl[n, live]).sum()),
            "success": float(success[n]),
            "return": float(returns[n]),
            "logp_optimal": _route_logp(logp[n], setup.optimal_route),
            "logp_suboptimal": (
                np.nan
                if setup.suboptimal_route is None
                else _route_logp(logp[n], setup.suboptimal_route)
            ),
        }
        row.update(explored_summary(explored[n].numpy(), own[n], cfg.explored_share))
        out.append(row)
    return out


def _route_logp(logp: np.ndarray, route: Trajectory) -> float:
    """log pi(route) = sum_t log pi(a_t | s_t) (the policy's share of the route's probability)."""
    return float(logp[list(route.states), list(route.actions)].sum())


def explored_summary(mass: np.ndarray, visitation: np.ndarray, share: float) -> dict[str, float]:
    """Summary of an explored grid ``mass`` [S] against the agent's own ``visitation`` [S].

    ``explored_cells``: cells holding at least ``share`` of the mass.
    ``explored_overlap``: sum_s min(p(s), d(s)) = 1 - total variation between the explored
    distribution p and the visitation distribution d (1 = the method trains exactly where
    the agent goes; the paper's "alignment with the agent's own preference").
    """
    total = mass.sum()
    if total <= 0:
        return {"explored_cells": 0.0, "explored_overlap": 0.0}
    p = mass / total
    return {
        "explored_cells": float((p >= share).sum()),
        "explored_overlap": float(np.minimum(p, visitation).sum()),
    }
