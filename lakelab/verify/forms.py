"""The three forms a function under test can take, and how lakelab's reference reads each.

    sequences  fn(chosen, rejected, ref_chosen, ref_rejected, **hp)  per-sequence S(y) or A(y)
    tokens     fn(logps: SequenceLogps, **hp)                        per-token (B, T) + masks
    logits     fn(batch: SequenceLogits, **hp)                       logits (B, T, V) + labels

A batch is the list of positional inputs of its form (``SEQUENCES``: what
``lakelab.registry.sequence_inputs`` returns; ``TOKENS``: the fields of a SequenceLogps in
order; ``LOGITS``: the fields of a SequenceLogits in order, None where the objective needs
none). Each form converts per-token log-probs into its own inputs (``from_tokens``), which is
how the closed-form and optimum checks state one batch for all three.

The logits form follows Hugging Face's causal-LM convention: ``labels`` has the shape of the
input ids, the logits at position t score the label at t + 1, and label -100 marks a position
that is not scored (prompt, padding). The reference's logits use the policy's labels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from lakelab.objective_spec import Objective
from lakelab.registry import SequenceLogps, compute_objective, loss_on, sequence_inputs

IGNORE_INDEX = -100
VOCAB = 6  # the logits form's vocabulary size


@dataclass(frozen=True)
class SequenceLogits:
    """A batch as a causal LM sees it: logits (B, T, V) and labels (B, T), -100 = not scored.

    ``chosen[b, t]`` scores ``chosen_labels[b, t + 1]``; the reference's logits score the same
    labels as the policy's. ``kl``, ``kl_labels``, ``ref_kl``: a mismatched objective's pairs
    (KTO), as ``SequenceLogps.kl``.
    """

    chosen: torch.Tensor
    chosen_labels: torch.Tensor
    rejected: torch.Tensor | None = None
    rejected_labels: torch.Tensor | None = None
    ref_chosen: torch.Tensor | None = None
    ref_rejected: torch.Tensor | None = None
    kl: torch.Tensor | None = None
    kl_labels: torch.Tensor | None = None
    ref_kl: torch.Tensor | None = None

    def to_logps(self) -> SequenceLogps:
        """The per-token log-probs of the labels and their masks (``label_logps``), and each
        position's log sum_v p(v)^2 where there are pairs."""
        return SequenceLogps(*_as_tokens(
            [self.chosen, self.chosen_labels, self.rejected, self.rejected_labels,
             self.ref_chosen, self.ref_rejected, self.kl, self.kl_labels, self.ref_kl]
        ))  # fmt: skip


def label_logps(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log-probs of the labels (B, T - 1) and the mask of scored positions:
    logp_t = log_softmax(logits[:, t])[labels[:, t + 1]], scored where that label is not -100."""
    targets = labels[:, 1:]
    mask = targets != IGNORE_INDEX
    logps = logits[:, :-1].log_softmax(-1)
    return logps.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1), mask


def _logits_for(logps: torch.Tensor, mask: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Logits (B, T + 1, V) whose log-softmax at ``tokens`` is ``logps`` where ``mask`` holds:
    z[token] = logp, every other z = log((1 - exp(logp)) / (V - 1)), so sum exp(z) = 1."""
    B, T = logps.shape
    spread = torch.log(-torch.expm1(logps.clamp(max=-1e-300))) - torch.log(
        torch.tensor(VOCAB - 1.0, dtype=logps.dtype)
    )
    z = spread.unsqueeze(-1).expand(B, T, VOCAB)
    z = z.scatter(-1, tokens.unsqueeze(-1), logps.unsqueeze(-1))
    z = torch.where(mask.unsqueeze(-1), z, torch.zeros_like(z))  # unscored: any logits
    return torch.cat([z, torch.zeros(B, 1, VOCAB, dtype=z.dtype)], dim=1)


class Sequences:
    """Per-sequence log-probs (B,) in TRL's order, reduced as the objective's registry entry
    says (S for DPO, A for the others)."""

    name = "sequences"
    unpack = None  # positional
    rejected_at = 1  # the rejected (undesirable) input's position
    tolerance = (1e-6, 1e-8)  # loss (rel, abs); gradients 10 times looser

    @staticmethod
    def reference(like: str) -> Callable:
        return lambda *inputs, **knobs: loss_on(like, list(inputs), knobs)[0]

    @staticmethod
    def from_tokens(objective: Objective, logps: SequenceLogps) -> list:
        return sequence_inputs(objective.name, logps)  # what the registry hands a loss

    @staticmethod
    def to_tokens(inputs: list) -> SequenceLogps | None:
        return None  # reduced already: the per-token view is gone

    @staticmethod
    def off_mask(inputs: list) -> list | None:
        return None  # no prompt or padding positions


class Tokens:
    """Per-token log-probs (B, T) with the masks of the responses: a SequenceLogps."""

    name = "tokens"
    tolerance = (1e-6, 1e-8)
    rejected_at = 2

    @staticmethod
    def unpack(inputs: list) -> SequenceLogps:
        return SequenceLogps(*inputs)

    @staticmethod
    def reference(like: str) -> Callable:
        return lambda *inputs, **knobs: compute_objective(like, SequenceLogps(*inputs), knobs)[0]

    @staticmethod
    def from_tokens(objective: Objective, logps: SequenceLogps) -> list:
        out = [
            logps.chosen,
            logps.chosen_mask,
            logps.rejected,
            logps.rejected_mask,
            logps.ref_chosen,
            logps.ref_rejected,
        ]
        if objective.mismatched:
            out += [logps.kl, logps.kl_mask, logps.ref_kl]
        if objective.needs_sum_sq:
            out += [None] * (9 - len(out)) + [logps.chosen_log_sum_sq, logps.rejected_log_sum_sq]
        return out

    @staticmethod
    def to_tokens(inputs: list) -> SequenceLogps:
        return SequenceLogps(*inputs)

    @staticmethod
    def off_mask(inputs: list) -> list:
        """1e3 at every position no mask selects (prompt, padding), of every float input."""
        masks = {0: 1, 2: 3, 4: 1, 5: 3, 6: 7, 8: 7, 9: 1, 10: 3}  # input -> its mask
        return [
            torch.where(inputs[masks[k]], x, torch.full_like(x, 1e3))
            if k in masks and x is not None
            else x
            for k, x in enumerate(inputs)
        ]


class Logits:
    """Logits (B, T, V) and labels (B, T) with -100 where no token is scored: a
    SequenceLogits (Hugging Face's shift: position t scores label t + 1)."""

    name = "logits"
    # a float32 log_softmax of logits of order 10 is off by ~1e-6 in each log-prob
    tolerance = (1e-5, 1e-6)
    rejected_at = 2

    @staticmethod
    def unpack(inputs: list) -> SequenceLogits:
        return SequenceLogits(*inputs)

    @staticmethod
    def reference(like: str) -> Callable:
        tokens = Tokens.reference(like)
        return lambda *inputs, **knobs: tokens(*_as_tokens(inputs), **knobs)

    @staticmethod
    def from_tokens(objective: Objective, logps: SequenceLogps) -> list:
        out: list[torch.Tensor | None] = []
        g = torch.Generator().manual_seed(7)
        labels = {}
        for key in ("chosen", "rejected"):
            lp, mask = getattr(logps, key), getattr(logps, f"{key}_mask")
            if lp is None:
                out += [None, None]
                continue
            tokens = torch.randint(0, VOCAB, lp.shape, generator=g)
            label = torch.where(mask, tokens, IGNORE_INDEX)
            labels[key] = (mask, tokens)
            out += [_logits_for(lp, mask, tokens), _prepend_ignored(label)]
        for key in ("chosen", "rejected"):
            ref = getattr(logps, f"ref_{key}")
            out.append(None if ref is None else _logits_for(ref, *labels[key]))
        if objective.mismatched:
            tokens = torch.randint(0, VOCAB, logps.kl.shape, generator=g)
            label = _prepend_ignored(torch.where(logps.kl_mask, tokens, IGNORE_INDEX))
            out += [_logits_for(logps.kl, logps.kl_mask, tokens), label,
                    _logits_for(logps.ref_kl, logps.kl_mask, tokens)]  # fmt: skip
        return out

    @staticmethod
    def to_tokens(inputs: list) -> SequenceLogps:
        return SequenceLogps(*_as_tokens(inputs))

    @staticmethod
    def off_mask(inputs: list) -> list:
        """Other logits (1e3 times a ramp) at every position whose next label is -100."""
        out = list(inputs)
        for k, labels in ((0, 1), (2, 3), (4, 1), (5, 3), (6, 7), (8, 7)):
            if k >= len(out) or out[k] is None:
                continue
            scores = torch.cat(
                [inputs[labels][:, 1:] != IGNORE_INDEX, torch.zeros_like(inputs[labels][:, :1])],
                dim=1,
            ).bool()
            other = 1e3 * torch.linspace(-1, 1, VOCAB, dtype=out[k].dtype).expand_as(out[k])
            out[k] = torch.where(scores.unsqueeze(-1), out[k], other)
        return out


def _prepend_ignored(labels: torch.Tensor) -> torch.Tensor:
    """Labels (B, T) of the response tokens -> (B, T + 1): position 0 is never scored."""
    return torch.cat([torch.full_like(labels[:, :1], IGNORE_INDEX), labels], dim=1)


def _as_tokens(inputs: list | tuple) -> list:
    """A logits batch as the tokens form's inputs (per-token log-probs and masks)."""
    chosen, chosen_mask = label_logps(inputs[0], inputs[1])
    out = [chosen, chosen_mask, None, None, None, None]
    if inputs[2] is not None:
        out[2], out[3] = label_logps(inputs[2], inputs[3])
    if inputs[4] is not None:
        out[4] = label_logps(inputs[4], inputs[1])[0]
        out[5] = label_logps(inputs[5], inputs[3])[0]
    if len(inputs) > 6 and inputs[6] is not None:  # a mismatched objective's pairs
        kl, kl_mask = label_logps(inputs[6], inputs[7])
        out += [kl, kl_mask, label_logps(inputs[8], inputs[7])[0]]
    else:
        out += [None, None, None]
    if inputs[2] is not None:  # log sum_v p(v)^2 at each scored position (WPO's weights)
        out += [_log_sum_sq(inputs[0]), _log_sum_sq(inputs[2])]
    return out


def _log_sum_sq(logits: torch.Tensor) -> torch.Tensor:
    """log sum_v p(v)^2 of the distribution at each position that scores a label (B, T - 1)."""
    return torch.logsumexp(2 * logits[:, :-1].log_softmax(-1), -1)


FORMS = {form.name: form for form in (Sequences, Tokens, Logits)}
