"""Frozen Lake maps as exact tabular MDPs, validated at the edge.

A lake is a grid of characters: ``S`` start, ``F`` frozen, ``H`` hole, ``G`` goal (the gift).
Gymnasium's ``FrozenLake-v1`` accepts broken maps silently (a ragged map fails deep inside
numpy, a missing ``S`` starts the agent at cell 0, unknown letters count as ice, an unreachable
goal is fine). ``make_lake`` rejects all of these with a ``ValueError`` that says what is wrong
and where, then builds the transition tensor from Gymnasium's own ``env.unwrapped.P`` so the
exact solver and the real environment can never disagree.

Conventions (Gymnasium's): actions 0 Left, 1 Down, 2 Right, 3 Up; state = row * ncol + col;
``G`` and ``H`` are absorbing; reward 1 on entering ``G``, 0 otherwise. Slippery lakes move in
the intended direction with probability ``success_rate`` and to each perpendicular direction
with ``(1 - success_rate) / 2``.

References: Gymnasium FrozenLake-v1 (toy_text/frozen_lake.py); ``docs/solver.md`` (the
conventions and what is validated) and ``docs/experiment.md`` (the two-paths map).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
from gymnasium.envs.toy_text.frozen_lake import MAPS, FrozenLakeEnv

from lakelab.solver import TabularMDP
from lakelab.validate import check_real

ACTIONS = ("Left", "Down", "Right", "Up")
ACTION_ARROWS = ("←", "↓", "→", "↑")
ACTION_DELTAS = ((0, -1), (1, 0), (0, 1), (-1, 0))  # (drow, dcol) per action
CELLS = "SFHG"
MAX_SIDE = 64
"""Largest allowed number of rows or columns. The dense ``P`` of a 64x64 lake is
4096 x 4 x 4096 float64 = 0.5 GB; the solver itself uses the sparse successor lists."""

TWO_PATHS = (
    "SFFFF",
    "FHHHF",
    "FHFFF",
    "FHFHH",
    "FFFFG",
)
"""Exactly two hole-free simple routes from S to G: the optimal one (8 moves: down the left
edge, then along the bottom) and a sub-optimal one (12 moves: along the top, down the right
edge, back left through the middle and down to the bottom row); ``tests/test_lakes.py``
proves it by enumeration."""

PRESETS: dict[str, tuple[str, ...]] = {
    "4x4": tuple(MAPS["4x4"]),
    "8x8": tuple(MAPS["8x8"]),
    "two-paths": TWO_PATHS,
}

# Gymnasium's registered time limits, used by finite-horizon evaluation.
TIME_LIMITS = {"4x4": 100, "8x8": 200}


@dataclass(frozen=True, eq=False)
class Lake(TabularMDP):
    """A validated Frozen Lake map together with its exact MDP.

    Inherits the MDP arrays from :class:`lakelab.solver.TabularMDP` (sparse successor lists
    ``next_states``/``next_probs`` [S, A, K], ``R`` [S, A], ``terminal`` [S], ``goal`` [S],
    ``start``); the dense ``P`` [S, A, S'] is a property. Build lakes with :func:`make_lake`.
    """

    desc: tuple[str, ...]
    slippery: bool
    success_rate: float
    name: str | None = None

    @property
    def nrow(self) -> int:
        return len(self.desc)

    @property
    def ncol(self) -> int:
        return len(self.desc[0])

    @property
    def holes(self) -> np.ndarray:
        """Bool [S]: True on ``H`` cells."""
        return np.array([c == "H" for row in self.desc for c in row])

    def state(self, row: int, col: int) -> int:
        return row * self.ncol + col

    def coords(self, state: int) -> tuple[int, int]:
        return divmod(int(state), self.ncol)

    def time_limit(self) -> int:
        """Gymnasium's episode limit for this lake: 100 (4x4), 200 (8x8), else 2 * cells
        rounded up to a multiple of 100, so larger random lakes get a proportionate budget."""
        if self.name in TIME_LIMITS:
            return TIME_LIMITS[self.name]
        return int(np.ceil(2 * self.n_states / 100) * 100)

    def make_env(
        self, *, max_episode_steps: int | None = None, render_mode: str | None = None
    ) -> gym.Env:
        """The real Gymnasium ``FrozenLake-v1`` for this map (time limit as Gymnasium's)."""
        return gym.make(
            "FrozenLake-v1",
            desc=list(self.desc),
            is_slippery=self.slippery,
            success_rate=self.success_rate,
            max_episode_steps=max_episode_steps or self.time_limit(),
            render_mode=render_mode,
        )

    def __str__(self) -> str:
        return "\n".join(self.desc)


def make_lake(
    desc: str | Sequence[str], *, slippery: bool = False, success_rate: float = 1 / 3
) -> Lake:
    """Build a validated :class:`Lake`.

    Args:
        desc: a preset name (``"4x4"``, ``"8x8"``, ``"two-paths"``), a map written on one line
            with ``/`` between rows (``"SFFF/FHFH/FFFH/HFFG"``) or with newlines, or a sequence
            of row strings.
        slippery: Gymnasium's ``is_slippery``.
        success_rate: probability of the intended move on a slippery lake, in (0, 1].

    Raises:
        ValueError: naming the problem and where it is (row/column or character).
    """
    check_real("success_rate", success_rate, 0.0, 1.0, low_open=True)
    name, rows = _parse_desc(desc)
    validate_map(rows)
    env = FrozenLakeEnv(desc=list(rows), is_slippery=bool(slippery), success_rate=success_rate)
    next_states, next_probs, reward = _sparse_transitions(env.unwrapped.P, len(rows) * len(rows[0]))
    flat = "".join(rows)
    return Lake(
        next_states=next_states,
        next_probs=next_probs,
        R=reward,
        terminal=np.array([c in "GH" for c in flat]),
        goal=np.array([c == "G" for c in flat]),
        start=flat.index("S"),
        desc=rows,
        slippery=bool(slippery),
        success_rate=float(success_rate),
        name=name,
    )


def _parse_desc(desc: str | Sequence[str]) -> tuple[str | None, tuple[str, ...]]:
    if isinstance(desc, str):
        if desc in PRESETS:
            return desc, PRESETS[desc]
        if "/" in desc or "\n" in desc:
            return None, tuple(desc.strip().replace("\n", "/").split("/"))
        raise ValueError(
            f"unknown lake preset {desc!r}; presets are {sorted(PRESETS)}, or give the map as "
            "rows (a list of strings, or one string with '/' between rows)"
        )
    if not isinstance(desc, Sequence) or not all(isinstance(r, str) for r in desc):
        raise ValueError(f"a lake map must be a preset name or a sequence of strings, got {desc!r}")
    return None, tuple(desc)


def validate_map(rows: Sequence[str]) -> None:
    """Raise ``ValueError`` unless ``rows`` is a well-formed lake whose goal is reachable."""
    if len(rows) == 0:
        raise ValueError("the lake map has no rows")
    for i, row in enumerate(rows):
        if len(row) == 0:
            raise ValueError(f"row {i} of the lake map is empty")
        if len(row) != len(rows[0]):
            raise ValueError(
                f"ragged lake map: row {i} has {len(row)} cells but row 0 has {len(rows[0])}"
            )
    nrow, ncol = len(rows), len(rows[0])
    if nrow > MAX_SIDE or ncol > MAX_SIDE:
        raise ValueError(
            f"lake of {nrow}x{ncol} cells is too large: at most {MAX_SIDE} rows and "
            f"{MAX_SIDE} columns are allowed"
        )
    for i, row in enumerate(rows):
        for j, c in enumerate(row):
            if c not in CELLS:
                raise ValueError(
                    f"unknown character {c!r} at row {i}, column {j}; allowed: "
                    "S (start), F (frozen), H (hole), G (goal)"
                )
    starts = [(i, j) for i, row in enumerate(rows) for j, c in enumerate(row) if c == "S"]
    if not starts:
        raise ValueError("the lake map has no start cell 'S'; exactly one is required")
    if len(starts) > 1:
        raise ValueError(
            f"the lake map has {len(starts)} start cells 'S' at (row, column) {starts}; "
            "exactly one is allowed"
        )
    if not any("G" in row for row in rows):
        raise ValueError("the lake map has no goal cell 'G'; at least one is required")
    if not _goal_reachable(rows, starts[0]):
        raise ValueError(
            f"no goal 'G' can be reached from the start at (row, column) {starts[0]}: "
            "every route is blocked by holes 'H'"
        )


def _goal_reachable(rows: Sequence[str], start: tuple[int, int]) -> bool:
    """Breadth-first search over non-hole cells (holes and goals end an episode)."""
    nrow, ncol = len(rows), len(rows[0])
    seen, queue = {start}, deque([start])
    while queue:
        r, c = queue.popleft()
        if rows[r][c] == "G":
            return True
        for dr, dc in ACTION_DELTAS:
            nr, nc = r + dr, c + dc
            if 0 <= nr < nrow and 0 <= nc < ncol and (nr, nc) not in seen and rows[nr][nc] != "H":
                seen.add((nr, nc))
                queue.append((nr, nc))
    return False


def _sparse_transitions(gym_P: dict, n_states: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gymnasium's ``P[s][a] = [(prob, next_state, reward, terminated), ...]`` as padded
    successor lists [S, A, K] with duplicate next states summed, and expected reward [S, A]."""
    n_actions = len(ACTIONS)
    merged: list[list[dict[int, float]]] = []
    reward = np.zeros((n_states, n_actions))
    for s in range(n_states):
        merged.append([])
        for a in range(n_actions):
            probs: dict[int, float] = {}
            for prob, s_next, r, _terminated in gym_P[s][a]:
                probs[s_next] = probs.get(s_next, 0.0) + prob
                reward[s, a] += prob * r
            merged[s].append(probs)
    k = max(len(p) for row in merged for p in row)
    next_states = np.zeros((n_states, n_actions, k), dtype=np.int64)
    next_probs = np.zeros((n_states, n_actions, k))
    for s in range(n_states):
        for a in range(n_actions):
            for slot, (s_next, prob) in enumerate(sorted(merged[s][a].items())):
                next_states[s, a, slot] = s_next
                next_probs[s, a, slot] = prob
            # padding slots point at s itself with probability 0
            next_states[s, a, len(merged[s][a]) :] = s
    return next_states, next_probs, reward


def random_lake(
    size: int | tuple[int, int] = 4,
    *,
    p_frozen: float = 0.8,
    seed: int | np.random.Generator | None = None,
    max_tries: int = 1000,
    slippery: bool = False,
    success_rate: float = 1 / 3,
) -> Lake:
    """A seeded random lake with S top-left, G bottom-right and a reachable goal.

    Each other cell is frozen with probability ``p_frozen`` (else a hole); maps whose goal
    is unreachable are redrawn, at most ``max_tries`` times (Gymnasium's own generator loops
    forever when ``p_frozen`` is near 0 or the size is 1). ``random_map`` draws the map
    alone, from the same random numbers.
    """
    rows = random_map(size, p_frozen=p_frozen, seed=seed, max_tries=max_tries)
    return make_lake(rows, slippery=slippery, success_rate=success_rate)


def random_map(
    size: int | tuple[int, int] = 4,
    *,
    p_frozen: float = 0.8,
    seed: int | np.random.Generator | None = None,
    max_tries: int = 1000,
) -> tuple[str, ...]:
    """The rows of ``random_lake``'s map, without building the lake (a map is cheap to draw
    and check; a ``Lake`` builds Gymnasium's env and its transition table)."""
    nrow, ncol = (size, size) if isinstance(size, int) else tuple(size)
    if not all(isinstance(n, int | np.integer) and 1 <= n <= MAX_SIDE for n in (nrow, ncol)):
        raise ValueError(f"size must be 1..{MAX_SIDE} rows and columns, got {size!r}")
    if nrow * ncol < 2:
        raise ValueError(f"size {size!r} leaves no room for both a start and a goal cell")
    check_real("p_frozen", p_frozen, 0.0, 1.0, low_open=True)
    if max_tries < 1:
        raise ValueError(f"max_tries must be >= 1, got {max_tries}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    for _ in range(max_tries):
        grid = np.where(rng.random((nrow, ncol)) < p_frozen, "F", "H")
        grid[0, 0], grid[-1, -1] = "S", "G"
        rows = tuple("".join(r) for r in grid)
        if _goal_reachable(rows, (0, 0)):
            return rows
    raise ValueError(
        f"no {nrow}x{ncol} lake with a reachable goal found in {max_tries} tries at "
        f"p_frozen={p_frozen}; raise p_frozen or max_tries"
    )
