"""lakelab's unpaired objectives against TRL's own KTO code (tests/trl_kto.py).

On random per-token batches in float64 (random masks, padding holding garbage, desirable and
undesirable rows in unequal numbers or of one kind only, a KL estimate below 0, which TRL
clamps, and above it, non-default beta and weights), ``KTOTrainer._compute_loss`` with
``loss_type='kto'`` gives lakelab's ``kto`` loss, and with ``'apo_zero_unpaired'`` its
``apo_unpaired``, to rel 1e-12, and the same gradients w.r.t. the per-token log-probs of both
kinds of example to 1e-10; the metrics TRL logs agree too. A deliberately wrong value (no
clamp on the KL estimate, the weights swapped) differs from TRL's: the comparison can fail.
Skipped without trl (an optional extra); importing TRL's trainer takes some 6-12 s.
"""

import importlib
import math
from dataclasses import dataclass, field

import pytest
import torch

trl = pytest.importorskip("trl")
pytestmark = pytest.mark.slow  # importing TRL's trainer takes some 6-12 s

from lakelab.registry import OBJECTIVES, SequenceLogps, compute_objective  # noqa: E402

F64 = torch.float64
REL = 1e-12  # the losses
GRAD = 1e-10  # the gradients, absolute and relative
GARBAGE = 1e4  # where a mask is 0: impossible log-probs, which would show if they leaked in


@dataclass(frozen=True)
class Case:
    """A batch: B_D desirable rows, B_U undesirable ones, M mismatched pairs whose per-token
    log-ratio is ``kl_shift`` plus noise (its sign is the sign of TRL's raw KL estimate)."""

    n_desirable: int
    n_undesirable: int
    n_kl: int
    kl_shift: float
    hparams: dict = field(default_factory=dict)
    seed: int = 0


CASES = {
    "balanced": Case(4, 4, 8, 0.5),
    "more desirable, weighted": Case(
        5, 2, 7, 0.3, {"beta": 0.5, "desirable_weight": 0.8, "undesirable_weight": 1.6}, 1
    ),
    "more undesirable, kl below 0": Case(
        2, 6, 8, -0.5, {"beta": 0.2, "desirable_weight": 1.33, "undesirable_weight": 0.9}, 2
    ),
    "only desirable": Case(3, 0, 3, 0.4, {"beta": 0.3, "desirable_weight": 2.0}, 3),
    "only undesirable, kl below 0": Case(0, 4, 4, -0.4, {"undesirable_weight": 1.5}, 4),
    "only undesirable, kl above 0": Case(0, 3, 3, 0.6, {"beta": 1.0}, 5),
    "M != B_D + B_U": Case(3, 2, 4, 0.2, {"beta": 0.05, "undesirable_weight": 1.2}, 6),
}  # fmt: skip
APO_BETAS = (0.1, 0.5)


@pytest.fixture(scope="module")
def code():
    """tests/trl_kto.py (it imports TRL's trainer when first called)."""
    return importlib.import_module("tests.trl_kto")


def tokens(g: torch.Generator, rows: int, width: int) -> tuple[torch.Tensor, ...]:
    """Policy and reference per-token log-probs (rows, width) and a random mask with at least
    one token per row, possibly with holes; garbage where the mask is 0."""
    mask = torch.rand(rows, width, generator=g) < 0.6
    mask[torch.arange(rows), torch.randint(0, width, (rows,), generator=g)] = True
    policy = -3 * torch.rand(rows, width, generator=g, dtype=F64)
    reference = -3 * torch.rand(rows, width, generator=g, dtype=F64)

    def padded(x: torch.Tensor) -> torch.Tensor:
        return torch.where(mask, x, GARBAGE * torch.rand(rows, width, generator=g, dtype=F64))

    return padded(policy), mask, padded(reference)


def batch(case: Case) -> SequenceLogps:
    g = torch.Generator().manual_seed(case.seed)
    chosen, chosen_mask, ref_chosen = tokens(g, case.n_desirable, 5)
    rejected, rejected_mask, ref_rejected = tokens(g, case.n_undesirable, 7)
    _, kl_mask, ref_kl = tokens(g, case.n_kl, 6)
    noise = 0.3 * torch.randn(case.n_kl, 6, generator=g, dtype=F64)
    kl = torch.where(kl_mask, ref_kl + case.kl_shift + noise, -GARBAGE)
    return SequenceLogps(
        chosen.requires_grad_(), chosen_mask, rejected.requires_grad_(), rejected_mask,
        ref_chosen, ref_rejected, kl.requires_grad_(), kl_mask, ref_kl,
    )  # fmt: skip


def summed(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """S per row: the sum of the masked per-token log-probs."""
    return torch.where(mask, x, 0.0).sum(-1)


def raw_kl(logps: SequenceLogps) -> torch.Tensor:
    """mean_j (S_kl_j - S_ref_kl_j), before TRL's clamp."""
    return (summed(logps.kl, logps.kl_mask) - summed(logps.ref_kl, logps.kl_mask)).mean().detach()


def gradients(loss: torch.Tensor, logps: SequenceLogps) -> list[torch.Tensor]:
    """d loss / d (chosen, rejected, kl) per token; zeros where the loss does not use one."""
    leaves = (logps.chosen, logps.rejected, logps.kl)
    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    return [torch.zeros_like(x) if d is None else d for d, x in zip(grads, leaves, strict=True)]


def assert_agree(theirs: torch.Tensor, ours: torch.Tensor, logps: SequenceLogps) -> None:
    assert theirs.dtype == ours.dtype == F64
    assert theirs.item() == pytest.approx(ours.item(), rel=REL, abs=0)
    for name, a, b in zip(
        ("chosen", "rejected", "kl"), gradients(theirs, logps), gradients(ours, logps), strict=True
    ):
        assert torch.allclose(a, b, rtol=GRAD, atol=GRAD), (name, (a - b).abs().max())


def test_the_registry_claims_the_spellings_run_here():
    assert "KTOTrainer(loss_type='kto')" in OBJECTIVES["kto"].trl
    assert OBJECTIVES["apo_unpaired"].trl == {"KTOTrainer(loss_type='apo_zero_unpaired')": {}}


def test_the_cases_cover_what_they_claim():
    cases = [(c, batch(c)) for c in CASES.values()]
    assert any(0 < c.n_desirable != c.n_undesirable > 0 for c, _ in cases)
    assert any(c.n_undesirable == 0 for c, _ in cases) and any(c.n_desirable == 0 for c, _ in cases)
    assert any(c.n_kl != c.n_desirable + c.n_undesirable for c, _ in cases)
    signs = {math.copysign(1, raw_kl(logps)) for _, logps in cases}
    assert signs == {-1.0, 1.0}  # the clamp is active in some cases, not in others
    for case, logps in cases:
        assert (raw_kl(logps) > 0) == (case.kl_shift > 0)


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_trl_kto_equals_lakelab_kto(code, case):
    logps = batch(case)
    theirs = code.trl_kto(logps, **case.hparams)
    ours, _ = compute_objective("kto", logps, case.hparams)
    assert_agree(theirs, ours, logps)
    assert torch.isfinite(theirs)


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_trl_kto_metrics_equal_lakelab_kto_metrics(code, case):
    logps = batch(case)
    _, logged = code.trl_kto_with_metrics(logps, **case.hparams)
    _, ours = compute_objective("kto", logps, case.hparams)
    clamped = max(0.0, raw_kl(logps).item())  # exactly 0 when the estimate is below 0
    assert ours["kl"] == pytest.approx(clamped, rel=REL, abs=0)
    assert logged["kl"] == [pytest.approx(ours["kl"], rel=REL, abs=0)]
    for key in ("rewards/chosen", "rewards/rejected", "logps/chosen", "logps/rejected"):
        if math.isnan(ours[key]):  # no example of that kind: TRL logs nothing
            assert key not in logged
        else:
            assert logged[key] == [pytest.approx(ours[key], rel=REL)], key


@pytest.mark.parametrize("beta", APO_BETAS)
@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_trl_apo_zero_unpaired_equals_lakelab_apo_unpaired(code, case, beta):
    logps = batch(case)
    theirs = code.trl_kto(logps, beta=beta, loss_type="apo_zero_unpaired")
    ours, _ = compute_objective("apo_unpaired", logps, {"beta": beta})
    assert_agree(theirs, ours, logps)


def test_trl_apo_zero_unpaired_and_lakelab_apo_unpaired_weigh_the_kinds_alike(code):
    """TRL applies desirable_weight and undesirable_weight to 'apo_zero_unpaired' too
    (kto_trainer.py:1479-1482), and so does lakelab's apo_unpaired: equal at 0.8 / 1.6, and
    both differ from the unweighted loss."""
    case = CASES["more desirable, weighted"]
    logps = batch(case)
    weights = {"desirable_weight": 0.8, "undesirable_weight": 1.6}
    theirs = code.trl_kto(logps, loss_type="apo_zero_unpaired", **weights)
    ours, _ = compute_objective("apo_unpaired", logps, weights)
    assert_agree(theirs, ours, logps)
    assert theirs.item() != pytest.approx(compute_objective("apo_unpaired", logps)[0].item())


# -- the comparison is not vacuous ------------------------------------------------------------


def unclamped_kto(logps: SequenceLogps, beta, desirable_weight, undesirable_weight):
    """A deliberately wrong KTO: the right formula, but the KL estimate not clamped at 0."""
    r_d = summed(logps.chosen, logps.chosen_mask) - summed(logps.ref_chosen, logps.chosen_mask)
    r_u = summed(logps.rejected, logps.rejected_mask) - summed(
        logps.ref_rejected, logps.rejected_mask
    )
    z = raw_kl(logps).detach()
    loss_d = desirable_weight * (1 - torch.sigmoid(beta * (r_d - z)))
    loss_u = undesirable_weight * (1 - torch.sigmoid(beta * (z - r_u)))
    return torch.cat([loss_d, loss_u]).mean(), z


def test_a_wrong_lakelab_side_value_differs_from_trl(code):
    # the clamp: on a batch whose KL estimate is below 0, leaving it unclamped changes the loss
    case = CASES["more undesirable, kl below 0"]
    logps = batch(case)
    hp = case.hparams
    theirs = code.trl_kto(logps, **hp).item()
    wrong, z = unclamped_kto(logps, **hp)
    assert z < 0
    assert abs(wrong.item() - theirs) > 1e-4 * abs(theirs)
    # ...while lakelab's kto is TRL's there, and the unclamped formula is TRL's on a batch
    # whose estimate is above 0 (the wrong value is wrong by the missing clamp only)
    right = compute_objective("kto", logps, hp)[0].item()
    assert right == pytest.approx(theirs, rel=REL)
    assert unclamped_kto(batch(CASES["balanced"]), 0.1, 1.0, 1.0)[0].item() == pytest.approx(
        code.trl_kto(batch(CASES["balanced"])).item(), rel=REL
    )

    # the weights swapped: lakelab's kto with w_D and w_U exchanged is not TRL's
    case = CASES["more desirable, weighted"]
    logps = batch(case)
    hp = case.hparams
    swapped = hp | {"desirable_weight": hp["undesirable_weight"],
                    "undesirable_weight": hp["desirable_weight"]}  # fmt: skip
    theirs = code.trl_kto(logps, **hp).item()
    assert abs(compute_objective("kto", logps, swapped)[0].item() - theirs) > 1e-3 * abs(theirs)

    # another loss type: TRL's apo_zero_unpaired is not lakelab's kto (z0 > 0 here)
    apo = code.trl_kto(logps, loss_type="apo_zero_unpaired", beta=hp["beta"]).item()
    kto = compute_objective("kto", logps, {"beta": hp["beta"]})[0].item()
    assert abs(apo - kto) > 1e-4 * abs(kto)


def test_the_gradients_compared_are_not_zero_and_skip_the_padding(code):
    logps = batch(CASES["more desirable, weighted"])
    theirs = code.trl_kto(logps, **CASES["more desirable, weighted"].hparams)
    d_chosen, d_rejected, d_kl = gradients(theirs, logps)
    for d, mask in ((d_chosen, logps.chosen_mask), (d_rejected, logps.rejected_mask)):
        assert bool((d[mask] != 0).all()) and bool((d[~mask] == 0).all())
    assert bool((d_kl == 0).all())  # TRL's KL term has no gradient, as lakelab's z0
    assert d_chosen[logps.chosen_mask].abs().min() > 1e3 * GRAD  # far above the tolerance
