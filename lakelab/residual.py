"""IFT's temporal residual connection (Intuitive Fine-Tuning, Hua et al. 2024, eq. 17).

    delta(s_i) = (1 - lam) * s_i + lam * pi_theta(s_{i-1})

SFT (teacher forcing) always conditions on the *true* prefix; IFT nudges each response input
towards what the model itself predicted one step earlier, so the loss also reflects how the
model would continue its own guesses. Training then takes two forward passes:

    pass 1 (no grad):  true inputs -> next_probs (..., V), the prediction made at each position
    predicted = predicted_inputs(next_probs, embedding)            # (B, T, d), detached
    mixed     = temporal_residual(inputs, predicted, prompt_mask)  # (B, T, d)
    pass 2 (grad):     mixed inputs -> log-probs of the *true* next tokens -> ift_loss

Both tracks share this module. Transformer: inputs are token embeddings `E[x]`, `embedding` is
E (V, d). Frozen Lake MLP: inputs are one-hot states, `embedding` is the identity (S, S) and
`next_probs` is the model's distribution over the *next state* (built by the training loop
from pi(.|s) and the lake's dynamics; this module does not know about actions).

Where paper and official code (TsinghuaC3I/Intuitive-Fine-Tuning) differ, and what we chose:

1. Greedy vs expected. Eq. 17 mixes in pi_theta(s_{i-1}), read literally the model's
   probability-weighted prediction (`variant="expected"`: next_probs @ E). The official code
   mixes in the embedding of the argmax token (`variant="greedy"`). Default: "greedy", so
   lakelab reproduces the code the paper's numbers came from; "expected" is one flag away.
2. Index order of the propagation weights. Eq. 22 as printed (sum_{n=0}^{N} sum_{i=n}^{N})
   can be read as giving later tokens more weight; eq. 20 (token i enters every prefix
   n > i) and the official `get_cumsum_weight` give *earlier* tokens more weight. We follow
   eq. 20 and the code (`lakelab.reductions.ift_weights`).
3. Frozen embeddings. The official repo builds pass 2's `inputs_embeds` from a frozen copy of
   the embedding table, so IFT never updates the input embeddings. We do not copy that:
   gradient flows from `mixed` into `inputs`, hence into the embedding table. For the MLP
   track the first linear layer applied to the one-hot state *is* the embedding; freezing it
   would freeze half the model and make IFT-vs-SFT comparisons meaningless. `predicted`, on
   the other hand, never receives gradient (it comes from the no-grad pass 1, as in the code).
4. Prompt positions and position 0 keep their true input (the code overwrites predictions at
   prompt positions with the true token). The first *response* input does get mixed, with
   the prediction made at the last prompt position.
"""

from __future__ import annotations

import torch

from lakelab.validate import Interval, check_choice

__all__ = ["MIX_WEIGHT", "RESIDUAL_VARIANTS", "predicted_inputs", "temporal_residual"]

RESIDUAL_VARIANTS = ("expected", "greedy")
MIX_WEIGHT = Interval(0.0, 1.0)  # lam of eq. 17, declared once (the registry shows it)


@torch.no_grad()
def predicted_inputs(
    next_probs: torch.Tensor, embedding: torch.Tensor, *, variant: str = "greedy"
) -> torch.Tensor:
    """Embed the model's own prediction of the next input item, pi_theta(s_{i-1}) in eq. 17.

        "greedy":   predicted[..., :] = embedding[argmax_v next_probs[..., v]]  (official code)
        "expected": predicted = next_probs @ embedding                         (eq. 17 literally)

    | argument    | shape    | meaning                                                  |
    |-------------|----------|----------------------------------------------------------|
    | next_probs  | (..., V) | predicted distribution over the next item, per position  |
    | embedding   | (V, d)   | input vector of each item (identity for one-hot inputs)  |
    | returns     | (..., d) | detached; row i predicts the input at position i + 1     |

    Traps: logits work for "greedy" but not for "expected" (pass probabilities). Ties in argmax
    go to the lowest index. The result is computed under no_grad, whatever the inputs.
    """
    check_choice("variant", variant, RESIDUAL_VARIANTS)
    if not isinstance(embedding, torch.Tensor) or embedding.dim() != 2:
        raise ValueError(f"embedding must be a 2-D tensor (V, d), got {embedding!r}")
    if not isinstance(next_probs, torch.Tensor) or next_probs.dim() == 0:
        raise ValueError(f"next_probs must be a tensor (..., V), got {next_probs!r}")
    if next_probs.shape[-1] != embedding.shape[0]:
        raise ValueError(
            f"next_probs (..., V) and embedding (V, d) disagree on V: "
            f"{tuple(next_probs.shape)} and {tuple(embedding.shape)}"
        )
    if variant == "greedy":
        return embedding[next_probs.argmax(dim=-1)].detach()  # (..., d)
    return (next_probs.to(embedding.dtype) @ embedding).detach()  # (..., d)


def temporal_residual(
    inputs: torch.Tensor,
    predicted: torch.Tensor,
    prompt_mask: torch.Tensor,
    *,
    lam: float = 0.2,
) -> torch.Tensor:
    """Mix each response input with the model's prediction from the previous position (eq. 17).

        mixed[:, i] = (1 - lam) * inputs[:, i] + lam * predicted[:, i - 1]   response, i >= 1
        mixed[:, i] = inputs[:, i]                                           prompt, or i = 0

    | argument     | shape     | meaning                                                   |
    |--------------|-----------|-----------------------------------------------------------|
    | inputs       | (B, T, d) | true input vectors (receive gradient)                     |
    | predicted    | (B, T, d) | predicted[:, i] = prediction made at i, for input i + 1   |
    | prompt_mask  | (B, T)    | True/1 where the *input* at that position is prompt       |
    | lam          | float     | mixing weight in [0, 1]; official default 0.2             |
    | returns      | (B, T, d) | mixed inputs for the second forward pass                  |

    Traps: `predicted` is detached here whatever you pass (the official code computes it under
    no_grad). Padding positions are not prompt, so they get mixed too; harmless, as their
    losses are masked. lam = 0 returns `inputs` exactly: IFT with lam = 0, gamma = 0 is SFT.
    """
    lam = MIX_WEIGHT.check("lam", lam)
    if not isinstance(inputs, torch.Tensor) or inputs.dim() != 3:
        raise ValueError(f"inputs must be a tensor of shape (B, T, d), got {inputs!r}")
    if not isinstance(predicted, torch.Tensor) or predicted.shape != inputs.shape:
        shape = tuple(predicted.shape) if isinstance(predicted, torch.Tensor) else predicted
        raise ValueError(
            f"predicted and inputs must have the same shape (B, T, d), "
            f"got {shape} and {tuple(inputs.shape)}"
        )
    if not isinstance(prompt_mask, torch.Tensor) or prompt_mask.shape != inputs.shape[:2]:
        shape = tuple(prompt_mask.shape) if isinstance(prompt_mask, torch.Tensor) else prompt_mask
        raise ValueError(
            f"prompt_mask must have shape (B, T) = {tuple(inputs.shape[:2])}, got {shape}"
        )
    if prompt_mask.dtype != torch.bool:
        if not bool(((prompt_mask == 0) | (prompt_mask == 1)).all()):
            raise ValueError("prompt_mask must contain only 0 and 1 (or be bool)")
        prompt_mask = prompt_mask == 1

    predicted = predicted.detach().to(inputs.dtype)
    # Shift right: position i sees the prediction made at i - 1; position 0 has none.
    previous = torch.cat([torch.zeros_like(predicted[:, :1]), predicted[:, :-1]], dim=1)
    mix = ~prompt_mask
    mix[:, 0] = False  # (B, T) positions whose input gets mixed
    mixed = (1 - lam) * inputs + lam * previous  # (B, T, d)
    return torch.where(mix[..., None], mixed, inputs)  # (B, T, d)
