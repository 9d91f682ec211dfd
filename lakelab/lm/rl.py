"""On-policy RL on the LM track: REINFORCE, RLOO and GRPO with plans the model samples.

    each step: B / G training lakes, each prompt G times
        plans    <- sampled from the current model (temperature 1), up to the end token
        rewards  <- 1 if the plan, followed on its lake, reaches the goal, minus
                    step_penalty per move
        A        <- the method's advantages over each lake's G plans
        loss     <- the method's loss on the plans' per-token log-probs (lakelab.policy_gradient)

One optimiser step per batch, so the sampling policy is the current one (rho = 1): PPO, whose
4 inner steps need a value head, runs on the lake only. The plans are followed in the lake's
exact dynamics (the LM track's lakes are deterministic: Gymnasium's own transitions). The held-out
evaluation is the other methods' (``lakelab.lm.metrics``); the logs add the batch's
``reward``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch

from lakelab import policy_gradient as pg
from lakelab.lm.config import LMConfig
from lakelab.lm.data import SeedData, to_tokens
from lakelab.lm.model import TinyGPT, generate
from lakelab.lm.tokenizer import END_ID, decode, parse_plan
from lakelab.lm.train import optimize, reference_logps, token_logps
from lakelab.rl_methods import get_rl_method, resolve_rl_hparams

RL_BATCHES, RL_SAMPLES = 14, 15  # streams: np.random.default_rng([seed, STREAM])
LM_RL_METHODS = ("reinforce", "rloo", "grpo")


def sampled_responses(generated: torch.Tensor) -> list[list[int]]:
    """Each row's sampled tokens up to and including its first end token (all of them if it
    never ended): exactly the tokens the model chose."""
    out = []
    for row in generated.tolist():
        out.append(row[: row.index(END_ID) + 1] if END_ID in row else row)
    return out


def _reward(task, plan: list[int] | None, step_penalty: float) -> float:
    """1 for a plan that reaches its lake's goal, minus step_penalty per move it makes; a
    response that is no plan scores 0."""
    if plan is None:
        return 0.0
    reached, moves = task.run(plan)
    return float(reached) - step_penalty * moves


def align_rl(
    cfg: LMConfig,
    base: TinyGPT,
    method: str,
    data: SeedData,
    seed: int,
    *,
    log: Callable[[TinyGPT, int, dict], None],
    progress: Callable[[int], None] | None = None,
) -> TinyGPT:
    """Fine-tune a copy of ``base`` with RL ``method`` on plans it samples; ``log`` as in
    ``lakelab.lm.train.align``, with the last batch's loss and mean reward."""
    rl = get_rl_method(method)
    hp = resolve_rl_hparams(method, cfg.hparams.get(method))
    G = hp["group_size"]
    model = copy.deepcopy(base)
    rng = np.random.default_rng([seed, RL_BATCHES])
    gen = torch.Generator().manual_seed(
        int(np.random.default_rng([seed, RL_SAMPLES]).integers(2**62))
    )
    state = {"loss": float("nan"), "reward": float("nan")}

    def loss_at(step: int) -> torch.Tensor:
        idx = np.sort(rng.choice(len(data.chosen), size=cfg.batch_size // G, replace=False))
        lakes = np.repeat(idx, G)  # each lake's prompt G times, a group
        prompts = data.chosen[lakes].prompts
        with torch.no_grad():
            generated = generate(model, prompts, cfg.max_moves + 1, greedy=False, generator=gen)
        responses = sampled_responses(generated)
        rewards = torch.tensor(
            [_reward(data.tasks[i], parse_plan(decode(r)), hp["step_penalty"])
             for i, r in zip(lakes, responses, strict=True)],
            dtype=torch.float64,
        )  # fmt: skip
        tokens = to_tokens([data.tasks[i].lake for i in lakes], responses, cfg.seq_len)
        logps = token_logps(model, tokens).double()
        old = logps.detach()  # one step per batch: the sampling policy is this one
        if rl.advantage == "baseline":
            advantages = rewards - rewards.mean()
            loss, _ = pg.reinforce_loss(logps, tokens.mask, advantages)
        elif rl.advantage == "leave_one_out":
            advantages = pg.leave_one_out_advantages(rewards, G)
            clip = {"epsilon_low": hp["epsilon_low"], "epsilon_high": hp["epsilon_high"]}
            loss, _ = pg.rloo_loss(logps, old, tokens.mask, advantages, **clip)
        else:  # group
            advantages = pg.group_advantages(rewards, G, scale=hp["scale"])
            ref = reference_logps(base, tokens).double() if hp["beta"] > 0 else None
            loss, _ = pg.grpo_loss(
                logps,
                old,
                tokens.mask,
                advantages,
                ref,
                epsilon_low=hp["epsilon_low"],
                epsilon_high=hp["epsilon_high"],
                beta=hp["beta"],
                aggregation=hp["aggregation"],
                max_completion_length=cfg.max_moves + 1,
            )
        state["loss"], state["reward"] = loss.item(), rewards.mean().item()
        return loss

    optimize(model, cfg, "align", loss_at, lambda step: log(model, step, dict(state)),
             method=method, seed=seed, progress=progress)  # fmt: skip
    return model
