"""From the policy table to the per-token log-probs the objectives consume, on the lake.

With one-hot inputs the MLP's log pi(a | s) for every state is one table [N, S, A] per step
(``policy.state_log_probs``), and a token's log-prob is a lookup in it: the same function and
gradient as a forward pass per token. IFT is the exception: its second pass runs the network
on mixed inputs (eq. 17), once per distinct pair (s_{i-1}, s_i). Besides the log-probs,
``policy_logps`` returns the input mass the batch trained on, the experiment's "explored
grid".
"""

from __future__ import annotations

import numpy as np
import torch

from lakelab.mlp import model
from lakelab.mlp.data import Batch
from lakelab.registry import SequenceLogps, get_objective
from lakelab.residual import temporal_residual


def policy_logps(
    method: str,
    hp: dict,
    *,
    params: model.Params | None,
    table: torch.Tensor,
    ref_table: torch.Tensor,
    chosen: Batch,
    rejected: Batch | None,
    P: torch.Tensor,
    activation: str,
) -> tuple[SequenceLogps, np.ndarray]:
    """Per-token log-probs [N * B, T] the objective needs (rows n * B .. (n + 1) * B: seed
    n's batch), and the input mass [N, S] trained on (numpy).

    ``table``: log pi_theta(a | s) [N, S, A] (with grad), ``ref_table``: the same for the
    frozen theta_0. With one-hot inputs a token's log-prob is the lookup table[n, s_t, a_t],
    the same function (and gradient) as a forward pass per token (speed: docs/benchmarks.md;
    the plain version is ``lakelab.mlp.train.sequence_logps``). IFT's mixed inputs are the
    exception (``ift_logps``: ``params``, the rows' parameters, and ``P``, the lake's
    dynamics [S, A, S'], are for it).
    """
    N, S, A = table.shape
    if get_objective(method).mixed_pass:  # IFT: per (s_{i-1}, s_i) pair; needs no reference
        logp_c, used = ift_logps(hp, params, table, chosen, P, activation)
        logp_c, at_c = logp_c.flatten(0, 1), None
    else:
        at_c, used = tokens(chosen, S, A)
        logp_c = lookup(table, at_c, chosen)
    logp_r = ref_c = ref_r = None
    if rejected is not None:
        at_r, used_r = tokens(rejected, S, A)
        used = used + used_r
        logp_r = lookup(table, at_r, rejected)
        if get_objective(method).needs_reference:
            ref_c, ref_r = lookup(ref_table, at_c, chosen), lookup(ref_table, at_r, rejected)
    mask_c = chosen.mask.flatten(0, 1)
    mask_r = None if rejected is None else rejected.mask.flatten(0, 1)
    extra = {}
    if get_objective(method).mismatched:
        kl = mismatched_pairs(N, (logp_c.detach(), mask_c, ref_c), (logp_r.detach(), mask_r, ref_r))
        extra = dict(zip(("kl", "kl_mask", "ref_kl"), kl, strict=True))
    if get_objective(method).needs_sum_sq:  # WPO: log sum_a pi(a | s_t)^2 of each token's state
        sq = torch.logsumexp(2 * table.detach(), -1).reshape(-1)  # (N * S,): entry (n, s)
        extra["chosen_log_sum_sq"] = sq.index_select(0, at_c // A).view_as(logp_c)
        extra["rejected_log_sum_sq"] = sq.index_select(0, at_r // A).view_as(logp_r)
    return SequenceLogps(logp_c, mask_c, logp_r, mask_r, ref_c, ref_r, **extra), used


def mismatched_pairs(N: int, *kinds: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """KTO's mismatched pairs on the lake: (log-probs, mask, reference log-probs) [N * M, T].

    A mismatched pair is one example's prompt with another example's response. On the lake
    every example has the same prompt, the start state, so pairing prompt i with response
    i - 1 gives response i - 1 itself: the mismatched pairs of a seed's batch are its own
    examples, desirable then undesirable (rows n * M .. (n + 1) * M: seed n's). ``kinds``:
    each kind's three tensors [N * B_k, T_k].
    """
    T = max(k[0].shape[1] for k in kinds)

    def per_seed(x: torch.Tensor) -> torch.Tensor:  # [N * B, T_k] -> [N, B, T], zero-padded
        x = torch.nn.functional.pad(x, (0, T - x.shape[1]))
        return x.view(N, -1, T)

    return tuple(torch.cat([per_seed(k[j]) for k in kinds], 1).flatten(0, 1) for j in range(3))


def tokens(batch: Batch, n_states: int, n_actions: int) -> tuple[torch.Tensor, np.ndarray]:
    """Each token's entry (n, s_t, a_t) of a table [N, S, A] as a flat index [N * B * T], and
    how often each state is an input of ``batch`` [N, S] (its one-hot inputs summed)."""
    states, mask = batch.states.numpy(), batch.mask.numpy()
    N = states.shape[0]
    at = np.arange(N)[:, None, None] * n_states + states  # (N, B, T): entry (n, s_t)
    counts = np.bincount(at[mask], minlength=N * n_states).reshape(N, n_states)
    return torch.from_numpy((at * n_actions + batch.actions.numpy()).ravel()), counts.astype(float)


def lookup(table: torch.Tensor, index: torch.Tensor, batch: Batch) -> torch.Tensor:
    """table[n, s_t, a_t] for every token of ``batch`` [N, B, T], as [N * B, T].
    (``index_select`` on the flat table is the same gather as ``table[n, s, a]``, with the
    same gradient; speed: docs/benchmarks.md.)"""
    return table.reshape(-1).index_select(0, index).view(-1, batch.states.shape[-1])


def ift_logps(
    hp: dict,
    params: model.Params,
    table: torch.Tensor,
    chosen: Batch,
    P: torch.Tensor,
    activation: str,
) -> tuple[torch.Tensor, np.ndarray]:
    """IFT's per-token log-probs on the lake (eq. 17) and the input mass they trained on.

    Pass 1 (no grad) predicts the next state from each state with the current policy
    (greedy: P(. | s, argmax_a pi); expected: sum_a pi(a | s) P(. | s, a)). Pass 2 runs the
    network on (1 - lam) one_hot(s_i) + lam * prediction from s_{i-1}, targets the true
    actions; position 0 (the start state, the prompt) is not mixed. A token's mixed input
    depends only on the pair (s_{i-1}, s_i), so pass 2 runs once per distinct pair in the
    batch and each token looks its pair up (speed: docs/benchmarks.md; the plain version,
    one input per token, is ``lakelab.mlp.train.ift_inputs``).
    """
    N, S, _ = table.shape
    lam = hp["lam"]
    seed = torch.arange(N)[:, None, None]
    with torch.no_grad():
        probs = table.exp()  # (N, S, A)
        if hp["residual"] == "greedy":
            nxt = P[torch.arange(S), probs.argmax(-1)]  # (N, S, S')
        else:
            nxt = torch.einsum("nsa,sat->nst", probs, P)  # (N, S, S')
    states = chosen.states.numpy()
    pairs, inverse = np.unique(states[..., :-1] * S + states[..., 1:], return_inverse=True)
    two = torch.from_numpy(np.stack([pairs // S, pairs % S], -1))  # (U, 2): (s_{i-1}, s_i)
    inverse = torch.from_numpy(inverse.reshape(states[..., 1:].shape))  # (N, B, T - 1)
    U = len(pairs)
    x = torch.nn.functional.one_hot(two, S).double().expand(N, U, 2, S)  # (N, U, 2, S)
    mixed = temporal_residual(
        x.reshape(N * U, 2, S),
        nxt[:, two].reshape(N * U, 2, S),  # predicted next state from each position
        torch.zeros(N * U, 2, dtype=torch.bool),
        lam=lam,
    )[:, 1].reshape(N, U, S)  # position 1: (1 - lam) one_hot(s_i) + lam * pred(s_{i-1})
    logp_pairs = torch.log_softmax(model.forward(params, mixed, activation), -1)
    first = table[seed, chosen.states[..., :1], chosen.actions[..., :1]]  # (N, B, 1) unmixed
    rest = logp_pairs[seed, inverse, chosen.actions[..., 1:]]  # (N, B, T - 1)
    # input mass: the start state once per trajectory, each later token's mixed input
    per_pair = torch.zeros(N, U, dtype=torch.float64)
    per_pair.scatter_add_(1, inverse.flatten(1), chosen.mask[..., 1:].flatten(1).double())
    _, start = tokens(
        Batch(chosen.states[..., :1], chosen.actions[..., :1], chosen.mask[..., :1]), S, 1
    )
    used = start + torch.einsum("nu,nus->ns", per_pair, mixed.detach()).numpy()
    return torch.cat([first, rest], -1), used
