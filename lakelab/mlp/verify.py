"""``lakelab verify --lake``: the function under test trained in the Frozen Lake experiment
beside the objective it claims to be, both judged by the exact metrics.

    paths, table = on_the_lake(my_dpo, like="dpo")   # quick preset, 3 seeds, a few seconds
    print(table)                                     # final metrics side by side

The function is registered for the run as the objective ``yours``: a copy of ``like``'s
registry entry (its reduction, hyper-parameters, mixed pass) whose loss is the function,
called on each seed's batch separately, exactly as the reference's loss is (the tokens and
logits forms get the per-token log-probs, or logits built from them, of the policy's
trajectories). Same data, negatives, seeds and steps for both: the two columns differ only
by the function. The run directory is a normal one (``lakelab.mlp.runs``): the reference's
cells are reused when the protocol matches, the function's are always trained afresh.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from lakelab.mlp.config import LakeConfig, preset
from lakelab.mlp.runs import run_lake
from lakelab.objective_spec import Objective
from lakelab.registry import (
    OBJECTIVES,
    SequenceLogps,
    get_objective,
    register_objective,
    resolve_hparams,
    unregister_objective,
)
from lakelab.verify.calls import Broken, accepted, batch_loss, examples_mean, keywords_only
from lakelab.verify.forms import FORMS

YOURS = "yours"
COLUMNS = {  # summary.csv metric -> the table's column
    "success": "success",
    "kl_visitation": "KL to pi*",
    "param_mse": "param MSE",
    "logp_optimal": "logp optimal",
    "explored_cells": "explored cells",
}


def as_objective(fn: Callable, like: str, inputs: str, batch_size: int) -> Objective:
    """``like``'s registry entry with ``fn`` as its loss, named ``yours``: each seed's batch
    (rows n * batch_size .. (n + 1) * batch_size) goes to ``fn`` alone."""
    reference = get_objective(like)
    form = FORMS[inputs]
    knobs = {p.name: p.default for p in reference.hyperparams if not p.model_side}
    taken = accepted(fn, knobs)
    mine = keywords_only(fn, set(knobs) if taken is None else taken, form.unpack)
    if reference.unpaired:  # per-example losses: desirable, then undesirable
        mine = examples_mean(mine, form.rejected_at)
    per_token = inputs != "sequences"

    def loss_fn(*args: torch.Tensor, reduction: str = "mean", **hp: Any):
        if reference.unpaired:  # the loops call it on one seed's examples at a time
            examples = len(args[0]) + len(args[2 if per_token else 1])
            spans = [(list(args), examples)]
        else:
            starts = range(0, len(args[0]), batch_size)  # rows n * B .. (n + 1) * B: seed n's
            spans = [([x[i : i + batch_size] for x in args], len(args[0][i : i + batch_size]))
                     for i in starts]  # fmt: skip
        losses = []
        for rows, n in spans:
            if per_token:
                rows = form.from_tokens(reference, _token_batch(reference, rows))
            try:
                loss = batch_loss(mine, rows, hp)
            except Broken as err:
                raise ValueError(f"{YOURS} (your {like}): the function {err}") from None
            losses.append(loss.expand(n))
        per_row = torch.cat(losses)
        return (per_row.mean() if reduction == "mean" else per_row), {}

    return dataclasses.replace(
        reference,
        name=YOURS,
        title=f"yours ({reference.title})",
        loss_fn=loss_fn,
        reduction="tokens" if per_token else reference.reduction,
    )


def _token_batch(objective: Objective, args: list) -> SequenceLogps:
    """The registry's per-token inputs of ``objective`` (``lakelab.sequences.inputs_of``) as
    the SequenceLogps they came from."""
    names = ["chosen", "chosen_mask"]
    names += ["rejected", "rejected_mask"] if objective.needs_pairs else []
    names += ["ref_chosen", "ref_rejected"] if objective.needs_reference else []
    names += ["kl", "kl_mask", "ref_kl"] if objective.mismatched else []
    names += ["chosen_log_sum_sq", "rejected_log_sum_sq"] if objective.needs_sum_sq else []
    return SequenceLogps(**dict(zip(names, args, strict=True)))


def on_the_lake(
    fn: Callable,
    like: str,
    hparams: dict[str, Any] | None = None,
    inputs: str = "sequences",
    config: LakeConfig | None = None,
    out: str | Path = "results/verify",
    progress: Callable[[int, int], None] | None = None,
) -> tuple[dict[str, Path], str]:
    """Train ``fn`` (as ``yours``) and ``like`` in the lake experiment (``config``: the
    quick preset by default), both at ``hparams``; returns the run's paths and the table of
    final metrics side by side (mean and 95% interval over seeds)."""
    if inputs not in FORMS:
        raise ValueError(f"inputs must be one of {list(FORMS)}, got {inputs!r}")
    if YOURS in OBJECTIVES:
        raise ValueError(f"an objective named {YOURS!r} is registered already")
    hp = resolve_hparams(like, hparams)
    base = config or preset("quick")
    out = Path(out)
    for stale in (out / "cells").glob(f"{YOURS}-seed*.json"):
        stale.unlink()  # the function may have changed since: never reuse its cells
    register_objective(as_objective(fn, like, inputs, base.batch_size))
    try:
        cfg = base.replace(methods=(like, YOURS), hparams={like: hp, YOURS: hp})
        paths = run_lake(cfg, out, progress=progress)
        table = side_by_side(pd.read_csv(paths["summary"]), like)
    finally:
        unregister_objective(YOURS)
    return paths, table


def side_by_side(summary: pd.DataFrame, like: str) -> str:
    """The summary's final metrics, one row per metric, a column per method."""
    rows = ["| metric (final, mean ± 95% CI) | " + f"{like} (lakelab) | yours |", "|---|---|---|"]
    by_method = summary.set_index("method")
    for key, label in COLUMNS.items():
        cells = [
            f"{by_method.loc[m, f'{key}_mean']:.4g} ± {by_method.loc[m, f'{key}_ci95']:.2g}"
            for m in (like, YOURS)
        ]
        rows.append(f"| {label} | {cells[0]} | {cells[1]} |")
    return "\n".join(rows)
