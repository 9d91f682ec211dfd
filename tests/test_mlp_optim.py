"""lakelab's Adam against torch.optim.Adam, step by step."""

import pytest
import torch

from lakelab.mlp.optim import Adam


def quadratic_loss(params):
    return sum(((p - 1.5) ** 4).sum() + (p * p.roll(1)).sum() for p in params.values())


@pytest.mark.parametrize("betas", [(0.9, 0.999), (0.5, 0.9)])
def test_adam_matches_torch_adam_over_many_steps_with_a_changing_lr(betas):
    g = torch.Generator().manual_seed(0)
    init = {
        "a": torch.randn(3, 4, generator=g, dtype=torch.float64),
        "b": torch.randn(5, dtype=torch.float64, generator=g),
    }
    ours = {k: v.clone().requires_grad_() for k, v in init.items()}
    theirs = {k: v.clone().requires_grad_() for k, v in init.items()}
    opt = Adam(ours, lr=0.05, betas=betas)
    ref = torch.optim.Adam(theirs.values(), lr=0.05, betas=betas, foreach=False)
    for t in range(60):
        lr = 0.05 / (1 + t)
        opt.lr = lr
        for group in ref.param_groups:
            group["lr"] = lr
        for o, params in ((opt, ours), (ref, theirs)):
            o.zero_grad()
            quadratic_loss(params).backward()
            o.step()
        for k in init:
            torch.testing.assert_close(ours[k], theirs[k], rtol=1e-13, atol=1e-15)
    assert not torch.equal(ours["a"], init["a"])  # it did move


def test_adam_rejects_bad_hyper_parameters():
    p = {"w": torch.zeros(2, requires_grad=True)}
    with pytest.raises(ValueError, match="lr must be"):
        Adam(p, lr=0.0)
    with pytest.raises(ValueError, match=r"betas must lie in \[0, 1\)"):
        Adam(p, lr=0.1, betas=(0.9, 1.0))
