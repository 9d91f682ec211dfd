"""The batches every agreement check runs on, per form: random ones and adversarial ones.

Each is float64 and holds what breaks implementations: log-probs of exactly 0, tiny (-1e-9)
and huge (-1e3), margins of both signs far into saturation, the policy equal to the
reference; in the per-token forms also unequal lengths, prompts, padding and one-token
responses, the positions off the masks holding arbitrary values.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from lakelab.objective_spec import Objective
from lakelab.verify.forms import IGNORE_INDEX, VOCAB


def sequence_batches(objective: Objective) -> dict[str, list[torch.Tensor]]:
    """The inputs (float64, (B,) each) of every batch the checks use, as the reference takes
    them: chosen, then rejected and the reference's two where the objective needs them."""
    g = torch.Generator().manual_seed(0)
    summed = objective.reduction == "sum"
    low = -30.0 if summed else -3.0  # S(y) of a ~10-token response; A(y) a mean

    def uniform(n: int, lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)

    n_inputs = 1 + objective.needs_pairs + 2 * objective.needs_reference + 2 * objective.mismatched
    random = [uniform(8, low, -0.01) for _ in range(n_inputs)]
    longest = -3e4 if summed else -5.0  # S(y) of a long response far from the policy
    edge = torch.tensor([0.0, -1e-9, -1e-3, -1e3, longest, -0.5], dtype=torch.float64)
    extremes = [edge, edge.flip(0)] + [torch.full_like(edge, -2.0)] * (n_inputs - 2)
    spread = 4000.0 if summed else 100.0  # margins far into saturation, of both signs
    far = torch.tensor([-spread, spread, -spread / 2, spread / 2], dtype=torch.float64)
    base = torch.full_like(far, -spread - 1.0)
    saturated = [base + far.clamp(min=0), base + (-far).clamp(min=0)]
    saturated += [torch.full_like(far, -2.0)] * (n_inputs - 2)
    batches = {"random": random, "extremes": extremes[:n_inputs], "saturated": saturated[:n_inputs]}
    if objective.needs_reference:  # the policy equals the reference
        same = uniform(8, low, -0.01), uniform(8, low, -0.01)
        batches["policy_is_reference"] = [same[0], same[1], same[0].clone(), same[1].clone()]
        if objective.mismatched:
            batches["policy_is_reference"] += [same[0].clone(), same[0].clone()]
    if objective.unpaired:
        batches |= _unpaired(random, desirable=(0, 2), undesirable=(1, 3))
    return batches


def _unpaired(random: list, desirable: tuple[int, ...], undesirable: tuple[int, ...]) -> dict:
    """An unpaired objective's batches of one kind only and of unequal kinds: the random batch
    with its undesirable or its desirable examples left out (the inputs at those positions
    with no rows), and with 2 undesirable examples beside all its desirable ones."""

    def rows(keep: dict[int, int]) -> list:
        return [x if x is None or k not in keep else x[: keep[k]] for k, x in enumerate(random)]

    return {
        "desirable_only": rows(dict.fromkeys(undesirable, 0)),
        "undesirable_only": rows(dict.fromkeys(desirable, 0)),
        "unequal_kinds": rows(dict.fromkeys(undesirable, 2)),
    }


def token_batches(objective: Objective) -> dict[str, list[torch.Tensor | None]]:
    """Per-token batches (B, T) in ``SequenceLogps`` order (chosen, its mask, rejected, its
    mask, the reference's two; None where the objective needs none; a mismatched objective's
    pairs, their mask and the reference's after them): unequal lengths, prompts
    of up to 4 positions and padding, all holding arbitrary values off the masks."""
    g = torch.Generator().manual_seed(0)

    def uniform(shape: tuple[int, ...], lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(shape, generator=g, dtype=torch.float64)

    def masks(B: int, T: int) -> torch.Tensor:  # prompt, then 1..T - prompt response tokens
        prompt = torch.randint(0, 5, (B,), generator=g)
        length = 1 + (torch.rand(B, generator=g) * (T - prompt)).long().clamp(max=T - 1)
        t = torch.arange(T)
        return (t >= prompt[:, None]) & (t < (prompt + length).clamp(max=T)[:, None])

    def batch(B: int, T: int, on_mask: Callable[[tuple[int, ...]], torch.Tensor]) -> list:
        out: list[torch.Tensor | None] = []
        pairs = 1 + objective.needs_pairs
        for _ in range(pairs):
            m = masks(B, T)
            out += [torch.where(m, on_mask((B, T)), uniform((B, T), -20.0, 5.0)), m]
        out += [None, None] * (2 - pairs)
        if objective.needs_reference:
            out += [
                torch.where(out[1], on_mask((B, T)), 0.0),
                torch.where(out[3], on_mask((B, T)), 0.0),
            ]
        else:
            out += [None, None]
        if objective.mismatched:  # the mismatched pairs, then the reference's log-probs
            m = masks(B, T)
            out += [torch.where(m, on_mask((B, T)), uniform((B, T), -20.0, 5.0)), m]
            out.append(torch.where(m, on_mask((B, T)), 0.0))
        if objective.needs_sum_sq:  # log sum_v p(v)^2, between 2 logp and 0 on the masks
            out += [None] * (9 - len(out))
            for x, m in ((out[0], out[1]), (out[2], out[3])):
                share = uniform((B, T), 0.0, 1.0)
                out.append(
                    torch.where(m, share * 2 * x.clamp(min=-30.0), uniform((B, T), -9.0, 3.0))
                )
        return out

    batches = {"random": batch(6, 12, lambda shape: uniform(shape, -3.0, -0.01))}
    edge = torch.tensor([0.0, -1e-9, -1e-3, -1e3], dtype=torch.float64)
    batches["extremes"] = batch(8, 6, lambda shape: edge[torch.randint(0, 4, shape, generator=g)])
    saturated = batch(6, 12, lambda shape: uniform(shape, -1e-3, -1e-4))
    if objective.needs_pairs:  # rejected far less likely in half the rows, chosen in the other
        far = torch.full_like(saturated[0], -300.0)
        half = torch.arange(6)[:, None] < 3
        saturated[2] = torch.where(half & saturated[3], far, saturated[2])
        saturated[0] = torch.where(~half & saturated[1], far, saturated[0])
    batches["saturated"] = saturated
    if objective.needs_reference:  # the policy equals the reference
        same = batch(6, 12, lambda shape: uniform(shape, -3.0, -0.01))
        same[4] = torch.where(same[1], same[0], 0.0)
        same[5] = torch.where(same[3], same[2], 0.0)
        if objective.mismatched:
            same[8] = torch.where(same[7], same[6], 0.0)
        batches["policy_is_reference"] = same
    if objective.unpaired:
        batches |= _unpaired(batches["random"], desirable=(0, 1, 4), undesirable=(2, 3, 5))
    return batches


def logit_batches(objective: Objective) -> dict[str, list[torch.Tensor | None]]:
    """Logits (B, T, V) and labels (B, T) in ``SequenceLogits`` order (None where the
    objective needs none): prompts of 1 to 4 positions and padding labelled -100, responses
    of 1 or more tokens, arbitrary logits everywhere; the reference's logits score the
    policy's labels."""
    g = torch.Generator().manual_seed(0)
    B, T = 6, 12

    def labels() -> torch.Tensor:
        prompt = torch.randint(1, 5, (B,), generator=g)
        length = 1 + (torch.rand(B, generator=g) * (T - prompt)).long().clamp(max=T - 2)
        t = torch.arange(T)
        scored = (t >= prompt[:, None]) & (t < (prompt + length).clamp(max=T)[:, None])
        return torch.where(scored, torch.randint(0, VOCAB, (B, T), generator=g), IGNORE_INDEX)

    def logits(scale: float = 2.0) -> torch.Tensor:
        return scale * torch.randn(B, T, VOCAB, generator=g, dtype=torch.float64)

    def with_label_logit(z: torch.Tensor, label: torch.Tensor, value: torch.Tensor):
        """z with ``value`` (B, T) at the logit of each position's next label."""
        nxt = torch.cat([label[:, 1:], torch.full_like(label[:, :1], IGNORE_INDEX)], dim=1)
        at = torch.nn.functional.one_hot(nxt.clamp(min=0), VOCAB).bool()
        at &= (nxt != IGNORE_INDEX).unsqueeze(-1)
        return torch.where(at, value.unsqueeze(-1), z)

    def batch(make: Callable[[torch.Tensor], torch.Tensor]) -> list:
        out: list[torch.Tensor | None] = []
        pairs = 1 + objective.needs_pairs
        for _ in range(pairs):
            label = labels()
            out += [make(label), label]
        out += [None, None] * (2 - pairs)
        if objective.needs_reference:
            out += [logits(), logits()]
        else:
            out += [None, None]
        if objective.mismatched:  # the mismatched pairs' logits, labels, the reference's
            label = labels()
            out += [make(label), label, logits()]
        return out

    batches = {"random": batch(lambda label: logits())}
    # log-probs of exactly 0 (others at -1e4), about -1e-9 (+20 over zeros), about -1e3
    edge = torch.tensor([0.0, 20.0, -1e3, 3.0], dtype=torch.float64)

    def extreme(label: torch.Tensor) -> torch.Tensor:
        kind = torch.randint(0, 4, (B, T), generator=g)
        base = torch.where((kind == 0).unsqueeze(-1), -1e4, torch.zeros(B, T, VOCAB).double())
        return with_label_logit(base, label, edge[kind])

    batches["extremes"] = batch(extreme)
    confident = batch(lambda label: with_label_logit(logits(0.1), label, torch.full((B, T), 9.0)))
    if objective.needs_pairs:  # rejected far less likely in half the rows, chosen in the other
        half = (torch.arange(B) < B // 2)[:, None, None]
        far = torch.full((B, T), -300.0)
        confident[2] = torch.where(
            half, with_label_logit(confident[2], confident[3], far), confident[2]
        )
        confident[0] = torch.where(
            ~half, with_label_logit(confident[0], confident[1], far), confident[0]
        )
    batches["saturated"] = confident
    if objective.needs_reference:  # the policy equals the reference
        same = batch(lambda label: logits())
        same[4], same[5] = same[0].clone(), same[2].clone()
        if objective.mismatched:
            same[8] = same[6].clone()
        batches["policy_is_reference"] = same
    if objective.unpaired:
        batches |= _unpaired(batches["random"], desirable=(0, 1, 4), undesirable=(2, 3, 5))
    return batches


BATCHES = {"sequences": sequence_batches, "tokens": token_batches, "logits": logit_batches}
