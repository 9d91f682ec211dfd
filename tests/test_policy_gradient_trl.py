"""TRL's own GRPO and RLOO losses (tests/trl_policy_gradient.py) against
``lakelab.policy_gradient``'s ``grpo_loss`` and ``rloo_loss``.

The batches are random float64 per-token log-probs whose responses have unequal lengths
(left-aligned, padding after). Off the mask, the current, old and reference log-probs hold
arbitrary finite values (-20 to 5), which neither side may read. On the mask the old log-probs
sit near the current ones, so that in every batch some ratios clip below, some clip above
(some only at epsilon_high 0.2, not at 0.28) and some do not clip (checked). For each TRL
loss type (grpo, bnpo, dr_grpo, dapo), at epsilon 0.2 and at (0.2, 0.28), at beta 0 and 0.04,
TRL's loss must equal lakelab's to rel 1e-12 and its gradient with respect to the log-probs
agree to 1e-12. The metrics TRL logs in ``self._metrics`` must agree too: ``kl`` to rel
1e-12, and the ``clip_ratio/*`` means exactly once rounded to float32, the precision TRL
computes them in (``is_low_clipped.float()``, grpo_trainer.py:3277-3279 and
rloo_trainer.py:1853-1860). RLOO is tried the same way at both epsilon settings.

One known difference: ``GRPOConfig.use_bias_correction_kl`` defaults to True
(grpo_config.py:972-981), and TRL then multiplies the per-token KL by the ratio
(grpo_trainer.py:3104-3105). lakelab's ``grpo_loss`` adds the plain k3, so at beta 0.04 the
comparisons above run TRL with ``use_bias_correction_kl=False``. A separate test pins the
difference down: under TRL's default the loss and ``kl`` differ off-policy, and on-policy the
loss value agrees while its gradient does not. A non-vacuity test shows that the checks can
fail: lakelab's per-sequence "grpo" aggregation is not TRL's "dapo" on unequal lengths, and
epsilons swapped between the two sides change both the loss and the clip ratios.

Skipped without trl (an optional extra). The TRL import (some 6 s, plus some 3 s for the first
``TrainingArguments``) happens in the fixture, so collecting this file does not import TRL.
"""

from __future__ import annotations

import pytest
import torch

from lakelab.policy_gradient import grpo_loss, rloo_loss
from tests.trl_policy_gradient import trl_grpo, trl_rloo

pytestmark = pytest.mark.slow  # importing TRL's trainers takes some 6 s

F64 = torch.float64
REL = 1e-12  # the losses and kl
GRAD = 1e-12  # the gradients, absolute and relative
SEEDS = (0, 1, 2)
AGGREGATIONS = ("grpo", "bnpo", "dr_grpo", "dapo")  # lakelab's names are TRL's loss types
EPSILONS = {"symmetric": (0.2, None), "asymmetric": (0.2, 0.28)}
BETAS = (0.0, 0.04)
CLIP_METRICS = ("clip_ratio/low_mean", "clip_ratio/high_mean", "clip_ratio/region_mean")
ROWS, WIDTH = 16, 8
MAX_COMPLETION_LENGTH = WIDTH + 3  # dr_grpo's constant: not the batch's width


@pytest.fixture(scope="module")
def trl():
    """The two harnesses, once trl is known to be importable."""
    pytest.importorskip("trl")
    return trl_grpo, trl_rloo


def _batch(seed: int, *, rows: int = ROWS, noise: float = 0.3) -> dict[str, torch.Tensor]:
    """logps (differentiable), old_logps, ref_logps (rows, WIDTH), a bool mask on left-aligned
    responses of unequal lengths (one full row, one of a single token), advantages (rows,).
    On the mask, old = logps + noise N(0, 1) per token; off it, every tensor is garbage."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, WIDTH + 1, (rows,), generator=g)
    lengths[0], lengths[1] = WIDTH, 1
    mask = torch.arange(WIDTH) < lengths[:, None]

    def garbage():
        return torch.empty(rows, WIDTH, dtype=F64).uniform_(-20.0, 5.0, generator=g)

    logps = -3.0 * torch.rand(rows, WIDTH, dtype=F64, generator=g)
    old = logps + noise * torch.randn(rows, WIDTH, dtype=F64, generator=g)
    ref = logps + 0.5 * torch.randn(rows, WIDTH, dtype=F64, generator=g)
    logps, old, ref = (torch.where(mask, x, garbage()) for x in (logps, old, ref))
    advantages = torch.randn(rows, dtype=F64, generator=g)
    return {"logps": logps.requires_grad_(), "old_logps": old, "mask": mask,
            "advantages": advantages, "ref_logps": ref}  # fmt: skip


def _rloo_batch(seed: int) -> dict[str, torch.Tensor]:
    """A batch for RLOO's sequence-level ratio: more rows, less noise per token (the ratio's
    log is a sum over up to WIDTH tokens)."""
    batch = _batch(seed, rows=64, noise=0.12)
    del batch["ref_logps"]
    return batch


def _grad(loss: torch.Tensor, logps: torch.Tensor) -> torch.Tensor:
    (grad,) = torch.autograd.grad(loss, logps)
    return grad


def _float32(value: float) -> float:
    return torch.tensor(value, dtype=torch.float32).item()


def _assert_agree(trl_out, lake_out, logps, *, kl: bool) -> None:
    (trl_loss, trl_metrics), (lake_loss, lake_metrics) = trl_out, lake_out
    assert trl_loss.dtype == F64
    torch.testing.assert_close(trl_loss, lake_loss, rtol=REL, atol=0.0)
    torch.testing.assert_close(
        _grad(trl_loss, logps), _grad(lake_loss, logps), rtol=GRAD, atol=GRAD
    )
    assert ("kl" in trl_metrics) == kl == ("kl" in lake_metrics)
    if kl:
        assert trl_metrics["kl"] == pytest.approx(lake_metrics["kl"], rel=REL, abs=0.0)
    for name in CLIP_METRICS:
        assert trl_metrics[name] == _float32(lake_metrics[name]), name


def _log_ratio_cases(log_ratio, advantages, mask) -> dict[str, int]:
    """How many ratios (where ``mask``) clip below at 0.2, clip above at 0.28, clip above at
    0.2 only, and lie inside [0.8, 1.2]."""
    ratio = torch.exp(log_ratio)
    positive = (advantages > 0) & mask
    return {
        "low": int(((ratio < 0.8) & (advantages < 0) & mask).sum()),
        "high": int(((ratio > 1.28) & positive).sum()),
        "high at 0.2 only": int(((ratio > 1.2) & (ratio <= 1.28) & positive).sum()),
        "inside": int(((ratio >= 0.8) & (ratio <= 1.2) & mask).sum()),
    }


@pytest.mark.parametrize("seed", SEEDS)
def test_batches_are_not_vacuous(seed):
    """Unequal lengths, garbage off the mask, and every clipping case present in each batch,
    per token (GRPO) and per sequence (RLOO)."""
    b = _batch(seed)
    lengths = b["mask"].sum(-1)
    assert lengths.min() == 1 and lengths.max() == WIDTH and len(set(lengths.tolist())) > 2
    off = ~b["mask"]
    for name in ("logps", "old_logps", "ref_logps"):
        assert b[name][off].abs().max() > 5.0, name  # not a log-prob of the batch
    cases = _log_ratio_cases(b["logps"].detach() - b["old_logps"], b["advantages"][:, None],
                             b["mask"])  # fmt: skip
    assert min(cases.values()) > 0, cases

    r = _rloo_batch(seed)
    summed = torch.where(r["mask"], r["logps"].detach() - r["old_logps"], 0.0).sum(-1)
    cases = _log_ratio_cases(summed, r["advantages"], torch.ones_like(summed, dtype=torch.bool))
    assert min(cases.values()) > 0, cases


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize("epsilons", EPSILONS.values(), ids=EPSILONS.keys())
@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_grpo_matches_trl(trl, aggregation, epsilons, beta, seed):
    """grpo_loss(aggregation=t) is GRPOTrainer(loss_type=t): loss, gradient, kl, clip ratios.
    At beta > 0 TRL runs without its default KL bias correction (the module docstring)."""
    trl_grpo, _ = trl
    b = _batch(seed)
    low, high = epsilons
    out_trl = trl_grpo(
        b["logps"], b["old_logps"], b["mask"], b["advantages"], b["ref_logps"],
        loss_type=aggregation, epsilon=low, epsilon_high=high, beta=beta,
        max_completion_length=MAX_COMPLETION_LENGTH, use_bias_correction_kl=False,
    )  # fmt: skip
    out_lake = grpo_loss(
        b["logps"], b["old_logps"], b["mask"], b["advantages"], b["ref_logps"],
        epsilon_low=low, epsilon_high=high, beta=beta, aggregation=aggregation,
        max_completion_length=MAX_COMPLETION_LENGTH,
    )  # fmt: skip
    _assert_agree(out_trl, out_lake, b["logps"], kl=beta > 0)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("epsilons", EPSILONS.values(), ids=EPSILONS.keys())
def test_rloo_matches_trl(trl, epsilons, seed):
    """rloo_loss is RLOOTrainer's loss: loss, gradient, clip ratios (sequence-level)."""
    _, trl_rloo = trl
    b = _rloo_batch(seed)
    low, high = epsilons
    out_trl = trl_rloo(
        b["logps"], b["old_logps"], b["mask"], b["advantages"], epsilon=low, epsilon_high=high
    )
    out_lake = rloo_loss(
        b["logps"], b["old_logps"], b["mask"], b["advantages"],
        epsilon_low=low, epsilon_high=high,
    )  # fmt: skip
    _assert_agree(out_trl, out_lake, b["logps"], kl=False)


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_trl_default_kl_bias_correction_is_lakelabs_option(trl, aggregation):
    """Under GRPOConfig's default use_bias_correction_kl=True, TRL's KL term is rho * k3
    (grpo_trainer.py:3104-3105): lakelab's grpo_loss with use_bias_correction_kl=True gives
    it to 1e-12, and without it (the paper's k3) differs off-policy."""
    trl_grpo, _ = trl
    b = _batch(0)
    settings = {"beta": 0.04, "max_completion_length": MAX_COMPLETION_LENGTH}
    args = (b["mask"], b["advantages"], b["ref_logps"])
    trl_loss, trl_metrics = trl_grpo(b["logps"], b["old_logps"], *args, loss_type=aggregation,
                                     **settings)  # fmt: skip
    lake_loss, lake_metrics = grpo_loss(b["logps"], b["old_logps"], *args, aggregation=aggregation,
                                        use_bias_correction_kl=True, **settings)  # fmt: skip
    torch.testing.assert_close(trl_loss, lake_loss, rtol=REL, atol=0.0)
    torch.testing.assert_close(_grad(trl_loss, b["logps"]), _grad(lake_loss, b["logps"]),
                               rtol=REL, atol=REL)  # fmt: skip
    assert trl_metrics["kl"] == pytest.approx(lake_metrics["kl"], rel=REL)
    plain, _ = grpo_loss(b["logps"], b["old_logps"], *args, aggregation=aggregation, **settings)
    assert abs(trl_loss.item() - plain.item()) > 1e-6 * abs(plain.item())


def test_the_checks_can_fail(trl):
    """Non-vacuity: lakelab's per-sequence "grpo" mean is not TRL's token-level "dapo" on
    unequal lengths, and epsilons swapped between the sides (lakelab clipping low at 0.28 and
    high at 0.2, TRL the other way round) change the loss and the clip ratios, in GRPO and in
    RLOO."""
    trl_grpo, trl_rloo = trl
    b = _batch(0)
    args = (b["logps"], b["old_logps"], b["mask"], b["advantages"])
    trl_loss, _ = trl_grpo(*args, loss_type="dapo")
    lake_loss, _ = grpo_loss(*args, aggregation="grpo")
    assert abs(trl_loss.item() - lake_loss.item()) > 1e-3 * abs(trl_loss.item())

    trl_loss, trl_metrics = trl_grpo(*args, epsilon=0.2, epsilon_high=0.28)
    lake_loss, lake_metrics = grpo_loss(*args, epsilon_low=0.28, epsilon_high=0.2)
    assert abs(trl_loss.item() - lake_loss.item()) > 1e-3 * abs(trl_loss.item())
    for name in ("clip_ratio/low_mean", "clip_ratio/high_mean"):
        assert trl_metrics[name] != _float32(lake_metrics[name]), name

    r = _rloo_batch(0)
    args = (r["logps"], r["old_logps"], r["mask"], r["advantages"])
    trl_loss, trl_metrics = trl_rloo(*args, epsilon=0.2, epsilon_high=0.28)
    lake_loss, lake_metrics = rloo_loss(*args, epsilon_low=0.28, epsilon_high=0.2)
    assert abs(trl_loss.item() - lake_loss.item()) > 1e-3 * abs(trl_loss.item())
    assert trl_metrics["clip_ratio/high_mean"] != _float32(lake_metrics["clip_ratio/high_mean"])
