"""A fair learning rate per objective: each chosen from a small grid on validation lakes.

One learning rate for every objective favours some of them: DPO-style objectives are known to
want far smaller steps than SFT. So before the LM track's table is made, each objective's
alignment learning rate is chosen like this (``lakelab lm-lr``):

1. For every learning rate of the grid, a run of the protocol (``lakelab.lm.runs.run_lm``)
   with that rate for every objective, measured on the *validation* lakes
   (``evaluate_on="validation"``: disjoint from the training and the held-out lakes), on
   seeds of their own (``first_seed`` 100 by default, not the table's 0 .. 9).
2. Per objective, the rate with the highest mean validation success at the end of alignment;
   a rate within ``TIE`` of the best counts as a tie, and ties go to the smaller rate (the
   cautious choice: a rate that is not clearly better is not taken).

The held-out lakes play no part, so the table's numbers are not tuned on. The result is a
table (``grid.csv``: every objective at every rate, mean and 95% interval over the seeds)
and ``chosen.json`` ({objective: rate}), which the default preset's ``align_lrs`` copies.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from lakelab.files import atomic_write_json, atomic_write_text
from lakelab.lm.config import LMConfig
from lakelab.lm.runs import run_lm
from lakelab.stats import ci95

__all__ = ["GRID", "TIE", "choose", "lr_grid"]

GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
TIE = 0.01  # validation success within this of the best: a tie, won by the smaller rate


def lr_grid(
    config: LMConfig,
    out: str | Path,
    *,
    grid: Sequence[float] = GRID,
    seeds: int = 3,
    first_seed: int = 100,
    workers: int = 1,
    stack: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Run ``config``'s objectives at every rate of ``grid`` on the validation lakes, into
    ``out/lr-<rate>`` (each resumable); write ``out/grid.csv`` and ``out/chosen.json``;
    return the table and the chosen rates."""
    grid = sorted({float(lr) for lr in grid})
    if not grid or any(not (math.isfinite(lr) and lr > 0) for lr in grid):
        raise ValueError(f"grid must hold positive learning rates, got {list(grid)}")
    rows = []
    for k, lr in enumerate(grid):
        run = config.replace(align_lr=lr, align_lrs={}, evaluate_on="validation",
                             seeds=seeds, first_seed=first_seed)  # fmt: skip
        done = None if progress is None else _offset(progress, k, len(grid))
        paths = run_lm(run, Path(out) / f"lr-{lr:g}", progress=done, workers=workers,
                       stack=stack)  # fmt: skip
        final = pd.read_csv(paths["metrics"]).groupby(["method", "seed"], sort=False).tail(1)
        for method in config.methods:
            at = final[final["method"] == method]
            row = {"method": method, "lr": lr, "seeds": len(at)}
            for metric in ("success", "shortest", "token_kl"):
                row[f"{metric}_mean"], row[f"{metric}_ci95"] = ci95(at[metric].to_numpy())
            rows.append(row)
    table = pd.DataFrame(rows)
    chosen = choose(table)
    atomic_write_text(Path(out) / "grid.csv", table.to_csv(index=False))
    atomic_write_json(Path(out) / "chosen.json", chosen)
    return table, chosen


def choose(table: pd.DataFrame) -> dict[str, float]:
    """Per method of ``table`` (columns method, lr, success_mean), the smallest rate whose
    mean validation success is within ``TIE`` of the method's best."""
    chosen = {}
    for method, rows in table.groupby("method", sort=False):
        best = rows["success_mean"].max()
        near = rows[rows["success_mean"] >= best - TIE]
        chosen[str(method)] = float(near["lr"].min())
    return chosen


def _offset(progress: Callable[[int, int], None], k: int, n: int) -> Callable[[int, int], None]:
    """A run's progress as the k-th of n equal parts of the whole grid."""

    def report(done: int, total: int) -> None:
        progress(k * total + done, n * total)

    return report
