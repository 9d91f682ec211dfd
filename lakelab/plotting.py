"""Pictures of lakes: values as a heatmap, a policy as arrows, any per-cell mass as a grid.

All functions draw on a given matplotlib ``Axes`` (or make one) and return it, so notebooks,
the app and the experiment figure compose them freely. Importing this module selects no
backend; scripts that only save files should call ``matplotlib.use("Agg")`` first (the CLI
does).
"""

from __future__ import annotations

import matplotlib.patheffects as pe
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from lakelab.lakes import ACTION_DELTAS, Lake

CELL_COLORS = {"H": "#1f2d3d", "G": "#f2b134", "S": "#7fb3d5"}


def draw_lake(
    lake: Lake,
    *,
    values: np.ndarray | None = None,
    policy: np.ndarray | None = None,
    ax: Axes | None = None,
    title: str | None = None,
    cmap: str = "viridis",
    vmin: float | None = None,
    vmax: float | None = None,
    annotate: bool = True,
    numbers: bool = True,
    colorbar: bool = True,
    ticks: bool = True,
) -> Axes:
    """Draw ``lake`` with ``values`` [S] as a heatmap and ``policy`` [S, A] as arrows;
    ``annotate`` writes the S/H/G letters and, with ``numbers``, each cell's value.

    Holes are dark squares, the goal is gold. Each action's arrow has length proportional to
    its probability, so a deterministic policy shows one arrow per cell and a soft policy a
    star of arrows. Terminal cells get no arrows (nothing is decided there).
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(0.75 * lake.ncol + 1.5, 0.75 * lake.nrow + 0.6))
    grid = np.full((lake.nrow, lake.ncol), np.nan) if values is None else _as_grid(lake, values)
    image = ax.imshow(grid, cmap=cmap, norm=Normalize(vmin, vmax), origin="upper")
    if values is not None and colorbar:
        ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    for s, cell in enumerate("".join(lake.desc)):
        r, c = lake.coords(s)
        if cell in "HG" or (values is None and cell in CELL_COLORS):
            ax.add_patch(plt.Rectangle((c - 0.5, r - 0.5), 1, 1, color=CELL_COLORS[cell]))
        if annotate and cell in "SGH":
            light = cell == "H"
            ax.text(
                c - 0.42,
                r - 0.42,
                cell,
                ha="left",
                va="top",
                fontsize=8,
                color="white" if light else "black",
                weight="bold",
            )
        if annotate and numbers and values is not None and cell not in "HG":
            ax.text(
                c,
                r + 0.42,
                f"{values[s]:.2f}",
                ha="center",
                va="bottom",
                fontsize=7,
                color="black",
                path_effects=[pe.withStroke(linewidth=2, foreground="white")],
            )
    if policy is not None:
        _draw_arrows(ax, lake, np.asarray(policy))
    ax.set_xticks(range(lake.ncol) if ticks else [])
    ax.set_yticks(range(lake.nrow) if ticks else [])
    ax.set_xlim(-0.5, lake.ncol - 0.5)
    ax.set_ylim(lake.nrow - 0.5, -0.5)
    if title:
        ax.set_title(title)
    return ax


def _draw_arrows(ax: Axes, lake: Lake, policy: np.ndarray) -> None:
    rows, cols, dx, dy = [], [], [], []
    for s in np.flatnonzero(~lake.terminal):
        r, c = lake.coords(s)
        for a, (dr, dc) in enumerate(ACTION_DELTAS):
            p = policy[s, a]
            if p > 0.02:
                rows.append(r)
                cols.append(c)
                dx.append(0.4 * p * dc)
                dy.append(0.4 * p * dr)
    ax.quiver(
        cols,
        rows,
        dx,
        dy,
        angles="xy",
        scale_units="xy",
        scale=1,
        color="white",
        edgecolor="black",
        linewidth=0.5,
        width=0.012,
        headwidth=4,
        headlength=4,
    )


def draw_grid_mass(
    lake: Lake,
    mass: np.ndarray,
    *,
    ax: Axes | None = None,
    title: str | None = None,
    cmap: str = "magma",
    vmax: float | None = None,
    colorbar: bool = True,
    ticks: bool = True,
    numbers: bool = True,
) -> Axes:
    """Per-cell mass [S] (e.g. an explored-grid histogram) as a heatmap over the lake, each
    cell's value written on it unless ``numbers`` is False."""
    return draw_lake(
        lake,
        values=mass,
        ax=ax,
        title=title,
        cmap=cmap,
        vmin=0.0,
        vmax=vmax,
        numbers=numbers,
        colorbar=colorbar,
        ticks=ticks,
    )


def solution_figure(lake: Lake, values: np.ndarray, policy: np.ndarray, title: str) -> Figure:
    """One-panel figure of a solved lake, as ``make run`` writes it."""
    fig, ax = plt.subplots(figsize=(0.9 * lake.ncol + 2.0, 0.9 * lake.nrow + 1.0))
    draw_lake(lake, values=values, policy=policy, ax=ax, title=title)
    fig.tight_layout()
    return fig


def _as_grid(lake: Lake, values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    if values.shape != (lake.n_states,):
        raise ValueError(f"values must have shape ({lake.n_states},), got {values.shape}")
    return values.reshape(lake.nrow, lake.ncol)
