"""TRL's own KTO loss code, run on a lakelab ``SequenceLogps``.

``trl_kto`` calls TRL 1.16's ``KTOTrainer._compute_loss`` (trl/trainer/kto_trainer.py:
1370-1563) unchanged, as an unbound method, so that ``tests/test_unpaired_trl.py`` can compare
its loss and gradients with lakelab's ``kto`` and ``apo_unpaired``. Nothing of TRL's
arithmetic is re-implemented here; what is stood in, and why:

- The trainer (``self``) is a ``types.SimpleNamespace`` carrying only the attributes the
  method reads, set as ``KTOTrainer.__init__`` sets them (lines 814, 831-836, 975-984), from
  the arguments here and otherwise from ``KTOConfig``'s defaults, and TRL's own
  ``_compute_kl_logps`` bound to it, which ``_compute_loss`` calls. Running the real
  ``__init__`` would need a real model, tokenizer and dataset.
- The model is a fake one (``_TokenLM``) that gives each token id one log-prob: every
  response token of the batch gets an id of its own, so looking up the label id returns the
  per-token log-prob the ``SequenceLogps`` holds for it. It answers the fused-LM-head call
  TRL makes (``model(..., labels=..., fused_lm_head=True)``, the ``FusedCausalLMOutput`` of
  trl/trainer/utils.py:1510) with those log-probs, zero where the label is -100, and zeros for
  entropy and mean logits, which feed only TRL's metrics. The same fake is called for the
  examples and for the KL batch (``_compute_kl_logps``, lines 1337-1368), as the one policy
  is. A second fake with the reference's per-token log-probs plays the reference model.
- The reference log-probs come precomputed (``precompute_ref_log_probs=True``):
  ``ref_logps`` and ``ref_KL_logps`` are summed over the masks by TRL's own
  ``compute_ref_log_probs`` (lines 1296-1335, what ``_precompute_ref_logps`` runs on each
  batch) on the reference fake, then put into the batch directly. TRL would store them in the
  dataset and its collator would rebuild them with ``torch.tensor(list)``, as float32; here
  they stay float64.
- The accelerator is one CPU process: gathers return their input, autocast does nothing.

The batch is built by TRL's ``DataCollatorForUnpairedPreference`` (lines 86-207): the
desirable rows, then the undesirable ones, labelled True and False, each response as long as
its mask. For ``loss_type="kto"`` the ``kl`` rows are the KL batch (``KL_*`` keys). TRL
makes one mismatched pair per example (M = B_D + B_U), so its collator builds them from each
example's ``KL_completion_ids``; lakelab allows any M >= 1, and ``_compute_loss`` only takes
the mean over them, so when M differs the KL rows are collated on their own (the collator
pads the ``KL_*`` tensors separately from the rest in any case). ``"apo_zero_unpaired"``
computes no KL term (``calculate_KL`` is False, line 814), so there is no KL batch.

Everything runs in float64; gradients flow from the returned loss to ``logps.chosen`` and
``logps.rejected`` (TRL computes the KL term without gradient). TRL is imported inside the
functions: importing this module imports no TRL, so test collection stays fast (importing
the trainer takes some 6-12 s on the 2-core machine).
"""

from __future__ import annotations

from collections import defaultdict
from types import MethodType, SimpleNamespace

import torch

from lakelab.registry import SequenceLogps
from tests.trl_stand_ins import Accelerator

__all__ = ["trl_kto", "trl_kto_with_metrics"]

PROMPT_ID = 1  # every prompt token; TRL masks prompts out of every log-prob
PROMPT_LENGTH = 2
PAD_ID = 0
FIRST_RESPONSE_ID = 2  # response token ids start here, one id per token of the whole batch
LOSS_TYPES = ("kto", "apo_zero_unpaired")  # KTOConfig.loss_type's choices


class _TokenLM:
    """A causal LM patched by TRL's fused LM head, whose log-prob of a next token depends
    only on the token's id: ``table[id]`` (differentiable). Called with ``labels`` and
    ``fused_lm_head=True`` it returns log-probs (B, T - 1) of the next-token labels, zero
    where the label is -100 (trl/trainer/utils.py:1510-1540)."""

    def __init__(self, table: torch.Tensor) -> None:
        self.table = table

    def __call__(self, *, labels, fused_lm_head=False, **inputs):
        from trl.trainer.utils import FusedCausalLMOutput

        if not fused_lm_head:
            raise ValueError("the TRL code under test asks for the fused LM head")
        target = labels[:, 1:]
        mask = target != -100
        log_probs = torch.where(mask, self.table[target.clamp(min=0)], 0.0)
        zeros = torch.zeros_like(log_probs).detach()
        return FusedCausalLMOutput(
            loss=-log_probs.sum() / mask.sum().clamp(min=1),
            log_probs=log_probs,
            entropy=zeros,
            mean_logits=zeros,
            is_top1=torch.zeros_like(mask),
            label_mask=mask,
        )


def _table(pieces: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """Log-prob by token id: unused ids (pad, prompt) at 0, then each piece's masked values in
    row-major order, the order ``_response_ids`` hands out the ids in."""
    values = [x.to(torch.float64)[m] for x, m in pieces]
    return torch.cat([torch.zeros(FIRST_RESPONSE_ID, dtype=torch.float64), *values])


def _response_ids(masks: list[torch.Tensor]) -> list[list[int]]:
    """One list of token ids per row of the masks, in order: a row's ids are its response
    tokens, as many as its mask holds, each id used once across all the masks."""
    rows, next_id = [], FIRST_RESPONSE_ID
    for mask in masks:
        for n in mask.sum(-1).tolist():
            rows.append(list(range(next_id, next_id + n)))
            next_id += n
    return rows


def trl_kto_with_metrics(
    logps: SequenceLogps,
    *,
    beta: float = 0.1,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
    loss_type: str = "kto",
) -> tuple[torch.Tensor, dict[str, list[float]]]:
    """``trl_kto``'s loss and the metrics TRL logged for the step (``self._metrics['train']``:
    ``kl``, ``rewards/chosen``, ``logps/chosen``, ...; a kind without examples is left out)."""
    from trl.trainer.kto_trainer import DataCollatorForUnpairedPreference, KTOTrainer

    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
    calculate_kl = loss_type not in ["apo_zero_unpaired"]  # as KTOTrainer.__init__, line 814
    masks = [logps.chosen_mask.bool(), logps.rejected_mask.bool()]
    n_desirable, n_undesirable = len(masks[0]), len(masks[1])
    if n_desirable + n_undesirable == 0:
        raise ValueError("a batch needs at least one example, desirable or undesirable")
    policy = [(logps.chosen, masks[0]), (logps.rejected, masks[1])]
    reference = [(logps.ref_chosen, masks[0]), (logps.ref_rejected, masks[1])]
    if calculate_kl:
        if logps.kl is None or logps.kl_mask is None or logps.ref_kl is None:
            raise ValueError("loss_type 'kto' needs the mismatched pairs: kl, kl_mask, ref_kl")
        masks.append(logps.kl_mask.bool())
        policy.append((logps.kl, masks[2]))
        reference.append((logps.ref_kl, masks[2]))

    ids = _response_ids(masks)
    prompt = [PROMPT_ID] * PROMPT_LENGTH
    examples = [
        {"prompt_ids": prompt, "completion_ids": completion, "label": row < n_desirable}
        for row, completion in enumerate(ids[: n_desirable + n_undesirable])
    ]
    kl_ids = ids[n_desirable + n_undesirable :]
    collate = DataCollatorForUnpairedPreference(pad_token_id=PAD_ID)
    if calculate_kl and len(kl_ids) == len(examples):  # TRL's own layout: one pair per example
        for example, kl_completion in zip(examples, kl_ids, strict=True):
            example["KL_completion_ids"] = kl_completion
        batch = collate(examples)
    else:
        batch = collate(examples)
        if calculate_kl:  # M != B_D + B_U: the KL rows collated on their own
            kl_batch = collate(
                [{"prompt_ids": prompt, "completion_ids": c, "label": False} for c in kl_ids]
            )
            for key in ("input_ids", "attention_mask", "completion_mask"):
                batch[f"KL_{key}"] = kl_batch[key]

    trainer = SimpleNamespace(
        model=SimpleNamespace(training=True, is_gradient_checkpointing=False),
        ref_model=_TokenLM(_table(reference)),
        accelerator=Accelerator(),
        args=SimpleNamespace(gradient_checkpointing_kwargs=None),
        aux_loss_enabled=False,
        beta=beta,
        precompute_ref_logps=True,
        loss_type=loss_type,
        desirable_weight=desirable_weight,
        undesirable_weight=undesirable_weight,
        calculate_KL=calculate_kl,
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        _total_train_tokens=0,
        _tp_size=1,
    )
    trainer._compute_kl_logps = MethodType(KTOTrainer._compute_kl_logps, trainer)  # TRL's own
    ref_logps, ref_kl_logps = KTOTrainer.compute_ref_log_probs(trainer, trainer.ref_model, batch)
    batch["ref_logps"] = ref_logps
    if calculate_kl:
        batch["ref_KL_logps"] = ref_kl_logps
    loss = KTOTrainer._compute_loss(trainer, _TokenLM(_table(policy)), batch, return_outputs=False)
    return loss, dict(trainer._metrics["train"])


def trl_kto(
    logps: SequenceLogps,
    *,
    beta: float = 0.1,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
    loss_type: str = "kto",
) -> torch.Tensor:
    """``KTOTrainer(loss_type=loss_type, beta=beta, desirable_weight=..., undesirable_weight=...,
    precompute_ref_log_probs=True)``'s loss on the batch ``logps`` describes:
    ``KTOTrainer._compute_loss``, trl/trainer/kto_trainer.py:1370-1563. Desirable rows are
    ``logps.chosen``, undesirable ones ``logps.rejected`` (either may have 0 rows), the
    mismatched pairs ``logps.kl`` (unused for ``"apo_zero_unpaired"``). The reference point
    is ``(KL_logps - ref_KL_logps).mean().detach()`` clamped at 0 (lines 1442-1444); the losses
    are at lines 1449-1482, weighted by ``desirable_weight`` and ``undesirable_weight`` for
    both loss types, and averaged over all examples by ``nanmean`` (line 1548)."""
    return trl_kto_with_metrics(
        logps,
        beta=beta,
        desirable_weight=desirable_weight,
        undesirable_weight=undesirable_weight,
        loss_type=loss_type,
    )[0]


def trl_kto_kto(logps, beta=0.1, desirable_weight=1.0, undesirable_weight=1.0):
    """``KTOTrainer(loss_type='kto')`` in verify's tokens form."""
    return trl_kto(logps, beta=beta, desirable_weight=desirable_weight,
                   undesirable_weight=undesirable_weight, loss_type="kto")  # fmt: skip


def trl_kto_apo_zero_unpaired(logps, beta=0.1, desirable_weight=1.0, undesirable_weight=1.0):
    """``KTOTrainer(loss_type='apo_zero_unpaired')`` in verify's tokens form."""
    return trl_kto(logps, beta=beta, desirable_weight=desirable_weight,
                   undesirable_weight=undesirable_weight,
                   loss_type="apo_zero_unpaired")  # fmt: skip
