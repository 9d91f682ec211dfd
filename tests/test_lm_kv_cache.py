"""LM track: generation with the key-value cache (``lakelab.lm.kv_cache``, the fast path)
against generation without it (``generate(cache=False)``, the definition)."""

import numpy as np
import pytest
import torch

from lakelab.lakes import random_lake
from lakelab.lm import tokenizer as tok
from lakelab.lm.kv_cache import KVCache, next_logits
from lakelab.lm.model import MODEL_PRESETS, ModelConfig, TinyGPT, generate

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one thread, as lakelab lm


def _model(preset: str, seed: int, scale: float) -> TinyGPT:
    """A model with weights spread ``scale`` times wider than at initialisation, so that its
    greedy tokens vary from row to row and step to step (and include the end token)."""
    model = TinyGPT(MODEL_PRESETS[preset], seed=seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen))
    return model.eval()


def _prompts(n: int, size: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.tensor(
        [tok.encode(tok.prompt_text(random_lake(size, seed=rng).desc)) for _ in range(n)]
    )  # (n, P)


@pytest.mark.parametrize(("preset", "seed"), [("tiny", 0), ("tiny", 1), ("micro", 2)])
def test_cached_logits_equal_the_full_forward_at_every_position(preset, seed):
    model = _model(preset, seed, 0.3)
    seq = torch.randint(0, len(tok.VOCAB), (32, 30), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        full = model(seq)  # (B, T, V)
        cache = KVCache(model, 32, 30)
        stepped = [next_logits(model, seq[:, :20], cache)]  # the prompt, then one at a time
        stepped += [next_logits(model, seq[:, t : t + 1], cache) for t in range(20, 30)]
    assert cache.length == 30
    torch.testing.assert_close(torch.stack(stepped, 1), full[:, 19:], rtol=1e-5, atol=1e-5)
    assert not torch.equal(full[:, 19], full[:, 20])  # a test that could fail
    with pytest.raises(ValueError, match="one new position at a time, got 2"):
        next_logits(model, seq[:, :2], cache)  # after the prompt: one position per call


@pytest.mark.parametrize(
    ("preset", "seed", "size"), [("tiny", 2, 5), ("tiny", 6, 5), ("micro", 5, 4)]
)
def test_greedy_and_sampled_tokens_are_the_same_with_and_without_the_cache(preset, seed, size):
    model = _model(preset, seed, 0.2)
    with torch.no_grad():  # the end token's logit spread wider: rows end at varied steps
        model.wte.weight[tok.END_ID] *= 3
    prompts = _prompts(64, size, seed)
    greedy = [generate(model, prompts, 13, cache=c) for c in (False, True)]
    assert torch.equal(greedy[0], greedy[1])
    sampled = [
        generate(
            model,
            prompts,
            13,
            greedy=False,
            temperature=1.5,
            cache=c,
            generator=torch.Generator().manual_seed(seed),
        )
        for c in (False, True)
    ]
    assert torch.equal(sampled[0], sampled[1])
    # the comparison covers rows that end at different steps (then padding) and rows that
    # never end (these models, seeds and prompts were chosen for it)
    for out in (greedy[0], sampled[0]):
        ends = {row.index(tok.END_ID) if tok.END_ID in row else None for row in out.tolist()}
        assert None in ends and len(ends - {None}) >= 3, ends


def test_the_cache_stops_at_the_block_size_as_the_full_forward_does():
    model = TinyGPT(ModelConfig(n_layer=1, n_head=2, d_model=16, block_size=24), seed=0)
    with torch.no_grad():  # the end token's logit about -10 * 16 below the others'
        model.wte.weight[tok.END_ID] = -10.0
        model.ln_f.bias.fill_(1.0)
    prompts = _prompts(4, 4, 0)  # 20 tokens: room for 4 more positions
    for cache in (False, True):
        assert generate(model, prompts, 5, cache=cache).shape == (4, 5)  # feeds 24 positions
        with pytest.raises(ValueError, match="sequence of 25 tokens exceeds block_size 24"):
            generate(model, prompts, 6, cache=cache)
        assert generate(model, prompts, 0, cache=cache).shape == (4, 0)
