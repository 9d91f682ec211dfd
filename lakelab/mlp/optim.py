"""Adam (Kingma & Ba 2015, Algorithm 1), written out for the Frozen Lake policy.

    m_t = b1 m_{t-1} + (1 - b1) g_t            v_t = b2 v_{t-1} + (1 - b2) g_t^2
    m^_t = m_t / (1 - b1^t)                    v^_t = v_t / (1 - b2^t)
    theta_t = theta_{t-1} - lr * m^_t / (sqrt(v^_t) + eps)

Why not ``torch.optim.Adam``: the update is elementwise, so one instance serves all seeds
stacked on the leading dimension; the formula is visible to students; and it spares the
imports of ``torch.optim`` (speed: ``docs/benchmarks.md``). The tests check it against
``torch.optim.Adam`` step by step.
"""

from __future__ import annotations

import math

import torch


class Adam:
    """Adam over a dict of leaf tensors (``requires_grad=True``); ``lr`` may be changed
    between steps (schedules)."""

    def __init__(
        self,
        params: dict[str, torch.Tensor],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas must lie in [0, 1), got {betas!r}")
        self.params, self.lr, self.betas, self.eps = params, lr, betas, eps
        self.m = {k: torch.zeros_like(p) for k, p in params.items()}
        self.v = {k: torch.zeros_like(p) for k, p in params.items()}
        self.t = 0

    def zero_grad(self) -> None:
        for p in self.params.values():
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        b1, b2 = self.betas
        self.t += 1
        bias1, bias2 = 1 - b1**self.t, 1 - b2**self.t
        for k, p in self.params.items():
            if p.grad is None:
                continue
            g, m, v = p.grad, self.m[k], self.v[k]
            m.mul_(b1).add_(g, alpha=1 - b1)  # m_t
            v.mul_(b2).addcmul_(g, g, value=1 - b2)  # v_t
            denom = (v.sqrt() / math.sqrt(bias2)).add_(self.eps)  # sqrt(v^_t) + eps
            p.addcdiv_(m, denom, value=-self.lr / bias1)  # theta -= lr * m^_t / denom
