"""All methods of a run trained at once: the fast path of ``lakelab.mlp.train``.

The plain loop (``lakelab.mlp.train``) fine-tunes one seed with one objective. Here every
(method, seed) pair is one row of one stacked set of parameters, so the policy table, the
sampling of online negatives (``lakelab.mlp.negatives``: vectorised, with hashes), the
backward pass, Adam and the exact metrics run once per step for all of them; only the
objectives (and their batches) are per method. Each row still gets exactly its own gradient:
the total loss is a sum over methods and seeds of each one's batch-mean loss, and Adam is
elementwise. The tests check that this gives the plain loop's numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields

import numpy as np
import torch

from lakelab.mlp import model
from lakelab.mlp.data import Batch, to_batch
from lakelab.mlp.experiment import (
    CHOSEN_BATCHES,
    ONLINE_NEGATIVES,
    REJECTED_BATCHES,
    MethodResult,
    Setup,
    batch_rows,
    logged,
)
from lakelab.mlp.logps import policy_logps
from lakelab.mlp.metrics import exact_metrics
from lakelab.mlp.negatives import OnlineNegatives
from lakelab.mlp.optim import Adam
from lakelab.mlp.replay import Tape
from lakelab.registry import SequenceLogps, compute_objective, get_objective
from lakelab.training import Diverged, torch_threads


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
    once per step for all methods (speed: docs/benchmarks.md); only the objectives (and their
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
    seed_losses: torch.Tensor | None = None  # the last step's loss of each seed [N]
    tape: Tape = field(default_factory=Tape)  # what the replay shows, per logged step


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
                _stacked_rows(setup.chosen, idx, seeds, CHOSEN_BATCHES, cfg),
                to_batch([setup.offline[i] for i in idx]),
                _stacked_rows(setup.offline, idx, seeds, REJECTED_BATCHES, cfg),
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
        ref_table = model.state_log_probs(theta0, cfg.activation)  # (R, S, A), frozen
    theta = model.FlatParams(theta0)  # one leaf: one Adam update for every parameter
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
    # IFT also runs the network on mixed inputs: it needs its rows' parameters
    mixed = any(get_objective(g.method).mixed_pass for g in groups)

    for step in range(cfg.steps + 1):
        params = theta.views()
        if logged(step, cfg):
            explored = np.concatenate([g.explored for g in groups])
            for r, row in enumerate(exact_metrics(setup, params, target, explored)):
                rows[r].append(
                    {"step": step, **row, "online_fallback": fallbacks[r], **last_metrics[r]}
                )
            with torch.no_grad():  # the policy tables at this logged step, for the replay
                policies = model.state_log_probs(params, cfg.activation).exp().numpy()
            for g in groups:
                g.tape.log(policies[g.rows], g.explored)
        if step == cfg.steps:
            break
        # the whole policy as a table: with one-hot inputs every token's log-prob is a lookup
        table = model.state_log_probs(params, cfg.activation)  # (R, S, A)
        tables = table.split(sizes)
        own = _split_params(params, sizes) if mixed else [None] * len(groups)
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
            if logged(step, cfg):
                g.tape.batch(chosen, rejected)
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
            losses, g.metrics = _per_sequence(g.method, logps, g.hp, len(g.idx))
            g.seed_losses = losses.detach().view(len(g.idx), -1).mean(1)  # each seed's batch
            g.loss = losses.mean()  # the objective's batch mean over all of the method's rows
            total = total + g.loss * len(g.idx)  # sum over seeds of each seed's batch mean
        opt.zero_grad()
        total.backward()
        opt.step()
        _check_finite(groups, step, total, theta)
        if logged(step + 1, cfg):  # this step's batch metrics go with the next log
            last_metrics = [row for g in groups for row in _objective_metrics(g)]
        if progress is not None:
            progress(len(groups))

    params = theta.views()
    with torch.no_grad():
        probs = model.state_log_probs(params, cfg.activation).exp().numpy()
        error = model.state_param_error(params, target).numpy()
    return {
        g.method: MethodResult(
            rows[g.rows], g.explored, error[g.rows], probs[g.rows], g.tape.data()
        )
        for g in groups
    }


def _split_params(params: model.Params, sizes: list[int]) -> list[model.Params]:
    """Each method's rows of the joint parameters, as views (for IFT's mixed-input pass)."""
    parts = {k: v.split(sizes) for k, v in params.items()}
    return [{k: parts[k][j] for k in params} for j in range(len(sizes))]


def _stacked_rows(pools, idx, seeds, stream, cfg) -> np.ndarray:
    """Each seed's ``batch_rows`` [steps, B], stacked: [steps, N, B]."""
    rows = [
        batch_rows(len(pools[i]), seed, stream, cfg) for i, seed in zip(idx, seeds, strict=True)
    ]
    return np.stack(rows, 1)


def _per_sequence(method: str, logps: SequenceLogps, hp: dict, seeds: int):
    """``compute_objective(..., reduction="none")`` on the rows of every seed at once or, for
    a batchwise objective (``Objective.batchwise``) or an unpaired one (its losses are per
    example: a seed's desirable ones, then its undesirable ones), on each seed's batch alone."""
    objective = get_objective(method)
    if not (objective.batchwise or objective.unpaired):
        return compute_objective(method, logps, hp, reduction="none")
    parts = [getattr(logps, f.name) for f in fields(logps)]
    chunks = [
        compute_objective(
            method,
            SequenceLogps(*(None if x is None else x.chunk(seeds)[n] for x in parts)),
            hp,
            reduction="none",
        )
        for n in range(seeds)
    ]
    losses = torch.cat([c[0] for c in chunks])
    return losses, {k: torch.cat([c[1][k] for c in chunks]) for k in chunks[0][1]}


def _objective_metrics(g: _Group) -> list[dict[str, float]]:
    """The objective's own diagnostics (TRL names) per seed, from the last batch: the mean of
    each per-sequence metric over the seed's rows, which is what the objective reports for
    that seed's batch alone (its "mean" reduction)."""
    N = len(g.idx)
    # an unpaired objective's metric of one kind is NaN on the other kind's rows
    mean = torch.nanmean if get_objective(g.method).unpaired else torch.mean
    means = {k: mean(v.view(N, -1), 1, dtype=torch.float64).tolist() for k, v in g.metrics.items()}
    losses = g.seed_losses.tolist()
    return [{"batch/loss": losses[n]} | {f"batch/{k}": v[n] for k, v in means.items()}
            for n in range(N)]  # fmt: skip


def _check_finite(groups: list[_Group], step: int, total, theta: model.FlatParams) -> None:
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
