"""Where the probability went: the change of pi(. | s) between two steps of a run, split in
each state by what the actions do.

Training on a chosen route raises log pi(route) only if the mass of the route's actions
grows; preference objectives push the rejected route down and nothing says where its mass
goes. It can go to the optimal action (good), to another safe action (a detour: benign
likelihood displacement), or to an action that can end in a hole (catastrophic likelihood
displacement; Razin et al. 2024, "Unintentional Unalignment", arXiv 2410.08847). On a lake
the three kinds of action are known exactly:

    optimal       Q*(s, a) within TIE_TOL of max_a Q*(s, a) > 0  (value iteration at gamma)
    other safe    not optimal, and no chance of falling into a hole
    hole-risking  not optimal, and P(hole | s, a) > 0

    flow[s, k] = sum_{a of kind k} pi_t(a | s) - pi_0(a | s)       sum_k flow[s, k] = 0

    classes = action_classes(lake, gamma=0.9)     # [S, A]: 0, 1, 2 (-1 on terminal states)
    flow = mass_flow(pi_0, pi_t, classes)         # [..., S, 3]
    mass_moved(flow, weights)                     # [..., 3]: weighted over states (net)
    mass_moved(flow, weights, "gained")           # only the gains (and "lost": the losses)
"""

from __future__ import annotations

import numpy as np

from lakelab.lakes import Lake
from lakelab.solver import TIE_TOL, state_visitation, value_iteration

__all__ = ["KINDS", "action_classes", "mass_flow", "mass_moved", "optimum_weights"]

KINDS = ("optimal", "other safe", "hole-risking")
PARTS = ("net", "gained", "lost")
OPTIMAL, SAFE, RISKY = range(3)


def action_classes(lake: Lake, *, gamma: float) -> np.ndarray:
    """Each action's kind [S, A]: OPTIMAL (0), SAFE (1) or RISKY (2); -1 in terminal states.

    Optimal comes first: on a slippery lake an optimal move may still risk a hole, and it is
    counted as optimal (no action there does better). In a state from which the goal cannot
    be reached every Q*(s, a) is 0 and no action is optimal: there the kinds are safe or
    hole-risking only."""
    Q = value_iteration(lake, gamma=gamma).Q  # (S, A)
    best = Q.max(-1, keepdims=True)
    optimal = (Q >= best - TIE_TOL) & (best > 0)
    hole_risk = lake.expect(lake.holes.astype(float)) > 0  # (S, A) P(next state is a hole) > 0
    kinds = np.where(optimal, OPTIMAL, np.where(hole_risk, RISKY, SAFE))
    kinds[lake.terminal] = -1
    return kinds


def mass_flow(before: np.ndarray, after: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """The probability each kind of action gained from ``before`` to ``after`` (policies
    [..., S, A]) in each state: [..., S, 3], summing to 0 over the kinds (0 in terminal
    states)."""
    before, after = np.asarray(before, dtype=float), np.asarray(after, dtype=float)
    if before.shape != after.shape or before.shape[-2:] != classes.shape:
        raise ValueError(
            f"policies must both have shape [..., S, A] = [..., {classes.shape[0]}, "
            f"{classes.shape[1]}], got {before.shape} and {after.shape}"
        )
    change = after - before
    return np.stack([(change * (classes == k)).sum(-1) for k in range(len(KINDS))], -1)


def mass_moved(flow: np.ndarray, weights: np.ndarray, part: str = "net") -> np.ndarray:
    """``flow`` [..., S, 3] averaged over states with ``weights`` [S] (normalised): [..., 3].

    ``part``: "net" (gains and losses cancel across states), "gained" (only the states where
    a kind gained) or "lost" (only where it lost, as a positive number). A policy that moves
    mass to the optimal action in one state and away from it in another shows a small net
    change but both parts."""
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")
    flow = {"net": flow, "gained": np.maximum(flow, 0), "lost": np.maximum(-flow, 0)}[part]
    weights = np.asarray(weights, dtype=float)
    return np.einsum("...sk,s->...k", flow, weights / weights.sum())


def optimum_weights(lake: Lake, optimum_policy: np.ndarray, *, gamma: float) -> np.ndarray:
    """Where pi* spends its time: its discounted visits to the live states from the start,
    normalised [S] (0 on terminal states). The states whose flow decides success."""
    visits = state_visitation(lake, optimum_policy, gamma=gamma) * ~lake.terminal
    return visits / visits.sum()
