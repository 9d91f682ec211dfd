"""TRL's own loss code (tests/trl_code.py) through ``lakelab verify``: each TRL loss that
lakelab also has passes every check, a bug planted on top of TRL's code is caught, and the
known differences (TRL 1.16's sigmoid ignores label_smoothing, its ORPO is infinite at a
mean log-prob of exactly 0, its SFT is a token-level mean) fail the checks they should.
Skipped without trl (an optional extra); importing it takes some 6 s on the 2-core machine."""

import dataclasses
import importlib
import math

import pytest
import torch

trl = pytest.importorskip("trl")
pytestmark = pytest.mark.slow  # importing TRL's trainers takes some 6 s

from lakelab.registry import OBJECTIVES  # noqa: E402
from lakelab.verify import verify  # noqa: E402

# TRL spelling -> (the function of tests/trl_code.py that runs TRL's code for it, the settings
# it is verified at). The lakelab objective and hyper-parameters each spelling means come from
# the registry's `trl` mappings (one source); two spellings the registry does not claim, known
# differences, name theirs here. Named, not imported: collecting this file must not import
# TRL's trainers (some 6 s).
CASES = {
    "DPOTrainer(loss_type='sigmoid')": ("trl_dpo_sigmoid", [{"beta": 0.1}, {"beta": 0.5}]),
    "DPOTrainer(loss_type='hinge')": ("trl_dpo_hinge", [{"beta": 0.1}, {"beta": 0.5}]),
    "DPOTrainer(loss_type='robust')": (
        "trl_dpo_robust",
        [{"beta": 0.1, "label_smoothing": 0.2}, {"beta": 0.5, "label_smoothing": 0.1}],
    ),
    "DPOTrainer(loss_type='ipo')": ("trl_dpo_ipo", [{"beta": 0.1}, {"beta": 0.5}]),
    "DPOTrainer(loss_type='sigmoid', f_divergence_type='forward_kl')": (
        "trl_dpo_forward_kl", [{"beta": 0.1}, {"beta": 0.5}],
    ),
    "DPOTrainer(loss_type='sigmoid', f_divergence_type='js_divergence')": (
        "trl_dpo_js_divergence", [{"beta": 0.1}, {"beta": 0.5}],
    ),
    "DPOTrainer(loss_type='sigmoid', f_divergence_type='alpha_divergence')": (
        "trl_dpo_alpha_divergence",
        [
            {"beta": 0.1, "f_alpha_divergence_coef": 0.5},
            {"beta": 0.5, "f_alpha_divergence_coef": 1.5},
        ],
    ),
    "DPOTrainer(loss_type='exo_pair')": (
        "trl_dpo_exo_pair", [{"beta": 0.1}, {"beta": 0.5, "label_smoothing": 0.2}],
    ),
    "DPOTrainer(loss_type='exo_pair', f_divergence_type='forward_kl')": (
        "trl_dpo_exo_forward_kl", [{"beta": 0.1}, {"beta": 0.5, "label_smoothing": 0.2}],
    ),
    "DPOTrainer(loss_type='exo_pair', f_divergence_type='js_divergence')": (
        "trl_dpo_exo_js_divergence", [{"beta": 0.1}, {"beta": 0.5}],
    ),
    "DPOTrainer(loss_type='nca_pair')": ("trl_dpo_nca_pair", [{"beta": 0.1}, {"beta": 0.5}]),
    "DPOTrainer(loss_type='bco_pair')": ("trl_dpo_bco_pair", [{"beta": 0.1}, {"beta": 0.5}]),
    "DPOTrainer(loss_type='sppo_hard')": ("trl_dpo_sppo_hard", [{"beta": 0.1}, {"beta": 0.5}]),
    "DPOTrainer(loss_type='apo_zero')": ("trl_dpo_apo_zero", [{"beta": 0.1}, {"beta": 0.5}]),
    "DPOTrainer(loss_type='apo_down')": ("trl_dpo_apo_down", [{"beta": 0.1}, {"beta": 0.5}]),
    "DPOTrainer(loss_type='discopop')": (
        "trl_dpo_discopop", [{"beta": 0.1}, {"beta": 0.5, "discopop_tau": 0.2}],
    ),
    "DPOTrainer(loss_type='discopop', f_divergence_type='forward_kl')": (
        "trl_dpo_discopop_forward_kl", [{"beta": 0.1}, {"beta": 0.5, "discopop_tau": 0.2}],
    ),
    "DPOTrainer(loss_type='discopop', f_divergence_type='js_divergence')": (
        "trl_dpo_discopop_js_divergence", [{"beta": 0.1}],
    ),
    "DPOTrainer(loss_type='sigmoid_norm')": (
        "trl_dpo_sigmoid_norm", [{"beta": 0.1}, {"beta": 0.5}],
    ),
    "DPOTrainer(loss_type='sigmoid', ld_alpha=alpha)": (
        "trl_dpo_ld", [{"ld_alpha": 0.5}, {"beta": 0.5, "ld_alpha": 0.2}, {"ld_alpha": 1.0}],
    ),
    "DPOTrainer(loss_type='aot')": (
        "trl_dpo_aot", [{"beta": 0.1}, {"beta": 0.5, "label_smoothing": 0.2}],
    ),
    "DPOTrainer(loss_type='aot_unpaired')": (
        "trl_dpo_aot_unpaired", [{"beta": 0.1}, {"beta": 0.5, "label_smoothing": 0.2}],
    ),
    "ORPOTrainer": ("trl_orpo", [{"lam": 0.1}, {"lam": 0.5}]),
    "CPOTrainer(loss_type='simpo', cpo_alpha=0.0)": (
        "trl_cpo_simpo", [{"beta": 2.0, "gamma": 0.5}, {"beta": 5.0, "gamma": 1.0}],
    ),
    "CPOTrainer(loss_type='sigmoid', cpo_alpha=0.0)": (
        "trl_cpo_sigmoid", [{"beta": 0.1}, {"beta": 0.5, "label_smoothing": 0.2}],
    ),
    "CPOTrainer(loss_type='hinge', cpo_alpha=0.0)": (
        "trl_cpo_hinge", [{"beta": 0.1}, {"beta": 0.5}],
    ),
    "CPOTrainer(loss_type='ipo', cpo_alpha=0.0)": ("trl_cpo_ipo", [{"beta": 0.1}, {"beta": 0.5}]),
    "CPOTrainer(loss_type='alphapo')": (
        "trl_cpo_alphapo", [{"alpha": 0.0}, {"alpha": 0.25}, {"beta": 5.0, "alpha": -0.5}],
    ),
    "DPOTrainer(loss_type='sigmoid', label_smoothing=eps)": (
        "trl_dpo_sigmoid_label_smoothing",
        [{"beta": 0.1, "label_smoothing": 0.2}, {"beta": 0.5, "label_smoothing": 0.2}],
    ),
    "SFTTrainer(loss_type='nll')": ("trl_sft_tokens", [{}]),
    "DPOTrainer(loss_type='sft')": ("trl_dpo_sft", [{}]),
    "DPOTrainer(loss_type='sigmoid', use_weighting=True)": (
        "trl_dpo_wpo_sigmoid", [{"beta": 0.1}, {"beta": 0.5}],
    ),
    "DPOTrainer(loss_type='hinge', use_weighting=True)": ("trl_dpo_wpo_hinge", [{"beta": 0.3}]),
    "CPOTrainer(loss_type='sigmoid')": (
        "trl_cpo_sigmoid_nll", [{"beta": 0.1}, {"beta": 0.5, "cpo_alpha": 0.5}],
    ),
    "CPOTrainer(loss_type='hinge')": ("trl_cpo_hinge_nll", [{"beta": 0.3, "cpo_alpha": 2.0}]),
    "KTOTrainer(loss_type='kto')": (
        "trl_kto_kto",
        [{"beta": 0.1}, {"beta": 0.5, "desirable_weight": 1.33, "undesirable_weight": 0.7}],
    ),
    "KTOTrainer(loss_type='apo_zero_unpaired')": (
        "trl_kto_apo_zero_unpaired", [{"beta": 0.1}, {"beta": 0.5, "desirable_weight": 0.8}],
    ),
    "SFTTrainer(loss_type='nll'), sequences": ("trl_sft", [{}]),
}  # fmt: skip
UNCLAIMED = {  # spellings no registry entry claims: what each is compared with
    "DPOTrainer(loss_type='sigmoid', label_smoothing=eps)": ("dpo", {"variant": "sigmoid"}),
    "SFTTrainer(loss_type='nll'), sequences": ("sft", {}),
}


def claimed() -> dict[str, tuple[str, dict]]:
    """TRL spelling -> (lakelab objective, its hyper-parameters), from the registry."""
    return {
        spelling: (name, hparams)
        for name, objective in OBJECTIVES.items()
        for spelling, hparams in objective.trl.items()
    }


@pytest.fixture(scope="module")
def code():
    """tests/trl_code.py, imported when the first test of this file runs."""
    return importlib.import_module("tests.trl_code")


KNOWN_DIFFERENCES = {
    "DPOTrainer(loss_type='hinge', use_weighting=True)": (
        "TRL multiplies the loss by the WPO weights in place (dpo_trainer.py:1526, "
        "`per_sequence_loss *= chosen_weights * rejected_weights`); hinge's loss is a relu "
        "output, which autograd keeps for its backward pass: every backward raises "
        "RuntimeError (modified by an inplace operation). Its values agree (batch_order, "
        "batch_size pass)"
    ),
    "DPOTrainer(loss_type='sigmoid', label_smoothing=eps)": (
        "TRL 1.16's sigmoid loss ignores label_smoothing (dpo_trainer.py:1387-1388; "
        "DPOConfig: label smoothing is for robust, exo_pair and aot), lakelab's dpo 'sigmoid' "
        "with eps > 0 is conservative DPO: agrees/* and hparam/* fail"
    ),
    "ORPOTrainer": (
        "TRL's log1mexp (orpo_trainer.py:87-91) has no clamp: a rejected response with mean "
        "log-prob exactly 0 gives log_odds -inf and an infinite loss (agrees/extremes at lam "
        "0.1: inf vs lakelab's 184.90, which clamps log1mexp's argument at -1e-6); every other "
        "check passes (its float32 upcast, lines 691-692, stays within 3e-9 relative)"
    ),
    "DPOTrainer(loss_type='discopop')": (
        "TRL's DiscoPOP multiplies sigmoid(rho / tau) by exp(-rho) (dpo_trainer.py:1486-1493): "
        "for a margin rho far below 0 that is 0 * inf = NaN (rho < -709 in float64, < -88 in "
        "float32 and bfloat16), where the loss is finite; lakelab computes the product as "
        "exp(logsigmoid(rho / tau) - rho): agrees/extremes and float32 fail (and agrees/saturated "
        "at beta 0.5)"
    ),
    "DPOTrainer(loss_type='discopop', f_divergence_type='js_divergence')": (
        "TRL's DiscoPOP on f-DPO's JS scores: the same 0 * inf = NaN as without them "
        "(dpo_trainer.py:1486-1493) at the extreme margins: agrees/extremes and float32 fail"
    ),
    "CPOTrainer(loss_type='alphapo')": (
        "TRL reshapes the reward as (1 - p**(-alpha)) / alpha after p = exp(A) (cpo_trainer.py:"
        "699-704): for a mean log-prob A below about -745 p underflows to 0 and the reward is "
        "inf (alpha > 0) or its gradient NaN (alpha < 0); lakelab's -expm1(-alpha A) / alpha "
        "stays finite: agrees/extremes (A = -1e3) and float32 fail. At alpha = 0 TRL's is SimPO "
        "and passes"
    ),
    "DPOTrainer(loss_type='sigmoid', f_divergence_type='alpha_divergence')": (
        "TRL clamps the alpha divergence's exponent by a table of float16, bfloat16 and float32 "
        "only (dpo_trainer.py:1373): on float64 inputs it raises KeyError: torch.float64, so "
        "every check fails; its float32 code is pinned by a test of its own"
    ),
    "SFTTrainer(loss_type='nll'), sequences": (
        "TRL's SFT loss is a token-level mean over the batch (sft_trainer.py:1616-1618), "
        "lakelab's sft a mean of per-sequence means: they differ on unequal lengths"
    ),
}


DIFFERENT_ONLY_WHEN = {  # a known difference that shows at some settings only
    "CPOTrainer(loss_type='alphapo')": lambda hparams: hparams.get("alpha", 0.0) != 0.0,
}


LOGITS = {"trl_cpo_sigmoid_nll", "trl_cpo_hinge_nll"}  # in the logits form (SequenceLogits)
# functions in verify's tokens form (a SequenceLogps)
TOKENS = {"trl_dpo_ld", "trl_sft_tokens", "trl_dpo_sft", "trl_kto_kto",
          "trl_kto_apo_zero_unpaired", "trl_dpo_wpo_sigmoid", "trl_dpo_wpo_hinge"}  # fmt: skip


def cases():
    meaning = claimed() | UNCLAIMED
    for spelling, (name, settings) in CASES.items():
        like, fixed = meaning[spelling]
        for hparams in settings:
            marks = ()
            shows = DIFFERENT_ONLY_WHEN.get(spelling, lambda hparams: True)(hparams)
            if spelling in KNOWN_DIFFERENCES and shows:
                marks = pytest.mark.xfail(strict=True, reason=KNOWN_DIFFERENCES[spelling])
            label = ",".join(f"{k}={v}" for k, v in hparams.items()) or "defaults"
            case = (like, {**fixed, **hparams}, name)
            yield pytest.param(*case, marks=marks, id=f"{spelling}-{label}")


def failed(report) -> dict[str, str]:
    return {c.name: c.measured for c in report.checks if not c.ok}


def test_every_trl_spelling_the_registry_claims_is_run(code):
    assert set(claimed()) | set(UNCLAIMED) == set(CASES)
    assert set(KNOWN_DIFFERENCES) <= set(CASES)
    for name, _ in CASES.values():
        assert callable(getattr(code, name))


@pytest.mark.parametrize(("like", "hparams", "name"), list(cases()))
def test_trl_code_passes_verify(code, like, hparams, name):
    inputs = "tokens" if name in TOKENS else "logits" if name in LOGITS else "sequences"
    report = verify(getattr(code, name), like=like, hparams=hparams, inputs=inputs)
    assert report.ok, str(report)


def test_a_bug_planted_on_trl_code_is_caught(code):
    def planted(chosen, rejected, ref_chosen, ref_rejected, beta=0.1):
        return beta * code.trl_dpo_sigmoid(chosen, rejected, ref_chosen, ref_rejected, beta=beta)

    report = verify(planted, like="dpo", hparams={"beta": 0.5})
    assert not report.ok, str(report)
    random = next(c for c in report.checks if c.name == "agrees/random")
    assert not random.ok and "scaled by beta" in random.bug, str(report)


# -- the known differences, pinned down ------------------------------------------------------


def test_trl_sigmoid_ignores_label_smoothing(code):
    g = torch.Generator().manual_seed(0)
    logps = [-30 * torch.rand(8, generator=g, dtype=torch.float64) for _ in range(4)]
    plain = code.trl_dpo_sigmoid(*logps, beta=0.1)
    smoothed = code.trl_dpo_sigmoid_label_smoothing(*logps, beta=0.1, label_smoothing=0.2)
    assert smoothed.item() == plain.item()
    report = verify(
        code.trl_dpo_sigmoid_label_smoothing, like="dpo", hparams={"label_smoothing": 0.2}
    )
    assert "agrees/random" in failed(report) and "hparam/label_smoothing" in failed(report)


def test_trl_orpo_is_infinite_at_a_mean_log_prob_of_zero(code):
    report = verify(code.trl_orpo, like="orpo", hparams={"lam": 0.1})
    fails = failed(report)
    assert set(fails) == {"agrees/extremes"}, str(report)
    assert fails["agrees/extremes"].startswith("loss inf"), str(report)
    chosen = torch.tensor([-0.5], dtype=torch.float64)
    assert math.isinf(code.trl_orpo(chosen, torch.zeros(1, dtype=torch.float64)).item())


def test_trl_discopop_is_nan_far_below_a_zero_margin(code):
    report = verify(code.trl_dpo_discopop, like="discopop")
    assert set(failed(report)) == {"agrees/extremes", "float32"}, str(report)
    assert failed(report)["agrees/extremes"].startswith("loss nan"), str(report)  # rho = -3000
    assert failed(report)["float32"].startswith("loss nan"), str(report)
    far = torch.tensor([-8000.0], dtype=torch.float64)  # rho = 0.1 * -8000 = -800
    zero = torch.zeros(1, dtype=torch.float64)
    assert math.isnan(code.trl_dpo_discopop(zero, -far, zero, zero).item())
    from lakelab.pairwise import discopop_loss

    assert math.isfinite(discopop_loss(zero, -far, zero, zero)[0].item())


def test_trl_alphapo_is_not_finite_at_a_mean_log_prob_of_minus_1000(code):
    chosen = torch.tensor([-1e3], dtype=torch.float64)
    rejected = torch.tensor([-1.0], dtype=torch.float64)
    theirs = code.trl_cpo_alphapo(chosen, rejected, alpha=0.25).item()
    from lakelab.reference_free import alphapo_loss

    ours = alphapo_loss(chosen, rejected, alpha=0.25)[0].item()
    assert not math.isfinite(theirs) and math.isfinite(ours)
    report = verify(code.trl_cpo_alphapo, like="alphapo", hparams={"alpha": 0.25})
    assert set(failed(report)) == {"agrees/extremes", "float32"}, str(report)


def test_trl_alpha_divergence_refuses_float64_and_agrees_in_float32(code):
    alpha = {"f_divergence_type": "alpha_divergence", "f_alpha_divergence_coef": 0.5}
    report = verify(code.trl_dpo_alpha_divergence, like="dpo", hparams=alpha)
    assert all("KeyError: torch.float64" in c.measured for c in report.checks if not c.ok)
    assert not report.ok
    g = torch.Generator().manual_seed(0)
    logps = [-5 * torch.rand(8, generator=g, dtype=torch.float64) for _ in range(4)]
    theirs = code.trl_dpo_alpha_divergence(*(x.float() for x in logps), f_alpha_divergence_coef=0.5)
    from lakelab.objectives import dpo_loss

    ours = dpo_loss(*logps, f_divergence_type="alpha_divergence", f_alpha_divergence_coef=0.5)[0]
    assert theirs.item() == pytest.approx(ours.item(), rel=1e-5)


def test_trl_sft_is_a_token_mean_and_agrees_on_equal_lengths(code):
    report = verify(code.trl_sft_equal_lengths, like="sft")
    assert report.ok, str(report)
    chosen = torch.tensor([-1.0, -2.0], dtype=torch.float64)  # responses of 1 and 2 tokens
    assert code.trl_sft(chosen).item() == pytest.approx((1 * 1.0 + 2 * 2.0) / 3)


def test_the_fake_trainers_use_trl_config_defaults():
    """The namespaces standing in for the trainers set what TRL's configs default to."""
    from trl import DPOConfig
    from trl.experimental.cpo import CPOConfig

    def default(config, name):
        f = next(f for f in dataclasses.fields(config) if f.name == name)
        return f.default_factory() if f.default is dataclasses.MISSING else f.default

    assert default(DPOConfig, "ld_alpha") is None
    assert default(DPOConfig, "f_divergence_type") == "reverse_kl"
    assert default(DPOConfig, "use_weighting") is False
    assert default(DPOConfig, "discopop_tau") == 0.05
    assert default(CPOConfig, "alpha") == 0.0


def test_trl_dpo_loss_list_with_sft_is_a_mixture_of_dpo_and_the_token_mean_nll(code):
    """``DPOTrainer(loss_type=['sigmoid', 'sft'], loss_weights=[1, a])``, RPO as TRL 1.16 has
    it, passes verify as lakelab's mixture dpo + a * sft_token_mean; lakelab's rpo follows the
    paper (the NLL per sequence) and differs from it on unequal lengths."""
    from lakelab import mixture, weight
    from lakelab.registry import register_objective, unregister_objective

    register_objective(mixture("rpo_trl", {"dpo": 1.0, "sft_token_mean": weight("rpo_alpha", 1.0)}))
    try:
        for hp in ({"beta": 0.1}, {"beta": 0.5, "rpo_alpha": 0.3}):
            report = verify(code.trl_dpo_sigmoid_sft, like="rpo_trl", hparams=hp, inputs="tokens")
            assert report.ok, str(report)
    finally:
        unregister_objective("rpo_trl")
    report = verify(code.trl_dpo_sigmoid_sft, like="rpo", inputs="tokens")
    assert not report.ok and "agrees/random" in report.failed, str(report)


def test_trl_wpo_hinge_agrees_in_value_and_cannot_backpropagate(code):
    """TRL's hinge loss with use_weighting: the value is lakelab's wpo (hinge), but the in-place
    product with the weights (dpo_trainer.py:1526) breaks relu's backward pass."""
    from lakelab.registry import SequenceLogps, compute_objective
    from lakelab.verify.batches import token_batches

    batch = token_batches(OBJECTIVES["wpo"])["random"]
    logps = [None if x is None else x.clone() for x in batch]

    theirs = code.trl_dpo_wpo_hinge(SequenceLogps(*logps), beta=0.3)
    ours = compute_objective("wpo", SequenceLogps(*logps), {"beta": 0.3, "variant": "hinge"})[0]
    assert theirs.item() == pytest.approx(ours.item(), rel=1e-12)
    leaf = logps[0].requires_grad_(True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        code.trl_dpo_wpo_hinge(SequenceLogps(leaf, *logps[1:]), beta=0.3).backward()
