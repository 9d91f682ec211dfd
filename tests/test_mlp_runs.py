"""Run directories: CLI end to end, atomic resumable cells, reports, bad input."""

import io
import json
import shutil

import pandas as pd
import pytest

from lakelab.cli import main
from lakelab.mlp import runs
from lakelab.mlp.config import PRESETS
from lakelab.mlp.runs import run_lake
from tests.helpers import FAST_LAKE

SMALL = PRESETS["quick"].replace(seeds=2, methods=("sft", "dpo"), **FAST_LAKE)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished run directory of SMALL; tests that change a run work on a copy of it."""
    out = tmp_path_factory.mktemp("finished") / "run"
    run_lake(SMALL, out)
    return out


def test_cli_writes_the_run_directory(tmp_path, capsys):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(FAST_LAKE))
    out = tmp_path / "run"
    argv = [
        "lake",
        "--preset",
        "quick",
        "--config",
        str(cfg),
        "--seeds",
        "2",
        "--methods",
        "sft",
        "dpo",
        "--out",
        str(out),
        "--quiet",
        "--workers",
        "1",
    ]
    assert main(argv) == 0
    for name in ("config.json", "metrics.csv", "summary.csv", "figure.png"):
        assert (out / name).stat().st_size > 0
    metrics = pd.read_csv(out / "metrics.csv")
    assert set(metrics["method"]) == {"sft", "dpo"}
    assert len(metrics) == 2 * 2 * 3  # methods x seeds x logged steps (0, 10, 20)
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["method"]) == ["sft", "dpo"]
    assert (summary["seeds"] == 2).all()
    final_sft = metrics[(metrics["method"] == "sft") & (metrics["step"] == 20)]["param_mse"]
    assert summary.loc[0, "param_mse_mean"] == pytest.approx(final_sft.mean())


@pytest.mark.slow  # a worker process each (spawn: a fresh interpreter importing torch)
@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_same_config_same_metrics_csv_with_one_or_two_worker_processes(
    tmp_path, monkeypatch, start
):
    run_lake(SMALL, tmp_path / "a")  # sft and dpo trained together, in this process
    monkeypatch.setattr(runs, "worker_start_method", lambda: start)
    run_lake(SMALL, tmp_path / "b", workers=2)  # dpo here, sft in a worker process
    # the same bytes: float64 on one thread in every process of this one machine
    assert (tmp_path / "a" / "metrics.csv").read_bytes() == (
        tmp_path / "b" / "metrics.csv"
    ).read_bytes()
    with pytest.raises(ValueError, match="workers must be a positive integer, got 0"):
        run_lake(SMALL, tmp_path / "c", workers=0)


def test_shares_split_the_methods_by_cost():
    cfg = PRESETS["paper"]
    methods = list(cfg.methods)
    for workers in (1, 2, 3, 7, 20):
        parts = runs.shares(cfg, methods, workers)
        assert len(parts) == min(workers, len(methods))
        assert sorted(m for part in parts for m in part) == sorted(methods)  # each once
        for part in parts:  # the config's order within a share
            assert part == [m for m in methods if m in part]
        costs = [sum(runs._COST[runs._kind(cfg, m)] for m in part) for part in parts]
        assert costs == sorted(costs, reverse=True)  # the heaviest share stays in-process
    two = runs.shares(cfg, methods, 2)
    costs = [sum(runs._COST[runs._kind(cfg, m)] for m in part) for part in two]
    assert costs[0] - costs[1] <= max(runs._COST.values())  # no better split is left
    assert runs.shares(cfg, [], 2) == []


def spy_on_training(monkeypatch) -> list[tuple[str, tuple[int, ...]]]:
    """The (method, seed indices) run_lake trains from now on, in a list it appends to."""
    trained = []
    real_train = runs.train_methods

    def spy(setup, todo, *, progress=None):
        trained.extend((method, tuple(seed_index)) for method, seed_index in todo.items())
        return real_train(setup, todo, progress=progress)

    monkeypatch.setattr(runs, "train_methods", spy)
    return trained


@pytest.mark.slow  # over 1 s: the full suite runs it (docs/testing.md)
def test_resume_skips_finished_cells_and_redoes_broken_ones(finished, tmp_path, monkeypatch):
    out = shutil.copytree(finished, tmp_path / "run")
    before = (out / "metrics.csv").read_bytes()
    trained = spy_on_training(monkeypatch)
    run_lake(SMALL, out)  # everything finished: nothing trains
    assert trained == []
    assert (out / "metrics.csv").read_bytes() == before
    # a truncated cell, a cell from another protocol and one from a lakelab that logged
    # fewer metrics (no optimality) are not taken as finished
    cell = runs.cell_path(out, "dpo", 1)
    cell.write_text(cell.read_text()[:100])
    other = runs.cell_path(out, "sft", 0)
    data = json.loads(other.read_text())
    data["protocol"] = "something else"
    other.write_text(json.dumps(data))
    older = runs.cell_path(out, "sft", 1)
    data = json.loads(older.read_text())
    for row in data["rows"]:
        del row["optimality"]
    older.write_text(json.dumps(data))
    run_lake(SMALL, out)
    assert sorted(trained) == [("dpo", (1,)), ("sft", (0, 1))]
    # recomputed, same numbers (a seed trained alone equals its batched run up to rounding)
    pd.testing.assert_frame_equal(
        pd.read_csv(out / "metrics.csv"), pd.read_csv(io.BytesIO(before)), rtol=1e-9
    )


@pytest.mark.slow  # over 1 s: the full suite runs it (docs/testing.md)
def test_more_seeds_resume_only_the_new_ones(finished, tmp_path, monkeypatch):
    out = shutil.copytree(finished, tmp_path / "run")
    trained = spy_on_training(monkeypatch)
    run_lake(SMALL.replace(seeds=3), out)
    assert sorted(trained) == [("dpo", (2,)), ("sft", (2,))]
    assert len(pd.read_csv(out / "metrics.csv")) == 2 * 3 * 3


def test_another_protocol_in_the_same_directory_is_refused(finished, tmp_path):
    out = shutil.copytree(finished, tmp_path / "run")
    before = (out / "metrics.csv").read_bytes()
    with pytest.raises(ValueError, match="different protocol"):
        run_lake(SMALL.replace(lr=0.05), out)
    assert (out / "metrics.csv").read_bytes() == before  # nothing lost


def test_cli_bad_input_is_a_clear_error(tmp_path, capsys):
    assert main(["lake", "--negatives", "both", "--out", str(tmp_path), "--quiet"]) == 2
    assert "negatives must be one of ['offline', 'online']" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["lake", "--config", str(bad), "--out", str(tmp_path), "--quiet"]) == 2
    assert "is not valid JSON" in capsys.readouterr().err
    assert main(["lake", "--preset", "huge", "--out", str(tmp_path)]) == 2
    assert "unknown preset 'huge'" in capsys.readouterr().err
