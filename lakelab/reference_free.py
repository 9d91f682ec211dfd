"""Reference-free pairwise objectives: the loss types of TRL's CPO trainer beside SimPO.

Each takes the policy's per-sequence log-probs of a pair, (B,) each (S for CPO, A for the
others, as TRL's CPO trainer computes them), no reference, and returns ``(loss, metrics)``
like ``lakelab.objectives.simpo_loss`` (rewards/* = beta times the reward used). CPO's
behaviour-cloning term (TRL's ``cpo_alpha``, an NLL of the chosen response) is not part of
these: TRL's spellings with ``cpo_alpha=0.0`` are the ones they reproduce.
"""

from __future__ import annotations

import torch

from lakelab.objectives import (
    DPO_VARIANTS,
    LABEL_SMOOTHING,
    NONNEGATIVE,
    POSITIVE,
    REAL,
    _check_sequences,
    logsigmoid,
    pair_result,
    smoothed_logistic,
)
from lakelab.validate import check_choice

__all__ = ["CPO_VARIANTS", "alphapo_loss", "cpo_ipo_loss", "cpo_loss"]

CPO_VARIANTS = tuple(v for v in DPO_VARIANTS if v != "robust")  # hinge, sigmoid


def cpo_loss(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    *,
    beta: float = 0.1,
    variant: str = "sigmoid",
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> tuple[torch.Tensor, dict]:
    """Contrastive Preference Optimization's preference term: DPO with a uniform reference
    (Xu et al. 2024, eq. 3; TRL's CPO trainer, loss types "sigmoid" and "hinge").

        d = beta * (S_w - S_l)
        "sigmoid": L = -(1 - eps) logsigmoid(d) - eps logsigmoid(-d)
        "hinge":   L = relu(1 - d)

    | argument        | shape | meaning                                 |
    |-----------------|-------|-----------------------------------------|
    | chosen_logps    | (B,)  | S(y_w), summed log-probs                |
    | rejected_logps  | (B,)  | S(y_l)                                  |
    | beta            | float | (0, inf), TRL default 0.1               |
    | variant         | str   | "sigmoid" or "hinge"                    |
    | label_smoothing | float | eps in [0, 0.5); must be 0 for hinge    |
    | reduction       | str   | "mean" or "none" (per sequence)         |

    The paper's CPO adds an NLL term on y_w (TRL's ``cpo_alpha``, 1 by default; a token-level
    mean in the official code, fe1ixxu/ALMA); this is the loss at ``cpo_alpha = 0``. The
    equation number is TRL's comment. At S_w = S_l: log 2 (sigmoid), 1 (hinge).
    """
    _check_sequences(chosen_logps=chosen_logps, rejected_logps=rejected_logps)
    beta = POSITIVE.check("beta", beta)
    check_choice("variant", variant, CPO_VARIANTS)
    eps = LABEL_SMOOTHING.check("label_smoothing", label_smoothing)
    if variant == "hinge" and eps != 0.0:
        raise ValueError(f"label_smoothing must be 0 for variant 'hinge', got {label_smoothing!r}")
    d = beta * (chosen_logps - rejected_logps)
    if variant == "sigmoid":
        losses = smoothed_logistic(d, eps)
    else:
        losses = torch.relu(1 - d)
    return pair_result(
        losses,
        beta * chosen_logps,
        beta * rejected_logps,
        chosen_logps,
        rejected_logps,
        reduction,
    )


def cpo_ipo_loss(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    *,
    beta: float = 0.1,
    reduction: str = "mean",
) -> tuple[torch.Tensor, dict]:
    """IPO without a reference, on mean log-probs (TRL's CPO trainer, loss type "ipo").

        L = (A_w - A_l - 1 / (2 beta))^2

    Shapes as in ``cpo_loss`` but the inputs are A(y), mean log-probs. At A_w = A_l:
    (1 / (2 beta))^2.
    """
    _check_sequences(chosen_logps=chosen_logps, rejected_logps=rejected_logps)
    beta = POSITIVE.check("beta", beta)
    losses = (chosen_logps - rejected_logps - 1 / (2 * beta)) ** 2
    return pair_result(
        losses,
        beta * chosen_logps,
        beta * rejected_logps,
        chosen_logps,
        rejected_logps,
        reduction,
    )


def alphapo_loss(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    *,
    beta: float = 2.0,
    gamma: float = 0.5,
    alpha: float = 0.0,
    reduction: str = "mean",
) -> tuple[torch.Tensor, dict]:
    """AlphaPO: SimPO on a reward reshaped by alpha (Gupta et al. 2025; TRL's CPO trainer,
    loss type "alphapo", which is "simpo" with ``alpha``).

        u = (1 - p^(-alpha)) / alpha with p = exp(A)   (u = A at alpha = 0)
        L = -logsigmoid(beta * (u_w - u_l) - gamma)

    Shapes as in ``cpo_loss`` but the inputs are A(y), mean log-probs. u is computed as
    -expm1(-alpha A) / alpha. alpha = 0, TRL's default, is SimPO exactly; TRL's paper index
    cites alpha = 0.25, beta = 2.5, gamma = 0.1 from the paper's Mistral experiment.
    At A_w = A_l: log(1 + exp(gamma)).
    """
    _check_sequences(chosen_logps=chosen_logps, rejected_logps=rejected_logps)
    beta = POSITIVE.check("beta", beta)
    gamma = NONNEGATIVE.check("gamma", gamma)
    alpha = REAL.check("alpha", alpha)
    if alpha == 0.0:
        u_w, u_l = chosen_logps, rejected_logps
    else:
        u_w = -torch.expm1(-alpha * chosen_logps) / alpha
        u_l = -torch.expm1(-alpha * rejected_logps) / alpha
    losses = -logsigmoid(beta * (u_w - u_l) - gamma)
    return pair_result(losses, beta * u_w, beta * u_l, chosen_logps, rejected_logps, reduction)
