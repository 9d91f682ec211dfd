"""What a sweep found: the long results table, per-point summaries, orderings and a figure.

    out/results.csv    one row per (grid point, objective, seed): knobs, final metrics, status
    out/summary.csv    per (grid point, objective): mean and 95% interval over seeds
    out/orderings.csv  per grid point: objectives ranked by parameter MSE; whether the IFT
                       paper's ordering holds; whether DPO's success collapsed from its peak
                       while its reward margin grew (likelihood displacement)
    out/cells.csv      per cell: status, error, seconds (timings: not part of the results)
    out/figure.png     ranks of the objectives per point, and DPO's success vs its margin

Every table lists cells in the sweep's order, never in completion order, so the tables do
not depend on the backend or on how often the sweep was interrupted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lakelab.files import atomic_save_figure, atomic_write_text
from lakelab.mlp.sweep import FINAL_KEYS, KEPT_LOG_KEYS, SweepSpec, load_cell
from lakelab.stats import ci95

PAPER_ORDER = ("dpo", "ift", ("orpo", "sft"))
"""The IFT paper's parameter-MSE claim: DPO < IFT << ORPO, SFT."""
COLLAPSE = 0.5
"""DPO 'collapses' where its final success probability is below this share of the highest it
reached during training (logged every ``log_every`` steps) while its reward margin is > 0."""


def results_table(spec: SweepSpec, out: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(results, cells): the long table of finished cells and one row of status per cell."""
    rows, status = [], []
    for cell in spec.cells():
        data = load_cell(out, cell)
        if data is None:
            continue
        key = {"point": cell.index, **cell.point, "method": cell.method}
        status.append(
            {**key, "id": cell.id, "status": data["status"], "error": data.get("error", "")}
            | {"seconds": data.get("seconds", np.nan)}
        )
        if data["status"] == "ok":
            rows += [{**key, "status": "ok", **r} for r in data["rows"]]
        else:
            rows.append({**key, "status": "error", "error": data["error"]})
    results = pd.DataFrame(rows)
    if not results.empty:  # identity columns first, then metrics, alphabetically
        first = ["point", *{k: None for p in spec.points for k in p}, "method", "seed", "status"]
        first = [c for c in first if c in results]
        results = results[first + sorted(set(results.columns) - set(first))]
    return results, pd.DataFrame(status)


def summarize_points(results: pd.DataFrame) -> pd.DataFrame:
    ok = results[results["status"] == "ok"]
    metrics = [*FINAL_KEYS, "initial_success", "peak_success", *KEPT_LOG_KEYS]
    out = []
    for (point, method), group in ok.groupby(["point", "method"], sort=False):
        row: dict = {"point": point, "method": method, "seeds": len(group)}
        for k in metrics:
            row[f"{k}_mean"], row[f"{k}_ci95"] = ci95(group[k].to_numpy(dtype=float))
        out.append(row)
    return pd.DataFrame(out)


def orderings(summary: pd.DataFrame, spec: SweepSpec) -> pd.DataFrame:
    """Per point: the parameter-MSE ranking, the paper's claim, DPO's collapse."""
    out = []
    for point, group in summary.groupby("point", sort=True):
        by = group.set_index("method")
        mse = by["param_mse_mean"].sort_values()
        row = {"point": point, **spec.points[point], "mse_order": " < ".join(mse.index)}
        row["paper_order"] = _paper_order(by)
        if "dpo" in by.index:
            d = by.loc["dpo"]
            row["dpo_success"] = d["success_mean"]
            row["dpo_peak_success"] = d["peak_success_mean"]
            row["dpo_margin"] = d["batch/rewards/margins_mean"]
            row["dpo_collapse"] = bool(
                d["success_mean"] < COLLAPSE * d["peak_success_mean"]
                and d["batch/rewards/margins_mean"] > 0
            )
        out.append(row)
    return pd.DataFrame(out)


def _paper_order(by: pd.DataFrame) -> str:
    """'holds' (means in the paper's order and every step separated by the 95% intervals),
    'means only' (means in order, intervals overlap), 'fails', or 'incomplete' (an objective
    of the claim is missing)."""
    dpo, ift, rest = PAPER_ORDER
    if not {dpo, ift, *rest} <= set(by.index):
        return "incomplete"
    m, h = by["param_mse_mean"], by["param_mse_ci95"]
    best_rest = min(rest, key=lambda k: m[k])  # the better of ORPO and SFT
    if not m[dpo] < m[ift] < m[best_rest]:
        return "fails"
    separated = m[dpo] + h[dpo] < m[ift] - h[ift] and m[ift] + h[ift] < m[best_rest] - h[best_rest]
    return "holds" if separated else "means only"


def sweep_figure(summary: pd.DataFrame, order: pd.DataFrame, spec: SweepSpec):
    import matplotlib.pyplot as plt

    methods = list(dict.fromkeys(summary["method"]))
    points = sorted(summary["point"].unique())
    mse = summary.pivot(index="point", columns="method", values="param_mse_mean").loc[
        points, methods
    ]
    ranks = mse.rank(axis=1).to_numpy()
    has_dpo = "dpo_success" in order
    fig, axes = plt.subplots(
        1,
        2 if has_dpo else 1,
        figsize=(13 if has_dpo else 8, 1.2 + 0.38 * len(points)),
        squeeze=False,
        gridspec_kw={"width_ratios": [3, 2] if has_dpo else [1]},
    )
    ax = axes[0, 0]
    ax.imshow(ranks, cmap="RdYlGn_r", aspect="auto", vmin=1, vmax=len(methods))
    for i in range(len(points)):
        for j in range(len(methods)):
            ax.text(j, i, f"{mse.iloc[i, j]:.3g}", ha="center", va="center", fontsize=7)
    verdict = order.set_index("point")["paper_order"]
    ax.set_yticks(
        range(len(points)), [_label(spec.points[p], verdict[p]) for p in points], fontsize=7
    )
    ax.set_xticks(range(len(methods)), methods)
    ax.set_title(
        "final parameter MSE to theta* (colour: rank in the row, green = best)", fontsize=9
    )
    if has_dpo:
        ax = axes[0, 1]
        d = order.dropna(subset=["dpo_success"])
        colors = np.where(d["dpo_collapse"].astype(bool), "tab:red", "tab:blue")
        ax.scatter(d["dpo_margin"], d["dpo_success"], c=colors)
        for _, r in d.iterrows():
            ax.annotate(str(int(r["point"])), (r["dpo_margin"], r["dpo_success"]), fontsize=7)
        ax.set_xlabel("DPO final reward margin (batch mean)")
        ax.set_ylabel("DPO final success probability")
        ax.set_title("DPO per grid point (red: success < half its peak, margin > 0)", fontsize=9)
    fig.tight_layout()
    return fig


def _label(point: dict, verdict: str) -> str:
    knobs = ", ".join(f"{k}={v}" for k, v in point.items())
    return f"{knobs}  [{verdict}]"


def write_sweep_reports(spec: SweepSpec, out: Path) -> dict[str, Path]:
    results, cells = results_table(spec, out)
    paths = {"results": out / "results.csv", "cells": out / "cells.csv"}
    atomic_write_text(paths["results"], results.to_csv(index=False))
    atomic_write_text(paths["cells"], cells.to_csv(index=False))
    if results.empty or not (results["status"] == "ok").any():
        return paths
    summary = summarize_points(results)
    order = orderings(summary, spec)
    paths |= {"summary": out / "summary.csv", "orderings": out / "orderings.csv"}
    atomic_write_text(paths["summary"], summary.to_csv(index=False))
    atomic_write_text(paths["orderings"], order.to_csv(index=False))
    fig = sweep_figure(summary, order, spec)
    paths["figure"] = out / "figure.png"
    atomic_save_figure(fig, paths["figure"], dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return paths
