"""Training-step time of every objective relative to SFT, on the tiny transformer (LM track),
and the default preset end to end.

    .venv/bin/python benchmarks/bench_lm.py [--steps 10] [--rounds 5] [--batch 64] [--model micro]
    .venv/bin/python benchmarks/bench_lm.py --default [--workers 2] [--out results/lm-default]

``--default`` runs ``lakelab lm --preset default`` (base + seven objectives, ten seeds) in a
fresh process into a temporary directory and reports its wall time, imports included, and
each objective's 95% half-width of held-out success, against the targets of 3 minutes on 2
cores and 0.08.

One process, one thread, one base model and the same batches (chosen and offline rejected
plans of 4x4 lakes) for every objective. A step is what ``lakelab.lm.train.align`` does:
the forward pass(es), ``compute_objective``, backward and an AdamW step. Objectives take
turns in ``--rounds`` rounds of ``--steps`` steps each, so that the shared machine's load
drifts over all of them alike; the table gives the median over rounds.

"dpo, no cache" recomputes the reference log-probs of chosen and rejected every step (the
frozen-model forward a trainer without a cache pays); "dpo" reads them from the cache that
``lakelab lm`` builds once per seed. Tokens per second counts the sequence tokens a step
trains on (chosen, plus rejected for paired objectives).

Expected from the passes alone (forward ~ 1/3 of forward + backward): IFT ~1.3x SFT (one
extra no-grad forward), DPO ~2x (two sequences), DPO without cache ~2.7x (plus two no-grad
forwards).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from lakelab.lm.config import PRESETS
from lakelab.lm.data import seed_data
from lakelab.lm.model import TinyGPT, model_config
from lakelab.lm.train import ReferenceCache, new_optimizer, objective_logps, reference_logps
from lakelab.registry import OBJECTIVES, compute_objective, get_objective
from lakelab.training import torch_threads

NO_CACHE = "dpo, no cache"


def make_step(method: str, model: TinyGPT, base: TinyGPT, data, cache: ReferenceCache):
    """A function doing one training step of ``method`` on the lakes ``idx``."""
    name = "dpo" if method == NO_CACHE else method
    objective = get_objective(name)
    opt = new_optimizer(model, 1e-4, 0.0)  # small lr: the model stays near the base

    def step(idx: np.ndarray) -> int:
        chosen = data.chosen[idx]
        rejected = data.rejected[idx] if objective.needs_pairs else None
        ref_c = ref_r = None
        if method == NO_CACHE:
            ref_c, ref_r = reference_logps(base, chosen), reference_logps(base, rejected)
        elif objective.needs_reference:
            ref_c, ref_r = cache.chosen[idx], cache.rejected[idx]
        loss, _ = compute_objective(
            name, objective_logps(model, name, {}, chosen, rejected, ref_c, ref_r)
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return chosen.inputs.numel() * (2 if rejected is not None else 1)

    return step


TARGET_SECONDS, TARGET_HALF_WIDTH = 180.0, 0.08


def end_to_end(workers: int, keep: Path | None) -> None:
    """The default preset from a fresh process: wall time and held-out success per method.
    ``keep``: run into this (new) directory and keep it, e.g. results/lm-default."""
    lakelab = Path(sys.executable).parent / "lakelab"
    if keep is not None and keep.exists():
        sys.exit(f"{keep} exists: a finished run would only be read, not timed")
    with tempfile.TemporaryDirectory() as scratch:
        out = str(keep or scratch)
        command = [str(lakelab), "lm", "--preset", "default", "--out", out, "--quiet",
                   "--workers", str(workers)]  # fmt: skip
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
        summary = pd.read_csv(Path(out) / "summary.csv")
    print(f"`lakelab lm --preset default --workers {workers}`: {seconds:.0f} s end to end "
          f"(target {TARGET_SECONDS:.0f} s on 2 cores)\n")  # fmt: skip
    print("| method | seeds | held-out success | 95% half-width | shortest-plan rate | token KL |")
    print("|---|---|---|---|---|---|")
    for _, r in summary.iterrows():
        print(f"| {r.method} | {r.seeds} | {r.success_mean:.3f} | {r.success_ci95:.3f} | "
              f"{r.shortest_mean:.3f} | {r.token_kl_mean:.3f} |")  # fmt: skip
    widest = summary["success_ci95"].max()
    met = widest <= TARGET_HALF_WIDTH and seconds <= TARGET_SECONDS
    verdict = "both targets met" if met else "a target missed"
    print(f"\nwidest half-width {widest:.3f} (target <= {TARGET_HALF_WIDTH}); {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10, help="steps per objective and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--model", default="micro")
    parser.add_argument("--default", action="store_true", help="the default preset, end to end")
    parser.add_argument("--workers", type=int, default=2, help="with --default: processes")
    parser.add_argument("--out", type=Path, help="with --default: keep the run here (new)")
    args = parser.parse_args()
    if args.default:
        end_to_end(args.workers, args.out)
        return
    cfg = PRESETS["quick"].replace(model=args.model, batch_size=args.batch)
    data = seed_data(cfg, 0)
    base = TinyGPT(model_config(args.model), seed=0)
    t0 = time.perf_counter()
    cache = ReferenceCache.build(base, data)
    cache_s = time.perf_counter() - t0
    methods = [*OBJECTIVES, NO_CACHE]
    steps = {m: make_step(m, copy.deepcopy(base), base, data, cache) for m in methods}
    rng = np.random.default_rng(0)
    batches = [rng.choice(len(data.chosen), args.batch, replace=False) for _ in range(args.steps)]
    for m in methods:  # warm-up: first calls allocate and import
        steps[m](batches[0])
    times: dict[str, list[float]] = {m: [] for m in methods}
    tokens: dict[str, int] = {}
    for _ in range(args.rounds):
        for m in methods:
            t0 = time.perf_counter()
            tokens[m] = sum(steps[m](idx) for idx in batches) // args.steps
            times[m].append((time.perf_counter() - t0) / args.steps)
    sft = statistics.median(times["sft"])
    print(
        f"model {args.model} ({base.n_params():,} parameters), batch {args.batch} x "
        f"{data.chosen.inputs.shape[1]} tokens, 1 thread; reference cache for "
        f"{len(data.chosen)} lakes built once in {cache_s:.2f} s\n"
    )
    print("| objective | ms / step | relative to SFT | tokens / s |")
    print("|---|---|---|---|")
    for m in methods:
        ms = statistics.median(times[m])
        print(f"| {m} | {1e3 * ms:.1f} | {ms / sft:.2f}x | {tokens[m] / ms:,.0f} |")


if __name__ == "__main__":
    with torch_threads(1):
        main()
