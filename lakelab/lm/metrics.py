"""Held-out metrics of a language model of plans, exact wherever the solver allows.

On the held-out lakes (none of them seen in training):

    success        share of greedy plans that reach the goal when executed step by step in
                   the real Gymnasium FrozenLake-v1 (not in our own model of it)
    shortest       share of greedy plans that reach the goal in the fewest possible moves and
                   then end (the response is exactly a shortest plan)
    token_kl       mean over lakes of the mean over response tokens of
                   KL(pi*(. | s_t) || p_model(. | prompt, plan_<t)) along the canonical optimal
                   plan; pi* is the solver's soft optimum on the move tokens, and after the
                   last move the target is the end token with probability 1
    logp_chosen    mean S(y) = sum_t log p(y_t | ...) of the canonical optimal plan
    logp_rejected  mean S(y) of a fixed sub-optimal or failing plan per lake
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import gymnasium as gym
import numpy as np
import torch

from lakelab.lm.data import (
    HELD_OUT_REJECTED,
    LakeTask,
    Tokens,
    encode_plans,
    optimal_plan,
    rejected_plan,
    soft_targets,
    tasks,
)
from lakelab.lm.model import TinyGPT, generate
from lakelab.lm.tokenizer import decode, parse_plan
from lakelab.reductions import sum_logps

if TYPE_CHECKING:
    from lakelab.lm.config import LMConfig

METRICS = ("success", "shortest", "token_kl", "logp_chosen", "logp_rejected")


def execute(env: gym.Env, plan: list[int]) -> tuple[bool, int]:
    """Run ``plan`` in a Gymnasium env from its reset state: (reached the goal, moves made).
    Moves after the episode ends (hole, goal or time limit) are not made."""
    env.reset(seed=0)  # the lakes are deterministic; the seed only pins Gymnasium's own RNG
    for k, action in enumerate(plan):
        _, reward, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            return reward > 0, k + 1
    return False, len(plan)


@dataclass(frozen=True)
class HeldOut:
    """The held-out lakes with everything their metrics need, built once per config."""

    tasks: tuple[LakeTask, ...]
    chosen: Tokens
    """Canonical optimal plan of each lake (lowest action at ties)."""
    rejected: Tokens
    """A sub-optimal or failing plan of each lake (seeded by lake_seed)."""
    targets: torch.Tensor
    """(N, T, V) pi* along the chosen plan, zero off the response."""
    envs: tuple[gym.Env, ...]
    """The real Gymnasium env of each lake."""
    max_new: int


def held_out(cfg: LMConfig) -> HeldOut:
    _, test = tasks(cfg)
    chosen = [optimal_plan(t, None) for t in test]
    rng = np.random.default_rng([cfg.lake_seed, HELD_OUT_REJECTED])
    rejected = [rejected_plan(t, rng, cfg.max_moves, 0.5) for t in test]
    chosen_tokens = encode_plans(list(test), chosen, cfg.seq_len)
    return HeldOut(
        test,
        chosen_tokens,
        encode_plans(list(test), rejected, cfg.seq_len),
        soft_targets(list(test), chosen, chosen_tokens, cfg.tau, cfg.gamma),
        tuple(t.lake.make_env() for t in test),
        cfg.max_moves + 1,
    )


@torch.no_grad()
def evaluate(model: TinyGPT, held: HeldOut) -> dict[str, float]:
    """The held-out metrics of ``model`` (see the module docstring)."""
    was_training = model.training
    model.eval()
    generated = generate(model, held.chosen.prompts, held.max_new)  # (N, n) greedy
    success = shortest = 0
    for task, env, row in zip(held.tasks, held.envs, generated.tolist(), strict=True):
        plan = parse_plan(decode(row))
        if plan is None:  # not a plan (a cell letter or the marker among the moves)
            continue
        reached, moves = execute(env, plan)
        success += reached
        shortest += reached and moves == len(plan) == task.shortest

    logp = model(held.chosen.inputs).log_softmax(-1).double()  # (N, T, V)
    q = held.targets  # (N, T, V)
    kl = (torch.special.xlogy(q, q) - q * logp).sum(-1)  # (N, T) KL(q || p) per position
    mask = held.chosen.mask
    kl_lake = torch.where(mask, kl, 0.0).sum(-1) / mask.sum(-1)  # (N,)
    chosen = logp.gather(-1, held.chosen.targets[..., None]).squeeze(-1)  # (N, T)
    rejected = model(held.rejected.inputs).log_softmax(-1)  # (N, T, V)
    rejected = rejected.gather(-1, held.rejected.targets[..., None]).squeeze(-1)  # (N, T)
    model.train(was_training)
    n = len(held.tasks)
    return {
        "success": success / n,
        "shortest": shortest / n,
        "token_kl": kl_lake.mean().item(),
        "logp_chosen": sum_logps(chosen, mask).mean().item(),
        "logp_rejected": sum_logps(rejected.double(), held.rejected.mask).mean().item(),
    }
