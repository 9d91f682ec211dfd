"""A tiny causal transformer (decoder-only, GPT-2 style) in plain torch.

References: Vaswani et al. 2017 ("Attention is all you need"); Radford et al. 2019 (GPT-2:
pre-norm blocks, learned positions, tied input/output embeddings); Karpathy's nanoGPT, whose
layout this follows. Attention is ``F.scaled_dot_product_attention`` with ``is_causal=True``:
position t attends to positions <= t only, so right padding never changes the logits of real
tokens and a prompt's logits do not depend on what follows it (tested).

    logits = lm_head(ln_f(blocks(wte[idx] + wpe[0:T])))        (B, T, V)
    block(x) = x + attn(ln_1(x));  x + mlp(ln_2(x))

IFT needs the token embeddings separately (its temporal residual, eq. 17, mixes them before
the positions are added), so ``forward`` also accepts ``tok_emb`` in place of ``idx``;
``forward(idx) == forward(tok_emb=model.wte(idx))`` exactly, by construction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lakelab.lm.kv_cache import KVCache, next_logits
from lakelab.lm.tokenizer import END_ID, PAD_ID, VOCAB


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the transformer; presets in ``MODEL_PRESETS``."""

    n_layer: int = 2
    """Transformer blocks. Two already route information from the map to the plan."""
    n_head: int = 4
    """Attention heads per block; d_model must be a multiple of it."""
    d_model: int = 64
    """Width of the residual stream (head size d_model / n_head = 16)."""
    block_size: int = 64
    """Longest sequence (prompt + plan + end) the position table covers; a 6x6 lake's
    prompt is 42 tokens, leaving room for a plan of 21 moves."""
    vocab_size: int = len(VOCAB)
    """Tokens of ``lakelab.lm.tokenizer.VOCAB`` (12)."""
    mlp_ratio: int = 4
    """Hidden width of each block's MLP, as a multiple of d_model (GPT-2's 4)."""

    def __post_init__(self) -> None:
        for name in ("n_layer", "n_head", "d_model", "block_size", "vocab_size", "mlp_ratio"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"model {name} must be a positive integer, got {value!r}")
        if self.d_model % self.n_head:
            raise ValueError(
                f"model d_model ({self.d_model}) must be a multiple of n_head ({self.n_head})"
            )


MODEL_PRESETS: dict[str, ModelConfig] = {
    # about 5k parameters: a smoke test, learns little
    "nano": ModelConfig(n_layer=1, n_head=2, d_model=16),
    # about 28k parameters: the default preset; two heads of size 16, as micro's (why not
    # four of 8: docs/benchmarks.md)
    "tiny": ModelConfig(n_layer=2, n_head=2, d_model=32),
    # about 105k parameters (docs/lm-track.md)
    "micro": ModelConfig(n_layer=2, n_head=4, d_model=64),
    # about 0.8M parameters, for 8x8 lakes (longer prompts and plans)
    "mini": ModelConfig(n_layer=4, n_head=4, d_model=128, block_size=128),
}


def model_config(name: str) -> ModelConfig:
    if name not in MODEL_PRESETS:
        raise ValueError(f"unknown model preset {name!r}; presets are {sorted(MODEL_PRESETS)}")
    return MODEL_PRESETS[name]


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)

    def heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries, keys and values of ``x`` (B, T, d), split into heads: 3 x (B, nh, T, hs)."""
        B, T, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)  # 3 x (B, T, d)
        return tuple(t.view(B, T, self.n_head, d // self.n_head).transpose(1, 2) for t in (q, k, v))

    def merge(self, y: torch.Tensor) -> torch.Tensor:
        """The heads' outputs (B, nh, T, hs) joined and projected: (B, T, d)."""
        B, nh, T, hs = y.shape
        return self.proj(y.transpose(1, 2).reshape(B, T, nh * hs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.heads(x)  # 3 x (B, nh, T, hs)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, nh, T, hs)
        return self.merge(y)  # (B, T, d)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.d_model)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.d_model, cfg.mlp_ratio * cfg.d_model),
            nn.GELU(),
            nn.Linear(cfg.mlp_ratio * cfg.d_model, cfg.d_model),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))  # (B, T, d)
        return x + self.mlp(self.ln_2(x))  # (B, T, d)


class TinyGPT(nn.Module):
    """Decoder-only transformer; ``seed`` makes its initial weights reproducible."""

    def __init__(self, cfg: ModelConfig, *, seed: int = 0) -> None:
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.wpe = nn.Embedding(cfg.block_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied, as GPT-2
        gen = torch.Generator().manual_seed(seed)
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif p.dim() == 2:
                # GPT-2: N(0, 0.02), residual projections scaled by 1/sqrt(2 n_layer)
                residual = name.endswith(("proj.weight", "mlp.2.weight"))
                std = 0.02 / math.sqrt(2 * cfg.n_layer) if residual else 0.02
                nn.init.normal_(p, 0.0, std, generator=gen)

    def forward(
        self, idx: torch.Tensor | None = None, *, tok_emb: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Next-token logits (B, T, V) from token ids ``idx`` (B, T) or token embeddings
        ``tok_emb`` (B, T, d) (IFT's mixed inputs); the position embedding is added here."""
        if (idx is None) == (tok_emb is None):
            raise ValueError("pass exactly one of idx (B, T) or tok_emb (B, T, d)")
        if tok_emb is None:
            tok_emb = self.wte(idx)  # (B, T, d)
        T = tok_emb.shape[1]
        if T > self.cfg.block_size:
            raise ValueError(f"sequence of {T} tokens exceeds block_size {self.cfg.block_size}")
        x = tok_emb + self.wpe.weight[:T]  # (B, T, d)
        for block in self.blocks:
            x = block(x)  # (B, T, d)
        return self.lm_head(self.ln_f(x))  # (B, T, V)

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


@torch.no_grad()
def generate(
    model: TinyGPT,
    prompts: torch.Tensor,
    max_new: int,
    *,
    greedy: bool = True,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    cache: bool = True,
) -> torch.Tensor:
    """Continue each prompt (B, P) for at most ``max_new`` tokens; returns the new tokens
    (B, n <= max_new). Greedy takes the argmax; otherwise sample from softmax(logits / T)
    with ``generator``. After a row emits the end token it is padded with ``PAD_ID``;
    generation stops early once every row has ended.

    ``cache=False`` is the definition: each new token runs a full forward over the sequence
    so far. ``cache=True`` (``lakelab.lm.kv_cache``) keeps every block's keys and values and
    runs only the new token: the same tokens unless float32 rounding flips a near-tie (the
    tests compare both)."""
    if not greedy and not temperature > 0:
        raise ValueError(f"temperature must be > 0 when sampling, got {temperature!r}")
    B, P = prompts.shape
    kv = KVCache(model, B, P + max_new - 1) if cache and max_new > 0 else None
    idx = prompts  # (B, P) the positions to run: all so far, or with the cache the new ones
    done = torch.zeros(B, dtype=torch.bool)  # (B,)
    new = []
    for _ in range(max_new):
        if kv is None:
            logits = model(idx)[:, -1]  # (B, V) prediction for the next token
        else:
            logits = next_logits(model, idx, kv)  # (B, V) the same, from the cache
        if greedy:
            nxt = logits.argmax(-1)  # (B,)
        else:
            probs = torch.softmax(logits / temperature, -1)  # (B, V)
            nxt = torch.multinomial(probs, 1, generator=generator).squeeze(-1)  # (B,)
        nxt = torch.where(done, PAD_ID, nxt)  # (B,)
        new.append(nxt)
        done |= nxt == END_ID
        idx = nxt[:, None] if kv is not None else torch.cat([idx, nxt[:, None]], dim=1)
        if done.all():
            break
    return torch.stack(new, dim=1) if new else prompts[:, :0]  # (B, n)
