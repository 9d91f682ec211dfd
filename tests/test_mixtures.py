"""Mixtures (lakelab.mixtures): weighted sums of objectives, RPO among them, checked against
their terms, refused when malformed, run on the lake and through verify."""

from __future__ import annotations

import math

import pytest
import torch

from lakelab import mixture, weight
from lakelab.registry import (
    OBJECTIVES,
    SequenceLogps,
    compute_objective,
    register_objective,
    unregister_objective,
)
from lakelab.verify import verify
from tests.helpers import token_batch


def test_rpo_is_dpo_plus_rpo_alpha_times_sft_in_value_and_gradient():
    batch = token_batch(seed=3)
    leaves = [batch.chosen.clone().requires_grad_(True), batch.rejected.clone().requires_grad_()]
    logps = SequenceLogps(leaves[0], batch.chosen_mask, leaves[1], batch.rejected_mask,
                          batch.ref_chosen, batch.ref_rejected)  # fmt: skip
    hp = {"beta": 0.4, "rpo_alpha": 0.3}
    loss, metrics = compute_objective("rpo", logps, hp)
    dpo = compute_objective("dpo", logps, {"beta": 0.4})[0]
    sft = compute_objective("sft", logps)[0]
    assert loss.item() == pytest.approx((dpo + 0.3 * sft).item(), rel=1e-14)
    assert metrics["loss/dpo"] == pytest.approx(dpo.item(), rel=1e-14)
    assert metrics["loss/sft"] == pytest.approx(sft.item(), rel=1e-14)
    assert metrics["sft/logps/chosen"] == pytest.approx(-sft.item(), rel=1e-14)
    got = torch.autograd.grad(loss, leaves)
    want = torch.autograd.grad(dpo + 0.3 * sft, leaves)
    for g, w in zip(got, want, strict=True):
        assert torch.allclose(g, w, rtol=1e-13, atol=1e-15)
    assert compute_objective("rpo", logps, {"rpo_alpha": 0.0})[0].item() == pytest.approx(
        compute_objective("dpo", logps)[0].item(), rel=1e-14
    )


def test_a_mixture_takes_its_terms_knobs_shares_beta_and_adds_its_weights():
    m = mixture("dpo_bco", {"dpo": 1.0, "bco_pair": weight("bco_weight", 0.5)})
    names = [hp.name for hp in m.hyperparams]
    assert names.count("beta") == 1 and {"delta", "variant", "bco_weight"} <= set(names)
    assert m.formula == "L = L_dpo + bco_weight * L_bco_pair"
    assert m.needs_pairs and m.needs_reference and m.reduction == "tokens"
    assert not m.batchwise
    assert mixture("rpo_tokens", {"dpo": 1.0, "sft_token_mean": 0.5}).batchwise


@pytest.mark.parametrize(
    ("terms", "message"),
    [
        ({"dpo": 1.0}, "a mixture needs at least two terms"),
        ({"dpo": 1.0, "rrhf": 1.0}, "unknown objective 'rrhf'"),
        ({"dpo": 1.0, "ift": 1.0}, "'ift' cannot be a term"),
        ({"dpo": 1.0, "kto": 1.0}, "'kto' cannot be a term"),
        ({"dpo": 1.0, "sft": -1.0}, r"weight of sft must be in \[0, inf\), got -1.0"),
        ({"dpo": 1.0, "simpo": 1.0}, "hyper-parameter 'beta' differs"),
        ({"dpo": 1.0, "sft": weight("beta", 1.0)}, "weight 'beta' is already a knob"),
    ],
)
def test_malformed_mixtures_are_refused(terms, message):
    with pytest.raises(ValueError, match=message):
        mixture("bad", terms)


def test_a_mixture_refuses_an_unknown_knob():
    fn = OBJECTIVES["rpo"].loss_fn
    batch = token_batch()
    with pytest.raises(ValueError, match=r"rpo: unknown hyper-parameter\(s\) \['alpha'\]"):
        fn(batch.chosen, batch.chosen_mask, batch.rejected, batch.rejected_mask,
           batch.ref_chosen, batch.ref_rejected, alpha=1.0)  # fmt: skip


def test_a_registered_mixture_runs_on_the_lake_and_passes_verify():
    from lakelab.mlp.config import PRESETS
    from lakelab.mlp.experiment import build_setup
    from lakelab.mlp.joint import train_methods
    from tests.helpers import FAST_LAKE

    mine = mixture("dpo_nll_mix", {"dpo": 1.0, "sft_token_mean": weight("nll", 0.5)})
    register_objective(mine)
    try:
        config = PRESETS["quick"].replace(seeds=2, methods=("dpo_nll_mix",), **FAST_LAKE)
        rows = train_methods(build_setup(config), ["dpo_nll_mix"])["dpo_nll_mix"].rows
        assert all(math.isfinite(r[-1]["batch/sft_token_mean/logps/chosen"]) for r in rows)

        def by_hand(logps, beta=0.1, nll=0.5):
            dpo = compute_objective("dpo", logps, {"beta": beta})[0]
            return dpo + nll * compute_objective("sft_token_mean", logps)[0]

        assert verify(by_hand, like="dpo_nll_mix", inputs="tokens").ok
        wrong = lambda logps, beta=0.1, nll=0.5: by_hand(logps, beta, 2 * nll)  # noqa: E731
        report = verify(wrong, like="dpo_nll_mix", inputs="tokens")
        assert not report.ok and "hparam/nll" in report.failed
    finally:
        unregister_objective("dpo_nll_mix")
