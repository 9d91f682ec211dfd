"""A key-value cache: the fast path of ``lakelab.lm.model.generate`` (``cache=True``).

Without it, ``generate`` runs the whole sequence so far through the model for every new
token, which is the definition and what a reader checks first. A causal model's earlier
positions never change when a token is appended, so their keys and values can be kept:
each block stores them in a cache, the prompt runs once, and each later step runs only the
new token of every row, whose query attends to all cached positions and itself:

    step 0:  x = prompts (B, P)          keys, values of positions 0 .. P-1 cached
    step k:  x = new token (B, 1)        attends to positions 0 .. P+k-1 (no mask needed:
                                         every cached position is earlier)

n new tokens after a prompt of P tokens then cost P + n - 1 positions instead of
P n + n (n - 1) / 2. The logits agree with the full forward's to float32 rounding (products
of other shapes add in another order), and sampling draws from the same generator in the
same order, so the tokens are the same unless rounding flips a near-tie, which none of the
tests meets (tests/test_lm_kv_cache.py). Speed: docs/benchmarks.md.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# ``model`` below is a ``lakelab.lm.model.TinyGPT``, annotated as ``nn.Module``: that module
# imports this one for ``generate``, and importing it back would make a cycle.


class KVCache:
    """Keys and values of every block for the first ``length`` positions, (B, nh, L, hs)."""

    def __init__(self, model: nn.Module, batch: int, max_len: int) -> None:
        cfg = model.cfg
        shape = (batch, cfg.n_head, max_len, cfg.d_model // cfg.n_head)
        dtype = model.wte.weight.dtype
        self.keys = [torch.empty(shape, dtype=dtype) for _ in model.blocks]
        self.values = [torch.empty(shape, dtype=dtype) for _ in model.blocks]
        self.length = 0

    def extend(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the new positions' ``k``, ``v`` (B, nh, T, hs) of block ``layer``; return
        the keys and values of every position so far, (B, nh, length + T, hs)."""
        end = self.length + k.shape[2]
        self.keys[layer][:, :, self.length : end] = k
        self.values[layer][:, :, self.length : end] = v
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]


def next_logits(model: nn.Module, idx: torch.Tensor, cache: KVCache) -> torch.Tensor:
    """Logits (B, V) of the token after ``idx`` (B, T), the positions following the
    ``cache.length`` cached ones; the cache then holds them too. ``TinyGPT.forward`` with
    attention over the cached positions: the first call (an empty cache) may run a whole
    prompt, causally; later calls run one new position each."""
    start, T = cache.length, idx.shape[1]
    if start and T != 1:
        raise ValueError(f"after the prompt, one new position at a time, got {T}")
    if start + T > model.cfg.block_size:
        raise ValueError(
            f"sequence of {start + T} tokens exceeds block_size {model.cfg.block_size}"
        )
    x = model.wte(idx) + model.wpe.weight[start : start + T]  # (B, T, d)
    for layer, block in enumerate(model.blocks):
        q, k, v = block.attn.heads(block.ln_1(x))  # 3 x (B, nh, T, hs)
        k, v = cache.extend(layer, k, v)  # (B, nh, start + T, hs)
        # is_causal aligns the mask top-left, right only while nothing is cached
        y = F.scaled_dot_product_attention(q, k, v, is_causal=start == 0)  # (B, nh, T, hs)
        x = x + block.attn.merge(y)  # (B, T, d)
        x = x + block.mlp(block.ln_2(x))  # (B, T, d)
    cache.length = start + T
    return model.lm_head(model.ln_f(x[:, -1]))  # (B, V)
