"""Alarms (lakelab.mlp.alarms): each fires on a hand-made metrics table that shows its cause,
stays silent on one that does not, and the real runs that show the causes set them off."""

import json
import math

import pandas as pd
import pytest

from lakelab.cli import main
from lakelab.mlp.alarms import alarms, format_alarms
from lakelab.mlp.config import PRESETS
from lakelab.mlp.runs import run_lake
from tests.helpers import FAST_LAKE

STEPS = [0, 10, 20, 30]


def table(method="dpo", seeds=2, steps=STEPS, **columns) -> pd.DataFrame:
    """A metrics.csv of one method: each column's values at STEPS, the same for every seed
    (NaN at step 0 for the batch metrics, as logged); success 0.5 and no fallbacks unless
    given."""
    columns = {"success": [0.5] * 4, "online_fallback": [0.0] * 4, **columns}
    rows = []
    for seed in range(seeds):
        for i, step in enumerate(steps):
            row = {"method": method, "seed": seed, "step": step}
            for name, values in columns.items():
                batch = name.startswith("batch/")
                row[name] = float("nan") if batch and i == 0 else values[i]
            rows.append(row)
    return pd.DataFrame(rows)


def kinds(metrics: pd.DataFrame, batch_size=8) -> list[str]:
    return [a.kind for a in alarms(metrics, batch_size=batch_size)]


def rewards(chosen, rejected):
    return {
        "batch/rewards/chosen": chosen,
        "batch/rewards/rejected": rejected,
        "batch/rewards/margins": [c - r for c, r in zip(chosen, rejected, strict=True)],
    }


def test_reference_fires_only_when_nothing_moved():
    still = table(
        **rewards([0, 1e-6, -2e-6, 1e-6], [0, 0, 1e-6, 0]), **{"batch/loss": [math.log(2)] * 4}
    )
    found = alarms(still, batch_size=8)
    assert [a.kind for a in found] == ["reference"]
    assert found[0].step == 10 and "loss 0.6931" in found[0].message
    assert "equals its reference" in found[0].message
    # just past the threshold (1e-4) at one step: the policy moved
    assert kinds(table(**rewards([0, 1e-6, 2e-4, 1e-6], [0, 0, 0, 0]))) == []


def test_saturated_fires_when_success_falls_under_a_perfect_accuracy():
    falling = table(
        success=[0.5, 0.9, 0.8, 0.7], **{"batch/rewards/accuracies": [0, 0.7, 1.0, 1.0]}
    )
    found = alarms(falling, batch_size=8)
    assert [a.kind for a in found] == ["saturated"]
    assert found[0].step == 20 and "from 0.8 to 0.7 (step 30)" in found[0].message
    # success that only falls before saturation, or by no more than 0.02, is no alarm
    early = table(success=[0.5, 0.9, 0.7, 0.7], **{"batch/rewards/accuracies": [0, 0.7, 1, 1]})
    small = table(success=[0.5, 0.9, 0.89, 0.89], **{"batch/rewards/accuracies": [0, 1, 1, 1]})
    assert kinds(early) == kinds(small) == []
    # a success that was tiny and falls by orders of magnitude: a fall too (relative)
    tiny = table(success=[1e-3, 6e-4, 1e-5, 6e-8], **{"batch/rewards/accuracies": [0, 1, 1, 1]})
    found = alarms(tiny, batch_size=8)
    assert [a.kind for a in found] == ["saturated"] and "from 0.0006 to 6e-08" in found[0].message
    halved = table(success=[1e-3, 6e-4, 4e-4, 3.5e-4], **{"batch/rewards/accuracies": [0, 1, 1, 1]})
    assert kinds(halved) == []  # not below half of 6e-4
    # no success column at all (not a lake run's table): no alarm, no error
    assert kinds(tiny.drop(columns="success")) == []


def test_displaced_fires_when_the_margin_rises_and_the_chosen_falls():
    displaced = table(
        **rewards([0, -0.1, -0.2, -0.3], [0, -0.5, -1.0, -2.0]),
        **{"batch/logps/chosen": [0, -8.0, -8.5, -9.0], "batch/logps/rejected": [0, -12, -20, -30]},
    )
    found = alarms(displaced, batch_size=8)
    assert [a.kind for a in found] == ["displaced"]
    assert "from 0.40 to 1.70 while logps/chosen falls from -8.00 to -9.00" in found[0].message
    rising = table(
        **rewards([0, 0.1, 0.2, 0.3], [0, -0.5, -1.0, -2.0]),
        **{"batch/logps/chosen": [0, -8.0, -7.5, -7.0]},
    )
    assert kinds(rising) == []


def test_exhausted_fires_when_most_rejected_slots_come_from_the_offline_pool():
    # batch size 8, 10 steps between logs: 80 slots; 30 then 50 of them from the pool
    found = alarms(table(online_fallback=[0, 0, 30, 80]), batch_size=8)
    assert [a.kind for a in found] == ["exhausted"]
    assert found[0].step == 20 and "from step 20 to 30, 62% of" in found[0].message
    assert kinds(table(online_fallback=[0, 0, 30, 60])) == []  # at most 38%
    # the last interval shorter (steps 20 to 25: 40 slots), as when steps % log_every != 0
    uneven = table(steps=[0, 10, 20, 25], online_fallback=[0, 0, 30, 60])
    found = alarms(uneven, batch_size=8)
    assert [a.kind for a in found] == ["exhausted"]
    assert "from step 20 to 25, 75% of" in found[0].message


def test_methods_are_judged_apart_and_the_report_lists_them():
    both = pd.concat(
        [table("sft"), table("dpo", online_fallback=[0, 80, 160, 240])], ignore_index=True
    )
    found = alarms(both, batch_size=8)
    assert [(a.method, a.kind) for a in found] == [("dpo", "exhausted")]
    assert format_alarms(found).splitlines()[1].startswith("  dpo [exhausted] from step 0 to 10")
    assert format_alarms([]).startswith("alarms: none (the proxies and the exact truth agree)")
    assert format_alarms([], table("sft")) == (
        "alarms: none (no method logged TRL's preference proxies)"
    )


@pytest.mark.slow  # two short runs
def test_a_run_that_cannot_move_sets_off_the_reference_alarm_and_a_normal_one_does_not(
    tmp_path, capsys
):
    config = PRESETS["quick"].replace(seeds=2, methods=("dpo",), negatives="offline", **FAST_LAKE)
    (tmp_path / "frozen.json").write_text(json.dumps(config.replace(lr=1e-12).to_dict()))
    argv = ["lake", "--config", str(tmp_path / "frozen.json"), "--out", str(tmp_path / "frozen")]
    assert main([*argv, "--quiet", "--workers", "1"]) == 0
    found = alarms(pd.read_csv(tmp_path / "frozen" / "metrics.csv"), batch_size=config.batch_size)
    assert [a.kind for a in found] == ["reference"]
    assert f"loss {math.log(2):.4f}" in found[0].message  # DPO at its reference: log 2
    assert format_alarms(found) in capsys.readouterr().out  # lakelab lake ends with them
    normal = run_lake(config, tmp_path / "normal")
    assert "reference" not in kinds(pd.read_csv(normal["metrics"]), config.batch_size)
