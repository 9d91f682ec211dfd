"""On-policy RL on the lake: REINFORCE, RLOO, GRPO and PPO train theta_0 on episodes their
own policy samples, judged by the same exact metrics as the preference objectives. The plain
loop (``train_online_plain``), for one seed:

    theta = theta_0;  reference = theta_0 (frozen, for GRPO's KL)
    for step in 0 .. steps - 1:
        every log_every steps: exact metrics from the MDP          (lakelab.mlp.metrics)
        episodes <- batch_size episodes of the current policy, in groups of group_size
        rewards  <- 1 for reaching the goal, minus step_penalty per move
        A        <- the method's advantages                          (lakelab.policy_gradient)
        old      <- log pi_theta(a_t | s_t) now, detached: the sampling policy
        inner_steps times: loss <- the method's loss on (logps, old, A); Adam step
    exact metrics once more after the last step

``train_online`` computes the same for every seed at once (stacked parameters, one
vectorised simulation, one backward pass per inner step); the tests check they agree.

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
from lakelab.mlp.replay import Tape, stack
from lakelab.mlp.sampling import sample, sample_many
from lakelab.rl_methods import get_rl_method, resolve_rl_hparams
from lakelab.training import Diverged, torch_threads

ONLINE_RL = 6  # the stream of each seed's episodes: np.random.default_rng([seed, ONLINE_RL])


def train_online_plain(
    setup: Setup, method: str, seed_index: list[int] | None = None
) -> MethodResult:
    """Train RL ``method`` for the seeds ``seed_index`` (indices into ``setup.seeds``, all
    by default), each alone, as the module docstring says; their results stacked."""
    idx = list(range(len(setup.seeds))) if seed_index is None else list(seed_index)
    with torch_threads(1):
        parts = [_train(setup, method, i) for i in idx]
    return MethodResult(
        [p.rows[0] for p in parts],
        np.concatenate([p.explored for p in parts]),
        np.concatenate([p.state_error for p in parts]),
        np.concatenate([p.final_policy for p in parts]),
        stack([p.replay for p in parts]),
    )


def _settings(setup: Setup, method: str) -> tuple:
    """The method's entry and hyper-parameters; ValueError unless a batch holds whole groups."""
    rl = get_rl_method(method)
    hp = resolve_rl_hparams(method, setup.config.hparams.get(method))
    if setup.config.batch_size % hp["group_size"]:
        raise ValueError(
            f"{method}: batch_size {setup.config.batch_size} is not a whole number of groups "
            f"of group_size {hp['group_size']}"
        )
    return rl, hp


def _train(setup: Setup, method: str, i: int) -> MethodResult:
    cfg, lake, seed = setup.config, setup.lake, setup.seeds[i]
    rl, hp = _settings(setup, method)
    G = hp["group_size"]
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
    rows, batch_metrics, tape = [], {}, Tape()
    for step in range(cfg.steps + 1):
        if logged(step, cfg):
            metrics = exact_metrics(setup, theta, target, explored[None])[0]
            rows.append({"step": step, **metrics, "online_fallback": 0.0, **batch_metrics})
            with torch.no_grad():  # the policy table at this logged step, for the replay
                tape.log(model.state_log_probs(theta, cfg.activation).exp().numpy(), explored[None])
        if step == cfg.steps:
            break
        with torch.no_grad():
            table = model.state_log_probs(theta, cfg.activation)[0]  # (S, A)
        episodes = sample(lake, table.exp().numpy(), cfg.batch_size, rng, max_len=cfg.max_len)
        batch = to_batch([episodes])  # (1, B, T)
        states, actions, mask = batch.states[0], batch.actions[0], batch.mask[0]
        explored += np.bincount(states[mask].numpy(), minlength=lake.n_states)
        goal = lake.goal[episodes.final]  # (B,) bool: reached the goal
        reached = torch.from_numpy(goal).double()
        if logged(step, cfg):  # the replay shows the episodes that reached the goal as chosen
            tape.batch(batch, batch, keep={"chosen": goal[None], "rejected": ~goal[None]})
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
            batch_metrics = _batch_metrics(rewards, G, found)
    with torch.no_grad():
        policy = model.state_log_probs(theta, cfg.activation).exp().numpy()
        error = model.state_param_error(theta, target).numpy()
    return MethodResult([rows], explored[None], error, policy, tape.data())


def train_online(setup: Setup, method: str, seed_index: list[int] | None = None) -> MethodResult:
    """``train_online_plain``'s numbers with every seed in one batched computation: one
    stacked set of parameters, one vectorised simulation of every seed's episodes (each from
    its own generator), one backward pass and one Adam update per inner step for all seeds;
    each seed's loss is computed on its own rows (tested against the plain loop)."""
    idx = list(range(len(setup.seeds))) if seed_index is None else list(seed_index)
    with torch_threads(1):
        return _train_joint(setup, method, idx)


def _train_joint(setup: Setup, method: str, idx: list[int]) -> MethodResult:
    cfg, lake = setup.config, setup.lake
    rl, hp = _settings(setup, method)
    G, B, N, S = hp["group_size"], cfg.batch_size, len(idx), lake.n_states
    seeds = [setup.seeds[i] for i in idx]
    theta0 = {k: v[idx] for k, v in setup.theta0.items()}
    target = {k: v[idx] for k, v in setup.theta_star.items()}
    theta = model.FlatParams(theta0)  # one leaf for every seed's parameters
    leaves = {"flat": theta.flat}
    values = None
    if rl.advantage == "gae":
        values = torch.zeros(N, S, dtype=torch.float64, requires_grad=True)
        leaves["value"] = values
    optimizer = Adam(leaves, lr=cfg.lr)
    with torch.no_grad():
        ref_table = model.state_log_probs(theta0, cfg.activation)  # (N, S, A)
    rngs = [np.random.default_rng([seed, ONLINE_RL]) for seed in seeds]
    explored = np.zeros((N, S))
    rows: list[list[dict]] = [[] for _ in idx]
    batch_metrics: list[dict] = [{} for _ in idx]
    row = torch.arange(N)[:, None, None]
    tape = Tape()
    for step in range(cfg.steps + 1):
        if logged(step, cfg):
            found_rows = exact_metrics(setup, theta.views(), target, explored)
            for n, metrics in enumerate(found_rows):
                rows[n].append({"step": step, **metrics, "online_fallback": 0.0,
                                **batch_metrics[n]})  # fmt: skip
            with torch.no_grad():  # the policy tables at this logged step, for the replay
                tables = model.state_log_probs(theta.views(), cfg.activation).exp().numpy()
            tape.log(tables, explored)
        if step == cfg.steps:
            break
        with torch.no_grad():
            table = model.state_log_probs(theta.views(), cfg.activation)  # (N, S, A)
        episodes = sample_many(lake, table.exp().numpy(), B, rngs, max_len=cfg.max_len)
        per_seed = [episodes.take(np.arange(n * B, (n + 1) * B)) for n in range(N)]
        batch = to_batch(per_seed)  # (N, B, T)
        states, actions, mask = batch.states, batch.actions, batch.mask
        for n in range(N):
            explored[n] += np.bincount(states[n][mask[n]].numpy(), minlength=S)
        goal = lake.goal[episodes.final].reshape(N, B)  # reached the goal
        reached = torch.from_numpy(goal).double()
        if logged(step, cfg):  # the replay shows the episodes that reached the goal as chosen
            tape.batch(batch, batch, keep={"chosen": goal, "rejected": ~goal})
        lengths = torch.from_numpy(episodes.lengths).double().view(N, B)
        rewards = reached - hp["step_penalty"] * lengths
        old = table[row, states, actions]  # (N, B, T)
        ref = ref_table[row, states, actions]
        advantages = [
            _advantages(
                rl.advantage,
                rewards[n],
                G,
                hp,
                None if values is None else values[n],
                states[n],
                mask[n],
                cfg.gamma,
            )
            for n in range(N)
        ]
        for _ in range(hp["inner_steps"]):
            logps = model.state_log_probs(theta.views(), cfg.activation)[row, states, actions]
            total, found = 0.0, []
            for n in range(N):  # each seed's loss on its own rows; their sum, one backward
                v = None if values is None else values[n]
                loss, f = _loss(method, hp, logps[n], old[n], mask[n], advantages[n], ref[n], v,
                                states[n], cfg.max_len)  # fmt: skip
                total, found = total + loss, [*found, f]
            optimizer.zero_grad()
            total.backward()
            optimizer.step()
            _check_finite(method, seeds, step, total, theta, values)
        if logged(step + 1, cfg):
            batch_metrics = [_batch_metrics(rewards[n], G, found[n]) for n in range(N)]
    with torch.no_grad():
        params = theta.views()
        policy = model.state_log_probs(params, cfg.activation).exp().numpy()
        error = model.state_param_error(params, target).numpy()
    return MethodResult(rows, explored, error, policy, tape.data())


def _check_finite(method: str, seeds: list[int], step: int, total, theta, values) -> None:
    """Raise ``Diverged`` naming the method, the first seed whose parameters are not finite
    (the first seed if only the summed loss is), and the step."""
    rows = [v.detach().flatten(1) for v in theta.views().values()]
    if values is not None:
        rows.append(values.detach())
    bad = ~torch.cat(rows, 1).isfinite().all(1)  # (N,)
    if math.isfinite(total.item()) and not bad.any():
        return
    first = seeds[int(bad.nonzero()[0])] if bad.any() else seeds[0]
    raise Diverged(
        f"{method} diverged at step {step} (seed {first}): non-finite loss or parameters; "
        "lower lr or the method's hyper-parameters"
    )


def _batch_metrics(rewards: torch.Tensor, G: int, found: dict) -> dict[str, float]:
    """TRL's reward diagnostics of a seed's batch, and the loss's own metrics."""
    return {
        "batch/reward": rewards.mean().item(),
        "batch/reward_std": rewards.std().item(),
        "batch/frac_reward_zero_std": _zero_std_share(rewards, G),
        **{f"batch/{k}": v for k, v in found.items()},
    }


def _zero_std_share(rewards: torch.Tensor, G: int) -> float:
    """The share of groups whose rewards are all equal, up to rounding (TRL's isclose test,
    grpo_trainer.py:2788): they give GRPO no signal."""
    std = rewards.view(-1, G).std(1)
    return torch.isclose(std, torch.zeros_like(std)).double().mean().item()


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
