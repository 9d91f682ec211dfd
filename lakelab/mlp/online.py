"""On-policy RL on the lake: REINFORCE, RLOO, GRPO and PPO train theta_0 on episodes their
own policy samples, one seed at a time, judged by the same exact metrics as the preference
objectives.

    theta = theta_0;  reference = theta_0 (frozen, for GRPO's KL)
    for step in 0 .. steps - 1:
        every log_every steps: exact metrics from the MDP          (lakelab.mlp.metrics)
        episodes <- batch_size episodes of the current policy, in groups of group_size
        rewards  <- 1 for reaching the goal, minus step_penalty per move
        A        <- the method's advantages                          (lakelab.policy_gradient)
        old      <- log pi_theta(a_t | s_t) now, detached: the sampling policy
        inner_steps times: loss <- the method's loss on (logps, old, A); Adam step
    exact metrics once more after the last step

The "prompt" is the start state, so all episodes of a step answer the same prompt and a
group is just G of them. PPO's value head is linear in the one-hot state, a table V[s] that
Adam trains beside the policy. ``batch/*`` metrics are TRL's names: ``reward``,
``reward_std``, ``frac_reward_zero_std`` (groups whose rewards are all equal: they carry no
GRPO signal), ``clip_ratio/region_mean``, ``kl``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from lakelab import policy_gradient as pg
from lakelab.mlp import model
from lakelab.mlp.data import to_batch
from lakelab.mlp.experiment import MethodResult, Setup, logged
from lakelab.mlp.metrics import exact_metrics
from lakelab.mlp.optim import Adam
from lakelab.mlp.sampling import sample
from lakelab.rl_methods import get_rl_method, resolve_rl_hparams
from lakelab.training import Diverged, torch_threads

ONLINE_RL = 6  # the stream of each seed's episodes: np.random.default_rng([seed, ONLINE_RL])


def train_online(setup: Setup, method: str, seed_index: list[int] | None = None) -> MethodResult:
    """Train RL ``method`` for the seeds ``seed_index`` (indices into ``setup.seeds``, all
    by default), each alone; their results stacked."""
    idx = list(range(len(setup.seeds))) if seed_index is None else list(seed_index)
    with torch_threads(1):
        parts = [_train(setup, method, i) for i in idx]
    return MethodResult(
        [p.rows[0] for p in parts],
        np.concatenate([p.explored for p in parts]),
        np.concatenate([p.state_error for p in parts]),
        np.concatenate([p.final_policy for p in parts]),
    )


def _train(setup: Setup, method: str, i: int) -> MethodResult:
    cfg, lake, seed = setup.config, setup.lake, setup.seeds[i]
    rl = get_rl_method(method)
    hp = resolve_rl_hparams(method, cfg.hparams.get(method))
    G = hp["group_size"]
    if cfg.batch_size % G:
        raise ValueError(
            f"{method}: batch_size {cfg.batch_size} is not a whole number of groups of "
            f"group_size {G}"
        )
    theta0 = {k: v[i : i + 1] for k, v in setup.theta0.items()}
    target = {k: v[i : i + 1] for k, v in setup.theta_star.items()}
    theta = model.clone(theta0, requires_grad=True)
    leaves = dict(theta)
    values = None
    if rl.advantage == "gae":  # PPO's value head: linear in the one-hot state, V[s]
        values = torch.zeros(lake.n_states, dtype=torch.float64, requires_grad=True)
        leaves["value"] = values
    optimizer = Adam(leaves, lr=cfg.lr)
    with torch.no_grad():
        ref_table = model.state_log_probs(theta0, cfg.activation)[0]  # (S, A), frozen
    rng = np.random.default_rng([seed, ONLINE_RL])
    explored = np.zeros(lake.n_states)
    rows, batch_metrics = [], {}
    for step in range(cfg.steps + 1):
        if logged(step, cfg):
            metrics = exact_metrics(setup, theta, target, explored[None])[0]
            rows.append({"step": step, **metrics, "online_fallback": 0.0, **batch_metrics})
        if step == cfg.steps:
            break
        with torch.no_grad():
            table = model.state_log_probs(theta, cfg.activation)[0]  # (S, A)
        episodes = sample(lake, table.exp().numpy(), cfg.batch_size, rng, max_len=cfg.max_len)
        batch = to_batch([episodes])  # (1, B, T)
        states, actions, mask = batch.states[0], batch.actions[0], batch.mask[0]
        explored += np.bincount(states[mask].numpy(), minlength=lake.n_states)
        reached = torch.from_numpy(lake.goal[episodes.final]).double()
        rewards = reached - hp["step_penalty"] * torch.from_numpy(episodes.lengths).double()
        old = table[states, actions]  # (B, T) the sampling policy's log-probs
        advantages = _advantages(rl.advantage, rewards, G, hp, values, states, mask, cfg.gamma)
        for _ in range(hp["inner_steps"]):
            logps = model.state_log_probs(theta, cfg.activation)[0][states, actions]
            ref = ref_table[states, actions]
            loss, found = _loss(method, hp, logps, old, mask, advantages, ref, values, states,
                                cfg.max_len)  # fmt: skip
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            finite = all(torch.isfinite(p).all() for p in leaves.values())
            if not (math.isfinite(loss.item()) and finite):
                raise Diverged(
                    f"{method} diverged at step {step} (seed {seed}): non-finite loss or "
                    "parameters; lower lr or the method's hyper-parameters"
                )
        if logged(step + 1, cfg):  # this step's batch metrics go with the next log
            grouped = rewards.view(-1, G)
            batch_metrics = {
                "batch/reward": rewards.mean().item(),
                "batch/reward_std": rewards.std().item(),
                "batch/frac_reward_zero_std": (grouped.std(1) == 0).double().mean().item(),
                **{f"batch/{k}": v for k, v in found.items()},
            }
    with torch.no_grad():
        policy = model.state_log_probs(theta, cfg.activation).exp().numpy()
        error = model.state_param_error(theta, target).numpy()
    return MethodResult([rows], explored[None], error, policy)


def _advantages(kind, rewards, G, hp, values, states, mask, gamma):
    """Per episode (B,) or, for PPO's GAE, per token (B, T): from the episodes' rewards."""
    if kind == "baseline":
        return rewards - rewards.mean()
    if kind == "leave_one_out":
        return pg.leave_one_out_advantages(rewards, G)
    if kind == "group":
        return pg.group_advantages(rewards, G, scale=hp["scale"])
    # gae: the reward on each episode's last move, values from the value head
    last = mask.sum(-1) - 1  # (B,)
    per_token = torch.zeros(mask.shape, dtype=torch.float64)
    per_token[torch.arange(len(last)), last] = rewards
    with torch.no_grad():
        v = values[states]
    advantages, returns = pg.gae(per_token, v, mask, gamma=gamma, lam=hp["gae_lambda"])
    return advantages, returns, v


def _loss(method, hp, logps, old, mask, advantages, ref, values, states, max_len):
    if method == "reinforce":
        return pg.reinforce_loss(logps, mask, advantages)
    if method == "rloo":
        return pg.rloo_loss(logps, old, mask, advantages, epsilon_low=hp["epsilon_low"],
                            epsilon_high=hp["epsilon_high"])  # fmt: skip
    if method == "grpo":
        return pg.grpo_loss(logps, old, mask, advantages, ref, epsilon_low=hp["epsilon_low"],
                            epsilon_high=hp["epsilon_high"], beta=hp["beta"],
                            aggregation=hp["aggregation"],
                            max_completion_length=max_len)  # fmt: skip
    per_token, returns, old_values = advantages  # ppo
    return pg.ppo_loss(logps, old, mask, per_token, values[states], old_values, returns,
                       epsilon=hp["epsilon_low"], value_clip=hp["value_clip"],
                       vf_coef=hp["vf_coef"])  # fmt: skip
