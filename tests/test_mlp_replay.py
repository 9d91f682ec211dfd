"""The replay data of a Frozen Lake run (lakelab.mlp.replay): every logged step's policy, per
method and seed, written with the cells and read back by one call."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from lakelab.mlp.config import PRESETS
from lakelab.mlp.experiment import CHOSEN_BATCHES, batch_rows, build_setup
from lakelab.mlp.replay import KINDS, load_replay, replay_path
from lakelab.mlp.runs import run_lake
from lakelab.rundir import cell_path
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
            # the explored mass grows to the cell's final grid, from nothing
            cell = json.loads(cell_path(tmp_path, method, seed).read_text())
            assert replay.explored[0].sum() == 0
            assert np.allclose(replay.explored[-1], cell["explored"], rtol=1e-6)
            assert (np.diff(replay.explored, axis=0) >= 0).all()
            # each logged step but the last shows the batch it trained on: batch_size of them
            for step in replay.steps[:-1]:
                found = [sum(n for *_, n in replay.paths(step, k)) for k in KINDS]
                assert sum(found) == (1 + (method == "dpo")) * CONFIG.batch_size
                for states, actions, _ in replay.paths(step, "chosen"):
                    assert states[0] == lake.start
                    assert lake.goal[_follow(lake, states[-1], actions[-1])]  # demos, wins
            assert replay.paths(int(replay.steps[-1]), "chosen") == []
    # the step's batch is the one batch_rows picks for that very step (not its neighbour's)
    setup = build_setup(CONFIG)
    for i, seed in enumerate(CONFIG.seed_list):
        pool = list(setup.chosen[i])
        rows = batch_rows(len(pool), seed, CHOSEN_BATCHES, CONFIG)  # (steps, B)
        replay = load_replay(tmp_path, "sft", seed)
        for step in (0, 10):
            picked = Counter(pool[j].key() for j in rows[step])
            assert {(s, a): n for s, a, n in replay.paths(step, "chosen")} == picked
        assert Counter(pool[j].key() for j in rows[11]) != picked  # steps differ: it can fail
    with pytest.raises(ValueError, match=r"step 7 was not logged; logged: \[0, 10, 20\]"):
        replay.at(7)


@pytest.mark.slow  # a short run
def test_a_run_without_replay_data_says_so(tmp_path):
    run_lake(CONFIG.replace(methods=("sft",)), tmp_path)
    replay_path(tmp_path, "sft", 0).unlink()  # as a run directory of an older lakelab
    with pytest.raises(ValueError, match="kept none; rerun it into a new directory"):
        load_replay(tmp_path, "sft", 0)
    assert load_replay(tmp_path, "sft", 1).policies.shape[0] == 3  # the rest still reads
    # replay data of an older lakelab, policies only
    path = replay_path(tmp_path, "sft", 1)
    np.savez_compressed(path, steps=np.arange(3), policies=np.full((3, 16, 4), 0.25))
    with pytest.raises(ValueError, match="replay data of an older lakelab"):
        load_replay(tmp_path, "sft", 1)
    path.write_bytes(b"PK\x03\x04 not a whole file")  # a truncated copy
    with pytest.raises(ValueError, match="is not readable replay data"):
        load_replay(tmp_path, "sft", 1)
    # a method or seed the run does not have is named as such, with what it has
    from lakelab.mlp.replay_plot import load_run

    with pytest.raises(ValueError, match=r"has no seed 5; its seeds: \[0, 1\]"):
        load_run(tmp_path, 5)
    with pytest.raises(ValueError, match=r"has no method \['dop'\]; its methods: \['sft'\]"):
        load_run(tmp_path, 0, ["dop"])


def _follow(lake, state: int, action: int) -> int:
    """Where an intended (deterministic) move leads."""
    return int(lake.P[state, action].argmax())


@pytest.mark.slow  # a short run, then every frame drawn
def test_the_replay_draws_each_step_and_its_gif_has_one_frame_per_logged_step(tmp_path):
    import io

    from matplotlib.collections import LineCollection
    from PIL import Image

    from lakelab.mlp.config import make_lake
    from lakelab.mlp.flow import action_classes, optimum_weights
    from lakelab.mlp.replay_plot import replay_figure, replay_gif
    from lakelab.solver import soft_value_iteration

    config = CONFIG.replace(seeds=1, steps=30)
    run_lake(config, tmp_path)
    lake = make_lake(config.lake)
    replays = {m: load_replay(tmp_path, m, 0) for m in config.methods}
    kinds = action_classes(lake, gamma=config.gamma)
    pi_star = soft_value_iteration(lake, tau=config.tau, gamma=config.gamma).policy
    weights = optimum_weights(lake, pi_star, gamma=config.gamma)
    fig = replay_figure(lake, replays, 10, classes=kinds, weights=weights)
    (ax,) = fig.axes
    assert len(ax.texts) == 3 * len(replays)  # three panel titles per method
    lines = [c for c in ax.collections if isinstance(c, LineCollection)]
    drawn = sum(len(c.get_segments()) for c in lines[:2])  # chosen, then rejected paths
    assert drawn == sum(len(r.paths(10, k)) for r in replays.values() for k in KINDS)
    plain = replay_figure(lake, replays, 10, classes=kinds, weights=weights, labels=False)
    assert [t.get_text() for t in plain.axes[0].texts] == [
        f"{m}: policy, explored" for m in config.methods
    ]
    gif = Image.open(io.BytesIO(replay_gif(lake, replays, classes=kinds, weights=weights)))
    assert gif.format == "GIF" and gif.n_frames == len(replays["sft"].steps) == 4


@pytest.mark.slow  # a short run
def test_lakelab_replay_writes_a_frame_and_a_gif_and_names_a_bad_step(tmp_path, capsys):
    from PIL import Image

    from lakelab.cli import main

    run_lake(CONFIG.replace(seeds=1), tmp_path / "run")
    run = str(tmp_path / "run")
    assert (
        main(["replay", run, "--gif", str(tmp_path / "r.gif"), "--png", str(tmp_path / "r.png")])
        == 0
    )
    assert "3 frames, steps 0 to 20" in capsys.readouterr().out
    assert Image.open(tmp_path / "r.gif").n_frames == 3
    assert Image.open(tmp_path / "r.png").format == "PNG"
    assert main(["replay", run, "--step", "7"]) == 2
    assert "step 7 was not logged; logged: [0, 10, 20]" in capsys.readouterr().err
    replay_path(tmp_path / "run", "dpo", 0).unlink()  # an older lakelab's run, in part
    assert main(["replay", run, "--methods", "sft", "dpo"]) == 0
    assert "no replay for dpo" in capsys.readouterr().err
    assert (tmp_path / "run" / "replay-seed0-step20.png").exists()
