"""Trajectories on a lake: routes, episodes as arrays with their hashes, padded tensors.

Sampling them from policies is ``lakelab.mlp.sampling``.

In the language of the objectives (``docs/objectives.md``, notation): the "prompt" is the start
state and each "token" is an action a_t taken in state s_t, so a trajectory of T moves is a
response of T tokens with per-token log-probs log pi(a_t | s_t).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

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


@dataclass(frozen=True, eq=False)
class Episodes:
    """M trajectories as arrays, the form training works with (no Python object per step).

    ``states``, ``actions``: int32 [M, T] (lakes have at most 4096 states), row i valid for
    its first ``lengths[i]`` positions (zeros after); ``final`` [M]: the state each last
    action led to. Iterating yields :class:`Trajectory` objects, for reading and for tests.
    """

    states: np.ndarray
    actions: np.ndarray
    lengths: np.ndarray
    final: np.ndarray
    known_hashes: np.ndarray | None = field(default=None, repr=False)  # hashes(), if known

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        for s, a, k, f in zip(self.states, self.actions, self.lengths, self.final, strict=True):
            yield Trajectory(tuple(s[:k].tolist()), tuple(a[:k].tolist()), int(f))

    @classmethod
    def from_trajectories(cls, trajs: list[Trajectory]) -> Episodes:
        lengths = np.array([len(t) for t in trajs], dtype=np.int64)
        T = int(lengths.max(initial=0))
        states = np.zeros((len(trajs), T), dtype=np.int32)
        actions = np.zeros((len(trajs), T), dtype=np.int32)
        for i, t in enumerate(trajs):
            states[i, : len(t)] = t.states
            actions[i, : len(t)] = t.actions
        final = np.array([t.final for t in trajs], dtype=np.int64)
        return cls(states, actions, lengths, final)

    def take(self, idx: np.ndarray) -> Episodes:
        """The rows ``idx``, in that order, trimmed to their longest length."""
        lengths = self.lengths[idx]
        T = int(lengths.max(initial=0))
        known = None if self.known_hashes is None else self.known_hashes[idx]
        return Episodes(
            self.states[idx, :T], self.actions[idx, :T], lengths, self.final[idx], known
        )

    @staticmethod
    def concat(parts: list[Episodes]) -> Episodes:
        lengths = np.concatenate([p.lengths for p in parts])
        M, T = len(lengths), int(lengths.max(initial=0))
        states = np.zeros((M, T), dtype=np.int32)
        actions = np.zeros((M, T), dtype=np.int32)
        i = 0
        for p in parts:
            w = min(T, p.states.shape[1])
            states[i : i + len(p), :w] = p.states[:, :w]
            actions[i : i + len(p), :w] = p.actions[:, :w]
            i += len(p)
        return Episodes(states, actions, lengths, np.concatenate([p.final for p in parts]))

    def hashes(self) -> np.ndarray:
        """A 64-bit hash of each trajectory's states and actions [M] (uint64), vectorised:
        sum_t ((s_t MIX0 + a_t) MIX1 + 1) MIX2^(t + 1) modulo 2^64.

        Equal trajectories always get equal hashes (the same token sequence to the policy,
        whatever state the last move led to), so filtering out the hashes of a set never lets
        one of its trajectories through; two different trajectories collide with probability
        about 2^-64, which would only drop one harmless sample. ``sampling.sample_many`` computes
        them while it simulates (``known_hashes``).
        """
        if self.known_hashes is not None:
            return self.known_hashes
        M, T = self.states.shape
        out = np.zeros(M, dtype=np.uint64)
        powers = hash_powers(T)
        # in blocks of columns, each over the rows still going (speed: docs/benchmarks.md)
        for c in range(0, T, _HASH_BLOCK):
            rows = np.flatnonzero(self.lengths > c) if c else np.arange(M)
            cols = slice(c, c + _HASH_BLOCK)
            valid = np.arange(c, min(T, c + _HASH_BLOCK)) < self.lengths[rows, None]
            s, a = self.states[rows, cols], self.actions[rows, cols]
            with np.errstate(over="ignore"):  # arithmetic modulo 2^64 on purpose
                token = s.astype(np.uint64) * _MIX[0] + a.astype(np.uint64)
                token = (token * _MIX[1] + np.uint64(1)) * valid  # 0 only past the end
                out[rows] += (token * powers[cols]).sum(1, dtype=np.uint64)
        return out


_HASH_BLOCK = 16  # columns per block of Episodes.hashes


_MIX = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9], dtype=np.uint64)
"""Odd 64-bit multipliers of Episodes.hashes (fractional parts of constants, as in xxHash)."""


def token_hash_terms(n_states: int, n_actions: int) -> np.ndarray:
    """Each token's (s, a) term of ``Episodes.hashes`` before its position's power: [S * A]."""
    s, a = np.divmod(np.arange(n_states * n_actions, dtype=np.uint64), np.uint64(n_actions))
    with np.errstate(over="ignore"):
        return (s * _MIX[0] + a) * _MIX[1] + np.uint64(1)


def hash_powers(T: int) -> np.ndarray:
    """MIX2^(t + 1) modulo 2^64 for t < T: position t's multiplier in ``Episodes.hashes``."""
    with np.errstate(over="ignore"):
        return np.cumprod(np.full(T, _MIX[2], dtype=np.uint64))


@dataclass(frozen=True)
class Batch:
    """Padded trajectories: ``states``, ``actions`` long [..., T], ``mask`` bool [..., T],
    True on each trajectory's first ``lengths`` positions (padding after)."""

    states: torch.Tensor
    actions: torch.Tensor
    mask: torch.Tensor

    @cached_property
    def lengths(self) -> np.ndarray:
        """Each trajectory's length [...] (numpy)."""
        return self.mask.numpy().sum(-1)

    def inputs(self, n_states: int) -> torch.Tensor:
        """One-hot input vectors [..., T, S] (padding positions are all-zero)."""
        x = torch.nn.functional.one_hot(self.states, n_states).to(torch.float64)
        return x * self.mask.unsqueeze(-1)

    def select(self, rows: np.ndarray | torch.Tensor) -> Batch:
        """Rows ``rows`` [N, B] of each of the N pools of this batch [N, P, T]: [N, B, T'],
        trimmed to the longest selected trajectory, in new arrays (the caller may fill them)."""
        rows = np.asarray(rows)  # index in numpy, not torch (speed: docs/benchmarks.md)
        seed = np.arange(rows.shape[0])[:, None]  # (N, 1)
        lengths = self.lengths[seed, rows]  # (N, B)
        T = int(lengths.max())
        states, actions = self.states.numpy()[seed, rows, :T], self.actions.numpy()[seed, rows, :T]
        mask = np.arange(T) < lengths[..., None]
        return Batch(*map(torch.from_numpy, (states, actions, mask)))


def to_batch(rows: list[Episodes | list[Trajectory]]) -> Batch:
    """N rows of trajectories (``Episodes`` or lists of ``Trajectory``) to a padded
    :class:`Batch` [N, B, T]; rows shorter than the longest are cycled to its length B."""
    eps = [r if isinstance(r, Episodes) else Episodes.from_trajectories(r) for r in rows]
    N, B = len(eps), max(map(len, eps))
    flat = Episodes.concat([e.take(np.arange(B) % len(e)) for e in eps])
    T = flat.states.shape[1]
    mask = np.arange(T) < flat.lengths[:, None]  # (N * B, T)
    return Batch(
        torch.from_numpy(flat.states).long().reshape(N, B, T),
        torch.from_numpy(flat.actions).long().reshape(N, B, T),
        torch.from_numpy(mask).reshape(N, B, T),
    )
