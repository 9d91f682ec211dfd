"""Objectives made of others: a weighted sum of registered objectives on one batch.

    L = sum_k w_k L_k          (each L_k its objective's batch loss on the same batch)

TRL builds losses this way in two places: ``DPOTrainer(loss_type=[...], loss_weights=[...])``
adds the listed loss types, and ``CPOTrainer`` adds ``cpo_alpha`` times the chosen
responses' NLL to its preference loss. RPO (Pang et al. 2024) is DPO plus ``rpo_alpha``
times the NLL. ``mixture`` turns such a sum into an ``Objective`` that runs wherever a
built-in one does (register it with ``lakelab.registry.register_objective``):

    from lakelab import mixture, register_objective, weight   # the registry's mixture
    terms = {"dpo": 1.0, "sft_token_mean": weight("rpo_alpha", 1.0)}
    register_objective(mixture("rpo_trl", terms))  # LakeConfig(methods=("dpo", "rpo_trl")), ...

A term's weight is a number or ``weight(name, default)``, a hyper-parameter of the mixture.
The terms' hyper-parameters become the mixture's; a name two terms share (``beta``) is one
knob for both, as TRL has one ``beta`` for all its loss types. The mixture works on per-token
log-probs (``reduction="tokens"``) and hands them to each term, which reduces them its own way.
Its metrics are the first term's, the others' under their name (``sft/logps/chosen``), and
each term's loss as ``loss/<term>`` (TRL logs CPO's as ``nll_loss``), except a batchwise
term's, whose per-sequence values are shares of the batch's loss rather than a sequence's own.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from lakelab.objective_spec import HyperParam, Objective
from lakelab.objectives import BATCH_REDUCTIONS, NONNEGATIVE
from lakelab.sequences import SequenceLogps, evaluate
from lakelab.validate import check_choice

__all__ = ["mixture", "weight"]


def _tex(term: str, w: float | str) -> str:
    """One term in LaTeX: its weight (a knob's name or a number) and L_term."""
    if isinstance(w, str):
        name = w.replace("_", r"\_")
        coefficient = rf"\mathrm{{{name}}}\,"
    else:
        coefficient = "" if w == 1 else f"{w:g}\\,"
    escaped = term.replace("_", r"\_")
    return coefficient + rf"\mathcal{{L}}_{{\mathrm{{{escaped}}}}}"


def weight(name: str, default: float, help: str = "") -> HyperParam:
    """A term's weight as a hyper-parameter of the mixture, in [0, inf)."""
    return HyperParam(name, default, interval=NONNEGATIVE, help=help or "weight of a term")


def mixture(
    name: str,
    terms: dict[str, float | HyperParam],
    *,
    title: str = "",
    summary: str = "",
    paper: str = "",
    equation: str = "",
    trl: dict[str, dict[str, Any]] | None = None,
    among: dict[str, Objective],
) -> Objective:
    """The objective sum_k w_k L_k over ``terms`` (objective name -> weight), named ``name``.

    Raises ValueError for an unknown term, fewer than two, a term with its own model-side
    pass (IFT) or unpaired data (KTO, BCO), a negative weight, or two terms whose shared
    hyper-parameter differs in default or range. ``among``: the objectives the terms are
    taken from, usually ``lakelab.registry.OBJECTIVES``.
    """
    if not isinstance(terms, dict) or len(terms) < 2:
        raise ValueError(f"{name}: a mixture needs at least two terms, got {terms!r}")
    unknown = sorted(set(terms) - set(among))
    if unknown:
        raise ValueError(f"{name}: unknown objective(s) {unknown}; valid: {sorted(among)}")
    objectives = {term: among[term] for term in terms}
    knobs: dict[str, HyperParam] = {}
    for term, objective in objectives.items():
        if objective.mixed_pass or objective.unpaired:
            raise ValueError(
                f"{name}: {term!r} cannot be a term (a model-side pass or unpaired data); "
                "terms must take pairs or chosen responses as SequenceLogps holds them"
            )
        for hp in objective.hyperparams:
            seen = knobs.setdefault(hp.name, hp)
            if (seen.default, seen.interval, seen.choices) != (hp.default, hp.interval, hp.choices):
                raise ValueError(
                    f"{name}: the terms' hyper-parameter {hp.name!r} differs ({seen.default!r}, "
                    f"{hp.default!r}): shared knobs must agree"
                )
    weights: dict[str, float | str] = {}
    for term, w in terms.items():
        if isinstance(w, HyperParam):
            if w.name in knobs:
                raise ValueError(f"{name}: weight {w.name!r} is already a knob of a term")
            knobs[w.name] = w
            weights[term] = w.name
        else:
            weights[term] = NONNEGATIVE.check(f"{name}: weight of {term}", w)
    said = " + ".join(f"{w} * L_{t}" if w != 1.0 else f"L_{t}" for t, w in weights.items())
    formula = f"L = {said}"
    pairs = any(o.needs_pairs for o in objectives.values())
    reference = any(o.needs_reference for o in objectives.values())
    own = {t: [hp.name for hp in o.hyperparams] for t, o in objectives.items()}
    defaults = {hp.name: hp.default for hp in knobs.values()}

    def loss_fn(*inputs: torch.Tensor, reduction: str = "mean", **hp: Any):
        check_choice("reduction", reduction, BATCH_REDUCTIONS)
        unknown = sorted(set(hp) - set(defaults))
        if unknown:
            raise ValueError(
                f"{name}: unknown hyper-parameter(s) {unknown}; valid: {sorted(defaults)}"
            )
        hp = {**defaults, **hp}
        fields = list(inputs[:2])  # chosen, its mask[, rejected, its mask][, the reference's]
        rest = list(inputs[2:])
        fields += rest[:2] if pairs else [None, None]
        rest = rest[2:] if pairs else rest
        fields += rest[:2] if reference else [None, None]
        logps = SequenceLogps(*fields)
        total, metrics = 0.0, {}
        for k, (term, w) in enumerate(weights.items()):  # per sequence, then reduced once
            rows, found = evaluate(
                objectives[term], logps, {n: hp[n] for n in own[term]}, reduction="none"
            )
            total = total + (hp[w] if isinstance(w, str) else w) * rows
            for key, value in found.items():
                metrics[key if k == 0 else f"{term}/{key}"] = value
            if not objectives[term].batchwise:  # a batchwise term's rows share its loss out
                metrics[f"loss/{term}"] = rows.detach()
        if reduction == "none":
            return total, metrics
        return total.mean(), {k: v.mean(dtype=torch.float64).item() for k, v in metrics.items()}

    loss_fn.__doc__ = f"""{title or name}: a weighted sum of lakelab objectives.

        {formula}

    Inputs as for ``reduction="tokens"`` (per-token log-probs and masks); each term reduces
    them as its registry entry says (``lakelab.mixtures``).
    """
    loss_fn.__name__ = f"{name}_loss"
    loss_fn.__signature__ = inspect.Signature(  # its knobs, as a loss function's keywords
        [inspect.Parameter("inputs", inspect.Parameter.VAR_POSITIONAL)]
        + [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v)
           for k, v in [*defaults.items(), ("reduction", "mean")]]
    )  # fmt: skip
    return Objective(
        name=name,
        title=title or name,
        loss_fn=loss_fn,
        needs_pairs=pairs,
        needs_reference=reference,
        reduction="tokens",
        hyperparams=tuple(knobs.values()),
        summary=summary or f"The weighted sum {said}.",
        formula=formula,
        latex=f"{_tex(name, 1.0)} = " + " + ".join(_tex(t, w) for t, w in weights.items()),
        paper=paper or "a weighted sum of lakelab objectives",
        equation=equation,
        batchwise=any(o.batchwise for o in objectives.values()),
        trl=dict(trl or {}),
    )
