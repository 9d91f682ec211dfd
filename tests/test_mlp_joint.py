"""The Frozen Lake experiment core on small configs: data, explored grids, determinism."""

import math

import numpy as np
import pytest

from lakelab.mlp.config import PRESETS, LakeConfig, config_from_dict
from lakelab.mlp.data import routes
from lakelab.mlp.experiment import build_setup
from lakelab.mlp.joint import train_method, train_methods
from lakelab.mlp.negatives import OnlineNegatives
from lakelab.training import Diverged

TINY = PRESETS["quick"].replace(steps=20, log_every=10, seeds=2)


@pytest.fixture(scope="module")
def quick_setup():
    return build_setup(PRESETS["quick"])


@pytest.mark.slow  # ~1 s: the quick preset's set-up
def test_theta_star_reaches_its_kl_target(quick_setup):
    import torch

    from lakelab.mlp.model import kl_per_state, state_log_probs

    cfg, lake = quick_setup.config, quick_setup.lake
    # recompute the KL of theta* independently of build_setup's own check
    kl = kl_per_state(
        torch.tensor(quick_setup.optimum.policy), state_log_probs(quick_setup.theta_star)
    )
    kl_live = kl[:, torch.tensor(~lake.terminal)].mean(-1)
    assert (kl_live <= cfg.optimum_kl_target).all()
    torch.testing.assert_close(kl_live, quick_setup.optimum_kl)
    # and it really moved: theta* is not theta_0
    diff = (quick_setup.theta_star["W1"] - quick_setup.theta0["W1"]).abs().max()
    assert diff > 0.05


def test_a_too_strict_kl_target_is_an_error():
    with pytest.raises(ValueError, match=r"reached KL .* > optimum_kl_target"):
        build_setup(TINY.replace(optimum_steps=5, optimum_kl_target=1e-6))


@pytest.mark.parametrize("method", PRESETS["quick"].methods)
def test_every_objective_lowers_kl_to_pi_star_with_demos(quick_setup, method):
    result = train_method(quick_setup, method)
    for rows in result.rows:
        assert rows[-1]["kl_visitation"] < 0.5 * rows[0]["kl_visitation"]
        assert math.isfinite(rows[-1]["param_mse"])


def test_sft_explores_exactly_the_chosen_states():
    setup = build_setup(TINY.replace(chosen="single", methods=("sft",)))
    result = train_method(setup, "sft")
    route_states = set(setup.optimal_route.states)
    for mass in result.explored:
        assert set(np.flatnonzero(mass > 0)) == route_states


@pytest.mark.slow  # ~1 s: two runs
def test_ift_residual_puts_mass_off_the_path_only_when_lam_positive():
    for lam in (0.0, 0.2):
        cfg = TINY.replace(chosen="single", methods=("ift",), hparams={"ift": {"lam": lam}})
        setup = build_setup(cfg)
        route = set(setup.optimal_route.states)
        off = [s for s in range(setup.lake.n_states) if s not in route]
        mass = train_method(setup, "ift").explored
        n_inputs = cfg.steps * cfg.batch_size * len(setup.optimal_route)
        np.testing.assert_allclose(mass.sum(1), n_inputs)  # one unit of input per token
        if lam == 0.0:
            assert (mass[:, off] == 0).all()
        else:
            # the greedy prediction from an untrained policy lands off the route, and the
            # start state (position 0, the prompt) is never mixed
            assert (mass[:, off].sum(1) > 0).all()
            assert (mass[:, off].sum(1) <= lam * n_inputs + 1e-9).all()
            start_mass = cfg.steps * cfg.batch_size
            assert (mass[:, setup.lake.start] >= start_mass - 1e-9).all()


def test_ift_mixed_inputs_match_eq_17_by_hand():
    import torch

    from lakelab.mlp.data import to_batch
    from lakelab.mlp.logps import policy_logps
    from lakelab.mlp.model import forward, state_log_probs

    setup = build_setup(TINY.replace(methods=("ift",)))
    lake, route = setup.lake, setup.optimal_route
    batch = to_batch([[route], [route]])
    P = torch.tensor(lake.P)
    for variant in ("greedy", "expected"):
        hp = {"lam": 0.3, "residual": variant, "gamma": 0.95, "weighting": "loss"}
        table = state_log_probs(setup.theta0)
        act = setup.config.activation
        _, used = policy_logps(
            "ift",
            hp,
            params=setup.theta0,
            table=table,
            ref_table=table,
            chosen=batch,
            rejected=None,
            P=P,
            activation=act,
        )
        eye = torch.eye(lake.n_states, dtype=torch.float64).expand(2, -1, -1)
        pi = torch.softmax(forward(setup.theta0, eye), -1)  # (N, S, A)
        for n in range(2):
            expected = torch.zeros(lake.n_states, dtype=torch.float64)
            expected[route.states[0]] += 1.0  # position 0 untouched
            for i in range(1, len(route)):
                prev = route.states[i - 1]
                if variant == "greedy":
                    pred = P[prev, int(pi[n, prev].argmax())]
                else:
                    pred = (pi[n, prev][:, None] * P[prev]).sum(0)
                expected[route.states[i]] += 0.7
                expected += 0.3 * pred
            torch.testing.assert_close(torch.from_numpy(used[n]), expected)


def test_ift_with_lam_0_and_gamma_0_reproduces_sft_rows():
    cfg = TINY.replace(methods=("sft", "ift"), hparams={"ift": {"lam": 0.0, "gamma": 0.0}})
    setup = build_setup(cfg)
    sft, ift = train_method(setup, "sft"), train_method(setup, "ift")
    for rows_s, rows_i in zip(sft.rows, ift.rows, strict=True):
        for a, b in zip(rows_s, rows_i, strict=True):
            for k in ("param_mse", "kl_visitation", "success", "explored_cells"):
                assert a[k] == pytest.approx(b[k], rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("start", ["theta0", "theta_star"])  # theta*: close to pi*, hard case
def test_online_negatives_are_episodes_never_equal_to_a_chosen_one(quick_setup, start):
    from lakelab.mlp.data import to_batch
    from lakelab.mlp.model import state_log_probs

    setup, lake = quick_setup, quick_setup.lake
    idx = list(range(len(setup.seeds)))
    B = setup.config.batch_size
    probs = state_log_probs(getattr(setup, start)).exp().numpy()
    rngs = [np.random.default_rng(s) for s in setup.seeds]
    offline = to_batch([setup.offline[i] for i in idx])
    negatives = OnlineNegatives(setup, idx, rngs)
    batch, fallbacks = negatives.batch(negatives.draw(probs), slice(0, len(idx)), offline)
    assert batch.states.shape[:2] == (len(idx), B)
    assert fallbacks.shape == (len(idx),) and ((fallbacks >= 0) & (fallbacks <= B)).all()
    for n, i in enumerate(idx):
        banned = {t.key() for t in setup.chosen[i]}
        pool = [t.key() for t in setup.offline[i]]
        got = []
        for b in range(B):
            m = batch.mask[n, b]
            got.append(
                (tuple(batch.states[n, b][m].tolist()), tuple(batch.actions[n, b][m].tolist()))
            )
        assert not any(key in banned for key in got)
        fresh, filled = got[: B - int(fallbacks[n])], got[B - int(fallbacks[n]) :]
        # the missing slots come from the offline pool, cycled, in order
        assert filled == [pool[k % len(pool)] for k in range(len(filled))]
        # the fresh ones are real episodes of the lake: from the start, feasible moves
        for states, actions in fresh:
            assert states[0] == lake.start
            for s, a, s2 in zip(states, actions, states[1:], strict=False):
                assert lake.P[s, a, s2] > 0 and not lake.terminal[s]
    if start == "theta0":
        assert fallbacks.sum() == 0  # an untrained policy rarely repeats a demo


@pytest.mark.slow  # ~0.7 s: two runs
def test_same_config_and_seed_give_identical_rows():
    a = train_method(build_setup(TINY), "dpo").rows
    b = train_method(build_setup(TINY), "dpo").rows
    assert a == b


@pytest.mark.slow  # ~0.6 s each: every seed batched and looped
@pytest.mark.parametrize("method", ["ift", "dpo"])
def test_batched_seeds_equal_looped_seeds(method):
    setup = build_setup(TINY.replace(seeds=3))
    batched = train_method(setup, method)
    for n in range(3):
        alone = train_method(setup, method, seed_index=[n])
        for row_b, row_a in zip(batched.rows[n], alone.rows[0], strict=True):
            assert row_b.keys() == row_a.keys()
            for k in row_b:
                assert row_b[k] == pytest.approx(row_a[k], rel=1e-9, abs=1e-12, nan_ok=True)
        np.testing.assert_allclose(batched.explored[n], alone.explored[0])
        np.testing.assert_allclose(batched.final_policy[n], alone.final_policy[0], rtol=1e-9)


@pytest.mark.slow  # over 1 s: the full suite runs it (docs/testing.md)
def test_methods_trained_together_equal_methods_trained_alone():
    # every objective, online negatives (shared simulation) and one method resumed on a
    # subset of seeds: rows, grids and policies identical to one method at a time
    setup = build_setup(TINY.replace(seeds=3))
    todo = dict.fromkeys(setup.config.methods) | {"dpo": [2, 0]}
    together = train_methods(setup, todo)
    assert list(together) == list(todo)
    for method, seed_index in todo.items():
        alone = train_method(setup, method, seed_index=seed_index)
        assert together[method].rows == alone.rows
        for field in ("explored", "state_error", "final_policy"):
            np.testing.assert_array_equal(getattr(together[method], field), getattr(alone, field))


def test_a_seed_alone_gets_the_same_theta_star_and_data():
    both = build_setup(TINY.replace(seeds=2))
    second = build_setup(TINY.replace(seeds=1, first_seed=1))
    np.testing.assert_allclose(both.theta_star["W1"][1], second.theta_star["W1"][0], rtol=1e-9)
    assert [t.key() for t in both.chosen[1]] == [t.key() for t in second.chosen[0]]


def test_divergence_names_method_seed_and_step():
    setup = build_setup(TINY.replace(lr=1e308))
    with pytest.raises(Diverged, match=r"dpo diverged at step \d+ \(seed \d"):
        train_method(setup, "dpo")
    with pytest.raises(Diverged, match=r"^sft diverged at step 0 \(seed 0 and 1 more\)"):
        train_methods(setup, ["sft", "dpo"])  # trained together: the first to diverge is named


def test_two_paths_routes():
    setup_routes = routes(build_setup(TINY).lake)
    assert [len(r) for r in setup_routes] == [8, 12]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"lake": "SXG"}, "unknown lake preset"),
        ({"gamma": 1.0}, r"gamma must be in \[0, 1\)"),
        ({"tau": 0.0}, r"tau must be in \(0, inf\)"),
        ({"tau": 0.2, "gamma": 0.9}, "tau \\* log 4 / \\(1 - gamma\\)"),
        ({"steps": -1}, "steps must be a non-negative integer"),
        ({"seeds": 0}, "seeds must be a positive integer"),
        ({"lr": 0.0}, r"lr must be in \(0, inf\)"),
        ({"chosen": "all"}, r"chosen must be one of \['demos', 'single'\]"),
        ({"negatives": "both"}, "negatives must be one of"),
        ({"methods": ("sft", "a2c")}, "a2c"),
        ({"methods": ()}, "methods must be a non-empty list"),
        ({"hparams": {"dpo": {"beta": -1.0}}}, "beta"),
        ({"hparams": {"kto": {}}}, "not among methods"),
        ({"activation": "gelu"}, "activation must be one of"),
    ],
)
def test_bad_configs_raise(changes, message):
    with pytest.raises(ValueError, match=message):
        LakeConfig().replace(**changes)


def test_config_from_dict_rejects_unknown_fields_and_round_trips():
    with pytest.raises(ValueError, match=r"unknown config fields \['stepz'\]"):
        config_from_dict({"stepz": 3})
    cfg = PRESETS["quick"]
    assert config_from_dict(cfg.to_dict()) == cfg
