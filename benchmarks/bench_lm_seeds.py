"""N seeds of the LM track trained together (``lakelab.lm.batched``) or one after another
(``lakelab.lm.train``), on the quick preset.

    .venv/bin/python benchmarks/bench_lm_seeds.py [--seeds 10] [--model micro]
        [--pretrain-steps 20] [--align-steps 10] [--repeats 3]

One process, one thread. The quick preset's lakes, batches and learning rates, with fewer
steps (the time per step does not depend on how many there are): the pre-training of the N
base models, then their alignment with each of the preset's methods. Nothing is evaluated
(the held-out metrics cost the same per seed either way). Each repeat times both paths in
turn, the first one alternating; the table gives the median over repeats and the ratio of
the medians, plain / batched, all from this one run.
"""

from __future__ import annotations

import argparse
import statistics
import time

from lakelab.lm.batched import align_seeds, pretrain_seeds
from lakelab.lm.config import PRESETS
from lakelab.lm.data import seed_data
from lakelab.lm.train import ReferenceCache, align, pretrain
from lakelab.registry import get_objective
from lakelab.training import torch_threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--model", default=PRESETS["quick"].model)
    parser.add_argument("--pretrain-steps", type=int, default=20)
    parser.add_argument("--align-steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cfg = PRESETS["quick"].replace(
        model=args.model,
        seeds=args.seeds,
        pretrain_steps=args.pretrain_steps,
        pretrain_log_every=args.pretrain_steps,
        align_steps=args.align_steps,
        log_every=args.align_steps,
    )
    seeds = cfg.seed_list
    with torch_threads(1):
        data = [seed_data(cfg, s) for s in seeds]
        quiet = [lambda *a: None] * len(seeds)
        bases = [pretrain(cfg, d.corpus, s, log=quiet[0]) for d, s in zip(data, seeds, strict=True)]
        refs = [ReferenceCache.build(b, d) for b, d in zip(bases, data, strict=True)]

        def plain_pretrain() -> None:
            for d, s in zip(data, seeds, strict=True):
                pretrain(cfg, d.corpus, s, log=quiet[0])

        def batched_pretrain() -> None:
            pretrain_seeds(cfg, [d.corpus for d in data], seeds, logs=quiet)

        stages = {"pre-training": (plain_pretrain, batched_pretrain)}
        for method in cfg.methods:
            needs_ref = get_objective(method).needs_reference

            def plain(method=method, needs_ref=needs_ref) -> None:
                for b, d, s, r in zip(bases, data, seeds, refs, strict=True):
                    align(cfg, b, method, d, s, reference=r if needs_ref else None, log=quiet[0])

            def batched(method=method) -> None:
                align_seeds(cfg, bases, method, data, seeds, references=refs, logs=quiet)

            stages[f"align {method}"] = (plain, batched)

        times = {name: ([], []) for name in stages}
        for r in range(args.repeats):
            for name, (plain, batched) in stages.items():
                order = [(0, plain), (1, batched)]
                for k, fn in order if r % 2 == 0 else order[::-1]:
                    t0 = time.perf_counter()
                    fn()
                    times[name][k].append(time.perf_counter() - t0)

    print(
        f"{args.seeds} seeds, model {args.model}, batch {cfg.batch_size}, "
        f"{args.pretrain_steps} pre-training and {args.align_steps} alignment steps, "
        f"median of {args.repeats}\n"
    )
    print("| stage | one after another, s | together, s | ratio | ms per seed-step, together |")
    print("|---|---|---|---|---|")
    total = [0.0, 0.0]
    for name, (plain_t, batched_t) in times.items():
        p, b = statistics.median(plain_t), statistics.median(batched_t)
        total[0], total[1] = total[0] + p, total[1] + b
        steps = args.pretrain_steps if name == "pre-training" else args.align_steps
        per = 1000 * b / (steps * args.seeds)
        print(f"| {name} | {p:.2f} | {b:.2f} | {p / b:.2f}x | {per:.1f} |")
    print(f"| all | {total[0]:.2f} | {total[1]:.2f} | {total[0] / total[1]:.2f}x | |")


if __name__ == "__main__":
    main()
