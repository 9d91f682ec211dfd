"""Experiment page: the Frozen Lake alignment experiment, run from the browser.

Settings start from the ``quick`` preset. A run goes through ``lakelab.mlp.runs.run_lake`` into
``results/app/<hash of the protocol>`` (``$LAKELAB_APP_RUNS`` overrides the root), so it is
resumable: more seeds or objectives train only what is missing, results already on disk show
at once, and an interrupted run keeps every finished (objective, seed) cell. The page shows
the run's figure (curves with 95% bands, explored grids per objective), the final table, a
chosen metric per seed, downloads of the files ``run_lake`` wrote, and the run's replay with
TRL's proxies beside the exact truth (``app_pages/replay.py``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import streamlit as st
from PIL import Image

from app_pages.common import hparam_inputs, init, method_entry, show_error, single_threaded_torch
from app_pages.replay import show_replay
from lakelab.mlp.config import CHOSEN_MODES, NEGATIVE_MODES, LakeConfig, config_from_dict, preset
from lakelab.mlp.runs import SUMMARY_METRICS, load_cell, run_lake, write_reports
from lakelab.registry import OBJECTIVES
from lakelab.rl_methods import RL_METHODS
from lakelab.rundir import cell_path

BASE = preset("quick")
DEFAULT_METHODS = ["sft", "ift", "dpo", "orpo"]  # the four the IFT paper compares
WIDGET_FIELDS = ("lake", "slippery", "methods", "chosen", "negatives", "steps", "seeds", "hparams")


def runs_root() -> Path:
    return Path(os.environ.get("LAKELAB_APP_RUNS", "results/app"))


def run_dir(config: LakeConfig) -> Path:
    """One directory per protocol; methods and seeds may grow inside it (``run_lake``)."""
    return runs_root() / hashlib.sha256(config.fingerprint().encode()).hexdigest()[:16]


def finished(config: LakeConfig, out: Path) -> bool:
    return all(
        load_cell(cell_path(out, m, s), config, m, s) is not None
        for m in config.methods
        for s in config.seed_list
    )


@st.cache_data(show_spinner=False, max_entries=32)
def results(config_json: str, out: str, _just_written: bool = False) -> dict:
    """The reports of a finished run, read into memory: a later run into the same directory
    rewrites its files for its own methods and seeds, what is shown here stays.

    ``run_lake`` ends by writing the reports, so right after a run (``_just_written``) they
    are only read; a run found on disk gets them written for exactly this config first.
    """
    config = config_from_dict(json.loads(config_json))
    names = ("config.json", "metrics.csv", "summary.csv", "figure.png")
    paths = {name.split(".")[0]: Path(out) / name for name in names}  # as write_reports names them
    if not _just_written:
        paths = write_reports(config, Path(out))
        plt.close("all")  # the report figure (lakelab.mlp.report draws with pyplot)
    files = {name: path.read_bytes() for name, path in paths.items()}
    return {
        "metrics": pd.read_csv(paths["metrics"]),
        "summary": pd.read_csv(paths["summary"]),
        "files": files,
        "picture": fit_width(files["figure"]),
    }


def fit_width(image: bytes, width: int = 1400) -> bytes:
    """The figure at most ``width`` pixels wide. Streamlit shrinks a wider image on every
    run, so the cached results hold a shrunk copy for display (speed: docs/benchmarks.md)."""
    picture = Image.open(io.BytesIO(image))
    if picture.width <= width:
        return image
    picture = picture.resize((width, round(picture.height * width / picture.width)), Image.LANCZOS)
    buf = io.BytesIO()
    picture.save(buf, format="PNG")
    return buf.getvalue()


def count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def train(config: LakeConfig, out: Path) -> None:
    bar = st.progress(0.0, text="fitting theta* ...")
    shown = -1

    def progress(done: int, total: int) -> None:
        nonlocal shown
        if (percent := 100 * done // total) != shown:
            shown = percent
            bar.progress(done / total, text=f"training: step {done} of {total}")

    run_lake(config, out, progress=progress)
    plt.close("all")  # the report figure (lakelab.mlp.report draws with pyplot)
    bar.empty()


def show_results(config_json: str, out: str, just_written: bool = False) -> None:
    r = results(config_json, out, just_written)
    config = json.loads(config_json)
    st.subheader("Final values: mean and 95% interval over seeds")
    st.dataframe(r["summary"].set_index("method"))
    buttons = st.columns(4)
    for col, (name, file, mime) in zip(
        buttons,
        [
            ("metrics", "metrics.csv", "text/csv"),
            ("summary", "summary.csv", "text/csv"),
            ("figure", "figure.png", "image/png"),
            ("config", "config.json", "application/json"),
        ],
        strict=True,
    ):
        col.download_button(
            f"Download {file}",
            r["files"][name],
            file_name=file,
            mime=mime,
            key=f"download_{name}",
            on_click="ignore",  # a download changes nothing: no re-run
        )
    st.image(
        r["picture"],
        caption=f"{out}/figure.png: top, each metric per step (mean and 95% band over seeds); "
        "bottom, each objective's explored grid (share of the input mass it trained on)",
    )
    metric = st.selectbox("Metric per step", SUMMARY_METRICS, key=init("exp_metric", "param_mse"))
    mean = r["metrics"].groupby(["step", "method"], sort=False)[metric].mean().reset_index()
    st.vega_lite_chart(  # a plain spec, not st.line_chart (speed: docs/benchmarks.md)
        mean,
        {
            "mark": {"type": "line", "point": True},
            "encoding": {
                "x": {"field": "step", "type": "quantitative"},
                "y": {
                    "field": metric,
                    "type": "quantitative",
                    "title": f"{metric}, mean over seeds",
                    "scale": {"zero": False},
                },
                "color": {"field": "method", "type": "nominal", "sort": None},
            },
        },
    )
    st.caption(f"Final {metric} per seed")
    final = r["metrics"][r["metrics"]["step"] == config["steps"]]
    st.dataframe(final.pivot(index="seed", columns="method", values=metric))
    show_replay(config_json, out, r["metrics"])


single_threaded_torch()
st.title("The Frozen Lake alignment experiment")
st.caption(
    "IFT paper, section 5.3, made exact: every objective fine-tunes the same seeded MLP "
    "theta_0 towards the soft optimum's theta*; parameter MSE (the paper's metric) beside exact "
    "function-space metrics. Defaults: the `quick` preset."
)
with st.sidebar:
    st.header("Protocol")
    values = {
        "lake": st.text_input(
            "Lake",
            key=init("exp_lake", BASE.lake),
            help="a preset (4x4, 8x8, two-paths) or map rows joined by '/'",
        ),
        "slippery": st.checkbox("Slippery", key=init("exp_slippery", BASE.slippery)),
        "methods": st.multiselect(
            "Objectives and RL methods",
            [*OBJECTIVES, *RL_METHODS],
            key=init("exp_methods", DEFAULT_METHODS),
            format_func=lambda m: method_entry(m).title,
            help="preference objectives learn from demos and negatives; the RL methods "
            "(REINFORCE, RLOO, GRPO, PPO) from episodes their own policy samples",
        ),
        "chosen": st.radio(
            "Chosen data",
            CHOSEN_MODES,
            key=init("exp_chosen", BASE.chosen),
            horizontal=True,
            help="demos: successful episodes of pi*; single: the one optimal route",
        ),
        "negatives": st.radio(
            "Rejected data",
            NEGATIVE_MODES,
            key=init("exp_negatives", BASE.negatives),
            horizontal=True,
            help="offline: a fixed pool (the sub-optimal route); online: sampled from the "
            "current policy every step, never a chosen trajectory",
        ),
        "steps": st.number_input("Steps", step=10, key=init("exp_steps", BASE.steps)),
        "seeds": st.number_input("Seeds", step=1, key=init("exp_seeds", BASE.seeds)),
    }
    hparams = {}
    for method in values["methods"]:
        if method_entry(method).hyperparams:
            with st.expander(f"{method_entry(method).title} hyper-parameters"):
                st.caption(method_entry(method).summary)
                if changed := hparam_inputs(method, "exp"):
                    hparams[method] = changed
    values["hparams"] = hparams
    values["methods"] = tuple(values["methods"])
    extra = st.text_area(
        "Other LakeConfig fields (JSON)",
        key=init("exp_extra", "{}"),
        help='e.g. {"lr": 0.02, "tau": 0.05, "n_demos": 128}; fields and their meaning: '
        "lakelab/config.py or `lakelab lake --help`",
    )

config, just_written = None, False
try:
    try:
        extra_fields = json.loads(extra or "{}")
    except json.JSONDecodeError as err:
        raise ValueError(f"the other LakeConfig fields are not valid JSON: {err}") from None
    if isinstance(extra_fields, dict) and (clash := sorted(set(extra_fields) & set(WIDGET_FIELDS))):
        raise ValueError(f"set {clash} with the widgets, not in the JSON")
    config = config_from_dict(values, base=config_from_dict(extra_fields, base=BASE))
except ValueError as err:
    show_error(err)

if config is not None:
    out = run_dir(config)
    config_json = json.dumps(config.to_dict(), sort_keys=True)
    done = finished(config, out)
    if not done:
        if st.button(
            f"Run: {count(len(config.methods), 'objective')} x {count(config.seeds, 'seed')} x "
            f"{count(config.steps, 'step')}",
            key="run_experiment",
            type="primary",
            help=f"results go to {out}; anything already there is reused",
        ):
            try:
                train(config, out)
                done = just_written = True
            except (ValueError, FloatingPointError) as err:
                show_error(err)
    if done:
        st.session_state["experiment_shown"] = (config_json, str(out))
        st.success(f"Finished: {out}", icon=":material/check:")

shown = st.session_state.get("experiment_shown")
if shown is not None:
    if config is None or shown[0] != config_json:
        st.info("Below: the last finished run, not the settings in the sidebar.")
    show_results(*shown, just_written=just_written)
