"""The Frozen Lake experiment: wall time of the `paper` preset, and batched vs looped seeds.

    .venv/bin/python benchmarks/bench_lake.py [--repeats 3] [--loop-steps 100]

Measured in one process, in one run, so the machine's load affects every number alike:

1. set-up (soft value iteration, theta* for 10 seeds, demos), median over ``--repeats``;
2. training of every objective for all seeds in this process, all methods together
   (``train_methods``) and one method at a time (``train_method``), one run each;
3. the whole `lakelab lake` reproduction end to end (`run_lake`: set-up, training,
   metrics.csv, summary.csv, figure.png) into a fresh directory, with one process and with
   one process per core (this one and forked workers: their start-up is included), median
   over ``--repeats``;
4. batched vs looped seeds: ``--loop-steps`` steps of SFT and DPO for 10 seeds as one
   batched computation vs a Python loop over the seeds; median over ``--repeats``, ratio;
5. the plain loop (``lakelab.mlp.train``: one objective and one seed at a time, a forward
   pass per token, one-move-at-a-time sampling) vs the joint loop, ``--loop-steps`` steps of
   every objective for all seeds; one run each (the plain loop is slow), ratio;
6. with ``--against DIR`` (another checkout of lakelab, e.g. an older commit from
   ``git worktree add DIR COMMIT``): the whole ``lakelab lake --preset paper`` command, start-up
   included, for this code and for DIR's, alternating, ``--repeats`` times each; medians and
   their ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lakelab.mlp.config import preset
from lakelab.mlp.experiment import build_setup
from lakelab.mlp.joint import train_method, train_methods
from lakelab.mlp.runs import run_lake
from lakelab.mlp.train import train


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def command_time(src: Path, workers: int) -> float:
    """Wall time of ``lakelab lake --preset paper`` run from the lakelab sources in ``src``."""
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "lakelab.cli", "lake", "--preset", "paper"]
        command += ["--out", out, "--quiet", "--workers", str(workers)]
        env = {**os.environ, "PYTHONPATH": str(src)}
        t0 = time.perf_counter()
        subprocess.run(command, check=True, env=env, cwd=src, stdout=subprocess.DEVNULL)
        return time.perf_counter() - t0


def compare(against: Path, repeats: int, workers: int) -> None:
    here = Path(__file__).resolve().parents[1]
    times: dict[Path, list[float]] = {here: [], against: []}
    for _ in range(repeats):  # alternating, so both see the same machine load
        for src in times:
            times[src].append(command_time(src, workers))
    new, old = (statistics.median(times[src]) for src in (here, against))
    print(f"| `lakelab lake --preset paper`, {workers} workers, median of {repeats} | seconds |")
    print("|---|---|")
    print(f"| this checkout ({here}) | {new:.2f} |")
    print(f"| {against} | {old:.2f} |")
    print(f"| ratio this / other | {new / old:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--loop-steps", type=int, default=100)
    parser.add_argument("--against", type=Path, help="another lakelab checkout to compare")
    args = parser.parse_args()
    if args.against is not None:
        compare(args.against.resolve(), args.repeats, os.cpu_count() or 1)
        return
    config = preset("paper")
    workers = os.cpu_count() or 1
    n_methods, n_seeds = len(config.methods), config.seeds

    build_setup(config.replace(seeds=1, optimum_steps=10, optimum_kl_target=10.0))  # warm-up
    t_setup = median_time(lambda: build_setup(config), args.repeats)
    setup = build_setup(config)

    t0 = time.perf_counter()
    train_methods(setup, list(config.methods))
    t_together = time.perf_counter() - t0
    t0 = time.perf_counter()
    for method in config.methods:
        train_method(setup, method)
    t_alone = time.perf_counter() - t0

    def end_to_end(w: int) -> None:
        with tempfile.TemporaryDirectory() as out:
            run_lake(config, out, workers=w)

    t_e2e = {w: median_time(lambda w=w: end_to_end(w), args.repeats) for w in sorted({1, workers})}

    short = build_setup(config.replace(steps=args.loop_steps))
    ratios = {}
    for method in ("sft", "dpo"):
        batched = median_time(lambda m=method: train_method(short, m), args.repeats)
        looped = median_time(
            lambda m=method: [train_method(short, m, seed_index=[i]) for i in range(n_seeds)],
            args.repeats,
        )
        ratios[method] = (batched, looped)

    t0 = time.perf_counter()
    train_methods(short, list(config.methods))
    t_joint = time.perf_counter() - t0
    t0 = time.perf_counter()
    for method in config.methods:
        for i in range(n_seeds):
            train(short, method, i)
    t_plain = time.perf_counter() - t0

    print(f"`paper` preset: {n_methods} objectives x {n_seeds} seeds x {config.steps} steps")
    print()
    print("| measurement | seconds |")
    print("|---|---|")
    print(f"| set-up (theta*, demos; median of {args.repeats}) | {t_setup:.2f} |")
    print(f"| training, one process, all methods together | {t_together:.2f} |")
    print(f"| training, one process, one method at a time | {t_alone:.2f} |")
    for w, t in t_e2e.items():
        procs = f"{w} process{'es' if w > 1 else ''}"
        print(f"| end to end, {procs} (median of {args.repeats}) | {t:.2f} |")
        print(f"| end to end minus set-up, {procs} | {t - t_setup:.2f} |")
    print()
    print(f"| {n_seeds} seeds, {args.loop_steps} steps | batched s | looped s | looped / batched |")
    print("|---|---|---|---|")
    for method, (batched, looped) in ratios.items():
        print(f"| {method} | {batched:.2f} | {looped:.2f} | {looped / batched:.1f}x |")
    print()
    print(f"| {n_methods} objectives x {n_seeds} seeds, {args.loop_steps} steps | seconds |")
    print("|---|---|")
    print(f"| joint loop (`lakelab.mlp.joint.train_methods`) | {t_joint:.2f} |")
    print(f"| plain loop (`lakelab.mlp.train.train`, per objective and seed) | {t_plain:.2f} |")
    print(f"| plain / joint | {t_plain / t_joint:.1f}x |")


if __name__ == "__main__":
    main()
