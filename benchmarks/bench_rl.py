"""On-policy RL on the lake: the `rl` preset end to end, and batched vs plain seeds.

    .venv/bin/python benchmarks/bench_rl.py [--repeats 3] [--steps 60]

Measured in one process, in one run, so the machine's load affects every number alike:

1. the whole ``lakelab lake --preset rl`` reproduction (``run_lake``: set-up, the four
   methods for 10 seeds, metrics.csv, summary.csv, figure.png) into a fresh directory, with
   one process per core, median over ``--repeats`` (issue 17's budget: 30 s on 2 cores);
2. each method for the preset's 10 seeds over ``--steps`` steps, all seeds in one batched
   computation (``train_online``) and one seed at a time (``train_online_plain``), median
   over ``--repeats``, and their ratio.
"""

from __future__ import annotations

import argparse
import os
import tempfile

from bench_lake import median_time  # the sibling script's (run as benchmarks/bench_rl.py)

from lakelab.mlp.config import preset
from lakelab.mlp.experiment import build_setup
from lakelab.mlp.online import train_online, train_online_plain
from lakelab.mlp.runs import run_lake
from lakelab.rl_methods import RL_METHODS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    workers = os.cpu_count() or 1

    def whole() -> None:
        with tempfile.TemporaryDirectory() as out:
            run_lake(preset("rl"), out, workers=workers)

    seconds = median_time(whole, args.repeats)
    print(f"| `lakelab lake --preset rl`, {workers} workers, median of {args.repeats} | seconds |")
    print("|---|---|")
    print(f"| end to end | {seconds:.1f} |")
    print()
    setup = build_setup(preset("rl").replace(steps=args.steps, log_every=args.steps))
    print(f"| {args.steps} steps, 10 seeds, median of {args.repeats} | batched, s | plain, s | "
          "plain / batched |")  # fmt: skip
    print("|---|---|---|---|")
    for method in RL_METHODS:
        fast = median_time(lambda m=method: train_online(setup, m), args.repeats)
        slow = median_time(lambda m=method: train_online_plain(setup, m), args.repeats)
        print(f"| {method} | {fast:.2f} | {slow:.2f} | {slow / fast:.2f} |")


if __name__ == "__main__":
    main()
