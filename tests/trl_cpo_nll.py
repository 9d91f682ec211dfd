"""TRL's full CPO training loss, NLL term included, run on a lakelab ``SequenceLogits``.

``trl_cpo_full`` calls TRL 1.16's ``CPOTrainer.compute_loss``
(trl/experimental/cpo/cpo_trainer.py:919-938) unchanged, as an unbound method. It runs
``get_batch_loss_metrics`` (lines 865-917), which runs ``concatenated_forward`` (lines
792-863) and ``cpo_loss`` (lines 678-749) and returns
``losses.mean() + cpo_alpha * nll_loss`` (line 890). ``nll_loss`` is TRL's cross-entropy over
the chosen half of the concatenated batch (lines 826-846). The per-sequence log-probs come
from TRL's ``get_batch_logps`` (lines 751-790): summed, or averaged for "ipo" and "simpo"
(line 850). ``tests/test_cpo_nll_trl.py`` compares that loss, and its gradients with respect
to the logits, with lakelab's preference objective plus ``cpo_alpha`` times
``sft_token_mean``. Nothing of TRL's arithmetic is re-implemented here. What is stood in, and
why:

- The config is a real ``CPOConfig``, built from the arguments here and otherwise left at its
  defaults. Its own ``__post_init__`` (trl/experimental/cpo/cpo_config.py:175-181) therefore
  turns ``loss_type="alphapo"`` into "simpo" with ``cpo_alpha = 0``, whatever ``cpo_alpha``
  was passed. It is built with ``use_cpu=True, bf16=False, report_to="none"`` so that
  ``TrainingArguments`` accepts it on a machine without a GPU; none of these is read by the
  code under test.
- The trainer (``self``) is a ``types.SimpleNamespace``. Running the real ``__init__``
  (lines 139-425) would need a real model, a tokenizer and a dataset. The namespace carries
  only the attributes the methods read, copied from the config as ``__init__`` copies them:
  ``beta``, ``label_smoothing``, ``loss_type``, ``cpo_alpha`` and ``alpha`` (lines 353-356,
  371), and ``simpo_gamma`` only for "simpo" (lines 367-368). It also carries what
  ``__init__`` takes from the model and tokenizer: ``is_encoder_decoder = False`` (a causal
  LM, line 278), ``pad_token_id = 0`` (line 343), and ``aux_loss_enabled = False`` with
  ``aux_loss_coef = 0.0`` (lines 357-358, a model config without router logits). Further
  fields are ``_peft_has_been_casted_to_bf16 = False`` (line 191) and ``_stored_metrics``
  (line 373). TRL's own methods are bound to it: ``get_batch_loss_metrics``,
  ``concatenated_forward``, ``cpo_loss`` and ``store_metrics`` as methods; the static
  ``concatenated_inputs`` (lines 613-676) and ``get_batch_logps`` as they are.
- The model is a fake causal LM (``_LogitsLM``) that returns the batch's own logits for the
  concatenated [chosen; rejected] input that TRL's ``concatenated_inputs`` builds. It checks
  that each row's ids are the ones it was given, right-padded with ``pad_token_id`` to the
  longer of the two halves, and pads the logits of the shorter half with zeros. No label
  scores those padded positions, because TRL pads the labels with -100. A causal LM's logits
  at the real positions do not depend on padding to their right, so this is what a real
  model's forward would give.
- The batch has ``chosen_input_ids``, ``chosen_attention_mask`` and ``chosen_labels``, and
  the same three for the rejected rows, which is what TRL's ``tokenize_row`` and collator give
  a decoder-only model (lines 560-585). The labels are the ``SequenceLogits`` labels: -100 on
  prompt and padding, Hugging Face's shift applied by TRL itself (logits at t score label
  t + 1). The input ids are the labels with -100 replaced by ``pad_token_id``, and the
  attention masks are all ones. The fake model reads neither as anything but a check, so the
  ids at unscored positions do not matter.
- The accelerator is one CPU process: gathers return their input.

Line numbers are those of trl 1.16.0. Importing TRL's trainers takes some 6 s on the 2-core
machine, so TRL is imported inside ``trl_cpo_full``, and collecting a test that imports this
module does not import TRL.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from types import MethodType, SimpleNamespace

import torch

from lakelab.verify.forms import IGNORE_INDEX, SequenceLogits
from tests.trl_stand_ins import Accelerator

__all__ = ["PAD_TOKEN_ID", "trl_cpo_full"]

PAD_TOKEN_ID = 0  # the stand-in tokenizer's pad token (CPOTrainer.__init__, line 343)


class _LogitsLM:
    """A causal LM whose forward returns fixed logits for the concatenated [chosen; rejected]
    input ids that ``CPOTrainer.concatenated_inputs`` builds."""

    def __init__(self, batch: SequenceLogits, ids: tuple[torch.Tensor, torch.Tensor]) -> None:
        self.logits = (batch.chosen, batch.rejected)
        self.ids = ids
        self.training = True

    def __call__(self, input_ids, attention_mask=None, use_cache=None, **kwargs):
        from transformers.modeling_outputs import CausalLMOutputWithPast

        if kwargs:
            raise ValueError(f"unexpected model inputs: {sorted(kwargs)}")
        n = self.ids[0].shape[0]
        width = input_ids.shape[1]
        if input_ids.shape[0] != n + self.ids[1].shape[0]:
            raise ValueError("expected the chosen rows, then as many rejected rows")
        out = []
        for rows, ids, logits in zip(
            (input_ids[:n], input_ids[n:]), self.ids, self.logits, strict=True
        ):
            t = ids.shape[1]
            if not torch.equal(rows[:, :t], ids) or not bool((rows[:, t:] == PAD_TOKEN_ID).all()):
                raise ValueError("the concatenated input ids are not the batch's, right-padded")
            out.append(torch.nn.functional.pad(logits, (0, 0, 0, width - t)))
        return CausalLMOutputWithPast(logits=torch.cat(out))


def _halves(labels: torch.Tensor, prefix: str) -> dict[str, torch.Tensor]:
    """One half of a decoder-only CPO batch: ids, attention mask, labels (-100 not scored)."""
    ids = torch.where(labels == IGNORE_INDEX, PAD_TOKEN_ID, labels)
    return {
        f"{prefix}_input_ids": ids,
        f"{prefix}_attention_mask": torch.ones_like(labels),
        f"{prefix}_labels": labels,
    }


def trl_cpo_full(
    batch: SequenceLogits,
    *,
    loss_type: str = "sigmoid",
    beta: float = 0.1,
    label_smoothing: float = 0.0,
    simpo_gamma: float = 0.5,
    alpha: float = 0.0,
    cpo_alpha: float = 1.0,
) -> torch.Tensor:
    """The loss ``CPOTrainer.compute_loss`` (cpo_trainer.py:919-938) returns for ``batch``
    under ``CPOConfig(loss_type=..., beta=..., label_smoothing=..., simpo_gamma=...,
    alpha=..., cpo_alpha=...)``, other fields at their defaults. That is
    ``cpo_loss(...).mean() + cpo_alpha * nll_loss`` (line 890), where nll_loss is the
    cross-entropy of the chosen half (lines 826-846).

    ``batch``: logits (B, T, V) and labels (B, T) for the chosen and the rejected rows (T may
    differ between the two), ``ref_*`` and ``kl*`` unused. It is differentiable in
    ``batch.chosen`` and ``batch.rejected``, and keeps their dtype (float64 here). Note that
    ``loss_type="alphapo"`` ignores ``cpo_alpha`` (CPOConfig sets it to 0); AlphaPO with an
    NLL term is ``loss_type="simpo"`` with ``alpha != 0``.
    """
    if batch.rejected is None or batch.rejected_labels is None:
        raise ValueError("CPO needs the rejected logits and labels")
    with warnings.catch_warnings():  # "You are importing from 'trl.experimental'..."
        warnings.filterwarnings("ignore", message=".*trl.experimental.*")
        warnings.filterwarnings("ignore", category=FutureWarning)  # TrainingArguments renames
        from trl.experimental.cpo import CPOConfig, CPOTrainer

        args = CPOConfig(
            output_dir="unused",  # nothing is written: no Trainer is built
            use_cpu=True,
            bf16=False,
            report_to="none",
            loss_type=loss_type,
            beta=beta,
            label_smoothing=label_smoothing,
            simpo_gamma=simpo_gamma,
            alpha=alpha,
            cpo_alpha=cpo_alpha,
        )

    trainer = SimpleNamespace(
        accelerator=Accelerator(),
        is_encoder_decoder=False,
        pad_token_id=PAD_TOKEN_ID,
        beta=args.beta,
        label_smoothing=args.label_smoothing,
        loss_type=args.loss_type,
        cpo_alpha=args.cpo_alpha,
        aux_loss_enabled=False,
        aux_loss_coef=0.0,
        alpha=args.alpha,
        _peft_has_been_casted_to_bf16=False,
        _stored_metrics=defaultdict(lambda: defaultdict(list)),  # as line 373
    )
    if args.loss_type == "simpo":  # as CPOTrainer.__init__, lines 367-368
        trainer.simpo_gamma = args.simpo_gamma
    for name in ("get_batch_loss_metrics", "concatenated_forward", "cpo_loss", "store_metrics"):
        setattr(trainer, name, MethodType(getattr(CPOTrainer, name), trainer))
    trainer.concatenated_inputs = CPOTrainer.concatenated_inputs  # staticmethods
    trainer.get_batch_logps = CPOTrainer.get_batch_logps

    inputs = {
        **_halves(batch.chosen_labels, "chosen"),
        **_halves(batch.rejected_labels, "rejected"),
    }
    model = _LogitsLM(batch, (inputs["chosen_input_ids"], inputs["rejected_input_ids"]))
    return CPOTrainer.compute_loss(trainer, model, inputs)


def trl_cpo_sigmoid_nll(batch, beta=0.1, label_smoothing=0.0, cpo_alpha=1.0):
    """``CPOTrainer(loss_type='sigmoid')`` with its NLL term, in verify's logits form."""
    return trl_cpo_full(batch, loss_type="sigmoid", beta=beta, label_smoothing=label_smoothing,
                        cpo_alpha=cpo_alpha)  # fmt: skip


def trl_cpo_hinge_nll(batch, beta=0.1, cpo_alpha=1.0):
    """``CPOTrainer(loss_type='hinge')`` with its NLL term, in verify's logits form."""
    return trl_cpo_full(batch, loss_type="hinge", beta=beta, cpo_alpha=cpo_alpha)
