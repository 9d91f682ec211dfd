"""What an objective is handed: a batch's per-token log-probs (``SequenceLogps``) and how
an objective's positional inputs are made from them, for an ``Objective`` in hand.

``lakelab.registry`` offers the same by name (``compute_objective("dpo", logps)``); this
module works on the entry itself, so that objectives made of others (``lakelab.mixtures``)
can call their terms without going through the registry.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lakelab.objective_spec import Objective
from lakelab.reductions import mean_logps, sum_logps

__all__ = ["SequenceLogps", "evaluate", "inputs_of", "loss_of", "resolve"]


@dataclass(frozen=True)
class SequenceLogps:
    """Per-token log-probs (B, T) of a batch, as both training loops produce them.

    The masks are 1/True on response tokens. `ref_chosen` / `ref_rejected` are the frozen
    reference policy's per-token log-probs (possibly cached), masked by `chosen_mask` /
    `rejected_mask`. For IFT, `chosen` must come from the second (mixed-input) forward pass.

    For an unpaired objective (KTO, BCO) `chosen` holds the desirable and `rejected` the
    undesirable examples, their numbers of rows independent; `kl`, `kl_mask` and `ref_kl`
    hold the mismatched (prompt, response) pairs of a ``mismatched`` one (KTO), (M, T').
    `chosen_log_sum_sq` / `rejected_log_sum_sq` (B, T): log sum_v pi(v)^2 of the policy's
    next-token distribution at each position, for WPO's weights (``needs_sum_sq``).
    """

    chosen: torch.Tensor
    chosen_mask: torch.Tensor
    rejected: torch.Tensor | None = None
    rejected_mask: torch.Tensor | None = None
    ref_chosen: torch.Tensor | None = None
    ref_rejected: torch.Tensor | None = None
    kl: torch.Tensor | None = None
    kl_mask: torch.Tensor | None = None
    ref_kl: torch.Tensor | None = None
    chosen_log_sum_sq: torch.Tensor | None = None
    rejected_log_sum_sq: torch.Tensor | None = None


def resolve(objective: Objective, overrides: dict | None = None) -> dict:
    """All hyper-parameters of ``objective``: defaults, updated by ``overrides``, each
    validated (ValueError naming an unknown key or a value out of range)."""
    name = objective.name
    overrides = dict(overrides or {})
    known = {hp.name: hp for hp in objective.hyperparams}
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise ValueError(f"{name}: unknown hyper-parameter(s) {unknown}; valid: {sorted(known)}")
    return {key: hp.check(overrides.get(key, hp.default), name) for key, hp in known.items()}


def inputs_of(objective: Objective, logps: SequenceLogps) -> list[torch.Tensor]:
    """The positional inputs of ``objective``'s loss function: per-sequence reductions
    (B,) of `logps` (S or A: chosen, rejected, then the reference's), or for a token-level
    objective the per-token log-probs and masks (B, T): chosen and its mask, rejected and
    its mask, the reference's two (as far as the objective needs them), then a mismatched
    objective's pairs. Every entry is row-wise, so the inputs of a subset of rows are the
    same rows of these (used to evaluate many batches of one step at once)."""
    name = objective.name
    if objective.reduction == "tokens":
        reduce = None
        args = [logps.chosen, logps.chosen_mask]
    else:
        by_row = sum_logps if objective.reduction == "sum" else mean_logps

        def reduce(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            if objective.unpaired and x.dim() == 2 and x.shape[0] == 0:
                return x.new_zeros(0)  # no example of this kind
            return by_row(x, mask)

        args = [reduce(logps.chosen, logps.chosen_mask)]
    if objective.needs_pairs:
        if logps.rejected is None or logps.rejected_mask is None:
            raise ValueError(f"{name} needs pairs: SequenceLogps.rejected and rejected_mask")
        args += (
            [logps.rejected, logps.rejected_mask]
            if reduce is None
            else [reduce(logps.rejected, logps.rejected_mask)]
        )
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
            args.append(ref if reduce is None else reduce(ref, mask))
    if objective.mismatched:
        if logps.kl is None or logps.kl_mask is None or logps.ref_kl is None:
            raise ValueError(f"{name} needs mismatched pairs: SequenceLogps.kl, kl_mask and ref_kl")
        if logps.ref_kl.shape != logps.kl.shape:
            raise ValueError(
                f"{name}: ref_kl must have the shape of kl {tuple(logps.kl.shape)}, "
                f"got {tuple(logps.ref_kl.shape)}"
            )
        if reduce is None:
            args += [logps.kl, logps.kl_mask, logps.ref_kl]
        else:
            args += [reduce(logps.kl, logps.kl_mask), reduce(logps.ref_kl, logps.kl_mask)]
    if objective.needs_sum_sq:
        both = ((logps.chosen_log_sum_sq, logps.chosen, "chosen"),
                (logps.rejected_log_sum_sq, logps.rejected, "rejected"))  # fmt: skip
        for x, policy, label in both:
            if x is None or x.shape != policy.shape:
                raise ValueError(
                    f"{name} needs SequenceLogps.{label}_log_sum_sq of the shape of {label} "
                    f"{tuple(policy.shape)}, got {None if x is None else tuple(x.shape)}"
                )
            args.append(x)
    return args


def loss_of(
    objective: Objective, inputs: list, hparams: dict | None = None, *, reduction: str = "mean"
) -> tuple[torch.Tensor, dict]:
    """``objective``'s ``(loss, metrics)`` on ``inputs_of(objective, ...)``; model-side knobs
    are resolved but not passed to the loss."""
    hp = resolve(objective, hparams)
    loss_kwargs = {p.name: hp[p.name] for p in objective.hyperparams if not p.model_side}
    return objective.loss_fn(*inputs, **loss_kwargs, reduction=reduction)


def evaluate(
    objective: Objective,
    logps: SequenceLogps,
    hparams: dict | None = None,
    *,
    reduction: str = "mean",
) -> tuple[torch.Tensor, dict]:
    """``objective``'s ``(loss, metrics)`` on ``logps``, reduced the way it needs."""
    return loss_of(objective, inputs_of(objective, logps), hparams, reduction=reduction)
