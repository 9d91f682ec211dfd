"""Exact tabular dynamic programming: value iteration, soft value iteration, policy evaluation.

Every quantity lakelab reports about a Frozen Lake policy (values, KL to the optimum, success
probability, state visitation) comes from here, computed exactly, not by sampling.

Bellman optimality (Sutton & Barto 2018, eq. 4.2 and 4.10):
    Q(s, a) = r(s, a) + gamma * sum_s' P(s' | s, a) V(s'),      V(s) = max_a Q(s, a)
Soft (entropy-regularised) Bellman, temperature tau (Ziebart 2010; Haarnoja et al. 2017):
    V(s) = tau * logsumexp_a(Q(s, a) / tau),     pi*(a | s) = exp((Q(s, a) - V(s)) / tau)
which tends to the hard equations as tau -> 0.

Transitions are stored as padded successor lists (``next_states``, ``next_probs`` [S, A, K],
K = most successors of any state-action, 3 on a slippery lake) so a Bellman backup costs
O(S * A * K), not the O(S^2 * A) of a dense [S, A, S'] tensor; the dense ``P`` is available as
a property for teaching and tests.

gamma = 1 (Frozen Lake's own, undiscounted, criterion) is allowed where it is well defined:
value iteration from V = 0 converges for rewards in [0, 1] ending in absorbing states; policy
evaluation and visitation need the policy to end episodes (states that loop forever are given
value 0 when they collect no reward there, and are an error otherwise); soft value iteration
needs gamma < 1, because the entropy bonus of a policy that can loop forever is unbounded.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from lakelab.validate import check_nonneg_int, check_positive_int, check_real

TIE_TOL = 1e-9
"""Actions whose Q is within this of the best count as tied in a greedy policy."""


@dataclass(frozen=True, eq=False)
class TabularMDP:
    """A finite MDP with absorbing terminal states.

    Fields (S states, A actions, K successor slots):
        next_states: int [S, A, K], successor state of each slot (padding slots have prob 0).
        next_probs: float [S, A, K], P(next_states[s, a, k] | s, a); each [s, a] sums to 1.
        R: float [S, A], expected immediate reward r(s, a).
        terminal: bool [S], absorbing states whose value is 0.
        goal: bool [S], states whose entry counts as success.
        start: index of the start state.
    """

    next_states: np.ndarray
    next_probs: np.ndarray
    R: np.ndarray
    terminal: np.ndarray
    goal: np.ndarray
    start: int

    @property
    def n_states(self) -> int:
        return self.R.shape[0]

    @property
    def n_actions(self) -> int:
        return self.R.shape[1]

    @cached_property
    def P(self) -> np.ndarray:
        """Dense transition tensor, float64 [S, A, S']."""
        S, A, _ = self.next_states.shape
        P = np.zeros((S, A, S))
        s_idx, a_idx = np.meshgrid(np.arange(S), np.arange(A), indexing="ij")
        np.add.at(P, (s_idx[..., None], a_idx[..., None], self.next_states), self.next_probs)
        return P

    def expect(self, V: np.ndarray) -> np.ndarray:
        """E[V(s') | s, a] for every state-action: [S, A]. V may have leading batch dims."""
        return (self.next_probs * V[..., self.next_states]).sum(-1)

    def policy_matrix(self, policy: np.ndarray) -> np.ndarray:
        """State-to-state transition matrix under a stochastic policy: P_pi [S, S]
        (policies [..., S, A] give [..., S, S])."""
        return np.einsum("...sa,sat->...st", policy, self.P)

    @classmethod
    def from_dense(
        cls,
        P: np.ndarray,
        R: np.ndarray,
        terminal: np.ndarray,
        goal: np.ndarray | None = None,
        start: int = 0,
    ) -> TabularMDP:
        """Build from a dense P [S, A, S'] (rows summing to 1)."""
        P, R = np.asarray(P, dtype=float), np.asarray(R, dtype=float)
        if P.ndim != 3 or P.shape[0] != P.shape[2] or R.shape != P.shape[:2]:
            raise ValueError(f"need P [S, A, S] and R [S, A], got {P.shape} and {R.shape}")
        if (P < 0).any() or not np.allclose(P.sum(-1), 1.0):
            raise ValueError("every row P[s, a, :] must be a probability distribution")
        k = int((P > 0).sum(-1).max())
        order = np.argsort(-P, axis=-1, kind="stable")[..., :k]
        probs = np.take_along_axis(P, order, -1)
        terminal = np.asarray(terminal, dtype=bool)
        goal = np.zeros_like(terminal) if goal is None else np.asarray(goal, dtype=bool)
        return cls(order, probs, R, terminal, goal, int(start))


@dataclass(frozen=True)
class Solution:
    """Result of (soft) value iteration: V [S], Q [S, A], policy [S, A] (rows sum to 1)."""

    V: np.ndarray
    Q: np.ndarray
    policy: np.ndarray
    iterations: int


def check_gamma(gamma: float, *, allow_one: bool = True) -> float:
    return check_real("gamma", gamma, 0.0, 1.0, high_open=not allow_one)


def check_policy(mdp: TabularMDP, policy: np.ndarray, *, batched: bool = False) -> np.ndarray:
    """``policy`` as a float array, checked: shape (S, A) (or (..., S, A) if ``batched``),
    rows probability distributions."""
    policy = np.asarray(policy, dtype=float)
    shape = (mdp.n_states, mdp.n_actions)
    if policy.shape[-2:] != shape or (policy.ndim != 2 and not batched):
        lead = "(..., S, A) with " if batched else ""
        raise ValueError(f"policy must have shape {lead}(S, A) = {shape}, got {policy.shape}")
    if (policy < 0).any() or not np.allclose(policy.sum(-1), 1.0):
        raise ValueError("policy rows must be probability distributions over actions")
    return policy


def _check_iteration(tol: float, max_iter: int) -> None:
    check_real("tol", tol, 0.0, low_open=True)
    check_positive_int("max_iter", max_iter)


def greedy_policy(Q: np.ndarray, tol: float = TIE_TOL) -> np.ndarray:
    """Uniform over the actions within ``tol`` of max_a Q(s, a), [S, A].

    Ties are split rather than broken by index: with gamma = 1 on a deterministic lake,
    bumping into a wall ties with the best move (the value is the same either way), and an
    argmax that picks it would loop forever.
    """
    best = Q >= Q.max(-1, keepdims=True) - tol
    return best / best.sum(-1, keepdims=True)


def bellman_backup(mdp: TabularMDP, V: np.ndarray, gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """One synchronous sweep: Q = R + gamma P V, V' = max_a Q (0 on terminal states)."""
    Q = mdp.R + gamma * mdp.expect(V)
    return np.where(mdp.terminal, 0.0, Q.max(-1)), Q


def value_iteration(
    mdp: TabularMDP, *, gamma: float = 1.0, tol: float = 1e-10, max_iter: int = 100_000
) -> Solution:
    """Optimal V, Q and the greedy policy by synchronous value iteration.

    Iterates V <- max_a [R + gamma * P V] (terminal V fixed at 0) until the largest change is
    below ``tol``; raises ``RuntimeError`` if that takes more than ``max_iter`` sweeps.
    The distance to V* is then at most tol * gamma / (1 - gamma) for gamma < 1; for gamma = 1
    V rises monotonically to V* from below and can sit further away than the last change
    (4x4 slippery: tol 1e-10 leaves V(start) 2e-9 short), so tests use a tighter tol.
    """
    gamma = check_gamma(gamma)
    _check_iteration(tol, max_iter)
    V = np.zeros(mdp.n_states)
    for it in range(1, max_iter + 1):
        V_new, _ = bellman_backup(mdp, V, gamma)
        delta = np.abs(V_new - V).max()
        V = V_new
        if delta < tol:
            Q = mdp.R + gamma * mdp.expect(V)
            return Solution(V, Q, greedy_policy(Q), it)
    raise RuntimeError(
        f"value iteration did not converge in {max_iter} sweeps (last change {delta:.3g} "
        f">= tol {tol}); raise max_iter or tol, or lower gamma"
    )


def soft_value_iteration(
    mdp: TabularMDP,
    *,
    tau: float,
    gamma: float = 0.95,
    tol: float = 1e-10,
    max_iter: int = 100_000,
) -> Solution:
    """Entropy-regularised optimum: the soft-optimal action probabilities pi*(a | s).

    V(s) = tau * logsumexp_a(Q(s, a) / tau),  Q = R + gamma * P V,
    pi*(a | s) = exp((Q(s, a) - V(s)) / tau)   (soft Q-learning, Haarnoja et al. 2017, eq. 2-4).
    These are the IFT paper's "optimal state-action probabilities" (section 5.3): a softmax
    policy can represent them with finite weights, unlike the one-hot hard optimum.
    Terminal states get V = 0 and a uniform policy (they are never acted in).
    """
    if not (isinstance(tau, int | float) and np.isfinite(tau) and tau > 0):
        raise ValueError(f"tau must be > 0, got {tau!r}")
    try:
        gamma = check_gamma(gamma, allow_one=False)
    except ValueError as err:
        raise ValueError(
            f"{err}: soft value iteration needs gamma < 1, since with gamma = 1 the entropy "
            "bonus of a policy that can loop (bump into a wall) grows without bound"
        ) from None
    _check_iteration(tol, max_iter)
    V = np.zeros(mdp.n_states)
    for it in range(1, max_iter + 1):
        Q = mdp.R + gamma * mdp.expect(V)
        V_new = np.where(mdp.terminal, 0.0, _soft_max(Q, tau))
        delta = np.abs(V_new - V).max()
        V = V_new
        if delta < tol:
            Q = mdp.R + gamma * mdp.expect(V)
            V_soft = _soft_max(Q, tau)
            policy = np.exp((Q - V_soft[:, None]) / tau)
            policy = policy / policy.sum(-1, keepdims=True)  # exact up to rounding already
            policy[mdp.terminal] = 1.0 / mdp.n_actions
            return Solution(V, Q, policy, it)
    raise RuntimeError(
        f"soft value iteration did not converge in {max_iter} sweeps (last change {delta:.3g} "
        f">= tol {tol}); raise max_iter or tol, or lower gamma"
    )


def _soft_max(Q: np.ndarray, tau: float) -> np.ndarray:
    """tau * logsumexp(Q / tau) over actions, stably."""
    m = Q.max(-1)
    return m + tau * np.log(np.exp((Q - m[:, None]) / tau).sum(-1))


def _ending_states(mdp: TabularMDP, P_pi: np.ndarray) -> np.ndarray:
    """Bool [..., S]: states from which a terminal state is reached with positive probability
    (P_pi [..., S, S]: one policy or many)."""
    reach = np.broadcast_to(mdp.terminal, P_pi.shape[:-1])
    support = P_pi > 0
    while True:
        grown = reach | (support & reach[..., None, :]).any(-1)
        if (grown == reach).all():
            return reach
        reach = grown


def _solve_values(
    mdp: TabularMDP, policy: np.ndarray, reward: np.ndarray, gamma: float
) -> np.ndarray:
    """V = r_pi + gamma P_pi V on non-terminal states, V = 0 on terminal ones; policies
    [..., S, A] give values [..., S], solved as one batch when they share their live states."""
    P_pi = mdp.policy_matrix(policy)  # (..., S, S)
    r_pi = (policy * reward).sum(-1)  # (..., S)
    active = np.broadcast_to(~mdp.terminal, r_pi.shape)
    if gamma == 1.0:
        looping = active & ~_ending_states(mdp, P_pi)
        if (looping & (np.abs(r_pi) > 0)).any():
            bad = np.flatnonzero((looping & (np.abs(r_pi) > 0)).reshape(-1, r_pi.shape[-1]).any(0))
            raise ValueError(
                f"with gamma = 1 the return is infinite: the policy never ends episodes from "
                f"states {bad[:5].tolist()} and collects reward there; use gamma < 1 or a horizon"
            )
        active = active & ~looping  # looping without reward is worth exactly 0
    V = np.zeros(r_pi.shape)
    flat_active = active.reshape(-1, active.shape[-1])
    if (flat_active == flat_active[0]).all():  # the same live states: one batched solve
        idx = np.flatnonzero(flat_active[0])
        A = np.eye(len(idx)) - gamma * P_pi[..., idx[:, None], idx]
        V[..., idx] = np.linalg.solve(A, r_pi[..., idx, None])[..., 0]
        return V
    for k in np.ndindex(r_pi.shape[:-1]):  # rare: policies that loop in different states
        idx = np.flatnonzero(active[k])
        A = np.eye(len(idx)) - gamma * P_pi[k][np.ix_(idx, idx)]
        V[k][idx] = np.linalg.solve(A, r_pi[k][idx])
    return V


def policy_evaluation(
    mdp: TabularMDP, policy: np.ndarray, *, gamma: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Exact V^pi [S] and Q^pi [S, A] of a stochastic policy by one linear solve:
    (I - gamma P_pi) V = r_pi on the non-terminal states. Several policies [..., S, A] at
    once give [..., S] and [..., S, A]."""
    gamma = check_gamma(gamma)
    policy = check_policy(mdp, policy, batched=True)
    V = _solve_values(mdp, policy, mdp.R, gamma)
    return V, mdp.R + gamma * mdp.expect(V)


def success_probability(
    mdp: TabularMDP, policy: np.ndarray, *, horizon: int | None = None
) -> float | np.ndarray:
    """Probability that an episode from ``mdp.start`` ends in a goal state (within
    ``horizon`` steps if given, as under Gymnasium's time limit). Without a horizon, several
    policies [..., S, A] at once give an array [...]."""
    enter_goal = mdp.expect(mdp.goal.astype(float))  # P(next state is a goal | s, a)
    if horizon is None:
        policy = check_policy(mdp, policy, batched=True)
        p = _solve_values(mdp, policy, enter_goal, 1.0)[..., mdp.start]
        return float(p) if policy.ndim == 2 else p
    policy = check_policy(mdp, policy)
    return float(finite_horizon_values(mdp, horizon, policy=policy, reward=enter_goal)[mdp.start])


def finite_horizon_values(
    mdp: TabularMDP,
    horizon: int,
    *,
    gamma: float = 1.0,
    policy: np.ndarray | None = None,
    reward: np.ndarray | None = None,
) -> np.ndarray:
    """Values [S] with ``horizon`` steps left, by backward induction.

    With ``policy=None`` the optimal non-stationary values (Gymnasium's time limit: what the
    best agent that knows the clock can get); with a policy, that stationary policy's values
    when the episode is cut after ``horizon`` steps.
    """
    gamma = check_gamma(gamma)
    check_nonneg_int("horizon", horizon)
    reward = mdp.R if reward is None else reward
    if policy is not None:
        policy = check_policy(mdp, policy)
    V = np.zeros(mdp.n_states)
    for _ in range(horizon):
        Q = reward + gamma * mdp.expect(V)
        V = Q.max(-1) if policy is None else (policy * Q).sum(-1)
        V = np.where(mdp.terminal, 0.0, V)
    return V


def state_visitation(
    mdp: TabularMDP,
    policy: np.ndarray,
    *,
    gamma: float = 1.0,
    horizon: int | None = None,
    normalize: bool = False,
) -> np.ndarray:
    """Expected discounted number of visits to each state in one episode from the start, [S].

    d(s) = sum_t gamma^t Pr(s_t = s), counting the states s_0 .. s_T of the episode, the
    terminal state s_T included once. So under a policy that ends episodes: the terminal
    entries sum to 1 (for gamma = 1), the goal entries sum to the success probability, and
    the non-terminal entries sum to the expected episode length. ``normalize=True`` divides by
    the total, giving the agent's own state distribution. Several policies [..., S, A] at
    once give [..., S].
    """
    gamma = check_gamma(gamma)
    policy = check_policy(mdp, policy, batched=True)
    P_pi = mdp.policy_matrix(policy)  # (..., S, S)
    active = ~mdp.terminal
    start = np.zeros(mdp.n_states)
    start[mdp.start] = 1.0
    if horizon is not None:
        check_nonneg_int("horizon", horizon)
        mu = np.broadcast_to(start, policy.shape[:-1])  # Pr(s_t = s), (..., S)
        d = np.zeros(policy.shape[:-1])
        for t in range(horizon + 1):
            d += gamma**t * mu
            # terminal mass is counted once, then dropped
            mu = np.einsum("...s,...st->...t", mu * active, P_pi)
    else:
        idx = np.flatnonzero(active)
        if gamma == 1.0:
            for one in P_pi.reshape(-1, *P_pi.shape[-2:]):
                looping = active & ~_ending_states(mdp, one)
                if looping.any() and _reaches(one, mdp.start, looping):
                    raise ValueError(
                        "with gamma = 1 and no horizon the visits are infinite: from the start "
                        "the policy can reach states it never leaves; use gamma < 1 or a horizon"
                    )
        M = P_pi[..., idx[:, None], idx]  # (..., L, L), live to live
        lhs = np.swapaxes(np.eye(len(idx)) - gamma * M, -1, -2)
        rhs = np.broadcast_to(start[idx], lhs.shape[:-1])[..., None]
        d_active = np.linalg.solve(lhs, rhs)[..., 0]  # d = e + gamma M^T d on live states
        d = np.zeros(policy.shape[:-1])
        d[..., idx] = d_active
        entering = np.einsum("...l,...ls->...s", d_active, P_pi[..., idx, :])
        d += gamma * np.where(mdp.terminal, entering, 0.0)
    return d / d.sum(-1, keepdims=True) if normalize else d


def _reaches(P_pi: np.ndarray, start: int, targets: np.ndarray) -> bool:
    seen = np.zeros(len(P_pi), dtype=bool)
    seen[start] = True
    frontier = seen.copy()
    while frontier.any():
        nxt = (P_pi[frontier] > 0).any(0) & ~seen
        seen |= nxt
        frontier = nxt
    return bool((seen & targets).any())
