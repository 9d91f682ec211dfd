"""The alignment objectives of lakelab as pure tensor functions.

Every loss takes per-sequence (B,) or per-token (B, T) log-probs and returns `(loss, metrics)`:
`loss` is the batch-mean scalar tensor to call `.backward()` on, `metrics` a dict of plain
Python floats named like TRL's logs (`logps/chosen`, `rewards/margins`, ...). Both tracks
(Frozen Lake MLP and tiny transformer), the app and the notebooks call these same functions,
usually through `lakelab.registry.compute_objective`.

With `reduction="none"` (as in `torch.nn` losses) both stay per sequence: the losses (B,) and
each metric as a detached (B,) tensor, whose float64 batch means are the "mean" values;
averaging them over any subset of rows gives that subset's metrics without another call (the
Frozen Lake experiment's per-seed metrics). `BATCH_REDUCTIONS` lists the two; the reduction of
a sequence's tokens (S or A below) is a different thing, the registry's `Objective.reduction`.

Each function's docstring holds its formula, paper and equation; the registry
(``lakelab.registry.OBJECTIVES``) keeps each one's one-line form in plain text and LaTeX,
which the README, the app and notebook 02 show (a test checks that the two agree). S(y) is
the summed, A(y) the mean log-prob of a response (``lakelab.reductions``), w the chosen and
l the rejected response, logodds(y) = A - log(1 - exp(A)). Derivations, defaults and
paper-vs-code notes: ``docs/objectives.md``. Hyper-parameters are validated here against the
ranges declared below (ValueError naming the bad value and what is allowed).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from lakelab.reductions import check_token_inputs, ift_weights, mean_logps, sum_logps
from lakelab.validate import Interval, check_choice

__all__ = [
    "BATCH_REDUCTIONS",
    "DPO_VARIANTS",
    "asft_loss",
    "dpo_loss",
    "f_margin",
    "ift_loss",
    "ift_weights",
    "ipo_loss",
    "log1mexp",
    "log_odds",
    "logsigmoid",
    "mean_logps",
    "orpo_loss",
    "pair_result",
    "sft_loss",
    "sft_token_mean_loss",
    "simpo_loss",
    "smoothed_logistic",
    "sum_logps",
]

BATCH_REDUCTIONS = ("mean", "none")
DPO_VARIANTS = ("hinge", "robust", "sigmoid")
F_DIVERGENCES = ("alpha_divergence", "forward_kl", "js_divergence", "reverse_kl")
# The ranges of the hyper-parameters, declared once: the functions below check them, and the
# registry (``lakelab.registry``) shows them in the app and the CLI.
POSITIVE = Interval(0.0, None, low_open=True)  # the betas of DPO, IPO, ASFT and SimPO
NONNEGATIVE = Interval(0.0, None)  # the lams of ORPO and ASFT, SimPO's gamma
LABEL_SMOOTHING = Interval(0.0, 0.5, high_open=True)  # DPO's eps
REAL = Interval(None, None)  # BCO's delta, AlphaPO's alpha
LOG1MEXP_CLAMP = -1e-6  # log1mexp treats x > -1e-6 as -1e-6: log(1 - exp(-1e-6)) ~ -13.8
_LN2 = math.log(2.0)


# ----------------------------------------------------------------------------- validation
def _check_sequences(**tensors: torch.Tensor) -> None:
    """Per-sequence inputs: floating-point tensors of one common shape (B,), B >= 1."""
    shape = None
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            raise TypeError(f"{name} must be a floating-point torch.Tensor, got {t!r}")
        if t.dim() != 1 or t.shape[0] == 0:
            raise ValueError(f"{name} must have shape (B,) with B >= 1, got {tuple(t.shape)}")
        if shape is None:
            first, shape = name, t.shape
        elif t.shape != shape:
            raise ValueError(
                f"{first} and {name} must have the same shape (B,), "
                f"got {tuple(shape)} and {tuple(t.shape)}"
            )


def _check_nonpositive(**tensors: torch.Tensor) -> None:
    """Mean log-probs fed to log1mexp must be <= 0 (a probability is at most 1)."""
    for name, t in tensors.items():
        if bool((t > 0).any()):
            raise ValueError(f"{name} must be <= 0 (log-probabilities), got max {t.max().item()}")


def _mean(x: torch.Tensor) -> float:
    return x.detach().mean(dtype=torch.float64).item()


def _reduce(
    losses: torch.Tensor, metrics: dict[str, torch.Tensor], reduction: str
) -> tuple[torch.Tensor, dict]:
    """Per-sequence losses (B,) and metrics (B,) -> the batch means ("mean": a scalar loss and
    floats) or the per-sequence values ("none": metrics detached)."""
    check_choice("reduction", reduction, BATCH_REDUCTIONS)
    if reduction == "none":
        return losses, {k: v.detach() for k, v in metrics.items()}
    return losses.mean(), {k: _mean(v) for k, v in metrics.items()}


def pair_result(
    losses: torch.Tensor,
    chosen_rewards: torch.Tensor,
    rejected_rewards: torch.Tensor,
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    reduction: str,
) -> tuple[torch.Tensor, dict]:
    """A pairwise objective's ``(loss, metrics)``: TRL's reward diagnostics from its implicit
    rewards (B,), the log-probs it was given, reduced as asked."""
    metrics = _reward_metrics(chosen_rewards, rejected_rewards)
    metrics |= {"logps/chosen": chosen_logps, "logps/rejected": rejected_logps}
    return _reduce(losses, metrics, reduction)


def smoothed_logistic(d: torch.Tensor, eps: float) -> torch.Tensor:
    """-(1 - eps) logsigmoid(d) - eps logsigmoid(-d), the logistic loss with label smoothing
    eps; at eps = 0 exactly -logsigmoid(d) (no 0 * inf = NaN where d is infinite)."""
    if eps == 0:
        return -logsigmoid(d)
    return -(1 - eps) * logsigmoid(d) - eps * logsigmoid(-d)


def _reward_metrics(chosen: torch.Tensor, rejected: torch.Tensor) -> dict[str, torch.Tensor]:
    """TRL's reward diagnostics from per-pair implicit rewards (B,), per pair."""
    return {
        "rewards/chosen": chosen,
        "rewards/rejected": rejected,
        "rewards/margins": chosen - rejected,
        "rewards/accuracies": (chosen > rejected).float(),
    }


# ----------------------------------------------------------------------------- building blocks
def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """Stable log(1 - exp(x)) for x <= 0 (Maechler 2012, "Accurately computing log(1 - exp(-|a|))").

        log1mexp(x) = log1p(-exp(x))   if x < -ln 2
                      log(-expm1(x))   otherwise

    Shapes: any; elementwise. Traps:
    - x is clamped to <= -1e-6 first, so x = 0 (a response the model is certain of) gives the
      finite log(1 - exp(-1e-6)) ~ -13.8 instead of -inf; the gradient is 0 above the clamp.
    - torch.where differentiates *both* branches; each branch is evaluated on inputs where it is
      finite (the other branch's inputs are replaced by a harmless constant), so an inf in the
      discarded branch can never turn into a NaN gradient.
    """
    x = x.clamp(max=LOG1MEXP_CLAMP)
    far = x < -_LN2  # exp(x) < 1/2: log1p(-exp(x)) is accurate
    x_far = torch.where(far, x, -1.0)  # -1 < -ln 2: safe for the far branch
    x_near = torch.where(far, -0.5, x)  # -0.5 > -ln 2: safe for the near branch
    return torch.where(far, torch.log1p(-torch.exp(x_far)), torch.log(-torch.expm1(x_near)))


def logsigmoid(z: torch.Tensor) -> torch.Tensor:
    """log sigmoid(z) = -softplus(-z), elementwise, stable for any z.

    softplus switches to the identity above 30, where log1p(exp(30)) - 30 < 1e-13, so this is
    as accurate as `F.logsigmoid` (why not that one: docs/benchmarks.md).
    """
    return -F.softplus(-z, threshold=30.0)


def log_odds(mean_logps: torch.Tensor) -> torch.Tensor:
    """Log-odds of the length-normalised likelihood, logodds = A - log(1 - exp(A)) (ORPO).

    Shapes: (B,) -> (B,). A = 0 is finite thanks to the clamp in `log1mexp` (~ +13.8).
    """
    return mean_logps - log1mexp(mean_logps)


# ----------------------------------------------------------------------------- objectives
def sft_loss(chosen_logps: torch.Tensor, *, reduction: str = "mean") -> tuple[torch.Tensor, dict]:
    """Supervised fine-tuning: maximise the mean log-likelihood of the chosen response.

        L = -A(y_w)            (per sequence; the loss is the batch mean)

    | argument      | shape | meaning                      |
    |---------------|-------|------------------------------|
    | chosen_logps  | (B,)  | A(y_w), mean token log-prob  |
    | reduction     | str   | "mean" or "none" (per sequence) |

    Trap: A (per-sequence mean, then batch mean) weighs every sequence equally; a token-level
    mean over the whole batch would weigh long responses more.
    """
    _check_sequences(chosen_logps=chosen_logps)
    return _reduce(-chosen_logps, {"logps/chosen": chosen_logps}, reduction)


def sft_token_mean_loss(
    chosen: torch.Tensor, chosen_mask: torch.Tensor, *, reduction: str = "mean"
) -> tuple[torch.Tensor, dict]:
    """SFT as TRL's trainers compute it: the NLL averaged over every response token of the
    batch, so that long responses weigh more (TRL's ``SFTTrainer(loss_type='nll')``).

        L = sum_b sum_t m_bt (-logp_bt) / sum_b sum_t m_bt

    | argument     | shape  | meaning                                   |
    |--------------|--------|-------------------------------------------|
    | chosen       | (B, T) | per-token log-probs, any value off the mask |
    | chosen_mask  | (B, T) | 1/True on response tokens                 |
    | reduction    | str    | "mean" or "none"                          |

    A row's share depends on the batch's token count (``Objective.batchwise``): with
    ``reduction="none"`` row b gets B sum_t m_bt (-logp_bt) / N, whose mean is the loss.
    Equal to ``sft_loss`` when every response has the same length.
    """
    m = check_token_inputs(chosen, chosen_mask)
    nll = torch.where(m, -chosen, 0.0).sum(-1)  # (B,)
    losses = nll * (len(nll) / m.sum(dtype=chosen.dtype))
    mean = torch.where(m, chosen, 0.0).sum(-1) / m.sum(-1, dtype=chosen.dtype)
    return _reduce(losses, {"logps/chosen": mean.detach()}, reduction)


def ift_loss(
    token_logps: torch.Tensor,
    mask: torch.Tensor,
    *,
    gamma: float = 0.95,
    weighting: str = "loss",
    reduction: str = "mean",
) -> tuple[torch.Tensor, dict]:
    """Intuitive Fine-Tuning: SFT on the mixed pass with dynamic-relation-propagation weights.

        L = sum_i m_i (-logp'_i) W_i / N      (per sequence; IFT eqs. 19-22, official code)

    logp' are the log-probs of the true tokens from the second, *mixed-input* forward pass
    (temporal residual, eq. 17: `lakelab.residual`). W = `ift_weights(logp', mask, ...)`, not
    detached (the official code backpropagates through W when weighting="loss").

    | argument     | shape  | meaning                                      |
    |--------------|--------|----------------------------------------------|
    | token_logps  | (B, T) | log pi(a_t | mixed inputs) of the true tokens |
    | mask         | (B, T) | 1/True on response tokens                    |
    | gamma        | float  | discount in [0, 1] (official default 0.95)   |
    | weighting    | str    | "loss" (official), "prefix" (eq. 20), "none" |
    | reduction    | str    | "mean" or "none" (per sequence)  |

    Metrics: logps/chosen = mean A(y) of the mixed pass, ift/sft_loss = its negative (the SFT
    loss on the same log-probs), ift/weight_first_token and ift/weight_last_token = mean W at
    the first and last response token. Traps: gamma = 0 (or weighting="none") is exactly SFT on
    A(y), so IFT with lam = 0 and gamma = 0 is SFT; see `ift_weights` for the gamma = 0
    discontinuity of "loss" and the guard for all-zero weights.
    """
    m = check_token_inputs(token_logps, mask)
    weights = ift_weights(token_logps, mask, gamma=gamma, weighting=weighting)  # (B, T)
    n_tokens = m.sum(dim=-1, dtype=token_logps.dtype)  # (B,)
    nll = torch.where(m, -token_logps, 0.0)  # (B, T)
    losses = (nll * weights).sum(dim=-1) / n_tokens  # (B,)

    first = m.to(torch.int8).argmax(dim=-1, keepdim=True)  # (B, 1) first response position
    last = m.shape[1] - 1 - m.flip(-1).to(torch.int8).argmax(dim=-1, keepdim=True)
    chosen = torch.where(m, token_logps, 0.0).sum(dim=-1).detach() / n_tokens  # A(y_w)
    metrics = {
        "logps/chosen": chosen,
        "ift/sft_loss": -chosen,
        "ift/weight_first_token": weights.gather(1, first).squeeze(1),
        "ift/weight_last_token": weights.gather(1, last).squeeze(1),
    }
    return _reduce(losses, metrics, reduction)


def dpo_loss(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    beta: float = 0.1,
    variant: str = "sigmoid",
    label_smoothing: float = 0.0,
    f_divergence_type: str = "reverse_kl",
    f_alpha_divergence_coef: float = 0.5,
    reduction: str = "mean",
) -> tuple[torch.Tensor, dict]:
    """Direct Preference Optimization on summed log-probs (Rafailov et al. 2023, eq. 7).

        d = beta * ((S_w - S_ref_w) - (S_l - S_ref_l))
        L = -logsigmoid(d)                                             (DPO, eq. 7)

    Variants (TRL's loss types):

        "sigmoid": L = -(1 - eps) logsigmoid(d) - eps logsigmoid(-d)    (eps = 0: plain DPO;
                                                 eps > 0: conservative DPO, cDPO; TRL 1.16's
                                                 "sigmoid" ignores eps, docs/verify.md)
        "hinge":   L = relu(1 - d)                                     (SLiC-style, TRL)
        "robust":  L = (-(1 - eps) logsigmoid(d) + eps logsigmoid(-d)) / (1 - 2 eps)
                                                 (Chowdhury et al. 2024, TRL)

    Other divergences from the reference (f-DPO, Wang et al. 2023; TRL's
    ``f_divergence_type``) replace each log-ratio r = S - S_ref by f'(pi / pi_ref), constants
    that cancel in the difference dropped, in d = beta * (g(r_w) - g(r_l)):

        "reverse_kl":       g(r) = r                                   (DPO)
        "forward_kl":       g(r) = 1 - exp(-r)
        "js_divergence":    g(r) = log 2 + logsigmoid(r)
        "alpha_divergence": g(r) = (exp((a - 1) r) - 1) / (a - 1), a = f_alpha_divergence_coef
                            (TRL's coefficient, default 0.5; r at a = 1. With
                            f'(u) = (1 - u^-alpha) / alpha, alpha = 1 - a: a = 0 is the
                            forward KL, as older TRL wrote it)

    | argument           | shape | meaning                              |
    |--------------------|-------|--------------------------------------|
    | chosen_logps       | (B,)  | S_pi(y_w), summed token log-probs    |
    | rejected_logps     | (B,)  | S_pi(y_l)                            |
    | ref_chosen_logps   | (B,)  | S_ref(y_w) (frozen start policy)     |
    | ref_rejected_logps | (B,)  | S_ref(y_l)                           |
    | beta               | float | (0, inf), TRL default 0.1            |
    | label_smoothing    | float | eps in [0, 0.5); must be 0 for hinge |
    | f_divergence_type  | str   | "reverse_kl" (DPO) or another above  |
    | f_alpha_divergence_coef | float | a in (0, inf), alpha divergence only |
    | reduction          | str   | "mean" or "none" (per sequence)  |

    Metrics: rewards/* = beta (S - S_ref) as in TRL. Traps: only the *margin* is optimised, so
    S_w can fall while the loss improves (the chosen log-prob dropping during DPO is expected,
    see `lakelab.analysis`). policy == reference gives d = 0: loss log 2 (sigmoid, robust), 1
    (hinge).
    """
    _check_sequences(
        chosen_logps=chosen_logps,
        rejected_logps=rejected_logps,
        ref_chosen_logps=ref_chosen_logps,
        ref_rejected_logps=ref_rejected_logps,
    )
    beta = POSITIVE.check("beta", beta)
    check_choice("variant", variant, DPO_VARIANTS)
    eps = LABEL_SMOOTHING.check("label_smoothing", label_smoothing)
    if variant == "hinge" and eps != 0.0:
        raise ValueError(f"label_smoothing must be 0 for variant 'hinge', got {label_smoothing!r}")

    chosen_rewards = beta * (chosen_logps - ref_chosen_logps)  # (B,)
    rejected_rewards = beta * (rejected_logps - ref_rejected_logps)  # (B,)
    r_w, r_l = chosen_logps - ref_chosen_logps, rejected_logps - ref_rejected_logps
    d = beta * f_margin(r_w, r_l, f_divergence_type, f_alpha_divergence_coef)  # (B,)
    if variant == "sigmoid":
        losses = smoothed_logistic(d, eps)
    elif variant == "hinge":
        losses = torch.relu(1 - d)
    else:  # robust
        losses = (-(1 - eps) * logsigmoid(d) + eps * logsigmoid(-d)) / (1 - 2 * eps)
    return pair_result(
        losses, chosen_rewards, rejected_rewards, chosen_logps, rejected_logps, reduction
    )


def f_margin(r_w: torch.Tensor, r_l: torch.Tensor, kind: str, a: float) -> torch.Tensor:
    """f-DPO's margin g(r_w) - g(r_l) of the log-ratios (B,) for divergence ``kind`` (with
    coefficient ``a`` for the alpha divergence; see ``dpo_loss``); "reverse_kl" (and the alpha
    divergence at a = 1) is r_w - r_l, exactly. Checks both knobs."""
    check_choice("f_divergence_type", kind, F_DIVERGENCES)
    a = POSITIVE.check("f_alpha_divergence_coef", a)
    if kind == "reverse_kl" or (kind == "alpha_divergence" and a == 1):
        return r_w - r_l
    return _f_score(r_w, kind, a) - _f_score(r_l, kind, a)


def _f_score(r: torch.Tensor, kind: str, a: float) -> torch.Tensor:
    """f'(pi / pi_ref) of the log-ratio r for f-DPO's divergences (see ``dpo_loss``)."""
    if kind == "forward_kl":
        return -torch.expm1(-r)  # 1 - exp(-r)
    if kind == "js_divergence":
        return math.log(2) + logsigmoid(r)
    return torch.expm1((a - 1) * r) / (a - 1)  # alpha divergence, a != 1


def ipo_loss(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    beta: float = 0.1,
    reduction: str = "mean",
) -> tuple[torch.Tensor, dict]:
    """Identity Preference Optimisation on mean log-probs (Azar et al. 2023; as TRL's "ipo").

        h = (A_w - A_ref_w) - (A_l - A_ref_l)
        L = (h - 1 / (2 beta))^2

    | argument           | shape | meaning                   |
    |--------------------|-------|---------------------------|
    | chosen_logps       | (B,)  | A_pi(y_w), mean log-probs |
    | rejected_logps     | (B,)  | A_pi(y_l)                 |
    | ref_chosen_logps   | (B,)  | A_ref(y_w)                |
    | ref_rejected_logps | (B,)  | A_ref(y_l)                |
    | beta               | float | (0, inf); target margin 1/(2 beta) |
    | reduction          | str   | "mean" or "none" (per sequence)  |

    Metrics: rewards/* = beta (A - A_ref), as TRL logs them. Trap: IPO's beta is the inverse of
    a target margin (small beta = large margin), unlike DPO's inverse temperature; the loss
    also *penalises* margins above 1/(2 beta).
    """
    _check_sequences(
        chosen_logps=chosen_logps,
        rejected_logps=rejected_logps,
        ref_chosen_logps=ref_chosen_logps,
        ref_rejected_logps=ref_rejected_logps,
    )
    beta = POSITIVE.check("beta", beta)

    h = (chosen_logps - ref_chosen_logps) - (rejected_logps - ref_rejected_logps)  # (B,)
    losses = (h - 1 / (2 * beta)) ** 2

    return pair_result(
        losses,
        beta * (chosen_logps - ref_chosen_logps),
        beta * (rejected_logps - ref_rejected_logps),
        chosen_logps,
        rejected_logps,
        reduction,
    )


def orpo_loss(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    *,
    lam: float = 0.1,
    reduction: str = "mean",
) -> tuple[torch.Tensor, dict]:
    """Odds-Ratio Preference Optimization on mean log-probs (Hong et al. 2024, eqs. 6-7).

        L = -A_w - lam * logsigmoid(logodds(y_w) - logodds(y_l))
        logodds(y) = A - log(1 - exp(A))

    | argument       | shape | meaning                                 |
    |----------------|-------|-----------------------------------------|
    | chosen_logps   | (B,)  | A(y_w), mean log-probs, <= 0            |
    | rejected_logps | (B,)  | A(y_l), <= 0                            |
    | lam            | float | [0, inf); TRL calls it beta (default 0.1) |
    | reduction      | str   | "mean" or "none" (per sequence)  |

    Metrics: rewards/* = lam * A (TRL's ORPO logs beta * logps), orpo/log_odds_ratio =
    mean logsigmoid(...), orpo/log_odds_chosen = mean (logodds_w - logodds_l), orpo/nll_loss.
    Traps: the NLL term covers the response only (like the IFT repo's ORPO); TRL's ORPO NLL
    also covers the prompt tokens. No reference model. Inputs must be <= 0 (ValueError).
    """
    _check_sequences(chosen_logps=chosen_logps, rejected_logps=rejected_logps)
    _check_nonpositive(chosen_logps=chosen_logps, rejected_logps=rejected_logps)
    lam = NONNEGATIVE.check("lam", lam)

    nll = -chosen_logps  # (B,)
    log_odds_ratio = log_odds(chosen_logps) - log_odds(rejected_logps)  # (B,)
    odds_term = logsigmoid(log_odds_ratio)  # (B,)
    losses = nll - lam * odds_term

    metrics = _reward_metrics(lam * chosen_logps, lam * rejected_logps)
    metrics |= {
        "logps/chosen": chosen_logps,
        "logps/rejected": rejected_logps,
        "orpo/nll_loss": nll,
        "orpo/log_odds_ratio": odds_term,
        "orpo/log_odds_chosen": log_odds_ratio,
    }
    return _reduce(losses, metrics, reduction)


def asft_loss(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    *,
    lam: float = 1.0,
    beta: float = 1.0,
    reduction: str = "mean",
) -> tuple[torch.Tensor, dict]:
    """Aligned SFT: absolute likelihood per response, no pairing, no reference (arXiv 2409.10571).

        L = -A_w - lam * [logsigmoid(beta * logodds(y_w)) + logsigmoid(-beta * logodds(y_l))]

    No official code is public; this restatement follows Gorbatovski et al. 2025 (arXiv
    2502.01237) and turbo-llm/turbo-alignment. With beta = 1, sigmoid(logodds(y)) = exp(A), so
    L = -(1 + lam) A_w - lam log(1 - exp(A_l)).

    | argument       | shape | meaning                        |
    |----------------|-------|--------------------------------|
    | chosen_logps   | (B,)  | A(y_w), mean log-probs, <= 0   |
    | rejected_logps | (B,)  | A(y_l), <= 0                   |
    | lam            | float | [0, inf), default 1            |
    | beta           | float | (0, inf), default 1            |
    | reduction      | str   | "mean" or "none" (per sequence)  |

    Metrics: rewards/* = beta * logodds(y), the logit of the absolute "is this response
    preferred" probability the loss pushes to 1 (chosen) and 0 (rejected); accuracies compare
    them, which for one beta is the same as comparing A_w > A_l. asft/p_chosen and
    asft/p_rejected are mean sigmoid(beta * logodds). Traps: this is *Aligned* SFT (Wang et al.
    2024, arXiv 2409.10571), not the unrelated *Anchored* SFT (arXiv 2509.23753) that other
    libraries ship under the same name "ASFT". Inputs must be <= 0 (ValueError).
    """
    _check_sequences(chosen_logps=chosen_logps, rejected_logps=rejected_logps)
    _check_nonpositive(chosen_logps=chosen_logps, rejected_logps=rejected_logps)
    lam = NONNEGATIVE.check("lam", lam)
    beta = POSITIVE.check("beta", beta)

    chosen_logits = beta * log_odds(chosen_logps)  # (B,)
    rejected_logits = beta * log_odds(rejected_logps)  # (B,)
    absolute = logsigmoid(chosen_logits) + logsigmoid(-rejected_logits)  # (B,)
    losses = -chosen_logps - lam * absolute

    metrics = _reward_metrics(chosen_logits, rejected_logits)
    metrics |= {
        "logps/chosen": chosen_logps,
        "logps/rejected": rejected_logps,
        "asft/p_chosen": torch.sigmoid(chosen_logits.detach()),
        "asft/p_rejected": torch.sigmoid(rejected_logits.detach()),
    }
    return _reduce(losses, metrics, reduction)


def simpo_loss(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    *,
    beta: float = 2.0,
    gamma: float = 0.5,
    reduction: str = "mean",
) -> tuple[torch.Tensor, dict]:
    """Simple Preference Optimization: a length-normalised margin, no reference (Meng et al.
    2024, eq. 6; TRL's CPO trainer with loss_type="simpo").

        L = -logsigmoid(beta * (A_w - A_l) - gamma)

    | argument       | shape | meaning                                   |
    |----------------|-------|-------------------------------------------|
    | chosen_logps   | (B,)  | A(y_w), mean log-probs                    |
    | rejected_logps | (B,)  | A(y_l)                                    |
    | beta           | float | (0, inf), paper-scale default 2.0         |
    | gamma          | float | target reward margin, [0, inf), default 0.5 |
    | reduction      | str   | "mean" or "none" (per sequence)  |

    Metrics: rewards/* = beta * A (SimPO's implicit reward). Traps: A is a per-token average,
    so useful betas (2-10 in the paper) are far larger than DPO's 0.1 on sums; TRL writes the
    same logit as beta * ((A_w - A_l) - gamma / beta).
    """
    _check_sequences(chosen_logps=chosen_logps, rejected_logps=rejected_logps)
    beta = POSITIVE.check("beta", beta)
    gamma = NONNEGATIVE.check("gamma", gamma)

    chosen_rewards = beta * chosen_logps  # (B,)
    rejected_rewards = beta * rejected_logps  # (B,)
    losses = -logsigmoid(chosen_rewards - rejected_rewards - gamma)
    return pair_result(
        losses, chosen_rewards, rejected_rewards, chosen_logps, rejected_logps, reduction
    )
