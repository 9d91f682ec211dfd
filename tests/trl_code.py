"""TRL's own loss code, called in ``lakelab.verify``'s "sequences" signature.

Each function below runs the TRL 1.16 trainer method that holds a loss formula, unchanged:
the method is called unbound, with a ``types.SimpleNamespace`` standing in for the trainer
(``self``) that carries only the attributes the method reads, set as the trainer's
``__init__`` sets them from its config (the config's defaults, except the hyper-parameters
under test). Where the method runs a model, a fake one (``_FusedLM``) returns the per-token
log-probs that make TRL's own reductions give back the per-sequence values ``verify``
feeds; the batches come from TRL's own collators. Nothing of TRL's arithmetic is
re-implemented here: where this module supplies a value that TRL would compute from a real
model (ORPO's NLL term, CPO's zero NLL), the function's docstring says so.

``tests/test_verify_trl.py`` names, for each TRL spelling, the lakelab objective and
hyper-parameters it means and the function here that runs it, and puts each through
``verify``.

Line numbers are those of trl 1.16.0 (``TRL_VERSION`` is the installed one). This module
imports trl, and with it transformers, accelerate and datasets (some 6 s on the 2-core
machine): a caller runs ``pytest.importorskip("trl")`` before importing it.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from types import MethodType, SimpleNamespace
from typing import Any

import torch
import trl
from trl.trainer.dpo_trainer import DataCollatorForPreference, DPOTrainer
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling, SFTTrainer
from trl.trainer.utils import FusedCausalLMOutput

from tests.trl_stand_ins import Accelerator

with warnings.catch_warnings():  # "You are importing from 'trl.experimental'..."
    warnings.filterwarnings("ignore", message=".*trl.experimental.*")
    from trl.experimental.cpo import CPOTrainer
    from trl.experimental.orpo import ORPOTrainer

__all__ = [
    "TRL_VERSION",
    "trl_cpo_simpo",
    "trl_dpo_hinge",
    "trl_dpo_ipo",
    "trl_dpo_robust",
    "trl_dpo_sigmoid",
    "trl_dpo_sigmoid_label_smoothing",
    "trl_orpo",
    "trl_sft",
    "trl_sft_equal_lengths",
]

TRL_VERSION = trl.__version__
PROMPT_LENGTH = 2  # prompt tokens per row; TRL masks them out of every log-prob below


def response_lengths(batch: int, offset: int) -> list[int]:
    """Unequal response lengths (1 to 3 tokens) by row, as a real batch has them."""
    return [1 + (row + offset) % 3 for row in range(batch)]


class _FusedLM:
    """A causal LM patched by TRL's ``add_fused_lm_head`` (trl/trainer/utils.py:1548-1700):
    called with ``labels`` and ``fused_lm_head=True`` it returns a ``FusedCausalLMOutput``
    whose ``log_probs`` (B, T - 1) are the log-probs of the next-token labels, zero where the
    label is -100 (utils.py:1634-1660). Here every response token of row r has log-prob
    ``per_token[r]`` (differentiable); entropy, mean logits and top-1 hits, which only feed
    TRL's metrics, are zeros."""

    def __init__(self, per_token: torch.Tensor, sum_sq: torch.Tensor | None = None) -> None:
        self.per_token = per_token  # (B,) one value per row, or (B, T) one per response token
        self.sum_sq = sum_sq  # (B, T): log sum_v p(v)^2 at each response token, for WPO
        self.training = True

    def __call__(self, *, labels, fused_lm_head=False, use_cache=None, **inputs):
        if not fused_lm_head:
            raise ValueError("the TRL code under test asks for the fused LM head")
        mask = labels[:, 1:] != -100
        if self.per_token.dim() == 1:
            log_probs = torch.where(mask, self.per_token[:, None], 0.0)
        else:  # the k-th response token of row r gets per_token[r, k]
            k = (mask.cumsum(-1) - 1).clamp(min=0, max=self.per_token.shape[1] - 1)
            log_probs = torch.where(mask, self.per_token.gather(1, k), 0.0)
        zeros = torch.zeros_like(log_probs).detach()
        extra = {}
        if self.sum_sq is not None:  # TRL's fused head: without gradient (utils.py:1525-1526)
            extra["log_sum_sq_probs"] = torch.where(mask, self.sum_sq.gather(1, k), 0.0).detach()
        return FusedCausalLMOutput(
            **extra,
            loss=-log_probs.sum() / mask.sum().clamp(min=1),
            log_probs=log_probs,
            entropy=zeros,
            mean_logits=zeros,
            is_top1=torch.zeros_like(mask),
            label_mask=mask,
        )


# -- DPOTrainer: trl/trainer/dpo_trainer.py --------------------------------------------------


def _dpo_self(
    loss_type: str,
    beta: float,
    label_smoothing: float,
    discopop_tau: float = 0.05,
    f_divergence_type: str = "reverse_kl",
    f_alpha_divergence_coef: float = 1.0,
) -> SimpleNamespace:
    """What ``DPOTrainer._compute_loss`` reads of ``self``, as ``DPOTrainer.__init__`` sets it
    (dpo_trainer.py:801-818, 965-974) from ``DPOConfig`` defaults, except ``beta``,
    ``loss_type``, ``label_smoothing`` and ``precompute_ref_log_probs=True`` (the reference's
    summed log-probs then come in the batch: dpo_trainer.py:1319-1320)."""
    return SimpleNamespace(
        model=SimpleNamespace(training=True),
        accelerator=Accelerator(),
        aux_loss_enabled=False,
        ld_alpha=None,
        precompute_ref_logps=True,
        f_divergence_type=f_divergence_type,
        f_alpha_divergence_coef=f_alpha_divergence_coef,
        loss_types=[loss_type],
        loss_weights=[1.0],
        beta=beta,
        label_smoothing=label_smoothing,
        use_weighting=False,
        args=SimpleNamespace(discopop_tau=discopop_tau),
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        _total_train_tokens=0,
        _tp_size=1,
    )


def _dpo(
    loss_type: str,
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    *,
    beta: float,
    label_smoothing: float = 0.0,
    discopop_tau: float = 0.05,
    inputs_are_means: bool = False,
    **divergence: Any,
) -> torch.Tensor:
    """``DPOTrainer._compute_loss`` (dpo_trainer.py:1285-1612) on a batch from TRL's
    ``DataCollatorForPreference`` (dpo_trainer.py:86-207) whose responses have the summed
    log-probs S = ``chosen`` ... (or, with ``inputs_are_means``, the mean log-probs A, so S = A
    times the response's length): TRL sums the fake model's per-token log-probs over the
    completion itself (dpo_trainer.py:1303-1304), and gets the reference's S precomputed in the
    batch, as its ``compute_ref_log_probs`` (dpo_trainer.py:1243-1283) would have summed them."""
    n = chosen.shape[0]
    chosen_lengths, rejected_lengths = response_lengths(n, 0), response_lengths(n, 1)
    examples = [
        {
            "prompt_ids": [1] * PROMPT_LENGTH,
            "chosen_ids": [2] * chosen_lengths[row],
            "rejected_ids": [3] * rejected_lengths[row],
        }
        for row in range(n)
    ]
    batch = DataCollatorForPreference(pad_token_id=0)(examples)
    lengths = torch.tensor(chosen_lengths + rejected_lengths, dtype=chosen.dtype)
    values = torch.cat([chosen, rejected])  # TRL's batch is [chosen, rejected]
    if inputs_are_means:  # every token at A: the sum over the response is A * length
        per_token = values
        ref_chosen = ref_chosen * lengths[:n]
        ref_rejected = ref_rejected * lengths[n:]
    else:  # the sum S spread evenly over the response's tokens
        per_token = values / lengths
    batch["ref_chosen_logps"], batch["ref_rejected_logps"] = ref_chosen, ref_rejected
    trainer = _dpo_self(loss_type, beta, label_smoothing, discopop_tau, **divergence)
    return DPOTrainer._compute_loss(trainer, _FusedLM(per_token), batch, return_outputs=False)


def trl_dpo_sigmoid(chosen, rejected, ref_chosen, ref_rejected, beta=0.1):
    """``DPOTrainer(loss_type='sigmoid')``: ``DPOTrainer._compute_loss``,
    trl/trainer/dpo_trainer.py:1285-1612, the branch at lines 1387-1388,
    ``-F.logsigmoid(self.beta * delta_score)``, averaged at line 1528. Inputs S(y). TRL's
    sigmoid loss reads no ``label_smoothing`` (TRL 1.16 has no conservative DPO), so this
    function takes none: ``verify`` checks it at lakelab's default 0."""
    return _dpo("sigmoid", chosen, rejected, ref_chosen, ref_rejected, beta=beta)


def trl_dpo_sigmoid_label_smoothing(
    chosen, rejected, ref_chosen, ref_rejected, beta=0.1, label_smoothing=0.0
):
    """``DPOTrainer(loss_type='sigmoid', label_smoothing=eps)``: the same code as
    ``trl_dpo_sigmoid`` (dpo_trainer.py:1387-1388) with ``DPOConfig.label_smoothing`` set to
    ``eps`` (read into ``self.label_smoothing`` at line 817). The sigmoid branch ignores it:
    in TRL 1.16 label smoothing belongs to 'robust', 'exo_pair' and 'aot' only
    (dpo_config.py:103-108), whereas lakelab's dpo with variant 'sigmoid' and eps > 0 is
    conservative DPO, -(1 - eps) logsigmoid(d) - eps logsigmoid(-d)."""
    return _dpo(
        "sigmoid",
        chosen,
        rejected,
        ref_chosen,
        ref_rejected,
        beta=beta,
        label_smoothing=label_smoothing,
    )


def trl_dpo_hinge(chosen, rejected, ref_chosen, ref_rejected, beta=0.1):
    """``DPOTrainer(loss_type='hinge')``: ``DPOTrainer._compute_loss``,
    trl/trainer/dpo_trainer.py:1285-1612, the branch at lines 1390-1391,
    ``torch.relu(1 - self.beta * delta_score)``. Inputs S(y); no label smoothing (lakelab's
    hinge requires eps = 0)."""
    return _dpo("hinge", chosen, rejected, ref_chosen, ref_rejected, beta=beta)


def trl_dpo_robust(chosen, rejected, ref_chosen, ref_rejected, beta=0.1, label_smoothing=0.0):
    """``DPOTrainer(loss_type='robust', label_smoothing=eps)``: ``DPOTrainer._compute_loss``,
    trl/trainer/dpo_trainer.py:1285-1612, the branch at lines 1428-1431,
    ``(-(1 - eps) logsigmoid(beta d) + eps logsigmoid(-beta d)) / (1 - 2 eps)``. Inputs S(y)."""
    return _dpo(
        "robust",
        chosen,
        rejected,
        ref_chosen,
        ref_rejected,
        beta=beta,
        label_smoothing=label_smoothing,
    )


def trl_dpo_ipo(chosen, rejected, ref_chosen, ref_rejected, beta=0.1):
    """``DPOTrainer(loss_type='ipo')``: ``DPOTrainer._compute_loss``,
    trl/trainer/dpo_trainer.py:1285-1612, the branch at lines 1393-1404. TRL's IPO gets the
    *summed* log-probs like every DPO loss type (lines 1303-1304; the reference's summed too,
    line 1270) and divides each log-ratio by its response's token count
    (``completion_mask.sum(dim=1)``, lines 1400-1402) before ``(ipo_delta - 1/(2 beta))**2``:
    IPO on mean log-probs A(y), as lakelab's ipo. ``verify`` feeds A(y); this function lays A
    on every response token (of 1 to 3 tokens) so that TRL's own sum and division run."""
    return _dpo("ipo", chosen, rejected, ref_chosen, ref_rejected, beta=beta, inputs_are_means=True)


def trl_dpo_forward_kl(chosen, rejected, ref_chosen, ref_rejected, beta=0.1):
    """``DPOTrainer(loss_type='sigmoid', f_divergence_type='forward_kl')``: the scores at
    dpo_trainer.py:1355-1358, ``1 - exp(-logratio)``, then the sigmoid branch. Inputs S(y)."""
    return _dpo(
        "sigmoid", chosen, rejected, ref_chosen, ref_rejected, beta=beta,
        f_divergence_type="forward_kl",
    )  # fmt: skip


def trl_dpo_js_divergence(chosen, rejected, ref_chosen, ref_rejected, beta=0.1):
    """``DPOTrainer(loss_type='sigmoid', f_divergence_type='js_divergence')``: the scores at
    dpo_trainer.py:1359-1362, ``log 2 + logsigmoid(logratio)``. Inputs S(y)."""
    return _dpo(
        "sigmoid", chosen, rejected, ref_chosen, ref_rejected, beta=beta,
        f_divergence_type="js_divergence",
    )  # fmt: skip


def trl_dpo_alpha_divergence(
    chosen, rejected, ref_chosen, ref_rejected, beta=0.1, f_alpha_divergence_coef=0.5
):
    """``DPOTrainer(loss_type='sigmoid', f_divergence_type='alpha_divergence',
    f_alpha_divergence_coef=a)``: the scores at dpo_trainer.py:1363-1378,
    ``(exp((a - 1) logratio) - 1) / (a - 1)`` after a clamp at 80 whose table has entries for
    float16, bfloat16 and float32 only. Inputs S(y)."""
    return _dpo(
        "sigmoid", chosen, rejected, ref_chosen, ref_rejected, beta=beta,
        f_divergence_type="alpha_divergence", f_alpha_divergence_coef=f_alpha_divergence_coef,
    )  # fmt: skip


def trl_dpo_aot(chosen, rejected, ref_chosen, ref_rejected, beta=0.1, label_smoothing=0.0):
    """``DPOTrainer(loss_type='aot')``: the branch at dpo_trainer.py:1447-1456, the sorted
    policy and reference margins of the batch. Inputs S(y)."""
    return _dpo(
        "aot", chosen, rejected, ref_chosen, ref_rejected, beta=beta,
        label_smoothing=label_smoothing,
    )  # fmt: skip


def trl_dpo_aot_unpaired(chosen, rejected, ref_chosen, ref_rejected, beta=0.1, label_smoothing=0.0):
    """``DPOTrainer(loss_type='aot_unpaired')``: the branch at dpo_trainer.py:1458-1465, the
    sorted chosen and rejected log-ratios of the batch. Inputs S(y)."""
    return _dpo(
        "aot_unpaired", chosen, rejected, ref_chosen, ref_rejected, beta=beta,
        label_smoothing=label_smoothing,
    )  # fmt: skip


def trl_dpo_exo_pair(chosen, rejected, ref_chosen, ref_rejected, beta=0.1, label_smoothing=1e-3):
    """``DPOTrainer(loss_type='exo_pair', label_smoothing=eps)``: the branch at
    dpo_trainer.py:1406-1417 (EXO-pref, eq. 16 of Ji et al.). Inputs S(y)."""
    return _dpo(
        "exo_pair", chosen, rejected, ref_chosen, ref_rejected, beta=beta,
        label_smoothing=label_smoothing,
    )  # fmt: skip


def _with_divergence(loss_type: str, divergence: str, **fixed):
    """``DPOTrainer(loss_type=loss_type, f_divergence_type=divergence)``: the loss branch on
    the f-DPO scores of dpo_trainer.py:1353-1381 (the alpha divergence, float32 only in TRL, is
    left out)."""

    def trl(chosen, rejected, ref_chosen, ref_rejected, beta=0.1, **hp):
        return _dpo(loss_type, chosen, rejected, ref_chosen, ref_rejected, beta=beta,
                    f_divergence_type=divergence, **fixed, **hp)  # fmt: skip

    return trl


def trl_dpo_exo_forward_kl(chosen, rejected, ref_chosen, ref_rejected, beta=0.1,
                           label_smoothing=1e-3):  # fmt: skip
    """``DPOTrainer(loss_type='exo_pair', f_divergence_type='forward_kl')``."""
    return _with_divergence("exo_pair", "forward_kl")(
        chosen, rejected, ref_chosen, ref_rejected, beta=beta, label_smoothing=label_smoothing
    )


def trl_dpo_exo_js_divergence(chosen, rejected, ref_chosen, ref_rejected, beta=0.1,
                              label_smoothing=1e-3):  # fmt: skip
    """``DPOTrainer(loss_type='exo_pair', f_divergence_type='js_divergence')``."""
    return _with_divergence("exo_pair", "js_divergence")(
        chosen, rejected, ref_chosen, ref_rejected, beta=beta, label_smoothing=label_smoothing
    )


def trl_dpo_nca_pair(chosen, rejected, ref_chosen, ref_rejected, beta=0.1):
    """``DPOTrainer(loss_type='nca_pair')``: the branch at dpo_trainer.py:1419-1426. Inputs
    S(y)."""
    return _dpo("nca_pair", chosen, rejected, ref_chosen, ref_rejected, beta=beta)


def trl_dpo_bco_pair(chosen, rejected, ref_chosen, ref_rejected, beta=0.1):
    """``DPOTrainer(loss_type='bco_pair')``: the branch at dpo_trainer.py:1433-1436, without
    the paper's reward shift (lakelab's bco_pair at delta = 0). Inputs S(y)."""
    return _dpo("bco_pair", chosen, rejected, ref_chosen, ref_rejected, beta=beta)


def trl_dpo_sppo_hard(chosen, rejected, ref_chosen, ref_rejected, beta=0.1):
    """``DPOTrainer(loss_type='sppo_hard')``: the branch at dpo_trainer.py:1438-1445. Inputs
    S(y)."""
    return _dpo("sppo_hard", chosen, rejected, ref_chosen, ref_rejected, beta=beta)


def trl_dpo_apo_zero(chosen, rejected, ref_chosen, ref_rejected, beta=0.1):
    """``DPOTrainer(loss_type='apo_zero')``: the branch at dpo_trainer.py:1467-1473. Inputs
    S(y)."""
    return _dpo("apo_zero", chosen, rejected, ref_chosen, ref_rejected, beta=beta)


def trl_dpo_apo_down(chosen, rejected, ref_chosen, ref_rejected, beta=0.1):
    """``DPOTrainer(loss_type='apo_down')``: the branch at dpo_trainer.py:1475-1481. Inputs
    S(y)."""
    return _dpo("apo_down", chosen, rejected, ref_chosen, ref_rejected, beta=beta)


def trl_dpo_discopop(chosen, rejected, ref_chosen, ref_rejected, beta=0.1, discopop_tau=0.05):
    """``DPOTrainer(loss_type='discopop')`` with ``DPOConfig.discopop_tau``: the branch at
    dpo_trainer.py:1483-1493 (it reads ``self.args.discopop_tau``). Inputs S(y)."""
    return _dpo(
        "discopop", chosen, rejected, ref_chosen, ref_rejected, beta=beta,
        discopop_tau=discopop_tau,
    )  # fmt: skip


def trl_dpo_discopop_forward_kl(chosen, rejected, ref_chosen, ref_rejected, beta=0.1,
                                discopop_tau=0.05):  # fmt: skip
    """``DPOTrainer(loss_type='discopop', f_divergence_type='forward_kl')``."""
    return _with_divergence("discopop", "forward_kl")(
        chosen, rejected, ref_chosen, ref_rejected, beta=beta, discopop_tau=discopop_tau
    )


def trl_dpo_discopop_js_divergence(chosen, rejected, ref_chosen, ref_rejected, beta=0.1,
                                   discopop_tau=0.05):  # fmt: skip
    """``DPOTrainer(loss_type='discopop', f_divergence_type='js_divergence')``."""
    return _with_divergence("discopop", "js_divergence")(
        chosen, rejected, ref_chosen, ref_rejected, beta=beta, discopop_tau=discopop_tau
    )


def trl_dpo_sft(logps):
    """``DPOTrainer(loss_type='sft')``: the branch at dpo_trainer.py:1495-1502, the NLL of the
    chosen responses' tokens averaged over all of the batch's chosen tokens. verify's tokens
    form: each chosen response token gets its own token id and log-prob (``_packed``), the
    rejected responses one token each (the loss does not read them)."""
    chosen = _packed(logps.chosen, logps.chosen_mask.bool())
    n, width = chosen.shape
    lengths = logps.chosen_mask.sum(-1).tolist()
    examples = [
        {"prompt_ids": [1] * PROMPT_LENGTH, "chosen_ids": [2] * int(lengths[row]),
         "rejected_ids": [3]}
        for row in range(n)
    ]  # fmt: skip
    batch = DataCollatorForPreference(pad_token_id=0)(examples)
    batch["ref_chosen_logps"] = torch.zeros(n, dtype=chosen.dtype)
    batch["ref_rejected_logps"] = torch.zeros(n, dtype=chosen.dtype)
    per_token = torch.cat([chosen, torch.zeros(n, width, dtype=chosen.dtype)])
    trainer = _dpo_self("sft", 0.1, 0.0)
    return DPOTrainer._compute_loss(trainer, _FusedLM(per_token), batch, return_outputs=False)


def trl_dpo_sigmoid_norm(chosen, rejected, ref_chosen, ref_rejected, beta=0.1):
    """``DPOTrainer(loss_type='sigmoid_norm')``: the branch at dpo_trainer.py:1504-1509, which
    divides the summed log-ratios by the response lengths: DPO on mean log-probs A(y), which
    ``verify`` feeds (laid on every response token, as for ``trl_dpo_ipo``)."""
    return _dpo(
        "sigmoid_norm", chosen, rejected, ref_chosen, ref_rejected, beta=beta,
        inputs_are_means=True,
    )  # fmt: skip


def _packed(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Each row's masked values, in order, left-aligned (B, longest response)."""
    width = int(m.sum(-1).max())
    out = torch.zeros(x.shape[0], width, dtype=x.dtype)
    for r in range(x.shape[0]):
        values = x[r][m[r]]
        out[r, : len(values)] = values
    return out


def _dpo_tokens(logps, trainer: SimpleNamespace, sum_sq: bool = False) -> torch.Tensor:
    """``DPOTrainer._compute_loss`` with ``trainer`` on the batch a ``SequenceLogps``
    describes: TRL's collator makes each response as long as its mask, and fake policy and
    reference models return, at the k-th response token of a row, that row's k-th masked
    log-prob (TRL computes the reference's itself: ``precompute_ref_log_probs=False``)."""
    masks = [logps.chosen_mask.bool(), logps.rejected_mask.bool()]
    n = logps.chosen.shape[0]

    def both(a, b):
        pa, pb = _packed(a, masks[0]), _packed(b, masks[1])
        width = max(pa.shape[1], pb.shape[1])
        pad = [torch.nn.functional.pad(p, (0, width - p.shape[1])) for p in (pa, pb)]
        return torch.cat(pad)

    lengths = [m.sum(-1).tolist() for m in masks]
    examples = [
        {
            "prompt_ids": [1] * PROMPT_LENGTH,
            "chosen_ids": [2] * int(lengths[0][r]),
            "rejected_ids": [3] * int(lengths[1][r]),
        }
        for r in range(n)
    ]
    batch = DataCollatorForPreference(pad_token_id=0)(examples)
    trainer.precompute_ref_logps = False
    trainer.ref_model = _FusedLM(both(logps.ref_chosen, logps.ref_rejected))
    trainer.model = SimpleNamespace(training=True, is_gradient_checkpointing=False)
    trainer.args.gradient_checkpointing_kwargs = None
    squares = both(logps.chosen_log_sum_sq, logps.rejected_log_sum_sq) if sum_sq else None
    policy = _FusedLM(both(logps.chosen, logps.rejected), squares)
    return DPOTrainer._compute_loss(trainer, policy, batch, return_outputs=False)


def trl_dpo_wpo_sigmoid(logps, beta=0.1):
    """``DPOTrainer(loss_type='sigmoid', use_weighting=True)``, in verify's tokens form: the
    WPO weights at dpo_trainer.py:1518-1526 (eq. 2 of the WPO paper, from the fused head's
    ``log_sum_sq_probs``, which the fake model returns from ``logps.chosen_log_sum_sq`` and
    ``rejected_log_sum_sq``) times the sigmoid loss."""
    trainer = _dpo_self("sigmoid", beta, 0.0)
    trainer.use_weighting = True
    return _dpo_tokens(logps, trainer, sum_sq=True)


def trl_dpo_wpo_hinge(logps, beta=0.1):
    """``DPOTrainer(loss_type='hinge', use_weighting=True)``: as ``trl_dpo_wpo_sigmoid``."""
    trainer = _dpo_self("hinge", beta, 0.0)
    trainer.use_weighting = True
    return _dpo_tokens(logps, trainer, sum_sq=True)


def trl_dpo_sigmoid_sft(logps, beta=0.1, rpo_alpha=1.0):
    """``DPOTrainer(loss_type=['sigmoid', 'sft'], loss_weights=[1.0, rpo_alpha])``, in verify's
    tokens form: the loop over loss types at dpo_trainer.py:1385-1528 adds each branch's
    per-sequence loss times its weight, the sigmoid's (lines 1387-1388) and the sft's
    (lines 1495-1502, the NLL averaged over the batch's chosen tokens): RPO as TRL 1.16 has
    it, with no ``rpo_alpha`` of its own."""
    trainer = _dpo_self("sigmoid", beta, 0.0)
    trainer.loss_types, trainer.loss_weights = ["sigmoid", "sft"], [1.0, rpo_alpha]
    return _dpo_tokens(logps, trainer)


def trl_dpo_ld(logps, beta=0.1, ld_alpha=0.5):
    """``DPOTrainer(loss_type='sigmoid', ld_alpha=alpha)``, in ``verify``'s tokens form (a
    ``SequenceLogps``): ``DPOTrainer._compute_loss`` (dpo_trainer.py:1285-1612) weighs the
    tokens beyond the shorter response's length by ``ld_alpha`` (lines 1305-1315, and the
    reference's at 1340-1346). The batch comes from TRL's collator with each response as long
    as its mask; a fake model returns, at the k-th response token of a row, that row's k-th
    masked log-prob, for the policy and for the reference (computed here by TRL itself:
    ``precompute_ref_log_probs=False``, ``ref_model`` the fake reference)."""
    trainer = _dpo_self("sigmoid", beta, 0.0)
    trainer.ld_alpha = ld_alpha
    return _dpo_tokens(logps, trainer)


# -- ORPOTrainer: trl/experimental/orpo/orpo_trainer.py ---------------------------------------


def trl_orpo(chosen, rejected, lam=0.1):
    """``ORPOTrainer`` (``ORPOConfig(beta=lam)``; lakelab's lam is TRL's beta):
    ``ORPOTrainer.get_batch_loss_metrics``, trl/experimental/orpo/orpo_trainer.py:824-877,
    which calls ``odds_ratio_loss`` (lines 670-702: float32 upcast at 691-692, TRL's
    ``log1mexp`` at 87-91, ``losses = beta * logsigmoid(log_odds)``) and returns
    ``policy_nll_loss - losses.mean()`` (line 848). Inputs A(y): TRL's forward returns the mean
    log-probs (``average_log_prob=True``, line 805).

    The NLL term is supplied here: TRL's ``concatenated_forward`` (lines 745-822) computes it
    as the cross-entropy of the chosen half over prompt *and* response tokens, a token-level
    mean over the batch (lines 798-800); the sequences form has only A(y_w), so the fake
    forward returns ``-chosen.mean()`` (what TRL's would be with the prompt excluded and equal
    response lengths). The NLL convention is not what this checks; the odds-ratio term is."""
    trainer = SimpleNamespace(beta=lam, accelerator=Accelerator(), aux_loss_enabled=False)
    trainer.odds_ratio_loss = MethodType(ORPOTrainer.odds_ratio_loss, trainer)
    logits = torch.zeros(chosen.shape[0], 1, 1, dtype=chosen.dtype)

    def concatenated_forward(model, batch):
        return chosen, rejected, logits, logits, -chosen.mean()

    trainer.concatenated_forward = concatenated_forward
    loss, _metrics = ORPOTrainer.get_batch_loss_metrics(trainer, None, {}, train_eval="train")
    return loss


# -- CPOTrainer: trl/experimental/cpo/cpo_trainer.py ------------------------------------------


def _cpo(loss_type, chosen, rejected, *, beta, gamma=0.5, label_smoothing=0.0, alpha=0.0):
    """``CPOTrainer.get_batch_loss_metrics``, trl/experimental/cpo/cpo_trainer.py:865-917,
    which calls ``cpo_loss`` (lines 678-749) and returns ``losses.mean() + cpo_alpha * nll``
    (line 890), with ``cpo_alpha = 0``: the fake forward returns the NLL that TRL's does
    then, ``torch.tensor(0.0)`` (line 843), and the per-sequence log-probs ``verify`` feeds,
    summed for "sigmoid" and "hinge", mean for "ipo" and "simpo" as TRL's forward computes
    them (``average_log_prob=self.loss_type in ["ipo", "simpo"]``, line 850)."""
    trainer = SimpleNamespace(
        beta=beta,
        loss_type=loss_type,
        simpo_gamma=gamma,
        label_smoothing=label_smoothing,
        alpha=alpha,
        cpo_alpha=0.0,
        accelerator=Accelerator(),
        aux_loss_enabled=False,
    )
    trainer.cpo_loss = MethodType(CPOTrainer.cpo_loss, trainer)
    logits = torch.zeros(chosen.shape[0], 1, 1, dtype=chosen.dtype)

    def concatenated_forward(model, batch):
        return chosen, rejected, logits, logits, torch.tensor(0.0)

    trainer.concatenated_forward = concatenated_forward
    loss, _metrics = CPOTrainer.get_batch_loss_metrics(trainer, None, {}, train_eval="train")
    return loss


def trl_cpo_simpo(chosen, rejected, beta=2.0, gamma=0.5):
    """``CPOTrainer(loss_type='simpo', cpo_alpha=0.0, simpo_gamma=gamma)``, TRL's SimPO: the
    simpo branch of ``cpo_loss`` (lines 715-722: ``logits = (A_w - A_l) - gamma / beta``,
    ``-logsigmoid(beta * logits)`` with label_smoothing 0). Inputs A(y)."""
    return _cpo("simpo", chosen, rejected, beta=beta, gamma=gamma)


def trl_cpo_sigmoid(chosen, rejected, beta=0.1, label_smoothing=0.0):
    """``CPOTrainer(loss_type='sigmoid', cpo_alpha=0.0)``: the branch at lines 723-728.
    Inputs S(y)."""
    return _cpo("sigmoid", chosen, rejected, beta=beta, label_smoothing=label_smoothing)


def trl_cpo_hinge(chosen, rejected, beta=0.1):
    """``CPOTrainer(loss_type='hinge', cpo_alpha=0.0)``: the branch at lines 729-730. Inputs
    S(y)."""
    return _cpo("hinge", chosen, rejected, beta=beta)


def trl_cpo_ipo(chosen, rejected, beta=0.1):
    """``CPOTrainer(loss_type='ipo', cpo_alpha=0.0)``: the branch at lines 731-733. Inputs
    A(y)."""
    return _cpo("ipo", chosen, rejected, beta=beta)


def trl_cpo_alphapo(chosen, rejected, beta=2.0, gamma=0.5, alpha=0.0):
    """``CPOTrainer(loss_type='alphapo', alpha=alpha)``: ``CPOConfig.__post_init__``
    (cpo_config.py:177-179) makes it loss type "simpo" with ``cpo_alpha = 0``, and
    ``cpo_loss`` reshapes the rewards at lines 697-707, ``(1 - p**(-alpha)) / alpha`` with
    p = exp(A). Inputs A(y)."""
    return _cpo("simpo", chosen, rejected, beta=beta, gamma=gamma, alpha=alpha)


# -- SFTTrainer: trl/trainer/sft_trainer.py ---------------------------------------------------


def _sft(chosen: torch.Tensor, lengths: list[int]) -> torch.Tensor:
    """``SFTTrainer.compute_loss`` (sft_trainer.py:1560-1675) with ``loss_type='nll'`` on a
    batch from TRL's ``DataCollatorForLanguageModeling`` (sft_trainer.py:87-227), prompts
    labelled -100 (completion-only loss), every response token of row r at log-prob A_r."""
    examples = [
        {
            "input_ids": [1] * PROMPT_LENGTH + [2] * length,
            "labels": [-100] * PROMPT_LENGTH + [2] * length,
        }
        for length in lengths
    ]
    batch = DataCollatorForLanguageModeling(pad_token_id=0)(examples)
    trainer = SimpleNamespace(
        model=SimpleNamespace(training=True),
        accelerator=Accelerator(),
        aux_loss_enabled=False,
        compute_loss_func=None,
        label_smoother=None,
        args=SimpleNamespace(loss_type="nll", average_tokens_across_devices=True),
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        _total_train_tokens=0,
        _tp_size=1,
    )
    return SFTTrainer.compute_loss(trainer, _FusedLM(chosen), batch)


def trl_sft(chosen):
    """``SFTTrainer(loss_type='nll')``: ``SFTTrainer.compute_loss``,
    trl/trainer/sft_trainer.py:1560-1675, lines 1609-1618: ``-log_probs.sum() / num_tokens``,
    a token-level mean over the whole batch (``num_tokens = label_mask.sum()``), on responses
    of unequal lengths (1 to 3 tokens), as a real batch has them. lakelab's sft is the mean of
    the per-sequence means A(y_w): the two agree only when every response has the same
    length (``trl_sft_equal_lengths``)."""
    return _sft(chosen, response_lengths(chosen.shape[0], 0))


def trl_sft_tokens(logps):
    """``SFTTrainer(loss_type='nll')`` in ``verify``'s tokens form: the same code as
    ``trl_sft`` on a batch whose responses are as long as their masks, the fake model
    returning each response token's own log-prob. Compared with lakelab's sft_token_mean."""
    m = logps.chosen_mask.bool()
    return _sft(_packed(logps.chosen, m), [int(n) for n in m.sum(-1)])


def trl_sft_equal_lengths(chosen):
    """``trl_sft`` on a batch whose responses all have 3 tokens, where TRL's token-level mean
    equals lakelab's mean of per-sequence means."""
    return _sft(chosen, [3] * chosen.shape[0])


# TRL's KTO trainer (unpaired examples) and CPO's full loss (logits) have their own harnesses
from tests.trl_cpo_nll import trl_cpo_hinge_nll, trl_cpo_sigmoid_nll  # noqa: E402, F401
from tests.trl_kto import trl_kto_apo_zero_unpaired, trl_kto_kto  # noqa: E402, F401
