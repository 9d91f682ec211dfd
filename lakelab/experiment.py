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

from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np
import torch

from lakelab import policy as mlp
from lakelab.config import LakeConfig
from lakelab.lakes import Lake, make_lake
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
    Trajectory,
    optimal_and_suboptimal_routes,
    sample,
    sample_many,
    to_batch,
)

# Streams of the per-seed random generators: np.random.default_rng([seed, STREAM]).
DEMOS, OFFLINE, CHOSEN_BATCHES, REJECTED_BATCHES = 1, 2, 3, 4
MAX_RESAMPLE_ROUNDS = 8  # demos and offline samples, drawn once per run
ONLINE_ROUNDS = 3  # online negatives, drawn every step


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
    chosen: list[list[Trajectory]]  # per seed: the chosen pool
    offline: list[list[Trajectory]]  # per seed: the offline rejected pool
    optimal_route: Trajectory
    suboptimal_route: Trajectory | None


def build_setup(config: LakeConfig, seeds: list[int] | None = None) -> Setup:
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
            pool = [best]
        else:
            pool = _successful(lake, optimum.policy, config.n_demos, seed, config.max_len)
        chosen.append(pool)
        # a rejected route must never be a chosen one: should pi*'s demos of this seed contain
        # the sub-optimal route, its offline pool is sampled from pi_theta_0 instead
        if (
            config.offline_source == "suboptimal"
            and second is not None
            and second.key() not in {t.key() for t in pool}
        ):
            offline.append([second])
        else:
            rng = np.random.default_rng([seed, OFFLINE])
            offline.append(_excluding(lake, p0[n], pool, config.batch_size, rng, config.max_len))
    return Setup(
        config, lake, optimum, seeds, theta0, theta_star, kl, chosen, offline, best, second
    )


def _successful(lake, policy, n, seed, max_len) -> list[Trajectory]:
    """``n`` episodes of ``policy`` that reach the goal (sampled in rounds, bounded)."""
    rng = np.random.default_rng([seed, DEMOS])
    found: list[Trajectory] = []
    for _ in range(MAX_RESAMPLE_ROUNDS):
        found += [
            t for t in sample(lake, policy, 2 * n, rng, max_len=max_len) if lake.goal[t.final]
        ]
        if len(found) >= n:
            return found[:n]
    raise ValueError(
        f"pi* reaches the goal too rarely to collect {n} demos; lower tau or raise max_len"
    )


def _excluding(lake, policy, pool, n, rng, max_len) -> list[Trajectory]:
    """``n`` episodes of ``policy`` none of which equals a trajectory of ``pool``."""
    banned = {t.key() for t in pool}
    found: list[Trajectory] = []
    for _ in range(MAX_RESAMPLE_ROUNDS):
        found += [
            t for t in sample(lake, policy, 2 * n, rng, max_len=max_len) if t.key() not in banned
        ]
        if len(found) >= n:
            return found[:n]
    if not found:
        raise ValueError("could not sample any trajectory differing from the chosen ones")
    return found + [found[i % len(found)] for i in range(n - len(found))]


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
    cfg, lake = setup.config, setup.lake
    idx = list(range(len(setup.seeds))) if seed_index is None else list(seed_index)
    seeds = [setup.seeds[i] for i in idx]
    objective = get_objective(method)
    hp = cfg.method_hparams(method)
    S = lake.n_states
    theta0 = {k: v[idx] for k, v in setup.theta0.items()}
    target = {k: v[idx] for k, v in setup.theta_star.items()}
    params = mlp.clone(theta0, requires_grad=True)
    opt = torch.optim.Adam(params.values(), lr=cfg.lr)
    P = torch.tensor(lake.P)
    chosen_rng = [np.random.default_rng([s, CHOSEN_BATCHES]) for s in seeds]
    rejected_rng = [np.random.default_rng([s, REJECTED_BATCHES]) for s in seeds]
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
        chosen = to_batch(
            [
                _pick(setup.chosen[i], cfg.batch_size, r)
                for i, r in zip(idx, chosen_rng, strict=True)
            ]
        )
        rejected = None
        if objective.needs_pairs:
            rejected, fell_back = _rejected_batch(setup, idx, params, rejected_rng)
            fallbacks += fell_back
        logps, inputs_used = _policy_logps(setup, method, hp, params, theta0, chosen, rejected, P)
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


def _pick(pool: list[Trajectory], n: int, rng: np.random.Generator) -> list[Trajectory]:
    """``n`` trajectories of ``pool``: a random subset if it is larger, else cycled."""
    if len(pool) > n:
        return [pool[i] for i in rng.choice(len(pool), size=n, replace=False)]
    return [pool[i % len(pool)] for i in range(n)]


def _rejected_batch(setup, idx, params, rngs) -> tuple[Batch, np.ndarray]:
    """The rejected batch [N, B, T] and, per seed, how many slots fell back to the offline
    pool (always 0 for offline negatives)."""
    cfg = setup.config
    if cfg.negatives == "offline":
        picks = [_pick(setup.offline[i], cfg.batch_size, r) for i, r in zip(idx, rngs, strict=True)]
        return to_batch(picks), np.zeros(len(idx))
    with torch.no_grad():
        probs = mlp.state_log_probs(params, cfg.activation).exp().numpy()
    trajs, fallbacks = _online_negatives(setup, idx, probs, rngs)
    return to_batch(trajs), fallbacks


def _online_negatives(setup, idx, probs, rngs) -> tuple[list[list[Trajectory]], np.ndarray]:
    """Per seed, ``batch_size`` episodes of the current policy that equal no chosen
    trajectory. Sampled for all seeds at once in at most ``ONLINE_ROUNDS`` rounds; once the
    policy produces (almost) only chosen trajectories, the missing slots are filled from the
    offline pool, and the metric ``online_fallback`` counts them."""
    cfg = setup.config
    B = cfg.batch_size
    banned = [{t.key() for t in setup.chosen[i]} for i in idx]
    found: list[list[Trajectory]] = [[] for _ in idx]
    for _ in range(ONLINE_ROUNDS):
        need = [n for n in range(len(idx)) if len(found[n]) < B]
        if not need:
            break
        drawn = sample_many(
            setup.lake, probs[need], 2 * B, [rngs[n] for n in need], max_len=cfg.max_len
        )
        for n, trajs in zip(need, drawn, strict=True):
            found[n] += [t for t in trajs if t.key() not in banned[n]]
    out, fallbacks = [], np.zeros(len(idx))
    for n, i in enumerate(idx):
        got = found[n][:B]
        pool = setup.offline[i]
        out.append(got + [pool[k % len(pool)] for k in range(B - len(got))])
        fallbacks[n] = B - len(got)
    return out, fallbacks


def _policy_logps(setup, method, hp, params, theta0, chosen, rejected, P):
    """Per-token log-probs [N, B, T] the objective needs, and the input mass [N, S] trained on.

    IFT (eq. 17): pass 1 without grad on the true states predicts the next state
    (greedy: P(. | s, argmax_a pi); expected: sum_a pi(a | s) P(. | s, a)); pass 2 runs on
    (1 - lam) one_hot(s_i) + lam * prediction from position i - 1, targets the true actions.
    """
    cfg, S = setup.config, setup.lake.n_states
    act = cfg.activation
    x_true = x = chosen.inputs(S)  # (N, B, T, S)
    if method == "ift":
        with torch.no_grad():
            probs = torch.softmax(mlp.forward(params, x, act), -1)  # (N, B, T, A)
            if hp["residual"] == "greedy":
                nxt = P[chosen.states, probs.argmax(-1)]  # (N, B, T, S)
            else:
                nxt = torch.einsum("nbta,nbtas->nbts", probs, P[chosen.states])
        N, B, T, _ = x.shape
        prompt = torch.zeros(N * B, T, dtype=torch.bool)  # the start state is position 0
        x = temporal_residual(
            x.reshape(N * B, T, S), nxt.reshape(N * B, T, S), prompt, lam=hp["lam"]
        ).reshape(N, B, T, S)
        x = x * chosen.mask.unsqueeze(-1)  # padding positions carry no input
    used = x.sum((1, 2)).detach()
    logp_c = mlp.token_log_probs(params, x, chosen.actions, act)
    logp_r = ref_c = ref_r = None
    if rejected is not None:
        xr = rejected.inputs(S)
        used = used + xr.sum((1, 2))
        logp_r = mlp.token_log_probs(params, xr, rejected.actions, act)
        if get_objective(method).needs_reference:
            with torch.no_grad():
                ref_c = mlp.token_log_probs(theta0, x_true, chosen.actions, act)
                ref_r = mlp.token_log_probs(theta0, xr, rejected.actions, act)
    mask_r = None if rejected is None else rejected.mask
    return SequenceLogps(logp_c, chosen.mask, logp_r, mask_r, ref_c, ref_r), used


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
    out = []
    for n in range(logp.shape[0]):
        pi = np.exp(logp[n])
        pi = pi / pi.sum(-1, keepdims=True)
        visit = state_visitation(lake, pi, gamma=cfg.gamma, normalize=True)
        w = visit[live] / visit[live].sum()
        mass = explored[n].numpy()
        # the agent's own preference, measured like the explored mass: states it acts in
        # (live), undiscounted, episodes cut at max_len
        own = state_visitation(lake, pi, horizon=cfg.max_len) * live
        row = {
            "param_mse": float(mse[n]),
            "kl_uniform": float(kl[n, live].mean()),
            "kl_visitation": float((w * kl[n, live]).sum()),
            "success": success_probability(lake, pi),
            "return": float(policy_evaluation(lake, pi, gamma=cfg.gamma)[0][lake.start]),
            "logp_optimal": _route_logp(logp[n], setup.optimal_route),
            "logp_suboptimal": (
                np.nan
                if setup.suboptimal_route is None
                else _route_logp(logp[n], setup.suboptimal_route)
            ),
        }
        row.update(explored_summary(mass, own / own.sum(), cfg.explored_share))
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
