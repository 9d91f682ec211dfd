"""TRL's full CPO loss, NLL term included, against lakelab's objectives (tests/trl_cpo_nll.py).

TRL's ``CPOTrainer`` returns ``cpo_loss(...).mean() + cpo_alpha * nll_loss``
(trl/experimental/cpo/cpo_trainer.py:890). ``nll_loss`` is a cross-entropy over the chosen
half of the concatenated batch (lines 826-846), that is, a token-level mean over every chosen
response token. So TRL's loss should equal lakelab's preference objective plus ``cpo_alpha``
times ``sft_token_mean``. The batches are random float64 logits, with prompts and padding
labelled -100 and responses of unequal lengths. They are tried for each TRL loss type
(sigmoid, hinge, ipo, simpo, alphapo) at ``cpo_alpha`` 0, 1 and 0.5 and non-default
hyper-parameters. The losses must agree to rel 1e-10, and the gradients with respect to the
chosen and rejected logits to 1e-9.

The lakelab objective and hyper-parameters for each TRL loss type come from the registry's
``trl`` mappings ("CPOTrainer(loss_type=...)"). lakelab's ``gamma`` is TRL's ``simpo_gamma``;
``alpha`` is ``alpha`` in both. TRL's ``CPOConfig`` turns ``loss_type='alphapo'`` into "simpo"
with ``cpo_alpha = 0`` (cpo_config.py:175-181), so AlphaPO with an NLL term is spelt
``loss_type='simpo', alpha=a`` here, and a separate test pins down that 'alphapo' drops the
NLL term. A non-vacuity test shows that a wrong NLL on the lakelab side differs from TRL's:
per-sequence ``sft`` instead of ``sft_token_mean``, on unequal lengths.

Skipped without trl (an optional extra). The TRL import (some 6 s) happens in the fixture, so
collecting this file does not import TRL.
"""

from __future__ import annotations

import re

import pytest
import torch

from lakelab.registry import OBJECTIVES, compute_objective
from lakelab.verify.forms import IGNORE_INDEX, VOCAB, SequenceLogits
from tests.trl_cpo_nll import trl_cpo_full

pytestmark = pytest.mark.slow  # importing TRL's trainers takes some 6 s

F64 = torch.float64
REL = 1e-10  # the losses
GRAD = 1e-9  # the gradients, absolute and relative
SEEDS = (0, 1, 2, 3)
CPO_ALPHAS = (0.0, 1.0, 0.5)
LOSS_TYPES = {"sigmoid", "hinge", "ipo", "simpo", "alphapo"}
# lakelab's hyper-parameter -> CPOConfig's field; the registry's "variant" is the loss type
TRL_NAMES = {"beta": "beta", "label_smoothing": "label_smoothing", "gamma": "simpo_gamma",
             "alpha": "alpha"}  # fmt: skip
SPELLING = re.compile(r"CPOTrainer\(loss_type='(\w+)'(?:, cpo_alpha=0\.0)?\)")


def _registry_mappings() -> dict[str, tuple[str, dict]]:
    """TRL CPO loss type -> (lakelab objective, its fixed hyper-parameters), from the registry."""
    out = {}
    for name, objective in OBJECTIVES.items():
        if name == "cpo_nll":  # the mixture with the NLL term: tested on its own below
            continue
        for spelling, fixed in objective.trl.items():
            match = SPELLING.fullmatch(spelling)
            if match:
                assert match.group(1) not in out, f"two objectives claim {spelling}"
                out[match.group(1)] = (name, dict(fixed))
    return out


MAPPINGS = _registry_mappings()

# TRL loss type -> the lakelab-side settings to check it at (beta never at its default)
SETTINGS = {
    "sigmoid": [{"beta": 0.3}, {"beta": 0.7, "label_smoothing": 0.2}],
    "hinge": [{"beta": 0.2}],
    "ipo": [{"beta": 0.3}],
    "simpo": [{"beta": 1.5, "gamma": 0.8}],
    "alphapo": [
        {"beta": 1.5, "gamma": 0.8, "alpha": 0.4},
        {"beta": 2.5, "gamma": 0.1, "alpha": -0.3},
    ],
}
CASES = [
    pytest.param(loss_type, hp, cpo_alpha, id=f"{loss_type}-{k}-cpo_alpha={cpo_alpha}")
    for loss_type in sorted(SETTINGS)
    for k, hp in enumerate(SETTINGS[loss_type])
    for cpo_alpha in CPO_ALPHAS
]


@pytest.fixture(scope="module")
def trl_loss():
    pytest.importorskip("trl")
    return trl_cpo_full


def _labels(rows: int, width: int, g: torch.Generator) -> torch.Tensor:
    """Labels (rows, width): a prompt of 1-3 positions and right padding at -100, between them
    a response of random tokens whose length varies from row to row."""
    labels = torch.full((rows, width), IGNORE_INDEX, dtype=torch.long)
    for r in range(rows):
        prompt = int(torch.randint(1, 4, (), generator=g))
        length = int(torch.randint(1, width - prompt + 1, (), generator=g))
        labels[r, prompt : prompt + length] = torch.randint(0, VOCAB, (length,), generator=g)
    return labels


def random_batch(seed: int) -> SequenceLogits:
    """Random float64 logits (leaves that require grad) and labels; the chosen and rejected
    halves have different widths, so TRL's concatenation pads one of them."""
    g = torch.Generator().manual_seed(seed)
    rows = 3 + seed % 3
    widths = (6 + seed % 2, 8 - seed % 3)
    logits = [
        (2.0 * torch.randn(rows, w, VOCAB, generator=g, dtype=F64)).requires_grad_() for w in widths
    ]
    labels = [_labels(rows, w, g) for w in widths]
    return SequenceLogits(logits[0], labels[0], logits[1], labels[1])


def trl_kwargs(loss_type: str, hp: dict, cpo_alpha: float) -> dict:
    """CPOConfig's fields for the lakelab settings ``hp``. AlphaPO with an NLL term is TRL's
    simpo with ``alpha``, since 'alphapo' would set cpo_alpha to 0."""
    kwargs = {TRL_NAMES[k]: v for k, v in hp.items()}
    if loss_type == "alphapo" and cpo_alpha != 0.0:
        loss_type = "simpo"
    return {"loss_type": loss_type, "cpo_alpha": cpo_alpha, **kwargs}


def lakelab_loss(
    batch: SequenceLogits, loss_type: str, hp: dict, cpo_alpha: float, nll: str = "sft_token_mean"
) -> torch.Tensor:
    """lakelab's objective for TRL's ``loss_type`` (from the registry) + cpo_alpha * ``nll``."""
    name, fixed = MAPPINGS[loss_type]
    logps = batch.to_logps()
    return (
        compute_objective(name, logps, {**fixed, **hp})[0]
        + cpo_alpha * compute_objective(nll, logps)[0]
    )


def grads(loss: torch.Tensor, batch: SequenceLogits) -> tuple[torch.Tensor, ...]:
    return torch.autograd.grad(loss, (batch.chosen, batch.rejected))


def test_the_registry_maps_every_cpo_loss_type():
    assert set(MAPPINGS) == LOSS_TYPES
    assert set(SETTINGS) == LOSS_TYPES
    for loss_type, (name, _fixed) in MAPPINGS.items():
        for hp in SETTINGS[loss_type]:
            assert set(hp) <= {p.name for p in OBJECTIVES[name].hyperparams}, (loss_type, hp)
            defaults = {p.name: p.default for p in OBJECTIVES[name].hyperparams}
            assert hp["beta"] != defaults["beta"]


@pytest.mark.parametrize(("loss_type", "hp", "cpo_alpha"), CASES)
def test_trl_full_cpo_loss_is_lakelab_objective_plus_token_mean_nll(
    trl_loss, loss_type, hp, cpo_alpha
):
    for seed in SEEDS:
        batch = random_batch(seed)
        theirs = trl_loss(batch, **trl_kwargs(loss_type, hp, cpo_alpha))
        ours = lakelab_loss(batch, loss_type, hp, cpo_alpha)
        assert theirs.dtype == ours.dtype == F64
        torch.testing.assert_close(theirs, ours, rtol=REL, atol=0.0, msg=f"seed {seed}")
        for kind, g_theirs, g_ours in zip(
            ("chosen", "rejected"), grads(theirs, batch), grads(ours, batch), strict=True
        ):
            assert g_theirs.abs().max() > 0, (seed, kind)  # the comparison is not of zeros
            torch.testing.assert_close(
                g_theirs, g_ours, rtol=GRAD, atol=GRAD, msg=f"seed {seed}, d/d {kind}"
            )


@pytest.mark.parametrize("cpo_alpha", [1.0, 0.5])
def test_trl_alphapo_spelling_drops_the_nll_term(trl_loss, cpo_alpha):
    """CPOConfig(loss_type='alphapo', cpo_alpha=c) trains without NLL, whatever c is."""
    hp = SETTINGS["alphapo"][0]
    batch = random_batch(0)
    kwargs = {TRL_NAMES[k]: v for k, v in hp.items()}
    theirs = trl_loss(batch, loss_type="alphapo", cpo_alpha=cpo_alpha, **kwargs)
    torch.testing.assert_close(theirs, lakelab_loss(batch, "alphapo", hp, 0.0), rtol=REL, atol=0.0)
    with_nll = lakelab_loss(batch, "alphapo", hp, cpo_alpha)
    assert abs(float((theirs - with_nll).detach())) > 1e-2


def test_a_wrong_nll_differs_from_trl(trl_loss):
    """Non-vacuity: the per-sequence mean ``sft`` (every response weighs the same) in place of
    the token-level ``sft_token_mean`` misses TRL's loss on unequal lengths, and TRL's NLL term
    is really there (cpo_alpha 1 is not cpo_alpha 0)."""
    for seed in SEEDS:
        batch = random_batch(seed)
        lengths = (batch.chosen_labels[:, 1:] != IGNORE_INDEX).sum(-1)
        assert len(set(lengths.tolist())) > 1, "unequal chosen lengths"
        for loss_type in sorted(LOSS_TYPES):
            hp = SETTINGS[loss_type][0]
            theirs = trl_loss(batch, **trl_kwargs(loss_type, hp, 1.0))
            right = lakelab_loss(batch, loss_type, hp, 1.0)
            wrong = lakelab_loss(batch, loss_type, hp, 1.0, nll="sft")
            torch.testing.assert_close(theirs, right, rtol=REL, atol=0.0)
            assert abs(float((theirs - wrong).detach())) > 1e-3 * abs(float(theirs.detach())), (
                seed,
                loss_type,
            )
            without = trl_loss(batch, **trl_kwargs(loss_type, hp, 0.0))
            assert abs(float((theirs - without).detach())) > 0.5, (seed, loss_type)
