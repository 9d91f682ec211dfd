"""Online negatives: rejected trajectories sampled from the current policy at every step.

A rejected trajectory must never equal a chosen one (the design's "never the chosen
trajectory"): per row (a method's seed), ``ONLINE_DRAWS * batch_size`` episodes of the current
policy are simulated and the first ``batch_size`` that equal none of that seed's chosen
trajectories are kept. Once the policy reproduces its demonstrations there is little left to
reject; the missing slots are then filled from the seed's offline pool (cycled) and counted,
the metric ``online_fallback``.

Every row of a joint run (several methods, many seeds) is simulated in one vectorised loop,
and membership in the chosen set is one sorted search over 64-bit trajectory hashes salted
with the row (speed: docs/benchmarks.md; the plain version is ``lakelab.mlp.train``'s
``online_negatives``).
"""

from __future__ import annotations

import numpy as np
import torch

from lakelab.mlp.data import Batch, Episodes
from lakelab.mlp.experiment import ONLINE_DRAWS, Setup
from lakelab.mlp.sampling import sample_many

_ROW_SALT = np.uint64(0x94D049BB133111EB)  # odd: row * salt differs for every row


class OnlineNegatives:
    """Online rejected batches for rows whose seeds are ``idx`` (indices into
    ``setup.seeds``), row r drawing from its own generator ``rngs[r]``.

    Use: ``drawn = negatives.draw(probs)`` once per step for all rows, then
    ``negatives.batch(drawn, rows, offline)`` for each method's slice of rows.
    """

    def __init__(self, setup: Setup, idx: list[int], rngs: list[np.random.Generator]):
        cfg = setup.config
        if len(rngs) != len(idx):
            raise ValueError(f"one generator per row: {len(idx)} rows, {len(rngs)} generators")
        self.lake, self.max_len, self.rngs = setup.lake, cfg.max_len, rngs
        self.B, self.D = cfg.batch_size, ONLINE_DRAWS * cfg.batch_size
        self.salt = (np.arange(len(idx), dtype=np.uint64) * _ROW_SALT)[:, None]  # (R, 1)
        # every row's chosen hashes, salted with the row: one sorted array for all rows
        self.banned = np.sort(
            np.concatenate([setup.chosen_hashes[i] ^ self.salt[r] for r, i in enumerate(idx)])
        )
        self.sizes = np.array([len(setup.offline[i]) for i in idx])  # offline pool sizes

    def draw(self, probs: np.ndarray) -> tuple[Episodes, np.ndarray, np.ndarray]:
        """Simulate ``D`` episodes per row of ``probs`` [R, S, A]; returns the episodes
        (R * D rows), which to keep [R, D] (the first B fresh ones per row) and the batch
        slot of each [R, D]."""
        R, D = len(self.rngs), self.D
        drawn = sample_many(self.lake, probs, D, self.rngs, max_len=self.max_len)
        mine = drawn.hashes().reshape(R, D) ^ self.salt  # (R, D)
        at = np.searchsorted(self.banned, mine).clip(max=len(self.banned) - 1)
        fresh = self.banned[at] != mine  # (R, D): equals none of the row's chosen ones
        slot = np.cumsum(fresh, 1) - 1  # the batch slot of each fresh episode
        return drawn, fresh & (slot < self.B), slot

    def batch(
        self, drawn: tuple[Episodes, np.ndarray, np.ndarray], rows: slice, offline: Batch
    ) -> tuple[Batch, np.ndarray]:
        """The rejected batch [N, B, T] of rows ``rows`` (N of them) from a ``draw``, and how
        many of each row's slots came from its ``offline`` pool [N, P, T] (floats [N])."""
        episodes, keep, slot = drawn
        keep, slot, B = keep[rows], slot[rows], self.B
        count = keep.sum(1)  # (N,) fresh episodes kept
        # start from the offline pool (cycled), then put the fresh episodes in their slots
        base = offline.select((np.arange(B)[None] - count[:, None]) % self.sizes[rows][:, None])
        fresh_rows = np.flatnonzero(keep.ravel()) + rows.start * self.D  # rows of `episodes`
        lengths = episodes.lengths[fresh_rows]
        T = max(base.states.shape[-1], int(lengths.max(initial=0)))
        # select's arrays are fresh copies: fill them in place, widened only if need be
        states, actions, mask = (
            _pad_time(t.numpy(), T) for t in (base.states, base.actions, base.mask)
        )
        n_of, slot_of = np.nonzero(keep)[0], slot[keep]  # where each kept episode goes
        width = min(T, episodes.states.shape[1])  # kept episodes are no longer than T
        states[n_of, slot_of, :width] = episodes.states[fresh_rows, :width]
        actions[n_of, slot_of, :width] = episodes.actions[fresh_rows, :width]
        mask[n_of, slot_of] = False
        mask[n_of, slot_of, :width] = np.arange(width) < lengths[:, None]
        batch = Batch(*map(torch.from_numpy, (states, actions, mask)))
        return batch, (B - count).astype(float)


def _pad_time(t: np.ndarray, T: int) -> np.ndarray:
    """``t`` [N, B, T0] zero-padded (False for masks) to [N, B, T] (``t`` itself if T0 = T)."""
    if t.shape[-1] == T:
        return t
    out = np.zeros((*t.shape[:2], T), dtype=t.dtype)
    out[..., : t.shape[-1]] = t
    return out
