"""What a replay of a Frozen Lake run needs, kept beside the run's cells and read back by one
call: for each method and seed, at every logged step, the policy table pi(a | s), the explored
mass so far, and the trajectories the step trained on.

    replay = load_replay("results/lake", "dpo", seed=0)
    replay.steps          # [L] the logged steps, as in metrics.csv
    replay.policies       # [L, S, A] pi(a | s) at each of them (float32)
    replay.explored       # [L, S] input mass trained on before each of them
    replay.at(step)       # [S, A] the policy at a logged step
    replay.paths(step, "chosen")   # that step's chosen trajectories, distinct, with counts

"That step's" trajectories are the batch trained on in the step that starts at the logged
step: chosen and rejected for the preference objectives (the undesirable examples of the
unpaired ones), and for the RL methods the sampled episodes that reached the goal (as
"chosen") and the others (as "rejected"). The last logged step, after training, has none.

A run directory holds ``replay/<method>-seed<seed>.npz`` next to ``cells/``, written before
its cell (a cell present means its replay is too). A run directory from a lakelab that kept
no replay data gives a ``ValueError`` that says so; the rest of the run reads as before.

The training loops record into a :class:`Tape` at each logged step.
"""

from __future__ import annotations

import io
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lakelab.files import atomic_write_bytes
from lakelab.mlp.data import Batch

__all__ = ["KINDS", "Paths", "Replay", "ReplayData", "Tape", "load_replay", "replay_path",
           "stack", "write_replay"]  # fmt: skip

KINDS = ("chosen", "rejected")
_FORMAT = 2  # 1: policies only (no explored mass, no trajectories)


@dataclass(frozen=True)
class Paths:
    """Padded trajectories per logged step: ``states``, ``actions`` [..., B, T], ``lengths``
    [..., B]; a row of length 0 holds no trajectory (padding, or a step without that kind)."""

    states: np.ndarray  # int16
    actions: np.ndarray  # int8
    lengths: np.ndarray  # int16

    @classmethod
    def empty(cls, lead: tuple[int, ...]) -> Paths:
        empty = np.zeros((*lead, 0, 0))
        return cls(empty.astype(np.int16), empty.astype(np.int8), np.zeros((*lead, 0), np.int16))

    def row(self, n: int) -> Paths:
        """Row ``n`` of the leading dimension."""
        return Paths(self.states[n], self.actions[n], self.lengths[n])


@dataclass(frozen=True)
class ReplayData:
    """What the loops recorded for N rows (seeds) at L logged steps."""

    policies: np.ndarray  # [N, L, S, A] float32
    explored: np.ndarray  # [N, L, S] float32
    chosen: Paths  # [N, L, B, T]
    rejected: Paths


class Tape:
    """Records, for N rows of parameters, what a replay needs at each logged step.

    A loop calls ``log`` at every logged step and ``batch`` with the batch it then trains on
    (so the last logged step, after the last update, has no batch).
    """

    def __init__(self) -> None:
        self._policies: list[np.ndarray] = []
        self._explored: list[np.ndarray] = []
        self._batches: dict[str, list[tuple]] = {kind: [] for kind in KINDS}

    def log(self, policies: np.ndarray, explored: np.ndarray) -> None:
        """``policies`` [N, S, A] and ``explored`` [N, S] at a logged step."""
        self._policies.append(np.asarray(policies, dtype=np.float32))
        self._explored.append(np.array(explored, dtype=np.float32))

    def batch(
        self,
        chosen: Batch | None,
        rejected: Batch | None,
        keep: dict[str, np.ndarray] | None = None,
    ) -> None:
        """The step's batches [N, B, T] (None: the method has no such kind); ``keep[kind]``
        [N, B] bool marks the trajectories of a batch that belong to that kind (RL: reached
        the goal, or not)."""
        for kind, batch in zip(KINDS, (chosen, rejected), strict=True):
            if batch is None:
                continue
            lengths = batch.mask.numpy().sum(-1)  # (N, B)
            if keep is not None and kind in keep:
                lengths = lengths * keep[kind]
            # stored compactly from the start: states < 4096 (64 x 64 lakes), 4 actions
            states = batch.states.numpy().astype(np.int16)
            actions = batch.actions.numpy().astype(np.int8)
            lengths = lengths.astype(np.int16)
            self._batches[kind].append((len(self._policies) - 1, states, actions, lengths))

    def data(self) -> ReplayData:
        policies = np.stack(self._policies, 1)  # (N, L, S, A)
        N, L = policies.shape[:2]
        return ReplayData(
            policies, np.stack(self._explored, 1), *(self._paths(k, N, L) for k in KINDS)
        )

    def _paths(self, kind: str, N: int, L: int) -> Paths:
        found = self._batches[kind]
        if not found:
            return Paths.empty((N, L))
        B = max(s.shape[1] for _, s, _, _ in found)
        T = max(s.shape[2] for _, s, _, _ in found)
        states, actions = np.zeros((N, L, B, T), np.int16), np.zeros((N, L, B, T), np.int8)
        lengths = np.zeros((N, L, B), np.int16)
        for step, s, a, k in found:
            b, t = s.shape[1:]
            states[:, step, :b, :t], actions[:, step, :b, :t], lengths[:, step, :b] = s, a, k
        return Paths(states, actions, lengths)


def stack(parts: list[ReplayData]) -> ReplayData:
    """Several ``ReplayData`` of the same steps, their rows one after another."""
    paths = {}
    for kind in KINDS:
        ps = [getattr(p, kind) for p in parts]
        B, T = max(p.states.shape[2] for p in ps), max(p.states.shape[3] for p in ps)
        pad = [((0, 0), (0, 0), (0, B - p.states.shape[2]), (0, T - p.states.shape[3])) for p in ps]
        paths[kind] = Paths(
            np.concatenate([np.pad(p.states, w) for p, w in zip(ps, pad, strict=True)]),
            np.concatenate([np.pad(p.actions, w) for p, w in zip(ps, pad, strict=True)]),
            np.concatenate([np.pad(p.lengths, w[:3]) for p, w in zip(ps, pad, strict=True)]),
        )
    return ReplayData(
        np.concatenate([p.policies for p in parts]),
        np.concatenate([p.explored for p in parts]),
        paths["chosen"],
        paths["rejected"],
    )


@dataclass(frozen=True)
class Replay:
    """One method's and seed's run, at its logged steps."""

    method: str
    seed: int
    steps: np.ndarray  # [L] int
    policies: np.ndarray  # [L, S, A] float32, each row sums to 1
    explored: np.ndarray  # [L, S] float32: input mass trained on before each logged step
    chosen: Paths  # [L, B, T]
    rejected: Paths

    def index(self, step: int) -> int:
        """The position of ``step`` among the logged steps; ValueError naming them otherwise."""
        where = np.flatnonzero(self.steps == step)
        if not len(where):
            raise ValueError(f"step {step} was not logged; logged: {self.steps.tolist()}")
        return int(where[0])

    def at(self, step: int) -> np.ndarray:
        """The policy [S, A] at ``step``."""
        return self.policies[self.index(step)]

    def paths(self, step: int, kind: str) -> list[tuple[tuple[int, ...], tuple[int, ...], int]]:
        """The distinct trajectories of kind "chosen" or "rejected" trained on in the step
        that starts at ``step``, as (states, actions, count), most frequent first."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        p, i = getattr(self, kind), self.index(step)
        counts = Counter(
            (tuple(s[:k].tolist()), tuple(a[:k].tolist()))
            for s, a, k in zip(p.states[i], p.actions[i], p.lengths[i], strict=True)
            if k > 0
        )
        return [(s, a, n) for (s, a), n in counts.most_common()]


def replay_path(out: str | Path, method: str, seed: int) -> Path:
    return Path(out) / "replay" / f"{method}-seed{seed}.npz"


def write_replay(out: str | Path, method: str, seed: int, steps: list[int], data: ReplayData,
                 row: int = 0) -> Path:  # fmt: skip
    """Store row ``row`` of ``data`` (its L logged ``steps``) atomically, compressed."""
    if data.policies.shape[1] != len(steps):
        raise ValueError(
            f"replay data must hold one table per logged step ({len(steps)}), got shape "
            f"{data.policies.shape}"
        )
    arrays = {"format": np.int64(_FORMAT), "steps": np.asarray(steps, dtype=np.int64),
              "policies": data.policies[row], "explored": data.explored[row]}  # fmt: skip
    for kind in KINDS:
        p = getattr(data, kind).row(row)
        arrays |= {f"{kind}_states": p.states, f"{kind}_actions": p.actions,
                   f"{kind}_lengths": p.lengths}  # fmt: skip
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return atomic_write_bytes(replay_path(out, method, seed), buffer.getvalue())


def load_replay(out: str | Path, method: str, seed: int) -> Replay:
    """The replay of ``method`` and ``seed`` in run directory ``out``."""
    path = replay_path(out, method, seed)
    rerun = "; rerun it into a new directory to replay it"
    if not path.exists():
        raise ValueError(
            f"{out} has no replay data for {method}, seed {seed} ({path.name}): the run was "
            "made by a lakelab that kept none" + rerun
        )
    try:
        with np.load(path) as data:
            if "format" not in data or int(data["format"]) < _FORMAT:
                raise ValueError(
                    f"{path} is replay data of an older lakelab (policies only, no explored "
                    "mass or trajectories)" + rerun
                )
            paths = {
                kind: Paths(*(data[f"{kind}_{a}"] for a in ("states", "actions", "lengths")))
                for kind in KINDS
            }
            return Replay(method, seed, data["steps"], data["policies"], data["explored"],
                          **paths)  # fmt: skip
    except (OSError, EOFError, KeyError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path} is not readable replay data ({err})" + rerun) from None
