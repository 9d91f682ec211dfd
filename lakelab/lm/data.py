"""Lakes, plans and token tensors for the LM track, with the exact solver as ground truth.

Lakes are deterministic (not slippery): a plan, a fixed string of moves, then either reaches
the goal or it does not, and the real Gymnasium environment can check it. For every lake the
solver gives

- the hard optimum (``value_iteration``, gamma < 1 so that bumping into a wall is never
  optimal): the shortest plans, one of which (ties split at random) is the *chosen* response;
- the soft optimum pi*(a | s) (``soft_value_iteration``): the target of the token KL.

Plans of the base-model corpus ("pre-training" data) are mixed in quality:

    optimal   a shortest plan
    avoiding  a random walk that never steps into a hole (nor bumps a wall): long detours,
              cut after ``max_moves`` moves if the goal is not reached by then
    random    a uniformly random walk: often ends in a hole

A *rejected* response (offline) is an avoiding or random walk that is not optimal.

Token layout of one sample (``P`` = prompt length, the same for every lake of a size):

    tokens   S F F F / ... G > R R D D .  _ _
    inputs   tokens[:-1]          position t sees tokens[0..t]
    targets  tokens[1:]           response targets: positions P-1 .. P-1+n (n moves + end)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
import torch

from lakelab.lakes import Lake, make_lake
from lakelab.lm.tokenizer import (
    ACTION_IDS,
    END_ID,
    PAD_ID,
    VOCAB,
    encode,
    plan_text,
    prompt_text,
)
from lakelab.solver import soft_value_iteration, value_iteration

if TYPE_CHECKING:
    from lakelab.lm.config import LMConfig

PLAN_KINDS = ("optimal", "avoiding", "random")
# streams of the generators: np.random.default_rng([seed, STREAM]) (lake_seed for held-out)
CORPUS, CHOSEN, REJECTED, HELD_OUT_REJECTED = 1, 2, 3, 4
MAX_REJECT_TRIES = 8  # draws of a non-optimal walk before the fallback (optimal minus last move)


@lru_cache(maxsize=4)
def lake_split(
    size: int, p_frozen: float, n_train: int, n_test: int, seed: int
) -> tuple[tuple[Lake, ...], tuple[Lake, ...]]:
    """``n_train`` and ``n_test`` distinct seeded random lakes (``lakelab.lakes.random_map``'s
    maps, drawn by ``distinct_maps``);
    no map is in both sets. Cached: the experiment, tests and benchmark share the work."""
    if size < 2:
        raise ValueError(f"size must be at least 2 (a start and a goal cell), got {size}")
    need = n_train + n_test
    maps = distinct_maps(size, p_frozen, need, np.random.default_rng(seed), draws=50 * need)
    if len(maps) == need:  # only now build the lakes: most draws repeat a map
        lakes = [make_lake(rows) for rows in maps]
        return tuple(lakes[:n_train]), tuple(lakes[n_train:])
    raise ValueError(
        f"found only {len(maps)} distinct {size}x{size} lakes at p_frozen={p_frozen} in "
        f"{50 * need} draws, fewer than n_train + n_test = {need}; lower them or raise size"
    )


MAP_BLOCK = 4096  # grids drawn at once by distinct_maps


def distinct_maps(
    size: int, p_frozen: float, need: int, rng: np.random.Generator, *, draws: int
) -> list[tuple[str, ...]]:
    """The first ``need`` distinct maps of the sequence ``lakes.random_map(size, p_frozen,
    seed=rng)`` would return call after call, looking at no more than ``draws`` maps (fewer
    if it runs out). Grids are drawn in blocks from the same random numbers (one uniform per
    cell, row by row) and the goal's reachability is a flood fill over the whole block, so
    the maps are random_map's, in its order (tested), at a fraction of its cost."""
    seen: dict[bytes, tuple[str, ...]] = {}
    accepted = 0
    while accepted < draws and len(seen) < need:
        frozen = rng.random((MAP_BLOCK, size, size)) < p_frozen  # (K, n, n)
        frozen[:, 0, 0] = frozen[:, -1, -1] = True  # S and G
        for grid in frozen[_goal_reachable(frozen)]:
            accepted += 1
            key = grid.tobytes()
            if key not in seen:
                rows = ["".join("F" if f else "H" for f in row) for row in grid]
                rows[0], rows[-1] = "S" + rows[0][1:], rows[-1][:-1] + "G"
                seen[key] = tuple(rows)
            if len(seen) == need or accepted == draws:
                break
    return list(seen.values())


def _goal_reachable(frozen: np.ndarray) -> np.ndarray:
    """Whether the bottom-right cell can be reached from the top-left one through frozen
    cells, for every grid of ``frozen`` [K, n, m] at once (a flood fill): [K] bool."""
    reach = np.zeros_like(frozen)
    reach[:, 0, 0] = True
    while True:
        grown = reach.copy()
        grown[:, 1:] |= reach[:, :-1]
        grown[:, :-1] |= reach[:, 1:]
        grown[:, :, 1:] |= reach[:, :, :-1]
        grown[:, :, :-1] |= reach[:, :, 1:]
        grown &= frozen
        if (grown == reach).all():
            return reach[:, -1, -1]
        reach = grown


@dataclass(frozen=True)
class LakeTask:
    """One lake with its exact ground truth."""

    lake: Lake
    optimal_moves: np.ndarray
    """Bool [S, A]: actions on some shortest route to the goal (ties included)."""
    shortest: int
    """Moves of a shortest plan."""

    def step(self, state: int, action: int) -> int:
        """The deterministic successor (the lake is not slippery: one successor)."""
        return int(self.lake.next_states[state, action, 0])

    def run(self, plan: list[int]) -> tuple[bool, int]:
        """(reached the goal, moves made) when following ``plan`` in the exact MDP; moves
        after a hole or the goal are not made."""
        s = self.lake.start
        for k, a in enumerate(plan):
            s = self.step(s, a)
            if self.lake.terminal[s]:
                return bool(self.lake.goal[s]), k + 1
        return False, len(plan)

    def is_optimal(self, plan: list[int]) -> bool:
        reached, moves = self.run(plan)
        return reached and moves == len(plan) == self.shortest


def make_task(lake: Lake, gamma: float) -> LakeTask:
    """The ground truth of a deterministic lake: value iteration with ``gamma`` < 1 marks the
    optimal moves (ties kept), and every shortest plan has the canonical plan's length."""
    if lake.slippery or not (lake.next_probs[..., 0] == 1).all():
        raise ValueError("the LM track needs deterministic (non-slippery) lakes")
    sol = value_iteration(lake, gamma=gamma)
    optimal = sol.policy > 0
    task = LakeTask(lake, optimal, shortest=0)
    return dataclasses.replace(task, shortest=len(optimal_plan(task, None)))


def optimal_plan(task: LakeTask, rng: np.random.Generator | None) -> list[int]:
    """A shortest plan; at ties the rng picks a move uniformly (``None``: the lowest action,
    the canonical plan of the held-out metrics)."""
    s, plan = task.lake.start, []
    while not task.lake.terminal[s]:
        moves = np.flatnonzero(task.optimal_moves[s])
        a = int(moves[0] if rng is None else moves[rng.integers(len(moves))])  # = rng.choice
        plan.append(a)
        s = task.step(s, a)
        if len(plan) > task.lake.n_states:
            raise RuntimeError("the optimal policy loops: is gamma < 1?")
    return plan


def walk(task: LakeTask, rng: np.random.Generator, max_moves: int, *, avoid: bool) -> list[int]:
    """A random walk from the start until a hole or the goal, cut after ``max_moves`` moves;
    ``avoid=True`` only takes moves to another cell that is not a hole."""
    lake, s, plan = task.lake, task.lake.start, []
    holes = lake.holes  # a property that builds the array: once per walk
    while not lake.terminal[s] and len(plan) < max_moves:
        after = [task.step(s, a) for a in range(lake.n_actions)]  # successor of each move
        moves = [a for a, t in enumerate(after) if not avoid or (t != s and not holes[t])]
        a = moves[rng.integers(len(moves))]  # uniform: rng.choice(moves), draw for draw
        plan.append(a)
        s = after[a]
    return plan


def corpus_plan(task: LakeTask, kind: str, rng: np.random.Generator, max_moves: int) -> list[int]:
    if kind == "optimal":
        return optimal_plan(task, rng)
    if kind not in PLAN_KINDS:
        raise ValueError(f"plan kind must be one of {list(PLAN_KINDS)}, got {kind!r}")
    return walk(task, rng, max_moves, avoid=kind == "avoiding")


def rejected_plan(
    task: LakeTask, rng: np.random.Generator, max_moves: int, p_avoiding: float
) -> list[int]:
    """A sub-optimal or failing plan: an avoiding walk (probability ``p_avoiding``) or a
    random walk, redrawn while it happens to be optimal; after ``MAX_REJECT_TRIES`` the
    canonical optimal plan without its last move (it stops one move short of the goal)."""
    for _ in range(MAX_REJECT_TRIES):
        kind = "avoiding" if rng.random() < p_avoiding else "random"
        plan = walk(task, rng, max_moves, avoid=kind == "avoiding")
        if not task.is_optimal(plan):
            return plan
    return optimal_plan(task, None)[:-1]


@dataclass(frozen=True)
class Tokens:
    """Padded samples (prompt + response) as next-token inputs and targets.

    ``inputs`` and ``targets`` are long (N, T), ``mask`` bool (N, T) is True where the target
    is a response token (the moves and the end token), ``prompt_len`` = P. The input at
    positions 0 .. P-1 is prompt (``prompt_mask``), so the first response target sits at P-1.
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    mask: torch.Tensor
    prompt_len: int

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def __getitem__(self, rows) -> Tokens:
        return Tokens(self.inputs[rows], self.targets[rows], self.mask[rows], self.prompt_len)

    @property
    def prompt_mask(self) -> torch.Tensor:
        """Bool (N, T): True where the *input* is a prompt token (IFT mixes the others)."""
        T = self.inputs.shape[1]
        return (torch.arange(T) < self.prompt_len).expand(len(self), T)  # (N, T)

    @property
    def prompts(self) -> torch.Tensor:
        """The prompt tokens (N, P), what generation starts from."""
        return self.inputs[:, : self.prompt_len]


def mismatched(tokens: Tokens) -> Tokens:
    """Each row's prompt with the previous row's response (row 0 takes the last one's): the
    mismatched pairs of KTO's reference point, rotated as in TRL. Rows of distinct lakes
    never give a lake its own plan."""
    other = tokens[torch.roll(torch.arange(len(tokens)), 1)]
    P = tokens.prompt_len  # inputs 0 .. P-1 are prompt; the target at P-1 is the first move
    return Tokens(
        torch.cat([tokens.inputs[:, :P], other.inputs[:, P:]], 1),
        torch.cat([tokens.targets[:, : P - 1], other.targets[:, P - 1 :]], 1),
        other.mask,
        P,
    )


def to_tokens(lakes: list[Lake], responses: list[list[int]], length: int) -> Tokens:
    """Samples of ``lakes`` with response token ids ``responses`` (moves and end), each
    padded to ``length`` tokens (inputs and targets then have ``length - 1``)."""
    rows = []
    for lake, response in zip(lakes, responses, strict=True):
        ids = encode(prompt_text(lake.desc)) + list(response)
        if len(ids) > length:
            raise ValueError(f"a sample of {len(ids)} tokens exceeds the length {length}")
        rows.append(ids + [PAD_ID] * (length - len(ids)))
    tokens = torch.tensor(rows, dtype=torch.long)  # (N, length)
    P = len(prompt_text(lakes[0].desc))
    T = length - 1
    n_response = torch.tensor([len(r) for r in responses])  # (N,)
    pos = torch.arange(T)  # (T,)
    mask = (pos >= P - 1) & (pos < P - 1 + n_response[:, None])  # (N, T)
    return Tokens(tokens[:, :-1], tokens[:, 1:], mask, P)


def plan_ids(plan: list[int]) -> list[int]:
    """Token ids of a plan's response (moves, then the end token)."""
    return encode(plan_text(plan))


def response_ids(generated: torch.Tensor) -> list[list[int]]:
    """Generated tokens (N, n) as responses: up to and including the first end token, pad
    dropped (a response never ended is kept whole)."""
    out = []
    for row in generated.tolist():
        ids = [i for i in row if i != PAD_ID]
        out.append(ids[: ids.index(END_ID) + 1] if END_ID in ids else ids)
    return out


def soft_targets(
    tasks: list[LakeTask], plans: list[list[int]], tokens: Tokens, tau: float, gamma: float
) -> torch.Tensor:
    """Target next-token distributions (N, T, V) along each plan: pi*(. | s_t) on the action
    tokens at the t-th response target, the end token (probability 1) once the plan has
    reached the goal; zero rows off the response."""
    N, T = tokens.targets.shape
    q = torch.zeros(N, T, len(VOCAB), dtype=torch.float64)  # (N, T, V)
    ids = torch.tensor(ACTION_IDS)
    for i, (task, plan) in enumerate(zip(tasks, plans, strict=True)):
        pi = soft_value_iteration(task.lake, tau=tau, gamma=gamma).policy  # [S, A]
        s, first = task.lake.start, tokens.prompt_len - 1
        for t, a in enumerate(plan):
            q[i, first + t, ids] = torch.from_numpy(pi[s])
            s = task.step(s, a)
        q[i, first + len(plan), END_ID] = 1.0
    return q


def encode_plans(tasks: list[LakeTask], plans: list[list[int]], length: int) -> Tokens:
    """Token samples of ``plans`` (Gymnasium actions) on the tasks' lakes."""
    return to_tokens([t.lake for t in tasks], [plan_ids(p) for p in plans], length)


def tasks(cfg: LMConfig) -> tuple[tuple[LakeTask, ...], tuple[LakeTask, ...]]:
    """Training lakes of ``cfg`` and the lakes its metrics are measured on (the held-out
    ones, or the validation ones if ``cfg.evaluate_on == "validation"``), with their ground
    truth (cached)."""
    train, test, val = _tasks(cfg.size, cfg.p_frozen, cfg.n_train, cfg.n_test, cfg.n_val,
                              cfg.lake_seed, cfg.gamma)  # fmt: skip
    return train, (val if cfg.evaluate_on == "validation" else test)


@lru_cache(maxsize=4)
def _tasks(size, p_frozen, n_train, n_test, n_val, lake_seed, gamma):
    """Training, held-out and validation lakes: three disjoint sets. The validation lakes are
    drawn after the held-out ones, so adding them changed no training or held-out lake."""
    train, rest = lake_split(size, p_frozen, n_train, n_test + n_val, lake_seed)
    test, val = rest[:n_test], rest[n_test:]
    return tuple(tuple(make_task(x, gamma) for x in part) for part in (train, test, val))


@dataclass(frozen=True)
class SeedData:
    """The training data of one seed: the base-model corpus, and per training lake one chosen
    (optimal, ties split at random) and one offline rejected plan."""

    corpus: Tokens
    chosen: Tokens
    rejected: Tokens
    tasks: tuple[LakeTask, ...]


def seed_data(cfg: LMConfig, seed: int) -> SeedData:
    train, _ = tasks(cfg)
    rng = np.random.default_rng([seed, CORPUS])
    kinds = rng.choice(len(PLAN_KINDS), size=(len(train), cfg.corpus_per_lake), p=cfg.corpus_mix)
    corpus_tasks, corpus_plans = [], []
    for task, row in zip(train, kinds, strict=True):
        for k in row:
            corpus_tasks.append(task)
            corpus_plans.append(corpus_plan(task, PLAN_KINDS[k], rng, cfg.max_moves))
    rng_c = np.random.default_rng([seed, CHOSEN])
    chosen = [optimal_plan(t, rng_c) for t in train]
    rng_r = np.random.default_rng([seed, REJECTED])
    walks = cfg.corpus_mix[1] + cfg.corpus_mix[2]
    p_avoiding = cfg.corpus_mix[1] / walks if walks > 0 else 0.5
    rejected = [rejected_plan(t, rng_r, cfg.max_moves, p_avoiding) for t in train]
    return SeedData(
        encode_plans(corpus_tasks, corpus_plans, cfg.seq_len),
        encode_plans(list(train), chosen, cfg.seq_len),
        encode_plans(list(train), rejected, cfg.seq_len),
        train,
    )
