"""Golden values: inputs, losses and gradients of every built-in objective, as a JSON file
that a course or a framework can copy into its own tests.

    python -m lakelab.golden              # rewrites golden/objectives-v1.json
    python -m lakelab.golden --check      # exit 1 if the file differs from this code

Each case is one objective with one set of hyper-parameters on one small batch of per-token
log-probs (B, T) with masks (prompt and padding positions hold arbitrary values), the form
``lakelab.registry.compute_objective`` takes. It records the batch-mean loss and its gradient
w.r.t. every per-token input (zero off the masks), computed in float64. The inputs are
written with 17 significant digits, so they read back to the same doubles.

The file is versioned (``"version"``): a change of any formula or default that changes a
value is a new version, never a silent edit of this one.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch

from lakelab.files import atomic_write_text
from lakelab.registry import BUILTINS, SequenceLogps, compute_objective, get_objective

__all__ = ["PATH", "VERSION", "golden_cases", "golden_document"]

VERSION = "lakelab-golden-objectives-v1"
PATH = Path(__file__).resolve().parents[1] / "golden" / "objectives-v1.json"
FIELDS = ("chosen", "rejected", "ref_chosen", "ref_rejected", "kl", "ref_kl",
          "chosen_log_sum_sq", "rejected_log_sum_sq")  # fmt: skip
MASKS = {"chosen": "chosen_mask", "rejected": "rejected_mask", "kl": "kl_mask"}
MASKS |= {"ref_chosen": "chosen_mask", "ref_rejected": "rejected_mask", "ref_kl": "kl_mask"}
MASKS |= {"chosen_log_sum_sq": "chosen_mask", "rejected_log_sum_sq": "rejected_mask"}

# beyond each objective's defaults, one other setting of its knobs
OTHER_HPARAMS: dict[str, dict[str, Any]] = {
    "ift": {"lam": 0.2, "gamma": 0.5, "weighting": "prefix"},
    "dpo": {"beta": 0.5, "label_smoothing": 0.1},
    "ipo": {"beta": 0.5},
    "orpo": {"lam": 0.25},
    "asft": {"lam": 0.5, "beta": 2.0},
    "simpo": {"beta": 5.0, "gamma": 1.0},
    "exo": {"beta": 0.5, "label_smoothing": 0.2},
    "nca": {"beta": 0.5},
    "bco_pair": {"beta": 0.5, "delta": 0.3},
    "sppo_hard": {"beta": 0.5},
    "apo": {"beta": 0.5, "variant": "down"},
    "discopop": {"beta": 0.5, "discopop_tau": 0.2},
    "dpo_norm": {"beta": 0.5},
    "ld_dpo": {"beta": 0.5, "ld_alpha": 0.2},
    "aot": {"beta": 0.5, "variant": "unpaired", "label_smoothing": 0.1},
    "cpo": {"beta": 0.5, "variant": "hinge"},
    "cpo_ipo": {"beta": 0.5},
    "alphapo": {"beta": 5.0, "gamma": 1.0, "alpha": 0.25},
    "kto": {"beta": 0.5, "desirable_weight": 1.33, "undesirable_weight": 0.7},
    "bco": {"beta": 0.5, "delta": 0.3},
    "apo_unpaired": {"beta": 0.5},
    "rpo": {"beta": 0.5, "rpo_alpha": 0.3},
    "cpo_nll": {"beta": 0.5, "variant": "hinge", "cpo_alpha": 0.5},
    "wpo": {"beta": 0.5, "variant": "robust", "label_smoothing": 0.2},
}


def _batch(seed: int, objective) -> dict[str, list]:
    """B = 3 sequences of T = 6 positions: a prompt of 0-2 positions, 1-4 response tokens,
    padding; response log-probs in [-3, -0.05], other positions arbitrary in [-9, 2]. An
    unpaired objective gets 2 undesirable examples beside the 3 desirable ones, a mismatched
    one 4 mismatched pairs (their gradient is zero: KTO detaches its reference point), WPO
    log sum_v p(v)^2 at each position (detached too)."""
    g = torch.Generator().manual_seed(seed)
    T = 6

    def one(B: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
        prompt = torch.randint(0, 3, (B,), generator=g)
        length = torch.randint(1, 5, (B,), generator=g)
        t = torch.arange(T)
        mask = (t >= prompt[:, None]) & (t < (prompt + length)[:, None])
        logp = -0.05 - 2.95 * torch.rand(B, T, generator=g, dtype=torch.float64)
        junk = -9 + 11 * torch.rand(B, T, generator=g, dtype=torch.float64)
        return torch.where(mask, logp, junk), mask

    def reference(field: str) -> None:
        mask = out[MASKS[field]]
        logp = -0.05 - 2.95 * torch.rand(mask.shape, generator=g, dtype=torch.float64)
        out[field] = torch.where(mask, logp, 0.0)

    chosen, chosen_mask = one()
    out = {"chosen": chosen, "chosen_mask": chosen_mask}
    if objective.needs_pairs:
        out["rejected"], out["rejected_mask"] = one(2 if objective.unpaired else 3)
    if objective.needs_reference:
        reference("ref_chosen")
        reference("ref_rejected")
    if objective.mismatched:
        out["kl"], out["kl_mask"] = one(4)
        reference("ref_kl")
    if objective.needs_sum_sq:  # log sum_v p(v)^2 between 2 logp and 0, arbitrary off the mask
        for kind in ("chosen", "rejected"):
            share = torch.rand(out[kind].shape, generator=g, dtype=torch.float64)
            mask = out[f"{kind}_mask"]
            out[f"{kind}_log_sum_sq"] = torch.where(mask, 2 * share * out[kind], -5.0)
    return out


def golden_cases() -> list[dict[str, Any]]:
    """Every case: objective, hyper-parameters, inputs, loss and gradients (plain lists).
    Each objective's batches are seeded by its position in ``BUILTINS``: new objectives are
    appended to the registry, so that the cases before them stay as they are."""
    cases = []
    for k, name in enumerate(BUILTINS):
        objective = get_objective(name)
        settings = [{}] + ([OTHER_HPARAMS[name]] if name in OTHER_HPARAMS else [])
        for j, hparams in enumerate(settings):
            batch = _batch(100 * k + j, objective)
            leaves = {f: batch[f].clone().requires_grad_(True) for f in FIELDS if f in batch}
            logps = SequenceLogps(**{**batch, **leaves})
            loss, _ = compute_objective(name, logps, hparams)
            grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
            cases.append(
                {
                    "objective": name,
                    "hparams": hparams,
                    "inputs": {f: v.tolist() for f, v in batch.items()},
                    "loss": loss.item(),
                    "grad": {
                        f: (torch.zeros_like(v) if g is None else g).tolist()
                        for (f, v), g in zip(leaves.items(), grads, strict=True)
                    },
                }
            )
    return cases


def golden_document() -> dict[str, Any]:
    return {
        "version": VERSION,
        "about": (
            "lakelab's objectives on small per-token batches: the batch-mean loss and its "
            "gradient w.r.t. each per-token input, float64 (lakelab.golden)"
        ),
        "cases": golden_cases(),
    }


def _text(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=1, sort_keys=True) + "\n"  # repr floats: exact


def main(argv: list[str]) -> int:
    text = _text(golden_document())
    if argv[:1] == ["--check"]:
        same = PATH.exists() and PATH.read_text() == text
        print(f"{PATH}: {'up to date' if same else 'differs from lakelab.golden'}")
        return 0 if same else 1
    atomic_write_text(PATH, text)
    print(f"wrote {PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
