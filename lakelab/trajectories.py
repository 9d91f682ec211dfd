"""Trajectories on a lake: routes, sampling from a policy, and padded tensors.

In the language of the objectives (``objectives.md``, notation): the "prompt" is the start
state and each "token" is an action a_t taken in state s_t, so a trajectory of T moves is a
response of T tokens with per-token log-probs log pi(a_t | s_t).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain

import numpy as np
import torch

from lakelab.lakes import ACTION_DELTAS, Lake


@dataclass(frozen=True)
class Trajectory:
    """States s_0..s_{T-1} with the actions a_0..a_{T-1} taken in them, and the state the
    last action led to (``final``)."""

    states: tuple[int, ...]
    actions: tuple[int, ...]
    final: int

    def __len__(self) -> int:
        return len(self.actions)

    def key(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        return self.states, self.actions


def routes(lake: Lake, *, max_routes: int = 10_000) -> list[Trajectory]:
    """Every simple hole-free route from S to a goal with intended (non-slipping) moves,
    shortest first. Raises ``ValueError`` past ``max_routes`` (large open lakes have
    astronomically many)."""
    found: list[Trajectory] = []
    stack = [((lake.start,), ())]
    while stack:
        states, actions = stack.pop()
        r, c = lake.coords(states[-1])
        for a, (dr, dc) in enumerate(ACTION_DELTAS):
            nr, nc = r + dr, c + dc
            if not (0 <= nr < lake.nrow and 0 <= nc < lake.ncol) or lake.desc[nr][nc] == "H":
                continue
            n = lake.state(nr, nc)
            if n in states:
                continue
            if lake.goal[n]:
                found.append(Trajectory(states, (*actions, a), n))
                if len(found) > max_routes:
                    raise ValueError(
                        f"lake has more than {max_routes} simple routes; use a smaller lake "
                        "or sampled negatives"
                    )
            else:
                stack.append(((*states, n), (*actions, a)))
    return sorted(found, key=lambda t: (len(t), t.actions))


def optimal_and_suboptimal_routes(lake: Lake) -> tuple[Trajectory, Trajectory]:
    """The shortest route and the shortest strictly longer one (the IFT paper's "one optimal
    and one sub-optimal trajectory")."""
    all_routes = routes(lake)
    best = all_routes[0]
    longer = [t for t in all_routes if len(t) > len(best)]
    if not longer:
        raise ValueError(
            "this lake has no sub-optimal route (every simple route is shortest); "
            "use sampled negatives ('initial' or 'online') instead"
        )
    return best, longer[0]


def sample(
    lake: Lake,
    policy: np.ndarray,
    n: int,
    rng: np.random.Generator,
    *,
    max_len: int,
) -> list[Trajectory]:
    """``n`` episodes from the start under ``policy`` [S, A] in the exact MDP, each cut after
    ``max_len`` moves, simulated in parallel."""
    return sample_many(lake, policy[None], n, [rng], max_len=max_len)[0]


def sample_many(
    lake: Lake,
    policies: np.ndarray,
    n: int,
    rngs: list[np.random.Generator],
    *,
    max_len: int,
) -> list[list[Trajectory]]:
    """``n`` episodes for each of N policies [N, S, A], all simulated in one vectorised loop.

    Each policy's episodes draw their uniforms from its own generator (``rngs[i]``), so a
    seed's episodes do not depend on which other seeds are simulated alongside it.
    """
    N = policies.shape[0]
    u = np.concatenate([r.random((n, max_len, 2)) for r in rngs])  # (N * n, max_len, 2)
    row_policy = np.repeat(np.arange(N), n)
    P = lake.P
    states = np.full(N * n, lake.start)
    alive = np.ones(N * n, dtype=bool)
    hist_s, hist_a = [], []
    for t in range(max_len):
        a = _inverse_cdf(policies[row_policy, states], u[:, t, 0])
        nxt = _inverse_cdf(P[states, a], u[:, t, 1])
        hist_s.append(np.where(alive, states, -1))
        hist_a.append(a)
        states = np.where(alive, nxt, states)
        alive &= ~lake.terminal[states]
        if not alive.any():
            break
    S, A = np.stack(hist_s, 1), np.stack(hist_a, 1)
    lengths = (S >= 0).sum(1)
    out: list[list[Trajectory]] = [[] for _ in range(N)]
    for i in range(N * n):
        k = int(lengths[i])
        out[i // n].append(
            Trajectory(tuple(S[i, :k].tolist()), tuple(A[i, :k].tolist()), int(states[i]))
        )
    return out


def _inverse_cdf(probs: np.ndarray, u: np.ndarray) -> np.ndarray:
    """One categorical draw per row of ``probs`` [n, k] given uniforms ``u`` [n]."""
    idx = (probs.cumsum(-1) < u[:, None]).sum(-1)
    return np.minimum(idx, probs.shape[1] - 1)


@dataclass(frozen=True)
class Batch:
    """Padded trajectories: ``states``, ``actions`` long [..., T], ``mask`` float [..., T]."""

    states: torch.Tensor
    actions: torch.Tensor
    mask: torch.Tensor

    def inputs(self, n_states: int) -> torch.Tensor:
        """One-hot input vectors [..., T, S] (padding positions are all-zero)."""
        x = torch.nn.functional.one_hot(self.states, n_states).to(torch.float64)
        return x * self.mask.unsqueeze(-1)


def to_batch(trajs: list[list[Trajectory]], length: int | None = None) -> Batch:
    """Nested lists [N][B] of trajectories to a padded :class:`Batch` [N, B, T]."""
    N, B = len(trajs), len(trajs[0])
    flat = [t for row in trajs for t in row]
    lengths = np.array([len(t) for t in flat])
    T = length or int(lengths.max())
    mask = np.arange(T) < lengths[:, None]  # (N * B, T), row-major fill below matches it
    total = int(lengths.sum())
    states = np.zeros((N * B, T), dtype=np.int64)
    actions = np.zeros((N * B, T), dtype=np.int64)
    states[mask] = np.fromiter(chain.from_iterable(t.states for t in flat), np.int64, total)
    actions[mask] = np.fromiter(chain.from_iterable(t.actions for t in flat), np.int64, total)
    return Batch(
        torch.from_numpy(states).reshape(N, B, T),
        torch.from_numpy(actions).reshape(N, B, T),
        torch.from_numpy(mask.astype(np.float64)).reshape(N, B, T),
    )
