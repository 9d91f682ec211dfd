"""The learning rate per objective (lakelab.lm.lr_grid): the choice rule on hand-made tables,
and a small grid end to end, measured on the validation lakes."""

import json

import pandas as pd
import pytest

from lakelab.cli import main
from lakelab.lm import lr_grid as LR
from lakelab.lm.lr_grid import GRID, TIE, choose, lr_grid
from tests.helpers import TINY_LM


def test_the_best_rate_wins_and_a_tie_goes_to_the_smaller_rate():
    table = pd.DataFrame(
        {
            "method": ["sft"] * 3 + ["dpo"] * 3,
            "lr": [1e-4, 1e-3, 1e-2] * 2,
            "success_mean": [0.20, 0.50, 0.40, 0.30, 0.30 + TIE / 2, 0.10],
        }
    )
    assert choose(table) == {"sft": 1e-3, "dpo": 1e-4}  # dpo: 1e-3 is within TIE of 1e-4
    table.loc[4, "success_mean"] = 0.30 + 2 * TIE
    assert choose(table)["dpo"] == 1e-3  # now clearly better


def test_the_cli_grid_is_the_library_grid(tmp_path, monkeypatch):
    seen = []

    def fake_grid(config, out, *, grid, **kwargs):
        seen.append(tuple(grid))
        raise ValueError("stop here")

    monkeypatch.setattr(LR, "lr_grid", fake_grid)
    assert main(["lm-lr", "--out", str(tmp_path), "--quiet"]) == 2
    assert main(["lm-lr", "--out", str(tmp_path), "--quiet", "--grid", "1e-3", "2e-3"]) == 2
    assert seen == [GRID, (1e-3, 2e-3)]


def test_a_grid_needs_positive_rates(tmp_path):
    with pytest.raises(ValueError, match=r"grid must hold positive learning rates, got \[-0.1"):
        lr_grid(TINY_LM, tmp_path, grid=[-0.1, 1e-3])


@pytest.mark.slow  # two rates x one seed of the tiny LM config, then the CLI resumes it
def test_a_small_grid_runs_on_validation_lakes_and_the_cli_prints_the_choice(tmp_path, capsys):
    config = TINY_LM.replace(methods=("sft", "dpo"), n_val=8)
    table, chosen = lr_grid(config, tmp_path, grid=[1e-3, 1e-2], seeds=1, first_seed=100)
    assert set(chosen) == {"sft", "dpo"} and set(chosen.values()) <= {1e-3, 1e-2}
    assert list(table["lr"]) == [1e-3, 1e-3, 1e-2, 1e-2]
    assert json.loads((tmp_path / "chosen.json").read_text()) == chosen
    run = json.loads((tmp_path / "lr-0.001" / "config.json").read_text())
    assert run["evaluate_on"] == "validation" and run["first_seed"] == 100
    assert run["align_lr"] == 1e-3 and run["align_lrs"] == {}
    metrics = pd.read_csv(tmp_path / "lr-0.01" / "metrics.csv")
    final = metrics[metrics.method == "sft"].tail(1)
    assert table.query("method == 'sft' and lr == 0.01")["success_mean"].item() == (
        pytest.approx(final["success"].item())
    )
    # the same grid through the CLI: finished, so it only reads and prints
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(config.to_dict()))
    argv = ["lm-lr", "--config", str(config_file), "--out", str(tmp_path), "--grid", "1e-3",
            "1e-2", "--grid-seeds", "1", "--quiet", "--workers", "1"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "chosen (align_lrs):" in printed and str(chosen["sft"]) in printed
