"""Plain helpers and constants shared by several test modules (fixtures are in conftest.py)."""

import numpy as np
import pytest
import torch

from lakelab.lm.config import LMConfig
from lakelab.sequences import SequenceLogps

# the LM track at its smallest: seconds per run, every objective on a nano model
TINY_LM = LMConfig(
    n_train=64,
    n_test=16,
    model="nano",
    batch_size=16,
    pretrain_steps=20,
    pretrain_log_every=10,
    align_steps=6,
    log_every=3,
    seeds=1,
    methods=("sft", "ift", "dpo", "ipo", "orpo", "asft", "simpo"),
)

# Frozen Lake runs short enough for run-directory tests: a loose theta* fit keeps them about
# the files, not the optimisation
FAST_LAKE = {"steps": 20, "log_every": 10, "optimum_steps": 100, "optimum_kl_target": 0.2}


def assert_close(actual: torch.Tensor, expected: torch.Tensor, rtol=None, atol=None) -> None:
    """Like torch.testing.assert_close (same default tolerances), without its ~1 s first-call
    import cost."""
    assert actual.shape == expected.shape and actual.dtype == expected.dtype, (actual, expected)
    single = actual.dtype == torch.float32
    rtol = (1.3e-6 if single else 1e-7) if rtol is None else rtol
    atol = (1e-5 if single else 1e-7) if atol is None else atol
    assert torch.allclose(actual, expected, rtol=rtol, atol=atol), (actual, expected)


def with_extra_inputs(logps):
    """``logps`` (a SequenceLogps with pairs and a reference) with mismatched pairs for KTO
    built as on the lake, where every example shares one prompt: the batch's own examples,
    chosen then rejected (zero-padded to one length); and WPO's sums of squared
    probabilities, as if each token had one alternative."""
    from dataclasses import replace

    def stack(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        T = max(a.shape[1], b.shape[1])
        pad = torch.nn.functional.pad
        return torch.cat([pad(a, (0, T - a.shape[1])), pad(b, (0, T - b.shape[1]))])

    return replace(
        logps,
        kl=stack(logps.chosen, logps.rejected).detach(),
        kl_mask=stack(logps.chosen_mask.bool(), logps.rejected_mask.bool()),
        ref_kl=stack(logps.ref_chosen, logps.ref_rejected),
        # WPO's log sum_v p(v)^2, of a two-token vocabulary: log(p^2 + (1 - p)^2)
        chosen_log_sum_sq=_two_tokens(logps.chosen),
        rejected_log_sum_sq=_two_tokens(logps.rejected),
    )


def _two_tokens(logp: torch.Tensor) -> torch.Tensor:
    from lakelab.objectives import log1mexp

    logp = logp.detach().clamp(max=0.0)
    return torch.logaddexp(2 * logp, 2 * log1mexp(logp))


def assert_rows_close(fast: list[dict], slow: list[dict]) -> None:
    assert [list(r) for r in fast] == [list(r) for r in slow]  # same metrics, same order
    for a, b in zip(fast, slow, strict=True):
        for key in a:
            if key == "explored_cells":  # a count of cells over a threshold: rounding at the
                continue  # threshold may flip one; the explored mass itself is compared below
            assert a[key] == pytest.approx(b[key], rel=1e-9, abs=1e-12, nan_ok=True), key


def assert_replays_agree(fast, i: int, slow, j: int) -> None:
    """Row ``i`` of replay data ``fast`` against row ``j`` of ``slow``: the same policies and
    explored mass at every logged step, and the same chosen and rejected trajectories (as
    multisets: the joint loop puts a batch's fresh negatives in other slots)."""
    np.testing.assert_allclose(fast.policies[i], slow.policies[j], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(fast.explored[i], slow.explored[j], rtol=1e-6)
    for kind in ("chosen", "rejected"):
        a, b = getattr(fast, kind), getattr(slow, kind)
        for step in range(fast.policies.shape[1]):
            assert _multiset(a, i, step) == _multiset(b, j, step), (kind, step)


def _multiset(paths, row: int, step: int) -> list:
    s, a, k = paths.states[row, step], paths.actions[row, step], paths.lengths[row, step]
    return sorted(
        (tuple(s[b, :n].tolist()), tuple(a[b, :n].tolist())) for b, n in enumerate(k) if n
    )


def token_batch(seed: int = 0, B: int = 3, T: int = 6) -> SequenceLogps:
    g = torch.Generator().manual_seed(seed)

    def lp():
        return -(0.05 + 2 * torch.rand(B, T, generator=g, dtype=torch.float64))

    chosen_mask = torch.ones(B, T)
    chosen_mask[0, :2] = 0
    chosen_mask[1, 4:] = 0
    rejected_mask = torch.ones(B, T)
    rejected_mask[2, :3] = 0
    return with_extra_inputs(SequenceLogps(lp(), chosen_mask, lp(), rejected_mask, lp(), lp()))
