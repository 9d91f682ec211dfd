"""golden/objectives-v1.json: up to date with the code, and its values agree with the
independent oracles of tests/oracles.py (plain-Python formulas), losses and gradients."""

import json
import math
import random

import pytest

from lakelab.golden import MASKS, PATH, VERSION, golden_cases
from lakelab.registry import get_objective, resolve_hparams
from tests import oracles

DOCUMENT = json.loads(PATH.read_text())


DETACHED = ("kl", "ref_kl", "chosen_log_sum_sq", "rejected_log_sum_sq")
MASKS_OF = {"chosen": "chosen", "rejected": "rejected", "ref_chosen": "chosen",
            "ref_rejected": "rejected"}  # each input -> whose mask  # fmt: skip


def oracle_loss(objective: str, hparams: dict, inputs: dict, fixed: dict | None = None) -> float:
    """The case's batch-mean loss from the oracles, on the masked reductions of its inputs;
    WPO's weights from ``fixed`` (the case's inputs: they are constants of the loss)."""
    hp = resolve_hparams(objective, hparams)
    mc = [[int(m) for m in row] for row in inputs["chosen_mask"]]
    if objective == "ift":
        return oracles.ift_loss(inputs["chosen"], mc, hp["gamma"], hp["weighting"])
    if objective == "sft_token_mean":
        total = sum(
            -x
            for row, m in zip(inputs["chosen"], mc, strict=True)
            for x, k in zip(row, m, strict=True)
            if k
        )
        return total / sum(map(sum, mc))
    if objective == "ld_dpo":
        mr = [[int(m) for m in row] for row in inputs["rejected_mask"]]
        masks = {"chosen": mc, "rejected": mr, "ref_chosen": mc, "ref_rejected": mr}
        rows = {k: inputs[k] for k in masks}
        return oracles.ld_dpo_loss(rows, masks, hp["beta"], hp["ld_alpha"])
    if objective == "rpo":  # DPO on summed log-probs + rpo_alpha * SFT on mean ones
        masks = {k: [[int(m) for m in row] for row in inputs[f"{k}_mask"]]
                 for k in ("chosen", "rejected")}  # fmt: skip
        s = {k: [oracles.masked_sum(row, m) for row, m in zip(inputs[k], masks[MASKS_OF[k]],
                                                             strict=True)]
             for k in MASKS_OF}  # fmt: skip
        dpo = oracles.dpo_loss(s["chosen"], s["rejected"], s["ref_chosen"], s["ref_rejected"],
                               hp["beta"], hp["variant"], hp["label_smoothing"])  # fmt: skip
        a = [oracles.masked_mean(row, m) for row, m in zip(inputs["chosen"], mc, strict=True)]
        return dpo + hp["rpo_alpha"] * -sum(a) / len(a)
    if objective == "wpo":  # DPO per pair, times exp(mean_t (logp - log sum p^2)) of each
        masks = {k: [[int(m) for m in row] for row in inputs[f"{k}_mask"]]
                 for k in ("chosen", "rejected")}  # fmt: skip
        total = 0.0
        for b in range(len(mc)):
            one = {k: [oracles.masked_sum(inputs[k][b], masks[MASKS_OF[k]][b])] for k in MASKS_OF}
            dpo = oracles.dpo_loss(one["chosen"], one["rejected"], one["ref_chosen"],
                                   one["ref_rejected"], hp["beta"], hp["variant"],
                                   hp["label_smoothing"])  # fmt: skip
            w = 1.0
            for kind in ("chosen", "rejected"):
                m = masks[kind][b]
                at = fixed or inputs
                gap = [x - q for x, q, k in zip(at[kind][b], at[f"{kind}_log_sum_sq"][b], m,
                                                strict=True) if k]  # fmt: skip
                w *= math.exp(sum(gap) / len(gap))
            total += w * dpo
        return total / len(mc)
    if objective == "cpo_nll":  # CPO on summed log-probs + cpo_alpha * the token-mean NLL
        mr = [[int(m) for m in row] for row in inputs["rejected_mask"]]
        s_c = [oracles.masked_sum(row, m) for row, m in zip(inputs["chosen"], mc, strict=True)]
        s_r = [oracles.masked_sum(row, m) for row, m in zip(inputs["rejected"], mr, strict=True)]
        nll = -sum(s_c) / sum(map(sum, mc))
        return oracles.reference_free_loss("cpo", s_c, s_r, hp) + hp["cpo_alpha"] * nll
    summed = get_objective(objective).reduction == "sum"
    reduce = oracles.masked_sum if summed else oracles.masked_mean
    c = [reduce(row, m) for row, m in zip(inputs["chosen"], mc, strict=True)]
    if objective == "sft":
        return -sum(c) / len(c)
    mr = [[int(m) for m in row] for row in inputs["rejected_mask"]]
    r = [reduce(row, m) for row, m in zip(inputs["rejected"], mr, strict=True)]
    if get_objective(objective).needs_reference:
        rc = [reduce(row, m) for row, m in zip(inputs["ref_chosen"], mc, strict=True)]
        rr = [reduce(row, m) for row, m in zip(inputs["ref_rejected"], mr, strict=True)]
        if objective == "dpo":
            return oracles.dpo_loss(c, r, rc, rr, hp["beta"], hp["variant"], hp["label_smoothing"])
        if objective == "ipo":
            return oracles.ipo_loss(c, r, rc, rr, hp["beta"])
        if get_objective(objective).unpaired:
            kl = ref_kl = None
            if "kl" in inputs:
                mk = [[int(m) for m in row] for row in inputs["kl_mask"]]
                kl = [reduce(row, m) for row, m in zip(inputs["kl"], mk, strict=True)]
                ref_kl = [reduce(row, m) for row, m in zip(inputs["ref_kl"], mk, strict=True)]
            return oracles.unpaired_loss(objective, c, r, rc, rr, hp, kl, ref_kl)
        if objective == "aot":
            return oracles.aot_loss(c, r, rc, rr, hp["beta"], hp["variant"], hp["label_smoothing"])
        return oracles.pairwise_loss(objective, c, r, rc, rr, hp)
    if objective == "orpo":
        return oracles.orpo_loss(c, r, hp["lam"])
    if objective == "asft":
        return oracles.asft_loss(c, r, hp["lam"], hp["beta"])
    if objective in ("cpo", "cpo_ipo", "alphapo"):
        return oracles.reference_free_loss(objective, c, r, hp)
    return oracles.simpo_loss(c, r, hp["beta"], hp["gamma"])


def test_the_file_is_the_codes_current_output():
    assert DOCUMENT["version"] == VERSION
    fresh = golden_cases()
    assert [(c["objective"], c["hparams"]) for c in fresh] == [
        (c["objective"], c["hparams"]) for c in DOCUMENT["cases"]
    ], "regenerate: python -m lakelab.golden"
    for new, old in zip(fresh, DOCUMENT["cases"], strict=True):
        assert new["inputs"] == old["inputs"]  # exact: seeded draws written with repr
        assert new["loss"] == pytest.approx(old["loss"], rel=1e-12)  # libm may differ in ulps
        for field, grad in new["grad"].items():
            flat_new = [x for row in grad for x in row]
            flat_old = [x for row in old["grad"][field] for x in row]
            assert flat_new == pytest.approx(flat_old, rel=1e-10, abs=1e-14)


@pytest.mark.slow  # central differences of plain-Python oracles: seconds
@pytest.mark.parametrize("case", DOCUMENT["cases"], ids=lambda c: f"{c['objective']}{c['hparams']}")
def test_golden_losses_and_gradients_agree_with_the_oracles(case):
    name, hp, inputs = case["objective"], case["hparams"], case["inputs"]
    assert case["loss"] == pytest.approx(oracle_loss(name, hp, inputs), rel=1e-12)
    rng = random.Random(0)
    for field, grad in case["grad"].items():
        mask = inputs[MASKS[field]]
        for b, row in enumerate(grad):
            for t, g in enumerate(row):
                if not mask[b][t]:
                    assert g == 0.0, (field, b, t)  # prompt and padding get no gradient
        if field in DETACHED:  # KTO's reference point and WPO's weights are detached: the
            assert not any(map(any, grad)), field  # loss moves with them, no gradient
            continue
        # central differences of the oracle at two masked positions
        positions = [(b, t) for b, row in enumerate(mask) for t, m in enumerate(row) if m]
        for b, t in rng.sample(positions, 2):
            h = 1e-6
            up = json.loads(json.dumps(inputs))
            down = json.loads(json.dumps(inputs))
            up[field][b][t] += h
            down[field][b][t] -= h
            slope = (oracle_loss(name, hp, up, inputs) - oracle_loss(name, hp, down, inputs)) / (
                2 * h
            )
            assert grad[b][t] == pytest.approx(slope, rel=1e-5, abs=1e-8), (field, b, t)


def test_the_check_command_says_whether_the_file_is_current(tmp_path, monkeypatch, capsys):
    import lakelab.golden as golden

    assert golden.main(["--check"]) == 0  # the committed file, byte for byte
    monkeypatch.setattr(golden, "PATH", tmp_path / "objectives-v1.json")
    assert golden.main(["--check"]) == 1  # missing
    assert golden.main([]) == 0 and golden.main(["--check"]) == 0  # written, then current
    assert "up to date" in capsys.readouterr().out
