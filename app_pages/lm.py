"""LM page: a run of the LM track (``lakelab lm``) and the plans its models write.

Top: a run directory's summary (the base model and each objective: held-out success of greedy
plans in the real env, shortest-plan rate, token KL to pi*, log-likelihoods; mean and 95%
interval over seeds) and its figure. Without a run: the command that makes one, and a button
that runs the ``quick`` preset here, into ``$LAKELAB_APP_RUNS/app-lm`` (default
``results/app-lm``).

Bottom: one model of the run (the base model or an objective, one seed), loaded from its
checkpoint (``lakelab.lm.runs.load_checkpoint``: weights only, no code unpickled). A lake you
type becomes the prompt; the model's greedy plan, and optionally a few sampled ones, are
executed move by move in the real Gymnasium env (``lakelab.lm.metrics.execute``) and set beside
the solver's shortest plan.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import streamlit as st
import torch
from matplotlib.figure import Figure

from app_pages.common import init, png, show_error, single_threaded_torch
from lakelab.lakes import Lake, make_lake, random_lake
from lakelab.lm.config import LMConfig, preset
from lakelab.lm.data import (
    LakeTask,
    encode_plans,
    make_task,
    optimal_plan,
    rejected_plan,
    soft_targets,
)
from lakelab.lm.metrics import HeldOut, evaluate, execute
from lakelab.lm.model import TinyGPT, generate
from lakelab.lm.runs import BASE, checkpoint_path, load_cell, load_checkpoint, run_lm
from lakelab.lm.tokenizer import decode, encode, parse_plan, plan_text, prompt_text
from lakelab.plotting import draw_lake

RESULTS = Path("results")
DEFAULT_RUN = RESULTS / "lm-default"
QUICK_COMMAND = ".venv/bin/lakelab lm --preset quick --out results/lm-quick"
GYMNASIUM_4X4 = "SFFF\nFHFH\nFFFH\nHFFG"
OUTCOMES = {
    "goal": "reached the goal",
    "hole": "fell in a hole",
    "out": "ran out of moves",
    "none": "not a plan",
}


def app_run_dir() -> Path:
    """Where the page's own quick run goes."""
    root = os.environ.get("LAKELAB_APP_RUNS")
    return Path(root) / "app-lm" if root else RESULTS / "app-lm"


def read_config(out: Path) -> LMConfig:
    """The LMConfig of a run directory; ValueError if it holds none (or another kind of run)."""
    path = out / "config.json"
    try:
        fields = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{out} is not a run directory of `lakelab lm`: {err}") from None
    if not isinstance(fields, dict):
        raise ValueError(f"{path} does not hold a config (a JSON object)")
    try:
        return LMConfig(**fields)
    except TypeError as err:  # fields of another experiment, e.g. a `lakelab lake` run
        raise ValueError(f"{path} is not an LM config ({err})") from None


def find_runs() -> list[Path]:
    """Run directories of ``lakelab lm`` one level under results/ and $LAKELAB_APP_RUNS;
    results/lm-default first."""
    roots = [RESULTS, app_run_dir().parent]
    found = []
    for root in dict.fromkeys(roots):
        for config in sorted(root.glob("*/config.json")) if root.is_dir() else []:
            try:
                read_config(config.parent)
            except ValueError:
                continue
            found.append(config.parent)
    return sorted(found, key=lambda p: p != DEFAULT_RUN)


def stamp(path: Path) -> int:
    """A file's modification time (0 if absent): cache keys change when a run rewrites it."""
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0


@st.cache_data(show_spinner=False, max_entries=16)
def reports(out: str, mtime: int) -> tuple[pd.DataFrame, bytes | None]:
    """summary.csv and figure.png of a finished run, read into memory (``mtime``: of
    summary.csv, so a run that rewrites it is read again)."""
    figure = Path(out) / "figure.png"
    summary = pd.read_csv(Path(out) / "summary.csv").set_index("method")
    return summary, figure.read_bytes() if figure.exists() else None


def finished_cells(config: LMConfig, out: Path) -> dict[str, list[int]]:
    """Per method (base first): the seeds whose cell is finished and checkpoint present."""
    return {
        m: [
            s
            for s in config.seed_list
            if load_cell(out, config, m, s) is not None and checkpoint_path(out, m, s).exists()
        ]
        for m in (BASE, *config.methods)
    }


@st.cache_resource(show_spinner=False, max_entries=8)
def load_model(out: str, method: str, seed: int, config_json: str, mtime: int) -> TinyGPT:
    """The model of a checkpoint (``mtime``: the checkpoint's, so a re-trained one reloads)."""
    config = LMConfig(**json.loads(config_json))
    model = load_checkpoint(checkpoint_path(Path(out), method, seed), config)
    if model is None:
        raise ValueError(
            f"the checkpoint of {method}, seed {seed} in {out} is missing, unreadable or from "
            "another protocol"
        )
    return model.eval()


def read_lake(text: str, size: int) -> Lake:
    """The typed map as a deterministic lake the run's models can read."""
    lake = make_lake(text)
    if (lake.nrow, lake.ncol) != (size, size):
        raise ValueError(
            f"the models of this run read {size}x{size} lakes; this map is "
            f"{lake.nrow}x{lake.ncol} (type {size} rows of {size} cells)"
        )
    return lake


def outcome(lake: Lake, task: LakeTask, response: str) -> dict:
    """A response executed in the real Gymnasium env, and the states it visits."""
    plan = parse_plan(response)
    row = {"response": response, "outcome": OUTCOMES["none"], "moves made": 0}
    row |= {"plan length": None, "shortest": False, "states": [lake.start]}
    if plan is None:
        return row
    reached, moves = execute(lake.make_env(), plan)
    states = [lake.start]
    for a in plan[:moves]:  # the cells the moves made pass through (the lake is deterministic)
        states.append(task.step(states[-1], a))
    if reached:
        kind = "goal"
    else:
        kind = "hole" if lake.holes[states[-1]] else "out"
    row |= {"outcome": OUTCOMES[kind], "moves made": moves, "plan length": len(plan)}
    return row | {"shortest": task.is_optimal(plan), "states": states}


@st.cache_data(show_spinner=False, max_entries=64)
def plans(
    out: str,
    method: str,
    seed: int,
    config_json: str,
    mtime: int,
    desc: tuple[str, ...],
    samples: int,
    sample_seed: int,
    temperature: float,
) -> dict:
    """The greedy plan and ``samples`` sampled ones for the lake ``desc``, each executed, the
    solver's shortest plan, and the held-out metrics of this one lake."""
    config = LMConfig(**json.loads(config_json))
    model = load_model(out, method, seed, config_json, mtime)
    lake = make_lake(list(desc))
    task = make_task(lake, config.gamma)
    prompt = torch.tensor([encode(prompt_text(desc))])  # (1, P)
    max_new = config.max_moves + 1
    greedy = generate(model, prompt, max_new)  # (1, n)
    rows = {"greedy": outcome(lake, task, decode(greedy[0]))}
    if samples:
        gen = torch.Generator().manual_seed(sample_seed)
        sampled = generate(
            model,
            prompt.expand(samples, -1),
            max_new,
            greedy=False,
            temperature=temperature,
            generator=gen,
        )  # (samples, n)
        for k, ids in enumerate(sampled, start=1):
            response = decode(ids).rstrip("_")  # rows that ended early are padded
            rows[f"sample {k}"] = outcome(lake, task, response)
    best = optimal_plan(task, None)
    solver = outcome(lake, task, plan_text(best))
    # this lake as a one-lake held-out set: the same metrics as the run's summary
    rng = np.random.default_rng(0)
    chosen = encode_plans([task], [best], config.seq_len)
    one = HeldOut(
        (task,),
        chosen,
        encode_plans([task], [rejected_plan(task, rng, config.max_moves, 0.5)], config.seq_len),
        soft_targets([task], [best], chosen, config.tau, config.gamma),
        (lake.make_env(),),
        max_new,
    )
    return {
        "rows": rows,
        "optimal": solver["response"],
        "optimal_states": solver["states"],
        "shortest": task.shortest,
        "metrics": evaluate(model, one),
    }


@st.cache_data(show_spinner=False, max_entries=64)
def path_picture(desc: tuple[str, ...], paths: tuple[tuple[str, tuple[int, ...]], ...]) -> bytes:
    """One panel per (title, visited states): the lake with the path drawn through it."""
    lake = make_lake(list(desc))
    fig = Figure(figsize=(4.2 * len(paths), 4.2))
    axes = fig.subplots(1, len(paths), squeeze=False)[0]
    for ax, (title, states), color in zip(axes, paths, ("#d62728", "#2ca02c"), strict=False):
        draw_lake(lake, ax=ax)
        ax.set_title(title, fontsize=9)
        rows, cols = zip(*(lake.coords(s) for s in states), strict=True)
        ax.plot(cols, rows, "-o", color=color, linewidth=3, markersize=6, alpha=0.8)
        ax.plot(cols[-1], rows[-1], "X", color=color, markersize=14, markeredgecolor="black")
    fig.tight_layout()
    return png(fig)


def set_random_map(size: int, p_frozen: float) -> None:
    """Button callback: a seeded random lake of the run's kind in the map box."""
    seed = int(st.session_state["lm_lake_seed"])
    st.session_state["lm_map"] = "\n".join(random_lake(size, p_frozen=p_frozen, seed=seed).desc)


def quick_run(out: Path) -> None:
    bar = st.progress(0.0, text="pre-training the base model ...")
    shown = -1

    def progress(done: int, total: int) -> None:
        nonlocal shown
        if (percent := 100 * done // total) != shown:  # one message per percent, not per step
            shown = percent
            bar.progress(done / total, text=f"training: step {done} of {total}")

    run_lm(preset("quick"), out, progress=progress)
    plt.close("all")  # the run's figure (lakelab.lm.report draws with pyplot)
    bar.empty()


# -- the run --------------------------------------------------------------------------------

single_threaded_torch()
st.title("A tiny transformer that plans on Frozen Lake")
st.caption(
    "The LM track: a lake written as text is the prompt, a plan of moves (L D R U) and an end "
    "token the response. A base model pre-trained on mixed-quality plans is aligned with each "
    "objective; every metric is on held-out lakes, plans executed in the real Gymnasium env."
)
runs = find_runs()
if not runs and not st.session_state.get("lm_path"):
    st.info(
        "No run of the LM track found under `results/`. Make one from a shell (about a minute "
        f"on a CPU):\n\n`{QUICK_COMMAND}`\n\nor run the quick preset here, into "
        f"`{app_run_dir()}`."
    )
    if st.button("Run the quick preset", key="run_lm_quick", type="primary"):
        try:
            quick_run(app_run_dir())
        except (ValueError, FloatingPointError) as err:  # Diverged names method, seed, step
            show_error(err)
        else:
            st.rerun()  # draw the page again, now with the run

with st.sidebar:
    st.header("Run")
    choices = [str(p) for p in runs]
    if choices and st.session_state.get("lm_run") not in choices:
        st.session_state["lm_run"] = choices[0]
    chosen = st.selectbox("Run directory", choices, key="lm_run") if choices else None
    typed = st.text_input(
        "... or the path of a run directory",
        key=init("lm_path", ""),
        help="any directory `lakelab lm --out` wrote",
    )
if not (typed.strip() or chosen):
    st.stop()
out = Path(typed.strip() or chosen)
try:
    config = read_config(out)
except ValueError as err:
    show_error(err)
    st.stop()
config_json = json.dumps(config.to_dict(), sort_keys=True)

st.subheader(f"`{out}`: mean and 95% interval over seeds")
st.caption(
    f"{config.size}x{config.size} lakes, {config.n_train} for training, {config.n_test} "
    f"held out; model {config.model}; {config.pretrain_steps} pre-training and "
    f"{config.align_steps} alignment steps; negatives {config.negatives}; "
    f"{config.seeds} seed(s). *_ci95 is the half-width of the 95% t-interval."
)
done = finished_cells(config, out)
n_done, n_all = sum(map(len, done.values())), len(done) * config.seeds
if (out / "summary.csv").exists():
    summary, figure = reports(str(out), stamp(out / "summary.csv"))
    st.dataframe(summary)
    if figure is not None:
        st.image(figure, caption=f"{out}/figure.png")
if n_done < n_all:
    st.info(
        f"{n_done} of {n_all} (model, seed) cells are finished; summary.csv and figure.png are "
        "written when the run ends (`lakelab lm --out` with the same settings resumes it). "
        "Finished models can be tried below."
    )

# -- one model, one lake --------------------------------------------------------------------

st.header("Plans for a lake you type")
with st.sidebar:
    st.header("Model")
    methods = [m for m, seeds in done.items() if seeds]
    if not methods:
        st.warning("no finished model in this run yet")
        st.stop()
    if st.session_state.get("lm_method") not in methods:
        st.session_state["lm_method"] = methods[1] if len(methods) > 1 else methods[0]
    method = st.selectbox("Model", methods, key="lm_method", help="base: before alignment")
    seeds = done[method]
    if st.session_state.get("lm_seed") not in seeds:
        st.session_state["lm_seed"] = seeds[0]
    seed = st.selectbox("Seed", seeds, key="lm_seed")
    st.header("Sampling")
    samples = st.number_input(
        "Sampled plans", min_value=0, max_value=32, step=1, key=init("lm_samples", 4)
    )
    temperature = st.slider(
        "Temperature", 0.1, 2.0, step=0.1, key=init("lm_temperature", 1.0), disabled=not samples
    )
    sample_seed = st.number_input(
        "Sampling seed", min_value=0, step=1, key=init("lm_sample_seed", 0), disabled=not samples
    )

left, right = st.columns([1, 2])
with left:
    default_map = GYMNASIUM_4X4 if config.size == 4 else None
    if default_map is None:
        default_map = "\n".join(random_lake(config.size, p_frozen=config.p_frozen, seed=0).desc)
    text = st.text_area(
        f"Map: {config.size} rows of {config.size} cells (or '/' between rows)",
        key=init("lm_map", default_map),
        height=40 + 24 * config.size,
        help="S start, F frozen, H hole, G goal. The run's lakes have S top-left, G bottom-right",
    )
    st.number_input("Random lake seed", min_value=0, step=1, key=init("lm_lake_seed", 1))
    st.button(
        "Random lake",
        key="run_random_lake",
        on_click=set_random_map,
        args=(config.size, config.p_frozen),
        help=f"lakelab.lakes.random_lake({config.size}, p_frozen={config.p_frozen}, seed=...)",
    )
try:
    lake = read_lake(text, config.size)
    result = plans(
        str(out),
        method,
        int(seed),
        config_json,
        stamp(checkpoint_path(out, method, seed)),
        lake.desc,
        int(samples),
        int(sample_seed),
        float(temperature),
    )
except ValueError as err:
    with right:
        show_error(err)
    st.stop()

greedy = result["rows"]["greedy"]
with right:
    st.markdown(f"Prompt: `{prompt_text(lake.desc)}`  \nGreedy response: `{greedy['response']}`")
    cols = st.columns([2, 1])  # the outcome is a phrase: a wide column of its own
    cols[0].metric("Greedy plan", greedy["outcome"])
    cols[1].metric("Is a shortest plan", "yes" if greedy["shortest"] else "no")
    cols = st.columns(3)
    cols[0].metric("Moves made", greedy["moves made"])
    cols[1].metric("Shortest plan (solver)", result["shortest"])
    cols[2].metric("Solver's plan", result["optimal"])
    m = result["metrics"]
    cols = st.columns(3)
    cols[0].metric("Token KL to pi* (optimal plan)", f"{m['token_kl']:.4f}")
    cols[1].metric("log p(optimal plan)", f"{m['logp_chosen']:.3f}")
title = f"{method}, seed {seed}, greedy: {greedy['outcome']}, {greedy['moves made']} moves"
solver_title = f"solver: a shortest plan, {result['shortest']} moves"
paths = ((title, tuple(greedy["states"])), (solver_title, tuple(result["optimal_states"])))
st.image(path_picture(lake.desc, paths))
table = pd.DataFrame.from_dict(result["rows"], orient="index").drop(columns="states")
table["plan length"] = table["plan length"].astype("Int64")  # None: not a plan
table.index.name = "plan"
st.dataframe(table)
st.caption(
    "Each response is cut at its end token '.' and executed in Gymnasium's FrozenLake-v1 "
    "(deterministic): moves after a hole or the goal are not made. 'not a plan': a character "
    "other than a move before the end token. A shortest plan reaches the goal in the "
    f"solver's number of moves and then ends. Generation stops after {config.max_moves + 1} "
    "tokens. Token KL and log p: along the solver's plan (lowest move at ties), as the run's "
    "held-out metrics."
)
