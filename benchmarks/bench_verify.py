"""lakelab verify: wall time of the whole battery for one objective, per objective.

    .venv/bin/python benchmarks/bench_verify.py [--repeats 5]

Each objective's own loss function (``lakelab.registry``) is verified against itself, on one
torch thread; median over ``--repeats`` runs, after one warm-up run.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from lakelab.registry import OBJECTIVES
from lakelab.verify import verify


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| objective | checks | seconds (median) |")
    print("|---|---|---|")
    for name, objective in OBJECTIVES.items():
        if objective.reduction == "tokens":
            continue  # per-token objectives: not in the sequences form

        def fn(*inputs, objective=objective, **knobs):
            return objective.loss_fn(*inputs, **knobs)[0]

        verify(fn, like=name)  # warm-up
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            report = verify(fn, like=name)
            times.append(time.perf_counter() - t0)
        assert report.ok, report
        print(f"| {name} | {len(report.checks)} | {statistics.median(times):.3f} |")


if __name__ == "__main__":
    main()
