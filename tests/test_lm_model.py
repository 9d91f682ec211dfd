"""LM track: tokenizer, the tiny transformer (causality, embeddings path, overfitting) and
generation."""

import numpy as np
import pytest
import torch

from lakelab.lakes import random_lake
from lakelab.lm import tokenizer as tok
from lakelab.lm.data import Tokens, to_tokens
from lakelab.lm.model import MODEL_PRESETS, ModelConfig, TinyGPT, generate, model_config
from lakelab.lm.train import token_logps
from lakelab.registry import SequenceLogps, compute_objective
from tests.helpers import assert_close

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one thread, as lakelab lm


def test_tokenizer_round_trips_lakes_and_plans():
    rng = np.random.default_rng(0)
    for _ in range(20):
        lake = random_lake(int(rng.integers(2, 7)), seed=rng)
        plan = rng.integers(0, 4, size=int(rng.integers(0, 15))).tolist()
        text = tok.prompt_text(lake.desc) + tok.plan_text(plan)
        ids = tok.encode(text)
        assert len(ids) == len(text)
        assert tok.decode(ids) == text
        assert tok.parse_plan(tok.plan_text(plan)) == plan
        assert len(tok.prompt_text(lake.desc)) == tok.prompt_length(lake.nrow)
    # the vocabulary is exactly what the docstring says, one token per character
    assert tok.VOCAB == "_SFHG/>LDRU."
    assert [tok.VOCAB[i] for i in tok.ACTION_IDS] == ["L", "D", "R", "U"]  # Gymnasium's order


@pytest.mark.parametrize(
    ("text", "bad", "pos"),
    [("SFXF/FHFH>", "X", 2), ("SFFF>rr.", "r", 5), ("SF FG>", " ", 2), ("SFFG>é", "é", 5)],
)
def test_tokenizer_rejects_characters_outside_the_vocabulary(text, bad, pos):
    with pytest.raises(ValueError, match=rf"character {bad!r} at position {pos} .* vocabulary"):
        tok.encode(text)


def test_decode_rejects_unknown_ids_and_parse_rejects_non_plans():
    with pytest.raises(ValueError, match="token id 12 at position 1"):
        tok.decode([1, 12])
    assert tok.parse_plan("RRS.") is None  # a cell letter is not a move
    assert tok.parse_plan("RD") == [2, 1]  # never ended: read to the end
    assert tok.parse_plan(".RRR") == []  # ends at once: the empty plan


def test_model_presets_and_validation():
    assert 100_000 < TinyGPT(MODEL_PRESETS["micro"]).n_params() < 110_000  # ~ nanoGPT-nano
    with pytest.raises(ValueError, match="unknown model preset 'huge'"):
        model_config("huge")
    with pytest.raises(ValueError, match=r"d_model \(30\) must be a multiple of n_head \(4\)"):
        ModelConfig(d_model=30)
    with pytest.raises(ValueError, match="n_layer must be a positive integer"):
        ModelConfig(n_layer=0)


def test_changing_a_future_token_leaves_earlier_logits_unchanged():
    model = TinyGPT(MODEL_PRESETS["micro"], seed=1)
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 12, (3, 40), generator=gen)  # (B, T)
    k = 25
    y = x.clone()
    y[:, k] = (x[:, k] + 1) % 12  # a different token at position k
    with torch.no_grad():
        lx, ly = model(x), model(y)  # (B, T, V)
    assert_close(lx[:, :k], ly[:, :k])
    assert (lx[:, k:] - ly[:, k:]).abs().amax(dim=(0, 2)).min() > 1e-4  # and later ones do change
    # right padding (what batches add) leaves every real position unchanged
    with torch.no_grad():
        assert_close(model(x[:, :k]), lx[:, :k])


def test_forward_on_token_embeddings_equals_forward_on_ids_exactly():
    model = TinyGPT(MODEL_PRESETS["nano"], seed=2)
    x = torch.randint(0, 12, (4, 20), generator=torch.Generator().manual_seed(1))
    assert torch.equal(model(x), model(tok_emb=model.wte(x)))
    with pytest.raises(ValueError, match="exactly one"):
        model()


def _samples(n: int, seed: int) -> tuple[list[list[int]], Tokens]:
    rng = np.random.default_rng(seed)
    lakes = [random_lake(4, seed=rng) for _ in range(n)]
    plans = [rng.integers(0, 4, size=int(rng.integers(1, 8))).tolist() for _ in range(n)]
    responses = [tok.encode(tok.plan_text(p)) for p in plans]
    return plans, to_tokens(lakes, responses, 29)


@pytest.mark.slow  # keeps make test-fast under 30 s
def test_a_tiny_batch_is_overfit_and_then_generated_back():
    plans, batch = _samples(8, seed=3)
    model = TinyGPT(MODEL_PRESETS["micro"], seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(120):
        loss, _ = compute_objective("sft", SequenceLogps(token_logps(model, batch), batch.mask))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    # One seed's float32 training, so thresholds with room for other CPUs' kernels: measured
    # here, the loss ends at 0.0056 (torch's AVX2 kernels) or 0.0047 (its generic ones) after
    # first passing 0.02 at step 85 or 77, and the worst token's NLL ends at 0.010 or 0.009.
    assert losses[0] > 2.0  # chance level is log 12 = 2.48 nats per token
    assert losses[-1] < 0.02  # mean token probability above 0.98
    with torch.no_grad():
        worst = -token_logps(model, batch)[batch.mask].min().item()
    assert worst < 0.1  # every target token has p > 0.9 > all other tokens together, so
    out = generate(model, batch.prompts, 9)  # greedy decoding must give the plans back
    assert [tok.parse_plan(tok.decode(row)) for row in out.tolist()] == plans


def test_sampled_generation_is_seeded_and_stops_at_the_end_token():
    model = TinyGPT(MODEL_PRESETS["nano"], seed=0)
    prompts = torch.tensor([tok.encode("SFF/FHF/FFG>")] * 16)  # (B, P)
    runs = [
        generate(model, prompts, 10, greedy=False, generator=torch.Generator().manual_seed(5))
        for _ in range(2)
    ]
    assert torch.equal(runs[0], runs[1])
    assert runs[0].shape == (16, 10)
    for row in runs[0].tolist():
        if tok.END_ID in row:  # everything after the end token is padding
            end = row.index(tok.END_ID)
            assert set(row[end + 1 :]) <= {tok.PAD_ID}
    with pytest.raises(ValueError, match="temperature must be > 0"):
        generate(model, prompts, 3, greedy=False, temperature=0.0)
