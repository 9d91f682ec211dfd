"""The Streamlit app, driven like a user would with AppTest: every page renders, widgets change
what is rendered (checked against closed forms and lakelab's own files), bad input shows
lakelab's error while everything computed before stays."""

from __future__ import annotations

import json
import math
from collections import deque
from pathlib import Path

import pytest

from lakelab.app_pages.formulas import FORMULAS
from lakelab.config import config_from_dict
from lakelab.lakes import random_lake
from lakelab.registry import OBJECTIVES
from lakelab.runs import cell_path, load_cell

APP = Path(__file__).resolve().parents[1] / "app.py"
EXPERIMENT = "lakelab/app_pages/experiment.py"
EXPLORER = "lakelab/app_pages/explorer.py"
LAKE = "lakelab/app_pages/lake.py"
AppTest = pytest.importorskip("streamlit.testing.v1").AppTest


@pytest.fixture
def start(tmp_path, monkeypatch):
    """Open the app on a page, as a visit to its URL would, with experiment runs going to a
    temporary directory."""
    monkeypatch.setenv("LAKELAB_APP_RUNS", str(tmp_path))

    def open_page(page: str = LAKE):
        at = AppTest.from_file(str(APP), default_timeout=120).switch_page(page).run()
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


def moves_to_goal(rows: tuple[str, ...]) -> int:
    """Fewest moves from S to G avoiding holes (breadth-first search, written here)."""
    cells = {(r, c): ch for r, row in enumerate(rows) for c, ch in enumerate(row)}
    start = next(p for p, ch in cells.items() if ch == "S")
    dist, queue = {start: 0}, deque([start])
    while queue:
        r, c = queue.popleft()
        if cells[(r, c)] == "G":
            return dist[(r, c)]
        for nxt in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
            if cells.get(nxt, "H") != "H" and nxt not in dist:
                dist[nxt] = dist[(r, c)] + 1
                queue.append(nxt)
    raise AssertionError("no route")


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


def test_random_lake_follows_its_seed(app):
    app.radio(key="lake_source").set_value("random").run()  # default: 6x6, seed 0
    rows = random_lake(6, p_frozen=0.8, seed=0).desc
    assert "/".join(rows) in app.caption[-1].value
    assert metrics(app)["V*(start)"] == f"{0.95 ** (moves_to_goal(rows) - 1):.4f}"
    app.slider(key="lake_size").set_value(5)
    app.number_input(key="lake_seed").set_value(5).run()
    rows = random_lake(5, p_frozen=0.8, seed=5).desc
    assert "/".join(rows) in app.caption[-1].value
    assert metrics(app)["V*(start)"] == f"{0.95 ** (moves_to_goal(rows) - 1):.4f}"
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


def test_every_objective_has_a_formula():
    assert set(FORMULAS) == set(OBJECTIVES)


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_explorer_matches_closed_form_gradients(start):
    app = start(EXPLORER)
    assert not app.exception and not app.error
    table = app.dataframe[0].value
    assert list(table.index) == ["sft", "ift", "dpo", "ipo", "orpo", "asft", "simpo"]
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
        FORMULAS[m] for m in ("sft", "dpo", "simpo")
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
    assert len(app.image) == 1  # figure.png

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
    assert not app.error and not app.button
    assert app.dataframe[1].value.loc[0, "sft"] == pytest.approx(final["sft"]["success"])

    # one more seed: run_lake resumes the same directory and trains only the new cells
    app.number_input(key="exp_seeds").set_value(2).run()
    app.button(key="run_experiment").click().run()
    assert not app.exception and not app.error
    assert cell_path(out, "sft", 0).stat().st_mtime_ns == stamp
    assert list(app.dataframe[1].value.index) == [0, 1]
    assert app.dataframe[0].value.loc["sft", "seeds"] == 2
