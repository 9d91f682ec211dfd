"""Sweeps: grid expansion and validation, resumption after a kill, failing cells, backends."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from lakelab.cli import main
from lakelab.mlp.config import PRESETS
from lakelab.mlp.sweep import (
    SweepSpec,
    apply_knobs,
    grid_points,
    load_sweep,
    parse_grid_option,
    sweep_from_dict,
)
from lakelab.mlp.sweep_run import run_sweep
from tests.helpers import FAST_LAKE

BASE = PRESETS["quick"].replace(seeds=2, methods=("sft", "dpo"), **FAST_LAKE)
GRID = {"tau": [0.02, 0.05], "negatives": ["offline", "online"]}


def spec(grid=GRID) -> SweepSpec:
    return SweepSpec(BASE, grid_points(grid))


def test_grid_expands_in_order_and_knobs_reach_the_config():
    points = grid_points({"a": [1, 2], "b": ["x", "y", "z"]})
    assert points == tuple({"a": a, "b": b} for a in (1, 2) for b in "xyz")
    config = apply_knobs(BASE, {"lr": 0.05, "dpo.beta": 0.3, "chosen": "single"})
    assert (config.lr, config.chosen) == (0.05, "single")
    assert config.method_hparams("dpo")["beta"] == 0.3
    cells = spec().cells()
    assert len(cells) == 4 * 2 and len({c.id for c in cells}) == 8
    assert [c.method for c in cells[:2]] == ["sft", "dpo"]  # point-major


@pytest.mark.parametrize(
    ("point", "message"),
    [
        ({"tua": 0.1}, "unknown grid knob 'tua'"),
        ({"tau": -1.0}, r"grid point \{'tau': -1.0\}: tau must be"),
        ({"dpo.betta": 0.1}, "betta"),
        ({"ift.lam": 0.1}, "not among methods"),  # IFT is not in BASE's methods
        ({"ipx.beta": 0.1}, "unknown objective 'ipx'"),
        ({}, "non-empty table of knobs"),
    ],
)
def test_bad_grid_points_are_clear_errors(point, message):
    with pytest.raises(ValueError, match=message):
        SweepSpec(BASE, (point,))


def test_sweep_files_toml_and_json(tmp_path):
    toml = tmp_path / "s.toml"
    toml.write_text(
        'preset = "quick"\n[base]\nmethods = ["sft", "dpo"]\nseeds = 2\n'
        '[grid]\ntau = [0.02, 0.05]\n"dpo.beta" = [0.1, 0.5]\n'
    )
    s = load_sweep(toml)
    assert len(s.points) == 4 and s.base.seeds == 2
    js = tmp_path / "s.json"
    js.write_text(json.dumps({"base": {"seeds": 3}, "points": [{"lr": 0.02}, {"lr": 0.03}]}))
    assert [p["lr"] for p in load_sweep(js).points] == [0.02, 0.03]
    bad = tmp_path / "bad.toml"
    bad.write_text("[grid\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_sweep(bad)
    with pytest.raises(ValueError, match="does not exist"):
        load_sweep(tmp_path / "none.toml")
    with pytest.raises(ValueError, match="exactly one of 'grid'"):
        sweep_from_dict({"grid": {"tau": [0.1]}, "points": [{"tau": 0.1}]})
    with pytest.raises(ValueError, match="unknown sweep keys"):
        sweep_from_dict({"grids": {}})
    with pytest.raises(ValueError, match="non-empty list of values"):
        sweep_from_dict({"grid": {"tau": []}})
    assert parse_grid_option("negatives=offline,online") == ("negatives", ["offline", "online"])
    assert parse_grid_option("lr=0.01,1e-3") == ("lr", [0.01, 0.001])
    with pytest.raises(ValueError, match="knob=value1,value2"):
        parse_grid_option("lr")


@pytest.mark.slow  # over 1 s: the full suite runs it (docs/testing.md)
def test_a_2x2_grid_gives_one_row_per_point_objective_and_seed(tmp_path):
    paths = run_sweep(spec(), tmp_path)
    results = pd.read_csv(paths["results"])
    assert len(results) == 4 * 2 * 2
    assert (results["status"] == "ok").all()
    assert set(map(tuple, results[["tau", "negatives"]].drop_duplicates().values)) == {
        (0.02, "offline"),
        (0.02, "online"),
        (0.05, "offline"),
        (0.05, "online"),
    }
    order = pd.read_csv(paths["orderings"])
    assert len(order) == 4 and set(order["paper_order"]) == {"incomplete"}  # no IFT or ORPO here
    assert paths["figure"].stat().st_size > 0
    # a truncated cell file is not taken as finished: it is recomputed, the table unchanged
    before = paths["results"].read_bytes()
    victim = sorted((tmp_path / "cells").iterdir())[0]
    victim.write_text(victim.read_text()[:50])
    run_sweep(spec(), tmp_path)
    assert json.loads(victim.read_text())["status"] == "ok"
    assert paths["results"].read_bytes() == before


@pytest.mark.slow  # keeps make test-fast under 30 s
def test_a_failing_cell_is_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch):
    import lakelab.mlp.sweep_run as sweep_run

    real = sweep_run.train_method

    def flaky(setup, method, **kw):
        if method == "dpo" and setup.config.tau == 0.05:
            raise RuntimeError("simulated crash")
        return real(setup, method, **kw)

    monkeypatch.setattr(sweep_run, "train_method", flaky)
    paths = run_sweep(spec({"tau": [0.02, 0.05]}), tmp_path)
    results = pd.read_csv(paths["results"])
    failed = results[results["status"] == "error"]
    assert len(failed) == 1 and failed.iloc[0]["method"] == "dpo" and failed.iloc[0]["tau"] == 0.05
    assert "RuntimeError: simulated crash" in failed.iloc[0]["error"]
    assert (results["status"] == "ok").sum() == 3 * 2  # the other cells, every seed
    monkeypatch.setattr(sweep_run, "train_method", real)
    run_sweep(spec({"tau": [0.02, 0.05]}), tmp_path)  # a finished (failed) cell is not rerun
    assert (pd.read_csv(paths["results"])["status"] == "error").sum() == 1
    run_sweep(spec({"tau": [0.02, 0.05]}), tmp_path, retry_failed=True)
    assert (pd.read_csv(paths["results"])["status"] == "ok").all()


@pytest.mark.slow  # a sweep process killed with SIGKILL, then sweeps with 1 and 2 workers
def test_killing_a_sweep_and_restarting_gives_the_uninterrupted_table(tmp_path):
    sweep_file = tmp_path / "fast.json"
    base = {**FAST_LAKE, "seeds": 2, "methods": ["sft", "dpo"]}
    sweep_file.write_text(json.dumps({"preset": "quick", "base": base, "grid": GRID}))
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lakelab.cli",
            "sweep",
            str(sweep_file),
            "--workers",
            "1",
            "--quiet",
            "--out",
            str(killed),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while len(list((killed / "cells").glob("*.json"))) < 3:
            assert proc.poll() is None, "the sweep ended before it could be killed"
            assert time.monotonic() < deadline, "no cells written in 120 s"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    finished = {p: p.read_bytes() for p in (killed / "cells").glob("*.json")}
    assert 3 <= len(finished) < 8
    assert main(["sweep", str(sweep_file), "--workers", "1", "--quiet", "--out", str(killed)]) == 0
    for path, content in finished.items():
        assert path.read_bytes() == content  # finished cells were not recomputed
    fresh = tmp_path / "fresh"
    assert main(["sweep", str(sweep_file), "--workers", "2", "--quiet", "--out", str(fresh)]) == 0
    assert (killed / "results.csv").read_bytes() == (fresh / "results.csv").read_bytes()
    assert len(pd.read_csv(fresh / "results.csv")) == 4 * 2 * 2


@pytest.mark.slow  # starts a Ray cluster of 2 workers
@pytest.mark.timeout(240)
def test_ray_backend_gives_the_local_table(tmp_path):
    pytest.importorskip("ray")
    small = spec({"negatives": ["offline", "online"]})
    local = run_sweep(small, tmp_path / "local")
    ray = run_sweep(small, tmp_path / "ray", backend="ray", workers=2)
    assert Path(local["results"]).read_bytes() == Path(ray["results"]).read_bytes()


def test_cli_errors_are_clear(tmp_path, capsys):
    assert main(["sweep", "--out", str(tmp_path)]) == 2
    assert "give a sweep file" in capsys.readouterr().err
    assert main(["sweep", "--grid", "tau=0.05", "--backend", "spark", "--out", str(tmp_path)]) == 2
    assert "backend must be one of ['local', 'ray']" in capsys.readouterr().err
