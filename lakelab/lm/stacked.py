"""N tiny transformers as one: ``TinyGPT`` parameters stacked on a leading seed dim.

Each seed's model is one row of every stacked tensor, ``wte`` (N, V, d), ``blocks.0.qkv``
(N, 3d, d), ...; one forward runs every seed's model on that seed's own batch (N, B, T) and
gives (N, B, T, V). ``torch.optim.AdamW`` over the stacked tensors is each seed's own AdamW,
as AdamW is elementwise with the same learning rate and weight decay for every row.

Bit-equal to ``TinyGPT``, one seed at a time (tests/test_lm_batched.py): every operation
either works row by row (embedding look-ups, GELU, sums of branches, softmax over the
vocabulary, attention over (batch, head) slices) or is a matrix product per seed of exactly
the plain model's shapes, so the seed's numbers come out of the same kernel:

    plain (one seed)                     stacked (N seeds)
    F.linear(x, W, b)  = addmm           torch.baddbmm(b, x, W^T): per seed the same addmm
    x @ wte^T          = mm              torch.bmm(x, wte^T)
    F.scaled_dot_product_attention on (B, nh, T, hs), the stacked one on (N B, nh, T, hs)

Layer norm is the exception: the fused kernel takes one weight, and with a stacked weight
(``torch.func.vmap`` over ``TinyGPT`` does this) its gradient becomes a reduction over rows in
another order, which differs in the last bits. So it runs once per seed, as in the plain
model; so do the embedding look-ups, whose gradient is a scatter-add per row.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lakelab.lm.model import TinyGPT


def _key(name: str) -> str:
    return name.replace(".", "/")  # module attribute names may not hold dots


class StackedGPT(nn.Module):
    """The models ``models`` (one ``ModelConfig``) as one module; row n is ``models[n]``."""

    def __init__(self, models: Sequence[TinyGPT]) -> None:
        super().__init__()
        if not models:
            raise ValueError("StackedGPT needs at least one model")
        self.cfg = models[0].cfg
        if any(m.cfg != self.cfg for m in models):
            raise ValueError("the stacked models must share one ModelConfig")
        self.n = len(models)
        # named_parameters lists the tied lm_head.weight once, as wte.weight
        self.names = [name for name, _ in models[0].named_parameters()]
        rows = {name: [m.get_parameter(name).detach() for m in models] for name in self.names}
        self.stacked = nn.ParameterDict(
            {_key(name): nn.Parameter(torch.stack(ps)) for name, ps in rows.items()}
        )  # each (N, *shape of the plain parameter)

    def p(self, name: str) -> torch.Tensor:
        """The stacked parameter of ``TinyGPT`` parameter ``name``, (N, ...)."""
        return self.stacked[_key(name)]

    @torch.no_grad()
    def copy_to(self, model: TinyGPT, n: int) -> TinyGPT:
        """Write row ``n`` into ``model`` (a TinyGPT of the same config) and return it."""
        for name in self.names:
            model.get_parameter(name).copy_(self.p(name)[n])
        return model

    def seed_model(self, n: int) -> TinyGPT:
        """Row ``n`` as a fresh TinyGPT (its own parameters: later steps do not change it)."""
        return self.copy_to(TinyGPT(self.cfg), n)

    def embed(self, idx: torch.Tensor) -> torch.Tensor:
        """Token embeddings (N, B, T, d) of ids (N, B, T), one look-up per seed."""
        wte = self.p("wte.weight").unbind(0)
        return torch.stack([F.embedding(i, w) for i, w in zip(idx.unbind(0), wte, strict=True)])

    def forward(
        self, idx: torch.Tensor | None = None, *, tok_emb: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Next-token logits (N, B, T, V) from ids ``idx`` (N, B, T) or token embeddings
        ``tok_emb`` (N, B, T, d): ``TinyGPT.forward`` for every seed."""
        if (idx is None) == (tok_emb is None):
            raise ValueError("pass exactly one of idx (N, B, T) or tok_emb (N, B, T, d)")
        N = (idx if tok_emb is None else tok_emb).shape[0]
        if N != self.n:
            raise ValueError(f"inputs for {N} seeds, but {self.n} models are stacked")
        if tok_emb is None:
            tok_emb = self.embed(idx)  # (N, B, T, d)
        _, B, T, d = tok_emb.shape
        if T > self.cfg.block_size:
            raise ValueError(f"sequence of {T} tokens exceeds block_size {self.cfg.block_size}")
        x = tok_emb + self.p("wpe.weight")[:, None, :T]  # (N, B, T, d)
        for i in range(self.cfg.n_layer):
            x = x + self._attention(i, self._layer_norm(x, f"blocks.{i}.ln_1"))  # (N, B, T, d)
            h = self._linear(self._layer_norm(x, f"blocks.{i}.ln_2"), f"blocks.{i}.mlp.0")
            x = x + self._linear(F.gelu(h), f"blocks.{i}.mlp.2")  # (N, B, T, d)
        x = self._layer_norm(x, "ln_f")  # (N, B, T, d)
        wte = self.p("wte.weight")  # (N, V, d) tied output embedding
        return torch.bmm(x.view(N, B * T, d), wte.transpose(1, 2)).view(N, B, T, -1)

    def _linear(self, x: torch.Tensor, prefix: str) -> torch.Tensor:
        """``nn.Linear`` of every seed: (N, B, T, d_in) -> (N, B, T, d_out)."""
        N, B, T, d_in = x.shape
        w, b = self.p(f"{prefix}.weight"), self.p(f"{prefix}.bias")  # (N, out, in), (N, out)
        y = torch.baddbmm(b[:, None], x.reshape(N, B * T, d_in), w.transpose(1, 2))
        return y.view(N, B, T, -1)  # (N, B, T, d_out)

    def _layer_norm(self, x: torch.Tensor, prefix: str) -> torch.Tensor:
        """``nn.LayerNorm`` of every seed, one fused call per seed (module docstring)."""
        w, b = self.p(f"{prefix}.weight").unbind(0), self.p(f"{prefix}.bias").unbind(0)
        d = x.shape[-1]
        rows = zip(x.unbind(0), w, b, strict=True)
        return torch.stack([F.layer_norm(xn, (d,), wn, bn) for xn, wn, bn in rows])

    def _attention(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """``CausalSelfAttention`` of block ``i`` for every seed: (N, B, T, d) -> same."""
        N, B, T, d = x.shape
        nh = self.cfg.n_head
        qkv = self._linear(x, f"blocks.{i}.attn.qkv").view(N * B, T, 3 * d)  # (N B, T, 3d)
        q, k, v = (
            t.view(N * B, T, nh, d // nh).transpose(1, 2) for t in qkv.split(d, dim=2)
        )  # 3 x (N B, nh, T, hs)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (N B, nh, T, hs)
        y = y.transpose(1, 2).reshape(N, B, T, d)  # (N, B, T, d)
        return self._linear(y, f"blocks.{i}.attn.proj")
