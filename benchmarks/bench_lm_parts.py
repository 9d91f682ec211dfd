"""The parts of an LM-track run that its speed choices rest on, each against its alternative.

    .venv/bin/python benchmarks/bench_lm_parts.py [--rounds 8] [--steps 8]

1. **A training step of the tiny model, heads of 16 or of 8**: ``tiny`` as it is (2 layers,
   d_model 32, two heads of 16) and the same model with four heads of 8 (``tiny`` until this
   change), one SFT step on a batch of 64 held-out plans (forward, backward, AdamW), alone
   and with 5 seeds stacked (``lakelab.lm.stacked``, per seed).
2. **AdamW, fused or not**: the optimizer step alone over the tiny model's parameters.
3. **Generation with and without the key-value cache**: ``lakelab.lm.metrics.evaluate``'s
   greedy plans for the 200 held-out lakes of the default preset (``generate(cache=...)``),
   up to 13 new tokens each, from an untrained model (its plans rarely end early).

One process, one thread. The variants of each part take turns in ``--rounds`` rounds, so
that the shared machine's load drifts over all of them alike; the table gives medians over
rounds and the ratio of the medians.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from collections.abc import Callable

import torch

from lakelab.lm.config import PRESETS
from lakelab.lm.metrics import held_out
from lakelab.lm.model import TinyGPT, generate, model_config
from lakelab.lm.stacked import StackedGPT
from lakelab.lm.tokenizer import END_ID
from lakelab.lm.train import new_optimizer
from lakelab.training import torch_threads


def sft_step(model: torch.nn.Module, inputs: torch.Tensor) -> Callable:
    """One SFT step on ``inputs`` (their next tokens as targets), AdamW over ``model``."""
    opt = new_optimizer(model, 1e-3, 0.0)
    targets = inputs.roll(-1, -1)

    def step() -> None:
        logp = model(inputs).log_softmax(-1).gather(-1, targets[..., None])
        opt.zero_grad(set_to_none=True)
        (-logp.mean()).backward()
        opt.step()

    return step


def optimizer_step(fused: bool) -> Callable:
    model = TinyGPT(model_config("tiny"))
    sft_step(model, torch.zeros(2, 8, dtype=torch.long))()  # gradients to apply
    if fused:
        return new_optimizer(model, 1e-3, 0.0).step
    return torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0).step  # for-loop


def timed(variants: dict[str, tuple[Callable, int]], rounds: int, steps: int) -> dict:
    """Median seconds per call (divided by the call's seeds) of each variant."""
    for fn, _ in variants.values():  # warm-up: first calls allocate
        fn()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, (fn, seeds) in variants.items():
            start = time.perf_counter()
            for _ in range(steps):
                fn()
            times[name].append((time.perf_counter() - start) / steps / seeds)
    return {name: statistics.median(t) for name, t in times.items()}


def table(title: str, medians: dict[str, float], reference: str) -> None:
    print(f"\n{title}\n\n| variant | ms | relative to {reference} |\n|---|---|---|")
    for name, seconds in medians.items():
        print(f"| {name} | {1e3 * seconds:.2f} | {seconds / medians[reference]:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=8, help="calls per variant and round")
    args = parser.parse_args()
    held = held_out(PRESETS["default"])
    batch = held.chosen.inputs[:64]  # (64, T)
    tiny = model_config("tiny")
    shapes = {"tiny": tiny, "heads of 8": dataclasses.replace(tiny, n_head=tiny.d_model // 8)}
    train_steps = {}
    for label, cfg in shapes.items():
        train_steps[f"{label}, one seed"] = (sft_step(TinyGPT(cfg), batch), 1)
        stack = StackedGPT([TinyGPT(cfg, seed=s) for s in range(5)])
        stacked = sft_step(stack, batch.expand(5, -1, -1))
        train_steps[f"{label}, 5 seeds stacked, per seed"] = (stacked, 5)
    table("Training step (SFT, batch 64)", timed(train_steps, args.rounds, args.steps),
          "tiny, one seed")  # fmt: skip

    opts = {"fused": (optimizer_step(True), 1), "for-loop": (optimizer_step(False), 1)}
    table("AdamW step (tiny)", timed(opts, args.rounds, 10 * args.steps), "fused")

    model = TinyGPT(tiny).eval()  # untrained: its greedy plans rarely end early
    prompts = held.chosen.prompts  # (200, P)
    out = generate(model, prompts, held.max_new)
    ended = int((out == END_ID).any(1).sum())
    gens = {
        f"cache={c}": ((lambda c=c: generate(model, prompts, held.max_new, cache=c)), 1)
        for c in (True, False)
    }
    table(f"Greedy generation ({len(prompts)} lakes, {out.shape[1]} steps; {ended} rows end "
          "before the last)", timed(gens, args.rounds, 2), "cache=True")  # fmt: skip


if __name__ == "__main__":
    with torch_threads(1):
        main()
