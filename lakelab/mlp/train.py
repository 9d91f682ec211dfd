"""The plain training loop of the Frozen Lake track: one objective, one seed, top to bottom.

    theta = theta_0;  reference = theta_0 (frozen)
    for step in 0 .. steps - 1:
        every log_every steps: exact metrics from the MDP          (lakelab.mlp.metrics)
        chosen   <- batch_size trajectories of the seed's chosen pool
        rejected <- batch_size trajectories (objectives that need pairs): the offline pool,
                    or fresh episodes of the current policy, never a chosen trajectory
                    (unpaired objectives, KTO and BCO: chosen are the desirable examples,
                    rejected the undesirable ones, and no pairing is used)
        logps    <- log pi_theta(a_t | s_t) of every token (IFT: on mixed inputs, eq. 17)
        loss     <- compute_objective(method, logps, hparams)      (lakelab.objectives)
        loss.backward();  Adam step
    exact metrics once more after the last step

A logged row holds the exact metrics of the policy before that step and the objective's own
diagnostics (``batch/...``, TRL's names) from the step just before it.

A trajectory is a response: the "prompt" is the start state, each "token" an action a_t
taken in state s_t, with log-prob log pi_theta(a_t | s_t) from the MLP on the one-hot s_t.

``lakelab.mlp.joint`` computes the same for every method and seed at once (one stacked set
of parameters, the policy as a table instead of a forward pass per token, vectorised
sampling, hashes instead of sets); the tests check that both give the same numbers.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from lakelab.lakes import Lake
from lakelab.mlp import model
from lakelab.mlp.data import Trajectory, to_batch
from lakelab.mlp.experiment import (
    CHOSEN_BATCHES,
    ONLINE_DRAWS,
    ONLINE_NEGATIVES,
    REJECTED_BATCHES,
    MethodResult,
    Setup,
    batch_rows,
    logged,
)
from lakelab.mlp.metrics import exact_metrics
from lakelab.mlp.optim import Adam
from lakelab.mlp.replay import Tape
from lakelab.mlp.sampling import sample_plain
from lakelab.registry import SequenceLogps, compute_objective, get_objective
from lakelab.residual import temporal_residual
from lakelab.training import Diverged, torch_threads


def train(setup: Setup, method: str, seed_index: int = 0) -> MethodResult:
    """Fine-tune theta_0 of seed ``setup.seeds[seed_index]`` with objective ``method``.

    Returns that seed's logged rows, explored mass, per-state error and final policy (a
    ``MethodResult`` with one row). Raises ``Diverged`` naming method, seed and step if the
    loss or the parameters stop being finite.
    """
    with torch_threads(1):
        return _train(setup, method, seed_index)


def _train(setup: Setup, method: str, i: int) -> MethodResult:
    cfg, lake, seed = setup.config, setup.lake, setup.seeds[i]
    objective, hp = get_objective(method), cfg.method_hparams(method)
    theta0 = {k: v[i : i + 1] for k, v in setup.theta0.items()}  # one seed: N = 1
    target = {k: v[i : i + 1] for k, v in setup.theta_star.items()}
    theta = model.clone(theta0, requires_grad=True)
    optimizer = Adam(theta, lr=cfg.lr)

    chosen_pool, offline_pool = list(setup.chosen[i]), list(setup.offline[i])
    chosen_rows = batch_rows(len(chosen_pool), seed, CHOSEN_BATCHES, cfg)  # (steps, B)
    offline_rows = batch_rows(len(offline_pool), seed, REJECTED_BATCHES, cfg)
    online_rng = np.random.default_rng([seed, ONLINE_NEGATIVES])
    banned = {t.key() for t in chosen_pool}  # a rejected trajectory is never a chosen one

    explored = np.zeros(lake.n_states)  # input mass trained on so far: the explored grid
    rows, batch_metrics, fallbacks, tape = [], {}, 0.0, Tape()
    for step in range(cfg.steps + 1):
        if logged(step, cfg):
            metrics = exact_metrics(setup, theta, target, explored[None])[0]
            rows.append({"step": step, **metrics, "online_fallback": fallbacks, **batch_metrics})
            with torch.no_grad():  # the policy table at this logged step, for the replay
                tape.log(model.state_log_probs(theta, cfg.activation).exp().numpy(), explored[None])
        if step == cfg.steps:
            break

        chosen = [chosen_pool[j] for j in chosen_rows[step]]
        rejected = None
        if objective.needs_pairs and cfg.negatives == "offline":
            rejected = [offline_pool[j] for j in offline_rows[step]]
        elif objective.needs_pairs:  # online: episodes of the current policy
            with torch.no_grad():
                probs = model.state_log_probs(theta, cfg.activation)[0].exp().numpy()  # (S, A)
            rejected, missing = online_negatives(
                lake, probs, banned, offline_pool, cfg.batch_size, online_rng, cfg.max_len
            )
            fallbacks += missing
        if logged(step, cfg):  # the batch this logged step trains on, for the replay
            tape.batch(to_batch([chosen]), None if rejected is None else to_batch([rejected]))

        logps, used = sequence_logps(setup, method, hp, theta, theta0, chosen, rejected)
        explored += used
        loss, metrics = compute_objective(method, logps, hp)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

        finite = all(torch.isfinite(p).all() for p in theta.values())
        if not (math.isfinite(loss.item()) and finite):
            raise Diverged(
                f"{method} diverged at step {step} (seed {seed}): non-finite loss or "
                "parameters; lower lr or the objective's hyper-parameters"
            )
        if logged(step + 1, cfg):  # this step's batch metrics go with the next log
            batch_metrics = {"batch/loss": loss.item()}
            batch_metrics |= {f"batch/{k}": v for k, v in metrics.items()}

    with torch.no_grad():
        policy = model.state_log_probs(theta, cfg.activation).exp().numpy()
        error = model.state_param_error(theta, target).numpy()
    return MethodResult([rows], explored[None], error, policy, tape.data())


def online_negatives(
    lake: Lake,
    policy: np.ndarray,
    banned: set,
    offline: list[Trajectory],
    batch_size: int,
    rng: np.random.Generator,
    max_len: int,
) -> tuple[list[Trajectory], int]:
    """A rejected batch from the current ``policy`` [S, A]: of ``ONLINE_DRAWS * batch_size``
    fresh episodes, the first ``batch_size`` whose (states, actions) are not in ``banned``;
    once the policy reproduces its demonstrations few are left, and the missing slots are
    filled from the ``offline`` pool (cycled). Returns the batch and how many slots that took.
    """
    drawn = sample_plain(lake, policy, ONLINE_DRAWS * batch_size, rng, max_len=max_len)
    fresh = [t for t in drawn if t.key() not in banned][:batch_size]
    missing = batch_size - len(fresh)
    return fresh + [offline[k % len(offline)] for k in range(missing)], missing


def sequence_logps(
    setup: Setup,
    method: str,
    hp: dict,
    theta: model.Params,
    theta0: model.Params,
    chosen: list[Trajectory],
    rejected: list[Trajectory] | None,
) -> tuple[SequenceLogps, np.ndarray]:
    """Per-token log-probs (B, T) of ``chosen`` (and ``rejected``) under ``theta`` and, for
    objectives with a reference, under the frozen ``theta0``; and the input mass the batch
    trained on [S] (its inputs summed over tokens)."""
    S, act = setup.lake.n_states, setup.config.activation
    c = to_batch([chosen])  # (1, B, T): padded states, actions, mask
    x_c = c.inputs(S)  # (1, B, T, S) one-hot states, zero on padding
    if get_objective(method).mixed_pass:  # IFT: the second pass on mixed inputs
        x_c = ift_inputs(setup, hp, theta, c.states, x_c)
    logp_c = model.token_log_probs(theta, x_c, c.actions, act)[0]  # (B, T)
    # mixed inputs are non-zero on padding too: count the response positions only
    used = (x_c * c.mask[..., None])[0].sum((0, 1)).detach().numpy()  # (S,)
    logps = {"chosen": logp_c, "chosen_mask": c.mask[0]}
    if rejected is not None:
        r = to_batch([rejected])
        x_r = r.inputs(S)
        logps.update(rejected=model.token_log_probs(theta, x_r, r.actions, act)[0])
        logps.update(rejected_mask=r.mask[0])
        used = used + x_r[0].sum((0, 1)).numpy()  # one-hot inputs: zero on padding
        if get_objective(method).needs_reference:
            with torch.no_grad():
                logps.update(ref_chosen=model.token_log_probs(theta0, x_c, c.actions, act)[0])
                logps.update(ref_rejected=model.token_log_probs(theta0, x_r, r.actions, act)[0])
    if get_objective(method).needs_sum_sq:  # WPO: log sum_a pi(a | s)^2 at each token's state
        with torch.no_grad():
            table = model.state_log_probs(theta, act)[0]  # (S, A)
        sq = torch.logsumexp(2 * table, -1)  # (S,)
        logps.update(chosen_log_sum_sq=sq[c.states[0]], rejected_log_sum_sq=sq[r.states[0]])
    if get_objective(method).mismatched:
        # KTO's mismatched pairs: prompt i with response i - 1. Every example's prompt is the
        # start state, so they are the batch's own trajectories, desirable then undesirable.
        e = to_batch([chosen + rejected])
        x_e = e.inputs(S)
        with torch.no_grad():
            logps.update(kl=model.token_log_probs(theta, x_e, e.actions, act)[0])
            logps.update(ref_kl=model.token_log_probs(theta0, x_e, e.actions, act)[0])
        logps.update(kl_mask=e.mask[0])
    return SequenceLogps(**logps), used


def ift_inputs(
    setup: Setup, hp: dict, theta: model.Params, states: torch.Tensor, x: torch.Tensor
) -> torch.Tensor:
    """IFT's mixed inputs on the lake (eq. 17): (1 - lam) one_hot(s_i) + lam * the next-state
    distribution the policy predicts from s_{i-1}; position 0 (the start state) unmixed.

    Pass 1 (no grad) predicts from every state s: "greedy" follows the policy's most likely
    action, P(. | s, argmax_a pi(a | s)) (the official code's argmax); "expected" averages over
    actions, sum_a pi(a | s) P(. | s, a) (eq. 17 read literally). ``states``, ``x``: the
    batch's states (1, B, T) and one-hot inputs (1, B, T, S).
    """
    P = torch.tensor(setup.lake.P)  # (S, A, S') transition probabilities
    with torch.no_grad():
        pi = model.state_log_probs(theta, setup.config.activation)[0].exp()  # (S, A)
        if hp["residual"] == "greedy":
            next_state = P[torch.arange(len(pi)), pi.argmax(-1)]  # (S, S')
        else:
            next_state = torch.einsum("sa,sat->st", pi, P)  # (S, S')
    predicted = next_state[states[0]]  # (B, T, S): predicted at position i, for input i + 1
    # no position is prompt; position 0 keeps its input anyway, having no prediction before it
    no_prompt = torch.zeros(states.shape[1:], dtype=torch.bool)
    return temporal_residual(x[0], predicted, no_prompt, lam=hp["lam"])[None]  # (1, B, T, S)
