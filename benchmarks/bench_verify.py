"""lakelab verify: wall time of the whole battery for one objective, per objective.

    .venv/bin/python benchmarks/bench_verify.py [--repeats 5]

Each objective's own loss function (``lakelab.registry``) is verified against itself in every
form it has (per-sequence inputs; per-token ``SequenceLogps`` through ``compute_objective``;
logits and labels through ``SequenceLogits.to_logps`` then ``compute_objective``), on one
torch thread; median over ``--repeats`` runs, after one warm-up run. A mutant whose check
``optimum`` fails (DPO with beta squared: the battery then searches for the minimiser it has
instead) is timed too, as the slowest case.
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

        def per_logit(batch, name=name, **knobs):
            return compute_objective(name, batch.to_logps(), knobs)[0]

        forms = {"tokens": per_token, "logits": per_logit}
        if objective.reduction != "tokens":
            forms["sequences"] = lambda *x, objective=objective, **k: objective.loss_fn(*x, **k)[0]
        for form, fn in forms.items():
            checks, seconds = timed(fn, name, form, args.repeats)
            print(f"| {name} | {form} | {checks} | {seconds:.3f} |")

    def beta_squared(c, r, rc, rr, beta=0.1, label_smoothing=0.0):  # fails `optimum`
        return -torch.nn.functional.logsigmoid(beta**2 * ((c - rc) - (r - rr))).mean()

    checks, seconds = timed(beta_squared, "dpo", "sequences", args.repeats)
    print(f"| dpo, beta squared (a mutant) | sequences | {checks} | {seconds:.3f} |")


if __name__ == "__main__":
    main()
