"""Sampling episodes from policies in the exact MDP.

``sample_plain`` is the reference: one episode and one move at a time, a few lines a
student reads top to bottom. ``sample`` / ``sample_many`` are its fast path: many policies at
once, a vectorised loop over the running episodes, the trajectories' hashes computed along
the way (``docs/benchmarks.md`` says why each trick pays). Both read each generator's
uniforms in the same order and draw with the same rule, so they return the same episodes
(tested), and every policy draws from its own generator, so a seed's episodes never depend
on the others.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, replace
from weakref import WeakKeyDictionary

import numpy as np

from lakelab.lakes import Lake
from lakelab.mlp.data import Episodes, Trajectory, hash_powers, token_hash_terms

UNIFORM_BLOCK = 16
"""Moves' worth of uniforms a generator draws at a time while sampling (see sample_many)."""


def sample_plain(
    lake: Lake, policy: np.ndarray, n: int, rng: np.random.Generator, *, max_len: int
) -> list[Trajectory]:
    """``n`` episodes from the start under ``policy`` [S, A], each cut after ``max_len``
    moves, simulated one move at a time.

    Randomness: before every block of ``UNIFORM_BLOCK`` moves in which some episode is still
    running, one array ``u = rng.random((2, UNIFORM_BLOCK, n))``; episode i's move t draws
    its action with ``u[0, t % UNIFORM_BLOCK, i]`` and, on a slippery lake, where it slides
    with ``u[1, t % UNIFORM_BLOCK, i]``. A draw is the inverse cdf: the number of cumulative
    probabilities below the uniform (``_cdf``).
    """
    action_cdf = _cdf(policy)  # (S, A)
    slide_cdf = _cdf(lake.next_probs)  # (S, A, K): K possible successors of (s, a)
    states: list[list[int]] = [[] for _ in range(n)]
    actions: list[list[int]] = [[] for _ in range(n)]
    where = [lake.start] * n  # each episode's current state
    running = list(range(n))
    for t in range(max_len):
        if not running:
            break
        if t % UNIFORM_BLOCK == 0:
            u = rng.random((2, UNIFORM_BLOCK, n))
        for i in list(running):
            s = where[i]
            a = int((action_cdf[s] < u[0, t % UNIFORM_BLOCK, i]).sum())  # a ~ pi(. | s)
            k = int((slide_cdf[s, a] < u[1, t % UNIFORM_BLOCK, i]).sum())  # s' ~ P(. | s, a)
            states[i].append(s)
            actions[i].append(a)
            where[i] = int(lake.next_states[s, a, k])
            if lake.terminal[where[i]]:
                running.remove(i)
    return [Trajectory(tuple(states[i]), tuple(actions[i]), where[i]) for i in range(n)]


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
    Finished episodes leave the loop; a move draws its successor from the successor lists
    (K <= 3 on a slippery lake). An episode is tracked by one integer, its "code" i * S + s
    (policy i in state s), which indexes every per-policy table directly.
    The last few episodes (a policy that walks into a wall can run until ``max_len``) finish
    one by one in plain Python (``_finish_one_by_one``), with the same uniforms and
    comparisons: the episodes are the same either way (tested). Speed: docs/benchmarks.md;
    the plain version is ``sample_plain``.
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
    hashes.flags.writeable = False  # Episodes.hashes() hands this array out
    return Episodes(states[:T].T, actions[:T].T, lengths, tables.state[final], hashes)


ONE_BY_ONE = 8
"""sample_many moves the episodes one by one once no more than this many are running."""


_TABLES: WeakKeyDictionary[Lake, dict[tuple[int, int], _Tables]] = WeakKeyDictionary()


def _lake_tables(lake: Lake, N: int, max_len: int) -> _Tables:
    """sample_many's tables that do not depend on the policies, for N policies and episodes
    of at most ``max_len`` moves: built once per lake and shape (speed: docs/benchmarks.md),
    read-only, kept while the lake lives; ``pi_cols`` is empty."""
    per_shape = _TABLES.setdefault(lake, {})
    if (N, max_len) not in per_shape:
        per_shape[N, max_len] = _build_lake_tables(lake, N, max_len)
    return per_shape[N, max_len]


def _build_lake_tables(lake: Lake, N: int, max_len: int) -> _Tables:
    S, A, K = lake.next_states.shape
    tables = _Tables(
        pi_cols=np.empty((0, 0)),
        next_cols=np.tile(_cdf(lake.next_probs).reshape(S * A, K).T[:-1], N),  # code * A + a
        next_code=(np.arange(N)[:, None] * S + lake.next_states.reshape(1, -1)).ravel(),
        ends=np.tile(lake.terminal, N),  # code -> is s terminal
        state=np.tile(np.arange(S), N),  # code -> s
        token=np.tile(token_hash_terms(S, A), N),  # code * A + a -> the token's hash
        powers=hash_powers(max_len),
        A=A,
        K=K,
    )
    for array in (tables.next_cols, tables.next_code, tables.ends, tables.state, tables.token):
        array.flags.writeable = False
    tables.powers.flags.writeable = False
    return tables


@dataclass(frozen=True)
class _Tables:
    """sample_many's lookup tables: ``pi_cols``, ``ends`` and ``state`` indexed by code
    i * S + s; ``token`` and ``next_cols`` by code * A + a; ``next_code`` by
    (code * A + a) * K + k, k the successor drawn; ``powers`` by move."""

    pi_cols: np.ndarray
    next_cols: np.ndarray
    next_code: np.ndarray
    ends: np.ndarray
    state: np.ndarray
    token: np.ndarray
    powers: np.ndarray
    A: int
    K: int


def _finish_one_by_one(
    rows: np.ndarray,
    code: np.ndarray,
    t: int,
    max_len: int,
    u: np.ndarray,
    refill: Callable[[np.ndarray], None],
    tables: _Tables,
    out: tuple[np.ndarray, ...],
) -> None:
    """Moves ``t`` .. ``max_len - 1`` of the episodes ``rows`` (now at ``code``), each drawn
    exactly as sample_many's vectorised step draws it, in plain Python: per block of
    uniforms, each episode runs until it ends or the block does (episodes are independent
    given their uniforms), then the policies still running draw the next block. ``out``:
    sample_many's (states, actions, lengths, final, hashes), written in place."""
    states, actions, lengths, final, hashes = out
    # each code's cdf as a sorted list (the number of entries below u is bisect_left's index),
    # converted when first visited (speed: docs/benchmarks.md)
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
    leaving the generator where drawing them would (tested; speed: docs/benchmarks.md). Not
    when it holds a spare 32-bit half-output (left by e.g. ``integers`` with a small range),
    which ``advance`` would drop and ``random`` keeps."""
    bits = rng.bit_generator
    skip = (
        not slips
        and isinstance(bits, np.random.PCG64 | np.random.PCG64DXSM)
        and not bits.state["has_uint32"]
    )
    if skip:
        out[0] = rng.random(out.shape[1:])
        bits.advance(out[1].size)
    else:
        out[...] = rng.random(out.shape)


class _RowLists(dict):
    """Rows of a 2-D array as Python lists, each converted on first access."""

    def __init__(self, array: np.ndarray) -> None:
        super().__init__()
        self.array = array

    def __missing__(self, i: int) -> list:
        self[i] = row = self.array[i].tolist()
        return row


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
