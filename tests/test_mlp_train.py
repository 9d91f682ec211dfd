"""The plain Frozen Lake loop (lakelab.mlp.train) against the fast joint loop (lakelab.mlp.joint).

The two share only the set-up, the objectives and the exact metrics. The plain loop runs one
seed and one objective, a forward pass per token, sets of trajectories and the one-move-at-a-
time sampler; the joint loop stacks every method and seed, looks tokens up in the policy
table, samples vectorised and filters with hashes. Both read the same random streams, so
they must agree up to float64 rounding (summation order differs), online negatives included.
"""

import numpy as np
import pytest
import torch

from lakelab.configs import METHODS
from lakelab.mlp import train as plain
from lakelab.mlp.config import PRESETS
from lakelab.mlp.data import to_batch
from lakelab.mlp.experiment import ONLINE_NEGATIVES, build_setup
from lakelab.mlp.joint import train_methods
from lakelab.mlp.negatives import OnlineNegatives
from lakelab.registry import BUILTINS
from lakelab.training import Diverged
from tests.helpers import assert_replays_agree, assert_rows_close

SMALL = PRESETS["quick"].replace(
    seeds=2, steps=30, log_every=10, optimum_steps=200, optimum_kl_target=0.05, n_demos=32
)
PROTOCOLS = {
    "offline-single": SMALL.replace(negatives="offline", chosen="single"),
    "offline-expected-residual": SMALL.replace(
        negatives="offline", methods=("ift",), hparams={"ift": {"residual": "expected"}}
    ),
    "online-demos": SMALL,
    "online-initial-slippery": SMALL.replace(
        lake="4x4", slippery=True, offline_source="initial", methods=("sft", "ift", "dpo")
    ),
    "offline-trl-family": SMALL.replace(  # the objectives beyond the default seven
        negatives="offline", methods=tuple(m for m in BUILTINS if m not in METHODS)
    ),
}


SLOW = ("online-demos", "online-initial-slippery", "offline-single", "offline-trl-family")


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in PROTOCOLS]
)
def test_the_plain_loop_gives_the_joint_loops_numbers(name):
    config = PROTOCOLS[name]
    setup = build_setup(config)
    joint = train_methods(setup, list(config.methods))
    for method in config.methods:
        for i in range(config.seeds):
            alone = plain.train(setup, method, i)
            assert_rows_close(joint[method].rows[i], alone.rows[0])
            for field in ("explored", "state_error", "final_policy"):
                fast, slow = getattr(joint[method], field)[i], getattr(alone, field)[0]
                np.testing.assert_allclose(fast, slow, rtol=1e-9, atol=1e-12, err_msg=field)
            assert_replays_agree(joint[method].replay, i, alone.replay, 0)
    # the online run did fall back on the offline pool at times: the comparison covered it
    if name == "online-demos":
        assert max(r["online_fallback"] for r in joint["dpo"].rows[0]) > 0


def test_plain_and_hashed_online_negatives_pick_the_same_trajectories():
    setup = build_setup(SMALL)
    rng_fast = [np.random.default_rng([s, ONLINE_NEGATIVES]) for s in setup.seeds]
    fast = OnlineNegatives(setup, list(range(len(setup.seeds))), rng_fast)
    rng_plain = [np.random.default_rng([s, ONLINE_NEGATIVES]) for s in setup.seeds]
    offline = to_batch(setup.offline)
    uniform = np.full((setup.lake.n_states, 4), 0.25)
    filtered = []
    for mix in (0.0, 0.05, 0.5):  # near pi*: most draws equal a chosen demo
        probs = np.stack([(1 - mix) * setup.optimum.policy + mix * uniform] * len(setup.seeds))
        batch, fell_back = fast.batch(fast.draw(probs), slice(0, len(setup.seeds)), offline)
        for n in range(len(setup.seeds)):
            chosen = {t.key() for t in setup.chosen[n]}
            slow, missing = plain.online_negatives(
                setup.lake,
                probs[n],
                chosen,
                list(setup.offline[n]),
                SMALL.batch_size,
                rng_plain[n],
                SMALL.max_len,
            )
            got = [
                (tuple(s[m].tolist()), tuple(a[m].tolist()))
                for s, a, m in zip(batch.states[n], batch.actions[n], batch.mask[n], strict=True)
            ]
            assert got == [t.key() for t in slow]
            assert fell_back[n] == missing
            assert not chosen & {t.key() for t in slow[: SMALL.batch_size - missing]}
        filtered.append(fell_back.sum())
    assert filtered[0] > 0  # near pi*, draws equal to chosen trajectories were filtered out


def test_the_plain_loop_names_method_seed_and_step_when_it_diverges(monkeypatch):
    setup = build_setup(SMALL.replace(seeds=1, methods=("dpo",)))
    real = plain.compute_objective

    def poisoned(name, logps, hp):
        loss, metrics = real(name, logps, hp)
        return loss * (torch.nan if poisoned.calls == 3 else 1.0), metrics

    poisoned.calls = 0

    def counting(name, logps, hp):
        poisoned.calls += 1
        return poisoned(name, logps, hp)

    monkeypatch.setattr(plain, "compute_objective", counting)
    with pytest.raises(Diverged, match=r"dpo diverged at step 2 \(seed 0\)"):
        plain.train(setup, "dpo", 0)


def test_optimality_is_the_return_over_the_optimal_value():
    """optimality = V^pi(start) / V*(start), V* by value iteration at the run's gamma: in
    (0, 1] for every logged row, and 1 for the greedy optimal policy's own return."""
    from lakelab.solver import policy_evaluation, value_iteration

    config = PROTOCOLS["offline-single"].replace(seeds=2)
    setup = build_setup(config)
    best = value_iteration(setup.lake, gamma=config.gamma)
    assert setup.v_star == pytest.approx(best.V[setup.lake.start], rel=1e-12)
    greedy = policy_evaluation(setup.lake, best.policy, gamma=config.gamma)[0]
    assert greedy[setup.lake.start] / setup.v_star == pytest.approx(1.0, rel=1e-9)
    rows = train_methods(setup, ["sft"])["sft"].rows
    for row in (r for seed in rows for r in seed):
        assert row["optimality"] == pytest.approx(row["return"] / setup.v_star, rel=1e-12)
        assert 0 < row["optimality"] <= 1 + 1e-12
