"""What an objective is: its hyper-parameters (``HyperParam``) and its entry (``Objective``),
and ``check_objective``, which says what is wrong with a malformed one.

``lakelab.registry`` holds the entries by name; this module only defines their shape, so
that a user's objective is checked against exactly what the training loops rely on.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from lakelab.validate import Interval, check_choice

__all__ = ["REDUCTIONS", "HyperParam", "Objective", "check_objective"]

_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")


REDUCTIONS = ("mean", "sum", "tokens")


@dataclass(frozen=True)
class HyperParam:
    """One knob of an objective, with its default and allowed values."""

    name: str
    default: Any
    interval: Interval | None = None
    """Allowed range of a numeric knob (declared beside the loss that checks it)."""
    choices: tuple[str, ...] | None = None
    """Allowed values for a categorical knob (then ``interval`` is unused)."""
    help: str = ""
    model_side: bool = False
    """True for knobs the training loop uses rather than the loss (IFT's lam, residual)."""

    @property
    def low(self) -> float | None:
        return None if self.interval is None else self.interval.low

    @property
    def high(self) -> float | None:
        return None if self.interval is None else self.interval.high

    def check(self, value: Any, objective: str) -> Any:
        """Return `value` (numbers as float) if allowed, else raise ValueError naming it."""
        name = f"{objective}: {self.name}"
        if self.choices is not None:
            return check_choice(name, value, self.choices)
        return (self.interval or Interval()).check(name, value)


@dataclass(frozen=True)
class Objective:
    """An objective: its loss function in `lakelab.objectives`, its facts and what it needs."""

    name: str
    title: str
    loss_fn: Callable[..., tuple[torch.Tensor, dict]]  # metrics: floats, or (B,) if "none"
    needs_pairs: bool
    """True if it needs a rejected response (DPO, IPO, ORPO, ASFT, SimPO), or, if
    ``unpaired``, undesirable examples beside the desirable ones."""
    needs_reference: bool
    """True if it needs reference-policy log-probs (DPO, IPO)."""
    reduction: str
    """"sum" -> S(y), "mean" -> A(y), "tokens" -> per-token log-probs with masks (IFT)."""
    hyperparams: tuple[HyperParam, ...]
    summary: str
    """One sentence: what the objective does."""
    formula: str
    """The per-sequence loss in plain text, clauses separated by "; ", each as written in the
    loss function's docstring (tested)."""
    latex: str
    """The same formula in LaTeX (the app's explorer)."""
    paper: str
    """Authors, year and arXiv id (or what the objective comes from)."""
    equation: str = ""
    """Where in the paper the formula stands, e.g. "eq. 7"; empty if nowhere."""
    mixed_pass: bool = False
    """True if the training loop must run a second forward pass on inputs mixed with the
    model's own predictions (IFT's temporal residual, eq. 17) and hand its log-probs over as
    ``chosen``; the knobs of that pass are the ``model_side`` hyper-parameters."""
    batchwise: bool = False
    """True if a row's loss depends on the other rows of its batch (AOT sorts the batch's
    margins): the training loops then call the loss on each seed's batch alone, and
    ``lakelab verify`` does not ask that two batches together average their losses."""
    unpaired: bool = False
    """True if ``chosen`` and ``rejected`` are independent examples, desirable and undesirable
    (KTO, BCO), any number of each, not pairs: the loss returns one value per example
    (``lakelab.unpaired``) and the training loops call it on each seed's batch alone."""
    mismatched: bool = False
    """True if the loss also takes the policy's and the reference's log-probs of mismatched
    (prompt, response) pairs, after the reference's inputs (KTO's reference point)."""
    needs_sum_sq: bool = False
    """True if the loss also takes log sum_v pi(v)^2 at each response position of the chosen
    and the rejected response, after the reference's (WPO's weights): per-token only."""
    trl: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Each TRL spelling this objective reproduces -> the hyper-parameters that select it,
    e.g. ``{"DPOTrainer(loss_type='hinge')": {"variant": "hinge"}}``; empty where TRL has
    none. ``tests/test_verify_trl.py`` runs TRL's own code for each through ``verify``."""

    @property
    def citation(self) -> str:
        """The paper and, where there is one, the equation: "Rafailov et al. ..., eq. 7"."""
        return f"{self.paper}, {self.equation}" if self.equation else self.paper


def check_objective(objective: Objective) -> None:
    """ValueError naming the first field of ``objective`` that is malformed."""
    if not isinstance(objective, Objective):
        raise ValueError(f"expected an Objective, got {type(objective).__name__}")
    o = objective
    if not isinstance(o.name, str) or not _NAME.match(o.name):
        raise ValueError(
            f"name must be lower-case letters, digits and '_', starting with a letter (it names "
            f"files, CLI values and sweep knobs), got {o.name!r}"
        )
    for flag in ("needs_pairs", "needs_reference", "mixed_pass", "batchwise", "unpaired",
                 "mismatched", "needs_sum_sq"):  # fmt: skip
        if not isinstance(getattr(o, flag), bool):
            raise ValueError(f"{o.name}: {flag} must be True or False, got {getattr(o, flag)!r}")
    check_choice(f"{o.name}: reduction", o.reduction, REDUCTIONS)
    if o.needs_reference and not o.needs_pairs:
        raise ValueError(
            f"{o.name}: needs_reference needs needs_pairs (the reference scores pairs)"
        )
    if o.unpaired and not o.needs_pairs:
        raise ValueError(f"{o.name}: unpaired needs needs_pairs (undesirable examples)")
    if o.mismatched and not (o.unpaired and o.needs_reference):
        raise ValueError(
            f"{o.name}: mismatched needs unpaired and needs_reference (the mismatched pairs' "
            "log-ratios under the reference)"
        )
    if o.needs_sum_sq and (o.reduction != "tokens" or not o.needs_pairs or o.unpaired):
        raise ValueError(
            f"{o.name}: needs_sum_sq needs reduction 'tokens' and pairs (per-position sums "
            "of squared probabilities of the chosen and the rejected response)"
        )
    for text in ("title", "summary", "formula", "latex", "paper", "equation"):
        if not isinstance(getattr(o, text), str):
            raise ValueError(f"{o.name}: {text} must be a string, got {getattr(o, text)!r}")
    if not isinstance(o.hyperparams, tuple) or not all(
        isinstance(hp, HyperParam) for hp in o.hyperparams
    ):
        raise ValueError(
            f"{o.name}: hyperparams must be a tuple of HyperParam, got {o.hyperparams!r}"
        )
    names = [hp.name for hp in o.hyperparams]
    if len(set(names)) != len(names) or "reduction" in names:
        raise ValueError(f"{o.name}: hyperparams names must be distinct, not 'reduction': {names}")
    for hp in o.hyperparams:
        if (hp.choices is None) == (hp.interval is None):
            raise ValueError(f"{o.name}: hyperparam {hp.name!r} needs an interval or choices")
        try:
            hp.check(hp.default, o.name)
        except ValueError as err:
            raise ValueError(
                f"{o.name}: the default of {hp.name!r} is not allowed: {err}"
            ) from None
    if not isinstance(o.trl, dict):
        raise ValueError(f"{o.name}: trl must be a dict of TRL spelling -> hparams, got {o.trl!r}")
    known = {hp.name: hp for hp in o.hyperparams}
    for spelling, hparams in o.trl.items():
        if not isinstance(spelling, str) or not isinstance(hparams, dict):
            raise ValueError(f"{o.name}: trl maps strings to dicts, got {spelling!r}: {hparams!r}")
        for key, value in hparams.items():
            if key not in known:
                raise ValueError(
                    f"{o.name}: trl[{spelling!r}] names {key!r}, not a hyper-parameter of "
                    f"{o.name}; valid: {sorted(known)}"
                )
            known[key].check(value, o.name)
    if o.mixed_pass and (o.reduction != "tokens" or not {"lam", "residual"} <= set(names)):
        raise ValueError(
            f"{o.name}: mixed_pass needs reduction 'tokens' and model-side hyperparams 'lam' "
            "and 'residual' (the training loops' second pass reads them)"
        )
    _check_signature(o)


def _check_signature(o: Objective) -> None:
    """``loss_fn`` must take the inputs positionally and its knobs and ``reduction`` by name."""
    if not callable(o.loss_fn):
        raise ValueError(f"{o.name}: loss_fn must be callable, got {o.loss_fn!r}")
    per_input = 2 if o.reduction == "tokens" else 1  # tokens: log-probs and mask (B, T)
    n_inputs = per_input * (1 + o.needs_pairs) + 2 * o.needs_reference
    n_inputs += (per_input + 1) * o.mismatched  # the pairs' log-probs (and mask), reference's
    n_inputs += 2 * o.needs_sum_sq  # log sum_v pi(v)^2 of the chosen and the rejected
    keywords = {hp.name: hp.default for hp in o.hyperparams if not hp.model_side}
    try:
        inspect.signature(o.loss_fn).bind(*range(n_inputs), **keywords, reduction="mean")
    except TypeError as err:
        raise ValueError(
            f"{o.name}: loss_fn must accept {n_inputs} positional inputs and the keywords "
            f"{sorted([*keywords, 'reduction'])}: {err}"
        ) from None
    except ValueError:  # a builtin without a signature: trust it
        pass
