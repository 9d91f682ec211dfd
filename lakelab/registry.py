"""The objectives by name: hyper-parameters with ranges, and one entry point for training loops.

    obj = get_objective("dpo")                       # Objective: metadata + loss function
    hp = resolve_hparams("dpo", {"beta": 0.5})       # defaults filled in, ranges checked
    loss, metrics = compute_objective("dpo", SequenceLogps(...), hp)

`compute_objective` is what both training loops call: they hand over per-token log-probs
(B, T) and masks, it applies the objective's reduction (S for DPO, A for SFT, IPO, ORPO, ASFT,
SimPO, per-token for IFT) and calls the function in `lakelab.objectives` unchanged. Model-side
hyper-parameters (IFT's `lam` and `residual`) are resolved and validated here too, but the
training loop uses them (for the mixed forward pass), so they are not passed to the loss.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from lakelab import objectives as obj
from lakelab.reductions import IFT_WEIGHTINGS
from lakelab.residual import RESIDUAL_VARIANTS

__all__ = [
    "OBJECTIVES",
    "HyperParam",
    "Objective",
    "SequenceLogps",
    "compute_objective",
    "get_objective",
    "loss_on",
    "resolve_hparams",
    "sequence_inputs",
]

REDUCTIONS = ("mean", "sum", "tokens")


@dataclass(frozen=True)
class HyperParam:
    """One knob of an objective, with its default and allowed values."""

    name: str
    default: Any
    low: float | None = None
    """Lower bound (None: -inf). Numeric knobs only."""
    high: float | None = None
    """Upper bound (None: inf)."""
    low_open: bool = False
    """True: the bound itself is excluded, e.g. beta in (0, inf)."""
    high_open: bool = False
    choices: tuple[str, ...] | None = None
    """Allowed values for a categorical knob (then low/high are unused)."""
    help: str = ""
    model_side: bool = False
    """True for knobs the training loop uses rather than the loss (IFT's lam, residual)."""

    @property
    def interval(self) -> str:
        """Printed range, e.g. "(0, inf)" or "[0, 0.5)"; unbounded ends are always open."""
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        left = "(" if self.low is None or self.low_open else "["
        right = ")" if self.high is None or self.high_open else "]"
        return f"{left}{low}, {high}{right}"

    def check(self, value: Any, objective: str) -> Any:
        """Return `value` (numbers as float) if allowed, else raise ValueError naming it."""
        if self.choices is not None:
            if value not in self.choices:
                raise ValueError(
                    f"{objective}: {self.name} must be one of {sorted(self.choices)}, got {value!r}"
                )
            return value
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        ok = ok and math.isfinite(value)
        if ok and self.low is not None:
            ok = value > self.low if self.low_open else value >= self.low
        if ok and self.high is not None:
            ok = value < self.high if self.high_open else value <= self.high
        if not ok:
            raise ValueError(f"{objective}: {self.name} must be in {self.interval}, got {value!r}")
        return float(value)


@dataclass(frozen=True)
class Objective:
    """An objective: its loss function in `lakelab.objectives` and what it needs."""

    name: str
    title: str
    loss_fn: Callable[..., tuple[torch.Tensor, dict]]  # metrics: floats, or (B,) if "none"
    needs_pairs: bool
    """True if it needs a rejected response (DPO, IPO, ORPO, ASFT, SimPO)."""
    needs_reference: bool
    """True if it needs reference-policy log-probs (DPO, IPO)."""
    reduction: str
    """"sum" -> S(y), "mean" -> A(y), "tokens" -> per-token log-probs with mask (IFT)."""
    hyperparams: tuple[HyperParam, ...]
    summary: str
    """One line for the app."""
    paper: str
    mixed_pass: bool = False
    """True if the training loop must run a second forward pass on inputs mixed with the
    model's own predictions (IFT's temporal residual, eq. 17) and hand its log-probs over as
    ``chosen``; the knobs of that pass are the ``model_side`` hyper-parameters."""


def _real(name, default, low=None, high=None, *, low_open=False, high_open=False, **kw):
    return HyperParam(name, default, low, high, low_open, high_open, **kw)


def _choice(name, default, choices, **kw):
    return HyperParam(name, default, choices=tuple(choices), **kw)


OBJECTIVES: dict[str, Objective] = {
    "sft": Objective(
        name="sft",
        title="SFT",
        loss_fn=obj.sft_loss,
        needs_pairs=False,
        needs_reference=False,
        reduction="mean",
        hyperparams=(),
        summary="Maximise the mean log-likelihood of the chosen response.",
        paper="Maximum likelihood (teacher forcing)",
    ),
    "ift": Objective(
        name="ift",
        title="IFT (Intuitive Fine-Tuning)",
        loss_fn=obj.ift_loss,
        needs_pairs=False,
        needs_reference=False,
        reduction="tokens",
        hyperparams=(
            _real("lam", 0.2, 0.0, 1.0, model_side=True, help="temporal residual weight (eq. 17)"),
            _choice(
                "residual",
                "greedy",
                RESIDUAL_VARIANTS,
                model_side=True,
                help="prediction mixed in: 'greedy' argmax (official code) or 'expected' (eq. 17)",
            ),
            _real("gamma", 0.95, 0.0, 1.0, help="discount of the relation propagation"),
            _choice(
                "weighting",
                "loss",
                IFT_WEIGHTINGS,
                help="token weights: 'loss' (official code), 'prefix' (eq. 20), 'none' (SFT)",
            ),
        ),
        summary="SFT on inputs mixed with the model's own predictions; earlier tokens weigh more.",
        paper="Hua et al. 2024, arXiv 2405.11870, eqs. 17-22; TsinghuaC3I/Intuitive-Fine-Tuning",
        mixed_pass=True,
    ),
    "dpo": Objective(
        name="dpo",
        title="DPO",
        loss_fn=obj.dpo_loss,
        needs_pairs=True,
        needs_reference=True,
        reduction="sum",
        hyperparams=(
            _real("beta", 0.1, 0.0, low_open=True, help="inverse temperature (TRL default 0.1)"),
            _choice(
                "variant",
                "sigmoid",
                obj.DPO_VARIANTS,
                help="sigmoid (DPO), hinge (SLiC), robust (rDPO)",
            ),
            _real(
                "label_smoothing",
                0.0,
                0.0,
                0.5,
                high_open=True,
                help="assumed label-flip rate eps; 0 for hinge",
            ),
        ),
        summary="Raise the reference-relative margin of chosen over rejected (Bradley-Terry).",
        paper="Rafailov et al. 2023, arXiv 2305.18290, eq. 7",
    ),
    "ipo": Objective(
        name="ipo",
        title="IPO",
        loss_fn=obj.ipo_loss,
        needs_pairs=True,
        needs_reference=True,
        reduction="mean",
        hyperparams=(_real("beta", 0.1, 0.0, low_open=True, help="target margin is 1/(2 beta)"),),
        summary="Regress the reference-relative margin onto 1/(2 beta) instead of pushing it up.",
        paper="Azar et al. 2023, arXiv 2310.12036; as TRL's loss_type='ipo'",
    ),
    "orpo": Objective(
        name="orpo",
        title="ORPO",
        loss_fn=obj.orpo_loss,
        needs_pairs=True,
        needs_reference=False,
        reduction="mean",
        hyperparams=(_real("lam", 0.1, 0.0, help="weight of the odds-ratio term (TRL's beta)"),),
        summary="SFT plus a log-odds-ratio preference term; no reference model.",
        paper="Hong et al. 2024, arXiv 2403.07691, eqs. 6-7",
    ),
    "asft": Objective(
        name="asft",
        title="ASFT (Aligned SFT)",
        loss_fn=obj.asft_loss,
        needs_pairs=True,
        needs_reference=False,
        reduction="mean",
        hyperparams=(
            _real("lam", 1.0, 0.0, help="weight of the absolute-likelihood terms"),
            _real("beta", 1.0, 0.0, low_open=True, help="scale of the log-odds"),
        ),
        summary="SFT plus an absolute likelihood term per response; no pairing, no reference.",
        paper="Wang et al. 2024, arXiv 2409.10571 (as restated in arXiv 2502.01237)",
    ),
    "simpo": Objective(
        name="simpo",
        title="SimPO",
        loss_fn=obj.simpo_loss,
        needs_pairs=True,
        needs_reference=False,
        reduction="mean",
        hyperparams=(
            _real("beta", 2.0, 0.0, low_open=True, help="reward scale"),
            _real("gamma", 0.5, 0.0, help="target reward margin"),
        ),
        summary="Length-normalised margin with a target gap; no reference model.",
        paper="Meng et al. 2024, arXiv 2405.14734, eq. 6",
    ),
}


def get_objective(name: str) -> Objective:
    """The Objective registered under `name`; ValueError listing the valid names otherwise."""
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; valid: {sorted(OBJECTIVES)}")
    return OBJECTIVES[name]


def resolve_hparams(name: str, overrides: dict | None = None) -> dict:
    """All hyper-parameters of `name`: defaults, updated by `overrides`, each validated.

    Raises ValueError for an unknown objective, an unknown key, or a value out of range
    (e.g. "dpo: beta must be in (0, inf), got 0.0"). Includes model-side knobs.
    """
    objective = get_objective(name)
    overrides = dict(overrides or {})
    known = {hp.name: hp for hp in objective.hyperparams}
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise ValueError(f"{name}: unknown hyper-parameter(s) {unknown}; valid: {sorted(known)}")
    return {key: hp.check(overrides.get(key, hp.default), name) for key, hp in known.items()}


@dataclass(frozen=True)
class SequenceLogps:
    """Per-token log-probs (B, T) of a batch, as both training loops produce them.

    The masks are 1/True on response tokens. `ref_chosen` / `ref_rejected` are the frozen
    reference policy's per-token log-probs (possibly cached), masked by `chosen_mask` /
    `rejected_mask`. For IFT, `chosen` must come from the second (mixed-input) forward pass.
    """

    chosen: torch.Tensor
    chosen_mask: torch.Tensor
    rejected: torch.Tensor | None = None
    rejected_mask: torch.Tensor | None = None
    ref_chosen: torch.Tensor | None = None
    ref_rejected: torch.Tensor | None = None


def compute_objective(
    name: str, logps: SequenceLogps, hparams: dict | None = None, *, reduction: str = "mean"
) -> tuple[torch.Tensor, dict]:
    """Reduce `logps` the way objective `name` needs and return its `(loss, metrics)`.

    `hparams` is resolved with `resolve_hparams` (defaults filled in); model-side knobs are
    not passed to the loss. Objectives that need no pairs ignore `rejected`; ValueError if a
    pair-needing objective gets no `rejected`, or a reference-needing one no `ref_*`.
    `reduction="none"` returns per-sequence losses and metrics (``lakelab.objectives``).
    """
    return loss_on(name, sequence_inputs(name, logps), hparams, reduction=reduction)


def sequence_inputs(name: str, logps: SequenceLogps) -> list[torch.Tensor]:
    """The positional inputs of objective `name`'s loss function: per-sequence reductions
    (B,) of `logps` (S or A: chosen, rejected, then the reference's), or for a token-level
    objective the chosen token log-probs and mask (B, T). Every entry is row-wise, so the
    inputs of a subset of rows are the same rows of these (used to evaluate many batches of
    one step at once)."""
    objective = get_objective(name)
    if objective.reduction == "tokens":
        return [logps.chosen, logps.chosen_mask]
    reduce = obj.sum_logps if objective.reduction == "sum" else obj.mean_logps

    args = [reduce(logps.chosen, logps.chosen_mask)]
    if objective.needs_pairs:
        if logps.rejected is None or logps.rejected_mask is None:
            raise ValueError(f"{name} needs pairs: SequenceLogps.rejected and rejected_mask")
        args.append(reduce(logps.rejected, logps.rejected_mask))
    if objective.needs_reference:
        if logps.ref_chosen is None or logps.ref_rejected is None:
            raise ValueError(f"{name} needs a reference: SequenceLogps.ref_chosen, ref_rejected")
        for ref, policy, mask, label in (
            (logps.ref_chosen, logps.chosen, logps.chosen_mask, "chosen"),
            (logps.ref_rejected, logps.rejected, logps.rejected_mask, "rejected"),
        ):
            if ref.shape != policy.shape:
                raise ValueError(
                    f"{name}: ref_{label} must have the shape of {label} "
                    f"{tuple(policy.shape)}, got {tuple(ref.shape)}"
                )
            args.append(reduce(ref, mask))
    return args


def loss_on(
    name: str, inputs: list[torch.Tensor], hparams: dict | None = None, *, reduction: str = "mean"
) -> tuple[torch.Tensor, dict]:
    """Objective `name`'s `(loss, metrics)` on `sequence_inputs(name, ...)`; with
    `reduction="none"`, per sequence (see `lakelab.objectives`)."""
    objective = get_objective(name)
    hp = resolve_hparams(name, hparams)
    loss_kwargs = {p.name: hp[p.name] for p in objective.hyperparams if not p.model_side}
    return objective.loss_fn(*inputs, **loss_kwargs, reduction=reduction)
