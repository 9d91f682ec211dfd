"""The unpaired objectives (lakelab.unpaired: KTO, BCO, APO-zero unpaired): values by hand,
gradients, batches of one kind, KTO's reference point, and the mismatched pairs both tracks
build for it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.autograd import gradcheck

from lakelab import unpaired as U
from lakelab.lm.config import PRESETS as LM_PRESETS
from lakelab.lm.data import mismatched
from lakelab.mlp.logps import mismatched_pairs
from lakelab.registry import OBJECTIVES, SequenceLogps, compute_objective


def t64(x) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64)


def sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


D, RD = t64([-2.0, -5.0, -1.0]), t64([-3.0, -4.0, -1.0])  # desirable r = 1, -1, 0
UND, RU = t64([-6.0, -2.0]), t64([-4.0, -3.0])  # undesirable r = -2, 1
EMPTY = t64([])


def test_kto_by_hand():
    """beta = 0.5, the mismatched pairs' mean log-ratio 0.4 = z0, weights 1.5 and 0.5."""
    kl, ref_kl = t64([-1.0, -2.0]), t64([-1.6, -2.2])  # log-ratios 0.6, 0.2: z0 = 0.4
    loss, m = U.kto_loss(D, UND, RD, RU, kl, ref_kl, beta=0.5, desirable_weight=1.5,
                         undesirable_weight=0.5)  # fmt: skip
    want = [1.5 * (1 - sigmoid(0.5 * (r - 0.4))) for r in (1.0, -1.0, 0.0)]
    want += [0.5 * (1 - sigmoid(0.5 * (0.4 - r))) for r in (-2.0, 1.0)]
    assert loss.item() == pytest.approx(sum(want) / 5, rel=1e-14)
    assert m["kl"] == pytest.approx(0.4, rel=1e-14)
    assert m["rewards/chosen"] == pytest.approx(0.5 * (1 - 1 + 0) / 3, abs=1e-15)
    assert m["rewards/rejected"] == pytest.approx(0.5 * (-2 + 1) / 2, rel=1e-14)
    assert m["logps/chosen"] == pytest.approx(-8 / 3) and m["logps/rejected"] == -4.0


def test_kto_reference_point_is_clamped_at_zero_and_detached():
    kl, ref_kl = t64([-3.0, -2.0]), t64([-1.0, -1.0])  # mean log-ratio -1.5 -> z0 = 0
    assert U.kto_reference_point(kl, ref_kl).item() == 0.0
    kl = t64([-1.0, -1.0]).requires_grad_(True)
    z0 = U.kto_reference_point(kl, t64([-2.0, -1.5]))
    assert z0.item() == pytest.approx(0.75) and not z0.requires_grad
    loss = U.kto_loss(D, UND, RD, RU, kl, t64([-2.0, -1.5]))[0]
    assert loss.requires_grad is False  # no input but kl asks for a gradient, and kl is cut


def test_kto_depends_on_the_mismatched_pairs_not_on_the_examples_reference_point():
    """z0 comes from the mismatched pairs only: moving them moves every loss; at pi = pi_ref
    on them (z0 = 0) KTO is APO-zero unpaired with unit weights, a closed form."""
    zero = U.kto_loss(D, UND, RD, RU, t64([-1.0]), t64([-1.0]))[0]
    apo = U.apo_unpaired_loss(D, UND, RD, RU)[0]
    assert zero.item() == pytest.approx(apo.item(), rel=1e-14)
    shifted = U.kto_loss(D, UND, RD, RU, t64([-1.0]), t64([-3.0]))[0]
    assert shifted.item() != pytest.approx(zero.item())


@pytest.mark.parametrize("name", ["kto", "bco", "apo_unpaired"])
def test_at_the_reference_every_example_costs_its_closed_form(name):
    fn = OBJECTIVES[name].loss_fn
    x = t64([-3.0, -1.0, -7.0])
    extra = (x, x.clone()) if name == "kto" else ()
    loss = fn(x, x[:2], x.clone(), x[:2].clone(), *extra)[0]
    assert loss.item() == pytest.approx({"kto": 0.5, "bco": math.log(2), "apo_unpaired": 0.5}[name])


def test_bco_by_hand_and_half_of_bco_pair_on_split_pairs():
    loss = U.bco_loss(D, UND, RD, RU, beta=0.5, delta=0.2)[0]
    logsig = lambda z: -math.log1p(math.exp(-z))  # noqa: E731
    want = [-logsig(0.5 * r - 0.2) for r in (1.0, -1.0, 0.0)]
    want += [-logsig(-(0.5 * r - 0.2)) for r in (-2.0, 1.0)]
    assert loss.item() == pytest.approx(sum(want) / 5, rel=1e-14)
    c, r, rc, rr = D[:2], UND, RD[:2], RU  # two pairs split into 2 + 2 examples
    pair = OBJECTIVES["bco_pair"].loss_fn(c, r, rc, rr, beta=0.5, delta=0.2)[0]
    assert U.bco_loss(c, r, rc, rr, beta=0.5, delta=0.2)[0].item() == pytest.approx(
        pair.item() / 2, rel=1e-14
    )


@pytest.mark.parametrize("name", ["kto", "bco", "apo_unpaired"])
def test_gradcheck(name):
    g = torch.Generator().manual_seed(3)
    args = [-(0.1 + 5 * torch.rand(n, generator=g, dtype=torch.float64)) for n in (3, 2, 3, 2)]
    args = [a.requires_grad_(True) for a in args]
    kl = (t64([-1.0, -2.0]), t64([-2.5, -2.0]))  # z0 = 0.75 > 0
    extra = kl if name == "kto" else ()
    fn = lambda *a: OBJECTIVES[name].loss_fn(*a, *extra, beta=0.7)[0]  # noqa: E731
    assert gradcheck(fn, args, eps=1e-6, atol=1e-8)


@pytest.mark.parametrize("kind", ["desirable", "undesirable"])
@pytest.mark.parametrize("name", ["kto", "bco", "apo_unpaired"])
def test_a_batch_of_one_kind_is_finite_and_says_which_metrics_it_lacks(name, kind):
    c, rc = (D.clone().requires_grad_(True), RD) if kind == "desirable" else (EMPTY, EMPTY)
    u, ru = (UND.clone().requires_grad_(True), RU) if kind == "undesirable" else (EMPTY, EMPTY)
    extra = (t64([-1.0, -2.0]), t64([-1.5, -2.5])) if name == "kto" else ()
    loss, metrics = OBJECTIVES[name].loss_fn(c, u, rc, ru, *extra)
    assert torch.isfinite(loss)
    leaf = c if kind == "desirable" else u
    (grad,) = torch.autograd.grad(loss, [leaf])
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    present, absent = ("chosen", "rejected") if kind == "desirable" else ("rejected", "chosen")
    assert math.isfinite(metrics[f"rewards/{present}"])
    assert math.isnan(metrics[f"rewards/{absent}"])  # TRL leaves it out of its logs


def test_reduction_none_gives_one_loss_per_example_desirable_first():
    """Row i of "none" is example i's loss; an example alone has the same loss (BCO has no
    batch-level term; KTO's is the same with the same mismatched pairs)."""
    kl = (t64([-1.0, -2.0]), t64([-1.5, -2.5]))
    for name, extra in (("bco", ()), ("apo_unpaired", ()), ("kto", kl)):
        fn = OBJECTIVES[name].loss_fn
        losses, rows = fn(D, UND, RD, RU, *extra, reduction="none")
        assert losses.shape == (5,)
        for i in range(3):
            alone = fn(D[i : i + 1], EMPTY, RD[i : i + 1], EMPTY, *extra)[0]
            assert alone.item() == pytest.approx(losses[i].item(), rel=1e-14)
            assert math.isnan(rows["rewards/rejected"][i])
        for i in range(2):
            alone = fn(EMPTY, UND[i : i + 1], EMPTY, RU[i : i + 1], *extra)[0]
            assert alone.item() == pytest.approx(losses[3 + i].item(), rel=1e-14)
            assert math.isnan(rows["rewards/chosen"][3 + i])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: U.kto_loss(D, UND, RD, RU, D, RD, beta=0.0), r"beta must be in \(0, inf\), got 0"),
        (lambda: U.kto_loss(D, UND, RD, RU, D, RD, desirable_weight=-1.0),
         r"desirable_weight must be in \(0, inf\), got -1.0"),
        (lambda: U.kto_loss(D, UND, RD, RU, D, RD, undesirable_weight=0.0),
         r"undesirable_weight must be in \(0, inf\), got 0.0"),
        (lambda: U.kto_loss(D, UND, RD, RU, EMPTY, EMPTY),
         "KTO's reference point needs at least one mismatched pair, got none"),
        (lambda: U.kto_loss(D, UND, RD, RU, D, RD[:2]),
         r"kl_logps and ref_kl_logps must have the same shape, got \(3,\) and \(2,\)"),
        (lambda: U.bco_loss(EMPTY, EMPTY, EMPTY, EMPTY),
         "a batch needs at least one example, desirable or undesirable"),
        (lambda: U.bco_loss(D, UND, RD[:2], RU),
         r"chosen_logps and ref_chosen_logps must have the same shape, got \(3,\) and \(2,\)"),
        (lambda: U.apo_unpaired_loss(D[None], UND, RD[None], RU),
         r"chosen_logps must have shape \(n,\), got \(1, 3\)"),
        (lambda: U.bco_loss(D, UND, RD, RU, delta=math.nan), r"delta must be in .*got nan"),
    ],
)  # fmt: skip
def test_value_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_the_registry_wants_the_mismatched_pairs_of_kto():
    m = torch.ones(3, 2, dtype=torch.bool)
    logps = SequenceLogps(-torch.ones(3, 2, dtype=torch.float64), m,
                          -torch.ones(3, 2, dtype=torch.float64), m,
                          -torch.ones(3, 2, dtype=torch.float64),
                          -torch.ones(3, 2, dtype=torch.float64))  # fmt: skip
    with pytest.raises(ValueError, match=r"kto needs mismatched pairs: SequenceLogps\.kl"):
        compute_objective("kto", logps)
    assert compute_objective("bco", logps)[0].item() == pytest.approx(math.log(2))


# ----------------------------------------------------------------------------- the tracks
def test_on_the_lake_the_mismatched_pairs_are_each_seeds_own_examples():
    """Two seeds, batches of 2 desirable (length 3) and 2 undesirable (length 2) examples:
    seed n's pairs are its 4 examples, padded, rows n * 4 .. (n + 1) * 4."""
    c = torch.arange(12, dtype=torch.float64).view(4, 3)  # rows: seed 0, 0, 1, 1
    r = 100 + torch.arange(8, dtype=torch.float64).view(4, 2)
    mc, mr = torch.ones(4, 3, dtype=torch.bool), torch.ones(4, 2, dtype=torch.bool)
    kl, kl_mask, ref_kl = mismatched_pairs(2, (c, mc, -c), (r, mr, -r))
    assert kl.shape == (8, 3) and kl_mask.shape == (8, 3)
    assert torch.equal(kl[:2], c[:2]) and torch.equal(kl[2:4, :2], r[:2])
    assert torch.equal(kl[4:6], c[2:]) and torch.equal(kl[6:, :2], r[2:])
    assert not kl_mask[2:4, 2].any() and torch.equal(ref_kl, -kl)


def test_on_the_lm_track_a_mismatched_pair_is_a_lakes_prompt_with_another_lakes_plan():
    from lakelab.lakes import random_lake
    from lakelab.lm.data import plan_ids, to_tokens

    lakes = [random_lake(4, seed=s) for s in range(4)]
    plans = [plan_ids(p) for p in ([1, 1], [2], [1, 2, 1], [0])]
    chosen = to_tokens(lakes, plans, LM_PRESETS["quick"].seq_len)
    pairs = mismatched(chosen)
    P = chosen.prompt_len
    for i in range(4):
        j = (i - 1) % 4
        assert torch.equal(pairs.inputs[i, :P], chosen.inputs[i, :P])  # its own prompt
        assert torch.equal(pairs.inputs[i, P:], chosen.inputs[j, P:])  # the previous plan
        assert torch.equal(pairs.targets[i, P - 1 :], chosen.targets[j, P - 1 :])
        assert torch.equal(pairs.mask[i], chosen.mask[j])
    assert not any(torch.equal(pairs.inputs[i], chosen.inputs[i]) for i in range(4))


def test_the_lm_track_refuses_kto_on_batches_of_one_lake():
    with pytest.raises(ValueError, match=r"batch_size must be >= 2 for \['kto'\]"):
        LM_PRESETS["quick"].replace(methods=("kto",), batch_size=1)


@pytest.mark.slow  # a lake run
def test_kto_on_the_lake_raises_the_optimal_routes_likelihood_over_seeds():
    """A robust training outcome: over 3 seeds, KTO raises the mean log-likelihood of the
    optimal route and lowers that of the sub-optimal one (offline negatives)."""
    from lakelab.mlp.config import PRESETS
    from lakelab.mlp.experiment import build_setup
    from lakelab.mlp.joint import train_methods

    config = PRESETS["quick"].replace(seeds=3, methods=("kto",), negatives="offline")
    rows = train_methods(build_setup(config), ["kto"])["kto"].rows
    first = np.mean([r[0]["logp_optimal"] for r in rows])
    last = np.mean([r[-1]["logp_optimal"] for r in rows])
    assert last > first + 1.0
    assert np.mean([r[-1]["logp_suboptimal"] - r[0]["logp_suboptimal"] for r in rows]) < -1.0
    assert all(r[-1]["batch/kl"] >= 0 for r in rows)
