"""The Streamlit app, driven like a user would with AppTest: every page renders, widgets change
what is rendered (checked against closed forms and lakelab's own files), bad input shows
lakelab's error while everything computed before stays."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch

from lakelab.lakes import make_lake, random_lake
from lakelab.lm.config import PRESETS as LM_PRESETS
from lakelab.lm.metrics import execute
from lakelab.lm.model import generate
from lakelab.lm.runs import checkpoint_path, load_checkpoint, run_lm
from lakelab.lm.tokenizer import ACTION_IDS, END_ID, decode, encode, parse_plan, prompt_text
from lakelab.mlp.config import config_from_dict
from lakelab.mlp.runs import load_cell
from lakelab.registry import OBJECTIVES
from lakelab.rundir import cell_path
from lakelab.solver import soft_value_iteration
from tests.oracles import shortest_moves, walk_plan

APP = Path(__file__).resolve().parents[1] / "app.py"
EXPERIMENT = "app_pages/experiment.py"
EXPLORER = "app_pages/explorer.py"
LAKE = "app_pages/lake.py"
LM = "app_pages/lm.py"
pytestmark = pytest.mark.slow  # the app's pages (Streamlit's import and reruns): make test only


@pytest.fixture
def start(tmp_path, monkeypatch):
    """Open the app on a page, as a visit to its URL would, with experiment runs going to a
    temporary directory."""
    monkeypatch.setenv("LAKELAB_APP_RUNS", str(tmp_path))

    def open_page(page: str = LAKE):
        app_test = pytest.importorskip("streamlit.testing.v1").AppTest  # imported when used
        at = app_test.from_file(str(APP), default_timeout=120).switch_page(page).run()
        assert not at.exception
        return at

    return open_page


@pytest.fixture
def app(start):
    """The app on its first page, the lake page."""
    return start()


def metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def errors(at) -> list[str]:
    return [e.value for e in at.error]


# -- lake page --------------------------------------------------------------------------------


def test_lake_page_renders_optimal_and_soft_values(app):
    m = metrics(app)
    # 4x4 deterministic, gamma 0.95: the goal is 6 moves away, V* = 0.95^5
    assert m["V*(start)"] == f"{0.95**5:.4f}"
    assert m["Success probability, optimal policy"] == "1.0000"
    # soft optimum: V* <= V_soft <= V* + tau log 4 / (1 - gamma) (entropy bonus per step)
    soft = float(m["Soft V(start), tau = 0.02"])
    assert 0.95**5 < soft <= 0.95**5 + 0.02 * math.log(4) / 0.05
    assert len(app.image) == 2  # hard and soft pictures


@pytest.mark.slow  # keeps make test-fast under 30 s
def test_lake_widgets_change_the_values(app):
    app.selectbox(key="lake_preset").select("two-paths").run()
    assert metrics(app)["V*(start)"] == f"{0.95**7:.4f}"  # 8 moves
    app.checkbox(key="lake_slippery").check().run()
    app.slider(key="lake_gamma").set_value(1.0).run()
    assert not app.exception
    m = metrics(app)
    assert m["Success probability, optimal policy"] == "1.0000"  # undiscounted: always arrives
    # the soft optimum needs gamma < 1: lakelab's error in place, the hard optimum stays
    assert any("soft value iteration needs gamma < 1" in e for e in errors(app))
    assert not any(label.startswith("Soft V") for label in m)
    app.slider(key="lake_gamma").set_value(0.9).run()
    assert not app.error and "Soft V(start), tau = 0.02" in metrics(app)


@pytest.mark.slow  # keeps make test-fast under 30 s
def test_random_lake_follows_its_seed(app):
    app.radio(key="lake_source").set_value("random").run()  # default: 6x6, seed 0
    rows = random_lake(6, p_frozen=0.8, seed=0).desc
    assert "/".join(rows) in app.caption[-1].value
    assert metrics(app)["V*(start)"] == f"{0.95 ** (shortest_moves(rows) - 1):.4f}"
    app.slider(key="lake_size").set_value(5)
    app.number_input(key="lake_seed").set_value(5).run()
    rows = random_lake(5, p_frozen=0.8, seed=5).desc
    assert "/".join(rows) in app.caption[-1].value
    assert metrics(app)["V*(start)"] == f"{0.95 ** (shortest_moves(rows) - 1):.4f}"
    # almost all holes: lakelab gives up after a bounded number of tries, and says so
    app.slider(key="lake_p_frozen").set_value(0.05).run()
    assert not app.exception
    assert "no 5x5 lake with a reachable goal found in 1000 tries" in errors(app)[0]


def test_invalid_custom_map_shows_lakelab_error_and_the_app_recovers(app):
    app.radio(key="lake_source").set_value("custom").run()
    app.text_area(key="lake_map").input("SFX\nFFG").run()
    assert not app.exception
    assert "unknown character 'X' at row 0, column 2" in errors(app)[0]
    assert not app.metric
    app.text_area(key="lake_map").input("SFF/FHF/FFG").run()
    assert not app.error
    assert metrics(app)["V*(start)"] == f"{0.95**3:.4f}"  # 4 moves


def test_settings_survive_a_visit_to_another_page(app):
    app.selectbox(key="lake_preset").select("two-paths")
    app.slider(key="lake_gamma").set_value(0.9).run()
    app.switch_page(EXPERIMENT).run()
    assert app.title[0].value == "The Frozen Lake alignment experiment"
    app.switch_page(LAKE).run()
    assert app.selectbox(key="lake_preset").value == "two-paths"
    assert app.slider(key="lake_gamma").value == 0.9
    assert metrics(app)["V*(start)"] == f"{0.9**7:.4f}"


# -- objective explorer -----------------------------------------------------------------------


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_explorer_matches_closed_form_gradients(start):
    app = start(EXPLORER)
    assert not app.exception and not app.error
    table = app.dataframe[0].value
    assert list(table.index) == list(OBJECTIVES)  # every objective, TRL's family too
    c, r = math.log(0.6), math.log(0.3)  # the default probe point
    # DPO, beta 0.1, equal reference log-probs: dL/dS_w = -beta sigmoid(-beta (S_w - S_l))
    g = -0.1 * sigmoid(-0.1 * (c - r))
    assert table.loc["dpo", "dL/dlogp_chosen"] == pytest.approx(g, rel=1e-9)
    assert table.loc["dpo", "dL/dlogp_rejected"] == pytest.approx(-g, rel=1e-9)
    # probability flow: the speeds' ratio is p_chosen / p_rejected
    assert table.loc["dpo", "|rejected| / |chosen|"] == pytest.approx(2.0)
    # ASFT, lam = beta = 1: L = -2 A_w - log(1 - exp(A_l))
    assert table.loc["asft", "dL/dlogp_chosen"] == pytest.approx(-2.0)
    assert table.loc["asft", "dL/dlogp_rejected"] == pytest.approx(0.3 / 0.7)
    assert table.loc["sft", "dL/dlogp_chosen"] == pytest.approx(-1.0)
    assert table.loc["sft", "dL/dlogp_rejected"] == 0.0
    assert len(app.latex) == 2 and "DPO" in app.latex[0].value  # the default DPO and ASFT
    assert len(app.image) == 2


@pytest.mark.slow  # keeps make test-fast under 30 s
def test_explorer_widgets_change_the_table_and_plots(start):
    app = start(EXPLORER)
    before = app.dataframe[0].value
    app.number_input(key="obj_hp_dpo_beta").set_value(0.5)
    app.radio(key="obj_flow").set_value("logp")
    app.slider(key="obj_p_chosen").set_value(0.8).run()
    table = app.dataframe[0].value
    c, r = math.log(0.8), math.log(0.3)
    assert table.loc["dpo", "dL/dlogp_chosen"] == pytest.approx(-0.5 * sigmoid(-0.5 * (c - r)))
    # flow on log-probs: the ratio is p_rejected / p_chosen
    assert table.loc["dpo", "|rejected| / |chosen|"] == pytest.approx(0.3 / 0.8)
    assert table.loc["asft", "loss"] != before.loc["asft", "loss"]  # the probe point moved
    app.multiselect(key="obj_names").set_value(["sft", "dpo", "simpo"]).run()
    assert [x.value.strip("$\n") for x in app.latex] == [
        OBJECTIVES[m].latex for m in ("sft", "dpo", "simpo")
    ]
    assert len(app.image) == 3


def test_explorer_out_of_range_value_shows_lakelab_error(start):
    app = start(EXPLORER)
    app.number_input(key="obj_hp_dpo_beta").set_value(0.0).run()
    assert not app.exception
    assert errors(app) == ["dpo: beta must be in (0, inf), got 0.0"]
    table = app.dataframe[0].value
    assert "dpo" not in table.index and "asft" in table.index  # the others keep working


# -- experiment page --------------------------------------------------------------------------


@pytest.mark.slow  # trains a short run
def test_experiment_page_trains_an_rl_method_beside_an_objective(start, tmp_path):
    app = start(EXPERIMENT)
    app.multiselect(key="exp_methods").set_value(["sft", "grpo"]).run()
    app.number_input(key="exp_seeds").set_value(1)
    app.number_input(key="exp_steps").set_value(10)
    app.selectbox(key="exp_hp_grpo_aggregation").select("grpo")
    app.number_input(key="exp_hp_grpo_group_size").set_value(4.0).run()
    app.button(key="run_experiment").click().run()
    assert not app.exception and not app.error
    (out,) = tmp_path.iterdir()
    config = config_from_dict(json.loads((out / "config.json").read_text()))
    assert config.methods == ("sft", "grpo")
    assert config.hparams == {"grpo": {"aggregation": "grpo", "group_size": 4.0}}
    assert list(app.dataframe[0].value.index) == ["sft", "grpo"]
    assert "optimality_mean" in app.dataframe[0].value.columns
    app.number_input(key="exp_hp_grpo_group_size").set_value(1.0).run()
    assert errors(app) == ["grpo: group_size must be in [2, inf), got 1.0"]


@pytest.mark.slow  # trains two runs: ~2 s
def test_experiment_page_runs_and_shows_lakelab_results(start, tmp_path):
    app = start(EXPERIMENT)
    assert not app.exception and not app.error and not app.dataframe
    assert app.button(key="run_experiment").label == "Run: 4 objectives x 3 seeds x 60 steps"

    app.multiselect(key="exp_methods").set_value(["sft", "dpo"])
    app.number_input(key="exp_seeds").set_value(1)
    app.number_input(key="exp_steps").set_value(10)
    app.number_input(key="exp_hp_dpo_beta").set_value(0.5).run()
    assert app.button(key="run_experiment").label == "Run: 2 objectives x 1 seed x 10 steps"
    app.button(key="run_experiment").click().run()
    assert not app.exception and not app.error

    # the run directory is lakelab's: config.json, one cell per (method, seed), the reports
    (out,) = tmp_path.iterdir()
    config = config_from_dict(json.loads((out / "config.json").read_text()))
    assert config.methods == ("sft", "dpo") and config.steps == 10
    assert config.hparams == {"dpo": {"beta": 0.5}}
    cells = {m: load_cell(cell_path(out, m, 0), config, m, 0) for m in config.methods}
    final = {m: cell["rows"][-1] for m, cell in cells.items()}
    summary = app.dataframe[0].value
    assert list(summary.index) == ["sft", "dpo"]
    for m in config.methods:
        assert summary.loc[m, "param_mse_mean"] == pytest.approx(final[m]["param_mse"])
    per_seed = app.dataframe[1].value
    assert per_seed.loc[0, "dpo"] == pytest.approx(final["dpo"]["param_mse"])
    app.selectbox(key="exp_metric").select("success").run()
    assert app.dataframe[1].value.loc[0, "sft"] == pytest.approx(final["sft"]["success"])
    labels = [b.label for b in app.get("download_button")]
    assert labels == [
        f"Download {f}" for f in ("metrics.csv", "summary.csv", "figure.png", "config.json")
    ]
    assert len(app.image) == 2  # figure.png and the replay's frame

    # bad input: lakelab's message, and the finished results stay on the page
    app.number_input(key="exp_hp_dpo_beta").set_value(0.0).run()
    assert errors(app) == ["dpo: beta must be in (0, inf), got 0.0"]
    assert list(app.dataframe[0].value.index) == ["sft", "dpo"]
    app.text_input(key="exp_lake").input("SFX/FFG").run()
    assert "unknown character 'X' at row 0, column 2" in errors(app)[0]
    app.text_area(key="exp_extra").input('{"learning_rate": 1}').run()
    assert "unknown config fields ['learning_rate']" in errors(app)[0]

    # back to the finished settings: shown at once from disk, nothing retrained
    stamp = cell_path(out, "sft", 0).stat().st_mtime_ns
    app.text_area(key="exp_extra").input("{}")
    app.text_input(key="exp_lake").input("two-paths")
    app.number_input(key="exp_hp_dpo_beta").set_value(0.5).run()
    assert not app.error and [b.key for b in app.button] == ["run_replay_play", "run_replay_gif"]
    assert app.dataframe[1].value.loc[0, "sft"] == pytest.approx(final["sft"]["success"])

    # one more seed: run_lake resumes the same directory and trains only the new cells
    app.number_input(key="exp_seeds").set_value(2).run()
    app.button(key="run_experiment").click().run()
    assert not app.exception and not app.error
    assert cell_path(out, "sft", 0).stat().st_mtime_ns == stamp
    assert list(app.dataframe[1].value.index) == [0, 1]
    assert app.dataframe[0].value.loc["sft", "seeds"] == 2


@pytest.mark.slow  # trains a short run
def test_experiment_replay_slider_changes_the_picture_to_the_runs_numbers(start, tmp_path):
    app = start(EXPERIMENT)
    app.multiselect(key="exp_methods").set_value(["sft", "dpo"])
    app.radio(key="exp_chosen").set_value("single")
    app.radio(key="exp_negatives").set_value("offline")
    app.number_input(key="exp_seeds").set_value(1)
    app.number_input(key="exp_steps").set_value(40).run()
    app.button(key="run_experiment").click().run()
    assert not app.exception and not app.error
    (out,) = tmp_path.iterdir()
    metrics = pd.read_csv(out / "metrics.csv")
    slider = app.select_slider(key="exp_replay_step")
    assert list(slider.options) == ["0", "20", "40"] and slider.value == 0

    def shown() -> tuple[bytes, pd.DataFrame]:
        return app.image[1].value, app.dataframe[2].value  # the frame, the step's numbers

    def logged(step: int, column: str) -> pd.Series:
        rows = metrics[(metrics.step == step) & (metrics.seed == 0)]
        return rows.set_index("method")[column]

    first, numbers = shown()
    assert list(numbers.columns) == ["sft", "dpo"]
    pd.testing.assert_series_equal(numbers.loc["success"], logged(0, "success"), check_names=False)
    for step in (40, 20):
        app.select_slider(key="exp_replay_step").set_value(step).run()
        assert not app.exception
        frame, numbers = shown()
        assert frame != first  # another picture
        for column in ("success", "logp_optimal", "batch/rewards/margins"):
            pd.testing.assert_series_equal(
                numbers.loc[column].dropna(), logged(step, column).dropna(), check_names=False
            )
        net = numbers.loc[["optimal net", "other safe net", "hole-risking net"]]
        assert np.allclose(net.sum(), 0, atol=1e-6) and (net.abs().sum() > 0.01).all()
    # the alarms are lakelab's, for this run's metrics
    from lakelab.mlp.alarms import alarms

    config = json.loads((out / "config.json").read_text())
    found = alarms(metrics, batch_size=config["batch_size"])
    assert ("dpo", "displaced") in [(a.method, a.kind) for a in found]  # DPO on one route
    assert [w.value.split(": ", 1)[1] for w in app.warning] == [a.message for a in found]
    # play: every frame from the slider's step (20) to the end; the slider and the numbers
    # follow to the last step
    app.button(key="run_replay_play").click().run()
    assert not app.exception and app.select_slider(key="exp_replay_step").value == 40
    pd.testing.assert_series_equal(
        app.dataframe[2].value.loc["success"], logged(40, "success"), check_names=False
    )
    app.button(key="run_replay_gif").click().run()
    gif = app.get("download_button")[-1]
    assert gif.proto.label == "Download replay.gif"
    # a run directory without dpo's replay data (an older lakelab): a message, sft replays
    (out / "replay" / "dpo-seed0.npz").unlink()
    app.run()
    assert not app.exception and not app.error
    assert any("No replay for dpo" in w.value and "kept none" in w.value for w in app.warning)
    assert list(app.dataframe[2].value.columns) == ["sft"]
    assert list(app.dataframe[0].value.index) == ["sft", "dpo"]  # the rest of the page stays
    # made replayable: dpo's cells go, Run trains only them again, with replay data
    app.button(key="run_replay_retrain").click().run()
    stamp = cell_path(out, "sft", 0).stat().st_mtime_ns
    assert app.button(key="run_experiment").label == "Run: 2 objectives x 1 seed x 40 steps"
    app.button(key="run_experiment").click().run()
    assert not app.exception and not app.error
    assert list(app.dataframe[2].value.columns) == ["sft", "dpo"]
    assert cell_path(out, "sft", 0).stat().st_mtime_ns == stamp  # sft was not retrained


# -- LM page ----------------------------------------------------------------------------------

# the quick preset (micro model, SFT, IFT, DPO) on fewer lakes and steps: seconds, not a minute
LM_SMALL = LM_PRESETS["quick"].replace(
    n_train=32, n_test=8, batch_size=16, pretrain_steps=20, pretrain_log_every=10,
    align_steps=4, log_every=2,
)  # fmt: skip
GYMNASIUM_4X4 = ("SFFF", "FHFH", "FFFH", "HFFG")


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lm") / "small"
    run_lm(LM_SMALL, out)
    plt.close("all")  # the run's figure
    return out


def open_lm_run(start, out: Path):
    app = start(LM)
    app.text_input(key="lm_path").input(str(out)).run()
    assert not app.exception and not app.error
    return app


@pytest.mark.slow  # the LM page's tests all train a model (here or in lm_run): ~2 s each
def test_lm_page_without_a_run_runs_the_quick_preset(start, tmp_path, monkeypatch):
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    monkeypatch.chdir(empty)  # no results/ here
    tiny = LM_SMALL.replace(model="nano", pretrain_steps=4, pretrain_log_every=4, align_steps=2)
    monkeypatch.setitem(LM_PRESETS, "quick", tiny)  # what the page's button runs
    app = start(LM)
    assert not app.error and not app.dataframe and not app.metric
    assert "lakelab lm --preset quick --out results/lm-quick" in app.info[0].value
    app.button(key="run_lm_quick").click().run()
    assert not app.exception and not app.error and not app.info
    out = tmp_path / "app-lm"  # $LAKELAB_APP_RUNS/app-lm
    assert app.selectbox(key="lm_run").value == str(out)
    summary = pd.read_csv(out / "summary.csv").set_index("method")
    pd.testing.assert_frame_equal(app.dataframe[0].value, summary)
    assert list(summary.index) == ["base", *tiny.methods] and (summary["seeds"] == 1).all()
    assert len(app.image) == 2  # figure.png and the plan on the lake


@pytest.mark.slow
def test_lm_page_shows_the_run_summary(start, lm_run):
    app = open_lm_run(start, lm_run)
    summary = pd.read_csv(lm_run / "summary.csv").set_index("method")
    shown = app.dataframe[0].value
    pd.testing.assert_frame_equal(shown, summary)
    assert list(shown.index) == ["base", "sft", "ift", "dpo"]
    assert not app.info  # every cell finished
    assert app.selectbox(key="lm_method").options == ["base", "sft", "ift", "dpo"]
    assert app.image[0].value  # figure.png


def checked_outcomes(table: pd.DataFrame, rows: tuple[str, ...]) -> list[str]:
    """Assert each plan's reported outcome is what the real env (and a walk on the map) make
    of the same response; returns the outcomes."""
    env = make_lake("/".join(rows)).make_env()
    shortest = shortest_moves(rows)
    for name, row in table.iterrows():
        plan = parse_plan(row["response"])
        if plan is None:
            assert row["outcome"] == "not a plan", name
            continue
        reached, moves = execute(env, plan)
        cell, walked = walk_plan(rows, plan)
        assert (moves, reached) == (walked, cell == "G"), name
        expected = {"G": "reached the goal", "H": "fell in a hole"}.get(cell, "ran out of moves")
        got = (row["outcome"], row["moves made"], row["plan length"], row["shortest"])
        assert got == (expected, moves, len(plan), reached and moves == len(plan) == shortest), name
    return list(table["outcome"])


@pytest.mark.slow
def test_lm_page_plans_are_the_models_and_run_in_the_env(start, lm_run):
    app = open_lm_run(start, lm_run)
    app.selectbox(key="lm_method").select("sft")
    app.number_input(key="lm_samples").set_value(6)
    app.number_input(key="lm_sample_seed").set_value(3)
    app.text_area(key="lm_map").input("\n".join(GYMNASIUM_4X4)).run()
    assert not app.exception and not app.error
    table = app.dataframe[1].value
    assert list(table.index) == ["greedy"] + [f"sample {k}" for k in range(1, 7)]

    # the responses are the checkpoint's: greedy, and 6 samples from generator seed 3
    model = load_checkpoint(checkpoint_path(lm_run, "sft", 0), LM_SMALL)
    prompt = torch.tensor([encode(prompt_text(GYMNASIUM_4X4))])
    max_new = LM_SMALL.max_moves + 1
    assert table.loc["greedy", "response"] == decode(generate(model, prompt, max_new)[0])
    gen = torch.Generator().manual_seed(3)
    sampled = generate(
        model, prompt.expand(6, -1), max_new, greedy=False, temperature=1.0, generator=gen
    )
    for k, ids in enumerate(sampled, start=1):
        assert table.loc[f"sample {k}", "response"] == decode(ids).rstrip("_")

    # each outcome is what the env makes of the plan, here and on a lake without holes
    seen = checked_outcomes(table, GYMNASIUM_4X4)
    greedy = table.loc["greedy"]
    shown = metrics(app)
    assert shown["Greedy plan"] == greedy["outcome"]
    assert shown["Moves made"] == str(greedy["moves made"])
    assert shown["Shortest plan (solver)"] == str(shortest_moves(GYMNASIUM_4X4)) == "6"
    solver_plan = shown["Solver's plan"]
    app.text_area(key="lm_map").input("SFFF/FFFF/FFFF/FFFG").run()
    seen += checked_outcomes(app.dataframe[1].value, ("SFFF", "FFFF", "FFFF", "FFFG"))
    # both kinds of outcome were checked; they come from a float32 model (CPU-dependent), with
    # room: measured here, 5 of the 7 plans fall in a hole on the first map and 4 of 7 reach
    # the goal on the second, with torch's AVX2 kernels and with its generic ones alike
    assert {"reached the goal", "fell in a hole"} <= set(seen), seen

    # token KL to pi* along the solver's plan, computed here from the model's logits
    best = parse_plan(solver_plan)
    assert walk_plan(GYMNASIUM_4X4, best) == ("G", 6) and solver_plan.endswith(".")
    lake = make_lake("/".join(GYMNASIUM_4X4))
    pi = soft_value_iteration(lake, tau=LM_SMALL.tau, gamma=LM_SMALL.gamma).policy  # [S, A]
    tokens = encode(prompt_text(GYMNASIUM_4X4) + solver_plan)
    with torch.no_grad():
        logp = model(torch.tensor([tokens[:-1]]))[0].log_softmax(-1).double().numpy()  # (T, V)
    first, s, kls = len(prompt_text(GYMNASIUM_4X4)) - 1, lake.start, []
    for t, a in enumerate(best):
        q = pi[s]
        kls.append(np.sum(q * (np.log(np.maximum(q, 1e-300)) - logp[first + t, ACTION_IDS])))
        s = int(lake.next_states[s, a, 0])
    kls.append(-logp[first + len(best), END_ID])  # after the last move: the end token, p = 1
    app.text_area(key="lm_map").input("\n".join(GYMNASIUM_4X4)).run()
    kl = float(metrics(app)["Token KL to pi* (optimal plan)"])
    assert kl == pytest.approx(np.mean(kls), abs=1e-4)


@pytest.mark.slow
def test_lm_page_bad_lake_or_run_shows_lakelab_error(start, lm_run, tmp_path):
    app = open_lm_run(start, lm_run)
    app.text_area(key="lm_map").input("SFFF\nFHXH\nFFFH\nHFFG").run()
    assert not app.exception
    assert "unknown character 'X' at row 1, column 2" in errors(app)[0]
    assert not app.metric and len(app.dataframe) == 1  # the run's summary stays
    app.text_area(key="lm_map").input("SFF/FHF/FFG").run()
    assert errors(app) == [
        "the models of this run read 4x4 lakes; this map is 3x3 (type 4 rows of 4 cells)"
    ]
    app.text_area(key="lm_map").input("SFFF/FFFF/FFFF/FFFG").run()
    assert not app.error and metrics(app)["Shortest plan (solver)"] == "6"
    app.number_input(key="lm_lake_seed").set_value(5)
    app.button(key="run_random_lake").click().run()  # a random lake of the run's kind
    rows = random_lake(4, p_frozen=LM_SMALL.p_frozen, seed=5).desc
    assert app.text_area(key="lm_map").value == "\n".join(rows)
    assert metrics(app)["Shortest plan (solver)"] == str(shortest_moves(rows))
    # a directory that is not an LM run
    (tmp_path / "lake-run").mkdir()
    (tmp_path / "lake-run" / "config.json").write_text(json.dumps({"lake": "4x4", "steps": 10}))
    app.text_input(key="lm_path").input(str(tmp_path / "lake-run")).run()
    assert not app.exception
    assert "is not an LM config" in errors(app)[0]
    app.text_input(key="lm_path").input(str(tmp_path / "nowhere")).run()
    assert "is not a run directory of `lakelab lm`" in errors(app)[0]
