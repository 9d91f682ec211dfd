"""Pre-training and alignment of the tiny transformer, every loss through ``compute_objective``.

From a batch of token samples to the per-token log-probs ``logp_t = log p(y_t | y_<t)`` the
objectives consume (``lakelab.registry.SequenceLogps``), then ``compute_objective`` unchanged:

    pre-training  SFT on the mixed-quality corpus (it makes the *base* model)
    sft           one pass on the chosen plans
    ift           two passes, IFT eq. 17 (temporal residual) on the token embeddings:
                    pass 1, no grad:   p_i = softmax(model(x))_i          (B, T, V)
                    yhat_{i}  = E[argmax p_{i-1}]  ("greedy", official code)
                             or sum_v p_{i-1}(v) E[v] ("expected", eq. 17 read literally)
                    pass 2:   model(tok_emb = (1 - lam) E[x_i] + lam yhat_i), true targets
                  (prompt inputs keep their true embedding; ``lakelab.residual``)
    dpo, ipo      chosen and rejected in one pass of 2B rows; the reference log-probs of the
                  frozen base model come from a cache built once per seed (``ReferenceCache``),
                  never recomputed during training (online negatives: only the fresh rejected)
    orpo, asft, simpo   chosen and rejected in one pass
    kto, bco      the same batches as unpaired examples: optimal plans desirable, rejected
                  plans undesirable; KTO also scores mismatched pairs (each lake's prompt
                  with the previous lake's plan) under the model and the reference, no grad

The same seed gives every method the same lakes in the same order (same batches).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from lakelab.lm.config import LMConfig
from lakelab.lm.data import SeedData, Tokens, mismatched, response_ids, to_tokens
from lakelab.lm.model import TinyGPT, generate, model_config
from lakelab.lm.tokenizer import decode, parse_plan
from lakelab.registry import SequenceLogps, compute_objective, get_objective, resolve_hparams
from lakelab.residual import predicted_inputs, temporal_residual
from lakelab.training import Diverged

# streams of the per-seed generators: np.random.default_rng([seed, STREAM])
PRETRAIN_BATCHES, ALIGN_BATCHES, ONLINE = 11, 12, 13


def token_logps(
    model: TinyGPT, tokens: Tokens, tok_emb: torch.Tensor | None = None
) -> torch.Tensor:
    """log p(target_t | inputs_<=t) (N, T) of every position (mask it with ``tokens.mask``)."""
    logits = model(tokens.inputs) if tok_emb is None else model(tok_emb=tok_emb)  # (N, T, V)
    return logits.log_softmax(-1).gather(-1, tokens.targets[..., None]).squeeze(-1)  # (N, T)


def ift_logps(model: TinyGPT, tokens: Tokens, *, lam: float, residual: str) -> torch.Tensor:
    """Per-token log-probs (N, T) of the true targets on IFT's mixed inputs (eq. 17)."""
    with torch.no_grad():
        probs = model(tokens.inputs).softmax(-1)  # (N, T, V) pass 1: row i predicts input i+1
    predicted = predicted_inputs(probs, model.wte.weight, variant=residual)  # (N, T, d)
    mixed = temporal_residual(
        model.wte(tokens.inputs), predicted, tokens.prompt_mask, lam=lam
    )  # (N, T, d) (1 - lam) E[x_i] + lam yhat_i on response inputs
    return token_logps(model, tokens, tok_emb=mixed)  # (N, T) pass 2


@torch.no_grad()
def reference_logps(reference: TinyGPT, tokens: Tokens, chunk: int = 512) -> torch.Tensor:
    """The frozen reference model's per-token log-probs (N, T), in chunks of rows."""
    return torch.cat(
        [token_logps(reference, tokens[i : i + chunk]) for i in range(0, len(tokens), chunk)]
    )


def _concat(a: Tokens, b: Tokens) -> Tokens:
    return Tokens(
        torch.cat([a.inputs, b.inputs]),
        torch.cat([a.targets, b.targets]),
        torch.cat([a.mask, b.mask]),
        a.prompt_len,
    )


def objective_logps(
    model: TinyGPT,
    method: str,
    hp: dict,
    chosen: Tokens,
    rejected: Tokens | None = None,
    ref_chosen: torch.Tensor | None = None,
    ref_rejected: torch.Tensor | None = None,
) -> SequenceLogps:
    """What ``compute_objective(method, ...)`` needs from the model for one batch (``hp``:
    overrides of the registry defaults; IFT's lam and residual are used here)."""
    hp = resolve_hparams(method, hp)
    if get_objective(method).mixed_pass:
        logp_c = ift_logps(model, chosen, lam=hp["lam"], residual=hp["residual"])
        return SequenceLogps(logp_c, chosen.mask)
    if not get_objective(method).needs_pairs or rejected is None:
        return SequenceLogps(token_logps(model, chosen), chosen.mask)
    pair = _concat(chosen, rejected)
    if not get_objective(method).needs_sum_sq:
        both = token_logps(model, pair)  # (2B, T) one pass for the pair
        logp_c, logp_r = both.split(len(chosen))  # (B, T) each
        return SequenceLogps(logp_c, chosen.mask, logp_r, rejected.mask, ref_chosen, ref_rejected)
    # WPO: also log sum_v p(v)^2 of each position's next-token distribution, from one pass
    logits = model(pair.inputs).log_softmax(-1)  # (2B, T, V)
    both = logits.gather(-1, pair.targets[..., None]).squeeze(-1)
    sq = torch.logsumexp(2 * logits.detach(), -1)  # (2B, T)
    (logp_c, logp_r), (sq_c, sq_r) = both.split(len(chosen)), sq.split(len(chosen))
    return SequenceLogps(logp_c, chosen.mask, logp_r, rejected.mask, ref_chosen, ref_rejected,
                         chosen_log_sum_sq=sq_c, rejected_log_sum_sq=sq_r)  # fmt: skip


@torch.no_grad()
def mismatched_logps(
    model: TinyGPT, reference: TinyGPT, chosen: Tokens, rejected: Tokens
) -> dict[str, torch.Tensor]:
    """KTO's mismatched pairs for a batch of desirable (``chosen``) and undesirable
    (``rejected``) examples of distinct lakes: each lake's prompt with the previous lake's
    plan of the same kind (``data.mismatched``), under the policy (no gradient: KTO detaches
    its reference point) and the reference; the ``SequenceLogps`` fields kl, kl_mask, ref_kl."""
    pairs = _concat(mismatched(chosen), mismatched(rejected))
    return {"kl": token_logps(model, pairs), "kl_mask": pairs.mask,
            "ref_kl": reference_logps(reference, pairs)}  # fmt: skip


@dataclass(frozen=True)
class ReferenceCache:
    """Reference (base model) per-token log-probs of every training lake's chosen and
    rejected plan (n_train, T), computed once per seed."""

    chosen: torch.Tensor
    rejected: torch.Tensor

    @classmethod
    def build(cls, reference: TinyGPT, data: SeedData) -> ReferenceCache:
        return cls(
            reference_logps(reference, data.chosen), reference_logps(reference, data.rejected)
        )


def new_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over ``model``'s parameters (a ``TinyGPT``, or a ``StackedGPT`` of seeds). The
    fused kernel does each tensor's update in one pass; AdamW is elementwise, so a stacked
    tensor's row gets the update its seed's own tensor would (tested)."""
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, fused=True)


def _check_finite(method: str, seed: int, step: int, loss: torch.Tensor, model: TinyGPT) -> None:
    if not torch.isfinite(loss) or not all(torch.isfinite(p).all() for p in model.parameters()):
        raise Diverged(
            f"{method} diverged at step {step} (seed {seed}): non-finite loss or parameters; "
            "lower the learning rate or the objective's hyper-parameters"
        )


def budget(cfg: LMConfig, stage: str, method: str) -> tuple[int, float, int]:
    """Steps, learning rate and log interval of ``stage`` ("pretrain" or "align") for
    ``method``: alignment takes the method's own rate (``LMConfig.method_lr``)."""
    if stage == "pretrain":
        return cfg.pretrain_steps, cfg.pretrain_lr, cfg.pretrain_log_every
    return cfg.align_steps, cfg.method_lr(method), cfg.log_every


def optimize(
    model: TinyGPT,
    cfg: LMConfig,
    stage: str,
    loss_at: Callable[[int], torch.Tensor],
    log: Callable[[int], None],
    *,
    method: str,
    seed: int,
    progress: Callable[[int], None] | None = None,
) -> None:
    """AdamW on ``loss_at(step)`` with the budget of ``stage`` ("pretrain" or "align");
    ``log(step)`` at every multiple of its log interval and after the last step; Diverged
    names method, seed and step."""
    steps, lr, log_every = budget(cfg, stage, method)
    opt = new_optimizer(model, lr, cfg.weight_decay)
    for step in range(steps + 1):
        if step % log_every == 0 or step == steps:
            log(step)
        if step == steps:
            return
        loss = loss_at(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _check_finite(method, seed, step, loss, model)
        if progress is not None:
            progress(1)


def pretrain(
    cfg: LMConfig,
    corpus: Tokens,
    seed: int,
    *,
    log: Callable[[TinyGPT, int], None],
    progress: Callable[[int], None] | None = None,
) -> TinyGPT:
    """The base model: a seeded transformer trained with SFT on the mixed-quality corpus."""
    model = TinyGPT(model_config(cfg.model), seed=seed)
    rng = np.random.default_rng([seed, PRETRAIN_BATCHES])

    def loss_at(step: int) -> torch.Tensor:
        batch = corpus[rng.choice(len(corpus), size=cfg.batch_size, replace=False)]
        logps = SequenceLogps(token_logps(model, batch), batch.mask)
        return compute_objective("sft", logps)[0]

    optimize(
        model,
        cfg,
        "pretrain",
        loss_at,
        lambda step: log(model, step),
        method="pre-training",
        seed=seed,
        progress=progress,
    )
    return model


def online_rejected(
    model: TinyGPT, data: SeedData, idx: np.ndarray, cfg: LMConfig, gen: torch.Generator
) -> tuple[Tokens, int]:
    """Rejected plans sampled from the current model for the lakes ``idx`` (temperature 1);
    a sample that is an optimal plan (it must not be rejected) is replaced by the lake's
    offline rejected plan. Returns the tokens and how many were replaced."""
    chosen = data.chosen[idx]
    sampled = response_ids(
        generate(model, chosen.prompts, cfg.max_moves + 1, greedy=False, generator=gen)
    )
    responses, fallbacks = [], 0
    for i, ids in zip(idx.tolist(), sampled, strict=True):
        plan = parse_plan(decode(ids))
        if plan is not None and data.tasks[i].is_optimal(plan):
            responses.append(None)
            fallbacks += 1
        else:
            responses.append(ids)
    lakes = [data.tasks[i].lake for i in idx.tolist()]
    offline = data.rejected[idx]
    tokens = to_tokens(lakes, [r or [] for r in responses], cfg.seq_len)
    keep = torch.tensor([r is not None for r in responses])[:, None]  # (B, 1)
    return Tokens(
        torch.where(keep, tokens.inputs, offline.inputs),
        torch.where(keep, tokens.targets, offline.targets),
        torch.where(keep, tokens.mask, offline.mask),
        tokens.prompt_len,
    ), fallbacks


def align(
    cfg: LMConfig,
    base: TinyGPT,
    method: str,
    data: SeedData,
    seed: int,
    *,
    reference: ReferenceCache | None,
    log: Callable[[TinyGPT, int, dict], None],
    progress: Callable[[int], None] | None = None,
) -> TinyGPT:
    """Fine-tune a copy of ``base`` with ``method``; ``log(model, step, extra)`` is called at
    the log points with the last batch's loss and the online fallback count so far."""
    objective = get_objective(method)
    hp = cfg.method_hparams(method)
    if objective.needs_reference and reference is None:
        raise ValueError(f"{method} needs the reference cache (ReferenceCache.build)")
    model = copy.deepcopy(base)
    rng = np.random.default_rng([seed, ALIGN_BATCHES])
    gen = torch.Generator().manual_seed(int(np.random.default_rng([seed, ONLINE]).integers(2**62)))
    state = {"loss": float("nan"), "online_fallback": 0}

    def loss_at(step: int) -> torch.Tensor:
        idx = np.sort(rng.choice(len(data.chosen), size=cfg.batch_size, replace=False))
        chosen = data.chosen[idx]
        rejected = ref_c = ref_r = None
        if objective.needs_pairs:
            if cfg.negatives == "online":
                rejected, fell_back = online_rejected(model, data, idx, cfg, gen)
                state["online_fallback"] += fell_back
            else:
                rejected = data.rejected[idx]
        if objective.needs_reference:
            ref_c = reference.chosen[idx]  # (B, T) cached
            if cfg.negatives == "online":  # fresh samples: only these need the reference
                ref_r = reference_logps(base, rejected)
            else:
                ref_r = reference.rejected[idx]  # (B, T) cached
        logps = objective_logps(model, method, hp, chosen, rejected, ref_c, ref_r)
        if objective.mismatched:
            logps = replace(logps, **mismatched_logps(model, base, chosen, rejected))
        loss, _ = compute_objective(method, logps, hp)
        state["loss"] = loss.item()
        return loss

    optimize(
        model,
        cfg,
        "align",
        loss_at,
        lambda step: log(model, step, dict(state)),
        method=method,
        seed=seed,
        progress=progress,
    )
    return model
