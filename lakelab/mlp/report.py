"""The experiment figure: parameter MSE and function-space curves, explored grids per method."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from lakelab.lakes import make_lake
from lakelab.mlp.config import LakeConfig
from lakelab.plotting import draw_grid_mass
from lakelab.stats import ci95

GRIDS_PER_ROW = 8  # explored grids per row of the figure

CURVES = (
    ("param_mse", "parameter MSE to theta* (paper)"),
    ("kl_visitation", "KL(pi* || pi), own visitation"),
    ("success", "success probability"),
    ("logp_optimal", "log pi(optimal route)"),
    ("logp_suboptimal", "log pi(sub-optimal route)"),
)


def experiment_figure(
    config: LakeConfig, metrics: pd.DataFrame, explored: dict[str, np.ndarray]
) -> Figure:
    """Top: each metric's mean over seeds with a 95% band per method. Bottom: each method's
    explored grid (share of the input mass it trained on, averaged over seeds)."""
    lake = make_lake(config.lake, slippery=config.slippery, success_rate=config.success_rate)
    methods = list(config.methods)
    ncol = max(len(CURVES), min(len(methods), GRIDS_PER_ROW))
    nrow = 1 + -(-len(methods) // ncol)  # the curves, then the grids in rows of ncol
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.1 * ncol, 3.2 * nrow), squeeze=False)
    colors = plt.get_cmap("tab10")
    styles = ("-", "--", ":")  # beyond 10 methods the colours repeat with another line style
    keys = [key for key, _ in CURVES]
    # per method: each metric as a table [step, seed]
    tables = {
        m: group.pivot(index="step", columns="seed", values=keys)
        for m, group in metrics.groupby("method", sort=False)
    }
    for j, (key, title) in enumerate(CURVES):
        ax = axes[0, j]
        for c, method in enumerate(methods):
            steps = tables[method].index.to_numpy()
            mean, half = np.array([ci95(v) for v in tables[method][key].to_numpy()]).T
            ax.plot(steps, mean, label=method, color=colors(c % 10), linestyle=styles[c // 10 % 3])
            # the band as one polygon, not fill_between (speed: docs/benchmarks.md)
            band_x = np.concatenate([steps, steps[::-1]])
            band_y = np.concatenate([mean - half, (mean + half)[::-1]])
            ax.fill(band_x, band_y, color=colors(c % 10), alpha=0.2, linewidth=0)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step")
    for j in range(len(CURVES), ncol):
        axes[0, j].axis("off")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    spare = ncol > len(CURVES)  # an empty panel right of the curves: the legend goes there
    where = axes[0, len(CURVES)] if spare else axes[0, 0]
    where.legend(handles, labels, fontsize=7, ncol=1 + len(methods) // 12,
                 loc="upper left" if spare else "best")  # fmt: skip
    vmax = max(float(v.max()) for v in explored.values()) or None
    grids = axes[1:].ravel()
    for j, method in enumerate(methods):
        draw_grid_mass(
            lake,
            explored[method],
            ax=grids[j],
            title=f"{method}: explored",
            vmax=vmax,
            colorbar=False,  # one shared scale (vmax): one colorbar for the row
            ticks=False,
            # colour only (speed: docs/benchmarks.md); the app and notebook 03 write every
            # cell's value
            numbers=False,
        )
    for ax in grids[len(methods) :]:
        ax.axis("off")
    fig.suptitle(
        f"Frozen Lake ({config.lake}), {config.seeds} seeds, chosen={config.chosen}, "
        f"negatives={config.negatives}: mean and 95% interval",
        fontsize=10,
    )
    # fixed margins, not tight_layout (speed: docs/benchmarks.md)
    # top and bottom margins of the same height whatever the number of rows
    fig.subplots_adjust(left=0.035, right=0.955, top=1 - 0.22 / nrow, bottom=0.14 / nrow,
                        wspace=0.45, hspace=0.4)  # fmt: skip
    # one colorbar for the explored grids (they share vmax), right of the first row of grids
    first = grids[min(len(methods), ncol) - 1].get_position()
    cax = fig.add_axes((first.x1 + 0.006, first.y0, 0.006, first.height))
    fig.colorbar(grids[0].images[0], cax=cax, label="share of inputs")
    return fig
