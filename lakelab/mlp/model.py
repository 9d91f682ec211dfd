"""The Frozen Lake policy: a two-layer MLP over one-hot states, many seeds at once.

    logits = W2^T act(W1^T x + b1) + b2,    x = one-hot(state) (or a mixture of one-hots)

The IFT paper (section 5.3) uses "a two-layer fully connected network" as the policy; sizes
are ours (``hidden`` in the experiment config). Parameters of N independent seeds are stacked
on a leading dimension and every forward pass is one batched matmul (speed:
``docs/benchmarks.md``). Shapes: W1 [N, S, H], b1 [N, H], W2 [N, H, A], b2 [N, A].

With one-hot inputs, row ``W1[n, s, :]`` is state s's embedding and receives gradient only
when state s is an input: which states a method trains on decides which rows move. That is
the mechanism behind the IFT paper's pairing of "explored grids" with parameter distance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from lakelab.mlp.optim import Adam

Params = dict[str, torch.Tensor]
PARAM_NAMES = ("W1", "b1", "W2", "b2")
ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu}


def init_params(seeds: Sequence[int], n_states: int, n_actions: int, hidden: int) -> Params:
    """theta_0: one seeded initialisation per seed, PyTorch's ``nn.Linear`` scheme
    (weights and biases uniform in +-1/sqrt(fan_in)), float64."""
    out: dict[str, list[torch.Tensor]] = {k: [] for k in PARAM_NAMES}
    for seed in seeds:
        g = torch.Generator().manual_seed(int(seed))

        def uniform(*shape: int, fan_in: int, g: torch.Generator = g) -> torch.Tensor:
            bound = 1.0 / math.sqrt(fan_in)
            return (torch.rand(*shape, generator=g, dtype=torch.float64) * 2 - 1) * bound

        out["W1"].append(uniform(n_states, hidden, fan_in=n_states))
        out["b1"].append(uniform(hidden, fan_in=n_states))
        out["W2"].append(uniform(hidden, n_actions, fan_in=hidden))
        out["b2"].append(uniform(n_actions, fan_in=hidden))
    return {k: torch.stack(v) for k, v in out.items()}


def clone(params: Params, *, requires_grad: bool = False) -> Params:
    return {k: v.detach().clone().requires_grad_(requires_grad) for k, v in params.items()}


class FlatParams:
    """Parameters kept in one flat leaf tensor, ``flat``: W1, b1, W2, b2 one after another.

    ``views()`` gives them as a ``Params`` dict of views (call it once per step: the views
    carry that step's graph back to ``flat``), so an optimiser updates every parameter with
    one set of elementwise ops and a finiteness check is one sum. Values and gradients are
    those of separate tensors bit for bit (each view is contiguous; the gradient of ``flat``
    is the views' gradients laid end to end).
    """

    def __init__(self, params: Params) -> None:
        self.names = list(params)
        self.shapes = [v.shape for v in params.values()]
        self.sizes = [v.numel() for v in params.values()]
        self.flat = torch.cat([v.detach().reshape(-1) for v in params.values()])
        self.flat.requires_grad_(True)

    def views(self) -> Params:
        parts = self.flat.split(self.sizes)
        return {k: p.view(s) for k, p, s in zip(self.names, parts, self.shapes, strict=True)}


def forward(params: Params, x: torch.Tensor, activation: str = "tanh") -> torch.Tensor:
    """Action logits for input vectors ``x`` [N, ..., S] -> [N, ..., A]."""
    act = ACTIVATIONS[activation]
    n, s = x.shape[0], x.shape[-1]
    flat = x.reshape(n, -1, s)
    h = act(torch.baddbmm(params["b1"][:, None], flat, params["W1"]))  # (N, M, H)
    logits = torch.baddbmm(params["b2"][:, None], h, params["W2"])  # (N, M, A)
    return logits.reshape(*x.shape[:-1], logits.shape[-1])


def state_log_probs(params: Params, activation: str = "tanh") -> torch.Tensor:
    """log pi_theta(a | s) for every state: [N, S, A] (the policy as a table)."""
    # forward() on the one-hot inputs eye(S), without the matmul by the identity: row s of
    # eye(S) @ W1 is W1[s] exactly: values and gradients are the same bit for bit (test_mlp_model)
    h = ACTIVATIONS[activation](params["W1"] + params["b1"][:, None])  # (N, S, H)
    logits = torch.baddbmm(params["b2"][:, None], h, params["W2"])  # (N, S, A)
    return torch.log_softmax(logits, dim=-1)


def token_log_probs(
    params: Params, inputs: torch.Tensor, actions: torch.Tensor, activation: str = "tanh"
) -> torch.Tensor:
    """log pi_theta(a_t | x_t) for input vectors [N, B, T, S] and actions [N, B, T]."""
    logp = torch.log_softmax(forward(params, inputs, activation), dim=-1)
    return logp.gather(-1, actions.unsqueeze(-1)).squeeze(-1)


def param_mse(params: Params, target: Params) -> torch.Tensor:
    """Mean over all parameters of (theta - theta*)^2, per seed: [N] (the paper's metric)."""
    sq = sum(((params[k] - target[k]) ** 2).flatten(1).sum(1) for k in PARAM_NAMES)
    count = sum(params[k][0].numel() for k in PARAM_NAMES)
    return sq / count


def state_param_error(params: Params, target: Params) -> torch.Tensor:
    """Mean squared error of each state's first-layer weights W1[n, s, :]: [N, S]."""
    return ((params["W1"] - target["W1"]) ** 2).mean(-1)


def kl_per_state(target_probs: torch.Tensor, log_probs: torch.Tensor) -> torch.Tensor:
    """KL(pi* (. | s) || pi_theta(. | s)) for every state: [N, S]; target [S, A] or [N, S, A]."""
    target = target_probs.expand_as(log_probs)
    return (target * (torch.log(target.clamp_min(1e-300)) - log_probs)).sum(-1)


def fit_optimum(
    theta0: Params,
    target_probs: torch.Tensor,
    live: torch.Tensor,
    *,
    steps: int,
    lr: float,
    activation: str = "tanh",
) -> tuple[Params, torch.Tensor]:
    """theta*: theta_0 trained on the soft-optimal action probabilities.

    Minimises the mean over non-terminal states of KL(pi*(. | s) || pi_theta(. | s)) with Adam
    for a fixed number of steps (fixed, not "until every seed converged", so a seed's theta*
    does not depend on which other seeds share the batch), lr decayed by cosine to 0.
    Returns theta* and the KL reached per seed [N].
    """
    params = clone(theta0, requires_grad=True)
    opt = Adam(params, lr=lr)
    for t in range(steps):
        opt.lr = lr * 0.5 * (1 + math.cos(math.pi * t / steps))  # cosine decay to 0
        opt.zero_grad()
        kl = kl_per_state(target_probs, state_log_probs(params, activation))[:, live].mean(-1)
        kl.sum().backward()  # sum over seeds: each seed gets exactly its own gradient
        opt.step()
    with torch.no_grad():
        kl = kl_per_state(target_probs, state_log_probs(params, activation))[:, live].mean(-1)
    return clone(params), kl
