"""The replay of a finished Frozen Lake run, on the experiment page (not a page of its own).

A step slider picks one of the run's logged steps; for that step, per method side by side
(``lakelab.mlp.replay_plot``): the policy's arrows over the explored mass, the batch's chosen
and rejected trajectories, and where the probability went since step 0
(``lakelab.mlp.flow``); below, that step's numbers from the run's own files, TRL's proxies
beside the exact truth on one time axis, and the alarms (``lakelab.mlp.alarms``). A play
button steps through the replay and a GIF of it downloads for slides.

Each frame is cached: once the run is loaded, moving the slider back to a step costs a cache
lookup, and a new step one frame (speed: docs/benchmarks.md).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from app_pages.common import init, png
from lakelab.mlp.alarms import PROXIES, alarms, has_proxies
from lakelab.mlp.flow import KINDS, PARTS, mass_flow, mass_moved
from lakelab.mlp.replay_plot import RunReplay, load_run
from lakelab.rundir import cell_path

TRUTH = ("success", "optimality", "kl_visitation", "logp_optimal", "logp_suboptimal")
"""What only an exact judge knows: success probability, V^pi/V*, KL to pi*, route log-probs."""
PLAY_SECONDS = 0.3  # per frame


def stamp(out: str) -> tuple:
    """The replay files of ``out`` with their sizes and times: part of every cache key below,
    so a run directory that was deleted and retrained is read again."""
    files = sorted(Path(out, "replay").glob("*.npz"))
    return tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files)


@st.cache_resource(show_spinner=False, max_entries=8)
def loaded(config_json: str, out: str, seed: int, files: tuple) -> RunReplay | str:
    """Everything the replay of one seed needs, read once (``lakelab.mlp.replay_plot``);
    lakelab's message if no method of the run has replay data. ``config_json`` and
    ``files`` (``stamp``) key the cache: a run directory may grow or be rewritten."""
    try:
        return load_run(out, seed, list(json.loads(config_json)["methods"]))
    except ValueError as err:
        return str(err)


@st.cache_data(show_spinner=False, max_entries=256)
def frame(config_json: str, out: str, seed: int, files: tuple, step: int) -> bytes:
    """The replay's picture at ``step`` as PNG bytes."""
    return png(loaded(config_json, out, seed, files).figure(step, labels=False), dpi=80)


@st.cache_data(show_spinner=False, max_entries=8)
def gif(config_json: str, out: str, seed: int, files: tuple) -> bytes:
    return loaded(config_json, out, seed, files).gif()


def step_numbers(metrics: pd.DataFrame, data: RunReplay, seed: int, step: int) -> pd.DataFrame:
    """Per method, at ``step`` of ``seed``: the truth and the proxies as logged in
    metrics.csv, and the probability the flow moved since step 0 (pi*-weighted)."""
    rows = metrics[(metrics["seed"] == seed) & (metrics["step"] == step)].set_index("method")
    table = rows[[c for c in (*TRUTH, *PROXIES) if c in rows]].copy()
    for method, replay in data.replays.items():
        flow = mass_flow(replay.policies[0], replay.at(step), data.classes)
        for part in PARTS:
            moved = mass_moved(flow, data.weights, part)
            for kind, value in zip(KINDS, moved, strict=True):
                table.loc[method, f"{kind} {part}"] = value
    return table.loc[list(data.replays)]


def proxies_chart(metrics: pd.DataFrame) -> dict:
    """Vega-Lite: each proxy and truth column, mean over seeds, per method on one time axis."""
    columns = [c for c in (*TRUTH, *PROXIES) if c in metrics]
    mean = metrics.groupby(["method", "step"], sort=False)[columns].mean().reset_index()
    long = mean.melt(["method", "step"], var_name="metric").dropna()
    long["kind"] = np.where(long["metric"].isin(PROXIES), "proxy (TRL)", "truth (exact)")
    long["metric"] = long["kind"] + ": " + long["metric"].str.removeprefix("batch/")
    order = [f"truth (exact): {c}" for c in TRUTH] + [
        f"proxy (TRL): {c.removeprefix('batch/')}" for c in PROXIES
    ]  # the truth on the first row, the proxies below
    return {
        "data": {"values": long.to_dict("records")},
        "facet": {"field": "metric", "type": "nominal", "title": None, "sort": order},
        "columns": 5,
        "resolve": {"scale": {"y": "independent"}},
        "spec": {
            "width": 125,
            "height": 100,
            "mark": {"type": "line", "point": {"size": 12}},
            "encoding": {
                "x": {"field": "step", "type": "quantitative"},
                "y": {
                    "field": "value",
                    "type": "quantitative",
                    "title": None,
                    "scale": {"zero": False},
                },
                "color": {"field": "method", "type": "nominal", "sort": None},
            },
        },
    }


def show_replay(config_json: str, out: str, metrics: pd.DataFrame) -> None:
    """The replay (a fragment: its widgets rerun only it), then the proxies beside the truth."""
    replay(config_json, out, metrics)
    st.subheader("TRL's proxies beside the exact truth")
    found = alarms(metrics, batch_size=json.loads(config_json)["batch_size"])
    for alarm in found:
        st.warning(f"**{alarm.method}** ({alarm.kind}): {alarm.message}", icon=":material/warning:")
    if not found and not has_proxies(metrics):
        st.info("No method of this run logs TRL's preference proxies (SFT, IFT and the RL "
                "methods do not): only the truth is shown.", icon=":material/info:")  # fmt: skip
    elif not found:
        st.success("No alarm: the proxies and the exact truth agree.", icon=":material/check:")
    st.vega_lite_chart(proxies_chart(metrics))


@st.fragment  # the replay's widgets rerun only this part of the page
def replay(config_json: str, out: str, metrics: pd.DataFrame) -> None:
    st.subheader("Replay: watch the policies change")
    seeds = sorted(metrics["seed"].unique().tolist())
    left, right = st.columns([1, 4])
    seed = left.selectbox("Seed", seeds, key=init("exp_replay_seed", seeds[0]))
    if seed not in seeds:  # a stored choice from another run
        seed = seeds[0]
    files = stamp(out)
    data = loaded(config_json, out, seed, files)
    missing = data.missing if isinstance(data, RunReplay) else dict.fromkeys(
        json.loads(config_json)["methods"], data)  # fmt: skip
    for method, message in missing.items():
        st.warning(f"No replay for {method}: {message}", icon=":material/history:")
    if missing and st.button(
        "Make them replayable",
        key="run_replay_retrain",
        help="removes their finished cells from this run directory, so that Run above "
        "trains them again, this time with replay data",
    ):
        for method in missing:
            for s in seeds:
                cell_path(Path(out), method, s).unlink(missing_ok=True)
        st.rerun()
    if not isinstance(data, RunReplay):  # no replay data at all: the page goes on
        return
    steps = next(iter(data.replays.values())).steps.tolist()
    key = init("exp_replay_step", steps[0])
    if "replay_goto" in st.session_state:  # where Play ended
        st.session_state[key] = st.session_state.pop("replay_goto")
    if st.session_state[key] not in steps:  # a stored step of another run
        st.session_state[key] = steps[0]
    step = right.select_slider("Step", steps, key=key, help="the logged steps of the run")
    buttons = st.columns([1, 1, 4])
    play = buttons[0].button("Play", key="run_replay_play", icon=":material/play_arrow:")
    if buttons[1].button("GIF for slides", key="run_replay_gif", icon=":material/movie:"):
        with st.spinner(f"drawing {len(steps)} frames ..."):
            st.session_state["replay_gif"] = (config_json, seed, gif(config_json, out, seed, files))
    made = st.session_state.get("replay_gif")
    if made is not None and made[:2] == (config_json, seed):
        buttons[2].download_button(
            "Download replay.gif",
            made[2],
            file_name="replay.gif",
            mime="image/gif",
            key="download_gif",
            on_click="ignore",  # a download changes nothing: no re-run
        )
    picture = st.empty()
    caption = (
        f"seed {seed}. Top: each method's policy (arrows, length = probability) over the "
        "share of inputs trained on so far. Middle: the trajectories this step trains on, "
        "chosen green, rejected red (RL methods: the episodes that reached the goal, and the "
        "others). Bottom: probability gained (up) or lost (down) since step 0 by the optimal "
        "(green), other safe (blue) and hole-risking (red) actions in each cell"
    )
    if play:
        for s in steps[steps.index(step) :]:
            picture.image(frame(config_json, out, seed, files, s), caption=f"step {s}: {caption}")
            time.sleep(PLAY_SECONDS)
        st.session_state["replay_goto"] = steps[-1]  # the slider, table and caption follow
        st.rerun()
    else:
        picture.image(frame(config_json, out, seed, files, step), caption=caption)
    st.caption(
        f"Step {step}, seed {seed}: the exact truth, TRL's proxies (from the batch of the step "
        "before) and the mass moved since step 0, weighted by pi*'s visits"
    )
    st.dataframe(step_numbers(metrics, data, seed, step).T)  # a column per method
    # draw the neighbouring frames now, after this one is on screen: the next slider move
    # finds them cached
    i = steps.index(step)
    for s in steps[i + 1 : i + 2] + steps[max(i - 1, 0) : i]:
        frame(config_json, out, seed, files, s)
