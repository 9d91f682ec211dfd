"""The seeds of a run trained together: the batched path of ``lakelab.lm.train``.

``lakelab.lm.train`` pre-trains one seed's base model, then aligns a copy of it with one
method. Here the models of N seeds are the rows of one ``StackedGPT``
(``lakelab.lm.stacked``): one forward and one backward per step for all of them, one AdamW
over the stacked tensors. Everything else stays per seed, exactly as in the plain loop:

- its data and batches: its own generators, ``np.random.default_rng([seed, STREAM])`` with
  the plain loop's streams, so a seed sees the same lakes in the same order;
- its loss: ``compute_objective`` on that seed's batch alone, and the step minimises the
  sum over seeds of the losses, so each seed's gradient is its own (d sum / d loss_n = 1);
- its AdamW state: AdamW is elementwise, and every row has the same lr and weight decay;
- what needs a plain ``TinyGPT``: sampling online negatives (each seed's current model,
  copied out of the stack before each step), the frozen reference (each seed's base) and
  the held-out evaluation at the log points.

The result is bit-equal to training each seed alone with ``lakelab.lm.train`` on the same
machine: the same parameters and the same logged numbers (tests/test_lm_batched.py; why the
kernels agree: ``lakelab.lm.stacked``). RL methods (``lakelab.lm.rl``) are not batched.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
import torch

from lakelab.lm.config import LMConfig
from lakelab.lm.data import SeedData, Tokens, mismatched
from lakelab.lm.model import TinyGPT, model_config
from lakelab.lm.stacked import StackedGPT
from lakelab.lm.train import (
    ALIGN_BATCHES,
    ONLINE,
    PRETRAIN_BATCHES,
    ReferenceCache,
    _concat,
    budget,
    new_optimizer,
    online_rejected,
    reference_logps,
)
from lakelab.registry import SequenceLogps, compute_objective, get_objective, resolve_hparams
from lakelab.residual import predicted_inputs, temporal_residual
from lakelab.training import Diverged

Losses = list[torch.Tensor]  # one scalar loss per seed


def stacked_token_logps(
    model: StackedGPT, batches: Sequence[Tokens], tok_emb: torch.Tensor | None = None
) -> torch.Tensor:
    """``train.token_logps`` of every seed's batch: (N, B, T), row n from model n."""
    targets = torch.stack([b.targets for b in batches])  # (N, B, T)
    if tok_emb is None:
        logits = model(torch.stack([b.inputs for b in batches]))  # (N, B, T, V)
    else:
        logits = model(tok_emb=tok_emb)  # (N, B, T, V)
    return logits.log_softmax(-1).gather(-1, targets[..., None]).squeeze(-1)  # (N, B, T)


def stacked_ift_logps(
    model: StackedGPT, batches: Sequence[Tokens], *, lam: float, residual: str
) -> torch.Tensor:
    """``train.ift_logps`` of every seed's batch (N, B, T): pass 1 for all seeds, each
    seed's mixed inputs from its own embedding (eq. 17), pass 2 for all seeds."""
    inputs = torch.stack([b.inputs for b in batches])  # (N, B, T)
    with torch.no_grad():
        probs = model(inputs).softmax(-1)  # (N, B, T, V) pass 1
    wte = model.p("wte.weight").detach()  # (N, V, d)
    mixed = [
        temporal_residual(
            emb, predicted_inputs(p, w, variant=residual), b.prompt_mask, lam=lam
        )  # (B, T, d)
        for emb, p, w, b in zip(model.embed(inputs).unbind(0), probs, wte, batches, strict=True)
    ]
    return stacked_token_logps(model, batches, tok_emb=torch.stack(mixed))  # (N, B, T) pass 2


def stacked_objective_logps(
    model: StackedGPT,
    method: str,
    hp: dict,
    chosen: Sequence[Tokens],
    rejected: Sequence[Tokens | None],
    ref_chosen: Sequence[torch.Tensor | None],
    ref_rejected: Sequence[torch.Tensor | None],
) -> list[SequenceLogps]:
    """``train.objective_logps`` for every seed: one ``SequenceLogps`` per seed, from one
    stacked pass (two for IFT) over every seed's batch."""
    hp = resolve_hparams(method, hp)
    objective = get_objective(method)
    if objective.mixed_pass:
        logps = stacked_ift_logps(model, chosen, lam=hp["lam"], residual=hp["residual"])
        return [SequenceLogps(lp, c.mask) for lp, c in zip(logps, chosen, strict=True)]
    if not objective.needs_pairs or rejected[0] is None:
        logps = stacked_token_logps(model, chosen)  # (N, B, T)
        return [SequenceLogps(lp, c.mask) for lp, c in zip(logps, chosen, strict=True)]
    pairs = [_concat(c, r) for c, r in zip(chosen, rejected, strict=True)]  # (2B, T) each
    if objective.needs_sum_sq:  # WPO: also log sum_v p(v)^2 at each position, one pass
        logits = model(torch.stack([p.inputs for p in pairs])).log_softmax(-1)  # (N, 2B, T, V)
        targets = torch.stack([p.targets for p in pairs])[..., None]  # (N, 2B, T, 1)
        both = logits.gather(-1, targets).squeeze(-1)  # (N, 2B, T)
        sq = torch.logsumexp(2 * logits.detach(), -1)  # (N, 2B, T)
    else:
        both, sq = stacked_token_logps(model, pairs), None  # (N, 2B, T) one pass per pair
    out = []
    for n, (c, r) in enumerate(zip(chosen, rejected, strict=True)):
        logp_c, logp_r = both[n].split(len(c))  # (B, T) each
        extra = {}
        if sq is not None:
            sq_c, sq_r = sq[n].split(len(c))
            extra = {"chosen_log_sum_sq": sq_c, "rejected_log_sum_sq": sq_r}
        out.append(
            SequenceLogps(logp_c, c.mask, logp_r, r.mask, ref_chosen[n], ref_rejected[n], **extra)
        )
    return out


@torch.no_grad()
def stacked_mismatched_logps(
    model: StackedGPT,
    bases: Sequence[TinyGPT],
    chosen: Sequence[Tokens],
    rejected: Sequence[Tokens],
) -> list[dict[str, torch.Tensor]]:
    """``train.mismatched_logps`` for every seed: the policy's log-probs of the mismatched
    pairs in one stacked pass, the reference's from each seed's own base model."""
    pairs = [_concat(mismatched(c), mismatched(r)) for c, r in zip(chosen, rejected, strict=True)]
    kl = stacked_token_logps(model, pairs)  # (N, 2B, T)
    return [
        {"kl": kl[n], "kl_mask": p.mask, "ref_kl": reference_logps(base, p)}
        for n, (p, base) in enumerate(zip(pairs, bases, strict=True))
    ]


def _check_finite(
    method: str, seeds: Sequence[int], step: int, losses: Losses, model: StackedGPT
) -> None:
    """Raise ``Diverged`` naming method, step and the first seed whose loss or parameters
    are NaN or inf (the plain loop's message for that seed)."""
    with torch.no_grad():  # fast path: one sum is finite iff every term is (or overflowed)
        total = sum(float(loss) for loss in losses)
        total += sum(float(p.sum()) for p in model.parameters())
    if math.isfinite(total):
        return
    for n, (seed, loss) in enumerate(zip(seeds, losses, strict=True)):
        finite = all(torch.isfinite(p[n]).all() for p in model.parameters())
        if not (torch.isfinite(loss) and finite):
            raise Diverged(
                f"{method} diverged at step {step} (seed {seed}): non-finite loss or "
                "parameters; lower the learning rate or the objective's hyper-parameters"
            )


def optimize_seeds(
    model: StackedGPT,
    cfg: LMConfig,
    stage: str,
    losses_at: Callable[[int], Losses],
    log: Callable[[int], None],
    *,
    method: str,
    seeds: Sequence[int],
    progress: Callable[[int], None] | None = None,
) -> None:
    """``train.optimize`` for every seed at once: AdamW on the sum of ``losses_at(step)``
    (one loss per seed); ``log(step)`` at the log points; ``progress(N)`` after each step."""
    steps, lr, log_every = budget(cfg, stage, method)
    opt = new_optimizer(model, lr, cfg.weight_decay)
    for step in range(steps + 1):
        if step % log_every == 0 or step == steps:
            log(step)
        if step == steps:
            return
        losses = losses_at(step)
        opt.zero_grad(set_to_none=True)
        torch.stack(losses).sum().backward()  # each seed's gradient is its own loss's
        opt.step()
        _check_finite(method, seeds, step, losses, model)
        if progress is not None:
            progress(len(seeds))


def pretrain_seeds(
    cfg: LMConfig,
    corpora: Sequence[Tokens],
    seeds: Sequence[int],
    *,
    logs: Sequence[Callable[[TinyGPT, int], None]],
    progress: Callable[[int], None] | None = None,
) -> list[TinyGPT]:
    """``train.pretrain`` for every seed in ``seeds`` (with its corpus, in ``corpora``), all
    trained together; ``logs[n](model, step)`` as ``pretrain``'s ``log`` for seed n."""
    model = StackedGPT([TinyGPT(model_config(cfg.model), seed=s) for s in seeds])
    rngs = [np.random.default_rng([s, PRETRAIN_BATCHES]) for s in seeds]

    def losses_at(step: int) -> Losses:
        batches = [
            corpus[rng.choice(len(corpus), size=cfg.batch_size, replace=False)]
            for corpus, rng in zip(corpora, rngs, strict=True)
        ]
        logps = stacked_token_logps(model, batches)  # (N, B, T)
        return [
            compute_objective("sft", SequenceLogps(lp, b.mask))[0]
            for lp, b in zip(logps, batches, strict=True)
        ]

    def log(step: int) -> None:
        for n, seed_log in enumerate(logs):
            seed_log(model.seed_model(n), step)

    optimize_seeds(model, cfg, "pretrain", losses_at, log, method="pre-training", seeds=seeds,
                   progress=progress)  # fmt: skip
    return [model.seed_model(n) for n in range(len(seeds))]


def align_seeds(
    cfg: LMConfig,
    bases: Sequence[TinyGPT],
    method: str,
    data: Sequence[SeedData],
    seeds: Sequence[int],
    *,
    references: Sequence[ReferenceCache | None],
    logs: Sequence[Callable[[TinyGPT, int, dict], None]],
    progress: Callable[[int], None] | None = None,
) -> list[TinyGPT]:
    """``train.align`` for every seed in ``seeds``: copies of its base model ``bases[n]``,
    its data ``data[n]`` and reference cache ``references[n]``, all trained together with
    ``method``; ``logs[n]`` as ``align``'s ``log`` for seed n."""
    objective = get_objective(method)
    hp = cfg.method_hparams(method)
    if objective.needs_reference and any(r is None for r in references):
        raise ValueError(f"{method} needs the reference cache (ReferenceCache.build)")
    N, online = len(seeds), objective.needs_pairs and cfg.negatives == "online"
    model = StackedGPT(bases)
    rngs = [np.random.default_rng([s, ALIGN_BATCHES]) for s in seeds]
    gens = [
        torch.Generator().manual_seed(int(np.random.default_rng([s, ONLINE]).integers(2**62)))
        for s in seeds
    ]
    states = [{"loss": float("nan"), "online_fallback": 0} for _ in seeds]
    current = [copy.deepcopy(b) for b in bases] if online else []  # samplers of negatives

    def losses_at(step: int) -> Losses:
        idx = [
            np.sort(rng.choice(len(d.chosen), size=cfg.batch_size, replace=False))
            for rng, d in zip(rngs, data, strict=True)
        ]
        chosen = [d.chosen[i] for d, i in zip(data, idx, strict=True)]
        rejected: list[Tokens | None] = [None] * N
        ref_c: list[torch.Tensor | None] = [None] * N
        ref_r: list[torch.Tensor | None] = [None] * N
        for n in range(N) if objective.needs_pairs else ():
            if online:  # sampled from seed n's current model
                model.copy_to(current[n], n)
                rejected[n], fell_back = online_rejected(current[n], data[n], idx[n], cfg, gens[n])
                states[n]["online_fallback"] += fell_back
            else:
                rejected[n] = data[n].rejected[idx[n]]
        for n in range(N) if objective.needs_reference else ():
            ref_c[n] = references[n].chosen[idx[n]]  # (B, T) cached
            if online:  # fresh samples: only these need the reference
                ref_r[n] = reference_logps(bases[n], rejected[n])
            else:
                ref_r[n] = references[n].rejected[idx[n]]  # (B, T) cached
        logps = stacked_objective_logps(model, method, hp, chosen, rejected, ref_c, ref_r)
        if objective.mismatched:
            extra = stacked_mismatched_logps(model, bases, chosen, rejected)
            logps = [replace(lp, **kl) for lp, kl in zip(logps, extra, strict=True)]
        losses = []
        for lp, state in zip(logps, states, strict=True):
            loss, _ = compute_objective(method, lp, hp)
            state["loss"] = loss.item()
            losses.append(loss)
        return losses

    def log(step: int) -> None:
        for n, seed_log in enumerate(logs):
            seed_log(model.seed_model(n), step, dict(states[n]))

    optimize_seeds(model, cfg, "align", losses_at, log, method=method, seeds=seeds,
                   progress=progress)  # fmt: skip
    return [model.seed_model(n) for n in range(N)]
