"""Trajectories on a lake: routes, sampling from a policy, and padded tensors.

In the language of the objectives (``objectives.md``, notation): the "prompt" is the start
state and each "token" is an action a_t taken in state s_t, so a trajectory of T moves is a
response of T tokens with per-token log-probs log pi(a_t | s_t).
"""

from __future__ import annotations

from dataclasses import dataclass

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


UNIFORM_BLOCK = 16
"""Moves' worth of uniforms a generator draws at a time while sampling (see sample_many)."""


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
        return Episodes(self.states[idx, :T], self.actions[idx, :T], lengths, self.final[idx])

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
        """A 64-bit hash of each trajectory's states and actions [M] (uint64), vectorised.

        Equal trajectories always get equal hashes (the same token sequence to the policy,
        whatever state the last move led to), so filtering out the hashes of a set never lets
        one of its trajectories through; two different trajectories collide with probability
        about 2^-64, which would only drop one harmless sample.
        """
        M, T = self.states.shape
        out = np.zeros(M, dtype=np.uint64)
        powers = np.cumprod(np.full(T, _MIX[2], dtype=np.uint64))  # wraps modulo 2^64
        # in blocks of columns, each over the rows still going: most rows are short
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


def sample(
    lake: Lake,
    policy: np.ndarray,
    n: int,
    rng: np.random.Generator,
    *,
    max_len: int,
) -> Episodes:
    """``n`` episodes from the start under ``policy`` [S, A] in the exact MDP, each cut after
    ``max_len`` moves, simulated in parallel."""
    return sample_many(lake, policy[None], n, [rng], max_len=max_len)


def sample_many(
    lake: Lake,
    policies: np.ndarray,
    n: int,
    rngs: list[np.random.Generator],
    *,
    max_len: int,
) -> Episodes:
    """``n`` episodes for each of N policies [N, S, A], all simulated in one vectorised loop:
    N * n rows, policy i's episodes in rows i * n .. (i + 1) * n - 1.

    Each policy's episodes draw their uniforms from its own generator (``rngs[i]``, in
    blocks of ``UNIFORM_BLOCK`` moves, drawn only while that policy has episodes running),
    so a seed's episodes do not depend on which other seeds are simulated alongside it.
    Finished episodes leave the loop; a move costs O(running episodes * (A + K)) with the
    successor lists (K <= 3 on a slippery lake). The last few episodes (a policy that walks
    into a wall can run until ``max_len``) finish one by one in plain Python, where a move
    costs a microsecond rather than a dozen array operations, with the same uniforms and
    comparisons: the episodes are the same either way.
    """
    N, S, A = policies.shape
    K = lake.next_states.shape[-1]
    # cdf columns as flat 1-D arrays: a draw is a few `take`s and compares per running episode
    pi_cols = _cdf(policies).reshape(N * S, A).T[:-1].copy()  # (A - 1, N * S)
    next_cols = _cdf(lake.next_probs).reshape(S * A, K).T[:-1].copy()  # (K - 1, S * A)
    next_flat = lake.next_states.reshape(-1)  # (S * A * K)
    M = N * n
    states = np.zeros((M, max_len), dtype=np.int32)  # zero-padded past each episode's end
    actions = np.zeros((M, max_len), dtype=np.int32)
    lengths = np.full(M, max_len, dtype=np.int64)  # episodes cut at max_len keep these
    final = np.zeros(M, dtype=np.int64)
    u = np.zeros((2, UNIFORM_BLOCK, M))

    def refill(who: np.ndarray) -> None:  # fresh uniforms for the policies still running
        for i in np.flatnonzero(np.bincount(who, minlength=N)):
            u[:, :, i * n : (i + 1) * n] = rngs[i].random((2, UNIFORM_BLOCK, n))

    rows = np.arange(M)  # episodes still running
    who = rows // n  # the policy each running episode follows
    s = np.full(M, lake.start)
    for t in range(max_len):
        if t % UNIFORM_BLOCK == 0:
            refill(who)
        if rows.size <= ONE_BY_ONE:
            walk = list(zip(rows.tolist(), who.tolist(), s.tolist(), strict=True))
            tables = (pi_cols.tolist(), next_cols.tolist(), next_flat.tolist(), S, A, K)
            for t2 in range(t, max_len):
                if t2 % UNIFORM_BLOCK == 0 and t2 > t and walk:
                    refill(np.array([w for _, w, _ in walk]))
                walk = _move_one_by_one(walk, t2, u, tables, lake, states, actions, lengths, final)
            final[[row for row, _, _ in walk]] = [st for _, _, st in walk]  # cut at max_len
            break
        u_act, u_slip = u[:, t % UNIFORM_BLOCK, rows]
        a = _draw(pi_cols, who * S + s, u_act)  # a ~ pi(. | s)
        sa = s * A + a
        nxt = next_flat[sa * K + _draw(next_cols, sa, u_slip)]  # s' ~ P(. | s, a)
        states[rows, t], actions[rows, t] = s, a
        done = lake.terminal[nxt]
        ended = rows[done]
        lengths[ended], final[ended] = t + 1, nxt[done]
        going = ~done
        rows, who, s = rows[going], who[going], nxt[going]
    else:
        final[rows] = s  # cut at max_len
    T = int(lengths.max(initial=0))
    return Episodes(states[:, :T], actions[:, :T], lengths, final)


ONE_BY_ONE = 8
"""sample_many moves the episodes one by one once no more than this many are running."""


def _move_one_by_one(walk, t, u, tables, lake, states, actions, lengths, final):
    """Move ``t`` of each episode (row, policy, state) in ``walk``, exactly as sample_many's
    vectorised step draws it; returns the episodes still running."""
    pi_cols, next_cols, next_flat, S, A, K = tables
    b, going = t % UNIFORM_BLOCK, []
    for row, w, s in walk:
        u_act, u_slip = float(u[0, b, row]), float(u[1, b, row])
        a = sum(col[w * S + s] < u_act for col in pi_cols)  # a ~ pi(. | s)
        sa = s * A + a
        nxt = next_flat[sa * K + sum(col[sa] < u_slip for col in next_cols)]
        states[row, t], actions[row, t] = s, a
        if lake.terminal[nxt]:
            lengths[row], final[row] = t + 1, nxt
        else:
            going.append((row, w, nxt))
    return going


def _cdf(probs: np.ndarray) -> np.ndarray:
    """Cumulative sums along the last axis, each entry that is within 1e-12 of the row's total
    set to +inf: rounding can then never draw a zero-probability slot at the end of a row
    (the price: a slot holding less than 1e-12 of the mass at the end is never drawn)."""
    cdf = probs.cumsum(-1)
    cdf[cdf >= cdf[..., -1:] - 1e-12] = np.inf
    return cdf


def _draw(cols: np.ndarray, row: np.ndarray, u: np.ndarray) -> np.ndarray:
    """One categorical draw per entry of ``row`` by inverse cdf: the number of cdf entries
    below the uniform ``u``. ``cols`` [k - 1, rows]: the first k - 1 cdf columns (the last is
    never below u), from :func:`_cdf`."""
    idx = np.zeros(len(row), dtype=np.int64)
    for col in cols:
        idx += col.take(row) < u
    return idx


@dataclass(frozen=True)
class Batch:
    """Padded trajectories: ``states``, ``actions`` long [..., T], ``mask`` bool [..., T]."""

    states: torch.Tensor
    actions: torch.Tensor
    mask: torch.Tensor

    def inputs(self, n_states: int) -> torch.Tensor:
        """One-hot input vectors [..., T, S] (padding positions are all-zero)."""
        x = torch.nn.functional.one_hot(self.states, n_states).to(torch.float64)
        return x * self.mask.unsqueeze(-1)

    def select(self, rows: np.ndarray | torch.Tensor) -> Batch:
        """Rows ``rows`` [N, B] of each of the N pools of this batch [N, P, T]: [N, B, T'],
        trimmed to the longest selected trajectory."""
        rows = np.asarray(rows)  # numpy's fancy indexing is several times cheaper than torch's
        seed = np.arange(rows.shape[0])[:, None]  # (N, 1)
        mask = self.mask.numpy()[seed, rows]  # (N, B, T)
        T = int(mask.sum(-1).max())
        states, actions = self.states.numpy()[seed, rows, :T], self.actions.numpy()[seed, rows, :T]
        return Batch(*map(torch.from_numpy, (states, actions, mask[..., :T])))


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
