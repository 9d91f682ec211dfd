"""The OBJECTIVES registry, hyper-parameter resolution and the uniform entry point."""

from __future__ import annotations

import dataclasses
import inspect
import math

import pytest
import torch

from lakelab import objectives as O
from lakelab.registry import (
    OBJECTIVES,
    HyperParam,
    compute_objective,
    get_objective,
    resolve_hparams,
)
from tests.helpers import token_batch

NAMES = ["alphapo", "aot", "apo", "apo_unpaired", "asft", "bco", "bco_pair", "cpo", "cpo_ipo",
         "cpo_nll",
         "discopop", "dpo", "dpo_norm", "exo", "ift", "ipo", "kto", "ld_dpo", "nca", "orpo",
         "rpo", "sft", "sft_token_mean", "simpo", "sppo_hard", "wpo"]  # fmt: skip


def by_hand(tokens: torch.Tensor, mask: torch.Tensor, kind: str) -> torch.Tensor:
    """S(y) or A(y) with a loop, independent of lakelab.reductions."""
    out = []
    for row, m in zip(tokens.tolist(), mask.tolist(), strict=True):
        picked = [v for v, k in zip(row, m, strict=True) if k]
        out.append(sum(picked) / (len(picked) if kind == "mean" else 1))
    return torch.tensor(out, dtype=torch.float64)


def test_registry_has_the_built_in_objectives():
    assert sorted(OBJECTIVES) == NAMES
    for name, objective in OBJECTIVES.items():
        assert objective.name == name
        assert objective.reduction in ("mean", "sum", "tokens")
        assert objective.summary and "\n" not in objective.summary
        assert objective.paper
    assert [n for n, o in OBJECTIVES.items() if o.needs_reference] == [
        "dpo", "ipo", "exo", "nca", "bco_pair", "sppo_hard", "apo", "discopop", "dpo_norm",
        "aot", "ld_dpo", "kto", "bco", "apo_unpaired", "rpo", "wpo",
    ]  # fmt: skip
    assert [n for n, o in OBJECTIVES.items() if o.unpaired] == ["kto", "bco", "apo_unpaired"]
    assert [n for n, o in OBJECTIVES.items() if o.mismatched] == ["kto"]
    assert sorted(n for n, o in OBJECTIVES.items() if not o.needs_pairs) == [
        "ift", "sft", "sft_token_mean"
    ]  # fmt: skip
    assert OBJECTIVES["dpo"].reduction == "sum" and OBJECTIVES["ift"].reduction == "tokens"


@pytest.mark.parametrize("name", NAMES)
def test_registry_defaults_match_function_defaults(name):
    """Every loss-side hyper-parameter is a keyword of the loss with the same default, and
    every keyword of the loss (but ``reduction``, the output's form) is registered: registry
    and code cannot drift apart."""
    objective = OBJECTIVES[name]
    keywords = {
        p.name: p.default
        for p in inspect.signature(objective.loss_fn).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name != "reduction"
    }
    loss_side = {hp.name: hp.default for hp in objective.hyperparams if not hp.model_side}
    assert loss_side == keywords


def test_ift_hyperparams():
    hp = {p.name: p for p in OBJECTIVES["ift"].hyperparams}
    assert hp["lam"].model_side and hp["lam"].default == 0.2 and str(hp["lam"].interval) == "[0, 1]"
    assert hp["residual"].model_side and hp["residual"].default == "greedy"
    assert set(hp["residual"].choices) == {"greedy", "expected"}
    assert not hp["gamma"].model_side and hp["gamma"].default == 0.95
    assert set(hp["weighting"].choices) == {"loss", "prefix", "none"}


@pytest.mark.parametrize("name", NAMES)
def test_every_objective_runs_with_defaults(name):
    loss, metrics = compute_objective(name, token_batch())
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert metrics and all(type(v) is float for v in metrics.values())
    assert metrics["logps/chosen"] < 0


@pytest.mark.parametrize(
    ("name", "hparams", "direct"),
    [
        ("sft", None, lambda c, r, rc, rr: O.sft_loss(c)),
        ("dpo", {"beta": 0.3, "variant": "robust", "label_smoothing": 0.1},
         lambda c, r, rc, rr: O.dpo_loss(c, r, rc, rr, beta=0.3, variant="robust",
                                         label_smoothing=0.1)),
        ("ipo", {"beta": 0.7}, lambda c, r, rc, rr: O.ipo_loss(c, r, rc, rr, beta=0.7)),
        ("orpo", {"lam": 0.25}, lambda c, r, rc, rr: O.orpo_loss(c, r, lam=0.25)),
        ("asft", {"lam": 0.5, "beta": 2.0},
         lambda c, r, rc, rr: O.asft_loss(c, r, lam=0.5, beta=2.0)),
        ("simpo", {"gamma": 1.0}, lambda c, r, rc, rr: O.simpo_loss(c, r, beta=2.0, gamma=1.0)),
    ],
)  # fmt: skip
def test_compute_objective_equals_direct_call(name, hparams, direct):
    batch = token_batch(seed=1)
    kind = "sum" if name == "dpo" else "mean"
    c = by_hand(batch.chosen, batch.chosen_mask, kind)
    r = by_hand(batch.rejected, batch.rejected_mask, kind)
    rc = by_hand(batch.ref_chosen, batch.chosen_mask, kind)
    rr = by_hand(batch.ref_rejected, batch.rejected_mask, kind)
    loss, metrics = compute_objective(name, batch, hparams)
    expected_loss, expected_metrics = direct(c, r, rc, rr)
    assert loss.item() == pytest.approx(expected_loss.item(), rel=1e-12)
    assert metrics == pytest.approx(expected_metrics, rel=1e-12)


def test_compute_objective_ift_passes_only_loss_side_hparams():
    batch = token_batch(seed=2)
    hp = {"lam": 0.9, "residual": "expected", "gamma": 0.5, "weighting": "prefix"}
    loss, metrics = compute_objective("ift", batch, hp)
    expected, expected_metrics = O.ift_loss(
        batch.chosen, batch.chosen_mask, gamma=0.5, weighting="prefix"
    )
    assert loss.item() == expected.item()
    assert metrics == expected_metrics


def test_compute_objective_gradient_flows_to_token_logps():
    batch = token_batch(seed=3)
    leaves = dataclasses.replace(
        batch,
        chosen=batch.chosen.clone().requires_grad_(True),
        rejected=batch.rejected.clone().requires_grad_(True),
    )
    loss, _ = compute_objective("dpo", leaves)
    loss.backward()
    assert (leaves.chosen.grad[batch.chosen_mask == 0] == 0).all()
    assert (leaves.chosen.grad[batch.chosen_mask == 1] < 0).all()  # raise chosen
    assert (leaves.rejected.grad[batch.rejected_mask == 1] > 0).all()  # lower rejected


def test_resolve_hparams_fills_defaults_and_validates():
    assert resolve_hparams("dpo") == {
        "beta": 0.1,
        "variant": "sigmoid",
        "label_smoothing": 0.0,
        "f_divergence_type": "reverse_kl",
        "f_alpha_divergence_coef": 0.5,
    }
    assert resolve_hparams("sft") == {}
    hp = resolve_hparams("ift", {"lam": 1, "gamma": 0})
    assert hp == {"lam": 1.0, "residual": "greedy", "gamma": 0.0, "weighting": "loss"}
    assert type(hp["lam"]) is float


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"unknown objective 'rrhf'; valid: \['alphapo', 'aot', "):
        get_objective("rrhf")
    with pytest.raises(ValueError, match="unknown objective 'rrhf'"):
        compute_objective("rrhf", token_batch())
    with pytest.raises(ValueError, match=r"dpo: unknown hyper-parameter\(s\) \['bta'\]; valid: "
                       r"\['beta', 'f_alpha_divergence_coef', 'f_divergence_type', "
                       r"'label_smoothing', 'variant'\]"):  # fmt: skip
        resolve_hparams("dpo", {"bta": 0.1})
    with pytest.raises(ValueError, match=r"dpo: beta must be in \(0, inf\), got 0.0"):
        resolve_hparams("dpo", {"beta": 0.0})
    with pytest.raises(ValueError, match=r"dpo: variant must be one of \['hinge', 'robust', "):
        resolve_hparams("dpo", {"variant": "ipo"})
    with pytest.raises(ValueError, match=r"ift: residual must be one of"):
        compute_objective("ift", token_batch(), {"residual": "sample"})
    with pytest.raises(ValueError, match=r"ift: lam must be in \[0, 1\], got 1.2"):
        compute_objective("ift", token_batch(), {"lam": 1.2})


def _out_of_range(hp: HyperParam) -> list:
    bad = [math.nan, math.inf, "0.1", True]
    if hp.low is not None:
        bad.append(hp.low if hp.interval.low_open else hp.low - 1e-3)
    if hp.high is not None:
        bad.append(hp.high if hp.interval.high_open else hp.high + 1e-3)
    return bad


@pytest.mark.parametrize("name", NAMES)
def test_every_numeric_hyperparam_rejects_out_of_range(name):
    for hp in OBJECTIVES[name].hyperparams:
        if hp.choices is not None:
            with pytest.raises(ValueError, match=rf"{name}: {hp.name} must be one of"):
                resolve_hparams(name, {hp.name: "nonsense"})
            continue
        hp.check(hp.default, name)  # the default itself is valid
        for value in _out_of_range(hp):
            with pytest.raises(ValueError, match=rf"{name}: {hp.name} must be in .*got"):
                resolve_hparams(name, {hp.name: value})


def test_missing_pairs_or_reference():
    batch = token_batch()
    no_rejected = dataclasses.replace(batch, rejected=None, rejected_mask=None)
    with pytest.raises(ValueError, match="orpo needs pairs"):
        compute_objective("orpo", no_rejected)
    no_ref = dataclasses.replace(batch, ref_rejected=None)
    with pytest.raises(ValueError, match="dpo needs a reference"):
        compute_objective("dpo", no_ref)
    compute_objective("sft", no_rejected)  # SFT and IFT need neither
    compute_objective("ift", no_rejected)
    compute_objective("simpo", no_ref)  # no reference needed
    bad_ref = dataclasses.replace(batch, ref_chosen=batch.ref_chosen[:, :-1])
    with pytest.raises(
        ValueError, match=r"ipo: ref_chosen must have the shape of chosen \(3, 6\), got \(3, 5\)"
    ):
        compute_objective("ipo", bad_ref)


def test_dataclasses_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        OBJECTIVES["dpo"].name = "x"
    with pytest.raises(dataclasses.FrozenInstanceError):
        token_batch().chosen = None


@pytest.mark.parametrize("name", NAMES)
def test_the_registrys_formula_is_the_one_in_the_loss_docstring(name):
    """One source of truth: every clause of the registry's one-line formula stands, to the
    letter (spaces aside), in the docstring of the function that computes the loss."""
    objective = OBJECTIVES[name]
    doc = " ".join(inspect.getdoc(objective.loss_fn).split())
    for clause in objective.formula.split("; "):
        assert " ".join(clause.split()) in doc, (name, clause)
    assert objective.latex.startswith(r"\mathcal{L}_{")
    assert objective.paper and objective.summary.endswith(".")


def test_the_docs_tables_are_the_registrys():
    from lakelab.tables import TABLES, between

    for path, (begin, end, table) in TABLES.items():
        assert between(path, begin, end) == table(), (
            f"regenerate: python -m lakelab.tables ({path})"
        )


def test_every_trl_spelling_is_claimed_once():
    spellings = [s for o in OBJECTIVES.values() for s in o.trl]
    assert len(spellings) == len(set(spellings))
    assert "DPOTrainer(loss_type='hinge')" in OBJECTIVES["dpo"].trl
