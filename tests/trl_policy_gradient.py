"""TRL's own GRPO and RLOO losses, run on per-token log-probs, for
``tests/test_policy_gradient_trl.py`` to hold ``lakelab.policy_gradient`` against.

``trl_grpo`` calls TRL 1.16's ``GRPOTrainer._compute_loss``
(trl/trainer/grpo_trainer.py:3020-3290) and ``trl_rloo`` calls ``RLOOTrainer._compute_loss``
(trl/trainer/rloo_trainer.py:1794-1861), both unchanged and unbound, with a
``types.SimpleNamespace`` as ``self``. Nothing of TRL's arithmetic is re-implemented here.
What is stood in, and why:

- The config is a real ``GRPOConfig`` / ``RLOOConfig``, built from the arguments here and
  otherwise at its defaults, with ``use_cpu=True, bf16=False, report_to="none"`` so that
  ``TrainingArguments`` accepts it on a machine without a GPU (none of the three is read by
  the code under test). Its ``__post_init__`` resolves ``steps_per_generation``
  (grpo_config.py:1098-1099): left at ``None`` it becomes ``gradient_accumulation_steps``,
  1 by default. One field departs from the defaults, ``num_iterations=2``; see below.
- The trainer (``self``) carries only the attributes ``_compute_loss`` reads, copied from the
  config as ``__init__`` copies them: for GRPO ``max_completion_length``, ``use_vllm``,
  ``vllm_importance_sampling_correction``, ``loss_type`` (grpo_trainer.py:782, 811, 815,
  819), ``importance_sampling_level``, ``off_policy_mask_threshold``,
  ``top_entropy_quantile``, ``entropy_coef``, ``use_adaptive_entropy`` and
  ``_entropy_bonus_enabled`` (lines 834-850), ``epsilon_low`` and ``epsilon_high``
  (``epsilon_high`` defaulting to ``epsilon``, lines 945-946), ``beta`` (line 983) and
  ``_metrics`` (line 1080); for RLOO ``epsilon_low``, ``epsilon_high`` (rloo_trainer.py:
  611-612) and ``_metrics`` (line 725). From the model: ``router_aux_loss_coef = 0.0`` and
  ``aux_loss_enabled = False`` (grpo_trainer.py:826-832, rloo_trainer.py:618-624: a model
  config without router logits). ``model.training`` is True (train mode).
- One process, no gradient accumulation: the accelerator is one CPU process (gathers and
  reductions return their input), and ``current_gradient_accumulation_steps = 1``, as
  ``Trainer``'s training loop sets it to the number of micro-batches of the accumulation
  window, ``gradient_accumulation_steps`` = 1 (transformers/trainer.py:1878-1885).
- ``steps_per_generation = 1`` (the default, see above), so the generation batch is this one
  batch. The dapo normaliser (grpo_trainer.py:3170-3172) is then
  ``num_items_in_batch / num_processes * current_gradient_accumulation_steps /
  steps_per_generation = num_items_in_batch``, and ``num_items_in_batch``, the gathered sum of
  the generation batch's loss mask (grpo_trainer.py:2497-2498), is this batch's number of
  response tokens: dapo is a token-level mean over the batch, as bnpo is.
- ``num_iterations = 2``: TRL puts ``old_per_token_logps`` in the batch only when
  ``gradient_accumulation_steps % (steps_per_generation * num_iterations) != 0`` (or with vLLM,
  grpo_trainer.py:2642-2657); otherwise ``_compute_loss`` takes the current log-probs,
  detached, as the old ones (lines 3065-3066) and every ratio is 1. With GA = 1 and
  ``steps_per_generation`` = 1 that needs ``num_iterations`` > 1: the batch is then optimised
  twice, and on the second pass the old log-probs differ from the current ones, as the test
  batches have them. ``_compute_loss`` itself does not read ``num_iterations``.
- ``self._get_per_token_logps_and_entropies`` (grpo_trainer.py:1419-1508; the same in RLOO)
  returns the given ``logps`` (differentiable, so gradients flow to it), zero entropies (only
  TRL's ``entropy`` metric reads them) and no aux loss. The batch (``prompt_ids``,
  ``prompt_mask``, ``completion_ids``, ``completion_mask``) is shaped as
  ``_generate_and_score_completions`` gives it: prompts left-padded, completions
  right-padded with ``completion_mask`` an int64 0/1 tensor (grpo_trainer.py:2440-2464).
- RLOO's batch carries the sequence-level ``old_logps``, which ``RLOOTrainer`` sums from the
  old per-token log-probs at generation (rloo_trainer.py:1610,
  ``(old_per_token_logps * completion_mask).sum(1)``); ``trl_rloo`` takes per-token
  ``old_logps`` (B, T), as lakelab's ``rloo_loss`` does, and forms that sum the same way.

GRPO with ``beta != 0``: ``GRPOConfig.use_bias_correction_kl`` defaults to True
(grpo_config.py:972-981), and TRL then multiplies the per-token KL by the ratio ``coef_1``
(grpo_trainer.py:3104-3105), in the loss and in the logged ``kl``. ``trl_grpo`` keeps that
default and takes ``use_bias_correction_kl=False`` to turn it off.

The metrics returned are the last value TRL appended to each ``self._metrics["train"][name]``
in this call (``log`` would average them over the logging steps): ``clip_ratio/low_mean``,
``clip_ratio/high_mean``, ``clip_ratio/region_mean`` (GRPO: token means of float32 0/1 masks,
grpo_trainer.py:3273-3279; RLOO: sequence means, rloo_trainer.py:1850-1860), ``kl`` (GRPO with
``beta != 0``, line 3268), ``entropy``, ``clip_ratio/low_min`` and ``clip_ratio/high_max``.

Line numbers are those of trl 1.16.0. TRL is imported inside the functions (its trainers take
some 6 s to import on the 2-core machine, and the first ``TrainingArguments`` some 3 s more),
so importing this module imports no TRL.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from types import MethodType, SimpleNamespace

import torch

from tests.trl_stand_ins import Accelerator

__all__ = ["PROMPT_LENGTH", "trl_grpo", "trl_rloo"]

PROMPT_LENGTH = 2  # prompt tokens per row; only their shape is read
PAD_TOKEN_ID = 0


class _OneProcess(Accelerator):
    """The one CPU process, with the all-reduce GRPO's and RLOO's metrics use: the identity."""

    @staticmethod
    def reduce(tensor: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
        return tensor


def _config(name: str, **fields):
    """A real ``GRPOConfig`` / ``RLOOConfig``: ``fields``, the rest at the defaults."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)  # TrainingArguments renames
        import trl

        return getattr(trl, name)(
            output_dir="unused",  # nothing is written: no Trainer is built
            use_cpu=True,
            bf16=False,
            report_to="none",
            num_iterations=2,  # so that the batch carries old log-probs (module docstring)
            **fields,
        )


def _check(logps, old_logps, mask, advantages, ref_logps=None) -> torch.Tensor:
    if logps.dim() != 2 or mask.shape != logps.shape or mask.dtype != torch.bool:
        raise ValueError("logps (B, T) float and mask (B, T) bool are needed")
    for name, x in (("old_logps", old_logps), ("ref_logps", ref_logps)):
        if x is not None and x.shape != logps.shape:
            raise ValueError(f"{name} must have the shape of logps {tuple(logps.shape)}")
    if advantages.shape != (logps.shape[0],):
        raise ValueError("advantages must have shape (B,)")
    return mask.long()  # TRL's completion_mask: int64 0/1 (grpo_trainer.py:2453-2464)


def _batch(completion_mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Prompt and completion ids and masks as ``_generate_and_score_completions`` pads them."""
    b = completion_mask.shape[0]
    return {
        "prompt_ids": torch.ones(b, PROMPT_LENGTH, dtype=torch.long),
        "prompt_mask": torch.ones(b, PROMPT_LENGTH, dtype=torch.long),
        "completion_ids": torch.where(completion_mask.bool(), 2, PAD_TOKEN_ID),
        "completion_mask": completion_mask,
    }


def _logps_method(logps: torch.Tensor, completion_mask: torch.Tensor):
    """``self._get_per_token_logps_and_entropies``: the given per-token log-probs (B, T)."""

    def _get_per_token_logps_and_entropies(
        self, model, input_ids, attention_mask, logits_to_keep, batch_size=None,
        compute_entropy=False, compute_aux_loss=False, **multimodal,
    ):  # fmt: skip
        if logits_to_keep != logps.shape[1] or input_ids.shape != (
            logps.shape[0], PROMPT_LENGTH + logps.shape[1]
        ):  # fmt: skip
            raise ValueError("the model inputs are not the batch's prompt + completion")
        if not torch.equal(attention_mask[:, PROMPT_LENGTH:], completion_mask):
            raise ValueError("the attention mask is not the batch's")
        if compute_aux_loss or any(v is not None for v in multimodal.values()):
            raise ValueError("no aux loss and no multimodal inputs here")
        entropies = torch.zeros_like(logps).detach() if compute_entropy else None
        return logps, entropies, None

    return _get_per_token_logps_and_entropies


def _trainer(args, **attributes) -> SimpleNamespace:
    return SimpleNamespace(
        args=args,
        model=SimpleNamespace(training=True),
        accelerator=_OneProcess(),
        current_gradient_accumulation_steps=args.gradient_accumulation_steps,  # 1
        epsilon_low=args.epsilon,
        epsilon_high=args.epsilon_high if args.epsilon_high is not None else args.epsilon,
        router_aux_loss_coef=0.0,
        aux_loss_enabled=False,
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        **attributes,
    )


def _metrics(trainer) -> dict[str, float]:
    return {name: values[-1] for name, values in trainer._metrics["train"].items()}


def trl_grpo(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    mask: torch.Tensor,
    advantages: torch.Tensor,
    ref_logps: torch.Tensor | None = None,
    *,
    loss_type: str = "dapo",
    epsilon: float = 0.2,
    epsilon_high: float | None = None,
    beta: float = 0.0,
    max_completion_length: int | None = None,
    use_bias_correction_kl: bool = True,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss ``GRPOTrainer._compute_loss`` (grpo_trainer.py:3020-3290) returns under
    ``GRPOConfig(loss_type=..., epsilon=..., epsilon_high=..., beta=...,
    max_completion_length=..., use_bias_correction_kl=...)``, other fields at their defaults
    (``max_completion_length=None`` keeps the default, 512), and the metrics it logs.

    ``logps``, ``old_logps``, ``ref_logps``: per-token log-probs (B, T), float64, of the
    current, the sampling and the reference policy; ``mask`` (B, T) bool on the response
    tokens; ``advantages`` (B,). The loss is differentiable in ``logps``.
    """
    completion_mask = _check(logps, old_logps, mask, advantages, ref_logps)
    fields = {"loss_type": loss_type, "epsilon": epsilon, "epsilon_high": epsilon_high,
              "beta": beta, "use_bias_correction_kl": use_bias_correction_kl}  # fmt: skip
    if max_completion_length is not None:
        fields["max_completion_length"] = max_completion_length
    args = _config("GRPOConfig", **fields)
    if args.steps_per_generation != 1 or args.gradient_accumulation_steps != 1:
        raise AssertionError("the harness assumes one generation step and no accumulation")
    from trl.trainer.grpo_trainer import GRPOTrainer

    trainer = _trainer(
        args,
        max_completion_length=args.max_completion_length,
        use_vllm=args.use_vllm,
        vllm_importance_sampling_correction=args.vllm_importance_sampling_correction,
        loss_type=args.loss_type,
        importance_sampling_level=args.importance_sampling_level,
        off_policy_mask_threshold=args.off_policy_mask_threshold,
        top_entropy_quantile=args.top_entropy_quantile,
        entropy_coef=args.entropy_coef,
        use_adaptive_entropy=args.use_adaptive_entropy,
        _entropy_bonus_enabled=args.entropy_coef != 0.0 or args.use_adaptive_entropy,
        beta=args.beta,
    )
    trainer._get_per_token_logps_and_entropies = MethodType(
        _logps_method(logps, completion_mask), trainer
    )
    inputs = _batch(completion_mask)
    inputs["advantages"] = advantages.detach()
    inputs["old_per_token_logps"] = old_logps.detach()
    # grpo_trainer.py:2497-2498: one process, no tool mask
    inputs["num_items_in_batch"] = trainer.accelerator.gather(completion_mask.sum()).sum()
    if args.beta != 0.0:
        if ref_logps is None:
            raise ValueError("beta != 0 needs ref_logps")
        inputs["ref_per_token_logps"] = ref_logps.detach()
    loss = GRPOTrainer._compute_loss(trainer, SimpleNamespace(training=True), inputs)
    return loss, _metrics(trainer)


def trl_rloo(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    mask: torch.Tensor,
    advantages: torch.Tensor,
    *,
    epsilon: float = 0.2,
    epsilon_high: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss ``RLOOTrainer._compute_loss`` (rloo_trainer.py:1794-1861) returns under
    ``RLOOConfig(epsilon=..., epsilon_high=...)``, other fields at their defaults, and the
    metrics it logs. Arguments as ``trl_grpo``'s; ``old_logps`` per token (B, T), summed over
    the response as TRL sums them at generation (rloo_trainer.py:1610)."""
    completion_mask = _check(logps, old_logps, mask, advantages)
    args = _config("RLOOConfig", epsilon=epsilon, epsilon_high=epsilon_high)
    from trl.trainer.rloo_trainer import RLOOTrainer

    trainer = _trainer(args)
    trainer._get_per_token_logps_and_entropies = MethodType(
        _logps_method(logps, completion_mask), trainer
    )
    inputs = _batch(completion_mask)
    inputs["advantages"] = advantages.detach()
    inputs["old_logps"] = (old_logps.detach() * completion_mask).sum(1)  # rloo_trainer.py:1610
    loss = RLOOTrainer._compute_loss(trainer, SimpleNamespace(training=True), inputs)
    return loss, _metrics(trainer)
