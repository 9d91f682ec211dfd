"""Objectives for unpaired data: examples labelled desirable or undesirable, not pairs.

KTO and BCO learn from single responses, each marked good (desirable, D) or bad
(undesirable, U), with no rejected response for each chosen one. Each function takes the
summed log-probs of the desirable examples (B_D,) and of the undesirable ones (B_U,), and the
reference's of both; B_D and B_U are independent, and either may be 0 (a batch with examples
of one kind only is finite). The log-ratio of an example is r = S - S_ref, its reward beta r.

KTO also takes the log-probs of mismatched pairs (M,): prompt i with the response of another
example, under the policy and the reference. Their mean log-ratio estimates the reference
point z0 = KL(pi || pi_ref), as the paper does (a matched pair would make it the examples' own
rewards). The training loops build the mismatched pairs (``docs/objectives.md``, unpaired
data); on the lake every example shares one prompt, the start state, so the mismatched pairs
are the batch's own examples.

``reduction="none"`` returns one loss per example (B_D + B_U,), the desirable ones first, as
TRL concatenates them; the mean reduction averages over all examples, so desirable_weight and
undesirable_weight trade the two kinds off. A metric of one kind (``rewards/chosen``: the
desirable examples' rewards, TRL's name) is NaN on the other kind's rows, so ``nanmean`` over
any rows gives those rows' value; it is NaN in the mean reduction of a batch without that kind
(TRL leaves it out of its logs).
"""

from __future__ import annotations

import torch

from lakelab.objectives import BATCH_REDUCTIONS, POSITIVE, REAL, logsigmoid
from lakelab.validate import check_choice

__all__ = ["apo_unpaired_loss", "bco_loss", "kto_loss", "kto_reference_point"]


def _check_unpaired(**tensors: torch.Tensor) -> None:
    """Pairs of (policy, reference) log-probs, each pair one shape (n,), n >= 0."""
    items = list(tensors.items())
    for name, t in items:
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            raise TypeError(f"{name} must be a floating-point torch.Tensor, got {t!r}")
        if t.dim() != 1:
            raise ValueError(f"{name} must have shape (n,), got {tuple(t.shape)}")
    for (a, x), (b, y) in zip(items[::2], items[1::2], strict=True):
        if x.shape != y.shape:
            raise ValueError(
                f"{a} and {b} must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}"
            )


def _examples(chosen, rejected, ref_chosen, ref_rejected, beta):
    """Checked inputs -> (r_D, r_U, beta): the log-ratios of both kinds of example."""
    _check_unpaired(
        chosen_logps=chosen,
        ref_chosen_logps=ref_chosen,
        rejected_logps=rejected,
        ref_rejected_logps=ref_rejected,
    )
    if len(chosen) + len(rejected) == 0:
        raise ValueError("a batch needs at least one example, desirable or undesirable")
    return chosen - ref_chosen, rejected - ref_rejected, POSITIVE.check("beta", beta)


def _result(loss_d, loss_u, r_d, r_u, beta, chosen, rejected, reduction, **shared):
    """Per-example losses, desirable first; metrics NaN on the other kind's rows."""
    check_choice("reduction", reduction, BATCH_REDUCTIONS)
    losses = torch.cat([loss_d, loss_u])

    def one_kind(d: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.cat([d, torch.full_like(u, torch.nan)]),
                torch.cat([torch.full_like(d, torch.nan), u]))  # fmt: skip

    rewards, logps = one_kind(beta * r_d, beta * r_u), one_kind(chosen, rejected)
    metrics = {"rewards/chosen": rewards[0], "rewards/rejected": rewards[1]}
    metrics |= {"logps/chosen": logps[0], "logps/rejected": logps[1]}
    metrics |= {k: v.expand(len(losses)) for k, v in shared.items()}
    metrics = {k: v.detach() for k, v in metrics.items()}
    if reduction == "none":
        return losses, metrics
    return losses.mean(), {k: v.nanmean(dtype=torch.float64).item() for k, v in metrics.items()}


def kto_reference_point(kl_logps: torch.Tensor, ref_kl_logps: torch.Tensor) -> torch.Tensor:
    """KTO's reference point z0 = max(0, mean_j (S_j - S_ref_j)) over the mismatched pairs j,
    detached: no gradient flows through it (TRL also clamps and detaches it)."""
    _check_unpaired(kl_logps=kl_logps, ref_kl_logps=ref_kl_logps)
    if len(kl_logps) == 0:
        raise ValueError("KTO's reference point needs at least one mismatched pair, got none")
    return (kl_logps - ref_kl_logps).detach().mean().clamp(min=0)


def kto_loss(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    kl_logps: torch.Tensor,
    ref_kl_logps: torch.Tensor,
    *,
    beta: float = 0.1,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
    reduction: str = "mean",
) -> tuple[torch.Tensor, dict]:
    """Kahneman-Tversky Optimization (Ethayarajh et al. 2024, eq. 7 as TRL's code cites it;
    TRL's KTOTrainer): desirable rewards pushed above the reference point z0, undesirable
    ones below it.

        r = S - S_ref;  z0 = max(0, mean(S_kl - S_ref_kl)) (detached)
        L_D = w_D (1 - sigmoid(beta (r - z0)));  L_U = w_U (1 - sigmoid(beta (z0 - r)))

    Shapes: chosen (desirable) (B_D,), rejected (undesirable) (B_U,) with their reference's,
    the mismatched pairs' kl_logps (M,), M >= 1. The paper writes the loss as
    E[lambda_y - v(x, y)] with the value v = lambda_D sigmoid(beta (r - z0)) for a desirable
    example, which is L_D above; it recommends weights with w_D B_D / (w_U B_U) in [1, 4/3].
    At pi = pi_ref (r = 0, z0 = 0) every example's loss is w / 2.
    """
    r_d, r_u, beta = _examples(chosen_logps, rejected_logps, ref_chosen_logps,
                               ref_rejected_logps, beta)  # fmt: skip
    w_d = POSITIVE.check("desirable_weight", desirable_weight)
    w_u = POSITIVE.check("undesirable_weight", undesirable_weight)
    z0 = kto_reference_point(kl_logps, ref_kl_logps)
    loss_d = w_d * (1 - torch.sigmoid(beta * (r_d - z0)))
    loss_u = w_u * (1 - torch.sigmoid(beta * (z0 - r_u)))
    return _result(loss_d, loss_u, r_d, r_u, beta, chosen_logps, rejected_logps, reduction,
                   kl=z0)  # fmt: skip


def bco_loss(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    beta: float = 0.1,
    delta: float = 0.0,
    reduction: str = "mean",
) -> tuple[torch.Tensor, dict]:
    """Binary Classifier Optimization (Jung et al. 2024): a logistic classifier with logit
    beta r - delta, desirable examples as class 1, undesirable ones as class 0.

        r = S - S_ref
        L_D = -logsigmoid(beta r - delta);  L_U = -logsigmoid(-(beta r - delta))

    Shapes as in ``kto_loss`` (no mismatched pairs). As in ``bco_pair`` (its paired form,
    TRL's DPO loss type), the reward shift delta is a fixed number here; the paper's is a
    running mean of the rewards of both kinds, and its prompt classifier's density ratio,
    which reweighs the undesirable examples, is left out. On a batch of pairs split into
    examples this is bco_pair's loss halved. At pi = pi_ref with delta = 0: log 2 each.
    """
    r_d, r_u, beta = _examples(chosen_logps, rejected_logps, ref_chosen_logps,
                               ref_rejected_logps, beta)  # fmt: skip
    delta = REAL.check("delta", delta)
    loss_d = -logsigmoid(beta * r_d - delta)
    loss_u = -logsigmoid(-(beta * r_u - delta))
    return _result(loss_d, loss_u, r_d, r_u, beta, chosen_logps, rejected_logps, reduction)


def apo_unpaired_loss(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    beta: float = 0.1,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
    reduction: str = "mean",
) -> tuple[torch.Tensor, dict]:
    """APO-zero on unpaired examples (D'Oosterlinck et al. 2024, eq. 7 unpaired, as TRL's
    code cites it; TRL's KTOTrainer(loss_type='apo_zero_unpaired')): desirable rewards up,
    undesirable ones down, each on its own, with no reference point.

        r = S - S_ref
        L_D = w_D (1 - sigmoid(beta r));  L_U = w_U sigmoid(beta r)

    Shapes as in ``kto_loss`` (no mismatched pairs). It is KTO with z0 = 0: use it when the
    desirable outputs are better than the model's own. The weights are TRL's (its KTO trainer
    applies them to every loss type); the paper has none. At pi = pi_ref: w / 2 each.
    """
    r_d, r_u, beta = _examples(chosen_logps, rejected_logps, ref_chosen_logps,
                               ref_rejected_logps, beta)  # fmt: skip
    w_d = POSITIVE.check("desirable_weight", desirable_weight)
    w_u = POSITIVE.check("undesirable_weight", undesirable_weight)
    loss_d = w_d * (1 - torch.sigmoid(beta * r_d))
    loss_u = w_u * torch.sigmoid(beta * r_u)
    return _result(loss_d, loss_u, r_d, r_u, beta, chosen_logps, rejected_logps, reduction)
