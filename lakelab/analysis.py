"""Gradient analysis in the "tabular" view: how each objective pushes the chosen and rejected
likelihoods, treated as free variables.

The ASFT paper (Wang et al. 2024, arXiv 2409.10571, building on the field analysis of Feng et
al. 2024, arXiv 2404.04626) argues from the gradient of the loss with respect to the two
probabilities (p_chosen, p_rejected) that DPO lowers the likelihood of the rejected response
faster than it raises the chosen one, and that an absolute likelihood term on each response
avoids this (SFT and ORPO also keep an absolute term on the chosen one). This module computes
those fields with autograd (float64) from the very loss functions the training loops use
(`lakelab.registry` -> `lakelab.objectives`).

What "logp" means here: whatever the objective consumes, as a free variable. For DPO that is
the summed log-prob S(y); for SFT, IPO, ORPO, ASFT and SimPO the mean log-prob A(y); IFT is
evaluated on a one-token response, where its weights are 1 and it equals SFT (its differences
from SFT live inside a sequence and in the mixed inputs, which this view cannot show).
p = exp(logp) is then the sequence probability (DPO) or the geometric-mean token probability.

Two gradient flows, i.e. two ways to turn a gradient into a speed:

    on log-probs ("rate_*"):  d logp/dt = -dL/dlogp,  so  dp/dt = p * d logp/dt
    on probabilities ("prob_rate_*", the papers' field):  dp/dt = -dL/dp = -(dL/dlogp) / p

For DPO, dL/dlogp_rejected = -dL/dlogp_chosen = beta * sigmoid(-d): the log-probs move at equal
and opposite speeds, so |rate_rejected| / |rate_chosen| = p_rejected / p_chosen while
|prob_rate_rejected| / |prob_rate_chosen| = p_chosen / p_rejected. The papers' claim ("the
rejected falls faster") is the second ratio when p_rejected < p_chosen; under the first flow
the same situation gives the opposite ratio. A real network is neither flow exactly (its
parameters, not the log-probs, follow the gradient); both are shown so the claim can be read
with its assumption.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from lakelab.objectives import log1mexp
from lakelab.registry import get_objective, resolve_hparams

__all__ = ["gradient_field", "sequence_gradients"]


def _as_array(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _point_loss(name: str, hparams: dict | None) -> Callable[..., torch.Tensor]:
    """loss(chosen, rejected, ref_chosen, ref_rejected) on (B,) float64 tensors -> batch mean.
    An unpaired objective (KTO, BCO) sees each point as one desirable example (chosen) and
    one undesirable one (rejected); KTO's reference point is 0 (the policy at the reference
    on the mismatched pairs). WPO's responses are tokens of a two-token vocabulary."""
    objective = get_objective(name)
    hp = resolve_hparams(name, hparams)
    kwargs = {p.name: hp[p.name] for p in objective.hyperparams if not p.model_side}

    def loss(chosen, rejected, ref_chosen, ref_rejected):
        if objective.reduction == "tokens":  # one-token responses (B, 1), each with its mask
            mask = torch.ones(len(chosen), 1, dtype=torch.bool)
            responses = [[chosen[:, None], mask], [rejected[:, None], mask]]
            refs = [ref_chosen[:, None], ref_rejected[:, None]]
        else:
            responses, refs = [[chosen], [rejected]], [ref_chosen, ref_rejected]
        args = responses[0] + (responses[1] if objective.needs_pairs else [])
        args += refs if objective.needs_reference else []
        if objective.mismatched:  # KTO: the mismatched pairs at the reference, so z0 = 0
            args += [torch.zeros_like(chosen), torch.zeros_like(chosen)]
        if objective.needs_sum_sq:  # WPO: a two-token vocabulary, sum_v p^2 = p^2 + (1 - p)^2
            args += [_two_token_sum_sq(x) for x in (chosen[:, None], rejected[:, None])]
        return objective.loss_fn(*args, **kwargs)[0]

    return loss


def _two_token_sum_sq(logp: torch.Tensor) -> torch.Tensor:
    """log(p^2 + (1 - p)^2) of p = exp(logp), the sum of squared probabilities of a
    two-token vocabulary, without gradient (WPO's weights are constants)."""
    logp = logp.detach()
    return torch.logaddexp(2 * logp, 2 * log1mexp(logp))


def sequence_gradients(
    name: str,
    chosen_logp,
    rejected_logp,
    *,
    ref_chosen_logp=0.0,
    ref_rejected_logp=0.0,
    hparams: dict | None = None,
) -> dict[str, np.ndarray]:
    """Loss, gradients and gradient-flow speeds of objective `name` at given log-probs.

    All log-prob arguments are floats, arrays or tensors, broadcast against each other; every
    returned array has the broadcast shape. Reference log-probs matter for DPO and IPO only.

    | key                  | meaning                                                     |
    |----------------------|-------------------------------------------------------------|
    | loss                 | the objective's loss at that point (a batch of one)         |
    | dL/dlogp_chosen      | autograd gradient (float64)                                 |
    | dL/dlogp_rejected    | 0 for SFT / IFT (no rejected response)                      |
    | dL/dp_chosen         | chain rule, p = exp(logp): (dL/dlogp) / p                   |
    | dL/dp_rejected       |                                                             |
    | p_chosen, p_rejected | exp(logp)                                                   |
    | rate_chosen          | dp/dt under gradient flow on logp: p * (-dL/dlogp)          |
    | rate_rejected        |                                                             |
    | rate_ratio           | abs(rate_rejected) / abs(rate_chosen)                       |
    | prob_rate_chosen     | dp/dt under gradient flow on p: -dL/dp                      |
    | prob_rate_rejected   |                                                             |
    | prob_rate_ratio      | abs(prob_rate_rejected) / abs(prob_rate_chosen)             |

    Traps: where p underflows to 0 (logp below about -745), dL/dp and prob_rate_* are inf;
    ratios are inf for a zero denominator and NaN for 0/0 (numpy semantics, no warning).
    Cost: one batched autograd call, plus one small no-grad call per point for the loss value
    (the objectives only return batch means): fine for plotting grids (docs/benchmarks.md).
    """
    arrays = np.broadcast_arrays(
        *(_as_array(v) for v in (chosen_logp, rejected_logp, ref_chosen_logp, ref_rejected_logp))
    )
    shape = arrays[0].shape
    chosen, rejected, ref_chosen, ref_rejected = (
        torch.tensor(a.reshape(-1), dtype=torch.float64) for a in arrays
    )
    chosen.requires_grad_(True)
    rejected.requires_grad_(True)
    loss_fn = _point_loss(name, hparams)

    # Each point's loss depends on that point only, so one batched call gives every point's
    # gradient: d(B * mean)/dx_k = dloss_k/dx_k. The loss *values* need one call per point
    # (the objectives return only the batch mean); no grad there, and grids are small.
    points = (chosen, rejected, ref_chosen, ref_rejected)
    n = chosen.numel()
    grad_c, grad_r = torch.autograd.grad(
        n * loss_fn(*points), (chosen, rejected), allow_unused=True
    )
    grad_r = torch.zeros_like(rejected) if grad_r is None else grad_r  # SFT, IFT: unused
    with torch.no_grad():
        losses = [loss_fn(*(t[i : i + 1] for t in points)) for i in range(n)]

    out = {
        "loss": torch.stack(losses).numpy(),
        "dL/dlogp_chosen": grad_c.numpy(),
        "dL/dlogp_rejected": grad_r.numpy(),
        "p_chosen": torch.exp(chosen.detach()).numpy(),
        "p_rejected": torch.exp(rejected.detach()).numpy(),
    }
    with np.errstate(divide="ignore", invalid="ignore"):
        for side in ("chosen", "rejected"):
            p, g = out[f"p_{side}"], out[f"dL/dlogp_{side}"]
            out[f"dL/dp_{side}"] = g / p
            out[f"rate_{side}"] = p * -g
            out[f"prob_rate_{side}"] = -g / p
        for prefix in ("rate", "prob_rate"):
            out[f"{prefix}_ratio"] = np.abs(out[f"{prefix}_rejected"]) / np.abs(
                out[f"{prefix}_chosen"]
            )
    return {key: value.reshape(shape) for key, value in out.items()}


def gradient_field(
    name: str,
    logp_grid_chosen,
    logp_grid_rejected,
    *,
    ref_chosen_logp=0.0,
    ref_rejected_logp=0.0,
    hparams: dict | None = None,
) -> dict[str, np.ndarray]:
    """`sequence_gradients` over the meshgrid of two 1-D log-prob grids, ready for plotting.

    Returns every key of `sequence_gradients` as a 2-D array of shape
    (len(logp_grid_rejected), len(logp_grid_chosen)) (numpy "xy" indexing: chosen varies along
    columns, i.e. the x axis), plus the grids themselves as `logp_chosen` and `logp_rejected`.
    E.g. `plt.quiver(f["p_chosen"], f["p_rejected"], f["prob_rate_chosen"],
    f["prob_rate_rejected"])` draws the papers' field.
    """
    x, y = _as_array(logp_grid_chosen), _as_array(logp_grid_rejected)
    if x.ndim != 1 or y.ndim != 1 or x.size == 0 or y.size == 0:
        raise ValueError(
            f"logp grids must be non-empty 1-D arrays, got shapes {x.shape} and {y.shape}"
        )
    grid_c, grid_r = np.meshgrid(x, y)  # (len(y), len(x))
    field = sequence_gradients(
        name,
        grid_c,
        grid_r,
        ref_chosen_logp=ref_chosen_logp,
        ref_rejected_logp=ref_rejected_logp,
        hparams=hparams,
    )
    return {"logp_chosen": grid_c, "logp_rejected": grid_r, **field}
