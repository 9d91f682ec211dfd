"""The replay data of a Frozen Lake run (lakelab.mlp.replay): every logged step's policy, per
method and seed, written with the cells and read back by one call."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lakelab.mlp.config import PRESETS
from lakelab.mlp.replay import load_replay, replay_path
from lakelab.mlp.runs import run_lake
from lakelab.solver import success_probability
from tests.helpers import FAST_LAKE

CONFIG = PRESETS["quick"].replace(seeds=2, methods=("sft", "dpo", "reinforce"), **FAST_LAKE)


@pytest.mark.slow  # a short run of three methods
def test_a_run_keeps_each_logged_steps_policy_and_its_metrics_follow_from_it(tmp_path):
    paths = run_lake(CONFIG, tmp_path)
    metrics = pd.read_csv(paths["metrics"])
    from lakelab.mlp.config import make_lake

    lake = make_lake(CONFIG.lake)
    for method in CONFIG.methods:
        for seed in CONFIG.seed_list:
            replay = load_replay(tmp_path, method, seed)
            rows = metrics[(metrics.method == method) & (metrics.seed == seed)]
            assert replay.steps.tolist() == rows.step.tolist()
            assert replay.policies.shape == (len(rows), lake.n_states, 4)
            assert replay.policies.dtype == np.float32
            assert np.allclose(replay.policies.sum(-1), 1, atol=1e-6)
            # the exact success probability of the stored policy is the logged one
            success = success_probability(lake, replay.policies.astype(np.float64))
            assert success == pytest.approx(rows.success.to_numpy(), rel=1e-4, abs=1e-6)
            last = replay.at(int(rows.step.iloc[-1]))
            assert last.shape == (lake.n_states, 4)
    with pytest.raises(ValueError, match=r"step 7 was not logged; logged: \[0, 10, 20\]"):
        replay.at(7)


@pytest.mark.slow  # a short run
def test_a_run_without_replay_data_says_so(tmp_path):
    run_lake(CONFIG.replace(methods=("sft",)), tmp_path)
    replay_path(tmp_path, "sft", 0).unlink()  # as a run directory of an older lakelab
    with pytest.raises(ValueError, match="kept none; rerun it into a new directory"):
        load_replay(tmp_path, "sft", 0)
    assert load_replay(tmp_path, "sft", 1).policies.shape[0] == 3  # the rest still reads
