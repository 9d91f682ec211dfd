"""What a replay of a Frozen Lake run needs: each method's and seed's policy table pi(a | s)
at every logged step, kept beside the run's cells and read back by one call.

    replay = load_replay("results/lake", "dpo", seed=0)
    replay.steps          # [L] the logged steps, as in metrics.csv
    replay.policies       # [L, S, A] pi(a | s) at each of them (float32)
    replay.at(step)       # [S, A] the policy at a logged step

A run directory holds ``replay/<method>-seed<seed>.npz`` next to ``cells/``, written before
its cell (a cell present means its replay is too). A run directory from a lakelab that kept
no replay data gives a ``ValueError`` that says so; the rest of the run reads as before.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lakelab.files import atomic_write_bytes

__all__ = ["Replay", "load_replay", "replay_path", "write_replay"]


@dataclass(frozen=True)
class Replay:
    """One method's and seed's policies at the logged steps of a run."""

    method: str
    seed: int
    steps: np.ndarray  # [L] int
    policies: np.ndarray  # [L, S, A] float32, each row sums to 1

    def at(self, step: int) -> np.ndarray:
        """The policy [S, A] at ``step``; ValueError naming the logged steps otherwise."""
        where = np.flatnonzero(self.steps == step)
        if not len(where):
            raise ValueError(f"step {step} was not logged; logged: {self.steps.tolist()}")
        return self.policies[where[0]]


def replay_path(out: str | Path, method: str, seed: int) -> Path:
    return Path(out) / "replay" / f"{method}-seed{seed}.npz"


def write_replay(
    out: str | Path, method: str, seed: int, steps: list[int], policies: np.ndarray
) -> Path:
    """Store ``policies`` [L, S, A] at ``steps`` [L] atomically, as float32 (compressed)."""
    policies = np.asarray(policies, dtype=np.float32)
    if policies.ndim != 3 or len(policies) != len(steps):
        raise ValueError(
            f"policies must be [steps, S, A] with one table per logged step ({len(steps)}), "
            f"got shape {policies.shape}"
        )
    buffer = io.BytesIO()
    np.savez_compressed(buffer, steps=np.asarray(steps, dtype=np.int64), policies=policies)
    return atomic_write_bytes(replay_path(out, method, seed), buffer.getvalue())


def load_replay(out: str | Path, method: str, seed: int) -> Replay:
    """The replay of ``method`` and ``seed`` in run directory ``out``."""
    path = replay_path(out, method, seed)
    if not path.exists():
        raise ValueError(
            f"{out} has no replay data for {method}, seed {seed} ({path.name}): the run was "
            "made by a lakelab that kept none; rerun it into a new directory to replay it"
        )
    with np.load(path) as data:
        return Replay(method, seed, data["steps"], data["policies"])
