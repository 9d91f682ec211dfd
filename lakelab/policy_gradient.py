"""On-policy RL objectives as pure tensor functions: advantages, and the losses of REINFORCE,
RLOO, GRPO and PPO on sampled responses.

A batch is B responses sampled from the policy that generated them (the *sampling* policy,
``old_logps``), with per-token log-probs under the current policy ``logps`` (B, T) and a 0/1
``mask`` on the response tokens. Sequence-level rewards r (B,) become advantages A (B,) by
the method's baseline; PPO works per token, with a value head and GAE:

    group_advantages           GRPO: A_i = (r_i - mean_group r) / (std_group r + 1e-4)
    leave_one_out_advantages   RLOO: A_i = r_i - mean_{j != i in its group} r_j
    gae                        PPO: A_t = sum_k (gamma lam)^k delta_{t+k}, delta the TD error

The losses (minimised; their gradient is the policy gradient's negative):

    reinforce_loss   -A S(y)                         (Williams 1992; S the summed log-prob)
    rloo_loss        -min(rho A, clip(rho) A), rho = exp(S - S_old)  per sequence (TRL's RLOO)
    grpo_loss        -min(rho_t A, clip(rho_t) A) + beta k3_t per token, aggregated
    ppo_loss         the same clipped surrogate per token with A_t, plus a clipped value loss

clip(rho) = clamp(rho, 1 - epsilon_low, 1 + epsilon_high). k3 = exp(q) - q - 1 with
q = log pi_ref - log pi, the KL estimator TRL's GRPO adds to its per-token loss. At the first
inner step of a batch the policy is the sampling policy, rho = 1, and the gradient of every
clipped surrogate is the REINFORCE gradient with the same advantages (tested). Metrics are
named as TRL logs them (``clip_ratio/...``, ``kl``).
"""

from __future__ import annotations

import torch

from lakelab.reductions import check_token_inputs
from lakelab.validate import Interval, check_choice

__all__ = [
    "AGGREGATIONS",
    "SCALES",
    "gae",
    "group_advantages",
    "grpo_loss",
    "leave_one_out_advantages",
    "ppo_loss",
    "reinforce_loss",
    "rloo_loss",
]

AGGREGATIONS = ("bnpo", "dapo", "dr_grpo", "grpo")
SCALES = ("batch", "group", "none")
CLIP = Interval(0.0, 1.0, high_open=True)  # epsilons: 1 - epsilon must stay above 0
NONNEGATIVE = Interval(0.0, None)
UNIT = Interval(0.0, 1.0)
STD_EPS = 1e-4  # TRL's: (r - mean) / (std + 1e-4)


# ----------------------------------------------------------------------------- advantages
def _groups(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """Rewards (B,) as (B / G, G): G consecutive responses to one prompt."""
    if (
        not isinstance(rewards, torch.Tensor)
        or rewards.dim() != 1
        or not rewards.is_floating_point()
    ):
        raise ValueError(f"rewards must be a float tensor of shape (B,), got {rewards!r}")
    if not isinstance(group_size, int) or isinstance(group_size, bool) or group_size < 2:
        raise ValueError(
            f"group_size must be an int >= 2 (a baseline needs others), got {group_size!r}"
        )
    if len(rewards) % group_size:
        raise ValueError(
            f"the batch of {len(rewards)} rewards is not a whole number of groups of {group_size}"
        )
    return rewards.view(-1, group_size)


def group_advantages(
    rewards: torch.Tensor, group_size: int, *, scale: str = "group"
) -> torch.Tensor:
    """GRPO's advantages (Shao et al. 2024, DeepSeekMath, sec. 4.1.2): each reward minus its
    group's mean, divided by the group's standard deviation (``scale="group"``), the batch's
    (``"batch"``) or not at all (``"none"``, Dr. GRPO's choice), std unbiased as in TRL.

        A_i = (r_i - mean_g r) / (std r + 1e-4)

    A group whose rewards are all equal gets zero advantages, whatever the scale.
    """
    grouped = _groups(rewards, group_size)
    check_choice("scale", scale, SCALES)
    centred = (grouped - grouped.mean(1, keepdim=True)).view(-1)
    if scale == "none":
        return centred
    std = grouped.std(1, keepdim=True).expand_as(grouped).reshape(-1) if scale == "group" else (
        rewards.std().expand_as(rewards)
    )  # fmt: skip
    return centred / (std + STD_EPS)


def leave_one_out_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """RLOO's advantages (Ahmadian et al. 2024, eq. 8; Kool et al. 2019): each reward minus
    the mean of the other rewards of its group, never its own.

        A_i = r_i - (sum_g r - r_i) / (G - 1)  =  G / (G - 1) (r_i - mean_g r)
    """
    grouped = _groups(rewards, group_size)
    others = (grouped.sum(1, keepdim=True) - grouped) / (group_size - 1)
    return (grouped - others).view(-1)


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    *,
    gamma: float = 1.0,
    lam: float = 0.95,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016, eq. 16) over each response's
    tokens: per-token rewards r_t and values V_t (B, T), the value after the last token 0.

        delta_t = r_t + gamma V_{t+1} - V_t;  A_t = sum_k (gamma lam)^k delta_{t+k}
        returns_t = A_t + V_t

    Returns (advantages, returns), (B, T), zero off the mask; no gradient flows (both are
    targets). Responses are left-aligned runs of the mask, as the loops make them.
    """
    if not isinstance(values, torch.Tensor) or values.dim() != 2 or values.shape[1] == 0:
        shape = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
        raise ValueError(f"values must have shape (B, T) with T >= 1, got {shape}")
    m = check_token_inputs(values, mask)
    _like("rewards", rewards, values)
    gamma, lam = UNIT.check("gamma", gamma), UNIT.check("lam", lam)
    r = torch.where(m, rewards.detach(), 0.0)
    v = torch.where(m, values.detach(), 0.0)
    advantages = torch.zeros_like(v)
    running = torch.zeros_like(v[:, 0])
    for t in range(v.shape[1] - 1, -1, -1):  # backwards: A_t = delta_t + gamma lam A_{t+1}
        after = v[:, t + 1] if t + 1 < v.shape[1] else torch.zeros_like(running)
        delta = r[:, t] + gamma * after - v[:, t]
        running = torch.where(m[:, t], delta + gamma * lam * running, 0.0)
        advantages[:, t] = running
    return advantages, torch.where(m, advantages + v, 0.0)


# ----------------------------------------------------------------------------- losses
def _summed(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    return torch.where(m, x, 0.0).sum(-1)


def _advantages(advantages: torch.Tensor, rows: int) -> torch.Tensor:
    if not isinstance(advantages, torch.Tensor) or advantages.shape != (rows,):
        shape = getattr(advantages, "shape", advantages)
        raise ValueError(f"advantages must have shape ({rows},), one per response, got {shape}")
    return advantages.detach()


def _like(name: str, x: torch.Tensor, logps: torch.Tensor) -> torch.Tensor:
    """``x`` if it is a tensor of ``logps``'s shape (B, T), else ValueError naming it."""
    if not isinstance(x, torch.Tensor) or x.shape != logps.shape:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must have the shape of logps {tuple(logps.shape)}, got {shape}")
    return x


def _epsilons(epsilon_low: float, epsilon_high: float | None) -> tuple[float, float]:
    low = CLIP.check("epsilon_low", epsilon_low)
    high = low if epsilon_high is None else CLIP.check("epsilon_high", epsilon_high)
    return low, high


def _clipped(ratio, advantages, low, high):
    """-min(rho A, clip(rho, 1 - low, 1 + high) A) and the clipping diagnostics' masks."""
    clipped = torch.clamp(ratio, 1 - low, 1 + high)
    loss = -torch.min(ratio * advantages, clipped * advantages)
    low_hit = (ratio < 1 - low) & (advantages < 0)
    high_hit = (ratio > 1 + high) & (advantages > 0)
    return loss, low_hit, high_hit


def reinforce_loss(
    logps: torch.Tensor, mask: torch.Tensor, advantages: torch.Tensor
) -> tuple[torch.Tensor, dict]:
    """REINFORCE with a baseline (Williams 1992): minus each response's advantage times its
    summed log-prob, averaged over the batch.

        L = -mean_i A_i S(y_i)

    Its gradient is the batch's policy-gradient estimate, -mean_i A_i grad log pi(y_i).
    """
    m = check_token_inputs(logps, mask)
    a = _advantages(advantages, len(logps))
    loss = -(a * _summed(logps, m)).mean()
    return loss, {"advantage": a.mean().item()}


def rloo_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    mask: torch.Tensor,
    advantages: torch.Tensor,
    *,
    epsilon_low: float = 0.2,
    epsilon_high: float | None = None,
) -> tuple[torch.Tensor, dict]:
    """RLOO as TRL's trainer optimises it: the clipped surrogate on each response's
    sequence-level ratio, averaged over the batch (advantages from
    ``leave_one_out_advantages``; TRL's KL penalty enters the rewards, not this loss).

        rho_i = exp(S(y_i) - S_old(y_i));  L = mean_i -min(rho_i A_i, clip(rho_i) A_i)
    """
    m = check_token_inputs(logps, mask)
    a = _advantages(advantages, len(logps))
    low, high = _epsilons(epsilon_low, epsilon_high)
    old_logps = _like("old_logps", old_logps, logps)
    ratio = torch.exp(_summed(logps, m) - _summed(old_logps.detach(), m))
    losses, low_hit, high_hit = _clipped(ratio, a, low, high)
    metrics = {"clip_ratio/low_mean": low_hit.double().mean().item(),
               "clip_ratio/high_mean": high_hit.double().mean().item(),
               "clip_ratio/region_mean": (low_hit | high_hit).double().mean().item()}  # fmt: skip
    return losses.mean(), metrics


def grpo_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    mask: torch.Tensor,
    advantages: torch.Tensor,
    ref_logps: torch.Tensor | None = None,
    *,
    epsilon_low: float = 0.2,
    epsilon_high: float | None = None,
    beta: float = 0.0,
    aggregation: str = "dapo",
    max_completion_length: int | None = None,
    use_bias_correction_kl: bool = False,
) -> tuple[torch.Tensor, dict]:
    """GRPO (Shao et al. 2024, eq. 3), with the aggregations in use: the clipped surrogate on
    each token's ratio, plus beta times the k3 estimate of KL(pi || pi_ref).

        rho_t = exp(logp_t - logp_old_t);  q_t = logp_ref_t - logp_t
        l_t = -min(rho_t A, clip(rho_t) A) + beta (exp(q_t) - q_t - 1)
        "grpo":    mean_i (sum_t m l_t / |y_i|)            (the paper's per-sequence mean)
        "dapo":    sum_{i,t} m l_t / sum_{i,t} m           (a token-level mean: DAPO, TRL's default)
        "bnpo":    the same as dapo on one batch           (TRL normalises by the local batch)
        "dr_grpo": sum_{i,t} m l_t / (B max_completion_length)   (Dr. GRPO, a constant)

    ``epsilon_high`` (DAPO's clip-higher) defaults to ``epsilon_low``. beta = 0 (TRL's
    default) needs no reference. ``use_bias_correction_kl`` multiplies each k3 by rho_t, the
    importance weight of a token sampled from the old policy (TRL's default; the paper's k3 is
    not weighted). Metrics: ``kl`` (the mean KL term), ``clip_ratio/*``.
    """
    m = check_token_inputs(logps, mask)
    a = _advantages(advantages, len(logps))[:, None]
    low, high = _epsilons(epsilon_low, epsilon_high)
    beta = NONNEGATIVE.check("beta", beta)
    check_choice("aggregation", aggregation, AGGREGATIONS)
    ratio = torch.exp(logps - _like("old_logps", old_logps, logps).detach())
    per_token, low_hit, high_hit = _clipped(ratio, a, low, high)
    metrics = {}
    if beta > 0:
        if ref_logps is None:
            raise ValueError(f"beta = {beta} needs ref_logps (the reference's per-token log-probs)")
        q = _like("ref_logps", ref_logps, logps).detach() - logps
        kl = torch.exp(q) - q - 1  # k3, >= 0
        if use_bias_correction_kl:  # the tokens came from the old policy: weigh by rho
            kl = kl * ratio
        per_token = per_token + beta * kl
        metrics["kl"] = (torch.where(m, kl, 0.0).sum() / m.sum()).item()
    tokens = m.sum()
    per_token = torch.where(m, per_token, 0.0)
    if aggregation == "grpo":
        loss = (per_token.sum(-1) / m.sum(-1)).mean()
    elif aggregation == "dr_grpo":
        if not isinstance(max_completion_length, int) or max_completion_length < 1:
            raise ValueError(
                f"aggregation 'dr_grpo' needs max_completion_length, a positive int, got "
                f"{max_completion_length!r}"
            )
        loss = per_token.sum() / (len(logps) * max_completion_length)
    else:  # dapo, bnpo: a token-level mean over the batch
        loss = per_token.sum() / tokens
    for name, hit in (("low", low_hit), ("high", high_hit), ("region", low_hit | high_hit)):
        metrics[f"clip_ratio/{name}_mean"] = (torch.where(m, hit, False).sum() / tokens).item()
    return loss, metrics


def ppo_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    mask: torch.Tensor,
    advantages: torch.Tensor,
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    *,
    epsilon: float = 0.2,
    value_clip: float = 0.2,
    vf_coef: float = 0.1,
) -> tuple[torch.Tensor, dict]:
    """PPO (Schulman et al. 2017, eq. 7 and eq. 9 without the entropy bonus): the clipped
    surrogate on per-token ratios with per-token advantages (``gae``), and the clipped
    squared error of the value head, both averaged over the batch's tokens.

        L_pi = -min(rho_t A_t, clip(rho_t) A_t)
        L_V = max((V_t - R_t)^2, (clip(V_t, V_old_t +- value_clip) - R_t)^2) / 2
        L = mean_t L_pi + vf_coef mean_t L_V

    Shapes: (B, T) each, ``returns`` R = A + V_old from ``gae``.
    """
    m = check_token_inputs(logps, mask)
    eps = CLIP.check("epsilon", epsilon)
    vclip = NONNEGATIVE.check("value_clip", value_clip)
    vf_coef = NONNEGATIVE.check("vf_coef", vf_coef)
    for name, x in (("old_logps", old_logps), ("advantages", advantages), ("values", values),
                    ("old_values", old_values), ("returns", returns)):  # fmt: skip
        _like(name, x, logps)
    ratio = torch.exp(logps - old_logps.detach())
    policy, low_hit, high_hit = _clipped(ratio, advantages.detach(), eps, eps)
    clipped_v = old_values.detach() + torch.clamp(values - old_values.detach(), -vclip, vclip)
    value = 0.5 * torch.max((values - returns.detach()) ** 2, (clipped_v - returns.detach()) ** 2)
    tokens = m.sum()
    policy_loss = torch.where(m, policy, 0.0).sum() / tokens
    value_loss = torch.where(m, value, 0.0).sum() / tokens
    metrics = {
        "policy_loss": policy_loss.item(),
        "value_loss": value_loss.item(),
        "clip_ratio/region_mean": (torch.where(m, low_hit | high_hit, False).sum() / tokens).item(),
    }
    return policy_loss + vf_coef * value_loss, metrics
