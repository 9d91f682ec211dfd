"""On-policy RL on the lake (lakelab.mlp.online): the methods train from their own episodes,
through the same run directories and exact metrics as the preference objectives."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from lakelab.lm.config import PRESETS as LM_PRESETS
from lakelab.mlp.config import PRESETS
from lakelab.mlp.experiment import build_setup
from lakelab.mlp.online import train_online
from lakelab.rl_methods import RL_METHODS, resolve_rl_hparams

QUICK = PRESETS["quick"].replace(
    methods=tuple(RL_METHODS), seeds=2, steps=40, log_every=20, optimum_steps=200,
    optimum_kl_target=0.2,
)  # fmt: skip


@pytest.mark.slow  # 4 methods x 2 seeds x 100 steps on a slippery lake
def test_every_rl_method_learns_on_a_slippery_lake():
    """Slippery lakes work: from theta_0 every method raises the success probability and the
    optimality of its policy in the slippery MDP (the intended move 80% of the time; means
    over 2 seeds)."""
    config = QUICK.replace(slippery=True, success_rate=0.8, steps=100, log_every=50)
    setup = build_setup(config)
    for method in RL_METHODS:
        rows = train_online(setup, method).rows
        first, last = ({k: np.mean([r[j][k] for r in rows]) for k in ("success", "optimality")}
                       for j in (0, -1))  # fmt: skip
        assert last["success"] > first["success"] + 0.1, (method, first, last)
        assert last["optimality"] > 2 * first["optimality"], (method, first, last)


@pytest.mark.slow  # 4 methods x 2 seeds x 40 steps
def test_every_rl_method_raises_the_success_probability_from_its_own_episodes():
    setup = build_setup(QUICK)
    for method in RL_METHODS:
        rows = train_online(setup, method).rows
        first = np.mean([r[0]["success"] for r in rows])
        last = np.mean([r[-1]["success"] for r in rows])
        assert last > first + 0.2, (method, first, last)
        final = rows[0][-1]
        assert 0 < final["optimality"] <= 1 + 1e-12
        assert {"batch/reward", "batch/reward_std", "batch/frac_reward_zero_std"} <= set(final)


@pytest.mark.slow  # two short runs
def test_a_seed_repeats_itself_and_the_plain_batch_metrics_are_the_rewards():
    """Same seed, same episodes, same numbers (on one machine); reward_std is 0 exactly when
    every group's rewards are equal (frac_reward_zero_std 1)."""
    config = QUICK.replace(steps=6, log_every=2)
    setup = build_setup(config)
    a, b = (train_online(setup, "grpo", [0]).rows[0] for _ in range(2))
    assert a == b
    for row in a[1:]:
        assert 0 <= row["batch/reward"] <= 1 and 0 <= row["batch/frac_reward_zero_std"] <= 1
        if row["batch/reward_std"] == 0:
            assert row["batch/frac_reward_zero_std"] == 1.0


@pytest.mark.slow  # two short runs
def test_the_lake_command_runs_rl_methods_and_resumes(tmp_path):
    from lakelab.mlp.runs import run_lake

    config = QUICK.replace(methods=("reinforce", "sft"), steps=4, log_every=2)
    paths = run_lake(config, tmp_path)
    summary = pd.read_csv(paths["summary"]).set_index("method")
    assert list(summary.index) == ["reinforce", "sft"]
    assert {"optimality_mean", "success_mean"} <= set(summary.columns)
    again = run_lake(config, tmp_path)  # every cell is there: nothing retrains
    assert pd.read_csv(again["summary"]).equals(pd.read_csv(paths["summary"]))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: QUICK.replace(methods=("grpo",), hparams={"grpo": {"group_size": 1}}),
         r"grpo: group_size must be in \[2, inf\), got 1"),
        (lambda: QUICK.replace(methods=("grpo",), hparams={"grpo": {"epsilon_low": 1.0}}),
         r"grpo: epsilon_low must be in \[0, 1\), got 1.0"),
        (lambda: QUICK.replace(methods=("ppo",), hparams={"ppo": {"inner_steps": 1.5}}),
         "ppo: inner_steps must be an integer, got 1.5"),
        (lambda: QUICK.replace(methods=("a2c",)), r"or an RL method: \['grpo', 'ppo', "),
        (lambda: LM_PRESETS["quick"].replace(methods=("ppo",)),
         "ppo: its value head and inner steps run on the lake only"),
        (lambda: LM_PRESETS["quick"].replace(methods=("grpo",),
                                             hparams={"grpo": {"inner_steps": 2}}),
         "grpo: inner_steps must be 1 on the LM track"),
    ],
)  # fmt: skip
def test_bad_rl_settings_are_clear_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_a_batch_must_hold_whole_groups():
    config = QUICK.replace(methods=("rloo",), batch_size=30, steps=1)
    with pytest.raises(ValueError, match="batch_size 30 is not a whole number of groups of"):
        train_online(build_setup(config), "rloo")


def test_the_rl_methods_name_their_trl_spellings_and_defaults():
    assert RL_METHODS["grpo"].trl["GRPOTrainer(loss_type='dapo')"] == {"aggregation": "dapo"}
    assert resolve_rl_hparams("ppo")["inner_steps"] == 4
    assert resolve_rl_hparams("grpo")["group_size"] == 8


@pytest.mark.slow  # the rl preset: 4 methods x 10 seeds x 300 steps, some 40 s
def test_every_rl_method_succeeds_on_every_seed_of_the_rl_preset(tmp_path):
    from lakelab.mlp.runs import run_lake

    paths = run_lake(PRESETS["rl"], tmp_path, workers=2)
    metrics = pd.read_csv(paths["metrics"])
    final = metrics[metrics.step == PRESETS["rl"].steps]
    assert set(final.method) == set(RL_METHODS)
    assert (final.success >= 0.99).all(), final.groupby("method").success.min()


@pytest.mark.slow  # every method twice
def test_the_batched_loop_gives_the_plain_loops_numbers():
    """All seeds in one stacked computation (train_online) against each seed alone
    (train_online_plain): the same episodes, the same rows to rounding."""
    from lakelab.mlp.online import train_online_plain
    from lakelab.mlp.replay import KINDS
    from tests.helpers import assert_replays_agree, assert_rows_close

    config = QUICK.replace(seeds=3, steps=30, log_every=10)
    setup = build_setup(config)
    chosen_found = []
    for method in RL_METHODS:
        joint, plain = train_online(setup, method), train_online_plain(setup, method)
        for fast, slow in zip(joint.rows, plain.rows, strict=True):
            assert_rows_close(fast, slow)
        assert np.allclose(joint.explored, plain.explored)
        assert np.allclose(joint.final_policy, plain.final_policy, rtol=1e-9, atol=1e-12)
        for n in range(config.seeds):
            assert_replays_agree(joint.replay, n, plain.replay, n)
        # every episode of a logged step is either chosen (it reached the goal) or rejected
        found = sum((getattr(joint.replay, k).lengths > 0).sum(-1) for k in KINDS)
        assert (found[:, :-1] == config.batch_size).all() and (found[:, -1] == 0).all()
        chosen_found.append(joint.replay.chosen.lengths.any())
    assert any(chosen_found)


def test_frac_reward_zero_std_counts_equal_rewards_up_to_rounding():
    """Six equal rewards of 1 - 0.1 * 3 have a std of about 1e-16, not 0: a group without
    signal all the same, as TRL counts it (torch.isclose)."""
    from lakelab.mlp.online import _batch_metrics

    rewards = torch.full((6,), 1 - 0.1 * 3, dtype=torch.float64)
    assert _batch_metrics(rewards, 6, {})["batch/frac_reward_zero_std"] == 1.0
