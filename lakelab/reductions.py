"""From per-token log-probs to the numbers the objectives consume.

Every objective in `lakelab.objectives` starts from per-token log-probs of the response,
`logp_t = log pi(a_t | s_t)` with a 0/1 mask `m_t` (1 on response tokens, 0 on prompt and
padding), and reduces them in one of three ways (``docs/objectives.md``):

    S(y) = sum_t m_t logp_t                 sum_logps    DPO
    A(y) = S(y) / sum_t m_t                 mean_logps   SFT, IPO, ORPO, ASFT, SimPO
    sum_t m_t (-logp_t) W_t / N             ift_weights  IFT (dynamic relation propagation)

Masked positions are removed with `torch.where`, not by multiplying with the mask, so garbage
in the padding (even inf or NaN) changes neither values nor gradients of real positions.

A sequence without a single response token raises `ValueError` in all three reductions. A(y)
would be 0/0 = NaN and silently poison the batch mean; S(y) would be a perfectly finite 0 that
hides the same data bug (an empty response) behind a plausible-looking number. In both tracks a
response always has at least one token (the LM track's end token, the MLP track's first action),
so an empty row is always a bug upstream and we say so at the edge.

The IFT token weights live here too because they are a reduction: `ift_weights` says how much
each token's loss counts in its sequence's total (IFT eqs. 19-22, official `get_cumsum_weight`).
"""

from __future__ import annotations

import math

import torch

from lakelab.validate import Interval, check_choice

__all__ = ["IFT_WEIGHTINGS", "check_token_inputs", "ift_weights", "mean_logps", "sum_logps"]

IFT_WEIGHTINGS = ("loss", "none", "prefix")
DISCOUNT = Interval(0.0, 1.0)  # IFT's gamma, declared once (the registry shows it)


def check_token_inputs(token_logps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Validate per-token log-probs (B, T) and their 0/1 mask; return the mask as bool (B, T).

    Raises `ValueError` for a wrong rank, mismatched shapes, mask values other than 0/1, or a
    sequence with no response token; `TypeError` if either input is not a tensor.
    """
    if not isinstance(token_logps, torch.Tensor) or not token_logps.is_floating_point():
        raise TypeError(f"token_logps must be a floating-point torch.Tensor, got {token_logps!r}")
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be a torch.Tensor of 0/1 or bool, got {type(mask).__name__}")
    if token_logps.dim() != 2 or token_logps.shape[0] == 0 or token_logps.shape[1] == 0:
        raise ValueError(
            f"token_logps must have shape (B, T) with B, T >= 1, got {tuple(token_logps.shape)}"
        )
    if mask.shape != token_logps.shape:
        raise ValueError(
            f"mask and token_logps must have the same shape (B, T), "
            f"got {tuple(mask.shape)} and {tuple(token_logps.shape)}"
        )
    if mask.dtype != torch.bool:
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError("mask must contain only 0 and 1 (or be bool)")
        mask = mask == 1
    if not bool(mask.any(dim=-1).all()):  # one check; the rows are found only to report
        empty = (~mask.any(dim=-1)).nonzero().flatten().tolist()
        raise ValueError(
            f"every sequence needs at least one response token (mask row sum > 0); "
            f"empty rows: {empty}"
        )
    return mask


def sum_logps(token_logps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum log-prob of each response, S(y) = sum_t m_t logp_t (what DPO uses).

    | argument      | shape  | meaning                                   |
    |---------------|--------|-------------------------------------------|
    | token_logps   | (B, T) | log pi(a_t | s_t), any value where m_t = 0 |
    | mask          | (B, T) | 1/True on response tokens, 0/False else   |
    | returns       | (B,)   | S(y)                                      |
    """
    m = check_token_inputs(token_logps, mask)
    return torch.where(m, token_logps, 0.0).sum(dim=-1)  # (B,)


def mean_logps(token_logps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Length-normalised log-prob of each response, A(y) = S(y) / sum_t m_t.

    Shapes as in `sum_logps`; returns (B,). Used by SFT, IPO, ORPO, ASFT and SimPO.
    """
    m = check_token_inputs(token_logps, mask)
    n_tokens = m.sum(dim=-1, dtype=token_logps.dtype)  # (B,)
    return torch.where(m, token_logps, 0.0).sum(dim=-1) / n_tokens  # (B,)


def _reverse_discounted_cumsum(c: torch.Tensor, gamma: float) -> torch.Tensor:
    """W_i = sum_{j >= i} gamma^(j - i) c_j along the last axis, as one (T, T) matmul."""
    T = c.shape[-1]
    idx = torch.arange(T, device=c.device)
    lag = idx[None, :] - idx[:, None]  # (T, T): lag[i, j] = j - i
    # 0.0 ** 0 == 1, so gamma = 0 gives the identity (W = c) as the formula says.
    discount = torch.where(lag >= 0, gamma ** lag.clamp(min=0).to(c.dtype), 0.0)  # (T, T)
    return c @ discount.T  # (B, T)


def _normalise(w: torch.Tensor, m: torch.Tensor, n_tokens: torch.Tensor) -> torch.Tensor:
    """Zero masked weights and rescale each row to sum to N (average 1 over the response)."""
    w = torch.where(m, w, 0.0)
    return w * n_tokens / w.sum(dim=-1, keepdim=True)


def ift_weights(
    token_logps: torch.Tensor,
    mask: torch.Tensor,
    *,
    gamma: float = 0.95,
    weighting: str = "loss",
) -> torch.Tensor:
    """IFT per-token loss weights W (dynamic relation propagation, IFT eqs. 19-22).

    Token i enters the loss of every prefix that contains it (eq. 20), so earlier tokens weigh
    more. The official code (TsinghuaC3I/Intuitive-Fine-Tuning, `get_cumsum_weight`) softens
    the count with a discount gamma and, by default, with each later token's own loss:

        c_j = m_j (-logp_j) / N             weighting="loss"   (official default)
        c_j = m_j                           weighting="prefix" (eq. 20 counting)
        W_i = sum_{j >= i} gamma^(j - i) c_j
        W_i <- m_i W_i * N / sum_k m_k W_k  (weights average 1 over the response)

    With weighting="prefix" and gamma = 1, W_i is proportional to N - i (i counted from the first
    response token). weighting="none" returns the mask (all ones on the response): plain SFT.

    | argument     | shape  | meaning                                              |
    |--------------|--------|------------------------------------------------------|
    | token_logps  | (B, T) | log-probs of the *mixed* (temporal-residual) pass     |
    | mask         | (B, T) | 1/True on response tokens                            |
    | gamma        | float  | discount in [0, 1]                                   |
    | weighting    | str    | "loss", "prefix" or "none"                           |
    | returns      | (B, T) | W, 0 on masked positions; differentiable (not detached) |

    Traps:
    - gamma = 0 with weighting="loss" returns all ones (exactly SFT), as the official code
      does. This is a deliberate discontinuity: the formula with gamma -> 0 would give
      W_i -> -logp_i * N / S(y), i.e. weights proportional to each token's own loss.
      ("prefix" needs no special case: gamma = 0 gives ones by the formula.)
    - Lags j - i count positions, not response tokens; for a contiguous response (both tracks)
      that is the same thing.
    - Guard: with weighting="loss", a sequence whose c_j are all 0 (every response logp exactly
      0, i.e. a certain response) would be normalised by 0/0. For such a row, and for any row
      whose total sum_k W_k is below sqrt(finfo.tiny) (where the backward of the division could
      overflow), we fall back to the "prefix" weights with the same gamma. Those are the limit
      of the "loss" weights when all tokens have equal loss, and the row's loss value is 0
      either way. The fallback is selected with a double `where`, so value and gradient stay
      finite (no NaN).
    """
    m = check_token_inputs(token_logps, mask)
    check_choice("weighting", weighting, IFT_WEIGHTINGS)
    gamma = DISCOUNT.check("gamma", gamma)

    ones = m.to(token_logps.dtype)  # (B, T) 1 on the response
    if weighting == "none" or (weighting == "loss" and gamma == 0.0):
        return ones
    n_tokens = ones.sum(dim=-1, keepdim=True)  # (B, 1) N
    prefix = _normalise(_reverse_discounted_cumsum(ones, gamma), m, n_tokens)
    if weighting == "prefix":
        return prefix

    c = torch.where(m, -token_logps, 0.0) / n_tokens  # (B, T) c_j = m_j (-logp_j) / N
    w = torch.where(m, _reverse_discounted_cumsum(c, gamma), 0.0)  # (B, T)
    total = w.sum(dim=-1, keepdim=True)  # (B, 1)
    ok = total > math.sqrt(torch.finfo(token_logps.dtype).tiny)
    safe_total = torch.where(ok, total, 1.0)  # never divide by ~0, even in the unused branch
    return torch.where(ok, w * n_tokens / safe_total, prefix)  # (B, T)
