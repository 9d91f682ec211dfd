"""lakelab verify: wall time of the whole battery for one objective, per objective.

    .venv/bin/python benchmarks/bench_verify.py [--repeats 5]

Each objective's own loss function (``lakelab.registry``) is verified against itself in both
forms (per-sequence inputs, and per-token ``SequenceLogps`` through ``compute_objective``),
on one torch thread; median over ``--repeats`` runs, after one warm-up run.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from lakelab.registry import OBJECTIVES, compute_objective
from lakelab.verify import verify


def timed(fn, like: str, inputs: str, repeats: int) -> tuple[int, float]:
    verify(fn, like=like, inputs=inputs)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        report = verify(fn, like=like, inputs=inputs)
        times.append(time.perf_counter() - t0)
    assert report.ok, report
    return len(report.checks), statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| objective | form | checks | seconds (median) |")
    print("|---|---|---|---|")
    for name, objective in OBJECTIVES.items():

        def per_token(logps, name=name, **knobs):
            return compute_objective(name, logps, knobs)[0]

        forms = {"tokens": per_token}
        if objective.reduction != "tokens":
            forms["sequences"] = lambda *x, objective=objective, **k: objective.loss_fn(*x, **k)[0]
        for form, fn in forms.items():
            checks, seconds = timed(fn, name, form, args.repeats)
            print(f"| {name} | {form} | {checks} | {seconds:.3f} |")


if __name__ == "__main__":
    main()
