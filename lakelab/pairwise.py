"""More reference-based pairwise objectives: the other loss types of TRL's DPO trainer.

Each takes the per-sequence log-probs of a pair and the reference's, (B,) each, like
``lakelab.objectives.dpo_loss``; most work on the log-ratios

    r_w = S_w - S_ref_w,   r_l = S_l - S_ref_l     (summed log-probs; A for dpo_norm)

and return ``(loss, metrics)`` with the same ``reduction`` and metrics as DPO (rewards/* =
beta r, logps/*). Where a paper and TRL's code differ, the docstring says which one lakelab
follows. At pi = pi_ref (r_w = r_l = 0) each has a value stated in its docstring, which
``lakelab verify`` checks.
"""

from __future__ import annotations

import math

import torch

from lakelab.objectives import (
    LABEL_SMOOTHING,
    POSITIVE,
    REAL,
    _check_sequences,
    _reduce,
    dpo_loss,
    f_margin,
    logsigmoid,
    pair_result,
    smoothed_logistic,
)
from lakelab.reductions import check_token_inputs, sum_logps
from lakelab.validate import Interval, check_choice

__all__ = [
    "AOT_VARIANTS",
    "APO_VARIANTS",
    "aot_loss",
    "apo_loss",
    "bco_pair_loss",
    "discopop_loss",
    "dpo_norm_loss",
    "exo_loss",
    "ld_dpo_loss",
    "nca_loss",
    "sppo_hard_loss",
    "wpo_loss",
    "wpo_weight",
]

APO_VARIANTS = ("down", "zero")
AOT_VARIANTS = ("paired", "unpaired")
EXO_SMOOTHING = Interval(0.0, 0.5, low_open=True, high_open=True)  # log(eps) needs eps > 0
UNIT = Interval(0.0, 1.0)


def _pair(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, beta):
    """Checked inputs -> (r_w, r_l, beta): the log-ratios of the chosen and the rejected."""
    _check_sequences(
        chosen_logps=chosen_logps,
        rejected_logps=rejected_logps,
        ref_chosen_logps=ref_chosen_logps,
        ref_rejected_logps=ref_rejected_logps,
    )
    beta = POSITIVE.check("beta", beta)
    return chosen_logps - ref_chosen_logps, rejected_logps - ref_rejected_logps, beta


def _done(losses, r_w, r_l, beta, chosen_logps, rejected_logps, reduction):
    """``pair_result`` with DPO's rewards, beta times the log-ratios."""
    return pair_result(losses, beta * r_w, beta * r_l, chosen_logps, rejected_logps, reduction)


def exo_loss(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    beta: float = 0.1,
    label_smoothing: float = 1e-3,
    f_divergence_type: str = "reverse_kl",
    f_alpha_divergence_coef: float = 0.5,
    reduction: str = "mean",
) -> tuple[torch.Tensor, dict]:
    """EXO-pref: the reverse KL from the pair's policy distribution to the labels (Ji et al.
    2024, eq. 16 with K = 2; TRL's "exo_pair").

        r_w = S_w - S_ref_w, r_l = S_l - S_ref_l
        d = beta * (r_w - r_l); q_w = sigmoid(d), q_l = sigmoid(-d)
        L = q_w (log q_w - log(1 - eps)) + q_l (log q_l - log eps)

    Shapes as in ``dpo_loss`` (S: summed log-probs). eps in (0, 0.5) is the label
    distribution's mass on the rejected response (TRL's ``label_smoothing``; its docs suggest
    1e-3, the value the first author gave in TRL, lakelab's default; the official code's
    log-labels (0, -10) make it about 4.5e-5): eps = 0 makes log eps infinite, so it is
    refused. beta is the paper's policy temperature beta_pi; its reward temperature enters
    EXO-rw only. The equation number is the authors', as given in TRL. At pi = pi_ref:
    -log 2 - log(eps (1 - eps)) / 2. ``f_divergence_type`` replaces r_w - r_l by f-DPO's
    margin (``lakelab.objectives.f_margin``), as TRL allows for exo_pair.
    """
    r_w, r_l, beta = _pair(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, beta)
    eps = EXO_SMOOTHING.check("label_smoothing", label_smoothing)
    d = beta * f_margin(r_w, r_l, f_divergence_type, f_alpha_divergence_coef)
    log_q_w, log_q_l = logsigmoid(d), logsigmoid(-d)
    losses = log_q_w.exp() * (log_q_w - math.log1p(-eps)) + log_q_l.exp() * (
        log_q_l - math.log(eps)
    )
    return _done(losses, r_w, r_l, beta, chosen_logps, rejected_logps, reduction)


def nca_loss(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    beta: float = 0.1,
    reduction: str = "mean",
) -> tuple[torch.Tensor, dict]:
    """Noise Contrastive Alignment, pairwise (Chen et al. 2024, NCA with K = 2; TRL's
    "nca_pair"): the chosen response's own reward pushed up, both pushed down by half.

        r_w = S_w - S_ref_w, r_l = S_l - S_ref_l
        L = -logsigmoid(beta r_w) - 0.5 logsigmoid(-beta r_w) - 0.5 logsigmoid(-beta r_l)

    Shapes as in ``dpo_loss`` (S: summed log-probs). Unlike DPO it depends on each reward,
    not only on their difference, so it can keep the chosen likelihood from falling (the
    official code, thu-ml/Noise-Contrastive-Alignment, has the same loss; its recipe uses
    beta = 0.01). At pi = pi_ref: 2 log 2.
    """
    r_w, r_l, beta = _pair(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, beta)
    losses = -logsigmoid(beta * r_w) - 0.5 * logsigmoid(-beta * r_w) - 0.5 * logsigmoid(-beta * r_l)
    return _done(losses, r_w, r_l, beta, chosen_logps, rejected_logps, reduction)


def bco_pair_loss(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    beta: float = 0.1,
    delta: float = 0.0,
    reduction: str = "mean",
) -> tuple[torch.Tensor, dict]:
    """Binary Classifier Optimization on pairs (Jung et al. 2024; TRL's "bco_pair"):
    the chosen response classified as good, the rejected as bad, by the reward beta r.

        r_w = S_w - S_ref_w, r_l = S_l - S_ref_l
        L = -logsigmoid(beta r_w - delta) - logsigmoid(-(beta r_l - delta))

    Shapes as in ``dpo_loss`` (S: summed log-probs). The paper's reward shift delta is a
    running (cumulative) mean of the detached rewards beta r of chosen and rejected responses,
    updated every step (its author's code in TRL's experimental BCO trainer); lakelab takes it
    as a fixed number, since a loss of one batch must not depend on the ones before, and
    delta = 0 is TRL 1.16's "bco_pair", which has no shift. The paper's unpaired BCO also
    weights each rejected loss by a density ratio from a prompt classifier; there is none
    here. At pi = pi_ref with delta = 0: 2 log 2.
    """
    r_w, r_l, beta = _pair(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, beta)
    delta = REAL.check("delta", delta)
    losses = -logsigmoid(beta * r_w - delta) - logsigmoid(-(beta * r_l - delta))
    return _done(losses, r_w, r_l, beta, chosen_logps, rejected_logps, reduction)


def sppo_hard_loss(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    beta: float = 0.1,
    reduction: str = "mean",
) -> tuple[torch.Tensor, dict]:
    """Self-Play Preference Optimization with hard probabilities (Wu et al. 2024, eq. 4.7 with
    P = 1 for the chosen and 0 for the rejected response; TRL's "sppo_hard").

        r_w = S_w - S_ref_w, r_l = S_l - S_ref_l
        L = (r_w - 1 / (2 beta))^2 + (r_l + 1 / (2 beta))^2

    Shapes as in ``dpo_loss`` (S: summed log-probs). Each log-ratio regresses onto its own
    target, +-1/(2 beta): eta = 1/beta in the paper's notation. At pi = pi_ref: 1 / (2 beta^2).
    The official code (uclaml/SPPO) halves this sum, so its loss and gradient are half of
    TRL's and lakelab's (which Adam does not see); its P is the win rate against the current
    policy's samples, its default beta = 1e-3 (eta = 1000), and the reference is the previous
    iterate of self-play, here the fixed start policy. The equation number is the authors',
    as given in TRL.
    """
    r_w, r_l, beta = _pair(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, beta)
    losses = (r_w - 1 / (2 * beta)) ** 2 + (r_l + 1 / (2 * beta)) ** 2
    return _done(losses, r_w, r_l, beta, chosen_logps, rejected_logps, reduction)


def apo_loss(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    beta: float = 0.1,
    variant: str = "zero",
    reduction: str = "mean",
) -> tuple[torch.Tensor, dict]:
    """Anchored Preference Optimization (D'Oosterlinck et al. 2024; TRL's "apo_zero" and
    "apo_down"): each reward anchored, not only their difference.

        r_w = S_w - S_ref_w, r_l = S_l - S_ref_l
        "zero": L = (1 - sigmoid(beta r_w)) + sigmoid(beta r_l)                   (eq. 7)
        "down": L = sigmoid(beta r_w) + (1 - sigmoid(beta (r_w - r_l)))           (eq. 8)

    Shapes as in ``dpo_loss`` (S: summed log-probs). "zero" raises the chosen likelihood and
    lowers the rejected one (chosen responses better than the model's own); "down" lowers
    both, the rejected more (chosen responses worse than the model's own). At pi = pi_ref: 1.
    """
    r_w, r_l, beta = _pair(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, beta)
    check_choice("variant", variant, APO_VARIANTS)
    if variant == "zero":
        losses = (1 - torch.sigmoid(beta * r_w)) + torch.sigmoid(beta * r_l)
    else:
        losses = torch.sigmoid(beta * r_w) + (1 - torch.sigmoid(beta * (r_w - r_l)))
    return _done(losses, r_w, r_l, beta, chosen_logps, rejected_logps, reduction)


def discopop_loss(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    beta: float = 0.1,
    discopop_tau: float = 0.05,
    f_divergence_type: str = "reverse_kl",
    f_alpha_divergence_coef: float = 0.5,
    reduction: str = "mean",
) -> tuple[torch.Tensor, dict]:
    """DiscoPOP, the log-ratio modulated loss found by LLM-driven search (Lu et al. 2024,
    eq. 5; TRL's "discopop"): DPO's logistic loss blended with an exponential one.

        r_w = S_w - S_ref_w, r_l = S_l - S_ref_l
        rho = beta * (r_w - r_l); m = sigmoid(rho / tau)
        L = (1 - m) (-logsigmoid(rho)) + m exp(-rho)

    Shapes as in ``dpo_loss`` (S: summed log-probs); tau is TRL's ``discopop_tau`` (0.05).
    m exp(-rho) is computed as exp(logsigmoid(rho / tau) - rho), finite where exp(-rho)
    alone would overflow (a margin far below 0, where m is 0). The official code
    (SakanaAI/DiscoPOP) has tau = 0.05 and beta = 0.05. For tau < (1 - log 2) / 3 ~ 0.10 the
    loss is not convex: its slope at rho = 0 is (1 - log 2) / (4 tau) - 3/4 > 0, with a local
    minimum near rho = -0.12 and a maximum near +0.07 at tau = 0.05, so descent from pi_ref
    first lowers the margin. At pi = pi_ref: (1 + log 2) / 2. ``f_divergence_type``: as for
    ``exo_loss``.
    """
    r_w, r_l, beta = _pair(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, beta)
    tau = POSITIVE.check("discopop_tau", discopop_tau)
    rho = beta * f_margin(r_w, r_l, f_divergence_type, f_alpha_divergence_coef)
    m = torch.sigmoid(rho / tau)
    losses = (1 - m) * -logsigmoid(rho) + torch.exp(logsigmoid(rho / tau) - rho)
    return _done(losses, r_w, r_l, beta, chosen_logps, rejected_logps, reduction)


def dpo_norm_loss(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    beta: float = 0.1,
    reduction: str = "mean",
) -> tuple[torch.Tensor, dict]:
    """DPO on mean log-probs, length-normalised DPO (Lambert et al. 2024, Tulu 3; TRL's
    "sigmoid_norm").

        d = beta * ((A_w - A_ref_w) - (A_l - A_ref_l))
        L = -logsigmoid(d)

    Shapes as in ``dpo_loss`` but the inputs are A(y), mean log-probs: rewards/* are beta
    (A - A_ref). Tulu 3 uses beta = 5 (lakelab's default is TRL's 0.1). At pi = pi_ref: log 2.
    """
    r_w, r_l, beta = _pair(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, beta)
    losses = -logsigmoid(beta * (r_w - r_l))
    return _done(losses, r_w, r_l, beta, chosen_logps, rejected_logps, reduction)


def ld_dpo_loss(
    chosen: torch.Tensor,
    chosen_mask: torch.Tensor,
    rejected: torch.Tensor,
    rejected_mask: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    *,
    beta: float = 0.1,
    ld_alpha: float = 0.5,
    reduction: str = "mean",
) -> tuple[torch.Tensor, dict]:
    """Length-desensitized DPO (Liu et al. 2024; TRL's ``ld_alpha``): DPO on log-probs whose
    tokens beyond the shorter response's length weigh alpha.

        n = min(|y_w|, |y_l|); S'(y) = sum_{t <= n} logp_t + alpha sum_{t > n} logp_t
        d = beta * ((S'_w - S'_ref_w) - (S'_l - S'_ref_l)); L = -logsigmoid(d)

    | argument                 | shape  | meaning                                      |
    |--------------------------|--------|----------------------------------------------|
    | chosen, rejected         | (B, T) | per-token log-probs, any value off the masks |
    | chosen_mask, rejected_mask | (B, T) | 1/True on each response's tokens           |
    | ref_chosen, ref_rejected | (B, T) | the reference's, on the same masks           |
    | beta                     | float  | (0, inf)                                     |
    | ld_alpha                 | float  | alpha in [0, 1]: 1 is DPO, 0 drops the tail  |

    t counts each response's own tokens (its t-th token), as TRL does. alpha = 0.5 is
    lakelab's default (TRL's is None, DPO). At pi = pi_ref: log 2.
    """
    m_w, m_l = check_token_inputs(chosen, chosen_mask), check_token_inputs(rejected, rejected_mask)
    beta = POSITIVE.check("beta", beta)
    alpha = UNIT.check("ld_alpha", ld_alpha)
    n = torch.minimum(m_w.sum(-1), m_l.sum(-1))[:, None]  # (B, 1) the shared length

    def weighted(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:  # S'(y), (B,)
        position = m.cumsum(-1)  # the t of each response token
        shared = torch.where(m & (position <= n), x, 0.0).sum(-1)
        return shared + alpha * torch.where(m & (position > n), x, 0.0).sum(-1)

    r_w = weighted(chosen, m_w) - weighted(ref_chosen, m_w)
    r_l = weighted(rejected, m_l) - weighted(ref_rejected, m_l)
    losses = -logsigmoid(beta * (r_w - r_l))
    return _done(losses, r_w, r_l, beta, weighted(chosen, m_w), weighted(rejected, m_l), reduction)


def wpo_weight(logps: torch.Tensor, log_sum_sq: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """WPO's weight of each response (B,), detached: exp of the mean over its tokens of
    logp_t - log sum_v pi(v | .)^2, the token's probability against the policy's own
    expected probability at that position (Zhou et al. 2024, eq. 2 as TRL cites it)."""
    m = check_token_inputs(logps, mask)
    aligned = torch.where(m, logps.detach() - log_sum_sq.detach(), 0.0).sum(-1)
    return torch.exp(aligned / m.sum(-1))


def wpo_loss(
    chosen: torch.Tensor,
    chosen_mask: torch.Tensor,
    rejected: torch.Tensor,
    rejected_mask: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    chosen_log_sum_sq: torch.Tensor,
    rejected_log_sum_sq: torch.Tensor,
    *,
    beta: float = 0.1,
    variant: str = "sigmoid",
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> tuple[torch.Tensor, dict]:
    """Weighted Preference Optimization (Zhou et al. 2024; TRL's ``use_weighting=True``): DPO
    with each pair weighted by how likely the policy itself is to produce both responses,
    simulating on-policy data from off-policy pairs.

        w(y) = exp(mean_t (logp_t - log sum_v pi(v | x, y_<t)^2))   (detached)
        L = w(y_w) w(y_l) L_DPO

    | argument                        | shape  | meaning                                  |
    |---------------------------------|--------|------------------------------------------|
    | chosen, rejected (and masks)    | (B, T) | per-token log-probs, any value off masks |
    | ref_chosen, ref_rejected        | (B, T) | the reference's, on the same masks       |
    | chosen_log_sum_sq, rejected_... | (B, T) | log sum_v pi(v)^2 at each position       |

    L_DPO is ``dpo_loss`` on summed log-probs, its ``variant`` and ``label_smoothing`` as
    there. sum_v pi(v)^2 is the probability the policy gives its own sample at that position,
    so logp_t - log sum_v pi(v)^2 compares the token with a typical one: w = 1 for a response
    as likely as the policy's own. At pi = pi_ref: w(y_w) w(y_l) log 2.
    """
    w = wpo_weight(chosen, chosen_log_sum_sq, chosen_mask)
    w = w * wpo_weight(rejected, rejected_log_sum_sq, rejected_mask)
    pairs = ((chosen, chosen_mask), (rejected, rejected_mask), (ref_chosen, chosen_mask),
             (ref_rejected, rejected_mask))  # fmt: skip
    summed = [sum_logps(x, m) for x, m in pairs]  # S(y) of each, (B,)
    losses, metrics = dpo_loss(*summed, beta=beta, variant=variant,
                               label_smoothing=label_smoothing, reduction="none")  # fmt: skip
    return _reduce(w * losses, {**metrics, "wpo/weight": w}, reduction)


def aot_loss(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    beta: float = 0.1,
    variant: str = "paired",
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> tuple[torch.Tensor, dict]:
    """Alignment via Optimal Transport (Melnyk et al. 2024; TRL's "aot" and "aot_unpaired"):
    DPO's logistic loss on quantiles of the batch, matched by sorting, instead of on pairs.

        "paired":   delta = sort(S_w - S_l) - sort(S_ref_w - S_ref_l)
        "unpaired": delta = sort(r_w) - sort(r_l)
        L = -(1 - eps) logsigmoid(beta delta) - eps logsigmoid(-beta delta)

    Shapes as in ``dpo_loss`` (S: summed log-probs; r = S - S_ref). The sort is over the rows
    of the batch, so a row's loss depends on the others (``Objective.batchwise``): with
    ``reduction="none"`` the losses are per quantile, in sorted order, not per input row.
    At pi = pi_ref: log 2.
    """
    r_w, r_l, beta = _pair(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, beta)
    check_choice("variant", variant, AOT_VARIANTS)
    eps = LABEL_SMOOTHING.check("label_smoothing", label_smoothing)
    if variant == "paired":
        delta = (chosen_logps - rejected_logps).sort().values
        delta = delta - (ref_chosen_logps - ref_rejected_logps).sort().values
    else:
        delta = r_w.sort().values - r_l.sort().values
    d = beta * delta
    return _done(smoothed_logistic(d, eps), r_w, r_l, beta, chosen_logps, rejected_logps, reduction)
