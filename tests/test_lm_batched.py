"""LM track: the batched path (every seed's model trained in one stacked computation) against
the plain loop of lakelab.lm.train, one seed after another: bit-equal parameters and logs."""

import numpy as np
import pytest
import torch

from lakelab.lm import batched as BT
from lakelab.lm import data as D
from lakelab.lm import train as TR
from lakelab.lm.metrics import evaluate, held_out
from lakelab.lm.model import TinyGPT, model_config
from lakelab.lm.stacked import StackedGPT
from lakelab.training import Diverged
from tests.helpers import TINY_LM

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one thread, as lakelab lm

SEEDS = (0, 1, 2)
# a weight decay > 0 so that AdamW's decoupled decay is compared too
CFG = TINY_LM.replace(seeds=len(SEEDS), weight_decay=0.01)


def _assert_same_models(got: list[TinyGPT], expected: list[TinyGPT]) -> None:
    for n, (a, b) in enumerate(zip(got, expected, strict=True)):
        for (name, p), (_, q) in zip(a.named_parameters(), b.named_parameters(), strict=True):
            assert torch.equal(p, q), f"seed index {n}: {name} differs"
    # the seeds' models differ from one another, so a mix-up of seeds would be caught
    assert not torch.equal(got[0].wte.weight, got[1].wte.weight)


def _recorder(rows: list, held):
    """A log of evaluated metrics (and the loop's extras) as their exact reprs."""

    def log(model, step, extra=None):
        rows.append(repr((step, evaluate(model, held), extra)))

    return log


@pytest.fixture(scope="module")
def seed_datas():
    return [D.seed_data(CFG, s) for s in SEEDS]


@pytest.fixture(scope="module")
def seeds_setup(seed_datas):
    """Each seed's data and its base model, pre-trained by the plain loop, with its logs."""
    held, data = held_out(CFG), seed_datas
    logs = [[] for _ in SEEDS]
    bases = [
        TR.pretrain(CFG, d.corpus, s, log=_recorder(rows, held))
        for d, s, rows in zip(data, SEEDS, logs, strict=True)
    ]
    references = [TR.ReferenceCache.build(b, d) for b, d in zip(bases, data, strict=True)]
    return held, data, bases, references, logs


@pytest.mark.parametrize("model", [CFG.model, "tiny"])  # nano, and the default's model
def test_the_stacked_model_is_each_seeds_model_bit_for_bit(seed_datas, model):
    data, bases = seed_datas, [TinyGPT(model_config(model), seed=s) for s in SEEDS]
    stacked = StackedGPT(bases)
    batches = [d.chosen[:8] for d in data]
    got = BT.stacked_token_logps(stacked, batches)  # (N, B, T)
    got.sum().backward()
    for n, (base, batch) in enumerate(zip(bases, batches, strict=True)):
        base.zero_grad()
        expected = TR.token_logps(base, batch)
        expected.sum().backward()
        assert torch.equal(got[n], expected)
        for name, p in base.named_parameters():
            assert torch.equal(stacked.p(name).grad[n], p.grad), name
    assert torch.equal(stacked.seed_model(1).wpe.weight, bases[1].wpe.weight)
    with pytest.raises(ValueError, match="inputs for 2 seeds, but 3 models are stacked"):
        stacked(torch.stack([b.inputs for b in batches[:2]]))


@pytest.mark.slow  # ~2 s: pre-trains three seeds twice
def test_pretraining_together_is_pretraining_each_seed_alone(seeds_setup):
    held, data, bases, _, logs = seeds_setup
    got_logs = [[] for _ in SEEDS]
    got = BT.pretrain_seeds(
        CFG,
        [d.corpus for d in data],
        SEEDS,
        logs=[_recorder(rows, held) for rows in got_logs],
    )
    _assert_same_models(got, bases)
    assert got_logs == logs
    assert len(logs[0]) == 3  # steps 0, 10, 20


@pytest.mark.slow  # up to ~1.5 s each: three seeds, both loops
@pytest.mark.parametrize(
    ("method", "negatives"),
    [
        ("sft", "offline"),
        ("ift", "offline"),  # two passes, mixed inputs
        ("dpo", "offline"),  # the reference cache
        ("dpo", "online"),  # negatives sampled from each seed's current model
        ("kto", "offline"),  # unpaired, mismatched pairs under policy and reference
        ("wpo", "offline"),  # log sum of squared probabilities
        ("simpo", "offline"),  # pairs without a reference
    ],
)
def test_aligning_together_is_aligning_each_seed_alone(seeds_setup, method, negatives):
    held, data, bases, references, _ = seeds_setup
    cfg = CFG.replace(methods=(method,), negatives=negatives)
    expected_logs = [[] for _ in SEEDS]
    expected = [
        TR.align(cfg, b, method, d, s, reference=r, log=_recorder(rows, held))
        for b, d, s, r, rows in zip(bases, data, SEEDS, references, expected_logs, strict=True)
    ]
    got_logs = [[] for _ in SEEDS]
    got = BT.align_seeds(
        cfg,
        bases,
        method,
        data,
        SEEDS,
        references=references,
        logs=[_recorder(rows, held) for rows in got_logs],
    )
    _assert_same_models(got, expected)
    assert got_logs == expected_logs
    assert len(got_logs[0]) == 3  # steps 0, 3, 6
    # it trained: the aligned models are not their bases
    assert not torch.equal(got[0].wte.weight, bases[0].wte.weight)


@pytest.mark.slow  # ~2.5 s: a seed set to diverge, both loops
def test_a_diverging_seed_is_named_with_method_and_step(seed_datas, monkeypatch):
    data, bases = seed_datas, [TinyGPT(model_config(CFG.model), seed=s) for s in SEEDS]
    real = BT.compute_objective
    calls = []

    def poisoned(method, logps, hp=None):
        calls.append(method)
        loss, metrics = real(method, logps, hp)
        # the third call is step 0 of the third seed (seed 7), then every seed's loss is NaN
        return (loss * float("nan") if len(calls) >= 3 else loss), metrics

    monkeypatch.setattr(BT, "compute_objective", poisoned)
    with pytest.raises(Diverged, match=r"orpo diverged at step 0 \(seed 7\)"):
        BT.align_seeds(
            CFG, bases, "orpo", data, (3, 5, 7), references=[None] * 3, logs=[lambda *a: None] * 3
        )


def test_the_stack_needs_models_of_one_config():
    with pytest.raises(ValueError, match="one ModelConfig"):
        StackedGPT([TinyGPT(model_config("nano")), TinyGPT(model_config("tiny"))])
    with pytest.raises(ValueError, match="at least one model"):
        StackedGPT([])


@pytest.mark.slow  # ~2 s: two short runs of three seeds
def test_each_seed_draws_its_own_batches(seed_datas):
    """The streams are the plain loop's: seed 1's first pre-training batch in the stacked
    run is what default_rng([1, PRETRAIN_BATCHES]) draws."""
    data = seed_datas
    drawn = []
    real = BT.stacked_token_logps

    def spy(model, batches, tok_emb=None):
        drawn.append([b.inputs for b in batches])
        return real(model, batches, tok_emb)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(BT, "stacked_token_logps", spy)
        BT.pretrain_seeds(CFG.replace(pretrain_steps=1), [d.corpus for d in data], SEEDS,
                          logs=[lambda *a: None] * 3)  # fmt: skip
    rng = np.random.default_rng([1, TR.PRETRAIN_BATCHES])
    rows = rng.choice(len(data[1].corpus), size=CFG.batch_size, replace=False)
    assert torch.equal(drawn[0][1], data[1].corpus.inputs[rows])
    assert not torch.equal(drawn[0][0], drawn[0][1])
