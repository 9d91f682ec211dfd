"""Trajectories on a lake: routes, sampling from a policy, and padded tensors.

In the language of the objectives (``objectives.md``, notation): the "prompt" is the start
state and each "token" is an action a_t taken in state s_t, so a trajectory of T moves is a
response of T tokens with per-token log-probs log pi(a_t | s_t).
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field, replace
from functools import cached_property, lru_cache

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
        about 2^-64, which would only drop one harmless sample. ``sample_many`` computes them
        while it simulates (``known_hashes``).
        """
        if self.known_hashes is not None:
            return self.known_hashes
        M, T = self.states.shape
        out = np.zeros(M, dtype=np.uint64)
        powers = _hash_powers(T)
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
    N * n rows, policy i's episodes in rows i * n .. (i + 1) * n - 1, with their hashes
    (``Episodes.hashes``) computed along the way.

    Each policy's episodes draw their uniforms from its own generator (``rngs[i]``, in
    blocks of ``UNIFORM_BLOCK`` moves, drawn only while that policy has episodes running),
    so a seed's episodes do not depend on which other seeds are simulated alongside it.
    Finished episodes leave the loop; a move costs O(running episodes * (A + K)) with the
    successor lists (K <= 3 on a slippery lake). An episode is tracked by one integer, its
    "code" i * S + s (policy i in state s), which indexes every per-policy table directly.
    The last few episodes (a policy that walks into a wall can run until ``max_len``) finish
    one by one in plain Python (``_finish_one_by_one``), where a move costs a microsecond
    rather than a dozen array operations, with the same uniforms and comparisons: the
    episodes are the same either way (tested).
    """
    N, S, A = policies.shape
    K = lake.next_states.shape[-1]
    pi_cols = _cdf(policies).reshape(N * S, A).T[:-1].copy()  # code -> cdf columns of pi
    tables = replace(_lake_tables(lake, N, max_len), pi_cols=pi_cols)
    M = N * n
    states = np.zeros((max_len, M), dtype=np.int32)  # time-major while sampling, 0 past the end
    actions = np.zeros((max_len, M), dtype=np.int32)
    lengths = np.full(M, max_len, dtype=np.int64)  # episodes cut at max_len keep these
    final = np.zeros(M, dtype=np.int64)  # codes until the end
    hashes = np.zeros(M, dtype=np.uint64)
    u = np.zeros((2, UNIFORM_BLOCK, M))

    def refill(codes: np.ndarray) -> None:  # fresh uniforms for the policies still running
        for i in np.flatnonzero(np.bincount(codes // S, minlength=N)):
            _uniforms(rngs[i], u[:, :, i * n : (i + 1) * n], slips=K > 1)

    out = (states, actions, lengths, final, hashes)
    rows = np.arange(M)  # episodes still running
    code = np.repeat(np.arange(N) * S + lake.start, n)
    for t in range(max_len):
        b = t % UNIFORM_BLOCK
        if b == 0:
            refill(code)
        if rows.size <= ONE_BY_ONE:
            _finish_one_by_one(rows, code, t, max_len, u, refill, tables, out)
            break
        a = _draw(tables.pi_cols, code, u[0, b].take(rows))  # a ~ pi(. | s)
        sa = code * A + a
        with np.errstate(over="ignore"):  # hash arithmetic is modulo 2^64 on purpose
            hashes[rows] += tables.token.take(sa) * tables.powers[t]
        if K > 1:  # s' ~ P(. | s, a)
            sa = sa * K + _draw(tables.next_cols, sa, u[1, b].take(rows))
        nxt = tables.next_code.take(sa)
        states[t, rows], actions[t, rows] = tables.state.take(code), a
        done = tables.ends.take(nxt)
        if done.any():
            ended = rows[done]
            lengths[ended], final[ended] = t + 1, nxt[done]
            going = ~done
            rows, code = rows[going], nxt[going]
        else:
            code = nxt
    else:
        final[rows] = code  # cut at max_len
    T = int(lengths.max(initial=0))
    # row-major views of the time-major arrays: no copy (most rows are only hashed)
    return Episodes(states[:T].T, actions[:T].T, lengths, tables.state[final], hashes)


ONE_BY_ONE = 8
"""sample_many moves the episodes one by one once no more than this many are running."""


@lru_cache(maxsize=8)
def _lake_tables(lake: Lake, N: int, max_len: int) -> _Tables:
    """sample_many's tables that depend on the lake only (a run samples for the same lake and
    rows every step), read-only; ``pi_cols`` is left empty."""
    S, A, K = lake.next_states.shape
    tables = _Tables(
        pi_cols=np.empty((0, 0)),
        next_cols=np.tile(_cdf(lake.next_probs).reshape(S * A, K).T[:-1], N),  # code * A + a
        next_code=(np.arange(N)[:, None] * S + lake.next_states.reshape(1, -1)).ravel(),
        ends=np.tile(lake.terminal, N),  # code -> is s terminal
        state=np.tile(np.arange(S), N),  # code -> s
        token=np.tile(_token_hashes(S, A), N),  # code * A + a -> the token's hash
        powers=_hash_powers(max_len),
        A=A,
        K=K,
    )
    for array in (tables.next_cols, tables.next_code, tables.ends, tables.state, tables.token):
        array.flags.writeable = False
    tables.powers.flags.writeable = False
    return tables


@dataclass(frozen=True)
class _Tables:
    """sample_many's lookup tables, indexed by code i * S + s or code * A + a."""

    pi_cols: np.ndarray
    next_cols: np.ndarray
    next_code: np.ndarray
    ends: np.ndarray
    state: np.ndarray
    token: np.ndarray
    powers: np.ndarray
    A: int
    K: int


def _finish_one_by_one(rows, code, t, max_len, u, refill, tables, out) -> None:
    """Moves ``t`` .. ``max_len - 1`` of the episodes ``rows`` (now at ``code``), each drawn
    exactly as sample_many's vectorised step draws it, in plain Python: per block of
    uniforms, each episode runs until it ends or the block does (episodes are independent
    given their uniforms), then the policies still running draw the next block."""
    states, actions, lengths, final, hashes = out
    # each code's cdf as a sorted list (the number of entries below u is bisect_left's index),
    # converted when first visited: the tail visits a handful of the N * S codes
    pi_rows, next_rows = _RowLists(tables.pi_cols.T), _RowLists(tables.next_cols.T)
    next_code, ends, state = tables.next_code.item, tables.ends.item, tables.state.item
    token, powers = tables.token.item, tables.powers.item
    A, K, mask = tables.A, tables.K, (1 << 64) - 1
    walk = list(zip(rows.tolist(), code.tolist(), hashes[rows].tolist(), strict=True))
    moves: list[tuple[int, int, int, int]] = []  # (t, row, s, a)
    while walk and t < max_len:
        if t % UNIFORM_BLOCK == 0 and moves:  # a block boundary after the first move
            refill(np.array([c for _, c, _ in walk]))
        stop = min(max_len, (t // UNIFORM_BLOCK + 1) * UNIFORM_BLOCK)
        going = []
        for row, c, h in walk:
            u_act = u[0, t % UNIFORM_BLOCK : stop - t + t % UNIFORM_BLOCK, row].tolist()
            u_slip = u[1, t % UNIFORM_BLOCK : stop - t + t % UNIFORM_BLOCK, row].tolist()
            for k in range(stop - t):
                a = bisect_left(pi_rows[c], u_act[k])  # a ~ pi(. | s)
                sa = c * A + a
                h = (h + token(sa) * powers(t + k)) & mask
                if K > 1:
                    sa = sa * K + bisect_left(next_rows[sa], u_slip[k])
                moves.append((t + k, row, state(c), a))
                c = next_code(sa)
                if ends(c):
                    lengths[row] = t + k + 1
                    break
            else:
                going.append((row, c, h))
            final[row], hashes[row] = c, h  # c: where it ended, or stands at the cut
        walk, t = going, stop
    if moves:
        at_t, at_row, s, a = (list(x) for x in zip(*moves, strict=True))
        states[at_t, at_row], actions[at_t, at_row] = s, a


def _uniforms(rng: np.random.Generator, out: np.ndarray, *, slips: bool) -> None:
    """Fill ``out`` [2, block, n] (action uniforms, then slip uniforms) with
    ``rng.random(out.shape)``. Without slips (deterministic moves) the slip half is never
    read: a PCG64 generator then skips its draws (``advance``, one 64-bit output per double),
    leaving the generator where drawing them would (tested) at half the cost."""
    bits = rng.bit_generator
    if slips or not isinstance(bits, np.random.PCG64 | np.random.PCG64DXSM):
        out[...] = rng.random(out.shape)
    else:
        out[0] = rng.random(out.shape[1:])
        bits.advance(out[1].size)


class _RowLists(dict):
    """Rows of a 2-D array as Python lists, each converted on first access."""

    def __init__(self, array: np.ndarray) -> None:
        super().__init__()
        self.array = array

    def __missing__(self, i: int) -> list:
        self[i] = row = self.array[i].tolist()
        return row


def _token_hashes(n_states: int, n_actions: int) -> np.ndarray:
    """Each token's (s, a) term of ``Episodes.hashes`` before its position's power: [S * A]."""
    s, a = np.divmod(np.arange(n_states * n_actions, dtype=np.uint64), np.uint64(n_actions))
    with np.errstate(over="ignore"):
        return (s * _MIX[0] + a) * _MIX[1] + np.uint64(1)


def _hash_powers(T: int) -> np.ndarray:
    """MIX2^(t + 1) modulo 2^64 for t < T: position t's multiplier in ``Episodes.hashes``."""
    with np.errstate(over="ignore"):
        return np.cumprod(np.full(T, _MIX[2], dtype=np.uint64))


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
        trimmed to the longest selected trajectory."""
        rows = np.asarray(rows)  # numpy's fancy indexing is several times cheaper than torch's
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
