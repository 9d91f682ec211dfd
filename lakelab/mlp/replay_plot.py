"""Pictures of a replay: one frame per logged step, one column per method, three panels each.

    policy      the policy's arrows on the lake over the explored mass so far (the share of
                the inputs trained on before this step, per cell)
    batch       the trajectories the step trains on: chosen in green, rejected in red, line
                width growing with how many times the batch holds each one
    flow        where the probability went since step 0 (``lakelab.mlp.flow``): in each cell
                three bars, the mass gained (up) or lost (down) by the optimal actions
                (green), the other safe ones (blue) and the hole-risking ones (red); the
                title has their net change weighted by pi*'s visits

    fig = replay_figure(lake, replays, step, classes=classes, weights=weights)
    gif = replay_gif(lake, replays, classes=classes, weights=weights)   # bytes, one frame per step

    run = load_run(out, seed)   # all of these for a run directory; run.figure(step), run.gif()

Each frame is drawn with few artists (one image per panel, collections for arrows, lines and
bars) so that a frame takes a fraction of a second.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure

from lakelab.lakes import ACTION_DELTAS, Lake, make_lake
from lakelab.mlp.config import LakeConfig
from lakelab.mlp.flow import action_classes, mass_flow, mass_moved, optimum_weights
from lakelab.mlp.replay import Replay, load_replay
from lakelab.plotting import CELL_COLORS
from lakelab.solver import soft_value_iteration

__all__ = ["RunReplay", "load_run", "replay_figure", "replay_gif"]

FLOW_COLORS = ("#2e9d4b", "#3a7bd5", "#d7301f")  # optimal, other safe, hole-risking
GAP = 1  # cells between panels
SHORT = ("opt", "safe", "holes")  # the flow kinds in panel titles
PATH_COLORS = {"chosen": "#1a9641", "rejected": "#d7191c"}
ICE = "#e8f1f8"


@dataclass(frozen=True)
class RunReplay:
    """One seed of a run directory, ready to draw: its lake, each method's replay, and the
    action kinds and pi*-weights of ``lakelab.mlp.flow``. ``missing``: the methods without
    replay data (a run of an older lakelab), with the reason."""

    lake: Lake
    replays: dict[str, Replay]
    classes: np.ndarray
    weights: np.ndarray
    missing: dict[str, str]

    def figure(self, step: int, **kwargs) -> Figure:
        return replay_figure(self.lake, self.replays, step, classes=self.classes,
                             weights=self.weights, **kwargs)  # fmt: skip

    def gif(self, **kwargs) -> bytes:
        return replay_gif(self.lake, self.replays, classes=self.classes, weights=self.weights,
                          **kwargs)  # fmt: skip


def load_run(out: str | Path, seed: int, methods: list[str] | None = None) -> RunReplay:
    """The replay of ``seed`` in run directory ``out`` (its config.json), for ``methods``
    (default: the run's). ValueError if no method has replay data."""
    config = LakeConfig.load(Path(out) / "config.json")
    if seed not in config.seed_list:
        raise ValueError(f"{out} has no seed {seed}; its seeds: {config.seed_list}")
    unknown = sorted(set(methods or ()) - set(config.methods))
    if unknown:
        raise ValueError(f"{out} has no method {unknown}; its methods: {list(config.methods)}")
    lake = make_lake(config.lake, slippery=config.slippery, success_rate=config.success_rate)
    optimum = soft_value_iteration(lake, tau=config.tau, gamma=config.gamma)
    replays, missing = {}, {}
    for method in config.methods if methods is None else methods:
        try:
            replays[method] = load_replay(out, method, seed)
        except ValueError as err:
            missing[method] = str(err)
    if not replays:
        raise ValueError(next(iter(missing.values()), f"{out}: no methods to replay"))
    classes = action_classes(lake, gamma=config.gamma)
    weights = optimum_weights(lake, optimum.policy, gamma=config.gamma)
    return RunReplay(lake, replays, classes, weights, missing)


def replay_figure(
    lake: Lake,
    replays: dict[str, Replay],
    step: int,
    *,
    classes: np.ndarray,
    weights: np.ndarray,
    labels: bool = True,
    dpi: int = 80,
) -> Figure:
    """The frame of logged ``step``: a column per method of ``replays`` (one seed each), the
    module docstring's three panels from top to bottom. ``classes`` [S, A] and ``weights``
    [S]: the action kinds and state weights of ``lakelab.mlp.flow`` (the flow titles' totals).
    ``labels=False`` titles only the methods (text is a large share of a frame's time; the
    app shows the numbers in a table beside it).

    All panels share one Axes, each placed at its own offset in data coordinates: a figure
    of many small Axes spends most of its time setting them up."""
    methods = list(replays)
    W, H = lake.ncol + GAP, lake.nrow + GAP  # a panel and its margin (a title above), in cells
    inch = min(0.5, 2.6 / max(lake.nrow, lake.ncol))  # per cell
    fig = Figure(figsize=(inch * W * len(methods) + 0.2, inch * H * 3 + 0.5), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, 0.94))
    image = np.ones((3 * H, W * len(methods), 3))  # white between the panels
    vmax = max(float(_share(r.explored[r.index(step)]).max()) for r in replays.values()) or 1.0
    arrows, paths, bars = [], {"chosen": ([], []), "rejected": ([], [])}, ([], [])
    for j, method in enumerate(methods):
        r = replays[method]
        i = r.index(step)
        x0, rows = j * W, [p * H + GAP for p in range(3)]  # each panel's top-left cell
        panels = (_tiles(lake, _share(r.explored[i]), vmax), _tiles(lake), _tiles(lake))
        for y0, tiles in zip(rows, panels, strict=True):
            image[y0 : y0 + lake.nrow, x0 : x0 + lake.ncol] = tiles
        arrows.append(_arrows(lake, r.policies[i], x0, rows[0]))
        title = _paths(lake, r, step, x0, rows[1], paths)
        flow = mass_flow(r.policies[0], r.policies[i], classes)
        _bars(lake, flow, x0, rows[2], bars)
        net = mass_moved(flow, weights)
        captions = (
            f"{method}: policy, explored",
            title,
            "since step 0: " + " ".join(f"{k} {v:+.2f}" for k, v in zip(SHORT, net, strict=True)),
        )
        for y0, caption in zip(rows, captions if labels else captions[:1], strict=False):
            ax.text(x0 - 0.5 + lake.ncol / 2, y0 - 0.6, caption, ha="center", va="bottom",
                    fontsize=7 if len(caption) > 24 else 8)  # fmt: skip
    ax.imshow(image, interpolation="nearest", extent=(-0.5, image.shape[1] - 0.5,
              image.shape[0] - 0.5, -0.5))  # fmt: skip
    x, y, u, v = (np.concatenate(a) for a in zip(*arrows, strict=True))
    ax.quiver(x, y, u, v, angles="xy", scale_units="xy", scale=1, color="white",
              edgecolor="black", linewidth=0.4, width=0.0035, headwidth=3.5,
              headlength=3.5)  # fmt: skip
    for kind, (lines, widths) in paths.items():
        ax.add_collection(LineCollection(lines, linewidths=widths, colors=PATH_COLORS[kind],
                                         alpha=0.75, capstyle="round"))  # fmt: skip
    ax.add_collection(PolyCollection(bars[0], facecolors=bars[1], edgecolors="none"))
    ax.set_xlim(-0.5, image.shape[1] - 0.5)
    ax.set_ylim(image.shape[0] - 0.5, -0.5)
    ax.axis("off")
    fig.suptitle(f"step {step}", fontsize=9)
    return fig


def replay_gif(
    lake: Lake,
    replays: dict[str, Replay],
    *,
    classes: np.ndarray,
    weights: np.ndarray,
    ms_per_frame: int = 400,
    dpi: int = 70,
) -> bytes:
    """An animated GIF of the replay, one frame per logged step (the steps of the first
    replay), looping; for slides."""
    from PIL import Image

    steps = next(iter(replays.values())).steps.tolist()
    frames = []
    for step in steps:
        fig = replay_figure(lake, replays, step, classes=classes, weights=weights, dpi=dpi)
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        frames.append(Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3]))
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:],
                   duration=ms_per_frame, loop=0)  # fmt: skip
    return buffer.getvalue()


def _share(mass: np.ndarray) -> np.ndarray:
    total = mass.sum()
    return mass / total if total > 0 else mass


def _tiles(lake: Lake, values: np.ndarray | None = None, vmax: float = 1.0) -> np.ndarray:
    """The lake as an RGB image [nrow, ncol, 3]: holes dark, goal gold, the start blue, other
    cells ice, or ``values`` [S] in the magma colormap on the cells that are not terminal."""
    image = np.tile(to_rgb(ICE), (lake.n_states, 1))
    if values is not None:
        image = plt.get_cmap("magma")(np.clip(values / vmax, 0, 1) * 0.85 + 0.1)[:, :3]
    flat = "".join(lake.desc)
    for letter, color in CELL_COLORS.items():
        if values is None or letter in "HG":
            image[[c == letter for c in flat]] = to_rgb(color)
    return image.reshape(lake.nrow, lake.ncol, 3)


def _arrows(lake: Lake, policy: np.ndarray, x0: float, y0: float) -> tuple:
    """Quiver arguments of the policy's arrows in a panel at (x0, y0): one per action with
    probability above 0.02, its length proportional to the probability."""
    live = np.flatnonzero(~lake.terminal)
    r, c = np.divmod(live, lake.ncol)
    dr, dc = np.array(ACTION_DELTAS).T  # (A,) each
    p = policy[live]  # (L, A)
    keep = p > 0.02
    x, y = np.broadcast_to(c[:, None], p.shape)[keep], np.broadcast_to(r[:, None], p.shape)[keep]
    return x + x0, y + y0, (0.42 * p * dc)[keep], (0.42 * p * dr)[keep]


def _paths(lake: Lake, replay: Replay, step: int, x0: float, y0: float, out: dict) -> str:
    """Add the step's chosen and rejected trajectories to ``out[kind]`` (lines, widths);
    return the panel's title."""
    said = []
    for kind, offset in (("chosen", -0.12), ("rejected", 0.12)):
        found = replay.paths(step, kind)
        for states, actions, count in found:
            r, c = np.divmod(np.array(states), lake.ncol)
            dr, dc = ACTION_DELTAS[actions[-1]]  # the last move, half a cell
            xs = np.append(c, c[-1] + 0.5 * dc) + offset + x0
            ys = np.append(r, r[-1] + 0.5 * dr) + offset + y0
            out[kind][0].append(np.column_stack([xs, ys]))
            out[kind][1].append(0.8 + 1.6 * np.log1p(count))
        if found:
            said.append(f"{sum(n for *_, n in found)} {kind} ({len(found)} distinct)")
    return ", ".join(said) or "no batch (after the last update)"


def _bars(lake: Lake, flow: np.ndarray, x0: float, y0: float, out: tuple) -> None:
    """Add each cell's three flow bars, and a baseline, to ``out`` (boxes, colours)."""
    live = np.flatnonzero(~lake.terminal)
    r, c = np.divmod(live, lake.ncol)
    for k, color in enumerate((*FLOW_COLORS, "0.4")):
        x = c - 0.36 + 0.24 * k + x0
        # up is a gain: image rows grow downwards; the fourth "bar" is the thin baseline
        h = -0.45 * flow[live, k] if k < 3 else np.full(len(live), 0.03)
        w = 0.2 if k < 3 else 0.8
        if k == 3:
            x = c - 0.4 + x0
        for xi, yi, hi in zip(x, r + y0, h, strict=True):
            out[0].append([(xi, yi), (xi + w, yi), (xi + w, yi + hi), (xi, yi + hi)])
            out[1].append(color)
