"""Your own objective, registered: it runs wherever a built-in one does, and a malformed one
is refused with a ValueError naming the field.

The objective used here is a hinge on the mean log-prob margin,
L = relu(margin - (A_w - A_l)), written as a user would, outside lakelab.
"""

import dataclasses
import importlib.metadata
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import lakelab
import lakelab.analysis
from lakelab.lm import data as lm_data
from lakelab.lm import train as lm_train
from lakelab.mlp.config import PRESETS
from lakelab.mlp.experiment import build_setup
from lakelab.mlp.joint import train_methods
from lakelab.mlp.runs import run_lake
from lakelab.mlp.sweep import SweepSpec, grid_points
from lakelab.mlp.sweep_run import run_sweep
from lakelab.mlp.train import train
from lakelab.registry import (
    OBJECTIVES,
    HyperParam,
    Objective,
    SequenceLogps,
    compute_objective,
    get_objective,
    load_entry_points,
    register_objective,
    unregister_objective,
)
from lakelab.validate import Interval
from tests.helpers import FAST_LAKE, TINY_LM


def margin_loss(chosen, rejected, *, margin=1.0, reduction="mean"):
    """L = relu(margin - (A_w - A_l)), per pair."""
    losses = torch.relu(margin - (chosen - rejected))
    metrics = {"logps/chosen": chosen.detach(), "margin/hit": (losses == 0).double()}
    if reduction == "none":
        return losses, metrics
    return losses.mean(), {k: v.mean().item() for k, v in metrics.items()}


MARGIN = Objective(
    name="margin",
    title="Margin hinge",
    loss_fn=margin_loss,
    needs_pairs=True,
    needs_reference=False,
    reduction="mean",
    hyperparams=(HyperParam("margin", 1.0, interval=Interval(0.0, None), help="target gap"),),
    summary="Hinge on the mean log-prob margin.",
    formula="L = relu(margin - (A_w - A_l))",
    latex=r"\mathcal{L} = \max(0, m - (A_w - A_l))",
    paper="a user's own",
)


@pytest.fixture
def registered():
    register_objective(MARGIN)
    yield MARGIN
    unregister_objective("margin")


def test_a_registered_objective_is_computed_like_a_built_in(registered):
    assert lakelab.register_objective is register_objective  # the package's entry point
    chosen = torch.tensor([[-0.1, -0.3, 0.0]], dtype=torch.float64)
    rejected = torch.tensor([[-0.9, -1.1, -2.0]], dtype=torch.float64)
    mask_c = torch.tensor([[True, True, False]])
    mask_r = torch.tensor([[True, True, True]])
    logps = SequenceLogps(chosen, mask_c, rejected, mask_r)
    loss, metrics = compute_objective("margin", logps, {"margin": 2.0})
    # A_w = -0.2, A_l = -4/3: margin 2 - 1.1333... = 0.8666...
    assert loss.item() == pytest.approx(2.0 - (-0.2 + 4 / 3), rel=1e-12)
    assert metrics["margin/hit"] == 0.0
    with pytest.raises(ValueError, match=r"margin: margin must be in \[0, inf\), got -1"):
        compute_objective("margin", logps, {"margin": -1})


@pytest.mark.slow  # a worker process
def test_a_registered_objective_trains_on_the_lake_in_both_loops_and_runs(registered, tmp_path):
    config = PRESETS["quick"].replace(seeds=2, methods=("sft", "margin"), **FAST_LAKE)
    setup = build_setup(config)
    joint = train_methods(setup, ["margin"])["margin"]
    for i in range(2):
        plain = train(setup, "margin", i)
        for fast, slow in zip(joint.rows[i], plain.rows[0], strict=True):
            assert fast["kl_uniform"] == pytest.approx(slow["kl_uniform"], rel=1e-9)
    # it moved the policy: the last KL differs from the first
    assert joint.rows[0][-1]["kl_uniform"] != joint.rows[0][0]["kl_uniform"]
    assert "batch/margin/hit" in joint.rows[0][-1]
    paths = run_lake(config, tmp_path / "run", workers=2)  # a forked worker sees it too
    assert "margin" in paths["summary"].read_text()


def test_a_registered_objective_is_a_sweep_knob(registered, tmp_path):
    base = PRESETS["quick"].replace(seeds=1, methods=("margin",), **FAST_LAKE)
    spec = SweepSpec(base, grid_points({"margin.margin": [0.5, 2.0]}))
    results = pd.read_csv(run_sweep(spec, tmp_path)["results"])
    assert list(results["margin.margin"]) == [0.5, 2.0]
    assert (results["status"] == "ok").all() and (results["method"] == "margin").all()
    assert results["param_mse"].iloc[0] != results["param_mse"].iloc[1]  # the knob reached it


@pytest.mark.slow  # pre-trains a model
def test_a_registered_objective_aligns_the_lm(registered):
    torch.set_num_threads(1)
    data = lm_data.seed_data(TINY_LM, 0)
    base = lm_train.pretrain(TINY_LM, data.corpus, 0, log=lambda model, step: None)
    logged = []
    lm_train.align(
        TINY_LM.replace(methods=("margin",)),
        base,
        "margin",
        data,
        0,
        reference=None,
        log=lambda model, step, extra: logged.append(extra),
    )
    assert len(logged) == 3  # steps 0, 3 and 6; step 0 is the base model, before any loss
    assert all(math.isfinite(e["loss"]) and e["loss"] > 0 for e in logged[1:])


def broken(**changes) -> Objective:
    return dataclasses.replace(MARGIN, **changes)


@pytest.mark.parametrize(
    ("objective", "message"),
    [
        (broken(name="Margin"), "name must be lower-case"),
        (broken(name="ift.x"), "name must be lower-case"),
        (broken(reduction="max"), r"margin: reduction must be one of \['mean', 'sum', 'tokens'\]"),
        (broken(needs_pairs=False, needs_reference=True), "needs_reference needs needs_pairs"),
        (broken(needs_pairs="yes"), "needs_pairs must be True or False"),
        (broken(hyperparams=[MARGIN.hyperparams[0]]), "hyperparams must be a tuple of HyperParam"),
        (
            broken(hyperparams=(HyperParam("margin", -1.0, interval=Interval(0.0, None)),)),
            "the default of 'margin' is not allowed",
        ),
        (broken(hyperparams=(HyperParam("margin", 1.0),)), "needs an interval or choices"),
        (broken(loss_fn="margin_loss"), "loss_fn must be callable"),
        (broken(loss_fn=lambda c, r, *, reduction="mean": None), "keywords"),  # no margin kw
        (broken(loss_fn=lambda c, *, margin=1, reduction="mean": None), "2 positional inputs"),
        (broken(mixed_pass=True), "mixed_pass needs reduction 'tokens'"),
        (broken(formula=None), "formula must be a string"),
        (broken(name="dpo"), "'dpo' is already registered"),
        ("margin", "expected an Objective"),
    ],
)
def test_a_malformed_objective_is_refused_naming_the_field(objective, message):
    with pytest.raises(ValueError, match=message):
        register_objective(objective)
    assert "margin" not in OBJECTIVES and "Margin" not in OBJECTIVES


def test_built_ins_cannot_be_unregistered_and_unknown_names_are_listed():
    with pytest.raises(ValueError, match="built in"):
        unregister_objective("sft")
    with pytest.raises(ValueError, match=r"unknown objective 'nope'; valid: \["):
        get_objective("nope")


def test_packages_register_objectives_through_entry_points(monkeypatch):
    here = Path(__file__).stem
    good = importlib.metadata.EntryPoint("margin", f"tests.{here}:MARGIN", "lakelab.objectives")
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [good])
    try:
        assert get_objective("margin") is MARGIN  # an unknown name loads the entry points
    finally:
        unregister_objective("margin")
    bad = importlib.metadata.EntryPoint("oops", f"tests.{here}:NOTHING", "lakelab.objectives")
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [bad])
    with pytest.raises(ValueError, match=r"entry point 'oops' \(tests\.test_register:NOTHING\)"):
        load_entry_points()
    wrong = importlib.metadata.EntryPoint("other", f"tests.{here}:MARGIN", "lakelab.objectives")
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [wrong])
    with pytest.raises(ValueError, match="must name an Objective called 'other'"):
        load_entry_points()


@pytest.mark.slow
def test_the_apps_explorer_shows_a_registered_objective(registered):
    AppTest = pytest.importorskip("streamlit.testing.v1").AppTest
    app_py = Path(__file__).resolve().parents[1] / "app.py"
    at = AppTest.from_file(str(app_py), default_timeout=120).switch_page("app_pages/explorer.py")
    at.run()
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert "margin" in table.index
    # below the margin the hinge's gradient is -1 on A_w and +1 on A_l (here A = logp)
    assert table.loc["margin", "dL/dlogp_chosen"] == pytest.approx(-1.0)
    assert table.loc["margin", "dL/dlogp_rejected"] == pytest.approx(1.0)


def dpo_per_token(chosen, chosen_mask, rejected, rejected_mask, ref_chosen, ref_rejected, *,
                  beta=0.1, reduction="mean"):  # fmt: skip
    """DPO written on per-token log-probs: the objective reduces the tokens itself."""

    def summed(x, mask):
        return torch.where(mask, x, 0.0).sum(-1)

    d = beta * (
        (summed(chosen, chosen_mask) - summed(ref_chosen, chosen_mask))
        - (summed(rejected, rejected_mask) - summed(ref_rejected, rejected_mask))
    )
    losses = -torch.nn.functional.logsigmoid(d)
    return (losses, {}) if reduction == "none" else (losses.mean(), {})


PER_TOKEN_DPO = dataclasses.replace(
    get_objective("dpo"),
    name="dpo_tokens",
    loss_fn=dpo_per_token,
    reduction="tokens",
    hyperparams=(get_objective("dpo").hyperparams[0],),
    trl={},
)


def test_a_per_token_objective_with_pairs_and_a_reference_is_dpo_when_it_should_be():
    register_objective(PER_TOKEN_DPO)
    try:
        g = torch.Generator().manual_seed(0)
        x = [-3 * torch.rand(4, 6, generator=g, dtype=torch.float64) for _ in range(4)]
        masks = [torch.rand(4, 6, generator=g) < 0.6 for _ in range(2)]
        masks = [m | (torch.arange(6) == 0) for m in masks]  # at least one token each
        logps = SequenceLogps(x[0], masks[0], x[1], masks[1], x[2], x[3])
        mine = compute_objective("dpo_tokens", logps, {"beta": 0.3})[0]
        assert mine.item() == pytest.approx(
            compute_objective("dpo", logps, {"beta": 0.3})[0].item()
        )
        config = PRESETS["quick"].replace(seeds=1, methods=("dpo", "dpo_tokens"), **FAST_LAKE)
        results = train_methods(build_setup(config), ["dpo", "dpo_tokens"])
        ours, theirs = results["dpo_tokens"].rows[0], results["dpo"].rows[0]
        assert ours[-1]["kl_uniform"] == pytest.approx(theirs[-1]["kl_uniform"], rel=1e-6)
        grid = np.linspace(-3.0, -0.1, 4)
        mine = lakelab.analysis.gradient_field("dpo_tokens", grid, grid, ref_chosen_logp=-1.0)
        theirs = lakelab.analysis.gradient_field("dpo", grid, grid, ref_chosen_logp=-1.0)
        for key, value in theirs.items():
            np.testing.assert_allclose(mine[key], value, rtol=1e-12)
    finally:
        unregister_objective("dpo_tokens")
