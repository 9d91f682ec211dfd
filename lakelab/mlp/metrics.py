"""The Frozen Lake experiment's metrics, exact from the tabular MDP (no sampling).

Per row of stacked parameters (a method's seed): parameter MSE to theta* (the paper's metric),
KL to pi* uniform over live states and weighted by the policy's own visitation, success
probability, discounted return V^pi(start) and its share of the optimum's, V^pi(start) /
V*(start) (``optimality``, 1 = optimal), log-likelihood of the optimal and sub-optimal
routes, and the explored grid's summary against the agent's own visitation.
"""

from __future__ import annotations

import numpy as np
import torch

from lakelab.mlp import model
from lakelab.mlp.data import Trajectory
from lakelab.mlp.experiment import Setup
from lakelab.solver import policy_evaluation, state_visitation, success_probability


def exact_metrics(
    setup: Setup, params: model.Params, target: model.Params, explored: np.ndarray
) -> list[dict[str, float]]:
    """The logged metrics of each row of ``params`` (theta* of each row: ``target``;
    ``explored``: each row's input mass so far [R, S]), computed from the tabular MDP."""
    cfg, lake = setup.config, setup.lake
    live = ~lake.terminal
    with torch.no_grad():
        logp = model.state_log_probs(params, cfg.activation)  # (N, S, A)
        mse = model.param_mse(params, target).numpy()
        kl = model.kl_per_state(torch.tensor(setup.optimum.policy), logp).numpy()  # (N, S)
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
    kl_live = kl[:, live]
    suboptimal = setup.suboptimal_route
    columns = {
        "param_mse": mse,
        "kl_uniform": kl_live.mean(1),
        "kl_visitation": (w * kl_live).sum(1),
        "success": success,
        "return": returns,
        "optimality": returns / setup.v_star,  # V^pi(start) / V*(start): 1 is optimal
        "logp_optimal": route_logp(logp, setup.optimal_route),
        "logp_suboptimal": (
            np.full(len(mse), np.nan) if suboptimal is None else route_logp(logp, suboptimal)
        ),
        **explored_summary(explored, own, cfg.explored_share),
    }
    values = zip(*(np.asarray(v).tolist() for v in columns.values()), strict=True)
    return [dict(zip(columns, row, strict=True)) for row in values]


def route_logp(logp: np.ndarray, route: Trajectory) -> np.ndarray:
    """log pi(route) = sum_t log pi(a_t | s_t) per policy of ``logp`` [N, S, A]: [N] (the
    policy's share of the route's probability)."""
    return logp[:, list(route.states), list(route.actions)].sum(1)


def explored_summary(
    mass: np.ndarray, visitation: np.ndarray, share: float
) -> dict[str, np.ndarray]:
    """Summary of explored grids ``mass`` [..., S] against the agent's own ``visitation``
    [..., S], per leading index.

    ``explored_cells``: cells holding at least ``share`` of the mass.
    ``explored_overlap``: sum_s min(p(s), d(s)) = 1 - total variation between the explored
    distribution p and the visitation distribution d (1 = the method trains exactly where
    the agent goes; the paper's "alignment with the agent's own preference").
    A grid without mass scores 0 on both.
    """
    total = mass.sum(-1, keepdims=True)
    some = total > 0
    p = np.divide(mass, total, out=np.zeros_like(mass, dtype=float), where=some)
    cells = np.where(some[..., 0], (p >= share).sum(-1), 0).astype(float)
    overlap = np.where(some[..., 0], np.minimum(p, visitation).sum(-1), 0.0)
    return {"explored_cells": cells, "explored_overlap": overlap}
